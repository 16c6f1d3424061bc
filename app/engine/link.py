"""Ableton Link: the jam's frame clock taken from a Link session's beat timeline (the optional extra
``pip install 'comper[link]'``), so Comper plays in time with a DAW, a drum machine app or any Link peer on the
network, and their tempo changes move it.

Which binding, and why: ``LinkPython-extern`` (PyPI; ``import link``), a pybind11 binding of Ableton's own C++
Link library, maintained, with manylinux wheels. It is synchronous: ``captureAppSessionState()`` reads the session
from any thread, as the scheduler reads its clock every few ms (``clock.wait_for``); the other binding on PyPI,
``aalink``, is asyncio-based (``await link.sync(beat)``) and would need an event loop beside the jam's threads.

How the frames sit on the session: frame ``g`` is session beat ``b0 + g / 4``, where ``b0`` is a bar line
(``quantum`` = beats per bar, as Link aligns phase) at least the count-in ahead of the start, so frame 0 falls on
the session's downbeat. Link's clock (``Clock.micros``) is ``CLOCK_MONOTONIC_RAW`` on Linux, not
``time.monotonic``'s ``CLOCK_MONOTONIC`` (they differ by an offset, and NTP slews one of them): the offset is
measured (the reading between two ``time.monotonic`` calls, the tightest of a few) and measured again each second.

Tempo: the session's tempo, set by any peer, is read at every read of the clock. Comper's own tempo change
(``set_tempo``) sets the session tempo from the next beat (Link keeps that beat where it was). A frame whose time
has passed keeps it: past frames are frozen as time reaches them, so a change (or a peer moving the phase) moves
only frames still to come, and the scheduler's waits stay valid. Link's start/stop sync is not used: the jam runs
while Comper runs (``listeners`` stays empty).
"""

from __future__ import annotations

import math
import threading
import time

from .clock import FRAMES_PER_BEAT

_KEEP_FRAMES = 4096  # past frame times kept (the scheduler and the recorder ask for recent ones only)
_OFFSET_EVERY_S = 1.0  # how often the Link clock's offset to time.monotonic is measured again
INSTALL_HINT = "Ableton Link needs the optional extra: pip install 'comper[link]'"


def load_binding():
    """The ``link`` module of LinkPython-extern; ``ImportError`` with the install hint if it is missing."""
    try:
        import link
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return link


