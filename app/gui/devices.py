"""Devices: the MIDI keyboard in, a MIDI port out, the built-in synth (on/off, soundfont, instruments, volumes)
and the panic button.

Ports are remembered by name. A remembered port that is not plugged in stays selected ("waiting") and opens by
itself when it appears; one that vanishes mid-jam ends its held notes and comes back the same way (the MIDI
layer's ``check()``, called every couple of seconds off the GUI thread). The lights show connection (dim green),
activity (bright green) and loss (red).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..engine.performer import PARTS
from ..midi import MidiInput, MidiOutput, PortError, available_apis, list_ports
from . import gm, style
from .background import Background
from .elide import ElidedLabel, elide_combo, full_text_tip
from .router import NoteRouter
from .settings import AppSettings

PORT_CHARS = 16  # a port or program box's width, in characters: the side panel stays narrow, whatever the names
NONE_IN = "None (computer keyboard only)"
NONE_OUT = "None"
OWN_CLIENT = "Comper"  # our own rtmidi client's ports are not offered (no loops)


def scan_ports() -> tuple[list[str], list[str], str | None]:
    """(inputs, outputs, why there are none) over every MIDI API compiled in."""
    ins, outs, errors = [], [], []
    for api in available_apis():
        found = list_ports(api)
        if found.error:
            errors.append(found.error)
            continue
        ins += [n for n in found.inputs if not n.startswith(OWN_CLIENT)]
        outs += [n for n in found.outputs if not n.startswith(OWN_CLIENT)]
    why = None if ins or outs else "no MIDI devices (" + ("; ".join(errors) or "none plugged in") + ")"
    return ins, outs, why


class PortSink:
    """The engine's view of the MIDI output (a ``Sink``): whichever port is selected now, or nowhere. So the
    output can be changed mid-jam without touching the running session."""

    thru = False  # a MIDI keyboard sounds by itself; echoing it would double the melody

    def __init__(self, devices: MidiDevices) -> None:
        self.devices = devices

    def note_on(self, part: str, pitch: int, velocity: int) -> None:
        out = self.devices.output
        if out is not None:
            out.note_on(pitch, velocity, PARTS[part])

    def note_off(self, part: str, pitch: int) -> None:
        out = self.devices.output
        if out is not None:
            out.note_off(pitch, 0, PARTS[part])

    def control(self, part: str, status: int, data: tuple[int, ...]) -> None:
        out = self.devices.output
        if out is not None:
            out.control(status, data, PARTS[part])

    def all_off(self) -> None:
        out = self.devices.output
        if out is not None:
            out.panic()


class MidiDevices(QObject):
    """The open MIDI ports; opening, closing and checking happen on the ``io`` lane."""

    scanned = Signal(object, object, object)  # inputs, outputs, reason there are none (or None)
    opened = Signal(str, str, str)  # "in"/"out", name, state or a one-line error

    def __init__(self, background: Background, router: NoteRouter, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bg, self.router = background, router
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.reason: str | None = None
        self._scanning = False
        self._timer = QTimer(self)
        self._timer.setInterval(int(style.DEVICE_POLL_S * 1000))
        self._timer.timeout.connect(self.scan)

    def start_polling(self) -> None:
        self.scan()
        self._timer.start()

    def scan(self) -> None:
        if self._scanning:
            return
        self._scanning = True
        self.bg.submit("io", self._scan, self._scanned, lambda e: setattr(self, "_scanning", False))

    def _scan(self) -> tuple[list[str], list[str], str | None]:
        for port in (self.input, self.output):
            if port is not None:
                try:
                    port.check()
                except Exception:  # noqa: BLE001 - a flaky backend must not stop the polling
                    pass
        return scan_ports()

    def _scanned(self, result: tuple[list[str], list[str], str | None]) -> None:
        self._scanning = False
        self.inputs, self.outputs, self.reason = result
        self.scanned.emit(*result)

    def set_input(self, name: str) -> None:
        def job() -> tuple[str, str]:
            old, self.input = self.input, None
            if old is not None:
                old.close()  # its held notes get their note-offs (through the router)
            if not name:
                return name, ""
            try:
                self.input = MidiInput(name, lambda ev: self.router.put(ev, "midi"), wait_for_port=True)
            except PortError as e:
                return name, str(e)
            return name, self.input.state

        self.bg.submit("io", job, lambda r: self.opened.emit("in", *r))

    def set_output(self, name: str) -> None:
        def job() -> tuple[str, str]:
            old, self.output = self.output, None
            if old is not None:
                old.close()  # every note it started ends first
            if not name:
                return name, ""
            try:
                self.output = MidiOutput(name, wait_for_port=True)
            except PortError as e:
                return name, str(e)
            return name, self.output.state

        self.bg.submit("io", job, lambda r: self.opened.emit("out", *r))

    def close(self) -> None:
        self._timer.stop()
        for port in (self.input, self.output):
            if port is not None:
                port.close()
        self.input = self.output = None


class ActivityLight(QWidget):
    """A small lamp: off, connected, active (a note just passed), or lost."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(style.LIGHT_SIZE + 4, style.LIGHT_SIZE + 4)
        self.colour = style.LIGHT_OFF

    def set_state(self, state: str) -> None:
        colour = {"active": style.LIGHT_ACTIVE, "connected": style.LIGHT_CONNECTED,
                  "disconnected": style.LIGHT_LOST}.get(state, style.LIGHT_OFF)
        if colour != self.colour:
            self.colour = colour
            self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(self.colour))
        p.drawEllipse(2, 2, style.LIGHT_SIZE, style.LIGHT_SIZE)
        p.end()


