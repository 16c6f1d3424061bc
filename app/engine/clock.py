"""The frame clock: one frame per 16th note on a monotonic clock, with a count-in before frame 0.

Frame times are computed from the session start and the tempo, never accumulated, so a long jam does not drift.
A tempo change (``with_tempo``) starts a new segment at a frame (the next beat): frames before it keep their times,
frames after it count from that frame's time at the new tempo; a clock is never changed, a new one replaces it.

An external MIDI clock (``follow.ClockFollower``) offers the same reading interface (``time_of``, ``position``,
``nearest_frame``, ``closed_frames``, ``bpm_at``), so the scheduler does not care which one it runs on.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FRAMES_PER_BEAT = 4


@dataclass(frozen=True)
class FrameClock:
    bpm: float
    start: float  # monotonic time of frame 0 (after the count-in)
    changes: tuple[tuple[float, float, float], ...] = ()  # (frame, its time, bpm from it on), in frame order

    @classmethod
    def starting_now(cls, bpm: float, count_in_beats: float = 0, now: float | None = None) -> FrameClock:
        now = time.monotonic() if now is None else now
        return cls(bpm, now + count_in_beats * 60.0 / bpm)

    @property
    def frame_seconds(self) -> float:
        return 60.0 / (self.bpm * FRAMES_PER_BEAT)

    def time_of(self, frame: float) -> float:
        f0, t0, bpm = self._segment(0, frame)
        return t0 + (frame - f0) * 60.0 / (bpm * FRAMES_PER_BEAT)

    def position(self, t: float) -> float:
        """Fractional frame at time ``t`` (negative during the count-in)."""
        f0, t0, bpm = self._segment(1, t)
        return f0 + (t - t0) * bpm * FRAMES_PER_BEAT / 60.0

    def bpm_at(self, t: float) -> float:
        """The tempo at time ``t``."""
        return self._segment(1, t)[2]

    def with_tempo(self, bpm: float, frame: int) -> FrameClock:
        """This clock with ``bpm`` from ``frame`` on (frames before it keep their times); later changes dropped."""
        if not bpm > 0:
            raise ValueError(f"tempo must be positive, got {bpm}")
        kept = tuple(c for c in self.changes if c[0] < frame)
        return FrameClock(self.bpm, self.start, (*kept, (float(frame), self.time_of(frame), float(bpm))))

    def _segment(self, by: int, value: float) -> tuple[float, float, float]:
        """The segment (start frame, its time, bpm) holding ``value``: a frame (``by`` 0) or a time (``by`` 1)."""
        seg = (0.0, self.start, self.bpm)
        for change in self.changes:
            if change[by] > value:
                break
            seg = change
        return seg

    def nearest_frame(self, t: float) -> int:
        return int(math.floor(self.position(t) + 0.5))

    def closed_frames(self, t: float) -> int:
        """How many frames can no longer receive a note: frame f is closed once no event can round into it."""
        return max(0, int(math.floor(self.position(t) - 0.5)) + 1)


RECHECK_S = 0.004  # how often a wait on a clock that can move (tempo change, external clock) reads it again


def wait_for(deadline: Callable[[], float], stop: threading.Event, spin: float = 0.0015) -> bool:
    """Wait until ``time.monotonic() >= deadline()``, reading ``deadline`` again every ``RECHECK_S`` (a tempo
    change or an external clock's ticks move it; ``inf``: not yet known, e.g. a stopped external clock); the last
    ``spin`` seconds are spun, not slept (sleep overshoots by up to ~1 ms). False if ``stop`` was set."""
    while True:
        left = deadline() - time.monotonic()
        if left <= 0:
            return not stop.is_set()
        if left > spin:
            if stop.wait(min(left - spin, RECHECK_S)):
                return False
        elif stop.is_set():
            return False
