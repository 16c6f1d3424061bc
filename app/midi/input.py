"""The player's keyboard as a stream of clean note events, surviving bad input and unplugging."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Literal

from app.midi.output import ALL_NOTES_OFF, ALL_SOUND_OFF
from app.midi.parser import StreamParser
from app.midi.ports import open_input
from app.midi.reconnecting import ReconnectingPort


@dataclass(frozen=True, slots=True)
class NoteEvent:
    """One note starting or stopping; `time` is `time.monotonic()` at arrival, `channel` is 0-15."""

    time: float
    kind: Literal["on", "off"]
    pitch: int
    velocity: int
    channel: int


CONTROL_TYPES = (0xA0, 0xB0, 0xD0, 0xE0)  # poly pressure, control change, channel pressure, pitch bend
CHANNEL_MODE = frozenset({122, 124, 125, 126, 127})  # local control, omni/mono/poly: the keyboard's own setup
_CONTROL_LENGTH = {0xA0: 3, 0xB0: 3, 0xD0: 2, 0xE0: 3}


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A channel message from the keyboard that is not a note: a controller (``status`` 0xB0, ``data`` =
    (controller, value): sustain is CC64, soft pedal CC67, mod wheel CC1), pitch bend (0xE0, (lsb, msb)),
    channel pressure (0xD0, (value,)) or poly pressure (0xA0, (pitch, value)). ``status`` has the channel bits
    cleared; ``channel`` is 0-15 and ``time`` is ``time.monotonic()`` at arrival, as in ``NoteEvent``. It sounds
    on the melody part (thru) and is recorded; the model never hears it."""

    time: float
    status: int
    data: tuple[int, ...]
    channel: int
    kind: Literal["control"] = "control"

    def message(self, channel: int) -> tuple[int, ...]:
        """The raw MIDI message on ``channel``."""
        return (self.status | channel, *self.data)


@dataclass
class InputStats:
    """What came in and what was dropped, so the UI can say why a note did not arrive."""

    notes_on: int = 0
    notes_off: int = 0
    ignored: int = 0  # other messages that got past rtmidi's own filter (program change, channel mode, ...)
    controls: int = 0  # controllers, pitch bend and pressure delivered as ControlEvents
    unmatched_off: int = 0  # note-offs for notes that never started
    out_of_range: int = 0  # notes outside the keyboard range
    other_channel: int = 0  # notes and controls on channels the filter excludes
    stray_bytes: int = 0  # data bytes with no status, abandoned partial messages
    released: int = 0  # note-offs made up for held notes: the port vanished or closed, or All Notes/Sound Off
    all_off: int = 0  # All Sound Off (CC120) and All Notes Off (CC123) messages honoured
    disconnects: int = 0
    reconnects: int = 0


