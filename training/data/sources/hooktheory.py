"""Hooktheory: the full JSON format (melody + chords, in beats) and the melody-only MIDI clips (in seconds).

``load_json`` reads the realchords / Sheet Sage ``Hooktheory.json`` schema (only a one-song sample is staged):
melody pitch = 60 + 12 * octave + pitch_class (checked against the MIDI clip of the same id), harmony = root +
cumulative ``root_position_intervals`` with inversion k putting the k-th chord tone in the bass.

The module-level ``discover`` / ``parse`` read the three ``Hooktheory_{Train,Valid,Test}_MIDI.tar.gz`` clips:
a ``SEGMENT`` drum track (two markers: segment start / end, both on beats) and a ``MELODY`` track, in seconds
aligned to the audio, with no beat grid. The beats are recovered here because the frames need them:

1. A first period: the tempo (60-180 bpm, 0.5 bpm steps) whose 16th grid, started at the segment start, best fits
   the note onsets and offsets of the first 10 s (mean distance to the grid, in 16ths).
2. Beat tracking: Sheet Sage placed the notes by linear interpolation between refined audio beats whose length
   wanders by a few %, so one global period drifts off the notes in long clips (a uniform grid fits only ~70 % of
   clips). Walking beat by beat, the next beat snaps to a note event within 18 % of a period of its predicted time
   (exact when the tune has a note there), else the period is corrected by an event half a beat on; the period
   follows the snapped beats with gain 1/2. The best of the three best first periods wins (mean grid distance).
3. Metrical level: a tempo under 70 bpm is doubled (the finer grid always fits); one over 160 is halved when every
   event still fits the coarser grid. Hooktheory beats are quarter notes, most pop songs sit in 70-160.

On the sample ``qveoYyGGodn`` the 45 tracked beats match the JSON's refined beat times within 6 ms. ``extra`` keeps
``bpm`` and ``grid_error`` (mean distance of the events to the 16th grid, in 16ths; 0.25 is random). Clips over
0.15 (0.3 %: runs of 32nd notes, continuous accelerandos) are skipped: their frames would scramble the rhythm.

MIDI is read with mido, not pretty_midi: mido reads the 16,373 clips in ~7 s of CPU, pretty_midi in ~27 s (the
whole parse, beat tracking included, takes ~16 s). pretty_midi also rejects two valid-split clips
(``RzojXRYAgDe``, ``YAg-XAdamle``) as "likely corrupt" only because their segments start 52 minutes into a long
video (tick > 1e7); their notes look like any other clip's, so they are kept. A file mido cannot read raises
``SkipSong("corrupt MIDI (...)")``.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from bisect import bisect_left
from pathlib import Path

import mido
import numpy as np

from training.data.chords import PITCH_NAMES
from training.data.leadsheet import ChordSpan, Key, LeadSheet, Note, SkipSong, SongRef, merge_repeated, monophonic

NAME = "hooktheory"
TARBALLS = {"train": "Hooktheory_Train_MIDI.tar.gz", "valid": "Hooktheory_Valid_MIDI.tar.gz",
            "test": "Hooktheory_Test_MIDI.tar.gz"}
_MODES = {(2, 2, 1, 2, 2, 2): "major", (2, 1, 2, 2, 1, 2): "minor", (2, 1, 2, 2, 2, 1): "dorian",
          (1, 2, 2, 2, 1, 2): "phrygian", (2, 2, 2, 1, 2, 2): "lydian", (2, 2, 1, 2, 2, 1): "mixolydian",
          (1, 2, 2, 1, 2, 2): "locrian", (2, 1, 2, 2, 1, 3): "harmonic minor"}

# --- the JSON format ------------------------------------------------------------------------------------------


def harmony_span(h: dict) -> ChordSpan:
    """``{root_pitch_class: 7, root_position_intervals: [4, 3], inversion: 1}`` -> G major, bass B."""
    root = int(h["root_pitch_class"])
    stacked = [int(i) for i in h["root_position_intervals"]]
    tones = [0] + [int(x) for x in np.cumsum(stacked)]
    k = int(h.get("inversion") or 0)
    label = f"{PITCH_NAMES[root]}({','.join(map(str, stacked))})" + (f"/inv{k}" if k else "")
    return ChordSpan(float(h["onset"]), float(h["offset"]), label, root, tuple(sorted({t % 12 for t in tones})),
                     (root + tones[k]) % 12 if k else None)


def sheet_from_record(song_id: str, record: dict) -> LeadSheet:
    ann = record["annotations"]
    notes = monophonic([Note(float(m["onset"]), float(m["offset"]), 60 + 12 * int(m["octave"]) + int(m["pitch_class"]))
                        for m in ann.get("melody") or []])
    chords = merge_repeated([harmony_span(h) for h in ann.get("harmony") or []])
    meters = ann.get("meters") or [{"beats_per_bar": 4, "beat_unit": 4}]
    keys = ann.get("keys") or []
    key = None
    if keys:
        steps = tuple(keys[0]["scale_degree_intervals"])
        key = Key(int(keys[0]["tonic_pitch_class"]), _MODES.get(steps, "steps " + "-".join(map(str, steps))))
    return LeadSheet(NAME, song_id, notes, chords, meter=(int(meters[0]["beats_per_bar"]), int(meters[0]["beat_unit"])),
                     key=key, extra={"split": str(record.get("split", "")).lower()})


def load_json(path: Path | str) -> list[LeadSheet]:
    """A ``Hooktheory.json`` (or ``.json.gz``) file: dict id -> record. Split names are lower-cased ('train')."""
    path = Path(path)
    with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
        data = json.load(f)
    sheets = [sheet_from_record(song_id, record) for song_id, record in data.items()]
    for s in sheets:
        s.path = str(path)
    return sheets


# --- the melody-only MIDI clips ------------------------------------------------------------------------------

MIN_BPM, MAX_BPM = 60.0, 180.0
SNAP = 0.18  # an event this close to a predicted beat (in periods) is the beat
HALF_SNAP = 0.08  # an event this close to the predicted half beat corrects the period
MAX_GRID_ERROR = 0.15  # beyond this (mean distance in 16ths; random is 0.25) the rhythm cannot be read


def discover(data_dir: Path, workdir: Path) -> list[SongRef]:
    refs: list[SongRef] = []
    for split, name in TARBALLS.items():
        tarball = Path(data_dir) / "hooktheory" / name
        if not tarball.exists():
            continue
        dest = Path(workdir) / "hooktheory" / split
        if not (dest / ".extracted").exists():
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tarball) as tar:
                tar.extractall(dest, filter="data")
            (dest / ".extracted").touch()
        refs += [SongRef(NAME, f"{split}/{p.stem}", str(p)) for p in sorted(dest.rglob("*.mid"))]
    return refs


def read_clip(path: str) -> tuple[list[float], list[tuple[float, float, int]]]:
    """(segment marker times, melody (start, end, pitch)) in seconds. Markers: the drum channel / SEGMENT track."""
    midi = mido.MidiFile(path)
    tempo = 500000
    markers: list[float] = []
    notes: list[tuple[int, int, int]] = []
    for track in midi.tracks:
        is_segment = track.name.strip().upper() == "SEGMENT"
        tick, sounding = 0, {}
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempo = msg.tempo
            elif msg.type == "note_on" and msg.velocity > 0:
                if is_segment or msg.channel == 9:
                    markers.append(tick)
                else:
                    sounding.setdefault(msg.note, []).append(tick)
            elif msg.type in ("note_on", "note_off") and sounding.get(msg.note):
                notes.append((sounding[msg.note].pop(0), tick, msg.note))  # first in, first out
    scale = tempo / 1e6 / midi.ticks_per_beat  # one tempo: the clips are written at a fixed 60 bpm
    return sorted(t * scale for t in markers), sorted((a * scale, b * scale, p) for a, b, p in notes)


def _grid_error(events: np.ndarray, beats: np.ndarray) -> float:
    x = 4 * _to_beats(events, beats)
    return float(np.mean(np.abs(x - np.round(x))))


def _to_beats(t: np.ndarray, beats: np.ndarray) -> np.ndarray:
    k = np.interp(t, beats, np.arange(len(beats), dtype=float))
    k = np.where(t < beats[0], (t - beats[0]) / (beats[1] - beats[0]), k)
    return np.where(t > beats[-1], len(beats) - 1 + (t - beats[-1]) / (beats[-1] - beats[-2]), k)


def _closest(events: list[float], x: float, tol: float) -> float | None:
    i, best = bisect_left(events, x - tol), None
    while i < len(events) and events[i] <= x + tol:
        if best is None or abs(events[i] - x) < abs(best - x):
            best = events[i]
        i += 1
    return best


def track_beats(events: list[float], end: float, period: float) -> np.ndarray:
    """Beat times from 0 (the segment start, a beat) to about ``end``; ``events`` sorted (module docstring)."""
    beats, anchor, since = [0.0], 0.0, 0
    lo, hi = period / 2, period * 2
    while beats[-1] < end - period / 2 and len(beats) < 4 * end / lo + 8:
        b = beats[-1]
        hit = _closest(events, b + period, SNAP * period)
        if hit is None and abs(b + period - end) < SNAP * period:
            hit = end  # the end marker is a beat too
        since += 1
        if hit is not None:
            period += 0.5 * ((hit - anchor) / since - period)
            anchor, since = hit, 0
        else:
            half = _closest(events, b + period / 2, HALF_SNAP * period)
            if half is not None:
                period += 0.5 * (2 * (half - b) - period)
        period = min(max(period, lo), hi)
        beats.append(hit if hit is not None else b + period)
    if len(beats) < 2:  # a segment shorter than half a beat
        beats.append(period)
    return np.array(beats)


def estimate_beats(events: np.ndarray, end: float, window: float = 10.0) -> tuple[np.ndarray, float]:
    """Beat times (seconds from the segment start) for sorted note events; returns (beats, grid error)."""
    first = events[events < window] if np.sum(events < window) >= 8 else events[:16]
    bpm = np.arange(MIN_BPM, MAX_BPM + 1e-9, 0.5)
    x = first[None, :] / (15.0 / bpm[:, None])
    cost = np.mean(np.abs(x - np.round(x)), axis=1)
    starts: list[float] = []
    for i in np.argsort(cost, kind="stable"):
        p = 60.0 / bpm[i]
        if all(abs(p - q) > 0.03 * q for q in starts):
            starts.append(p)
        if len(starts) == 3:
            break
    ev = events.tolist()
    best = min((_grid_error(events, b), i, b) for i, b in enumerate(track_beats(ev, end, p) for p in starts))
    err, beats = best[0], best[2]
    tempo = 60.0 / float(np.median(np.diff(beats)))
    if tempo < 70:  # double: add the midpoints
        mid = (beats[:-1] + beats[1:]) / 2
        beats = np.sort(np.concatenate([beats, mid]))
        err = _grid_error(events, beats)
    elif tempo > 160 and len(beats) >= 5:
        halved = beats[::2]
        half_err = _grid_error(events, halved)
        if half_err <= err + 0.01:
            beats, err = halved, half_err
    return beats, err


def parse(ref: SongRef) -> LeadSheet:
    try:
        markers, raw = read_clip(ref.path)
    except Exception as e:  # noqa: BLE001 - mido raises many types for a broken file
        raise SkipSong(f"corrupt MIDI ({ref.path}: {type(e).__name__}: {e})") from e
    if not raw:
        raise SkipSong("no melody notes")
    start = markers[0] if markers else raw[0][0]
    end = (markers[-1] if len(markers) >= 2 else max(n[1] for n in raw)) - start
    events = np.sort(np.array([n[0] for n in raw] + [n[1] for n in raw])) - start
    if end <= 0 or events[-1] <= 0:
        raise SkipSong("empty segment")
    beats, err = estimate_beats(events, end)
    if err > MAX_GRID_ERROR:
        raise SkipSong(f"no 16th-note beat grid fits the notes (mean error {err:.2f} 16ths)")
    on = _to_beats(np.array([n[0] for n in raw]) - start, beats)
    off = _to_beats(np.array([n[1] for n in raw]) - start, beats)
    notes = monophonic([Note(float(a), float(b), p) for a, b, (_, _, p) in zip(on, off, raw)])
    split = ref.song_id.split("/", 1)[0]
    return LeadSheet(NAME, ref.song_id, notes, None, path=ref.path,
                     extra={"split": split, "bpm": round(60.0 / float(np.median(np.diff(beats))), 2),
                            "grid_error": round(err, 4)})
