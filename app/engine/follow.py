"""Following an external MIDI clock: 24 ticks per quarter note in, the frame clock the jam runs on out (one
frame = one 16th = 6 ticks). No I/O: ``midi/clock.py`` feeds it the messages with their arrival times.

Why hand-written: mido and python-rtmidi deliver the clock bytes but nothing turns them into a tempo, and the
job is small. What it does:

* **Tempo**: a least-squares line through the arrival times of the last 12 ticks (half a beat): its slope is the
  tick period, its value at the last tick the smoothed time of that tick. One tick's jitter (a JACK period, a poll
  interval) moves the prediction by a fraction of itself; a longer fit smooths more but lags a tempo ramp more
  (measured: a 90 -> 120 bpm ramp over 8 beats is followed within about 1 ms with 12 ticks, 2.5 ms with 24). A
  tick far off the line is held out of the fit (a late wake-up on the way); three off it the same way in a row
  are a jump (the source set to another tempo): the fit starts again from them, locked within a few ticks.
* **Phase**: frame ``g`` is the tick with Comper index ``6 g``; the time of a frame still to come is the smoothed
  time of the last tick plus the ticks to go times the period, so it is read again as ticks arrive (the scheduler
  re-reads it every few ms and strikes on the freshest prediction, at most one tick ahead). Past frames keep the
  time their tick was given.
* **Transport**: Start, Continue and Song Position Pointer set where the next tick is in the song; Stop pauses
  (the time of every frame to come is infinite until the clock runs again; listeners are told, so the jam can
  release its chord). Comper's frames only go forward (its planner's history cannot rewind), so a song position
  chooses the *bar phase* of the next frame: the jam resumes at the first frame ahead that sits where the song
  position sits in its bar (the frames in between pass unplayed). The first Start is song position 0 minus the
  count-in: the count-in bars run on the external clock, and frame 0 falls on the song's bar line after them.
* **A clock that goes quiet** (a cable pulled, no Stop) pauses the jam too: a frame more than one tick past the
  last tick waits once ``LOST_TICKS`` periods have passed without one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from .clock import FRAMES_PER_BEAT

TICKS_PER_BEAT = 24
TICKS_PER_FRAME = TICKS_PER_BEAT // FRAMES_PER_BEAT  # 6
WINDOW = 12  # ticks in the tempo fit: half a beat (a longer fit lags a tempo ramp more than it smooths)
LOST_TICKS = 3.0  # this many periods without a tick: the clock is gone, the jam waits
JUMP_TICKS = 3  # residuals of one sign in a row, beyond JUMP_S / JUMP_SHARE of a period, reset the fit
JUMP_S, JUMP_SHARE = 0.006, 0.3
GAP_S = 0.5  # ticks further apart than this start a new fit (a source that was silent while stopped)
_KEEP_FRAMES = 4096  # past frame times kept (the scheduler and the recorder ask for recent ones only)

START, CONTINUE, STOP, TICK, SONG_POSITION = 0xFA, 0xFB, 0xFC, 0xF8, 0xF2


class ClockFollower:
    """A frame clock driven by MIDI clock messages (``tick``, ``start``, ``cont``, ``stop``, ``song_position`` or
    raw bytes through ``message``); thread-safe: fed by the port's reader thread, read by the jam's threads."""

    external = True

    def __init__(self, bpm: float = 120.0, count_in_frames: int = 0, bar_frames: int = 16) -> None:
        """``bpm``: the tempo assumed until ticks say otherwise; ``count_in_frames``: frames between the first
        Start and frame 0 (whole bars); ``bar_frames``: the jam's bar, whose phase a song position keeps."""
        if not bpm > 0 or count_in_frames < 0 or bar_frames < 1:
            raise ValueError(f"bad clock follower: bpm {bpm}, count-in {count_in_frames}, bar {bar_frames}")
        self._lock = threading.Lock()
        self._period = 60.0 / (TICKS_PER_BEAT * bpm)  # seconds per tick
        self._fit: deque[tuple[int, float]] = deque(maxlen=WINDOW)  # (tick count, arrival time)
        self._count = 0  # ticks received, running or not (the fit's x)
        self._residuals: deque[float] = deque(maxlen=JUMP_TICKS)  # the last ticks off the line, in a row
        self._recent: deque[tuple[int, float]] = deque(maxlen=JUMP_TICKS)  # every recent tick, on the line or not
        self._t_last: float | None = None  # smoothed time of the last tick
        self._raw_last: float | None = None  # its arrival time
        self._bar_ticks = bar_frames * TICKS_PER_FRAME
        self._origin = -count_in_frames * TICKS_PER_FRAME  # Comper tick of song position 0 (bar phase)
        self._c_last = self._origin - 1  # Comper tick of the last running tick
        self._song = 0  # song position (ticks) of the next tick
        self._resync = True  # the next running tick comes after a Start / Continue / Song Position Pointer
        self._frames: dict[int, float] = {}  # frame -> the smoothed time of its tick
        self.running = False
        self.listeners: list[Callable[[str, float], None]] = []  # told ("start" | "continue" | "stop", time)
        self.ticks = 0
        self.jumps = 0  # tempo jumps detected

    @classmethod
    def for_jam(cls, settings) -> ClockFollower:
        """The follower of a jam with these ``JamSettings``: its tempo until ticks come, count-in and bar."""
        num, den = settings.meter
        return cls(settings.bpm, round(settings.count_in_beats * FRAMES_PER_BEAT), num * 16 // den)

    # --- messages in ------------------------------------------------------------------------------------------

    def message(self, msg: tuple[int, ...] | list[int], t: float) -> bool:
        """One MIDI message that arrived at ``t``; True if it was a clock message."""
        status = msg[0] if msg else 0
        if status == TICK:
            self.tick(t)
        elif status == START:
            self.start(t)
        elif status == CONTINUE:
            self.cont(t)
        elif status == STOP:
            self.stop(t)
        elif status == SONG_POSITION and len(msg) == 3:
            self.song_position(msg[1] | msg[2] << 7)
        else:
            return False
        return True

    def tick(self, t: float) -> None:
        with self._lock:
            self.ticks += 1
            self._fit_tick(t)
            if not self.running:
                return
            c = self._c_last + 1
            if self._resync:
                c += (self._song + self._origin - c) % self._bar_ticks
                self._resync = False
            self._c_last = c
            self._song += 1
            if c % TICKS_PER_FRAME == 0:
                frame = c // TICKS_PER_FRAME
                self._frames[frame] = self._t_last
                self._frames.pop(frame - _KEEP_FRAMES, None)

    def start(self, t: float) -> None:
        """Start: the next tick is song position 0."""
        self._transport("start", t, song=0)

    def cont(self, t: float) -> None:
        """Continue: the next tick is where the song stopped (or where a Song Position Pointer put it)."""
        self._transport("continue", t)

    def song_position(self, sixteenths: int) -> None:
        """Song Position Pointer (in 16ths, as MIDI counts them): where the next tick is in the song."""
        with self._lock:
            self._song, self._resync = sixteenths * TICKS_PER_FRAME, True

    def stop(self, t: float) -> None:
        with self._lock:
            was, self.running = self.running, False
        if was:
            self._tell("stop", t)

    def _transport(self, what: str, t: float, song: int | None = None) -> None:
        with self._lock:
            if song is not None:
                self._song = song
            self.running, self._resync = True, True
        self._tell(what, t)

    def _tell(self, what: str, t: float) -> None:
        for listener in list(self.listeners):
            listener(what, t)

    def _fit_tick(self, t: float) -> None:
        """Add a tick to the tempo fit and set the smoothed time of the last tick. A tick far off the line is
        held out (a late wake-up somewhere on the way), unless the next ones are off the same way (a jump): then
        the fit starts again from them."""
        self._count += 1
        self._recent.append((self._count, t))
        if self._raw_last is not None and t - self._raw_last > GAP_S:
            self._fit.clear()
        self._raw_last = t
        if self._t_last is not None and self._fit:
            residual = t - (self._t_last + self._period)
            if abs(residual) > max(JUMP_S, JUMP_SHARE * self._period):
                self._residuals.append(residual)
                if len(self._residuals) < JUMP_TICKS or len({r > 0 for r in self._residuals}) > 1:
                    self._t_last += self._period  # an outlier: the line goes on without it
                    return
                self._fit.clear()
                self._fit.extend(list(self._recent)[-JUMP_TICKS:-1])
                self.jumps += 1
            self._residuals.clear()
        self._fit.append((self._count, t))
        n = len(self._fit)
        if n >= 3:
            mx = sum(x for x, _ in self._fit) / n
            my = sum(y for _, y in self._fit) / n
            sxx = sum((x - mx) ** 2 for x, _ in self._fit)
            slope = sum((x - mx) * (y - my) for x, y in self._fit) / sxx
            if slope > 0:
                self._period = slope
            self._t_last = my + self._period * (self._count - mx)
        elif n == 2:
            self._period = (self._fit[1][1] - self._fit[0][1]) / (self._fit[1][0] - self._fit[0][0]) or self._period
            self._t_last = t
        else:
            self._t_last = t

    # --- the frame clock ------------------------------------------------------------------------------------

    @property
    def start_time(self) -> float | None:
        """The time of frame 0 once its tick came (None before)."""
        with self._lock:
            return self._frames.get(0)

    @property
    def frame_seconds(self) -> float:
        with self._lock:
            return self._period * TICKS_PER_FRAME

    def bpm_at(self, t: float | None = None) -> float:
        """The tempo the ticks say now."""
        with self._lock:
            return 60.0 / (TICKS_PER_BEAT * self._period)

    def time_of(self, frame: float) -> float:
        """When ``frame`` (fractional: ``g + 0.5`` is half-way) starts; ``inf`` while the clock is stopped or lost
        and the frame is still to come. Read it again as time passes: ticks move it."""
        c = frame * TICKS_PER_FRAME
        with self._lock:
            if c <= self._c_last and self._t_last is not None:
                past = self._frames.get(int(frame)) if frame == int(frame) else None
                return past if past is not None else self._t_last - (self._c_last - c) * self._period
            if not self.running or self._t_last is None:
                return math.inf
            ahead = c - self._c_last
            if self._resync:  # the first tick after a Start / Continue / SPP has not come
                return math.inf
            if ahead > 1 and time.monotonic() > self._raw_last + LOST_TICKS * self._period:
                return math.inf
            return self._t_last + ahead * self._period

    def position(self, t: float) -> float:
        """Fractional frame at ``t``: it moves with the ticks, at most one tick past the last, and stands still
        while stopped."""
        with self._lock:
            if self._t_last is None or self._c_last < self._origin:
                return self._origin / TICKS_PER_FRAME
            ahead = 0.0 if not self.running or self._resync else (t - self._t_last) / self._period
            return (self._c_last + min(ahead, 1.0)) / TICKS_PER_FRAME

    def nearest_frame(self, t: float) -> int:
        return int(math.floor(self.position(t) + 0.5))

    def closed_frames(self, t: float) -> int:
        """How many frames can no longer receive a note (as ``FrameClock.closed_frames``)."""
        return max(0, int(math.floor(self.position(t) - 0.5)) + 1)
