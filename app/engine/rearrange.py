"""Re-arrange a saved session: the same chords played by another band (``comper render x.mid --style swing``).

Why from the file and not the model: a take's chords are in its MIDI file (a chord-symbol marker where each chord
starts, the chord's notes on the ``Chords`` track), so any session (or re-jam) can be heard in another style
without the model that made it, its sidecar or its journal. The chords are read onto the frame grid as chord
"tokens" the arranger understands, played by the same ``ChordPerformer`` a jam uses (the melody's velocities
drive the dynamics), and the file's ``Chords``, ``Bass`` and ``Drums`` tracks are replaced; its conductor (tempo,
meter, markers) and melody stay as they were.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import mido

from ..errors import ComperError
from .arrange import Arrangement
from .key import NAMES
from .performer import ChordPerformer

OUT_TICKS = 480  # what ``recording.save`` writes
SHARPS = {"C#": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "E#": 5, "Fb": 4, "B#": 0}
BAND_TRACKS = ("Chords", "Bass", "Drums")


class RearrangeError(ComperError):
    """A file whose chords cannot be read (no chord markers: not a Comper session); one line naming it."""


@dataclass(frozen=True)
class ChordRef:
    """What the arranger reads of a chord token (``vocab.Token``'s fields of the same names)."""

    id: int
    chord: int
    root: int
    pitch_classes: tuple[int, ...]
    symbol: str
    is_onset: bool


class ChordTable:
    """A vocabulary of the chords found in one file: an onset and a hold token for each, -1 for silence."""

    silence = -1

    def __init__(self) -> None:
        self.chord_info: dict[int, ChordRef] = {}
        self._ids: dict[tuple[int, tuple[int, ...], str], int] = {}

    def token(self, root: int, pcs: tuple[int, ...], symbol: str, onset: bool) -> int:
        key = (root, pcs, symbol)
        if key not in self._ids:
            self._ids[key] = len(self._ids)
        chord = self._ids[key]
        tid = 2 * chord + (0 if onset else 1)
        self.chord_info.setdefault(tid, ChordRef(tid, chord, root, pcs, symbol, onset))
        return tid


def root_of(symbol: str) -> int | None:
    """The root pitch class of a chord symbol ("F#m7", "Bbmaj7", "C/E": 6, 10, 0), None if it names none."""
    for n in (2, 1):
        head = symbol[:n]
        if head in NAMES:
            return NAMES.index(head)
        if head in SHARPS:
            return SHARPS[head]
    return None


def _notes(track: mido.MidiTrack) -> list[tuple[int, int, int, int]]:
    """(on tick, off tick, pitch, velocity) of a track's notes."""
    out, open_, now = [], {}, 0
    for m in track:
        now += m.time
        if m.type == "note_on" and m.velocity > 0:
            if m.note in open_:
                on, v = open_.pop(m.note)
                out.append((on, now, m.note, v))
            open_[m.note] = (now, m.velocity)
        elif m.type in ("note_on", "note_off") and m.note in open_:
            on, v = open_.pop(m.note)
            out.append((on, now, m.note, v))
    out += [(on, now, p, v) for p, (on, v) in open_.items()]
    return sorted(out)


def read_chords(mid: mido.MidiFile, path: Path) -> tuple[list[int], ChordTable, int]:
    """The chord token of every frame of a session file, its table, and the first chord's frame."""
    f16 = mid.ticks_per_beat / 4
    tracks = {t.name: t for t in mid.tracks}
    markers, now = [], 0
    for m in mid.tracks[0]:
        now += m.time
        if m.type == "marker" and m.text:
            markers.append((now, m.text))
    if not markers:
        raise RearrangeError(f"{path}: no chord markers: not a Comper session (saved jams and re-jams have them), "
                             f"so there are no chords to re-arrange")
    chords = _notes(tracks["Chords"]) if "Chords" in tracks else []
    bass = _notes(tracks["Bass"]) if "Bass" in tracks else []
    end_tick = max(sum(m.time for m in t) for t in mid.tracks)
    table, tokens = ChordTable(), []
    for i, (tick, symbol) in enumerate(markers):
        stop = markers[i + 1][0] if i + 1 < len(markers) else end_tick
        inside = [n for n in chords if tick <= n[0] < max(stop, tick + 1)]
        low = [n for n in bass if tick <= n[0] < max(stop, tick + 1)]
        root = root_of(symbol)
        if root is None:
            root = (low or inside or [(0, 0, 0, 0)])[0][2] % 12
        pcs = tuple(sorted({n[2] % 12 for n in inside} | {root}))
        first, last = round(tick / f16), round(stop / f16)
        sounding = max([n[1] for n in inside + low], default=stop)
        heard_to = min(last, max(first + 1, round(sounding / f16)))
        tokens += [table.silence] * (first - len(tokens))
        tokens = tokens[:first]
        tokens += [table.token(root, pcs, symbol, g == first) for g in range(first, heard_to)]
        tokens += [table.silence] * (last - heard_to)
    return tokens, table, round(markers[0][0] / f16)


def rearrange(midi_path: str | Path, mid: mido.MidiFile, band: Mapping[str, object], seed: int = 0) -> mido.MidiFile:
    """``mid`` (read from ``midi_path``) with its band tracks played again as ``band`` says (``JamSettings``
    fields of ``options.BAND_KNOBS`` by name; the ones not given keep their defaults)."""
    from ..recording import Recorder
    from .options import JamSettings

    path = Path(midi_path)
    tokens, table, first = read_chords(mid, path)
    tempo = next((m.tempo for t in mid.tracks for m in t if m.type == "set_tempo"), 500000)
    sig = next((m for t in mid.tracks for m in t if m.type == "time_signature"), None)
    meter = (sig.numerator, sig.denominator) if sig else (4, 4)
    bpm = mido.tempo2bpm(tempo)
    s = replace(JamSettings(bpm=bpm, meter=meter), **{k: v for k, v in band.items() if v is not None})
    arrangement = replace(Arrangement.of(s), listen=first, seed=seed)
    frame_s = 60.0 / (bpm * 4)
    melody = _notes(next((t for t in mid.tracks if t.name == "Melody"), mido.MidiTrack()))
    f16 = mid.ticks_per_beat / 4
    heard = {}
    for on, _, _, v in melody:
        heard.setdefault(round(on / f16), v)
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(tmp, {"bpm": bpm, "meter": list(meter), "t0": 0.0})
        p = ChordPerformer(table, [], rec, s.voicing, s.chord_velocity, s.bass_velocity, arrangement,
                           (s.dynamics_low, s.dynamics_high))
        for f, tok in enumerate(tokens):
            if f in heard:
                p.hear(heard[f])
            p.prepare({g: tokens[g] for g in range(f, min(len(tokens), f + 16))})
            p.play(f, f * frame_s, tok)
        p.release(len(tokens), len(tokens) * frame_s)
        played = mido.MidiFile(rec.save(Path(tmp) / "band.mid"))
    scale = mid.ticks_per_beat / OUT_TICKS
    new = {t.name: t for t in played.tracks if t.name in BAND_TRACKS}
    out = mido.MidiFile(type=1, ticks_per_beat=mid.ticks_per_beat)
    for t in mid.tracks:
        if t.name not in BAND_TRACKS:
            out.tracks.append(t)
    for name in BAND_TRACKS:  # onto the file's own ticks per beat, from absolute times (no rounding drift)
        track, now, last = mido.MidiTrack(), 0, 0
        for m in new[name]:
            now += m.time
            tick = round(now * scale)
            track.append(m.copy(time=tick - last))
            last = tick
        out.tracks.append(track)
    return out
