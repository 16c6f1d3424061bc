"""Timing metrics of an accompaniment against its melody, after ReaLchords (Wu et al., 2024) §5.2 and Table 3.

- ``onset_interval_histogram`` / ``onset_interval_emd`` (*synchronization*): for every chord onset, the number of
  frames back to the nearest melody onset at or before it, binned [0, 1, ..., 16, 17+, inf] (inf: no melody
  onset before it yet); a system is scored by the earth mover's distance from its histogram to the test set's
  (reported x 10^3 by the caller). A model that strikes chords on the melody's onsets sits in the low bins.
- ``chord_silence_ratio``: how much of the sounding melody goes without a chord (RL models "wait and see").
- ``mean_pitch_classes_per_chord``: the average chord size, a check that a system is not drifting to triads only.
- ``early_stop_ratio``: how much of the melody is left unaccompanied after the chords stop for good.

A chord *event* is a maximal run of one chord index that begins at an onset: a frame starts a new event when its
onset flag is set, or when its chord differs from the previous frame's or follows silence (the codec's rule, so a
stray hold of a new chord still counts as struck). Frames are 16th notes; all counts here are in frames. Token
sequences are turned into frames with ``training.data.codec.frames_from_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .harmony import CHORD_PC

INTERVAL_BINS = 19  # 0..16 frames, 17+ frames, no preceding melody onset (inf)
_LAST_FINITE = 17


def event_onsets(values: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """Onset flags made consistent with the values: set where a sounding value changes or follows silence,
    cleared on silent frames (-1)."""
    values = np.asarray(values)
    prev = np.concatenate([[-1], values[:-1]])[:len(values)]
    return (np.asarray(onset, bool) | (values != prev)) & (values >= 0)


def chord_events(chords: np.ndarray, chord_onset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start frame, length in frames, chord index) of every chord event, in time order. An event lasts until
    the next onset, a silent frame or the end."""
    chords = np.asarray(chords)
    onsets = event_onsets(chords, chord_onset)
    starts = np.flatnonzero(onsets)
    # an event ends at the first later frame that is an onset or silent (or at the end)
    boundaries = np.append(np.flatnonzero(onsets | (chords < 0)), len(chords))
    lengths = boundaries[np.searchsorted(boundaries, starts, side="right")] - starts
    return starts, lengths, chords[starts].astype(np.int64)


def onset_interval_counts(melody_onset: np.ndarray, chord_onset: np.ndarray) -> np.ndarray:
    """[19] int counts of chord-onset-to-preceding-melody-onset intervals (bins as in the module docstring).
    A melody onset on the chord onset's own frame gives interval 0. The flags are taken as given."""
    mel_on = np.flatnonzero(np.asarray(melody_onset, bool))
    chord_on = np.flatnonzero(np.asarray(chord_onset, bool))
    prev = np.searchsorted(mel_on, chord_on, side="right") - 1  # last melody onset at or before each chord onset
    has_prev = prev >= 0
    bins = np.full(len(chord_on), INTERVAL_BINS - 1)
    bins[has_prev] = np.minimum(chord_on[has_prev] - mel_on[prev[has_prev]], _LAST_FINITE)
    return np.bincount(bins, minlength=INTERVAL_BINS)


def onset_interval_histogram(melody_onset: np.ndarray, chord_onset: np.ndarray) -> np.ndarray:
    """[19] normalised histogram of one song's chord-to-melody onset intervals; all NaN if it has no chord onset
    (use ``pooled_onset_interval_histogram`` for a system or the test set)."""
    counts = onset_interval_counts(melody_onset, chord_onset)
    total = counts.sum()
    return counts / total if total else np.full(INTERVAL_BINS, np.nan)


def pooled_onset_interval_histogram(melody_onsets: Sequence[np.ndarray],
                                    chord_onsets: Sequence[np.ndarray]) -> np.ndarray:
    """[19] normalised histogram over all chord onsets of all songs (counts summed, then normalised)."""
    counts = sum((onset_interval_counts(m, c) for m, c in zip(melody_onsets, chord_onsets)),
                 np.zeros(INTERVAL_BINS, np.int64))
    total = counts.sum()
    return counts / total if total else np.full(INTERVAL_BINS, np.nan)


def onset_interval_emd(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """1-D earth mover's distance between two histograms over the same ordered, unit-spaced bins (the inf bin
    counts as one bin beyond 17+): sum of |CDF_a - CDF_b|. Inputs are normalised to unit mass first, so counts
    work too; a shift of all mass by k bins costs k."""
    a, b = np.asarray(hist_a, float), np.asarray(hist_b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"histograms must be 1-D of one shape, got {a.shape} and {b.shape}")
    if not (a.sum() > 0 and b.sum() > 0):
        raise ValueError("histograms must have positive mass")
    return float(np.abs(np.cumsum(a / a.sum()) - np.cumsum(b / b.sum())).sum())


def chord_silence_ratio(melody: np.ndarray, chords: np.ndarray) -> float:
    """Fraction of the frames with a sounding melody note that have no chord; NaN if the melody never sounds."""
    sounding = np.asarray(melody) >= 0
    if not sounding.any():
        return float("nan")
    return float((np.asarray(chords)[sounding] < 0).mean())


def mean_pitch_classes_per_chord(chords: np.ndarray, chord_onset: np.ndarray) -> float:
    """Mean number of pitch classes of the chord over chord events (each event once, whatever its length);
    NaN if there is no chord."""
    _, _, index = chord_events(chords, chord_onset)
    if not len(index):
        return float("nan")
    return float(CHORD_PC[index].sum(1).mean())


def early_stop_ratio(melody: np.ndarray, chords: np.ndarray) -> float:
    """Fraction of the melody's span (first to last sounding frame, inclusive, rests inside included) that lies
    after the last frame with a chord: 0 when the chords last to the end of the melody, 1 when there is no chord
    during or after it. NaN if the melody never sounds."""
    mel = np.flatnonzero(np.asarray(melody) >= 0)
    if not len(mel):
        return float("nan")
    first, last = int(mel[0]), int(mel[-1])
    chord_frames = np.flatnonzero(np.asarray(chords) >= 0)
    last_chord = int(chord_frames[-1]) if len(chord_frames) else -1
    uncovered = last - max(last_chord, first - 1)
    return max(uncovered, 0) / (last - first + 1)
