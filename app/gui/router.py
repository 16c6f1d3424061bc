"""One road for every live note (MIDI keyboard, computer keyboard, demo melody) to the jam or, between jams,
straight to the synth; the keyboard's pedals and other controllers (``ControlEvent``) take the same road.

Why a thread of its own: the GUI thread must never touch the synth or wait on the engine's locks, and the jam
must get the notes in arrival order. Each event keeps the time it arrived (``NoteEvent.time``), so the queue's
small delay never moves a note on the grid; that delay is what the health line calls input latency.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque

from ..midi import NoteEvent

SOURCES = ("midi", "keys", "demo")


class NoteRouter:
    def __init__(self, idle_sinks: list) -> None:
        """``idle_sinks``: where notes sound between jams (the synth; MIDI out gets no thru)."""
        self.idle_sinks = idle_sinks
        self.session = None  # the running JamSession, set by the jam controller
        self.delivered = 0
        self.last_activity = {s: 0.0 for s in SOURCES}
        self._latency_ms: deque[float] = deque(maxlen=256)
        self._held: dict[int, None] = {}  # pitches down, for the on-screen keyboard
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="comper-notes", daemon=True)
        self._thread.start()

    def put(self, ev: NoteEvent, source: str = "keys") -> None:
        """Any thread: hand a note over (cheap, never blocks)."""
        self.last_activity[source] = time.monotonic()
        self._queue.put(ev)

    def held(self) -> list[int]:
        with self._lock:
            return list(self._held)

    def latency_ms(self) -> tuple[float, float]:
        """(median, max) of the recent arrival-to-sound delays."""
        with self._lock:
            xs = list(self._latency_ms)
        return (statistics.median(xs), max(xs)) if xs else (0.0, 0.0)

    def drain(self, timeout: float = 1.0) -> bool:
        """Wait until every note handed over so far was delivered (tests, stopping)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=1)

    def _run(self) -> None:
        while (ev := self._queue.get()) is not None:
            if isinstance(ev, threading.Event):
                ev.set()
                continue
            session = self.session
            try:
                if session is not None:
                    session.on_note(ev)
                elif ev.kind == "control":
                    for sink in self.idle_sinks:
                        if hasattr(sink, "control"):
                            sink.control("melody", ev.status, ev.data)
                else:
                    for sink in self.idle_sinks:
                        if ev.kind == "on":
                            sink.note_on("melody", ev.pitch, ev.velocity)
                        else:
                            sink.note_off("melody", ev.pitch)
            except Exception:  # noqa: BLE001 - one bad note must not silence the keyboard
                continue
            with self._lock:
                if ev.kind == "on":
                    self._held[ev.pitch] = None
                elif ev.kind == "off":
                    self._held.pop(ev.pitch, None)
                self._latency_ms.append((time.monotonic() - ev.time) * 1000)
                self.delivered += 1
