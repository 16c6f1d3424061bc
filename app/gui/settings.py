"""What the musician set up, kept between runs: one dataclass, stored value by value in QSettings.

Why a dataclass: the rest of the app reads typed values (``s.jam.bpm``), never QSettings' strings, and a value a
newer or older build wrote that does not fit (a metronome mode we do not know, a tempo out of range) falls back
to the default, or is clamped into its range, with a note, instead of breaking the start-up. The jam's part is
the engine's ``JamSettings``; its ranges, and those of the window's own preferences (``APP_KNOBS``), are tables
of ``Knob`` s (``engine/options.py`` says how to add one). The keys are the ones older builds wrote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from PySide6.QtCore import QSettings

from ..engine import options, steering
from ..engine.knobs import Knob, clamp_all, declared
from ..engine.options import JamSettings

METRONOME_MODES = ("off", "count-in", "always")
METERS = ("2/4", "3/4", "4/4", "5/4", "6/8", "12/8")
PARTS = ("melody", "chords", "bass")
SETTINGS_ENV = "COMPER_SETTINGS"  # an .ini file to use instead of the platform's settings store
BAND_GUI = tuple(k for k in options.BAND_KNOBS if k.gui)  # the band's pickers, saved under their names too


@dataclass
class AppSettings:
    # the jam: tempo, meter, count-in and the planning settings, the engine's own type; what the window shows and
    # saves of it, and the ranges, are ``options.GUI_KNOBS`` (saved under the knobs' names: ``bpm``, ...)
    jam: JamSettings = JamSettings()
    metronome: str = "count-in"
    steer_style: str = steering.DEFAULT_PRESET  # safe <-> adventurous (steering.PRESETS)
    steer_rhythm: str = "auto"  # where chords may change (steering.RHYTHMS)
    steer_key: str = "auto"  # auto: follow the melody; off; or a key name
    model: str = ""  # the model card's path ("" = the default model)
    # devices
    midi_in: str = ""  # port name ("" = none: the computer keyboard only; devices.VIRTUAL_PORT: our own port)
    midi_out: str = ""
    clock_source: str = ""  # the port whose MIDI clock the jam follows ("" = Comper's own clock; devices.LINK_CLOCK:
    # an Ableton Link session)
    clock_out: str = ""  # the port Comper's own clock is sent to ("" = none)
    synth_on: bool = True
    soundfont: str = ""  # "" = the system's General MIDI soundfont
    program_melody: int = 0  # GM programs (0-based): piano
    program_chords: int = 4  # electric piano
    program_bass: int = 32  # acoustic bass
    volume_melody: int = 100  # percent
    volume_chords: int = 80
    volume_bass: int = 90
    # computer keyboard
    octave: int = 4  # the A key plays C of this octave (4: middle C)
    velocity: int = 96
    # window
    geometry: str = ""  # hex of QWidget.saveGeometry()
    splitter: str = ""

    def program(self, part: str) -> int:
        return getattr(self, f"program_{part}")

    def volume(self, part: str) -> int:
        return getattr(self, f"volume_{part}")

    def sanitized(self, notes: list[str] | None = None) -> AppSettings:
        """The same settings with every value forced into its valid range (defaults where it makes no sense);
        ``notes`` gets a line for each value changed."""
        jam, said = options.clamped(self.jam)
        jam, band_said = options.clamped(jam, BAND_GUI)  # a style another build knew: the default, with a note
        said += band_said
        own, own_said = clamp_all(APP_KNOBS, {k.name: getattr(self, k.name) for k in APP_KNOBS})
        if notes is not None:
            notes += said + own_said
        steer = steering.compose("balanced", self.steer_rhythm, self.steer_key)
        return replace(self, jam=jam, **own, steer_rhythm=steer.rhythm, steer_key=steer.key)


APP_KNOBS: tuple[Knob, ...] = declared(  # the window's own preferences: no command-line flag
    AppSettings,
    Knob("metronome", "Metronome", "when the metronome clicks", choices=METRONOME_MODES, flag=None),
    Knob("steer_style", "Style", "safe <-> adventurous", choices=tuple(steering.PRESETS), flag=None),
    *(Knob(f"program_{part}", f"{part.capitalize()} sound", "General MIDI program", 0, 127, flag=None)
      for part in PARTS),
    *(Knob(f"volume_{part}", f"{part.capitalize()} volume", "volume", 0, 100, unit="%", flag=None)
      for part in PARTS),
    Knob("octave", "Octave", "the A key plays C of this octave", 0, 8, flag=None),
    Knob("velocity", "Velocity", "the computer keyboard's velocity", 1, 127, flag=None),
)


def _meter_name(meter: tuple[int, int]) -> str:
    return f"{meter[0]}/{meter[1]}"


def stored(s: AppSettings) -> dict[str, object]:
    """What is saved, by key: the jam's ``GUI_KNOBS`` and its meter ("3/4"), then every other field."""
    out: dict[str, object] = dict(options.values(s.jam)) | options.values(s.jam, BAND_GUI)
    out["meter"] = _meter_name(s.jam.meter)
    out |= {f.name: getattr(s, f.name) for f in fields(AppSettings) if f.name != "jam"}
    return out


def _from_stored(values: dict[str, object]) -> AppSettings:
    num, den = str(values.pop("meter")).split("/")
    jam = options.with_values(replace(JamSettings(), meter=(int(num), int(den))),
                              {k.name: values.pop(k.name) for k in options.GUI_KNOBS + BAND_GUI})
    return AppSettings(jam=jam, **values)


def open_store(path: str | os.PathLike | None = None) -> QSettings:
    """The settings store: an explicit .ini file (tests, $COMPER_SETTINGS), else the platform's own place."""
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Comper", "Comper")


def _convert(raw, kind: type):
    if kind is bool:  # ini files give "true"/"false"
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
    return int(float(raw)) if kind is int else kind(raw)


def load_settings(store: QSettings, notes: list[str] | None = None) -> AppSettings:
    """Read every saved value; a missing or unreadable one keeps its default, one out of range is clamped
    (``notes`` gets a line for each value not taken as it was)."""
    kinds = {k.name: k.kind for k in options.GUI_KNOBS + BAND_GUI}
    values = stored(AppSettings())
    said: list[str] = []
    for key, default in values.items():
        raw = store.value(key)
        if raw is None:
            continue
        try:
            values[key] = _convert(raw, kinds.get(key, type(default)))
        except (TypeError, ValueError, OverflowError):
            said.append(f"{key} {raw!r} is not a {kinds.get(key, type(default)).__name__}; {default!r} is used")
    if values["meter"] not in METERS:
        said.append(f"meter {values['meter']!r}: choose one of {', '.join(METERS)}; 4/4 is used")
        values["meter"] = _meter_name(JamSettings().meter)
    try:
        s = _from_stored(values).sanitized(said)
    except ValueError:
        s, said = AppSettings(), said + ["the saved settings make no sense: the defaults are used"]
    if notes is not None:
        notes += said
    return s


def save_settings(s: AppSettings, store: QSettings, sync: bool = True) -> None:
    """Write every value; ``sync`` flushes to disk now (Qt also flushes by itself from the event loop)."""
    for key, value in stored(s).items():
        store.setValue(key, value)
    if sync:
        store.sync()
