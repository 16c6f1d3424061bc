"""Devices: the MIDI keyboard in, a MIDI port out, the clock (Comper's own or an external port's, and a port it is
sent to), the built-in synth (on/off, soundfont, instruments, volumes) and the panic button.

Every MIDI picker also offers a virtual port of our own (``VIRTUAL_PORT``: "Comper in", "Comper out", ...), for a
DAW or another program on this machine to connect to. The clock source is "Internal" (Comper leads: its tempo
setting, changeable mid-jam at the next beat) or a port whose MIDI clock the jam follows (``engine/follow.py``: the
jam starts at the source's Start and pauses at its Stop) or "Ableton Link" (``engine/link.py``, the optional extra
``comper[link]``: the jam plays on the Link session's beat grid and tempo, and its tempo setting sets the session's);
the clock out sends Comper's own clock (24 PPQN,
Start / Stop) so a drum machine follows it, and is silent while Comper follows.

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
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from ..engine.follow import ClockFollower
from ..engine.options import JamSettings
from ..engine.performer import PARTS
from ..midi import MidiInput, MidiOutput, PortError, available_apis, list_ports
from ..midi.clock import ClockInput
from . import gm, style
from .background import Background
from .elide import ElidedLabel, elide_combo, full_text_tip
from .router import NoteRouter
from .settings import AppSettings

PORT_CHARS = 16  # a port or program box's width, in characters: the side panel stays narrow, whatever the names
NONE_IN = "None (computer keyboard only)"
NONE_OUT = "None"
INTERNAL_CLOCK = "Internal (Comper leads)"
NO_CLOCK_OUT = "Off"
VIRTUAL_PORT = "<virtual>"  # what the settings keep for "a virtual port of our own"
LINK_CLOCK = "<link>"  # what the settings keep for the clock source "Ableton Link"
LINK_LABEL = "Ableton Link"
VIRTUAL_NAMES = {"in": "Comper in", "out": "Comper out", "clock": "Comper clock in", "clock out": "Comper clock out"}
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
    opened = Signal(str, str, str)  # "in"/"out"/"clock"/"clock out", name, state or a one-line error

    def __init__(self, background: Background, router: NoteRouter, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bg, self.router = background, router
        self.input: MidiInput | None = None
        self.output: MidiOutput | None = None
        self.clock_in: ClockInput | None = None  # the external clock's port; its follower is made for each jam
        self.link = None  # the Ableton Link session joined (a ``link.Link``) when it is the clock source
        self.clock_out: MidiOutput | None = None
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
        for port in (self.input, self.output, self.clock_in, self.clock_out):
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
        self._reopen("input", "in", name, lambda port, virtual: MidiInput(
            port, lambda ev: self.router.put(ev, "midi"), virtual=virtual, wait_for_port=not virtual))

    def set_output(self, name: str) -> None:
        self._reopen("output", "out", name, lambda port, virtual: MidiOutput(
            port, virtual=virtual, wait_for_port=not virtual))

    def set_clock_source(self, name: str) -> None:
        """Follow the clock of port ``name`` ("": Comper's own clock; ``LINK_CLOCK``: an Ableton Link session)."""
        join = name == LINK_CLOCK
        if join or self.link is not None:
            self.bg.submit("io", lambda: self._join_link(join), lambda r: self.opened.emit("clock", *r))
        if join:
            name = ""  # no clock port
        self._reopen("clock_in", "clock", name, lambda port, virtual: ClockInput(
            port, ClockFollower(), virtual=virtual, wait_for_port=not virtual))

    def set_clock_out(self, name: str) -> None:
        """Send Comper's own clock to port ``name`` ("": nowhere)."""
        self._reopen("clock_out", "clock out", name, lambda port, virtual: MidiOutput(
            port, virtual=virtual, wait_for_port=not virtual, client_name="Comper clock"))

    def _join_link(self, join: bool) -> tuple[str, str]:
        """Join the Ableton Link session (or leave it); (the picker's name, a state or a one-line error)."""
        if self.link is not None:
            self.link.enabled = False
            self.link = None
        if not join:
            return "", ""
        from ..engine.link import load_binding

        try:
            self.link = load_binding().Link(120.0)  # each jam sets its tempo if no peer has one
        except ImportError as e:
            return LINK_LABEL, str(e)
        self.link.enabled = True
        return LINK_LABEL, "connected"

    def clocks_for(self, settings: JamSettings) -> tuple[object | None, list[MidiOutput]]:
        """What a jam with ``settings`` runs on: (the external clock it follows, made for it, or None: its own
        clock) and the ports its own clock is sent to (none while it follows)."""
        if self.link is not None:
            from ..engine.link import LinkClock

            return LinkClock.for_jam(settings, link=self.link), []
        clock_in = self.clock_in
        if clock_in is not None:
            clock_in.follower = ClockFollower.for_jam(settings)  # an attribute swap: the reader feeds the new one
            return clock_in.follower, []
        return None, [self.clock_out] if self.clock_out is not None else []

    def _reopen(self, attr: str, what: str, name: str, make) -> None:
        """Close the port in ``attr`` and open ``name`` there (``VIRTUAL_PORT``: our own virtual port), on the
        ``io`` lane; ``opened`` says how it went (a one-line error for one that cannot open)."""
        def job() -> tuple[str, str]:
            old = getattr(self, attr)
            setattr(self, attr, None)
            if old is not None:
                old.close()  # an input's held notes get their note-offs, an output's sounding notes end
            if not name:
                return name, ""
            virtual = name == VIRTUAL_PORT
            try:
                port = make(VIRTUAL_NAMES[what] if virtual else name, virtual)
            except PortError as e:
                return name, str(e)
            setattr(self, attr, port)
            return name, port.state

        self.bg.submit("io", job, lambda r: self.opened.emit(what, *r))

    def close(self) -> None:
        self._timer.stop()
        for port in (self.input, self.output, self.clock_in, self.clock_out):
            if port is not None:
                port.close()
        self.input = self.output = self.clock_in = self.clock_out = None
        if self.link is not None:
            self.link.enabled = False  # leave the Ableton Link session
            self.link = None


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
    clock_source_selected = Signal(str)  # a port name, VIRTUAL_PORT, or "" (Comper's own clock)
    clock_out_selected = Signal(str)  # a port name, VIRTUAL_PORT, or "" (none)
    synth_toggled = Signal(bool)
    soundfont_chosen = Signal(str)
    program_changed = Signal(str, int)
    volume_changed = Signal(str, int)
    panic_pressed = Signal()

    def __init__(self, s: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        inner = QWidget()  # in a scroll area: the panel never makes the window taller than a 720-pixel screen
        lay = QVBoxLayout(inner)
        midi = QGroupBox("MIDI")
        form = QFormLayout(midi)
        self.input_combo, self.input_light = QComboBox(), ActivityLight()
        self.output_combo, self.output_light = QComboBox(), ActivityLight()
        self.clock_combo, self.clock_light = QComboBox(), ActivityLight()
        self.clock_out_combo, self.clock_out_light = QComboBox(), ActivityLight()
        self.clock_combo.setToolTip("Internal: Comper's own tempo. Ableton Link: the Link session's beat and tempo. "
                                    "A port: follow its MIDI clock (the jam starts "
                                    "at its Start, pauses at its Stop)")
        self.clock_out_combo.setToolTip("Send Comper's own clock (24 PPQN, Start/Stop) to a DAW or drum machine")
        self.keys_light = ActivityLight()
        self.keys_label = QLabel()
        for combo in (self.input_combo, self.output_combo, self.clock_combo, self.clock_out_combo):
            elide_combo(combo, PORT_CHARS)  # a port's name can be long: elided, whole in the tooltip
            combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        form.addRow("Input", _row(self.input_combo, self.input_light))
        form.addRow("Output", _row(self.output_combo, self.output_light))
        form.addRow("Clock", _row(self.clock_combo, self.clock_light))
        form.addRow("Clock out", _row(self.clock_out_combo, self.clock_out_light))
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
        scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self._in_name, self._out_name = s.midi_in, s.midi_out
        self._clock_name, self._clock_out_name = s.clock_source, s.clock_out
        self.set_soundfont(s.soundfont)
        self.set_ports([], [], None)
        self.input_combo.activated.connect(lambda i: self._picked(self.input_combo, self.input_selected))
        self.output_combo.activated.connect(lambda i: self._picked(self.output_combo, self.output_selected))
        self.clock_combo.activated.connect(lambda i: self._picked(self.clock_combo, self.clock_source_selected))
        self.clock_out_combo.activated.connect(lambda i: self._picked(self.clock_out_combo, self.clock_out_selected))
        self.synth_on.toggled.connect(self.synth_toggled)
        choose.clicked.connect(self._choose_soundfont)
        default.clicked.connect(lambda: self.soundfont_chosen.emit(""))
        self.panic.clicked.connect(self.panic_pressed)

    def _picked(self, combo: QComboBox, signal) -> None:
        name = combo.currentData() or ""
        attr = {id(self.input_combo): "_in_name", id(self.output_combo): "_out_name",
                id(self.clock_combo): "_clock_name", id(self.clock_out_combo): "_clock_out_name"}[id(combo)]
        setattr(self, attr, name)
        signal.emit(name)

    def set_ports(self, inputs: list[str], outputs: list[str], reason: str | None) -> None:
        """Refill the pickers; a remembered port that is missing stays listed (and selected) as waiting."""
        _fill(self.input_combo, NONE_IN, inputs, self._in_name, VIRTUAL_NAMES["in"])
        _fill(self.output_combo, NONE_OUT, outputs, self._out_name, VIRTUAL_NAMES["out"])
        _fill(self.clock_combo, INTERNAL_CLOCK, inputs, self._clock_name, VIRTUAL_NAMES["clock"], LINK_CHOICE)
        _fill(self.clock_out_combo, NO_CLOCK_OUT, outputs, self._clock_out_name, VIRTUAL_NAMES["clock out"])
        text = reason or f"{len(inputs)} input(s), {len(outputs)} output(s)"
        if self.midi_status.text() != text:
            self.midi_status.setText(text)

    def select_input(self, name: str) -> None:
        """Pick an input by name, as if chosen in the list (tests, restoring a session)."""
        self._in_name = name
        _fill(self.input_combo, NONE_IN, [], name, VIRTUAL_NAMES["in"])
        self.input_selected.emit(name)

    def select_output(self, name: str) -> None:
        self._out_name = name
        _fill(self.output_combo, NONE_OUT, [], name, VIRTUAL_NAMES["out"])
        self.output_selected.emit(name)

    def select_clock_source(self, name: str) -> None:
        """Follow port ``name``'s clock ("": Comper's own), as if chosen in the list."""
        self._clock_name = name
        _fill(self.clock_combo, INTERNAL_CLOCK, [], name, VIRTUAL_NAMES["clock"], LINK_CHOICE)
        self.clock_source_selected.emit(name)

    def select_clock_out(self, name: str) -> None:
        self._clock_out_name = name
        _fill(self.clock_out_combo, NO_CLOCK_OUT, [], name, VIRTUAL_NAMES["clock out"])
        self.clock_out_selected.emit(name)

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


LINK_CHOICE = ((LINK_LABEL, LINK_CLOCK),)  # the Clock picker's choice beyond ports


def _fill(combo: QComboBox, none_label: str, names: list[str], selected: str, virtual: str,
          extra: tuple[tuple[str, str], ...] = ()) -> None:
    items = [(none_label, "")] + [*extra] + [(n, n) for n in names] + [(f"Virtual port ({virtual})", VIRTUAL_PORT)]
    if selected and selected not in names and selected != VIRTUAL_PORT and all(d != selected for _, d in extra):
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
