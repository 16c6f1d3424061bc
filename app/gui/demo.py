"""The demo player: the bundled melody played into the jam as if a musician played it, looped.

Each note is handed over at its time in the file on the jam's clock, stamped with that time, so the engine sees
exactly what a perfectly steady player would give it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..engine.clock import FrameClock, wait_for
from ..engine.midifile import read_melody
from ..midi import NoteEvent
from .loop_thread import LoopThread

DEMO_MELODY = Path(__file__).resolve().parents[2] / "assets" / "melodies" / "ode_to_joy.mid"


def demo_events(path: Path = DEMO_MELODY, loops: int = 1000, bar_frames: int = 16) -> list[tuple[float, str, int, int]]:
    """(frame, "on"/"off", pitch, velocity) of the melody repeated ``loops`` times, each loop a whole number of
    bars long; offs sort before ons at the same frame."""
    one = read_melody(path).events()
    length = -(-one[-1][0] // bar_frames) * bar_frames
    return [(f + i * length, kind, p, v) for i in range(loops) for f, kind, p, v in one]


class DemoPlayer(LoopThread):
    def __init__(self, put, path: Path = DEMO_MELODY) -> None:
        """``put(NoteEvent, source)``: where notes go (the router)."""
        super().__init__()
        self.put, self.path = put, path

    def start(self, clock: Callable[[], FrameClock], bar_frames: int) -> None:
        """Play on ``clock()`` (the jam's clock now: a tempo change replaces it)."""
        self.stop()
        events = demo_events(self.path, loops=200, bar_frames=bar_frames)
        self.launch("comper-demo", self._run, clock, events)

    def _run(self, clock: Callable[[], FrameClock], events, stop: threading.Event) -> None:
        down: set[int] = set()
        for frame, kind, pitch, vel in events:
            if not wait_for(lambda f=frame: clock().time_of(f), stop):
                break
            t = clock().time_of(frame)
            (down.add if kind == "on" else down.discard)(pitch)
            self.put(NoteEvent(t, kind, pitch, vel, 0), "demo")
        now = time.monotonic()
        for pitch in down:  # stopped mid-note: end it
            self.put(NoteEvent(now, "off", pitch, 0, 0), "demo")
