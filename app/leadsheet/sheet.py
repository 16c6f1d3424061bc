"""A saved session (or a ``comper rejam`` output) read as a lead sheet: title, tempo, meter, key, bars, the chord
changes and the melody, on a 16th-note grid. Both exports (``musicxml``, ``chart``) draw from this one reading.

What is read (``app/recording/save.py`` writes it): a type-1 MIDI file whose conductor track holds the tempo, the
time signature and one ``marker`` per chord onset (the chord symbol), with tracks ``Melody``, ``Chords`` and
``Bass`` (a teacher's second opinion has ``Chords (teacher)`` instead of ``Chords``); and its sidecar
``NAME.mid.session.json`` (the model, the seed, the steering key). A file without the ``Melody`` and ``Chords``
tracks is not a session and is refused in one line, as is a file that cannot be read.

Chords: a marker whose symbol is the chord already sounding (a re-struck chord) is no change; where neither the
``Chords`` nor the ``Bass`` track sounds, there is no chord (``None``, written N.C.). The melody is one line, as a
lead sheet has it: notes struck together are one chord of notes, and a note still held when the next is struck
ends there (legato overlap). The key is the sidecar's steering key when the jam was held in one, else the key the
melody is in (``app.engine.key.estimate_key``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from ..engine.key import Key, estimate_key
from ..engine.midifile import InputLimits, _played_notes, check_minutes, load_midi
from ..errors import ComperError
from ..recording.output import existing_sidecar

GRID_PER_BEAT = 4  # 16ths: where onsets and ends are placed
TEACHER_CHORDS = "Chords (teacher)"  # the chords track of a second opinion (``reharmonize.py``)


class LeadSheetError(ComperError):
    """A session that cannot be exported; the message is one line naming the file."""


@dataclass(frozen=True)
class Bar:
    number: int  # from 1
    held: str | None  # the chord sounding at the downbeat before any change in this bar (None: no chord)
    changes: tuple[tuple[int, str | None], ...]  # (tick from the bar's start, symbol or None for N.C.)

    def sounding(self) -> tuple[str | None, ...]:
        """The chords heard in this bar in order, each once: the held one (unless it changes on the downbeat)
        and the changes."""
        out = [] if self.changes and self.changes[0][0] == 0 else [self.held]
        for _, symbol in self.changes:
            if not out or out[-1] != symbol:
                out.append(symbol)
        return tuple(out)


@dataclass
class LeadSheet:
    title: str
    bpm: float
    meter: tuple[int, int]
    key: Key
    key_from: str  # "session" (the jam's steering key) or "melody" (estimated)
    ticks_per_beat: int
    n_bars: int
    chords: list[tuple[int, str | None]]  # changes: (tick, symbol; None = no chord), time order, no repeats
    melody: list[tuple[int, int, tuple[int, ...]]]  # (on tick, off tick, pitches) on the grid, one line
    model: str | None = None
    seed: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def bar_ticks(self) -> int:
        return self.meter[0] * self.ticks_per_beat * 4 // self.meter[1]

    def bars(self) -> list[Bar]:
        out, held, i = [], None, 0
        for b in range(self.n_bars):
            start, end = b * self.bar_ticks, (b + 1) * self.bar_ticks
            first = held
            changes = []
            while i < len(self.chords) and self.chords[i][0] < end:
                tick, symbol = self.chords[i]
                changes.append((tick - start, symbol))
                held, i = symbol, i + 1
            out.append(Bar(b + 1, first, tuple(changes)))
        return out


def _snap(tick: float, grid: int) -> int:
    return int(round(tick / grid)) * grid


def _sidecar(path: Path, warnings: list[str]) -> dict:
    side_path = existing_sidecar(path)
    if side_path is None:
        warnings.append(f"{path}: no sidecar ({path.name}.session.json): the key is estimated from the melody")
        return {}
    try:
        side = json.loads(side_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        warnings.append(f"{side_path}: not read ({e}); the key is estimated from the melody")
        return {}
    return side if isinstance(side, dict) else {}


def _session_key(side: dict) -> Key | None:
    """The key the jam was steered to stay in (None: it followed the melody, or the sidecar does not say)."""
    settings = side.get("settings") if isinstance(side.get("settings"), dict) else {}
    steer = ((settings.get("plan") or {}).get("steer") or {}) if isinstance(settings.get("plan"), dict) else {}
    name = steer.get("key") if isinstance(steer, dict) else None
    if not isinstance(name, str) or name in ("auto", "off"):
        return None
    try:
        return Key.parse(name)
    except ValueError:
        return None


def _melody_line(notes: list[tuple[float, float, int, int]], grid: int, end: int
                 ) -> list[tuple[int, int, tuple[int, ...]]]:
    """Notes as played -> one line on the grid: equal onsets together, each ending at the latest where the next
    begins, at least one grid step long, none past ``end``."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for on, off, pitch, _ in notes:
        q_on = _snap(on, grid)
        if q_on >= end:
            continue
        groups.setdefault(q_on, []).append((max(q_on + grid, _snap(off, grid)), pitch))
    onsets = sorted(groups)
    line = []
    for i, on in enumerate(onsets):
        off = max(o for o, _ in groups[on])
        if i + 1 < len(onsets):
            off = min(off, onsets[i + 1])
        line.append((on, min(off, end), tuple(sorted({p for _, p in groups[on]}))))
    return line