def light_state(connection: str | None, last_activity: float, now: float | None = None) -> str:
    """What a light shows: activity wins, then the connection ("connected", "disconnected"), else off."""
    now = time.monotonic() if now is None else now
    if connection in (None, "closed"):
        return "active" if now - last_activity < style.LIGHT_FLASH_S else "off"
    if connection == "connected" and now - last_activity < style.LIGHT_FLASH_S:
        return "active"
    return connection


class DevicesPanel(QWidget):
    input_selected = Signal(str)
    output_selected = Signal(str)
    synth_toggled = Signal(bool)
    soundfont_chosen = Signal(str)
    program_changed = Signal(str, int)
    volume_changed = Signal(str, int)
    panic_pressed = Signal()

    def __init__(self, s: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        midi = QGroupBox("MIDI")
        form = QFormLayout(midi)
        self.input_combo, self.input_light = QComboBox(), ActivityLight()
        self.output_combo, self.output_light = QComboBox(), ActivityLight()
        self.keys_light = ActivityLight()
        self.keys_label = QLabel()
        for combo in (self.input_combo, self.output_combo):
            elide_combo(combo, PORT_CHARS)  # a port's name can be long: elided, whole in the tooltip
            combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        form.addRow("Input", _row(self.input_combo, self.input_light))
        form.addRow("Output", _row(self.output_combo, self.output_light))
        form.addRow("Keys", _row(self.keys_label, self.keys_light))
        self.midi_status = QLabel()
        self.midi_status.setWordWrap(True)
        self.midi_status.setStyleSheet(f"color: {style.TEXT_DIM};")
        form.addRow(self.midi_status)
        lay.addWidget(midi)

        synth = QGroupBox("Built-in synth")
        sf = QFormLayout(synth)
        self.synth_on = QCheckBox("on")
        self.synth_on.setChecked(s.synth_on)
        self.synth_status = ElidedLabel()  # FluidSynth's reasons run to many lines: one here, all in the tooltip
        self.synth_status.setStyleSheet(f"color: {style.TEXT_DIM};")
        sf.addRow(self.synth_on)
        self.soundfont_label = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle)  # a path: its file name stays
        choose, default = QPushButton("Choose…"), QPushButton("Default")
        for b in (choose, default):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        sf.addRow("Soundfont", self.soundfont_label)
        sf.addRow("", _row(choose, default))
        self.programs: dict[str, QComboBox] = {}
        self.volumes: dict[str, QSlider] = {}
        for part in ("melody", "chords", "bass"):
            combo = elide_combo(QComboBox(), PORT_CHARS)
            combo.addItems([f"{i + 1} {name}" for i, name in enumerate(gm.PROGRAMS)])
            combo.setCurrentIndex(s.program(part))
            combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(0, 100)
            slider.setValue(s.volume(part))
            slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            slider.setToolTip(f"{part} volume")
            self.programs[part], self.volumes[part] = combo, slider
            combo.currentIndexChanged.connect(lambda i, part=part: self.program_changed.emit(part, i))
            slider.valueChanged.connect(lambda v, part=part: self.volume_changed.emit(part, v))
            sf.addRow(part.capitalize() + (" (thru)" if part == "melody" else ""), combo)
            sf.addRow("", slider)
        sf.addRow(self.synth_status)
        lay.addWidget(synth)

        self.panic = QPushButton("PANIC: all notes off")
        self.panic.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.panic.setStyleSheet("QPushButton { background: #b71c1c; color: white; font-weight: bold; padding: 8px; }")
        lay.addWidget(self.panic)
        lay.addStretch(1)

        self._in_name, self._out_name = s.midi_in, s.midi_out
        self.set_soundfont(s.soundfont)
        self.set_ports([], [], None)
        self.input_combo.activated.connect(lambda i: self._picked(self.input_combo, self.input_selected))
        self.output_combo.activated.connect(lambda i: self._picked(self.output_combo, self.output_selected))
        self.synth_on.toggled.connect(self.synth_toggled)
        choose.clicked.connect(self._choose_soundfont)
        default.clicked.connect(lambda: self.soundfont_chosen.emit(""))
        self.panic.clicked.connect(self.panic_pressed)

    def _picked(self, combo: QComboBox, signal) -> None:
        name = combo.currentData() or ""
        if combo is self.input_combo:
            self._in_name = name
        else:
            self._out_name = name
        signal.emit(name)

    def set_ports(self, inputs: list[str], outputs: list[str], reason: str | None) -> None:
        """Refill the pickers; a remembered port that is missing stays listed (and selected) as waiting."""
        _fill(self.input_combo, NONE_IN, inputs, self._in_name)
        _fill(self.output_combo, NONE_OUT, outputs, self._out_name)
        text = reason or f"{len(inputs)} input(s), {len(outputs)} output(s)"
        if self.midi_status.text() != text:
            self.midi_status.setText(text)

    def select_input(self, name: str) -> None:
        """Pick an input by name, as if chosen in the list (tests, restoring a session)."""
        self._in_name = name
        _fill(self.input_combo, NONE_IN, [], name)
        self.input_selected.emit(name)

    def select_output(self, name: str) -> None:
        self._out_name = name
        _fill(self.output_combo, NONE_OUT, [], name)
        self.output_selected.emit(name)

    def set_soundfont(self, path: str) -> None:
        self.soundfont_label.setText(path or "system default (General MIDI)")

    def _choose_soundfont(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a soundfont", "", "Soundfonts (*.sf2 *.sf3)")
        if path:
            self.soundfont_chosen.emit(path)


def _row(*widgets: QWidget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for x in widgets:
        lay.addWidget(x)
    return w


def _fill(combo: QComboBox, none_label: str, names: list[str], selected: str) -> None:
    items = [(none_label, "")] + [(n, n) for n in names]
    if selected and selected not in names:
        items.append((f"{selected} (not connected)", selected))
    current = [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]
    if current == items and combo.currentData() == (selected or ""):
        return
    combo.blockSignals(True)
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    combo.setCurrentIndex(next(i for i, (_, d) in enumerate(items) if d == (selected or "")))
    combo.blockSignals(False)
    full_text_tip(combo)
