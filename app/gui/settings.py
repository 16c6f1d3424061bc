"""What the musician set up, kept between runs: one dataclass, stored field by field in QSettings.

Why a dataclass: the rest of the app reads typed values (``s.bpm``), never QSettings' strings, and a value a
newer or older build wrote that does not fit (a metronome mode we do not know, a tempo out of range) falls back
to the default instead of breaking the start-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from PySide6.QtCore import QSettings

from ..engine import steering

METRONOME_MODES = ("off", "count-in", "always")
METERS = ("2/4", "3/4", "4/4", "5/4", "6/8", "12/8")
PARTS = ("melody", "chords", "bass")
SETTINGS_ENV = "COMPER_SETTINGS"  # an .ini file to use instead of the platform's settings store


@dataclass
class AppSettings:
    # transport
    bpm: float = 100.0
    meter: str = "4/4"
    count_in_bars: int = 1
    metronome: str = "count-in"
    listen_beats: float = 8.0
    lookahead_beats: float = 4.0
    commit_beats: float = 4.0
    temperature: float = 1.1  # the engine's default (PlanSettings)
    steer_style: str = steering.DEFAULT_PRESET  # safe <-> adventurous (steering.PRESETS)
    steer_rhythm: str = "auto"  # where chords may change (steering.RHYTHMS)
    steer_key: str = "auto"  # auto: follow the melody; off; or a key name
    model: str = ""  # the model card's path ("" = the default model)
    # devices
    midi_in: str = ""  # port name ("" = none: the computer keyboard only)
    midi_out: str = ""
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

    @property
    def meter_tuple(self) -> tuple[int, int]:
        num, den = self.meter.split("/")
        return int(num), int(den)

    def program(self, part: str) -> int:
        return getattr(self, f"program_{part}")

    def volume(self, part: str) -> int:
        return getattr(self, f"volume_{part}")

    def sanitized(self) -> "AppSettings":
        """The same settings with every value forced into its valid range (defaults where it makes no sense)."""
        d = AppSettings()
        steer = steering.compose("balanced", self.steer_rhythm, self.steer_key)

        def clamp(x, lo, hi):
            return min(hi, max(lo, x))

        return replace(
            self,
            bpm=clamp(self.bpm, 30.0, 300.0),
            meter=self.meter if self.meter in METERS else d.meter,
            count_in_bars=clamp(self.count_in_bars, 0, 4),
            metronome=self.metronome if self.metronome in METRONOME_MODES else d.metronome,
            listen_beats=clamp(self.listen_beats, 0.0, 64.0),
            lookahead_beats=clamp(self.lookahead_beats, 0.25, 16.0),
            commit_beats=clamp(self.commit_beats, 0.25, 16.0),
            temperature=clamp(self.temperature, 0.05, 3.0),
            steer_style=self.steer_style if self.steer_style in steering.PRESETS else d.steer_style,
            steer_rhythm=steer.rhythm,
            steer_key=steer.key,
            program_melody=clamp(self.program_melody, 0, 127),
            program_chords=clamp(self.program_chords, 0, 127),
            program_bass=clamp(self.program_bass, 0, 127),
            volume_melody=clamp(self.volume_melody, 0, 100),
            volume_chords=clamp(self.volume_chords, 0, 100),
            volume_bass=clamp(self.volume_bass, 0, 100),
            octave=clamp(self.octave, 0, 8),
            velocity=clamp(self.velocity, 1, 127),
        )


def open_store(path: str | os.PathLike | None = None) -> QSettings:
    """The settings store: an explicit .ini file (tests, $COMPER_SETTINGS), else the platform's own place."""
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Comper", "Comper")


def _convert(raw, default):
    if isinstance(default, bool):  # ini files give "true"/"false"
        return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("1", "true", "yes", "on")
    return type(default)(raw)


def load_settings(store: QSettings) -> AppSettings:
    """Read every field; a missing or unreadable value keeps its default."""
    s = AppSettings()
    for f in fields(AppSettings):
        raw = store.value(f.name)
        if raw is None:
            continue
        try:
            setattr(s, f.name, _convert(raw, getattr(s, f.name)))
        except (TypeError, ValueError):
            pass
    try:
        return s.sanitized()
    except ValueError:
        return AppSettings()


def save_settings(s: AppSettings, store: QSettings, sync: bool = True) -> None:
    """Write every field; ``sync`` flushes to disk now (Qt also flushes by itself from the event loop)."""
    for f in fields(AppSettings):
        store.setValue(f.name, getattr(s, f.name))
    if sync:
        store.sync()