def _chord_changes(markers: list[tuple[int, str]], accompaniment: list[tuple[float, float, int, int]],
                   grid: int, end: int) -> list[tuple[int, str | None]]:
    """Chord symbols at their (grid) ticks, with None where nothing accompanies before ``end``; repeats dropped."""
    timeline: list[tuple[int, int, str | None]] = [(_snap(t, grid), 1, s) for t, s in markers]
    covered = 0  # a gap in the accompaniment, from the start on, is no chord
    for on, off in sorted((_snap(on, grid), _snap(off, grid)) for on, off, _, _ in accompaniment):
        if on > covered:
            timeline.append((covered, 0, None))
        covered = max(covered, off)
    if covered < end:
        timeline.append((covered, 0, None))
    out: list[tuple[int, str | None]] = []
    for tick, _, symbol in sorted(timeline, key=lambda x: (x[0], x[1])):
        if out and out[-1][0] == tick:
            out.pop()  # the later event at the same tick wins (a chord struck where a silence began)
        if not out or out[-1][1] != symbol:
            out.append((tick, symbol))
    return [(t, s) for t, s in out if t < end]


def read_leadsheet(path: str | Path, limits: InputLimits | None = None) -> LeadSheet:
    """The lead sheet of the session MIDI file ``path``; ``LeadSheetError`` (one line naming it) if it is none, or
    longer than ``limits`` allow (default ``InputLimits()``: a corrupt time would be a chart of thousands of lines)."""
    path = Path(path)
    limits = limits or InputLimits()
    mid, warnings = load_midi(path, limits, error=LeadSheetError)
    tracks = {t.name: t for t in mid.tracks}
    if "Chords" not in tracks and TEACHER_CHORDS in tracks:  # the teacher's second opinion on a take
        tracks["Chords"] = tracks[TEACHER_CHORDS]
    if mid.type != 1 or "Melody" not in tracks or "Chords" not in tracks:
        raise LeadSheetError(f"{path}: not a Comper session (no 'Melody' and 'Chords' tracks): export a saved "
                             f"session or a `comper rejam` output")
    tpb = mid.ticks_per_beat
    end = max(sum(m.time for m in t) for t in mid.tracks)
    tempo, meter, markers, tick = None, None, [], 0
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "set_tempo" and tempo is None:
            tempo = msg.tempo
        elif msg.type == "time_signature" and meter is None:
            meter = (msg.numerator, msg.denominator)
        elif msg.type == "marker" and msg.text.strip():
            markers.append((tick, msg.text.strip()))
    bpm = mido.tempo2bpm(tempo or 500000)
    check_minutes(path, end / tpb * 60 / bpm, limits, LeadSheetError)
    meter = meter if meter and meter[0] >= 1 and meter[1] in (1, 2, 4, 8, 16, 32) else (4, 4)
    grid = max(1, tpb // GRID_PER_BEAT)
    melody_notes = _played_notes(tracks["Melody"], end, grid)
    accompaniment = _played_notes(tracks["Chords"], end, grid)
    if "Bass" in tracks:
        accompaniment += _played_notes(tracks["Bass"], end, grid)
    bar_ticks = meter[0] * tpb * 4 // meter[1]
    last = max([_snap(end, grid), *(_snap(t, grid) + grid for t, _ in markers),
                *(_snap(on, grid) + grid for on, _, _, _ in melody_notes)])
    n_bars = max(1, math.ceil(last / bar_ticks))
    melody = _melody_line(melody_notes, grid, n_bars * bar_ticks)
    side = _sidecar(path, warnings)
    key, key_from = _session_key(side), "session"
    if key is None:
        key, key_from = _melody_key(melody, grid), "melody"
    model = side.get("model")
    return LeadSheet(
        title=Path(str(side.get("midi") or path.name)).stem, bpm=round(bpm, 2),
        meter=meter, key=key, key_from=key_from, ticks_per_beat=tpb, n_bars=n_bars,
        chords=_chord_changes(markers, accompaniment, grid, n_bars * bar_ticks), melody=melody,
        model=model.get("name") if isinstance(model, dict) else (model if isinstance(model, str) else None),
        seed=side.get("seed") if isinstance(side.get("seed"), int) else None, warnings=warnings)


def _melody_key(melody: list[tuple[int, int, tuple[int, ...]]], grid: int) -> Key:
    """The melody's key, each 16th weighted alike (its top note); C major when there is no melody."""
    frames = np.full(max((off for _, off, _ in melody), default=0) // grid, -1)
    for on, off, pitches in melody:
        frames[on // grid:off // grid] = max(pitches)
    return estimate_key(frames) or Key(0, "major")
