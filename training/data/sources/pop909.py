"""POP909: one folder per song with the MIDI (``MELODY`` / ``BRIDGE`` / ``PIANO``) and hand-checked text annotations.

Why the beat grid comes from ``beat_midi.txt`` and not from the MIDI: the MIDI's time signature is mostly a
meaningless 1/4 and its tempo map does not match the annotated beats (``pretty_midi.get_beats()`` drifts off
them), while every ``chord_midi.txt`` boundary sits on a ``beat_midi.txt`` beat. So all times are read in seconds
and mapped to beats by piecewise-linear interpolation over the annotated beat times (beat 0 = the first row),
extrapolated with the first / last beat interval outside them. Nothing is trimmed here: the long intros without
melody are cut generically by the frame codec.

Meter (metadata only, the model sees frames): the most common spacing of ``bar_flag`` downbeats. A 6-beat bar is
always split 3 + 3 by ``group_flag`` (``num_beats_per_measure`` = 3 and two quavers per beat in ``index.xlsx``),
so it is read as two bars of simple triple time, (3, 4), not (6, 4) or (6, 8); a 4-beat bar is (4, 4).

Chords are the Harte-like labels of ``chord_midi.txt`` (``A:maj/3``: the bass is a scale degree of the chord).
Unlike the reference implementation there is no fallback to C major: an unreadable label raises ``ValueError``
naming the file and line. Consecutive spans of the same chord (12 % of boundaries) are merged. The key is the
first row of ``key_audio.txt`` (the only key annotation; the audio time axis does not matter for the tonic).
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pretty_midi

from training.data.chords import parse_harte, parse_pitch_class
from training.data.leadsheet import ChordSpan, Key, LeadSheet, Note, SkipSong, SongRef, merge_repeated, monophonic

NAME = "pop909"


def discover(data_dir: Path, workdir: Path) -> list[SongRef]:
    root = Path(data_dir) / "pop909" / "POP909"
    return [SongRef(NAME, d.name, str(d)) for d in sorted(root.iterdir()) if d.is_dir() and d.name.isdigit()]


def _rows(path: Path, n_fields: int) -> list[list[str]]:
    """Whitespace-separated rows with at least ``n_fields`` fields; a short row raises naming the file."""
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < n_fields:
            raise ValueError(f"{path}:{i}: expected {n_fields} fields, got {line!r}")
        rows.append(fields)
    return rows


def _floats(path: Path, rows: list[list[str]], n: int) -> np.ndarray:
    try:
        return np.array([[float(x) for x in r[:n]] for r in rows], dtype=float).reshape(-1, n)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e


def read_beats(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``beat_midi.txt`` -> (beat times in seconds, group_flag, bar_flag)."""
    a = _floats(path, _rows(path, 3), 3)
    if len(a) < 2 or np.any(np.diff(a[:, 0]) <= 0):
        raise ValueError(f"{path}: need at least 2 strictly increasing beat times")
    return a[:, 0], a[:, 1] > 0.5, a[:, 2] > 0.5


def seconds_to_beats(t: np.ndarray | list[float], beat_times: np.ndarray) -> np.ndarray:
    """Piecewise-linear map from seconds to beat index, extrapolated with the neighbouring beat interval."""
    t = np.asarray(t, dtype=float)
    k = np.interp(t, beat_times, np.arange(len(beat_times), dtype=float))
    first, last = beat_times[1] - beat_times[0], beat_times[-1] - beat_times[-2]
    k = np.where(t < beat_times[0], (t - beat_times[0]) / first, k)
    return np.where(t > beat_times[-1], len(beat_times) - 1 + (t - beat_times[-1]) / last, k)


def meter_from_flags(group: np.ndarray, bar: np.ndarray) -> tuple[int, int]:
    """The most common downbeat spacing; a 6-beat bar split 3 + 3 is two bars of 3/4 (module docstring)."""
    spacing = Counter(np.diff(np.flatnonzero(bar)).tolist())
    if not spacing:
        return (4, 4)
    beats = spacing.most_common(1)[0][0]
    groups = Counter(np.diff(np.flatnonzero(group)).tolist())
    if beats == 6 and groups and groups.most_common(1)[0][0] == 3:
        return (3, 4)
    return (beats, 4)


def read_key(path: Path) -> Key | None:
    """First row of ``key_audio.txt``: ``start end Gb:maj`` -> Key(6, 'major')."""
    if not path.exists():
        return None
    rows = _rows(path, 3)
    if not rows:
        return None
    tonic, _, mode = rows[0][2].partition(":")
    return Key(parse_pitch_class(tonic), {"maj": "major", "min": "minor"}.get(mode, mode or "major"))


def read_melody(path: Path) -> list[tuple[float, float, int]]:
    """(start_sec, end_sec, pitch) of the ``MELODY`` track; an unreadable file raises naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pretty_midi warns about meta events on non-zero tracks
            midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as e:  # noqa: BLE001 - mido / pretty_midi raise many types for a broken file
        raise ValueError(f"{path}: unreadable MIDI ({type(e).__name__}: {e})") from e
    tracks = [inst for inst in midi.instruments if inst.name.strip().upper() == "MELODY"]
    if not tracks:
        raise SkipSong("no MELODY track")
    return [(n.start, n.end, n.pitch) for n in tracks[0].notes]


def read_chords(path: Path, beat_times: np.ndarray) -> list[ChordSpan]:
    """``chord_midi.txt`` (``start end label`` in seconds) -> chord spans in beats, repeats merged."""
    rows = _rows(path, 3)
    times = seconds_to_beats(_floats(path, rows, 2), beat_times)
    spans = []
    for (on, off), r in zip(times, rows):
        label = " ".join(r[2:])
        try:
            root, intervals, bass = parse_harte(label)
        except ValueError as e:
            raise ValueError(f"{path}: unknown chord label {label!r} ({e})") from e
        spans.append(ChordSpan(float(on), float(off), label, root, intervals, bass))
    return merge_repeated(spans)


def parse(ref: SongRef) -> LeadSheet:
    folder = Path(ref.path)
    beat_times, group, bar = read_beats(folder / "beat_midi.txt")
    raw = read_melody(folder / f"{folder.name}.mid")
    if not raw:
        raise SkipSong("empty MELODY track")
    on = seconds_to_beats([n[0] for n in raw], beat_times)
    off = seconds_to_beats([n[1] for n in raw], beat_times)
    notes = monophonic([Note(float(a), float(b), p) for a, b, (_, _, p) in zip(on, off, raw)])
    if not notes:
        raise SkipSong("empty MELODY track")
    chords = read_chords(folder / "chord_midi.txt", beat_times)
    if not chords:
        raise SkipSong("no chords")
    downbeats = np.flatnonzero(bar)
    return LeadSheet(NAME, ref.song_id, notes, chords, meter=meter_from_flags(group, bar),
                     key=read_key(folder / "key_audio.txt"), path=str(folder),
                     extra={"first_downbeat": int(downbeats[0]) if len(downbeats) else 0})
