"""Diversity of generated chord sequences: Vendi score, chord-symbol and chord-length entropy, distinct n-grams.

- ``vendi_score`` (Friedman & Dieng, 2023; GAPT §4.4, B.3): embed each sequence, L2-normalise, take the cosine Gram
  matrix K / N and return exp(Shannon entropy of its eigenvalues) - the "effective number of distinct sequences":
  1 for N copies of one sequence, N for N mutually orthogonal ones. It grows with N, so compare at equal N.
- ``bigram_embedding``: GAPT embeds sequences with its contrastive reward model's chord encoder; until ours exists
  this model-free embedding stands in (see its docstring for the design).
- ``chord_symbol_entropy`` (GAPT reference code): frame-level entropy, in nats, of the chord index distribution
  pooled over songs, silence left out; optionally normalised by log |vocabulary| or log #observed symbols.
- ``chord_length_entropy`` (ReaLchords §5.2, *rhythmic diversity*): entropy in nats of the histogram of chord event
  lengths in frames, bins 0, 1, ..., 32 and one bin for 33 and longer.
- ``distinct_progressions``: distinct chord-event n-grams / all n-grams (the distinct-n of text generation).

Entropies use the natural log and 0 log 0 = 0; a metric with nothing to measure returns NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.chords import N_CHORDS, N_QUALITIES
from .timing import chord_events

LENGTH_BINS = 34  # event lengths 0..32 frames, then 33+
N_BIGRAM_FEATURES = 12 * N_QUALITIES * N_QUALITIES
EMBEDDING_DIM = N_QUALITIES + N_BIGRAM_FEATURES + 1
_QUALITY_WEIGHT, _BIGRAM_WEIGHT = np.sqrt(0.25), np.sqrt(0.75)


def _entropy(counts: np.ndarray) -> float:
    counts = np.asarray(counts, float)
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score of the rows of ``embeddings`` [N, d] (rows L2-normalised here; a zero row is an error).

    The nonzero eigenvalues of X X^T / N equal those of X^T X / N, so the smaller of the two is decomposed."""
    x = np.asarray(embeddings, float)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"need a non-empty [N, d] array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1)
    if not (norms > 0).all():
        raise ValueError("every embedding must be nonzero")
    x = x / norms[:, None]
    n = len(x)
    gram = x @ x.T / n if n <= x.shape[1] else x.T @ x / n
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    return float(np.exp(_entropy(eig)))


def bigram_embedding(chords: np.ndarray, chord_onset: np.ndarray) -> np.ndarray:
    """A model-free, transposition-invariant, L2-normalised embedding of one song's chord progression.

    Features, over the song's chord events (a re-struck chord is a new event; lengths are ignored):

    - quality histogram [15]: how often each chord quality is struck - the harmonic palette;
    - transition histogram [12 x 15 x 15]: for each pair of consecutive events, (root interval from the first to
      the second mod 12, first quality, second quality) - the root motion, e.g. V7 -> I is (5, 7, maj) in any key;
    - one "no chord at all" feature, so a silent song still has a unit vector (all silent songs are identical).

    Why this shape: a progression's identity is its relative motion, not its key (the key follows the melody,
    which all systems share), so absolute roots are left out and transposing a song leaves its embedding
    unchanged; bigrams of root interval and qualities tell I-IV-V from I-V-IV, which a bag of chords cannot.
    Rhythm is left to ``chord_length_entropy``. Each histogram is L2-normalised and weighted so the cosine of two
    songs is 0.25 x palette cosine + 0.75 x transition cosine (the transitions carry the progression).
    Identical event sequences give identical vectors; two sequences collide only if their quality and transition
    counts are proportional (e.g. a transposition, or one chord struck 2 vs 3 times in a row).
    """
    _, _, index = chord_events(chords, chord_onset)
    out = np.zeros(EMBEDDING_DIM)
    if not len(index):
        out[-1] = 1.0
        return out
    roots, quals = index // N_QUALITIES, index % N_QUALITIES
    uni = np.bincount(quals, minlength=N_QUALITIES).astype(float)
    out[:N_QUALITIES] = _QUALITY_WEIGHT * uni / np.linalg.norm(uni)
    if len(index) > 1:
        interval = (roots[1:] - roots[:-1]) % 12
        flat = (interval * N_QUALITIES + quals[:-1]) * N_QUALITIES + quals[1:]
        bi = np.bincount(flat, minlength=N_BIGRAM_FEATURES).astype(float)
        out[N_QUALITIES:N_QUALITIES + N_BIGRAM_FEATURES] = _BIGRAM_WEIGHT * bi / np.linalg.norm(bi)
    return out / np.linalg.norm(out)


def chord_symbol_entropy(chord_lists: Sequence[np.ndarray], normalize: str | None = None) -> float:
    """Entropy (nats) of the chord index over all sounding chord frames of all songs.

    ``normalize``: None (raw nats), "vocab" (divided by log N_CHORDS) or "observed" (divided by log of the number
    of distinct chords seen; 0 when only one is seen). NaN if no frame has a chord."""
    counts = np.zeros(N_CHORDS, np.int64)
    for ch in chord_lists:
        ch = np.asarray(ch)
        counts += np.bincount(ch[ch >= 0].astype(np.int64), minlength=N_CHORDS)
    h = _entropy(counts)
    if normalize is None or np.isnan(h):
        return h
    if normalize == "vocab":
        return h / np.log(N_CHORDS)
    if normalize == "observed":
        seen = int((counts > 0).sum())
        return h / np.log(seen) if seen > 1 else 0.0
    raise ValueError(f"normalize must be None, 'vocab' or 'observed', not {normalize!r}")


def chord_length_entropy(chords: Sequence[np.ndarray], chord_onsets: Sequence[np.ndarray]) -> float:
    """Entropy (nats) of the chord event length histogram pooled over songs (bins 0..32 frames and 33+).
    NaN if there is no chord event."""
    counts = np.zeros(LENGTH_BINS, np.int64)
    for ch, on in zip(chords, chord_onsets):
        _, lengths, _ = chord_events(ch, on)
        counts += np.bincount(np.minimum(lengths, LENGTH_BINS - 1), minlength=LENGTH_BINS)
    return _entropy(counts)


def distinct_progressions(chord_event_lists: Sequence[np.ndarray], n: int = 4,
                          transpose_invariant: bool = False) -> float:
    """Distinct n-grams / all n-grams of chord events (vocabulary indices in struck order, e.g. the third item of
    ``chord_events``), n-grams taken within each song and pooled. 1 means no n-gram repeats anywhere, 1 / total
    that one n-gram fills everything. With ``transpose_invariant`` each n-gram is first transposed so that its
    first root is C. NaN if no song has n events."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen: set[tuple[int, ...]] = set()
    total = 0
    for events in chord_event_lists:
        events = np.asarray(events, np.int64)
        if len(events) < n:
            continue
        grams = np.lib.stride_tricks.sliding_window_view(events, n)
        if transpose_invariant:
            roots = (grams // N_QUALITIES - grams[:, :1] // N_QUALITIES) % 12
            grams = roots * N_QUALITIES + grams % N_QUALITIES
        seen.update(map(tuple, grams.tolist()))
        total += len(grams)
    return len(seen) / total if total else float("nan")
