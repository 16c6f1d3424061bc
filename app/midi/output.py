"""Chords out to a MIDI port, with every note-on owed its note-off: on close, on panic, across port loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.midi.ports import open_output
from app.midi.reconnecting import ReconnectingPort

log = logging.getLogger(__name__)

ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
SUSTAIN = 64
RESET_ALL_CONTROLLERS = 121


@dataclass
class OutputStats:
    """What was sent and what could not be, so stuck or missing notes can be explained."""

    notes_on: int = 0
    notes_off: int = 0
    retriggers: int = 0  # a note-on for a sounding note: we end the old one first, so ons and offs pair up
    stray_offs: int = 0  # note-offs for notes we never started: not sent
    controls: int = 0  # controllers, pitch bends and pressures sent (the player's pedal, thru)
    panics: int = 0
    dropped_ons: int = 0  # note-ons asked for while the port was gone
    offs_resent: int = 0  # note-offs owed to a vanished port, sent when it came back
    dropped_offs: int = 0  # note-offs owed to a port that never came back
    disconnects: int = 0
    reconnects: int = 0
    send_errors: int = 0


class MidiOutput(ReconnectingPort):
    """An output port by name (or a virtual one) that tracks its sounding notes.

    When the port vanishes (noticed by `check()` or by a failed send) the sounding notes become owed note-offs,
    sent when `check()` finds the port again, or counted as dropped at `close()`. Scheduling is the engine's job:
    every call sends now.
    """

    direction = "outputs"

    def __init__(self, name: str, *, api: str | None = None, virtual: bool = False,
                 wait_for_port: bool = False, client_name: str = "Comper") -> None:
        """Opens the port at once; a missing port raises PortError unless `wait_for_port` (then check() opens
        it when it appears)."""
        self.stats = OutputStats()
        self._sounding: dict[tuple[int, int], None] = {}  # (channel, pitch), oldest first
        self._owed: dict[tuple[int, int], None] = {}  # note-offs owed to a vanished port
        self._channels: set[int] = set()
        self._controlled: set[int] = set()  # channels a controller was sent on: panic lifts their pedals
        self._start(name, api, virtual, client_name, wait_for_port)

    @property
    def sounding(self) -> list[tuple[int, int]]:
        """(channel, pitch) of the notes we started and have not ended, oldest first."""
        with self._lock:
            return list(self._sounding)

    @property
    def owed(self) -> list[tuple[int, int]]:
        """(channel, pitch) of the note-offs waiting for the vanished port to return."""
        with self._lock:
            return list(self._owed)

    def note_on(self, pitch: int, velocity: int, channel: int = 0) -> None:
        """Start a note now (velocity 0 ends it, as in MIDI)."""
        _check(pitch, velocity, channel)
        if velocity == 0:
            self.note_off(pitch, 0, channel)
            return
        with self._lock:
            if self._port is None:
                self.stats.dropped_ons += 1
                return
            key = (channel, pitch)
            if key in self._sounding:
                self.stats.retriggers += 1
                if not self._end(key, 0):
                    return
            if self._send((0x90 | channel, pitch, velocity)):
                self._sounding[key] = None
                self._channels.add(channel)
                self.stats.notes_on += 1

    def note_off(self, pitch: int, velocity: int = 0, channel: int = 0) -> None:
        """End a note we started; one we did not start is not sent (and is counted)."""
        _check(pitch, velocity, channel)
        with self._lock:
            key = (channel, pitch)
            if key in self._sounding:
                self._end(key, velocity)
            elif key not in self._owed:  # an owed note-off stays owed until the port returns
                self.stats.stray_offs += 1

    def control(self, status: int, data: tuple[int, ...], channel: int = 0) -> None:
        """Send a controller (``status`` 0xB0), pitch bend (0xE0), channel pressure (0xD0) or poly pressure
        (0xA0) now; dropped while the port is gone (a pedal is not owed like a note-off: panic resets it)."""
        if status not in (0xA0, 0xB0, 0xD0, 0xE0) or not 0 <= channel <= 15 or not all(0 <= d <= 127 for d in data):
            raise ValueError(f"bad channel message: status {status:#x}, data {list(data)}, channel {channel}")
        with self._lock:
            if self._send((status | channel, *data)):
                self._controlled.add(channel)
                self.stats.controls += 1

    def realtime(self, status: int) -> bool:
        """Send a one-byte system real-time message now (0xF8 clock, 0xFA Start, 0xFB Continue, 0xFC Stop);
        False while the port is gone (a clock is not owed: the next tick goes out when it returns)."""
        if not 0xF8 <= status <= 0xFF:
            raise ValueError(f"not a system real-time message: {status:#x}")
        with self._lock:
            return self._send((status,))

    def song_position(self, sixteenths: int) -> bool:
        """Send a Song Position Pointer (where the song is, in 16ths: 0..16383) now; False while the port is gone."""
        if not 0 <= sixteenths < 1 << 14:
            raise ValueError(f"song position out of range: {sixteenths}")
        with self._lock:
            return self._send((0xF2, sixteenths & 0x7F, sixteenths >> 7))

    def panic(self) -> None:
        """Note-off for every sounding note, then all-notes-off and all-sound-off on every channel we used (and a
        sustain-pedal-up and reset-all-controllers where we sent controllers)."""
        with self._lock:
            self.stats.panics += 1
            for key in list(self._sounding):
                if not self._end(key, 0):
                    return
            for channel in sorted(self._channels):
                for controller in (ALL_NOTES_OFF, ALL_SOUND_OFF):
                    if not self._send((0xB0 | channel, controller, 0)):
                        return
            for channel in sorted(self._controlled):
                for controller in (SUSTAIN, RESET_ALL_CONTROLLERS):
                    if not self._send((0xB0 | channel, controller, 0)):
                        return
            self._controlled.clear()

    def _reconnected(self) -> None:
        """Pay the returned port the note-offs it is owed."""
        self.stats.reconnects += 1
        for channel, pitch in list(self._owed):
            if not self._send((0x80 | channel, pitch, 0)):
                break
            del self._owed[(channel, pitch)]
            self.stats.offs_resent += 1

    def close(self) -> None:
        """End the sounding notes and close the port; offs owed to a port that never came back are dropped."""
        with self._lock:
            if self._closed:
                return
            for key in list(self._sounding):
                if not self._end(key, 0):
                    break
            self._closed = True
            port, self._port = self._port, None
            self.stats.dropped_offs += len(self._owed) + len(self._sounding)
            self._owed.clear()
            self._sounding.clear()
        if port is not None:
            port.close()

    def __enter__(self) -> MidiOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        self._port = open_output(self.name, self._api, self._virtual, client_name=self._client_name)

    def _end(self, key: tuple[int, int], velocity: int) -> bool:
        channel, pitch = key
        if not self._send((0x80 | channel, pitch, velocity)):
            return False
        del self._sounding[key]
        self.stats.notes_off += 1
        return True

    def _send(self, data: tuple[int, ...]) -> bool:
        """Send now; a failure means the port is gone, so the sounding notes become owed note-offs."""
        if self._port is None:
            return False
        try:
            self._port.send(data)
            return True
        except Exception:  # noqa: BLE001 - rtmidi raises several types; all mean the port is unusable
            log.warning("MIDI send to %r failed; treating the port as gone", self.name, exc_info=True)
            self.stats.send_errors += 1
            self._lose_port()
            return False

    def _lose_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._owed.update(self._sounding)
        self._sounding.clear()
        self.stats.disconnects += 1


def _check(pitch: int, velocity: int, channel: int) -> None:
    if not (0 <= pitch <= 127 and 0 <= velocity <= 127 and 0 <= channel <= 15):
        raise ValueError(f"bad note: pitch {pitch}, velocity {velocity}, channel {channel} (0-127, 0-127, 0-15)")
