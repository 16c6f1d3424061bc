"""Each rule penalty on hand-made rollouts with known answers."""

import pytest
import torch

from training.data import tokens as T
from training.rl import penalties as P

C = T.CHORD_ON  # onset of chord index 0 (C major); CHORD_ON + k is chord k
H = T.CHORD_HOLD
NOTE = T.NOTE_ON + 60


def seq(*toks):
    return torch.tensor([list(toks)])


def test_invalid():
    assert P.invalid(seq(C, H, H, T.SILENCE, C + 3, H + 3)).item() == 0
    assert P.invalid(seq(C, H + 1)).item() == -10  # hold of another chord
    assert P.invalid(seq(T.SILENCE, H)).item() == -10  # hold after silence
    assert P.invalid(seq(C, T.PAD, C)).item() == -10
    assert P.invalid(seq(C, NOTE)).item() == -10  # a melody token in a chord slot
    assert P.invalid(seq(C, H, T.EOS, T.PAD)).item() == 0  # an ending is the early-stop penalty's business


def test_silence_over_a_sounding_melody():
    melody = torch.full((1, 108), NOTE)
    ok = torch.full((1, 108), C)
    assert P.silence(ok, melody).item() == 0
    some = ok.clone()
    some[0, :8] = T.SILENCE  # inside the grace period: free
    some[0, 8:12] = T.SILENCE  # 4 of 100 frames after the grace period = 4%: allowed
    assert P.silence(some, melody).item() == 0
    some[0, 12] = T.SILENCE  # 5 of 100 > 4%: -0.5
    assert abs(P.silence(some, melody).item() + 0.5) < 1e-6
    rest = torch.full((1, 108), T.SILENCE)
    assert P.silence(rest, rest).item() == 0  # no melody, no penalty


def test_early_stop():
    melody = torch.tensor([[NOTE] * 10 + [T.SILENCE] * 6])
    assert P.early_stop(torch.full((1, 16), C), melody).item() == 0
    stopped = torch.tensor([[C] * 4 + [T.EOS] + [T.PAD] * 11])
    assert abs(P.early_stop(stopped, melody).item() + 0.6) < 1e-6  # 6 melody frames left
    late = torch.tensor([[C] * 12 + [T.EOS] + [T.PAD] * 3])
    assert P.early_stop(late, melody).item() == 0


def test_repetition_counts_events_not_frames():
    held = seq(C, *[H] * 40)  # one long chord: a single event
    assert P.repetition(held).item() == 0
    four = seq(C, H, C, H, C, C)  # 4 strikes of the same chord: allowed
    assert P.repetition(four).item() == 0
    six = seq(C, C, C, C, C, C, C + 5, C, C)  # a run of 6 then a run of 2
    assert abs(P.repetition(six).item() + 0.6) < 1e-6
    assert set(P.all_penalties(six, torch.full_like(six, NOTE))) == {"invalid", "silence", "early_stop", "repetition"}


def _frames(*events):
    """Chord tokens from (chord index, length in frames) events: an onset then holds."""
    out = []
    for chord, n in events:
        out += [T.CHORD_ON + chord] + [T.CHORD_HOLD + chord] * (n - 1)
    return torch.tensor([out])


def test_harmonic_rhythm_is_zero_for_the_songs_own_rhythm_and_charges_flicker_and_offbeats():
    song = _frames((0, 16), (5, 16), (7, 16), (0, 16))  # a chord a bar
    assert P.harmonic_rhythm(song, song).item() == 0
    other_chords_same_rhythm = _frames((9, 16), (2, 16), (7, 16), (9, 16))
    assert P.harmonic_rhythm(other_chords_same_rhythm, song).item() == 0  # rhythm only, not the chords
    flicker = _frames(*[(c, 4) for c in (0, 5) * 8])  # a change every beat: 16 changes against 4
    assert P.harmonic_rhythm(flicker, song).item() == pytest.approx(-3.0)
    offbeat = _frames((0, 2), (5, 16), (7, 16), (0, 16), (0, 14))  # 4 changes, but struck off the beat
    assert P.harmonic_rhythm(offbeat, song).item() < 0
    frozen = _frames((0, 64))
    assert P.harmonic_rhythm(frozen, song).item() == pytest.approx(-0.75)
