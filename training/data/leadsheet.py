"""The one in-memory lead-sheet form every source parser produces.

Times are in beats (quarter notes) from the start of the song, so every source lands on the same grid before the
frame codec quantizes to 16ths. Chords keep the source's spelling (``label``) next to the parsed pitch content
(root, intervals, bass) so the vocabulary can report how each span was mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SkipSong(Exception):
    """A song that cannot be used (no melody, no chords, unreadable); the message is the reason shown in stats."""


@dataclass(frozen=True)
class Note:
    onset: float  # beats
    offset: float  # beats
    pitch: int  # MIDI 0..127


@dataclass(frozen=True)
class ChordSpan:
    """A chord symbol sounding from ``onset`` to ``offset`` (beats).

    ``root is None`` means an explicit "no chord" (N, N.C.). ``intervals`` are semitones above the root
    (0 included) in root position; ``bass`` is the bass pitch class when it is not the root (slash chords).
    """

    onset: float
    offset: float
    label: str
    root: int | None
    intervals: tuple[int, ...] = ()
    bass: int | None = None


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class
    mode: str  # "major" | "minor" | other mode names as given


@dataclass(frozen=True)
class SongRef:
    """A cheap, picklable pointer to one song: what a build worker needs to parse it."""

    source: str
    song_id: str
    path: str
    part: int | None = None  # e.g. the tune's index inside a multi-tune ABC file


@dataclass
class LeadSheet:
    source: str
    song_id: str
    notes: list[Note]
    chords: list[ChordSpan] | None  # None: melody-only source (Hooktheory clips)
    meter: tuple[int, int] = (4, 4)
    key: Key | None = None
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def end_beat(self) -> float:
        ends = [n.offset for n in self.notes]
        if self.chords:
            ends += [c.offset for c in self.chords]
        return max(ends, default=0.0)


def monophonic(notes: list[Note]) -> list[Note]:
    """Reduce overlapping notes to one line: at equal onsets the highest pitch wins (the top voice carries the
    tune); an earlier note is truncated at the next onset. Zero-length notes are dropped."""
    ordered = sorted(notes, key=lambda n: (n.onset, -n.pitch))
    line: list[Note] = []
    for n in ordered:
        if line and abs(n.onset - line[-1].onset) < 1e-9:
            continue  # a lower note struck with the top note
        if line and line[-1].offset > n.onset:
            line[-1] = Note(line[-1].onset, n.onset, line[-1].pitch)
        if n.offset > n.onset:
            line.append(n)
    return [n for n in line if n.offset - n.onset > 1e-9]


def same_chord(a: ChordSpan, b: ChordSpan) -> bool:
    return (a.root, tuple(a.intervals), a.bass) == (b.root, tuple(b.intervals), b.bass)


def merge_repeated(chords: list[ChordSpan]) -> list[ChordSpan]:
    """Merge consecutive touching spans of the same chord (lead sheets that rewrite a chord every half bar)."""
    merged: list[ChordSpan] = []
    for c in sorted(chords, key=lambda c: c.onset):
        if c.offset - c.onset <= 1e-9:
            continue
        if merged and same_chord(merged[-1], c) and abs(merged[-1].offset - c.onset) < 1e-6:
            p = merged[-1]
            merged[-1] = ChordSpan(p.onset, c.offset, p.label, p.root, p.intervals, p.bass)
        else:
            merged.append(c)
    return merged


def spans_until_next(symbols: list[tuple[float, ChordSpan]], end: float) -> list[ChordSpan]:
    """Lead-sheet semantics: a chord symbol written at beat b sounds until the next symbol (or ``end``).

    ``symbols`` holds (onset, span-with-any-offset); the returned spans get their real offsets.
    """
    ordered = sorted(symbols, key=lambda t: t[0])
    out: list[ChordSpan] = []
    for i, (onset, c) in enumerate(ordered):
        offset = ordered[i + 1][0] if i + 1 < len(ordered) else end
        if offset > onset:
            out.append(ChordSpan(onset, offset, c.label, c.root, c.intervals, c.bass))
    return out
