"""The teacher's second opinion on a take: the offline teacher, which hears the whole melody at once (its future
included), comps the recorded melody again, and the result is saved beside the take as a session of its own.

    comper reharmonize TAKE.mid                 # writes TAKE.teacher.mid (+ its sidecar), prints both harmonies

Why a file of its own rather than a track added to the take: the take stays exactly as it was recorded (nothing a
player does loses or rewrites a take), and every tool that reads a session (the Sessions panel's replay, the lead
sheet, the chord chart, ``rejam``) reads the second opinion too, so "play either" is choosing one of two files.
The new file has the take's conductor (tempo, meter) with the teacher's chord markers, the take's ``Melody`` track
copied event for event, and the teacher's voiced chords as the track ``Chords (teacher)``.

The engine's steering (default: the balanced preset, the key fixed to the whole melody's) shapes the teacher's
sampling as it shapes the live policy's: chords change where the songs change them and fit the notes under them
(this frame and the next two beats: the teacher hears them). Raw, at temperature 1, the teacher wanders (Ode to
Joy opens on Dbdim); greedy, it holds one chord for the whole tune.

The teacher was trained on windows of ``context_frames`` (256 16ths, 16 bars of 4/4); a longer take is comped
window by window, each window seeing its whole melody, the last one marked as the song's end (so it may cadence).
Harmony is the project's metric (the share of frames, where melody and chord both sound, whose melody pitch class
is a chord tone; ``training/evaluation/harmony.py`` defines it for the evaluation, this is the same count), for
the live chords and the teacher's against the same melody frames.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mido
import numpy as np

from ..engine.grammar import sample
from ..engine.key import estimate_key
from ..engine.midifile import read_melody
from ..engine.steering import FIT_WINDOW_FRAMES, Steerer, SteerSettings
from ..engine.teacher import OnnxTeacher
from ..engine.voicing import Voicing, voice
from ..recording.output import MIDI, check_target, sidecar_path, write_together
from ..synth.synth import CHORDS
from .sheet import TEACHER_CHORDS as TEACHER_TRACK
from .sheet import LeadSheetError, read_leadsheet

SUFFIX = ".teacher"  # TAKE.mid -> TAKE.teacher.mid
VELOCITY = 72


@dataclass(frozen=True)
class ChordLane:
    """One version's chords against the take's melody: what the Sessions panel and the command print."""

    harmony: float | None  # None: no frame where melody and chord both sound
    changes: int
    distinct: int
    bars: float

    @property
    def changes_per_bar(self) -> float:
        return self.changes / self.bars if self.bars else 0.0

    def describe(self) -> str:
        h = "-" if self.harmony is None else f"{self.harmony:.3f}"
        return f"harmony {h}, {self.changes_per_bar:.2f} changes a bar, {self.distinct} distinct chords"


@dataclass(frozen=True)
class SecondOpinion:
    out: Path
    live: ChordLane
    teacher: ChordLane


def default_output(take: str | Path) -> Path:
    take = Path(take)
    return take.with_name(f"{take.stem}{SUFFIX}{take.suffix or '.mid'}")


def melody_tokens(teacher: OnnxTeacher, frames: Sequence[tuple[int, bool]]) -> list[int]:
    vocab = teacher.card.vocab
    tokens, previous = [], -1
    for pitch, onset in frames:
        tokens.append(vocab.melody_token(pitch, onset, previous))
        previous = pitch
    return tokens


def teacher_tokens(teacher: OnnxTeacher, frames: Sequence[tuple[int, bool]], seed: int = 0,
                   temperature: float = 1.0, steer: SteerSettings | None = None, bar_frames: int = 16) -> list[int]:
    """One chord token per melody frame, window by window (the teacher's training length), seeded; ``steer``:
    the engine's decode-time steering (None or off: the raw teacher)."""
    vocab = teacher.card.vocab
    tokens = melody_tokens(teacher, frames)
    pitches = [p for p, _ in frames]
    steerer = None
    if steer is not None and not steer.is_off:
        key = estimate_key(np.asarray(pitches)) if steer.key == "auto" else None
        settings = replace(steer, key=key.name if key is not None else steer.key).checked()
        steerer = Steerer(teacher.card, settings, bar_frames / 4)
        for p in pitches:  # the whole tune is known: its key and the notes it keeps returning to
            steerer.hear(p)
    rng = np.random.default_rng(seed)
    n, out = teacher.context_frames, []
    for a in range(0, len(tokens), n):
        window = tokens[a:a + n]
        window[0] = vocab.as_onset(window[0])  # a note held into the window starts it
        at_end = a + n >= len(tokens)
        chords: list[int] = []
        last = None
        for i in range(len(window)):
            logits = teacher.logits(window, chords, at_end)[-1]
            g = a + i
            # the notes under the chord: this frame and the next two beats (the teacher hears them too)
            prior = steerer.prior(g, last, pitches[g:g + FIT_WINDOW_FRAMES]) if steerer is not None else None
            last = sample(logits, teacher.grammar.allowed("chord", last), rng, temperature, prior=prior)
            chords.append(last)
        out += chords
    return out


def lane(melody: Sequence[int], chord_pcs: Sequence[frozenset[int] | None], bar_frames: int) -> ChordLane:
    """Harmony, changes and distinct chords of per-frame chords (pitch-class sets, None: no chord)."""
    both = [(p, c) for p, c in zip(melody, chord_pcs) if p >= 0 and c is not None]
    harmony = sum(p % 12 in c for p, c in both) / len(both) if both else None
    changes = sum(1 for a, b in zip(chord_pcs, chord_pcs[1:]) if b != a)
    distinct = len({c for c in chord_pcs if c is not None})
    return ChordLane(harmony, changes, distinct, len(chord_pcs) / bar_frames)


def session_chord_pcs(take: Path, n_frames: int, symbols: dict[str, frozenset[int]]) -> list[frozenset[int] | None]:
    """A session's chords per frame (pitch-class sets), from its lead sheet: the chord markers and where chords sound."""
    sheet = read_leadsheet(take)
    per_frame: list[frozenset[int] | None] = [None] * n_frames
    frame_ticks = sheet.ticks_per_beat / 4
    changes = [(round(t / frame_ticks), s) for t, s in sheet.chords]
    for i, (start, symbol) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else n_frames
        pcs = symbols.get(symbol) if symbol is not None else None
        for f in range(max(0, start), min(end, n_frames)):
            per_frame[f] = pcs
    return per_frame


def _teacher_track(teacher: OnnxTeacher, chords: list[int], ticks_per_frame: float, end: int
                   ) -> tuple[mido.MidiTrack, list[tuple[int, str]]]:
    """The voiced chords as a track, and the chord markers (tick, symbol) for the conductor."""
    vocab = teacher.card.vocab
    timed: list[tuple[int, int, mido.Message]] = []
    markers: list[tuple[int, str]] = []
    sounding: tuple[int, ...] = ()
    previous: Voicing | None = None
    last_chord = None
    for f, tok in enumerate([*chords, vocab.silence]):
        info = vocab.chord_info.get(tok)
        chord = info.chord if info is not None else None
        if chord == last_chord and not (info is not None and info.kind == "chord_on"):
            continue
        tick = round(f * ticks_per_frame)
        timed += [(tick, 0, mido.Message("note_off", channel=CHORDS, note=p, velocity=0)) for p in sounding]
        sounding = ()
        if info is not None and f < len(chords):
            previous = voice(info.root, info.pitch_classes, previous=previous)
            sounding = previous.pitches
            timed += [(tick, 1, mido.Message("note_on", channel=CHORDS, note=p, velocity=VELOCITY)) for p in sounding]
            if chord != last_chord:
                markers.append((tick, info.symbol))
        last_chord = chord
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=TEACHER_TRACK, time=0)])
    last = 0
    for tick, _, msg in sorted(timed, key=lambda x: (x[0], x[1])):
        track.append(msg.copy(time=tick - last))
        last = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
    return track, markers


