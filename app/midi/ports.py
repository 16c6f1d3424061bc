"""MIDI ports over python-rtmidi: list them, open them by name or as virtual ports.

A machine without a MIDI system (no ALSA sequencer, no JACK server) reads as "no MIDI devices" with a one-line
reason, never as an exception, because the app must start and explain itself on any machine.

Input is polled from rtmidi's own queue by a small Python thread instead of an rtmidi callback: a callback runs
Python inside JACK's process thread (the GIL would then stall the whole JACK graph) and can deadlock when the port
is closed while a message is arriving. Polling every millisecond costs a few wakeups and at most ~1 ms latency.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import rtmidi

from ..errors import ComperError

log = logging.getLogger(__name__)

_API_IDS: dict[str, int] = {
    name: ident
    for name, ident in (
        ("CoreMIDI", getattr(rtmidi, "API_MACOSX_CORE", None)),
        ("ALSA", getattr(rtmidi, "API_LINUX_ALSA", None)),
        ("JACK", getattr(rtmidi, "API_UNIX_JACK", None)),
        ("Windows MM", getattr(rtmidi, "API_WINDOWS_MM", None)),
    )
    if ident is not None
}
_ALIASES = {  # lower-case, letters only -> our name; accepts mido's names (UNIX_JACK, LINUX_ALSA, ...) too
    "coremidi": "CoreMIDI", "macosxcore": "CoreMIDI", "core": "CoreMIDI",
    "alsa": "ALSA", "linuxalsa": "ALSA",
    "jack": "JACK", "unixjack": "JACK",
    "windowsmm": "Windows MM", "winmm": "Windows MM", "mm": "Windows MM",
}
_VIRTUAL_OK = {"ALSA", "JACK", "CoreMIDI"}  # Windows MM cannot create virtual ports
_QUEUE_LIMIT = 4096  # rtmidi's input queue, in messages: room for a burst between two polls

InputCallback = Callable[[list[int], float], None]


class PortError(ComperError, RuntimeError):
    """A port could not be opened; the message is one line and names the ports that do exist."""


@dataclass(frozen=True)
class PortList:
    """The ports one MIDI API offers; `error` says in one line why the lists are empty when they must be."""

    inputs: list[str]
    outputs: list[str]
    api: str
    error: str | None = None


def available_apis() -> list[str]:
    """The MIDI APIs compiled into python-rtmidi here, in rtmidi's order of preference."""
    by_id = {ident: name for name, ident in _API_IDS.items()}
    return [by_id[a] for a in rtmidi.get_compiled_api() if a in by_id]


def canonical_api(api: str) -> str:
    """Our name for an API ("jack", "UNIX_JACK" -> "JACK"); a name we do not know is a programming error."""
    key = re.sub(r"[^a-z]", "", api.lower())
    if key not in _ALIASES:
        raise ValueError(f"unknown MIDI API {api!r} (known: {', '.join(_API_IDS)})")
    return _ALIASES[key]


def list_ports(api: str | None = None) -> PortList:
    """Input and output port names of `api`, or of the first API that works (and has ports) when None."""
    if api is not None:
        name = canonical_api(api)
        try:
            return PortList(_port_names("input", name), _port_names("output", name), name)
        except PortError as exc:
            return PortList([], [], name, str(exc))
    lists = [list_ports(a) for a in available_apis()]
    working = [p for p in lists if p.error is None]
    for p in working:
        if p.inputs or p.outputs:
            return p
    if working:
        return working[0]
    reasons = "; ".join(p.error for p in lists if p.error) or "python-rtmidi has no MIDI API compiled in"
    return PortList([], [], lists[0].api if lists else "none", f"no MIDI devices: {reasons}")


def match_port(name: str, names: Sequence[str]) -> str | None:
    """The port in `names` that `name` means: the exact name, else the one port equal to it up to the numbers
    ALSA and a2jmidid put in names (they change when a keyboard is replugged)."""
    if name in names:
        return name
    hits = [n for n in names if _port_key(n) == _port_key(name)]
    return hits[0] if len(hits) == 1 else None


