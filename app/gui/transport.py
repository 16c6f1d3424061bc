"""Transport: start/stop, tempo (with tap tempo), meter, count-in, metronome, the feel of the accompaniment
(listen-first beats, lookahead, commit, temperature: every ``gui`` knob of ``engine/options.py``, laid out from
that table with its range, step and unit), how the band plays (the style, bass and drum pickers: the ``gui``
choices of ``options.BAND_KNOBS``; its dynamics range: the numeric ones) and the model picker.

Tempo, meter and the planning settings shape a whole jam, so they are locked while one runs (they apply to the
next); the metronome mode and the model can change mid-jam (a new model takes over at the next bar line).
"""

from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..engine import options, steering
from ..engine.bass import BASS_LINES
from ..engine.drums import DRUM_PATTERNS
from ..engine.key import ALL_KEYS
from ..engine.knobs import Knob
from ..engine.styles import STYLES
from .elide import ElidedLabel, elide_combo, full_text_tip
from .models import ModelEntry
from .settings import METERS, METRONOME_MODES, AppSettings

OPEN_FILE = "__open__"
TAP_RESET_S = 2.0  # a pause this long starts a new tap-tempo measurement
TAP_WINDOW = 4  # the tempo is the mean of the last intervals
MODEL_CHARS = 24  # the model box's width, in characters (the window fits a 1280x720 screen)
BAND_CHARS = 9  # the band pickers' width, in characters
BAND_SHORT = {"style": "Band"}  # their labels in the window, where "Style" is the steering's


