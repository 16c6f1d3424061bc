"""Batched generation: strictly online, always grammatical, and the torch sampler honours top-k / top-p."""

import numpy as np
import pytest
import torch

from app.engine.grammar import Grammar
from training.data import tokens as T
from training.generate import chord_indices, chord_mask, generate_offline, generate_online, sample_masked
from training.models.policy import OnlinePolicy
from training.models.teacher import OfflineTeacher
from training.models.transformer import preset

G = Grammar.from_table(T.token_table())


def melody_batch(b=3, n=24, seed=0):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.choice([T.SILENCE, T.NOTE_ON + 60, T.NOTE_ON + 67], (b, n)))


def assert_grammatical(chords):
    for row in chords.tolist():
        prev = None
        for c in row:
            assert G.is_valid("chord", prev, c), (prev, c)
            prev = c


def test_online_generation_never_sees_the_current_melody_note():
    torch.manual_seed(0)
    policy = OnlinePolicy(preset("tiny")).eval()
    mel = melody_batch()
    a = generate_online(policy, mel, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert_grammatical(a)
    changed = mel.clone()
    changed[:, 10:] = T.NOTE_ON + 61  # change the melody from frame 10 on
    b = generate_online(policy, changed, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[:, :11], b[:, :11])  # chord 10 is decided before melody 10 is heard


def test_offline_generation_sees_the_future_and_is_grammatical():
    torch.manual_seed(0)
    teacher = OfflineTeacher(preset("tiny")).eval()
    mel = melody_batch()
    a = generate_offline(teacher, mel, temperature=0.0)
    assert_grammatical(a)
    changed = mel.clone()
    changed[:, -1] = T.NOTE_ON + 30
    logits_a, _ = teacher(torch.cat([torch.full((3, 1), T.BOS), mel, torch.full((3, 1), T.EOS)], 1),
                          torch.full((3, 1), T.BOS))
    logits_b, _ = teacher(torch.cat([torch.full((3, 1), T.BOS), changed, torch.full((3, 1), T.EOS)], 1),
                          torch.full((3, 1), T.BOS))
    assert not torch.allclose(logits_a, logits_b)  # the first chord depends on the last melody note


def test_top_k_top_p_and_mask_in_the_batched_sampler():
    logits = torch.full((2, T.VOCAB_SIZE), -10.0)
    logits[:, [T.CHORD_ON + 1, T.CHORD_ON + 2, T.CHORD_ON + 3]] = torch.tensor([5.0, 4.0, 3.0])
    logits[:, T.EOS] = 100.0
    mask = chord_mask(None, 2)
    g = torch.Generator().manual_seed(0)
    assert set(sample_masked(logits, mask, 0.0).tolist()) == {T.CHORD_ON + 1}
    picks = {int(t) for _ in range(100) for t in sample_masked(logits, mask, 1.0, g, top_k=2)}
    assert picks == {T.CHORD_ON + 1, T.CHORD_ON + 2}
    picks = {int(t) for _ in range(100) for t in sample_masked(logits, mask, 1.0, g, top_p=0.5)}
    assert picks == {T.CHORD_ON + 1}


def test_chord_mask_allows_only_the_matching_hold():
    prev = torch.tensor([T.CHORD_ON + 4, T.SILENCE])
    mask = chord_mask(prev, 2)
    assert mask[0, T.CHORD_HOLD + 4] and not mask[0, T.CHORD_HOLD + 5]
    assert not mask[1, T.CHORD_HOLD:T.CHORD_ON].any()
    assert chord_indices(np.array([T.SILENCE, T.CHORD_ON + 7, T.CHORD_HOLD + 7])).tolist() == [-1, 7, 7]


def test_the_preallocated_kv_buffer_gives_the_concatenated_caches_logits():
    from training.models.transformer import KVBuffer

    torch.manual_seed(0)
    policy = OnlinePolicy(preset("tiny")).eval()
    steps = torch.randint(4, T.VOCAB_SIZE, (2, 12))
    with torch.no_grad():
        _, grown = policy(torch.full((2, 1), T.BOS))
        buffered = KVBuffer.from_cache(grown, capacity=1 + steps.shape[1])
        for t in range(0, steps.shape[1], 2):
            a, grown = policy(steps[:, t:t + 2], past=grown, start=1 + t)
            b, buffered = policy(steps[:, t:t + 2], past=buffered, start=1 + t)
            assert torch.allclose(a, b, atol=1e-5)
        full, _ = policy(torch.cat([torch.full((2, 1), T.BOS), steps], 1))
    assert torch.allclose(full[:, -2:], b, atol=1e-4)  # and both equal the uncached forward pass
    with pytest.raises(ValueError, match="capacity"):  # a full buffer refuses more positions
        policy(steps[:, :2], past=buffered, start=13)