def _port_key(name: str) -> str:
    name = re.sub(r"\s+\d+:\d+$", "", name)  # ALSA: "Keyboard:Keyboard MIDI 1 24:0"
    name = re.sub(r"\s*\[\d+\]", "", name)  # a2jmidid: "a2j:Keyboard [24] (capture): ..."
    return name.strip().casefold()


class _Port:
    """What input and output ports share: the rtmidi object, the name it is known by, and closing it."""

    kind = "port"

    def __init__(self, rt, name: str, api: str, virtual: bool) -> None:
        self._rt = rt
        self.name = name
        self.api = api
        self.virtual = virtual
        self._lock = threading.RLock()

    @property
    def is_open(self) -> bool:
        return self._rt is not None

    def present(self) -> bool:
        """Whether the port we are connected to still exists (our own virtual port always does while open)."""
        with self._lock:
            if self._rt is None:
                return False
            if self.virtual:
                return True
            try:
                return self.name in _names(self._rt)
            except Exception:  # noqa: BLE001 - a dead MIDI client means the port is gone
                return False

    def close(self) -> None:
        with self._lock:
            rt, self._rt = self._rt, None
        if rt is not None:
            _dispose(rt)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<{type(self).__name__} {self.name!r} {self.api}{' virtual' if self.virtual else ''} {state}>"


class InputPort(_Port):
    """An open MIDI input; a reader thread hands each raw message and its arrival time to the callback."""

    kind = "input"

    def __init__(self, rt, name: str, api: str, virtual: bool, callback: InputCallback,
                 poll_interval: float = 0.001) -> None:
        super().__init__(rt, name, api, virtual)
        self._callback = callback
        self._interval = poll_interval
        self._last = 0.0
        self.callback_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"midi-in {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                batch = self._take()
            if batch:
                self._deliver(batch)

    def _take(self) -> list[tuple[list[int], float]]:
        batch: list[tuple[list[int], float]] = []
        while self._rt is not None and len(batch) < _QUEUE_LIMIT:
            item = self._rt.get_message()
            if item is None:
                break
            batch.append(item)
        return batch

    def _deliver(self, batch: list[tuple[list[int], float]]) -> None:
        # rtmidi's deltas (seconds since the previous message) place the earlier messages of a batch back in time
        now = time.monotonic()
        times = [now] * len(batch)
        for i in range(len(batch) - 1, 0, -1):
            times[i - 1] = times[i] - max(0.0, batch[i][1])
        for (data, _), t in zip(batch, times):
            t = min(now, max(t, self._last))
            self._last = t
            try:
                self._callback(data, t)
            except Exception:  # noqa: BLE001 - a bad callback must not kill the reader
                self.callback_errors += 1
                log.exception("MIDI input callback failed on %s", data)

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        super().close()


class OutputPort(_Port):
    """An open MIDI output that sends raw messages."""

    kind = "output"

    def send(self, data: Sequence[int]) -> None:
        with self._lock:
            if self._rt is None:
                raise PortError(f"MIDI output {self.name!r} is closed")
            self._rt.send_message(list(data))
            self._last_send = time.monotonic()

    def close(self) -> None:
        """On JACK, messages wait in a ring buffer for the server's next cycle: closing at once would drop the
        last note-offs (seen on a loaded machine), so a port that just sent waits a few cycles first."""
        if self.api == "JACK":
            left = getattr(self, "_last_send", 0.0) + _JACK_DRAIN_S - time.monotonic()
            if left > 0:
                time.sleep(left)
        super().close()


def open_input(name: str, api: str | None, callback: InputCallback, virtual: bool = False, *,
               client_name: str = "Comper", poll_interval: float = 0.001, timing: bool = False) -> InputPort:
    """Open the input port called `name` (or create a virtual one other programs can send to).

    `callback(data, t)` runs on the port's reader thread with the raw bytes of one message and its arrival time
    on the `time.monotonic()` clock. SysEx, MIDI clock and active sensing are dropped by rtmidi itself, unless
    `timing` (a clock input: then clock, Start / Stop / Continue and Song Position Pointer come through).
    """
    rt, actual, chosen = _open("input", name, api, virtual, client_name, timing)
    return InputPort(rt, actual, chosen, virtual, callback, poll_interval)


