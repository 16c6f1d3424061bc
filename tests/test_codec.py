"""Frame codec properties: token round trip, lead-sheet round trip, transposition, interleaving, crops."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import tokens as T
from training.data.chords import N_CHORDS, Chord, parse_chord_text
from training.data.codec import (
    Frames,
    chord_tokens,
    decode,
    deinterleave,
    encode,
    frames_from_tokens,
    interleave,
    melody_tokens,
    random_crop_start,
    transpose,
)
from training.data.leadsheet import ChordSpan, LeadSheet, Note


def runs_to_track(runs):
    values, onsets = [], []
    for length, v in runs:
        values += [v] * length
        onsets += [v >= 0] + [False] * (length - 1)
    return np.array(values, np.int16), np.array(onsets, bool)


def track(max_value: int, first_sounding: bool = False):
    run = st.tuples(st.integers(1, 12), st.integers(-1, max_value))
    return st.lists(run, min_size=1, max_size=30).filter(lambda r: not first_sounding or r[0][1] >= 0)


@st.composite
def frames_strategy(draw, anchored: bool = False):
    """Random well-formed frames; ``anchored``: melody sounds on the first and last frame, length on beats."""
    runs = draw(track(127, first_sounding=anchored))
    if anchored:  # end on a sounding note, on a beat
        length = sum(r[0] for r in runs)
        runs = runs + [(4 - length % 4, draw(st.integers(21, 108)))]
    mel, mon = runs_to_track(runs)
    ch, con = runs_to_track(draw(track(N_CHORDS - 1)))
    n = len(mel)
    ch = np.resize(ch, n) if len(ch) >= n else np.concatenate([ch, np.full(n - len(ch), -1, np.int16)])
    con = np.resize(con, n) if len(con) >= n else np.concatenate([con, np.zeros(n - len(con), bool)])
    con = con & (ch >= 0)
    con[0] |= ch[0] >= 0
    return Frames(mel, mon & (mel >= 0), ch.astype(np.int16), con)


@given(frames_strategy())
def test_tokens_round_trip(frames):
    assert frames_from_tokens(melody_tokens(frames), chord_tokens(frames)) == frames


@given(frames_strategy(anchored=True))
@settings(max_examples=200)
def test_lead_sheet_round_trip_gives_the_same_frames(frames):
    again, stats = encode(decode(frames))
    assert again == frames
    assert stats.unmapped == 0 and stats.simplified == 0


@given(frames_strategy(), st.integers(-6, 5))
def test_transposition_moves_pitch_classes_not_rhythm(frames, k):
    moved = transpose(frames, k)
    sounding = frames.melody >= 0
    assert np.array_equal(moved.melody >= 0, sounding)
    assert np.array_equal(moved.melody_onset, frames.melody_onset)
    assert np.array_equal(moved.chord_onset, frames.chord_onset)
    assert np.all((moved.melody[sounding] - frames.melody[sounding] - k) % 12 == 0)
    assert np.all(np.abs(moved.melody[sounding].astype(int) - frames.melody[sounding]) <= 12)
    for a, b in zip(frames.chord[frames.chord >= 0], moved.chord[frames.chord >= 0]):
        assert set(Chord.from_index(int(b)).pitch_classes) == {(p + k) % 12 for p in Chord.from_index(int(a)).pitch_classes}
    assert np.array_equal(moved.chord >= 0, frames.chord >= 0)


@given(frames_strategy())
def test_interleaving_puts_chord_t_before_melody_t(frames):
    mel, ch = melody_tokens(frames), chord_tokens(frames)
    seq = interleave(ch, mel, bos=True, eos=True)
    assert seq[0] == T.BOS and seq[-1] == T.EOS and len(seq) == 2 * len(frames) + 2
    for t in range(len(frames)):
        pos_chord = 1 + 2 * t
        pos_melody = pos_chord + 1
        assert seq[pos_chord] == ch[t] and seq[pos_melody] == mel[t]
        assert T.is_chord(seq[pos_chord]) or seq[pos_chord] == T.SILENCE
        assert T.is_note(seq[pos_melody]) or seq[pos_melody] == T.SILENCE
    c2, m2 = deinterleave(seq[:-1])
    assert np.array_equal(c2, ch) and np.array_equal(m2, mel)


@given(frames_strategy(), st.integers(0, 40))
def test_a_crop_never_starts_with_an_orphan_hold(frames, start):
    start = min(start, len(frames) - 1)
    win = frames.crop(start, start + 16)
    mel, ch = melody_tokens(win), chord_tokens(win)
    assert not (T.NOTE_HOLD <= mel[0] < T.NOTE_ON)
    assert not (T.CHORD_HOLD <= ch[0] < T.CHORD_ON)


@given(st.integers(0, 2000), st.integers(1, 300), st.integers(0, 2**31))
def test_crop_starts_are_on_beats_and_fit(n, window, seed):
    s = random_crop_start(n, window, np.random.default_rng(seed))
    assert s % 4 == 0 and s >= 0
    assert s + window <= max(n, window)


def test_encode_quantizes_to_the_nearest_16th_and_trims_the_intro():
    g7 = ChordSpan(8.0, 12.0, "G7", *parse_chord_text("G7"))
    sheet = LeadSheet("t", "x", [Note(10.0, 10.5, 60), Note(10.49, 11.2, 64), Note(12.0, 13.0, 67)],
                      [ChordSpan(0.0, 8.0, "C", *parse_chord_text("C")), g7,
                       ChordSpan(12.0, 13.0, "N.C.", None)])
    frames, stats = encode(sheet)
    # first note at beat 10 -> keep 4 beats of lead-in: frames start at beat 6, end at beat 13
    assert len(frames) == 7 * 4
    assert frames.melody[16] == 60 and frames.melody_onset[16]
    assert frames.melody[18] == 64 and frames.melody_onset[18]  # 10.49 beats -> nearest 16th is 10.5
    assert frames.melody[20] == 64 and not frames.melody_onset[20]  # 11.2 -> frame 20.8 rounds to 21: held
    assert frames.melody[21] == -1 and frames.melody[24] == 67
    assert Chord.from_index(frames.chord[0]).symbol == "C" and frames.chord_onset[0]  # cut at the trim: onset
    assert Chord.from_index(frames.chord[8]).symbol == "G7" and frames.chord_onset[8]
    assert np.all(frames.chord[24:] == -1)
    assert stats.exact == 2 + 4 and stats.no_chord == 1


def test_overlapping_notes_later_wins():
    sheet = LeadSheet("t", "x", [Note(0.0, 2.0, 60), Note(1.0, 1.5, 62)], [])
    frames, _ = encode(sheet)
    assert frames.melody[:4].tolist() == [60] * 4
    assert frames.melody[4] == 62 and frames.melody_onset[4]
    assert frames.melody[6:].tolist() == [-1, -1]  # the earlier note is truncated, it does not resume
