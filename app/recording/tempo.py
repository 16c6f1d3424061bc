"""The tempo map of a take: where each moment of the engine's clock falls on the frame grid.

Why: a jam's tempo can change while it runs (the Tempo setting, tap tempo: ``FrameClock.with_tempo``), and an
external MIDI clock gives every frame its own time (``follow.ClockFollower``). One tempo for the whole take put every
event after a change, and every event of a take on a drifting clock, off its beat in the saved file. The journal
says what the grid was (``journal.py``):

* ``tempo`` lines (frame, its time, bpm from it on): the jam's own clock changed tempo at that frame;
* ``grid`` lines (frame, its time): an external clock's frames, each as it was struck.

A journal with neither (every journal before them) has one tempo, the header's, from ``t0``, as always.

The map is a list of ``Segment`` (first frame, its time, bpm), as ``FrameClock.changes``: from a segment's time on,
frames advance at its tempo until the next segment starts; the first one also runs backward (the count-in, notes
played before the first frame). Grid lines become segments through consecutive frames, so between two frame times a
moment is placed linearly; a run of frames that one tempo places within ``TOLERANCE_FRAMES`` of every frame time is
one segment (a steady clock makes a few tempo changes, not one per 16th), and every frame still rounds to its own
tick in the file.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

FRAMES_PER_BEAT = 4
TOLERANCE_FRAMES = 0.25 / 120  # a quarter of a tick at 480 ticks a beat: a frame's time rounds to its own tick


@dataclass(frozen=True)
class Segment:
    frame: int  # the first frame at this tempo
    time: float  # its time on the engine's clock
    bpm: float

    @property
    def frame_seconds(self) -> float:
        return 60.0 / (self.bpm * FRAMES_PER_BEAT)

    def time_of(self, frame: float) -> float:
        return self.time + (frame - self.frame) * self.frame_seconds

    def position(self, t: float) -> float:
        return self.frame + (t - self.time) / self.frame_seconds


class TempoMap:
    """Clock time <-> fractional frame through segments in frame order (their times increasing)."""

    def __init__(self, segments: list[Segment]) -> None:
        if not segments:
            raise ValueError("a tempo map needs a segment")
        self.segments = list(segments)
        self._times = [s.time for s in self.segments]
        self._frames = [s.frame for s in self.segments]

    @property
    def bpm(self) -> float:
        """The starting tempo."""
        return self.segments[0].bpm

    @property
    def changed(self) -> bool:
        return len(self.segments) > 1

    def index_at(self, t: float) -> int:
        """The segment that holds time ``t`` (the first one for any time before it)."""
        return max(0, bisect.bisect_right(self._times, t) - 1)

    def position(self, t: float) -> float:
        return self.segments[self.index_at(t)].position(t)

    def time_of(self, frame: float) -> float:
        return self.segments[max(0, bisect.bisect_right(self._frames, frame) - 1)].time_of(frame)

    def starting_at(self, frame: float) -> TempoMap:
        """The map with the segments that end at or before ``frame`` left out (a file that starts there)."""
        segs = self.segments
        while len(segs) > 1 and segs[1].frame <= frame:
            segs = segs[1:]
        return TempoMap(segs)


def tempo_map(header: dict[str, Any], events: list[dict[str, Any]], timed: list[dict[str, Any]]) -> TempoMap:
    """The map of a journal (``header``, every event in file order; ``timed``: the events that sound, whose first
    chord, else first event, places frame 0 when the header has no ``t0``). Grid lines, where there are any, are
    the clock; else the header's tempo from ``t0`` with the journal's tempo changes."""
    bpm = float(header["bpm"])
    knots = _knots([(e["f"], e["t"]) for e in events if e["e"] == "grid"])
    if knots:
        return TempoMap(_through(knots, bpm))
    t0 = header.get("t0")
    segs = [Segment(0, 0.0 if t0 is None else t0, bpm)]
    for frame, new_bpm in _tempo_changes(events):
        while len(segs) > 1 and segs[-1].frame >= frame:  # FrameClock.with_tempo: a later change replaces it
            segs.pop()
        at = TempoMap(segs).time_of(frame)
        if frame < segs[0].frame:  # a change in the count-in: the starting tempo runs up to it
            segs[0] = Segment(frame, at, segs[0].bpm)
        segs.append(Segment(frame, at, new_bpm))
    if t0 is None:
        tempo_lines = [e for e in events if e["e"] == "tempo"]
        first = next((e for e in timed if e["e"] == "chord"), tempo_lines[0] if tempo_lines else
                     timed[0] if timed else None)
        if first is not None:
            shift = first["t"] - TempoMap(segs).time_of(first["f"])
            segs = [Segment(s.frame, s.time + shift, s.bpm) for s in segs]
    return TempoMap(segs)


def _tempo_changes(events: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(frame, bpm) of the tempo lines, in the order the clock took them."""
    return [(e["f"], float(e["bpm"])) for e in events if e["e"] == "tempo"]


def _knots(grid: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Grid lines in frame order, each frame once (its first line), and only those later than the one before:
    frames an external clock skipped (it resumed further on) get times reckoned back from its new ticks, which may
    fall before the last frame played."""
    out: list[tuple[int, float]] = []
    for frame, t in sorted(grid, key=lambda k: k[0]):
        if not out or (frame > out[-1][0] and t > out[-1][1]):
            out.append((frame, t))
    return out


def _through(knots: list[tuple[int, float]], bpm: float) -> list[Segment]:
    """Segments through the frame times ``knots`` (frames and times increasing): each as long as one tempo places
    every frame in it within ``TOLERANCE_FRAMES``; the last tempo goes on after the last frame (``bpm``, the
    header's, for a single frame). O(n): the rates (frames a second) that fit every frame so far narrow to an
    interval; the segment ends at the last frame before it is empty, where the next one starts."""
    segs: list[Segment] = []
    af, at = knots[0]
    lo, hi, last = 0.0, math.inf, None
    i = 1
    while i < len(knots):
        f, t = knots[i]
        dt = t - at
        if dt <= 0:  # only after an anchor moved within the tolerance past a frame a hair later: drop it
            i += 1
            continue
        nlo, nhi = max(lo, (f - af - TOLERANCE_FRAMES) / dt), min(hi, (f - af + TOLERANCE_FRAMES) / dt)
        if nlo <= nhi:
            lo, hi, last = nlo, nhi, f
            i += 1
            continue
        rate = (lo + hi) / 2
        segs.append(Segment(af, at, rate * 60.0 / FRAMES_PER_BEAT))
        at, af = at + (last - af) / rate, last
        lo, hi, last = 0.0, math.inf, None
    if last is not None:
        segs.append(Segment(af, at, (lo + hi) / 2 * 60.0 / FRAMES_PER_BEAT))
    elif not segs:
        segs.append(Segment(af, at, bpm))
    return segs