class LinkClock:
    """A frame clock on an Ableton Link session (the interface of ``clock.FrameClock``: ``time_of``,
    ``position``, ``nearest_frame``, ``closed_frames``, ``bpm_at``); thread-safe."""

    external = True  # its tempo is the session's: the recorder writes each frame's time

    def __init__(self, bpm: float = 120.0, count_in_beats: float = 0, bar_frames: int = 16, *, link=None,
                 now: float | None = None) -> None:
        """Join (or start) a Link session: ``bpm`` is its tempo if no peer has one; frame 0 is the first bar line
        of the session at least ``count_in_beats`` from ``now``. ``link``: a ``link.Link`` to use (enabled here)."""
        if not bpm > 0 or count_in_beats < 0 or bar_frames < 1:
            raise ValueError(f"bad Link clock: bpm {bpm}, count-in {count_in_beats}, bar {bar_frames}")
        if link is None:
            link = load_binding().Link(float(bpm))
        elif link.numPeers() == 0:  # a session of our own (joined earlier): the jam's tempo
            state = link.captureAppSessionState()
            state.setTempo(float(bpm), link.clock().micros())
            link.commitAppSessionState(state)
        self.link = link
        self.link.enabled = True
        self.quantum = bar_frames / FRAMES_PER_BEAT
        self.listeners: list = []  # no transport: Link's start/stop sync is not used
        self._lock = threading.Lock()
        self._offset = 0.0
        self._offset_at = -math.inf
        now = time.monotonic() if now is None else now
        us0, beat0, tempo = self._read(now)
        beat_now = beat0 + (now - (us0 * 1e-6 + self._offset)) * tempo / 60.0
        self.b0 = math.ceil((beat_now + count_in_beats) / self.quantum - 1e-9) * self.quantum
        self._frozen: dict[int, float] = {}  # frame -> its time, once time reached it
        self._last = math.floor(self._pos(now, (us0, beat0, tempo)))  # the last frame frozen (none yet: none due)

    @classmethod
    def for_jam(cls, settings, link=None) -> LinkClock:
        """The Link clock of a jam with these ``JamSettings``: its tempo (if no peer has one), count-in and bar."""
        num, den = settings.meter
        return cls(settings.bpm, settings.count_in_beats, num * 16 // den, link=link)

    # --- reading the session ------------------------------------------------------------------------------

    def _measure_offset(self) -> None:
        """``time.monotonic() - Link's clock``, the tightest of five bracketed readings."""
        clock, best = self.link.clock(), None
        for _ in range(5):
            a = time.monotonic()
            us = clock.micros()
            b = time.monotonic()
            if best is None or b - a < best[0]:
                best = (b - a, (a + b) / 2 - us * 1e-6)
        self._offset, self._offset_at = best[1], time.monotonic()

    def _read(self, now: float) -> tuple[int, float, float]:
        """The session now: (a Link time in µs, the session beat there, the tempo)."""
        if now - self._offset_at > _OFFSET_EVERY_S:
            self._measure_offset()
        state = self.link.captureAppSessionState()
        us = self.link.clock().micros()
        return us, state.beatAtTime(us, self.quantum), state.tempo()

    def _pos(self, t: float, session: tuple[int, float, float]) -> float:
        """Frame at monotonic ``t`` on the session's timeline (nothing frozen)."""
        us, beat, tempo = session
        return (beat + (t - (us * 1e-6 + self._offset)) * tempo / 60.0 - self.b0) * FRAMES_PER_BEAT

    def _time(self, frame: float, session: tuple[int, float, float]) -> float:
        """Monotonic time of ``frame`` on the session's timeline (nothing frozen)."""
        us, beat, tempo = session
        return us * 1e-6 + self._offset + (self.b0 + frame / FRAMES_PER_BEAT - beat) * 60.0 / tempo

    def link_micros(self, t: float) -> int:
        """Link's clock at monotonic ``t``."""
        return round((t - self._offset) * 1e6)

    def _session(self) -> tuple[int, float, float]:
        """Read the session and freeze every frame whose time has come; the caller holds the lock."""
        now = time.monotonic()
        session = self._read(now)
        self._freeze_until(now, session)
        return session

    def _freeze_until(self, t: float, session: tuple[int, float, float]) -> None:
        last_t = self._frozen.get(self._last, -math.inf)
        for g in range(self._last + 1, math.floor(self._pos(t, session)) + 1):
            last_t = max(self._time(g, session), last_t)
            self._frozen[g] = last_t
            self._frozen.pop(g - _KEEP_FRAMES, None)
            self._last = g

    # --- the frame clock ----------------------------------------------------------------------------------

    @property
    def start_time(self) -> float:
        """The time of frame 0 (as the session says now, or as it was once passed)."""
        return self.time_of(0)

    @property
    def frame_seconds(self) -> float:
        return 60.0 / (self.bpm_at() * FRAMES_PER_BEAT)

    def bpm_at(self, t: float | None = None) -> float:
        """The session's tempo now."""
        with self._lock:
            return self._session()[2]

    def time_of(self, frame: float) -> float:
        """When ``frame`` (fractional: ``g + 0.5`` is half-way) starts: a past frame its frozen time, a frame to
        come as the session says now (read it again: the session's tempo moves it)."""
        with self._lock:
            session = self._session()
            g = math.floor(frame)
            a = self._frozen.get(g)
            if a is None or g > self._last:
                return max(self._time(frame, session), self._frozen.get(self._last, -math.inf))
            if frame == g:
                return a
            b = self._frozen.get(g + 1)
            if b is None:
                b = max(self._time(g + 1, session), a)
            return a + (frame - g) * (b - a)

    def position(self, t: float) -> float:
        """Fractional frame at ``t``: between frozen frames, as they were passed; beyond them, on the session."""
        with self._lock:
            session = self._session()
            last_t = self._frozen.get(self._last)
            if last_t is not None and t < last_t:
                g = self._last
                while g - 1 in self._frozen and self._frozen[g - 1] > t:
                    g -= 1
                a = self._frozen.get(g - 1)
                if a is not None:
                    return g - 1 + (t - a) / (self._frozen[g] - a) if self._frozen[g] > a else float(g)
            pos = self._pos(t, session)
            return max(pos, self._last) if last_t is not None and t >= last_t else pos

    def nearest_frame(self, t: float) -> int:
        return int(math.floor(self.position(t) + 0.5))

    def closed_frames(self, t: float) -> int:
        """How many frames can no longer receive a note (as ``FrameClock.closed_frames``)."""
        return max(0, int(math.floor(self.position(t) - 0.5)) + 1)

    # --- Comper's own tempo -------------------------------------------------------------------------------

    def set_tempo(self, bpm: float) -> int:
        """Set the session's tempo to ``bpm`` from the next beat on (every peer follows); frames before it keep
        their times. Returns that beat's frame."""
        if not bpm > 0:
            raise ValueError(f"tempo must be positive, got {bpm}")
        with self._lock:
            now = time.monotonic()
            session = self._read(now)
            beat = (math.floor(self._pos(now, session) / FRAMES_PER_BEAT) + 1) * FRAMES_PER_BEAT
            at = self._time(beat, session)
            self._freeze_until(at - 1e-9, session)  # the rest of this beat keeps the old tempo
            state = self.link.captureAppSessionState()
            state.setTempo(float(bpm), self.link_micros(at))  # Link keeps the beat at ``at`` where it was
            self.link.commitAppSessionState(state)
            return beat

    def close(self) -> None:
        """Leave the session."""
        self.link.enabled = False
