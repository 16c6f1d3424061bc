"""The frame clock: one frame per 16th note on a monotonic clock, with a count-in before frame 0.

Frame times are computed from the session start and the tempo, never accumulated, so a long jam does not drift.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

FRAMES_PER_BEAT = 4


@dataclass(frozen=True)
class FrameClock:
    bpm: float
    start: float  # monotonic time of frame 0 (after the count-in)

    @classmethod
    def starting_now(cls, bpm: float, count_in_beats: float = 0, now: float | None = None) -> FrameClock:
        now = time.monotonic() if now is None else now
        return cls(bpm, now + count_in_beats * 60.0 / bpm)

    @property
    def frame_seconds(self) -> float:
        return 60.0 / (self.bpm * FRAMES_PER_BEAT)

    def time_of(self, frame: float) -> float:
        return self.start + frame * self.frame_seconds

    def position(self, t: float) -> float:
        """Fractional frame at time ``t`` (negative during the count-in)."""
        return (t - self.start) / self.frame_seconds

    def nearest_frame(self, t: float) -> int:
        return int(math.floor(self.position(t) + 0.5))

    def closed_frames(self, t: float) -> int:
        """How many frames can no longer receive a note: frame f is closed once no event can round into it."""
        return max(0, int(math.floor(self.position(t) - 0.5)) + 1)
