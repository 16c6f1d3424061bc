"""The frame codec: lead sheets to 16th-note frames, frames to tokens and back, windows and transposition.

Frames are four parallel arrays, one entry per 16th note: melody pitch (-1 = silence) with an onset flag, and
vocabulary chord index (-1 = no chord) with an onset flag. Tokens are a pure function of frames, so the cache
stores frames and the Dataset tokenizes each window after cropping and transposing it (vectorized numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import tokens as T
from .chords import N_QUALITIES, Chord, Mapping, map_chord
from .leadsheet import ChordSpan, LeadSheet, Note, monophonic

FRAMES_PER_BEAT = 4
LEAD_IN_BEATS = 4  # leading silence kept before the first melody note (ReaLchords trims the rest)


@dataclass
class Frames:
    melody: np.ndarray  # int16 [T], -1 = silence
    melody_onset: np.ndarray  # bool [T]
    chord: np.ndarray  # int16 [T], -1 = no chord
    chord_onset: np.ndarray  # bool [T]

    def __len__(self) -> int:
        return len(self.melody)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frames) and all(
            np.array_equal(getattr(self, f), getattr(other, f)) for f in ("melody", "melody_onset", "chord", "chord_onset"))

    def crop(self, start: int, stop: int) -> Frames:
        out = Frames(self.melody[start:stop].copy(), self.melody_onset[start:stop].copy(),
                     self.chord[start:stop].copy(), self.chord_onset[start:stop].copy())
        if len(out):  # a window that starts mid-note / mid-chord starts with an onset (no orphan hold)
            out.melody_onset[0] |= out.melody[0] >= 0
            out.chord_onset[0] |= out.chord[0] >= 0
        return out


@dataclass
class EncodeStats:
    """How a lead sheet's chord time mapped onto the vocabulary (beats), for the data stats."""

    exact: float = 0.0
    simplified: float = 0.0
    unmapped: float = 0.0
    no_chord: float = 0.0
    simplified_labels: dict[str, float] = field(default_factory=dict)
    unmapped_labels: dict[str, float] = field(default_factory=dict)


def _normalize_onsets(values: np.ndarray, onset: np.ndarray) -> None:
    """A frame that changes value (or follows silence) must be an onset; a silent frame is never one."""
    prev = np.concatenate([[-1], values[:-1]])
    onset |= (values >= 0) & (values != prev)
    onset &= values >= 0


def _write_spans(values: np.ndarray, onset: np.ndarray, spans: list[tuple[float, float, int]], start: float) -> None:
    """Paint (onset_beat, offset_beat, value) spans in order; a later span overwrites the tail of an earlier one."""
    n = len(values)
    for on_b, off_b, v in spans:
        a = int(round((on_b - start) * FRAMES_PER_BEAT))
        b = int(round((off_b - start) * FRAMES_PER_BEAT))
        a = max(a, 0)
        b = min(max(b, a + 1), n)  # a note shorter than a frame lasts one frame
        if a >= n:
            continue
        values[a:b] = v
        onset[a] = v >= 0
        onset[a + 1:b] = False


def trim_bounds(sheet: LeadSheet) -> tuple[float, float]:
    """The beat range the frames cover: from LEAD_IN_BEATS before the first note (on a beat) to the melody's end."""
    if not sheet.notes:
        return 0.0, 0.0
    first = min(n.onset for n in sheet.notes)
    last = max(n.offset for n in sheet.notes)
    start = max(0.0, math.floor(first) - LEAD_IN_BEATS)
    return start, float(math.ceil(last - 1e-9))


def encode(sheet: LeadSheet) -> tuple[Frames, EncodeStats]:
    """Quantize a lead sheet to frames (nearest 16th) and map its chords onto the vocabulary."""
    start, end = trim_bounds(sheet)
    n = max(int(round((end - start) * FRAMES_PER_BEAT)), 0)
    melody = np.full(n, -1, np.int16)
    melody_onset = np.zeros(n, bool)
    chord = np.full(n, -1, np.int16)
    chord_onset = np.zeros(n, bool)
    stats = EncodeStats()
    _write_spans(melody, melody_onset, [(x.onset, x.offset, x.pitch) for x in monophonic(sheet.notes)], start)
    spans = []
    for c in sheet.chords or []:
        lo, hi = max(c.onset, start), min(c.offset, end)
        beats = max(hi - lo, 0.0)
        if c.root is None:
            stats.no_chord += beats
            spans.append((c.onset, c.offset, -1))
            continue
        m = map_chord(c.root, c.intervals, c.bass)
        if m.kind is Mapping.EXACT:
            stats.exact += beats
        elif m.kind is Mapping.SIMPLIFIED:
            stats.simplified += beats
            stats.simplified_labels[c.label] = stats.simplified_labels.get(c.label, 0.0) + beats
        else:
            stats.unmapped += beats
            stats.unmapped_labels[c.label] = stats.unmapped_labels.get(c.label, 0.0) + beats
        spans.append((c.onset, c.offset, m.chord.index if m.chord else -1))
    _write_spans(chord, chord_onset, spans, start)
    _normalize_onsets(melody, melody_onset)
    _normalize_onsets(chord, chord_onset)
    return Frames(melody, melody_onset, chord, chord_onset), stats


