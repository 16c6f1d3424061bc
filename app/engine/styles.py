"""Comping styles: how the chord the planner chose is *played*, as data (a table of named rhythm patterns).

Why data and not code: a style is a rhythm, and a rhythm is a list of hits on the 16th-note grid. Keeping every
style a ``Style`` row (hits, swing, humanize) means one arranger (``arrange.py``) plays them all, a new style is
one row here, and the command line, the GUI picker and the saved settings list them from ``STYLES`` alone.

A pattern restarts at every bar line (a hit past the bar's end, e.g. in 3/4, is not played). Each hit strikes some
of the voicing's notes (``voices``: indexes into the close-position voicing, low to high, taken modulo its size;
negative ones count from the top; None: every note) for ``length`` 16ths (0: until the chord changes), cut short
where the chord changes. ``swing`` delays the off-beat 8ths (or 16ths) towards the triplet; ``humanize_ms`` and
``humanize_velocity`` are a light, seeded random push (never more than a few ms late, never early: the scheduler
cannot play a note before the frame it belongs to).
"""

from __future__ import annotations

from dataclasses import dataclass

STEPS_PER_BAR = 16  # 16ths in a bar of 4/4: the grid the patterns are written on


@dataclass(frozen=True)
class Hit:
    step: int  # the 16th within the pattern (0 = the bar line)
    voices: tuple[int, ...] | None = None  # which notes of the voicing (None: all)
    length: int = 2  # 16ths it sounds; 0: until the chord changes
    accent: float = 1.0  # a velocity factor on top of the bar's own accents


@dataclass(frozen=True)
class Style:
    name: str
    label: str
    hits: tuple[Hit, ...]
    swing: float = 0.0  # 0 straight .. 1 full triplet feel
    swing_unit: int = 2  # the swung note in 16ths: 2 (8ths) or 1 (16ths)
    strike_on_change: bool = True  # a chord change between two hits is struck at once (as a pad is)
    revoice: bool = False  # a chord struck again while it holds takes another inversion (a ballad's movement)
    humanize_ms: float = 4.0
    humanize_velocity: int = 5
    drums: str = "pop"  # the drum pattern ``--drums auto`` picks for this style

    @property
    def hold(self) -> bool:
        """A pad: struck at changes only and held."""
        return not self.hits


def _every(step: int, length: int, voices=None, start: int = 0, accent: float = 1.0) -> tuple[Hit, ...]:
    return tuple(Hit(s, voices, length, accent) for s in range(start, STEPS_PER_BAR, step))


def _cycle(step: int, order: tuple[int, ...], length: int) -> tuple[Hit, ...]:
    """One note at a time, the voicing's notes in ``order`` (an arpeggio, an Alberti figure)."""
    return tuple(Hit(s, (order[i % len(order)],), length) for i, s in enumerate(range(0, STEPS_PER_BAR, step)))


STYLES: dict[str, Style] = {s.name: s for s in (
    Style("pad", "sustained pad", (), humanize_ms=0.0, humanize_velocity=0, drums="ballad"),
    Style("block", "block chords on the beat", _every(4, 3), drums="rock"),
    Style("offbeat", "off-beat (reggae / ska)", _every(4, 1, start=2), strike_on_change=False, drums="pop"),
    Style("arp_up", "arpeggio up", _cycle(2, (0, 1, 2, 3), 2), drums="pop"),
    Style("arp_down", "arpeggio down", _cycle(2, (-1, -2, -3, -4), 2), drums="pop"),
    Style("alberti", "broken chord (Alberti)", _cycle(2, (0, -1, 1, -1), 2), drums="pop"),
    Style("bossa", "bossa nova", (Hit(0, length=2), Hit(3, length=3, accent=0.9), Hit(6, length=2),
                                  Hit(10, length=2, accent=0.9), Hit(13, length=3)), drums="bossa"),
    Style("swing", "swing comp (Charleston)", (Hit(0, length=3, accent=1.05), Hit(6, length=2, accent=0.95)),
          swing=0.6, drums="swing"),
    Style("ballad", "ballad (whole notes, re-voiced)", (Hit(0, length=0),), revoice=True, humanize_ms=3.0,
          drums="ballad"),
)}
DEFAULT_STYLE = "pad"


def swing_offset(step: int, swing: float, unit: int = 2) -> float:
    """How late (in 16ths) a note on ``step`` of the bar sounds: the second of each swung pair moves towards the
    triplet (at swing 1 an off-beat 8th sounds 2/3 of a 16th late: on the last third of the beat)."""
    if swing <= 0:
        return 0.0
    return swing * unit / 3 if step % (2 * unit) == unit else 0.0


def metric_accent(step: int, bar_steps: int) -> float:
    """The bar's own accents: the downbeat strongest, the half bar (an even meter's other strong beat) next,
    the other beats as written, the off-beats a little softer."""
    if step == 0:
        return 1.12
    if bar_steps % 8 == 0 and step == bar_steps // 2:
        return 1.06
    return 1.0 if step % 4 == 0 else 0.92
