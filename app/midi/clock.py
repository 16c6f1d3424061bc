"""MIDI clock over the ports: in, a port whose clock the jam follows (``ClockInput`` feeding a
``ClockFollower``); out, the jam's own clock sent to a port (``ClockSender``) so a DAW or drum machine follows
Comper. 24 ticks per quarter note, Start / Stop (and Continue / Song Position Pointer) as the MIDI spec has them.

Why hand-written: rtmidi only moves bytes and mido's ports add nothing for clock; what matters here is timing,
which the engine's frame clock already defines. The sender is a small thread that waits for each tick's time on
the jam's clock (read again every few ms, so a tempo change takes effect at the beat the clock says) and sends
one byte; the receiver is the ordinary input port with timing messages let through.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..engine.clock import wait_for
from ..engine.follow import CONTINUE, START, STOP, TICK, TICKS_PER_FRAME, ClockFollower
from .parser import StreamParser
from .ports import open_input
from .reconnecting import ReconnectingPort

VIRTUAL = "virtual"  # what a clock (or note) port option names to mean "a virtual port of our own"


class ClockInput(ReconnectingPort):
    """A MIDI input by name (or a virtual one) whose clock messages drive ``follower``; other messages are
    ignored. Survives unplugging as the keyboard input does (``check()``); while it is gone the clock goes quiet
    and the jam waits."""

    def __init__(self, name: str, follower: ClockFollower, *, api: str | None = None, virtual: bool = False,
                 wait_for_port: bool = False, client_name: str = "Comper clock") -> None:
        self.follower = follower
        self._parser = StreamParser()
        self._parse_lock = threading.Lock()
        self.other = 0  # messages that were not clock
        self._start(name, api, virtual, client_name, wait_for_port)

    def feed(self, data: Iterable[int], t: float) -> None:
        """Raw bytes that arrived at ``t`` (public so tests can drive the same path)."""
        with self._parse_lock:
            messages = self._parser.feed(data)
        for msg in messages:
            if not self.follower.message(msg, t):
                self.other += 1

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            port, self._port = self._port, None
        if port is not None:
            port.close()

    def __enter__(self) -> ClockInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        self._port = open_input(self.name, self._api, self.feed, self._virtual, client_name=self._client_name,
                                timing=True)

    def _lose_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()


class ClockSender:
    """Sends MIDI clock for the jam's own clock to ``outputs`` (``MidiOutput`` s): ticks from when it starts
    (the count-in, so a follower locks its tempo first), Start just before the tick of frame 0 (the follower's
    song position 0 is Comper's first bar after the count-in), Stop when it stops. Started mid-jam it sends a Song
    Position Pointer and Continue instead of Start. ``clock()`` is read before every tick: a new clock (a tempo
    change) takes effect where it says."""

    def __init__(self, outputs: Sequence, clock: Callable[[], object], spin: float = 0.0005,
                 priority: Callable[[], bool] | None = None) -> None:
        """``priority``: called on the sender's thread first (the jam's ``realtime_priority``), or None."""
        self.outputs, self.clock, self.spin, self.priority = list(outputs), clock, spin, priority
        self.ticks = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="comper-clock-out", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and send Stop (if Start was sent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self.started:
            self._send(STOP)
            self.started = False

    def _send(self, *messages: int) -> None:
        for out in self.outputs:
            for status in messages:
                try:
                    out.realtime(status)
                except Exception:  # noqa: BLE001 - a flaky port must not stop the clock for the others
                    pass

    def _run(self) -> None:
        if self.priority is not None:
            self.priority()
        c = math.ceil(self.clock().position(time.monotonic()) * TICKS_PER_FRAME)
        if c > 0:  # started mid-jam: say where we are, on the next 16th
            c = -(-c // TICKS_PER_FRAME) * TICKS_PER_FRAME
        while wait_for(lambda f=c / TICKS_PER_FRAME: self.clock().time_of(f), self._stop, self.spin):
            if not self.started and c >= 0:
                if c == 0:
                    self._send(START)
                else:
                    for out in self.outputs:
                        try:
                            out.song_position(min(c // TICKS_PER_FRAME, (1 << 14) - 1))
                        except Exception:  # noqa: BLE001 - as in _send
                            pass
                    self._send(CONTINUE)
                self.started = True
            self._send(TICK)
            self.ticks += 1
            c += 1