class TapTempo:
    """Tempo from taps: the mean interval of the last few taps, restarted after a pause."""

    def __init__(self) -> None:
        self.taps: list[float] = []

    def tap(self, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        if self.taps and now - self.taps[-1] > TAP_RESET_S:
            self.taps = []
        self.taps = (self.taps + [now])[-(TAP_WINDOW + 1):]
        if len(self.taps) < 2:
            return None
        mean = (self.taps[-1] - self.taps[0]) / (len(self.taps) - 1)
        return round(60.0 / mean, 1) if mean > 0 else None


def _knob_label(name: str) -> str:
    return next(k.label for k in steering.KNOBS if k.name == name)


def _knob_help(name: str) -> str:
    return next(k.help for k in steering.KNOBS if k.name == name)


BAND_LABELS = {"style": {k: v.label for k, v in STYLES.items()},
               "bass": {k: v.label for k, v in BASS_LINES.items()},
               "drums": {"off": "off", "auto": "to suit the style"} | {k: v.label for k, v in DRUM_PATTERNS.items()}}


def choice_box(knob: Knob) -> QComboBox:
    """The picker of a choices knob (the band's style, bass line, drums): a musician's words, the knob's values."""
    box = QComboBox()
    for value in knob.choices:
        box.addItem(BAND_LABELS.get(knob.name, {}).get(value, value), value)
    box.setProperty("help", knob.help)
    box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    return elide_combo(box, BAND_CHARS)  # the window fits 1280 px: the whole name is in the tooltip


def knob_box(knob: Knob) -> QSpinBox | QDoubleSpinBox:
    """The control of a numeric knob: its range, step, unit and help, from the table."""
    box = QSpinBox() if knob.kind is int else QDoubleSpinBox()
    if knob.kind is not int:
        box.setDecimals(knob.decimals)
    box.setRange(knob.lo, knob.hi)
    box.setSingleStep(knob.step)
    box.setSuffix(f" {knob.unit}" if knob.unit else "")
    box.setProperty("help", knob.help)
    box.setToolTip(knob.help)
    box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    box.setKeyboardTracking(False)
    return box


class TransportPanel(QWidget):
    start_stop = Signal()
    changed = Signal()  # any transport setting; read them with ``apply_to``
    model_chosen = Signal(str)  # a card path

    def __init__(self, s: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.start_button = QPushButton("Start")
        self.start_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.start_button.setMinimumWidth(110)
        self.start_button.setStyleSheet("QPushButton { font-size: 16px; font-weight: bold; padding: 6px 14px; }")
        # one control per knob of the table, by name; the tempo, count-in and the four below have names here too
        self.controls = {k.name: knob_box(k) for k in options.GUI_KNOBS}
        c = self.controls
        self.tempo, self.count_in = c["bpm"], c["count_in_bars"]
        self.listen, self.lookahead = c["listen_beats"], c["lookahead_beats"]
        self.commit, self.temperature = c["commit_beats"], c["temperature"]
        self.tap = QPushButton("Tap")
        self.tap.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.meter = QComboBox()
        self.meter.addItems(METERS)
        self.metronome = QComboBox()
        self.metronome.addItems(METRONOME_MODES)
        # steering: a musician's three controls (engine/steering.py holds what they mean)
        self.style = QComboBox()
        for name in ("off", "adventurous", "balanced", "safe"):
            self.style.addItem(name, name)
        self.style.setProperty("help", "safe <-> adventurous: how strongly the chords are held to the key, the melody and "
                              "a steady harmonic rhythm ('off': the model's raw choices)")
        self.rhythm = QComboBox()
        for name in steering.RHYTHMS:
            self.rhythm.addItem(steering.RHYTHM_LABELS[name], name)
        self.rhythm.setProperty("help", _knob_help("rhythm"))
        self.key = QComboBox()
        self.key.addItem("follow melody", "auto")
        for k in ALL_KEYS:
            self.key.addItem(k.name, k.name)
        self.key.addItem("off", "off")
        self.key.setProperty("help", _knob_help("key"))
        self.model = elide_combo(QComboBox(), MODEL_CHARS)  # a description is long: elided, whole in the tooltip
        self.model.setMinimumWidth(220)
        for w in (self.style, self.rhythm, self.key):
            w.setToolTip(w.property("help"))
        for combo in (self.meter, self.metronome, self.model, self.style, self.rhythm, self.key):
            combo.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.model_note = ElidedLabel()
        # the band: how the chords are played (a style picker), the bass line and the drums
        self.band = {k.name: choice_box(k) for k in options.BAND_KNOBS if k.gui and k.choices}
        # how loud it plays: the range its velocity follows the player's within (softest, loudest)
        self.dynamics = {k.name: knob_box(k) for k in options.BAND_KNOBS if k.gui and not k.choices}

        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        tempo, count_in = options.knob("bpm"), options.knob("count_in_bars")
        row0 = [(None, self.start_button), (tempo.label, _pair(self.tempo, self.tap)), ("Meter", self.meter),
                (count_in.label, self.count_in), ("Metronome", self.metronome), ("Model", self.model)]
        row1 = [(None, self.model_note)] + [(k.label, self.controls[k.name]) for k in options.GUI_KNOBS
                                            if k.name not in ("bpm", "count_in_bars")]
        if self.dynamics:
            dynamics = _pair(*self.dynamics.values(), stretch_both=True)
            dynamics.setToolTip("the band's velocity follows the player's, smoothed, within softest .. loudest")
            row1.append(("Dynamics", dynamics))
        row2 = [(None, QWidget()), ("Style", self.style), (_knob_label("rhythm"), self.rhythm),
                (_knob_label("key"), self.key)]
        band = QWidget()  # the band's three pickers share the last cells of the steering row (the window fits 720 px)
        lay = QHBoxLayout(band)
        lay.setContentsMargins(0, 0, 0, 0)
        for name, box in self.band.items():
            lay.addWidget(QLabel(BAND_SHORT.get(name, options.knob(name).label)))
            lay.addWidget(box, 1)
        grid.addWidget(band, 2, 4, 1, 2)
        for r, row in enumerate((row0, row1, row2)):
            for c, (label, widget) in enumerate(row):
                if label:
                    cell = QWidget()
                    lay = QHBoxLayout(cell)
                    lay.setContentsMargins(0, 0, 0, 0)
                    lay.addWidget(QLabel(label))
                    lay.addWidget(widget, 1)
                    grid.addWidget(cell, r, c)
                else:
                    grid.addWidget(widget, r, c)
        grid.setColumnStretch(5, 1)
        self.load(s)

        self._tapper = TapTempo()
        self.start_button.clicked.connect(self.start_stop)
        self.tap.clicked.connect(self._tap)
        for box in (*self.controls.values(), *self.dynamics.values()):
            box.valueChanged.connect(self.changed)
        for rule in options.RULES:  # e.g. the commit follows the lookahead down, and stops at it going up
            a, b = self.controls[rule.name], self.controls[rule.limit]
            for box in (a, b):
                box.valueChanged.connect(lambda _=None, a=a, b=b: a.setValue(min(a.value(), b.value())))
        self.meter.currentIndexChanged.connect(self.changed)
        self.metronome.currentIndexChanged.connect(self.changed)
        for combo in (self.style, self.rhythm, self.key, *self.band.values()):
            combo.currentIndexChanged.connect(self.changed)
        self.style.currentIndexChanged.connect(self._style_changed)
        self.model.activated.connect(self._model_activated)

    def load(self, s: AppSettings) -> None:
        for name, value in options.values(s.jam).items():
            self.controls[name].setValue(value)
        self.meter.setCurrentText(f"{s.jam.meter[0]}/{s.jam.meter[1]}")
        self.metronome.setCurrentText(s.metronome)
        for name, box in self.dynamics.items():
            box.setValue(getattr(s.jam, name))
        band = [(box, getattr(s.jam, name)) for name, box in self.band.items()]
        for combo, value in ((self.style, s.steer_style), (self.rhythm, s.steer_rhythm), (self.key, s.steer_key),
                             *band):
            i = combo.findData(value)
            combo.setCurrentIndex(max(0, i))
        self._style_changed()

    def _style_changed(self) -> None:
        """'off' is the raw policy: the rhythm and key controls mean nothing then."""
        on = self.style.currentData() != "off"
        self.rhythm.setEnabled(on)
        self.key.setEnabled(on)

    def apply_to(self, s: AppSettings) -> None:
        num, den = self.meter.currentText().split("/")
        s.jam = options.with_values(replace(s.jam, meter=(int(num), int(den))),
                                    {name: box.value() for name, box in self.controls.items()}
                                    | {name: box.currentData() for name, box in self.band.items()}
                                    | {name: box.value() for name, box in self.dynamics.items()})
        s.metronome = self.metronome.currentText()
        s.steer_style, s.steer_rhythm = self.style.currentData(), self.rhythm.currentData()
        s.steer_key = self.key.currentData()

    def set_running(self, state: str) -> None:
        """Lock what shapes a whole jam while one runs; the button says what it will do."""
        idle = state == "idle"
        self.start_button.setText({"idle": "Start", "running": "Stop", "starting": "Starting…",
                                   "stopping": "Saving…"}[state])
        self.start_button.setEnabled(state in ("idle", "running"))
        for w in (*self.controls.values(), self.tap, self.meter, self.style, self.rhythm, self.key,
                  *self.band.values(), *self.dynamics.values()):
            w.setEnabled(idle)
            help_text = w.property("help") or ""
            w.setToolTip(help_text if idle else f"{help_text} (applies to the next jam)".strip())
        if idle:
            self._style_changed()

    # --- models ----------------------------------------------------------------------------------------------

    def set_models(self, entries: list[ModelEntry], selected: str) -> None:
        self.model.blockSignals(True)
        self.model.clear()
        for e in entries:
            self.model.addItem(f"{e.name} — {e.description}", e.path)
            self.model.setItemData(self.model.count() - 1, e.error or e.description, Qt.ItemDataRole.ToolTipRole)
        if not entries:
            self.model.addItem("no models found", "")
        self.model.insertSeparator(self.model.count())
        self.model.addItem("Open file…", OPEN_FILE)
        self.select_model(selected)
        self.model.blockSignals(False)

    def select_model(self, path: str) -> None:
        i = self.model.findData(path)
        if i >= 0:
            self.model.setCurrentIndex(i)
            self._last_model = i
        full_text_tip(self.model)

    def add_model(self, entry: ModelEntry) -> None:
        if self.model.findData(entry.path) < 0:
            self.model.insertItem(max(0, self.model.count() - 2), f"{entry.name} — {entry.description}", entry.path)
        self.select_model(entry.path)

    def current_model(self) -> str:
        data = self.model.currentData()
        return data if data and data != OPEN_FILE else ""

    def _model_activated(self, index: int) -> None:
        path = self.model.itemData(index)
        if path == OPEN_FILE:
            chosen, _ = QFileDialog.getOpenFileName(self, "Open a model bundle", "", "Model cards (*.json *.onnx)")
            if not chosen:
                self.model.setCurrentIndex(getattr(self, "_last_model", 0))
                return
            path = chosen
        elif not path:
            return
        self._last_model = index
        self.model_chosen.emit(path)

    def _tap(self) -> None:
        bpm = self._tapper.tap()
        if bpm is not None:
            self.tempo.setValue(options.knob("bpm").clamped(bpm))


def _pair(a: QWidget, b: QWidget, stretch_both: bool = False) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(a, 1)
    lay.addWidget(b, 1 if stretch_both else 0)
    return w
