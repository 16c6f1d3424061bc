"""Drums: a few General MIDI grooves on channel 10 (MIDI channel index 9), off by default.

Why optional and simple: Comper is an accompanist for a melody player; a drummer helps keep time and makes a
take sound like a band, but an unwanted one is the first thing a player turns off. A groove is a bar of hits
(16th step, GM drum note, velocity factor), like the comping styles (``styles.py``); ``auto`` picks the one that
matches the style. The drums keep time from the end of the listen-first intro, and play one fill in the bar
before it ends (the band's entry is heard coming), with a crash on the first beat after it.
"""

from __future__ import annotations

from dataclasses import dataclass

DRUM_CHANNEL = 9
KICK, SIDE_STICK, SNARE, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE = 36, 37, 38, 42, 44, 46, 49, 51
LOW_TOM, MID_TOM, HIGH_TOM = 45, 47, 50
SHAKER = 70


@dataclass(frozen=True)
class DrumPattern:
    name: str
    label: str
    hits: tuple[tuple[int, int, float], ...]  # (16th step in the bar, GM drum note, velocity factor)
    swing: float = 0.0


def _hats(note: int = CLOSED_HAT, gain: float = 0.7, step: int = 2) -> tuple[tuple[int, int, float], ...]:
    return tuple((s, note, gain if s % 4 else gain + 0.1) for s in range(0, 16, step))


DRUM_PATTERNS: dict[str, DrumPattern] = {d.name: d for d in (
    DrumPattern("rock", "rock", ((0, KICK, 1.0), (8, KICK, 0.95), (10, KICK, 0.8), (4, SNARE, 1.0),
                                 (12, SNARE, 1.0)) + _hats()),
    DrumPattern("pop", "pop", ((0, KICK, 1.0), (6, KICK, 0.8), (8, KICK, 0.95), (4, SNARE, 0.95), (12, SNARE, 0.95),
                               (14, OPEN_HAT, 0.6)) + tuple(h for h in _hats() if h[0] != 14)),
    DrumPattern("bossa", "bossa nova", ((0, KICK, 0.9), (6, KICK, 0.6), (8, KICK, 0.9), (14, KICK, 0.6),
                                        (0, SIDE_STICK, 0.8), (3, SIDE_STICK, 0.8), (6, SIDE_STICK, 0.8),
                                        (10, SIDE_STICK, 0.8), (13, SIDE_STICK, 0.8)) + _hats(SHAKER, 0.45, 1)),
    DrumPattern("swing", "swing", ((0, RIDE, 0.85), (4, RIDE, 0.9), (6, RIDE, 0.6), (8, RIDE, 0.85), (12, RIDE, 0.9),
                                   (14, RIDE, 0.6), (4, PEDAL_HAT, 0.6), (12, PEDAL_HAT, 0.6),
                                   (0, KICK, 0.4), (8, KICK, 0.4)), swing=0.6),
    DrumPattern("ballad", "ballad", ((0, KICK, 0.8), (8, SIDE_STICK, 0.7)) + _hats(CLOSED_HAT, 0.45)),
)}
DRUM_CHOICES = ("off", "auto", *DRUM_PATTERNS)

# the fill: the last two beats of the bar before the band comes in, snare then toms, louder as it goes
FILL: tuple[tuple[int, int, float], ...] = (
    (8, SNARE, 0.6), (9, SNARE, 0.65), (10, SNARE, 0.7), (11, SNARE, 0.75),
    (12, HIGH_TOM, 0.8), (13, HIGH_TOM, 0.85), (14, MID_TOM, 0.9), (15, LOW_TOM, 1.0), (8, KICK, 0.8),
)
ENTRY: tuple[tuple[int, int, float], ...] = ((0, CRASH, 1.0),)  # on the first beat after the fill


def pattern_for(choice: str, style_drums: str) -> DrumPattern | None:
    """The groove of a ``--drums`` choice (``auto``: the style's own; ``off``: none)."""
    if choice == "off":
        return None
    return DRUM_PATTERNS[style_drums if choice == "auto" else choice]
