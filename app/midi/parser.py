"""A MIDI byte-stream parser that honours running status.

mido.Parser drops running-status data bytes and lets a clock byte inside a message destroy it; a keyboard (or a
JACK client) that sends raw streams relies on both working, so we parse the bytes ourselves.
"""

from __future__ import annotations

from collections.abc import Iterable

_SYSTEM_COMMON_LENGTH = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF4: 0, 0xF5: 0, 0xF6: 0}


class StreamParser:
    """Splits raw MIDI bytes into complete messages (tuples of ints), keeping state between `feed` calls.

    Realtime bytes (0xF8-0xFF) come out as one-byte messages wherever they appear, without disturbing a message
    in progress; data bytes after a complete channel message reuse its status (running status); SysEx comes out
    whole; data bytes with no status to belong to are counted in `stray_bytes`.
    """

    def __init__(self) -> None:
        self.stray_bytes = 0
        self._status = 0  # running status (a channel status byte) or 0
        self._need = 0  # data bytes a message with that status takes
        self._data: list[int] = []
        self._sysex: list[int] | None = None

    def feed(self, data: Iterable[int]) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = []
        for b in data:
            if not 0 <= b <= 0xFF:
                raise ValueError(f"MIDI byte out of range: {b!r}")
            if b >= 0xF8:
                out.append((b,))
            elif b < 0x80:
                self._data_byte(b, out)
            else:
                self._status_byte(b, out)
        return out

    def _data_byte(self, b: int, out: list[tuple[int, ...]]) -> None:
        if self._sysex is not None:
            self._sysex.append(b)
        elif self._status:
            self._data.append(b)
            if len(self._data) == self._need:
                out.append((self._status, *self._data))
                self._data = []
                if self._status >= 0xF0:  # system common messages do not set running status
                    self._status = 0
        else:
            self.stray_bytes += 1

    def _status_byte(self, b: int, out: list[tuple[int, ...]]) -> None:
        if self._sysex is not None:
            if b == 0xF7:
                out.append((*self._sysex, 0xF7))
                self._sysex = None
                return
            self.stray_bytes += len(self._sysex)  # any other status byte aborts an unfinished SysEx
            self._sysex = None
        self.stray_bytes += len(self._data)  # an unfinished message is abandoned
        self._data = []
        if b == 0xF0:
            self._status, self._sysex = 0, [b]
        elif b == 0xF7:
            self._status = 0  # an end of SysEx with no start
        elif b >= 0xF0:
            self._status, self._need = b, _SYSTEM_COMMON_LENGTH[b]
            if self._need == 0:
                out.append((b,))
                self._status = 0
        else:
            self._status, self._need = b, (1 if 0xC0 <= b <= 0xDF else 2)