def decode(frames: Frames, source: str = "", song_id: str = "") -> LeadSheet:
    """Frames back to a lead sheet in beats (one note / chord span per onset run)."""

    def runs(values: np.ndarray, onset: np.ndarray) -> list[tuple[int, int, int]]:
        out, t, n = [], 0, len(values)
        while t < n:
            if values[t] < 0:
                t += 1
                continue
            u = t + 1
            while u < n and values[u] == values[t] and not onset[u]:
                u += 1
            out.append((t, u, int(values[t])))
            t = u
        return out

    f = FRAMES_PER_BEAT
    notes = [Note(a / f, b / f, p) for a, b, p in runs(frames.melody, frames.melody_onset)]
    chords = []
    for a, b, c in runs(frames.chord, frames.chord_onset):
        ch = Chord.from_index(c)
        chords.append(ChordSpan(a / f, b / f, ch.symbol, ch.root, tuple(sorted(
            (pc - ch.root) % 12 for pc in ch.pitch_classes))))
    return LeadSheet(source, song_id, notes, chords)


# --- tokens ---------------------------------------------------------------------------------------------------

def melody_tokens(frames: Frames) -> np.ndarray:
    m = frames.melody.astype(np.int64)
    return np.where(m < 0, T.SILENCE, np.where(frames.melody_onset, T.NOTE_ON + m, T.NOTE_HOLD + m))


def chord_tokens(frames: Frames) -> np.ndarray:
    c = frames.chord.astype(np.int64)
    return np.where(c < 0, T.SILENCE, np.where(frames.chord_onset, T.CHORD_ON + c, T.CHORD_HOLD + c))


def frames_from_tokens(melody: np.ndarray, chords: np.ndarray) -> Frames:
    """Inverse of melody_tokens / chord_tokens (special tokens read as silence)."""
    melody, chords = np.asarray(melody), np.asarray(chords)
    mel = np.where((melody >= T.NOTE_HOLD) & (melody < T.CHORD_HOLD), (melody - T.NOTE_HOLD) % T.N_PITCHES, -1)
    ch = np.where((chords >= T.CHORD_HOLD) & (chords < T.VOCAB_SIZE),
                  (chords - T.CHORD_HOLD) % (T.CHORD_ON - T.CHORD_HOLD), -1)
    return Frames(mel.astype(np.int16), (melody >= T.NOTE_ON) & (melody < T.CHORD_HOLD),
                  ch.astype(np.int16), chords >= T.CHORD_ON)


def interleave(first: np.ndarray, second: np.ndarray, bos: bool = True, eos: bool = False) -> np.ndarray:
    """[BOS, first_1, second_1, first_2, second_2, ...(, EOS)].

    Chord policy: first = chords, second = melody, so chord t is decided before melody t is seen.
    Melody agent: the mirror order.
    """
    n = len(first)
    out = np.empty(2 * n + int(bos) + int(eos), np.int64)
    o = int(bos)
    if bos:
        out[0] = T.BOS
    out[o:o + 2 * n:2] = first
    out[o + 1:o + 2 * n:2] = second
    if eos:
        out[-1] = T.EOS
    return out


def deinterleave(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of interleave for a sequence that starts with BOS (a trailing EOS / PAD is dropped)."""
    body = np.asarray(seq)[1:]
    body = body[: len(body) // 2 * 2]
    return body[0::2], body[1::2]


# --- augmentation ---------------------------------------------------------------------------------------------

def transpose(frames: Frames, semitones: int) -> Frames:
    """Move every pitch class by ``semitones``; rhythm and onsets are untouched.

    A melody note pushed outside MIDI 0..127 moves by an octave instead (pitch class still transposed).
    """
    mel = frames.melody.astype(np.int32)
    sounding = mel >= 0
    moved = mel + semitones
    moved = np.where(moved > 127, moved - 12, np.where(moved < 0, moved + 12, moved))
    ch = frames.chord.astype(np.int32)
    root, quality = ch // N_QUALITIES, ch % N_QUALITIES
    moved_ch = ((root + semitones) % 12) * N_QUALITIES + quality
    return Frames(np.where(sounding, moved, -1).astype(np.int16), frames.melody_onset.copy(),
                  np.where(ch >= 0, moved_ch, -1).astype(np.int16), frames.chord_onset.copy())


def random_crop_start(n_frames: int, window: int, rng: np.random.Generator) -> int:
    """A crop start on a beat (a multiple of FRAMES_PER_BEAT) such that the window fits (or 0 if it cannot)."""
    last_beat = (n_frames - window) // FRAMES_PER_BEAT
    return 0 if last_beat <= 0 else int(rng.integers(0, last_beat + 1)) * FRAMES_PER_BEAT
