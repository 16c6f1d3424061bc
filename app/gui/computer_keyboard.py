"""The computer keyboard as a piano, so the app is playable on any laptop without a MIDI keyboard.

Layout (as in most DAWs): the home row is the white keys, the row above the black ones::

     W E   T Y U   O P
    A S D F G H J K L ;      A = C of the current octave, K = the C above

Z / X shift the octave down / up, C / V the velocity. Space starts and stops the jam. Key repeat is ignored, and
every key released (or the window losing focus) ends its note at the pitch it started with, so an octave shift
while a key is held never leaves a stuck note.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QWidget

from ..midi import NoteEvent

K = Qt.Key
SEMITONES = {K.Key_A: 0, K.Key_W: 1, K.Key_S: 2, K.Key_E: 3, K.Key_D: 4, K.Key_F: 5, K.Key_T: 6, K.Key_G: 7,
             K.Key_Y: 8, K.Key_H: 9, K.Key_U: 10, K.Key_J: 11, K.Key_K: 12, K.Key_O: 13, K.Key_L: 14,
             K.Key_P: 15, K.Key_Semicolon: 16}
OCTAVE_DOWN, OCTAVE_UP = K.Key_Z, K.Key_X
VELOCITY_DOWN, VELOCITY_UP = K.Key_C, K.Key_V
TOGGLE_JAM = K.Key_Space
VELOCITY_STEP = 16
_SHORTCUT_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                       | Qt.KeyboardModifier.MetaModifier)
KEY_HELP = "A W S E D F T G Y H U J K play, Z/X octave, C/V velocity, Space start/stop"


class ComputerKeyboard:
    """Keys to pitches (no Qt events here: the event filter below feeds it)."""

    def __init__(self, octave: int = 4, velocity: int = 96) -> None:
        self.octave, self.velocity = octave, velocity
        self._down: dict[int, int] = {}  # key -> the pitch it started

    @property
    def base(self) -> int:
        """The pitch of the A key (octave 4: middle C, 60)."""
        return 12 * (self.octave + 1)

    def press(self, key: int) -> int | None:
        """The pitch a key press starts, or None (not a note key, already down, out of range)."""
        if key not in SEMITONES or key in self._down:
            return None
        pitch = self.base + SEMITONES[key]
        if not 0 <= pitch <= 127:
            return None
        self._down[key] = pitch
        return pitch

    def release(self, key: int) -> int | None:
        return self._down.pop(key, None)

    def release_all(self) -> list[int]:
        pitches, self._down = list(self._down.values()), {}
        return pitches

    def shift_octave(self, delta: int) -> int:
        self.octave = min(8, max(0, self.octave + delta))
        return self.octave

    def shift_velocity(self, delta: int) -> int:
        self.velocity = min(127, max(1, self.velocity + delta))
        return self.velocity


class KeyboardFilter(QObject):
    """An application-wide event filter on one window: note keys become NoteEvents wherever the focus is,
    except in a text field (renaming a session) or another window (a dialog)."""

    def __init__(self, window: QWidget, keyboard: ComputerKeyboard, emit: Callable[[NoteEvent], None],
                 on_toggle: Callable[[], None], on_change: Callable[[], None]) -> None:
        super().__init__(window)
        self.window, self.keys, self.emit = window, keyboard, emit
        self.on_toggle, self.on_change = on_toggle, on_change

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        t = event.type()
        if t in (QEvent.Type.ApplicationDeactivate, QEvent.Type.WindowDeactivate) and obj is self.window:
            self.release_all()
            return False
        if t not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or not isinstance(obj, QWidget):
            return False
        if obj.window() is not self.window or _typing_in(obj) or event.modifiers() & _SHORTCUT_MODIFIERS:
            return False  # Ctrl+Q and friends stay shortcuts
        key = event.key()
        handled = key in SEMITONES or key in (OCTAVE_DOWN, OCTAVE_UP, VELOCITY_DOWN, VELOCITY_UP, TOGGLE_JAM)
        if not handled or event.isAutoRepeat():
            return handled
        now = time.monotonic()
        if t == QEvent.Type.KeyPress:
            if key in SEMITONES:
                pitch = self.keys.press(key)
                if pitch is not None:
                    self.emit(NoteEvent(now, "on", pitch, self.keys.velocity, 0))
            elif key == TOGGLE_JAM:
                self.on_toggle()
            else:
                if key in (OCTAVE_DOWN, OCTAVE_UP):
                    self.keys.shift_octave(-1 if key == OCTAVE_DOWN else 1)
                else:
                    self.keys.shift_velocity(-VELOCITY_STEP if key == VELOCITY_DOWN else VELOCITY_STEP)
                self.on_change()
        elif key in SEMITONES:
            pitch = self.keys.release(key)
            if pitch is not None:
                self.emit(NoteEvent(now, "off", pitch, 0, 0))
        return True

    def release_all(self) -> None:
        now = time.monotonic()
        for pitch in self.keys.release_all():
            self.emit(NoteEvent(now, "off", pitch, 0, 0))


def _typing_in(widget: QWidget) -> bool:
    """Whether the key belongs to a text field (a spin box's own line edit does not count: it takes no letters)."""
    focus = QApplication.focusWidget() or widget
    return isinstance(focus, QLineEdit) and not isinstance(focus.parent(), QAbstractSpinBox)