def open_output(name: str, api: str | None, virtual: bool = False, *, client_name: str = "Comper") -> OutputPort:
    """Open the output port called `name` (or create a virtual one other programs can listen to)."""
    rt, actual, chosen = _open("output", name, api, virtual, client_name)
    return OutputPort(rt, actual, chosen, virtual)


def _open(kind: str, name: str, api: str | None, virtual: bool, client_name: str, timing: bool = False):
    apis = [canonical_api(api)] if api is not None else available_apis()
    errors: list[str] = []
    seen: list[tuple[str, list[str]]] = []
    for a in apis:
        if virtual and a not in _VIRTUAL_OK:
            errors.append(f"{a} cannot create virtual ports")
            continue
        try:
            rt = _new_client(kind, a, client_name, timing)
        except PortError as exc:
            errors.append(str(exc))
            continue
        try:
            if virtual:
                rt.open_virtual_port(name)
                return rt, name, a
            names = _names(rt)
            actual = match_port(name, names)
            if actual is not None:
                rt.open_port(names.index(actual), "in" if kind == "input" else "out")
                return rt, actual, a
            seen.append((a, names))
        except Exception as exc:  # noqa: BLE001 - rtmidi raises several types; all mean "could not open"
            errors.append(_explain(a, exc))
        _dispose(rt)
    what = f"virtual MIDI {kind} {name!r}" if virtual else f"MIDI {kind} port {name!r}"
    parts = [f"{a} has " + (", ".join(repr(n) for n in names) if names else "none") for a, names in seen]
    raise PortError(f"cannot open {what}: " + "; ".join(parts + errors or ["no MIDI API available"]))


def _unavailable(api: str) -> str | None:
    """Why `api` cannot work here, found without touching rtmidi (ALSA would print noise to stderr)."""
    if api not in available_apis():
        return f"{api}: not compiled into python-rtmidi here"
    if api == "ALSA" and sys.platform.startswith("linux") and not os.path.exists("/dev/snd/seq"):
        return "ALSA: no MIDI sequencer on this machine (/dev/snd/seq is missing)"
    return None


_JACK_DRAIN_S = 0.05  # several JACK cycles even at large periods on a busy, non-real-time server
_QUIET_LOCK = threading.Lock()  # two threads muting at once could leave stderr muted for good


@contextlib.contextmanager
def _quiet_stderr():
    """Mute file descriptor 2 for a moment: libjack prints five lines of its own there when no server runs,
    and the one-line reason is ours to give (``_explain``). Other threads' writes meanwhile are lost too."""
    with _QUIET_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (a GUI started without a console): nothing to do
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _new_client(kind: str, api: str, client_name: str, timing: bool = False):
    reason = _unavailable(api)
    if reason:
        raise PortError(reason)
    try:
        with _quiet_stderr() if api == "JACK" else contextlib.nullcontext():  # the client connects here
            if kind == "input":
                rt = rtmidi.MidiIn(_API_IDS[api], client_name, _QUEUE_LIMIT)
            else:
                rt = rtmidi.MidiOut(_API_IDS[api], client_name)
        if kind == "input":
            rt.ignore_types(sysex=True, timing=not timing, active_sense=True)
        return rt
    except Exception as exc:  # noqa: BLE001
        raise PortError(_explain(api, exc)) from exc


def _port_names(kind: str, api: str) -> list[str]:
    rt = _new_client(kind, api, "Comper lister")
    try:
        return _names(rt)
    except Exception as exc:  # noqa: BLE001
        raise PortError(_explain(api, exc)) from exc
    finally:
        _dispose(rt)


def _names(rt) -> list[str]:
    return [n for n in rt.get_ports() if n]


def _explain(api: str, exc: BaseException) -> str:
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "JACK server not running" in msg:
        return "JACK: no JACK server is running"
    if "ALSA sequencer" in msg:
        return "ALSA: no MIDI sequencer on this machine"
    return f"{api}: {msg}"


def _dispose(rt) -> None:
    # python-rtmidi objects sit in a reference cycle (their error handler), so dropping the last reference does
    # not close the client: JACK would keep the name taken. Close and delete explicitly.
    for step in (rt.close_port, rt.delete):
        try:
            step()
        except Exception:  # noqa: BLE001
            pass
