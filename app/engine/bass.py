"""Bass lines: what the bass plays under a chord, as data, and the walking bass's one rule.

Why here and not in the voicing: the voicing gives one bass note per chord (its root); a band's bass player moves
(root-fifth, an octave pulse, a walking line). Every line strikes the chord's root where the chord changes; the
table says what it plays between changes.

The walking line needs the *next* chord: in the last beat before a change it steps to a half step beside the next
root, so the new chord's first beat lands on its root by step. It only ever looks at chords the planner has
committed (promised, frozen): a tentative chord may still change, and a bass line that walked towards a chord that
never came would be a wrong note heard by everyone. Where the next chord is not committed yet, the line plays a
tone of the chord that sounds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BassHit:
    step: int  # 16th within the bar
    degree: str  # "root", "fifth", "octave" (the root an octave up) or "walk" (a chord tone, or the approach)
    length: int  # 16ths; 0: until the chord changes


@dataclass(frozen=True)
class BassLine:
    name: str
    label: str
    hits: tuple[BassHit, ...]
    approach: bool = False  # the last beat before a committed change steps to the next root


BASS_LINES: dict[str, BassLine] = {b.name: b for b in (
    BassLine("root", "root (held)", ()),
    BassLine("root_fifth", "root - fifth", (BassHit(0, "root", 8), BassHit(8, "fifth", 8))),
    BassLine("octave", "octave pulse", tuple(BassHit(s, "root" if s % 4 == 0 else "octave", 2)
                                             for s in range(0, 16, 2))),
    BassLine("walking", "walking", tuple(BassHit(s, "walk", 4) for s in range(0, 16, 4)), approach=True),
)}
DEFAULT_BASS = "root"


def nearest(pc: int, to: int, low: int, high: int) -> int:
    """The pitch of pitch class ``pc`` nearest ``to`` within ``low``..``high`` (an octave at least)."""
    best = None
    for p in range(low, high + 1):
        if p % 12 == pc % 12 and (best is None or abs(p - to) < abs(best - to)):
            best = p
    return best if best is not None else low + (pc - low) % 12


def chord_tones(root: int, pitch_classes: tuple[int, ...]) -> tuple[int, ...]:
    """The chord's tones as intervals above its root, root first (what a walking line climbs)."""
    return tuple(sorted({(pc - root) % 12 for pc in pitch_classes} | {0}))


def approach(target: int, previous: int | None) -> int:
    """The note a half step beside ``target`` on the side the line comes from (below when it comes from below)."""
    if previous is None:
        return target - 1
    return target + 1 if previous > target else target - 1
