"""What the view draws, computed from an engine snapshot (or a replayed file) without Qt: chord blocks with their
voiced notes and state, the player's notes, the current and next chord, the bar and beat.

Why separate: the drawing code stays a dumb painter, and the musical logic (where a chord starts, which one is
next, how many beats away) is testable with plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from ..engine.vocab import Token
from ..engine.voicing import VoicingSettings, voice

PLAYED, COMMITTED, TENTATIVE = "played", "committed", "tentative"
_DISPLAY_VOICING = VoicingSettings(voice_leading=False)  # stable blocks: a chord looks the same wherever it is


@dataclass(frozen=True)
class ChordBlock:
    start: int  # first frame
    end: int  # frame after the last
    chord: int  # the chord's index in the vocabulary (-1 when unknown, e.g. a replayed file)
    symbol: str
    bass: int | None
    notes: tuple[int, ...]
    state: str  # PLAYED, COMMITTED or TENTATIVE
    onset: bool  # the chord is struck here (not the continuation of the block before)


@dataclass(frozen=True)
class NoteBlock:
    pitch: int
    start: int
    end: int | None  # None: still held


@dataclass(frozen=True)
class ViewState:
    position: float  # fractional frame now (negative in the count-in)
    bpm: float
    meter: tuple[int, int]
    listen: int  # frames of the listen-first intro
    chords: list[ChordBlock] = field(default_factory=list)
    notes: list[NoteBlock] = field(default_factory=list)
    model: str = ""
    stats: dict = field(default_factory=dict)
    title: str = ""  # e.g. "replay: session-..." (empty while jamming)
    key: str = ""  # the key the steering follows ("" unknown / off)
    lanes: tuple = ()  # a comparison's replay: both versions' chord lanes (``app.compare.LaneView``)

    @property
    def beat_frames(self) -> int:
        return max(1, 16 // self.meter[1])

    @property
    def bar_frames(self) -> int:
        return self.beat_frames * self.meter[0]

    def counter(self) -> tuple[int, int]:
        """(bar, beat), both from 1; in the count-in the bar is 0 and the beat counts the count-in's beats."""
        f = math.floor(self.position)
        if f < 0:
            beats_left = math.ceil(-self.position / self.beat_frames)
            return 0, beats_left
        return f // self.bar_frames + 1, (f % self.bar_frames) // self.beat_frames + 1

    def current(self) -> ChordBlock | None:
        f = math.floor(self.position)
        return next((b for b in self.chords if b.start <= f < b.end), None)

    def upcoming(self) -> ChordBlock | None:
        """The next chord change after now (a different chord, or the same chord struck again)."""
        cur = self.current()
        after = [b for b in self.chords if b.start > self.position]
        for b in after:
            if b.onset or cur is None or b.chord != cur.chord:
                return b
        return None

    def beats_until(self, block: ChordBlock) -> int:
        return max(1, math.ceil((block.start - self.position) / self.beat_frames))


@lru_cache(maxsize=512)
def display_voicing(root: int, pitch_classes: tuple[int, ...]) -> tuple[int | None, tuple[int, ...]]:
    v = voice(root, pitch_classes, _DISPLAY_VOICING)
    return v.bass, v.notes


def chord_blocks(frames: dict[int, tuple[int, bool]], position: float,
                 chord_info: dict[int, Token]) -> list[ChordBlock]:
    """Frame -> (token, committed) into blocks: a block ends where the chord changes, is struck again, or passes
    from promised to tentative; silence (tokens without chord info) draws nothing. A promised block wholly in
    the past is PLAYED (drawn dimmer); one that sounds now stays one solid block across the now line."""
    blocks: list[ChordBlock] = []
    cur = None  # [start, end, chord, info, committed, onset]
    for f in sorted(frames):
        tok, committed = frames[f]
        info = chord_info.get(tok)
        if info is None:
            if cur:
                blocks.append(_block(cur, position))
                cur = None
            continue
        strike = info.is_onset
        contiguous = cur is not None and cur[1] == f and cur[2] == info.chord
        if contiguous and not strike and cur[4] == committed:
            cur[1] = f + 1
            continue
        if cur:
            blocks.append(_block(cur, position))
        cur = [f, f + 1, info.chord, info, committed, not contiguous or strike]
    if cur:
        blocks.append(_block(cur, position))
    return blocks


def _block(cur: list, position: float) -> ChordBlock:
    start, end, chord, info, committed, onset = cur
    state = TENTATIVE if not committed else (PLAYED if end <= position else COMMITTED)
    bass, notes = display_voicing(info.root, info.pitch_classes)
    return ChordBlock(start, end, chord, info.symbol, bass, notes, state, onset)


def from_snapshot(snap, chord_info: dict[int, Token]) -> ViewState:
    """A ``JamSnapshot`` into what the view draws (committed entries win over tentative ones for a frame)."""
    frames: dict[int, tuple[int, bool]] = {}
    for f, tok, committed in snap.chords:
        if committed or f not in frames:
            frames[f] = (tok, committed)
    notes = [NoteBlock(p, on, off) for p, on, off in snap.notes]
    return ViewState(snap.position, snap.bpm, tuple(snap.meter), snap.listen,
                     chord_blocks(frames, snap.position, chord_info), notes, snap.model, snap.stats,
                     key=getattr(snap, "key", ""))