@dataclass
class NoteFilter:
    """Turns raw MIDI bytes into NoteEvents: velocity-0 note-on is a note-off, every delivered note-on gets one
    note-off, All Sound Off (CC120) and All Notes Off (CC123) end every note held on their channel (a keyboard's
    panic button: the thru note and the melody the model hears stop with it). Controllers (sustain, soft pedal,
    mod wheel, ...), pitch bend and channel / poly pressure are delivered as ControlEvents to the same callback.
    Everything else (program changes, the channel mode messages ``CHANNEL_MODE``, system messages; and notes or
    controls outside the range or channels) is dropped and counted. No I/O."""

    callback: Callable[[NoteEvent | ControlEvent], None]
    channels: frozenset[int] | None = None
    key_range: tuple[int, int] = (0, 127)
    stats: InputStats = field(default_factory=InputStats)

    def __post_init__(self) -> None:
        self._parser = StreamParser()
        self._held: dict[tuple[int, int], None] = {}  # (channel, pitch) of delivered note-ons, in order
        self._lock = threading.RLock()

    @property
    def held(self) -> list[tuple[int, int]]:
        """(channel, pitch) of the notes that are down, oldest first."""
        with self._lock:
            return list(self._held)

    def feed(self, data: Iterable[int], t: float) -> None:
        """Parse raw bytes that arrived at `t` and deliver the notes among them."""
        with self._lock:
            messages = self._parser.feed(data)
            self.stats.stray_bytes = self._parser.stray_bytes
            for msg in messages:
                self._message(msg, t)

    def release_all(self, t: float, channel: int | None = None) -> None:
        """End every held note (the port went away, or we stop listening), or those on ``channel``."""
        with self._lock:
            for key in [k for k in self._held if channel is None or k[0] == channel]:
                del self._held[key]
                self.stats.released += 1
                self.callback(NoteEvent(t, "off", key[1], 0, key[0]))

    def _message(self, msg: tuple[int, ...], t: float) -> None:
        kind = msg[0] & 0xF0
        if kind == 0xB0 and len(msg) == 3 and msg[1] in (ALL_SOUND_OFF, ALL_NOTES_OFF):
            self.stats.all_off += 1
            self.release_all(t, msg[0] & 0x0F)
            return
        if kind in CONTROL_TYPES:
            self._control(msg, t)
            return
        if kind not in (0x80, 0x90) or len(msg) != 3:
            self.stats.ignored += 1
            return
        channel, pitch, velocity = msg[0] & 0x0F, msg[1], msg[2]
        key = (channel, pitch)
        if kind == 0x90 and velocity > 0:
            if self.channels is not None and channel not in self.channels:
                self.stats.other_channel += 1
            elif not self.key_range[0] <= pitch <= self.key_range[1]:
                self.stats.out_of_range += 1
            else:
                self._held.pop(key, None)
                self._held[key] = None
                self.stats.notes_on += 1
                self.callback(NoteEvent(t, "on", pitch, velocity, channel))
            return
        off_velocity = velocity if kind == 0x80 else 0
        if key in self._held:  # checked first: a note that started before a filter change still ends
            del self._held[key]
            self.stats.notes_off += 1
            self.callback(NoteEvent(t, "off", pitch, off_velocity, channel))
        elif self.channels is not None and channel not in self.channels:
            self.stats.other_channel += 1
        elif not self.key_range[0] <= pitch <= self.key_range[1]:
            self.stats.out_of_range += 1
        else:
            self.stats.unmatched_off += 1

    def _control(self, msg: tuple[int, ...], t: float) -> None:
        kind, channel = msg[0] & 0xF0, msg[0] & 0x0F
        if len(msg) != _CONTROL_LENGTH[kind] or (kind == 0xB0 and msg[1] in CHANNEL_MODE):
            self.stats.ignored += 1
        elif self.channels is not None and channel not in self.channels:
            self.stats.other_channel += 1
        else:
            self.stats.controls += 1
            self.callback(ControlEvent(t, kind, tuple(msg[1:]), channel))


class MidiInput(ReconnectingPort):
    """The keyboard port, by name: delivers NoteEvents and ControlEvents to `callback` (on the port's reader thread), and through
    `check()` (which the engine calls every second or so) notices an unplugged port, releases its held notes,
    reports "disconnected", and reopens the port by the same name when it comes back.
    """

    def __init__(self, name: str, callback: Callable[[NoteEvent | ControlEvent], None], *, api: str | None = None,
                 virtual: bool = False, channels: Collection[int] | None = None,
                 key_range: tuple[int, int] = (0, 127), wait_for_port: bool = False,
                 client_name: str = "Comper", poll_interval: float = 0.001) -> None:
        """Opens the port at once; a missing port raises PortError unless `wait_for_port` (then check() opens
        it when it appears). `poll_interval` is how often the reader thread looks for input (latency vs CPU)."""
        self._poll_interval = poll_interval
        self._filter = NoteFilter(callback)
        self.set_channels(channels)
        self.set_key_range(*key_range)
        self._start(name, api, virtual, client_name, wait_for_port)

    @property
    def stats(self) -> InputStats:
        return self._filter.stats

    @property
    def held(self) -> list[tuple[int, int]]:
        return self._filter.held

    def set_channels(self, channels: Collection[int] | None) -> None:
        """Accept only these channels (0-15); None accepts all."""
        if channels is not None and not all(0 <= c <= 15 for c in channels):
            raise ValueError(f"MIDI channels are 0-15, got {sorted(channels)}")
        self._filter.channels = None if channels is None else frozenset(channels)

    def set_key_range(self, low: int, high: int) -> None:
        """Drop notes outside low..high (inclusive), e.g. 21..108 for an 88-key keyboard."""
        if not 0 <= low <= high <= 127:
            raise ValueError(f"bad keyboard range {low}..{high}")
        self._filter.key_range = (low, high)

    def feed(self, data: Iterable[int], t: float) -> None:
        """Raw bytes in, as from the port; public so other transports and tests can drive the same path."""
        self._filter.feed(data, t)

    def close(self) -> None:
        """Close the port; notes still held get their note-offs."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            port, self._port = self._port, None
        if port is not None:
            port.close()
        self._filter.release_all(time.monotonic())

    def __enter__(self) -> MidiInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        self._port = open_input(self.name, self._api, self._filter.feed, self._virtual,
                                client_name=self._client_name, poll_interval=self._poll_interval)

    def _lose_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._filter.stats.disconnects += 1
        self._filter.release_all(time.monotonic())

    def _reconnected(self) -> None:
        self._filter.stats.reconnects += 1
