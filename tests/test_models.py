"""The transformer models: KV-cache decoding matches a full forward pass; shapes; parameter counts."""

import pytest
import torch

from training.models.policy import OnlinePolicy
from training.models.teacher import OfflineTeacher
from training.models.transformer import PRESETS, preset


@pytest.fixture
def policy():
    torch.manual_seed(0)
    return OnlinePolicy(preset("tiny"), value_head=True).eval()


def test_incremental_decoding_matches_full_forward(policy):
    x = torch.randint(4, 620, (3, 60))
    with torch.no_grad():
        full, _ = policy(x)
        logits, cache = policy(x[:, :25])  # prefill
        parts = [logits]
        pos = 25
        for chunk in (1, 2, 1, 5, 1, 2, 23):  # steps of 1 and 2 tokens, and a longer chunk
            logits, cache = policy(x[:, pos:pos + chunk], past=cache, start=pos)
            parts.append(logits)
            pos += chunk
    assert pos == 60
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5, rtol=0)


def test_empty_cache_prefill_equals_no_cache(policy):
    x = torch.randint(4, 620, (2, 17))
    with torch.no_grad():
        a, _ = policy(x)
        b, cache = policy(x, past=policy.empty_cache(2), start=0)
    assert torch.allclose(a, b, atol=1e-6) and cache[0][0].shape[2] == 17


def test_a_different_prefix_changes_later_logits_but_never_earlier_ones(policy):
    x = torch.randint(4, 620, (1, 30))
    y = x.clone()
    y[0, 20] = (x[0, 20] + 1) % 620
    with torch.no_grad():
        a, _ = policy(x)
        b, _ = policy(y)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-6)  # causal: the future never leaks back
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-4)


def test_value_head(policy):
    logits, _, values = policy(torch.randint(4, 620, (2, 9)), with_value=True)
    assert logits.shape == (2, 9, 620) and values.shape == (2, 9)
    with pytest.raises(ValueError):
        OnlinePolicy(preset("tiny"))(torch.zeros(1, 3, dtype=torch.long), with_value=True)


def test_teacher_sees_the_whole_melody_and_decodes_incrementally():
    torch.manual_seed(0)
    teacher = OfflineTeacher(preset("tiny")).eval()
    mel = torch.randint(4, 260, (2, 40))
    mel[1, 30:] = 0  # padding
    chords = torch.randint(260, 620, (2, 20))
    with torch.no_grad():
        full, _ = teacher(mel, chords)
        memory = teacher.encode(mel)
        out, cache = teacher(mel, chords[:, :8], memory=memory)
        parts = [out]
        for t in range(8, 20):
            out, cache = teacher(mel, chords[:, t:t + 1], past=cache, start=t, memory=memory)
            parts.append(out)
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
        # the first chord's prediction changes when the *last* melody note changes: it sees the future
        mel2 = mel.clone()
        mel2[0, 25] = (mel[0, 25] + 1 - 4) % 256 + 4
        first, _ = teacher(mel2, chords)
    assert not torch.allclose(first[0, 0], full[0, 0], atol=1e-5)
    # ...and padding is ignored: the padded melody gives what the unpadded one gives
    with torch.no_grad():
        unpadded, _ = teacher(mel[1:, :30], chords[1:])
    assert torch.allclose(unpadded[0], full[1], atol=1e-5)


def test_cross_attention_knows_which_melody_frame_is_now_only_with_cross_rotary():
    """Chord t must find melody frame t. Rotary self-attention leaves encoder outputs with relative positions only,
    so without positions on the cross-attention itself two decoder steps with the same input attend identically
    (the first teacher did: test harmony 0.465 at T=1; with ``cross_rotary`` 0.639)."""
    from training.models.transformer import Attention, Rotary

    torch.manual_seed(0)
    memory, x = torch.randn(1, 12, 64), torch.randn(1, 1, 64).expand(1, 12, 64)  # the same query at every step
    outs = {}
    for on in (False, True):
        cfg = preset("tiny", cross_rotary=on)
        attn, rotary = Attention(cfg, cross=True), Rotary(cfg.head_dim, cfg.max_len, cfg.rope_base)
        torch.manual_seed(1)
        attn.load_state_dict({k: torch.randn_like(v) for k, v in attn.state_dict().items()})
        with torch.no_grad():
            outs[on], _ = attn(x.contiguous(), rotary, torch.arange(12), None, memory=memory)
    assert torch.allclose(outs[False][0, 0], outs[False][0, 7], atol=1e-5)  # position-blind
    assert not torch.allclose(outs[True][0, 0], outs[True][0, 7], atol=1e-3)


def test_named_configs():
    assert set(PRESETS) == {"tiny", "small", "paper"}
    paper = preset("paper")
    assert (paper.n_layer, paper.d_model, paper.n_head) == (8, 512, 8)
    n = OnlinePolicy(paper).num_params()
    assert 25e6 < n < 45e6  # the papers' ~40M with their 5,902-token vocabulary; ours is 620 tokens
    with pytest.raises(ValueError, match="unknown model config"):
        preset("huge")