def _conductor(original: mido.MidiTrack, markers: list[tuple[int, str]], end: int) -> mido.MidiTrack:
    """The take's conductor (tempo, meter, ...) with its chord markers replaced by the teacher's."""
    timed, tick = [], 0
    for msg in original:
        tick += msg.time
        if msg.type not in ("marker", "end_of_track"):
            timed.append((tick, 0, msg))
    timed += [(t, 1, mido.MetaMessage("marker", text=s, time=0)) for t, s in markers]
    track, last = mido.MidiTrack(), 0
    for t, _, msg in sorted(timed, key=lambda x: (x[0], x[1])):
        track.append(msg.copy(time=t - last))
        last = t
    track.append(mido.MetaMessage("end_of_track", time=max(0, end - last)))
    return track


def second_opinion(take: str | Path, teacher: OnnxTeacher, out: str | Path | None = None, seed: int = 0,
                   temperature: float = 1.0, steer: SteerSettings | None = None) -> SecondOpinion:
    """Comp the take's melody with the teacher and write the result beside it (``out``, default TAKE.teacher.mid,
    with its sidecar). ``LeadSheetError`` / ``MidiFileError`` / ``OutputError``: one line naming the file."""
    take = Path(take)
    sheet = read_leadsheet(take)  # refuses a file that is not a session, in one line
    mid = mido.MidiFile(take)
    tracks = {t.name: t for t in mid.tracks}
    if "Melody" not in tracks:
        raise LeadSheetError(f"{take}: no 'Melody' track")
    melody = read_melody(take, track="Melody")
    frames = melody.frames
    if not any(p >= 0 for p, _ in frames):
        raise LeadSheetError(f"{take}: the Melody track has no notes to comp")
    out = check_target(out if out is not None else default_output(take), MIDI)
    if out.resolve() == take.resolve():
        raise LeadSheetError(f"{out}: that is the take itself; the second opinion goes beside it, not over it")
    bar_frames = max(1, sheet.bar_ticks * 4 // sheet.ticks_per_beat)
    chords = teacher_tokens(teacher, frames, seed, temperature, steer, bar_frames)
    vocab = teacher.card.vocab
    symbols = {t.symbol: frozenset(t.pitch_classes) for t in vocab.chord_info.values()}
    pitches = [p for p, _ in frames]
    teacher_pcs = [frozenset(vocab.chord_info[t].pitch_classes) if t in vocab.chord_info else None for t in chords]
    live_lane = lane(pitches, session_chord_pcs(take, len(frames), symbols), bar_frames)
    teacher_lane = lane(pitches, teacher_pcs, bar_frames)

    end = max(sum(m.time for m in t) for t in mid.tracks)
    chord_track, markers = _teacher_track(teacher, chords, mid.ticks_per_beat / 4, end)
    new = mido.MidiFile(type=1, ticks_per_beat=mid.ticks_per_beat)
    new.tracks = [_conductor(mid.tracks[0], markers, end), tracks["Melody"], chord_track]
    side = {"second_opinion_of": take.name, "model": {"name": teacher.card.name, "role": teacher.card.role,
                                                      "sha256": teacher.card.onnx.sha256},
            "seed": seed, "temperature": temperature,
            "steering": None if steer is None or steer.is_off else asdict(steer), "bpm": sheet.bpm, "meter": list(sheet.meter),
            "harmony": {"live": live_lane.harmony, "teacher": teacher_lane.harmony},
            "changes_per_bar": {"live": round(live_lane.changes_per_bar, 3),
                                "teacher": round(teacher_lane.changes_per_bar, 3)},
            "distinct_chords": {"live": live_lane.distinct, "teacher": teacher_lane.distinct}}
    write_together([(out, lambda f: new.save(file=f)),
                    (sidecar_path(out), lambda f: f.write(json.dumps(side, indent=1).encode()))])
    return SecondOpinion(out, live_lane, teacher_lane)
