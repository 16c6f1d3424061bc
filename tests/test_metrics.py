"""Evaluation metrics on hand-made cases with answers worked out by hand, plus property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.chords import N_CHORDS, N_QUALITIES, QUALITY_INDEX, chord_from_symbol
from training.data.codec import Frames, chord_tokens, frames_from_tokens, melody_tokens
from training.evaluation.diversity import (
    EMBEDDING_DIM,
    bigram_embedding,
    chord_length_entropy,
    chord_symbol_entropy,
    distinct_progressions,
    vendi_score,
)
from training.evaluation.harmony import beats_to_recover, note_in_chord, per_beat_note_in_chord
from training.evaluation.timing import (
    INTERVAL_BINS,
    chord_events,
    chord_silence_ratio,
    early_stop_ratio,
    event_onsets,
    mean_pitch_classes_per_chord,
    onset_interval_counts,
    onset_interval_emd,
    onset_interval_histogram,
    pooled_onset_interval_histogram,
)

C, G, F, Am = (chord_from_symbol(s).index for s in ("C", "G", "F", "Am"))
NaN = float("nan")


def events_to_frames(events: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """[(chord index or -1, length)] -> (chords, chord_onset) frames, every event struck."""
    chords = np.concatenate([np.full(n, c) for c, n in events])
    onset = np.zeros(len(chords), bool)
    starts = np.cumsum([0] + [n for _, n in events[:-1]])
    onset[starts] = [c >= 0 for c, _ in events]
    return chords, onset


def transpose_index(index: np.ndarray, k: int) -> np.ndarray:
    return np.where(index >= 0, ((index // N_QUALITIES + k) % 12) * N_QUALITIES + index % N_QUALITIES, -1)


# --- harmony: per-beat curve and recovery ------------------------------------------------------------------------

def test_per_beat_note_in_chord_two_songs():
    # song A, 3 beats: beat 0 C/D over C -> 2/4; beat 1 melody rests -> left out; beat 2 over [-, C, C, C]
    # the melody E, E, F, F -> counted frames E, F, F -> 1/3
    mel_a = np.array([60, 60, 62, 62, -1, -1, -1, -1, 64, 64, 65, 65])
    ch_a = np.array([C] * 8 + [-1, C, C, C])
    # song B, 2 beats over Am: beat 0 G -> 0, beat 1 A -> 1
    mel_b = np.array([67] * 4 + [69] * 4)
    ch_b = np.array([Am] * 8)
    curve = per_beat_note_in_chord([mel_a, mel_b], [ch_a, ch_b], n_beats=4)
    assert curve.shape == (4,)
    np.testing.assert_allclose(curve[:3], [(0.5 + 0.0) / 2, 1.0, 1 / 3])
    assert np.isnan(curve[3])


def test_per_beat_note_in_chord_accepts_2d_arrays():
    mel = np.array([[60, 61, 62, 64], [60, 60, 60, 60]])
    ch = np.array([[C, C, C, C], [-1, -1, -1, Am]])
    np.testing.assert_allclose(per_beat_note_in_chord(mel, ch, n_beats=1), [(2 / 4 + 1.0) / 2])


@given(st.lists(st.tuples(st.integers(-1, 127), st.integers(-1, N_CHORDS - 1)), min_size=4, max_size=4))
def test_per_beat_one_beat_equals_note_in_chord(frames):
    mel = np.array([m for m, _ in frames])
    ch = np.array([c for _, c in frames])
    expected = note_in_chord(mel, ch)
    got = per_beat_note_in_chord([mel], [ch], n_beats=1)[0]
    if expected is None:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected)


def test_beats_to_recover():
    curve = np.array([0.8] * 16 + [0.2, 0.5, 0.71, 0.75, 0.8, 0.8])  # target 0.9 * 0.8 = 0.72
    assert beats_to_recover(curve) == 3
    assert beats_to_recover(curve, level=0.85) == 2  # target 0.68: 0.71 at beat 18 counts
    assert beats_to_recover(curve, level=0.6) == 1  # 0.48
    assert beats_to_recover(curve, level=1.0) == 4
    assert beats_to_recover(np.array([0.8] * 16 + [0.5] * 8)) is None
    assert beats_to_recover(np.array([0.8] * 24)) == 0


def test_beats_to_recover_window_and_nan():
    # beats 0-7 at 0.2, 8-15 at 0.8: the last 8 beats give 0.8 (target 0.72), all 16 give 0.5 (target 0.45)
    curve = np.array([0.2] * 8 + [0.8] * 8 + [0.3, 0.5, 0.6, 0.9])
    assert beats_to_recover(curve, pre_beats=8) == 3
    assert beats_to_recover(curve, pre_beats=16) == 1
    # NaN beats never count as recovered and are left out of the pre-change mean
    curve = np.array([NaN] * 12 + [0.6] * 4 + [NaN, NaN, 0.6])
    assert beats_to_recover(curve) == 2
    assert beats_to_recover(np.array([NaN] * 16 + [1.0])) is None
    with pytest.raises(ValueError):
        beats_to_recover(np.ones(20), change_beat=4, pre_beats=8)


# --- diversity: Vendi ------------------------------------------------------------------------------------------

def test_vendi_identical_orthogonal_clusters():
    assert vendi_score(np.array([[1.0, 2.0, 0.0]] * 5) * np.arange(1, 6)[:, None]) == pytest.approx(1.0)
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    assert vendi_score(np.eye(10)[:7]) == pytest.approx(7.0)  # N < d
    two = np.array([[1.0, 0.0]] * 3 + [[0.0, 3.0]] * 3)  # N > d
    assert vendi_score(two) == pytest.approx(2.0)
    three = np.repeat(np.eye(3), 4, axis=0)
    assert vendi_score(three) == pytest.approx(3.0)
    uneven = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]])  # eigenvalues 3/4, 1/4
    assert vendi_score(uneven) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))


def test_vendi_rejects_zero_rows_and_empty():
    with pytest.raises(ValueError):
        vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError):
        vendi_score(np.zeros((0, 3)))


_matrices = st.integers(1, 8).flatmap(lambda n: st.integers(1, 8).flatmap(lambda d: st.lists(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=d, max_size=d), min_size=n, max_size=n)))


@settings(max_examples=60)
@given(_matrices)
def test_vendi_between_1_and_n_and_order_free(rows):
    x = np.array(rows)
    if (np.linalg.norm(x, axis=1) < 1e-3).any():
        return
    v = vendi_score(x)
    assert 1 - 1e-6 <= v <= len(x) + 1e-6
    assert v <= x.shape[1] + 1e-6  # the rank bounds it too
    assert vendi_score(x[::-1]) == pytest.approx(v, rel=1e-6)
    assert vendi_score(np.concatenate([x, x])) == pytest.approx(v, rel=1e-6)  # duplicating every item


# --- diversity: the bigram embedding ---------------------------------------------------------------------------

def emb(events: list[tuple[int, int]]) -> np.ndarray:
    return bigram_embedding(*events_to_frames(events))


def test_bigram_embedding_hand_computed():
    e = emb([(C, 4), (G, 4), (C, 8)])  # qualities maj x3; transitions (+7, maj, maj), (+5, maj, maj)
    maj = QUALITY_INDEX["maj"]
    expected = np.zeros(EMBEDDING_DIM)
    expected[maj] = 0.5
    for interval in (7, 5):
        expected[N_QUALITIES + (interval * N_QUALITIES + maj) * N_QUALITIES + maj] = math.sqrt(0.75) / math.sqrt(2)
    np.testing.assert_allclose(e, expected)
    assert np.linalg.norm(e) == pytest.approx(1.0)


def test_bigram_embedding_identical_and_different():
    assert np.array_equal(emb([(C, 4), (F, 4), (G, 4)]), emb([(C, 4), (F, 4), (G, 4)]))
    assert np.array_equal(emb([(C, 4), (F, 2), (G, 8)]), emb([(C, 1), (F, 1), (G, 1)]))  # lengths ignored
    assert not np.allclose(emb([(C, 4), (F, 4), (G, 4), (C, 4)]), emb([(C, 4), (G, 4), (F, 4), (C, 4)]))
    assert not np.allclose(emb([(C, 4)]), emb([(Am, 4)]))
    assert not np.allclose(emb([(C, 8)]), emb([(C, 4), (C, 4)]))  # held vs struck twice
    # same palette, orthogonal transitions: cosine = 0.25 * 1 + 0.75 * 0
    assert emb([(C, 4), (G, 4)]) @ emb([(C, 4), (F, 4)]) == pytest.approx(0.25)
    # silence between events does not break the progression, and a silent song is the "no chord" unit vector
    assert np.array_equal(emb([(C, 4), (-1, 4), (G, 4)]), emb([(C, 4), (G, 4)]))
    silent = bigram_embedding(np.full(8, -1), np.zeros(8, bool))
    assert silent[-1] == 1.0 and np.linalg.norm(silent) == 1.0


@given(st.lists(st.tuples(st.integers(-1, N_CHORDS - 1), st.integers(1, 6)), min_size=1, max_size=12),
       st.integers(1, 11))
def test_bigram_embedding_transposition_invariant(events, k):
    chords, onset = events_to_frames(events)
    a = bigram_embedding(chords, onset)
    b = bigram_embedding(transpose_index(chords, k), onset)
    np.testing.assert_allclose(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0)


# --- diversity: entropies and distinct n-grams -----------------------------------------------------------------

def test_chord_symbol_entropy():
    songs = [np.array([C, C, -1, G, G]), np.array([-1, Am, Am, -1])]  # C, G, Am twice each: uniform over 3
    assert chord_symbol_entropy(songs) == pytest.approx(math.log(3))
    assert chord_symbol_entropy(songs, normalize="vocab") == pytest.approx(math.log(3) / math.log(N_CHORDS))
    assert chord_symbol_entropy(songs, normalize="observed") == pytest.approx(1.0)
    skewed = [np.array([C, C]), np.array([G, G, G, G, -1, -1])]  # 1/3, 2/3
    assert chord_symbol_entropy(skewed) == pytest.approx(-(math.log(1 / 3) / 3 + 2 * math.log(2 / 3) / 3))
    assert chord_symbol_entropy([np.array([C, C, C])]) == 0.0
    assert chord_symbol_entropy([np.array([C, C, C])], normalize="observed") == 0.0
    assert np.isnan(chord_symbol_entropy([np.array([-1, -1])]))
    with pytest.raises(ValueError):
        chord_symbol_entropy(songs, normalize="bits")


def length_entropy(events: list[tuple[int, int]]) -> float:
    chords, onset = events_to_frames(events)
    return chord_length_entropy([chords], [onset])


def test_chord_length_entropy():
    assert length_entropy([(C, 1), (G, 2), (F, 3), (Am, 4)]) == pytest.approx(math.log(4))
    assert length_entropy([(C, 33), (G, 40)]) == 0.0  # one bin: 33+
    assert length_entropy([(C, 32), (G, 33)]) == pytest.approx(math.log(2))
    # pooled over songs: lengths 2, 2 (song 1) and 4, 4 (song 2)
    s1, s2 = events_to_frames([(C, 2), (G, 2)]), events_to_frames([(C, 4), (-1, 3), (C, 4)])
    assert chord_length_entropy([s1[0], s2[0]], [s1[1], s2[1]]) == pytest.approx(math.log(2))
    # a hold carries over, silence ends an event: lengths 3 and 2
    assert chord_length_entropy([np.array([C, C, C, -1, C, C])], [np.array([1, 0, 0, 0, 0, 0], bool)]) == \
        pytest.approx(math.log(2))
    assert np.isnan(chord_length_entropy([np.full(4, -1)], [np.zeros(4, bool)]))


def test_distinct_progressions():
    assert distinct_progressions([np.array([0, 1, 2, 3, 0, 1, 2, 3])], n=4) == pytest.approx(4 / 5)
    assert distinct_progressions([np.array([C, G]), np.array([C, G, F])], n=2) == pytest.approx(2 / 3)
    assert distinct_progressions([np.array([C, C, C, C])], n=1) == pytest.approx(1 / 4)
    d, a = chord_from_symbol("D").index, chord_from_symbol("A").index
    assert distinct_progressions([np.array([C, G]), np.array([d, a])], n=2) == 1.0
    assert distinct_progressions([np.array([C, G]), np.array([d, a])], n=2, transpose_invariant=True) == 0.5
    assert np.isnan(distinct_progressions([np.array([C, G, F])], n=4))


# --- timing ------------------------------------------------------------------------------------------------------

def test_chord_events_and_onsets():
    chords = np.array([C, C, C, -1, G, G, G, G, F, F])
    onset = np.array([1, 0, 0, 0, 1, 0, 1, 0, 0, 0], bool)
    starts, lengths, index = chord_events(chords, onset)
    assert starts.tolist() == [0, 4, 6, 8]  # a re-strike of G at 6; F at 8 counts as struck without a flag
    assert lengths.tolist() == [3, 2, 2, 2]
    assert index.tolist() == [C, G, G, F]
    assert event_onsets(chords, onset).tolist() == [1, 0, 0, 0, 1, 0, 1, 0, 1, 0]
    assert event_onsets(np.array([-1, C]), np.array([True, False])).tolist() == [False, True]
    assert all(len(a) == 0 for a in chord_events(np.zeros(0, int), np.zeros(0, bool)))


def test_chord_events_from_tokens():
    chords = np.array([C, C, -1, G, G, G], np.int16)
    onset = np.array([1, 0, 0, 1, 0, 1], bool)
    frames = Frames(np.full(6, 60, np.int16), np.eye(6, dtype=bool)[0], chords, onset)
    back = frames_from_tokens(melody_tokens(frames), chord_tokens(frames))
    starts, lengths, index = chord_events(back.chord, back.chord_onset)
    assert (starts.tolist(), lengths.tolist(), index.tolist()) == ([0, 3, 5], [2, 2, 1], [C, G, G])


def test_onset_interval_histogram():
    mel_on = np.zeros(40, bool)
    mel_on[[2, 7]] = True
    chord_on = np.zeros(40, bool)
    chord_on[[0, 2, 5, 23, 24, 25, 30]] = True  # inf, 0, 3, 16, 17, 18 -> 17+, 23 -> 17+
    counts = onset_interval_counts(mel_on, chord_on)
    expected = np.zeros(INTERVAL_BINS, int)
    expected[[0, 3, 16]] = 1
    expected[17] = 3
    expected[18] = 1
    assert counts.tolist() == expected.tolist()
    np.testing.assert_allclose(onset_interval_histogram(mel_on, chord_on), expected / 7)
    assert np.isnan(onset_interval_histogram(mel_on, np.zeros(40, bool))).all()
    pooled = pooled_onset_interval_histogram([mel_on, np.ones(3, bool)], [chord_on, np.ones(3, bool)])
    expected[0] += 3
    np.testing.assert_allclose(pooled, expected / 10)


def test_onset_interval_emd():
    a = np.eye(INTERVAL_BINS)[3]
    assert onset_interval_emd(a, a) == 0.0
    assert onset_interval_emd(a, np.eye(INTERVAL_BINS)[4]) == pytest.approx(1.0)
    assert onset_interval_emd(a, np.eye(INTERVAL_BINS)[18]) == pytest.approx(15.0)
    assert onset_interval_emd([1, 0, 0], [0, 0.5, 0.5]) == pytest.approx(1.5)  # CDFs 1,1,1 vs 0,.5,1
    assert onset_interval_emd([4, 0, 0], [0, 1, 1]) == pytest.approx(1.5)  # counts are normalised first
    with pytest.raises(ValueError):
        onset_interval_emd([1, 0], [1, 0, 0])
    with pytest.raises(ValueError):
        onset_interval_emd([0, 0], [1, 0])


_hists = st.lists(st.floats(0, 10, allow_nan=False), min_size=INTERVAL_BINS, max_size=INTERVAL_BINS).filter(
    lambda h: sum(h) > 1e-3)


@given(_hists, _hists, _hists)
def test_onset_interval_emd_is_a_metric(a, b, c):
    ab = onset_interval_emd(a, b)
    assert ab >= 0
    assert ab == pytest.approx(onset_interval_emd(b, a))
    assert onset_interval_emd(a, a) == pytest.approx(0.0, abs=1e-9)
    assert ab <= onset_interval_emd(a, c) + onset_interval_emd(c, b) + 1e-9
    assert ab <= INTERVAL_BINS - 1 + 1e-9  # all mass from the first bin to the last


def test_chord_silence_ratio():
    assert chord_silence_ratio(np.array([60, 60, -1, 62, 62]), np.array([-1, C, C, -1, C])) == pytest.approx(0.5)
    assert chord_silence_ratio(np.array([60, -1, 62]), np.array([C, -1, G])) == 0.0
    assert chord_silence_ratio(np.array([60, 62, 64]), np.array([-1, -1, C])) == pytest.approx(2 / 3)
    assert np.isnan(chord_silence_ratio(np.array([-1, -1]), np.array([C, C])))


def test_mean_pitch_classes_per_chord():
    c7 = chord_from_symbol("C7").index
    chords, onset = events_to_frames([(C, 8), (c7, 1)])  # 3 and 4 pitch classes: 3.5 per event, not per frame
    assert mean_pitch_classes_per_chord(chords, onset) == pytest.approx(3.5)
    chords, onset = events_to_frames([(C, 2), (C, 2), (chord_from_symbol("Bdim7").index, 1)])
    assert mean_pitch_classes_per_chord(chords, onset) == pytest.approx((3 + 3 + 4) / 3)
    assert np.isnan(mean_pitch_classes_per_chord(np.full(3, -1), np.zeros(3, bool)))


def test_early_stop_ratio():
    melody = np.array([-1, -1] + [60] * 4 + [-1, -1] + [62] * 4)  # sounding span: frames 2..11 (10 frames)
    chords = np.array([C] * 7 + [-1] * 5)  # last chord frame 6: frames 7..11 uncovered
    assert early_stop_ratio(melody, chords) == pytest.approx(0.5)
    assert early_stop_ratio(melody, np.full(12, C)) == 0.0
    assert early_stop_ratio(melody, np.array([-1] * 11 + [C])) == 0.0  # a chord on the last note
    assert early_stop_ratio(melody, np.full(12, -1)) == 1.0
    assert early_stop_ratio(melody, np.array([C, C] + [-1] * 10)) == 1.0  # chords only before the melody
    assert np.isnan(early_stop_ratio(np.full(4, -1), np.full(4, C)))
