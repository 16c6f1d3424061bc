"""Batched chord generation with torch for evaluation and RL rollouts, under the app's token grammar.

The online policy is strictly online: the chord of frame t is sampled from the logits after
``[BOS, c1, m1, ..., c_{t-1}, m_{t-1}]``, then the data's melody token m_t is fed. The offline teacher sees the
whole melody through its encoder and decodes chords left to right.
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.grammar import Grammar

from .data import tokens as T
from .models.transformer import KVBuffer

_GRAMMAR = Grammar.from_table(T.token_table())
CHORD_SLOT = torch.as_tensor(_GRAMMAR.chord_slot)
MELODY_SLOT = torch.as_tensor(_GRAMMAR.melody_slot)
HOLD_OF = torch.as_tensor(_GRAMMAR.hold_of)


def chord_mask(prev: torch.Tensor | None, batch: int, slot: torch.Tensor = CHORD_SLOT) -> torch.Tensor:
    """[B, V] allowed tokens for a chord slot (or ``slot=MELODY_SLOT``) after ``prev`` [B] (None at the start)."""
    mask = slot.to(prev.device if prev is not None else "cpu").expand(batch, -1).clone()
    if prev is not None:
        hold = HOLD_OF.to(prev.device)[prev]
        rows = torch.nonzero(hold >= 0).squeeze(1)
        mask[rows, hold[rows]] = True
    return mask


def sample_masked(logits: torch.Tensor, mask: torch.Tensor, temperature: float,
                  generator: torch.Generator | None = None, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """One token per row from ``logits`` [B, V] restricted to ``mask``; the batched twin of
    ``app.engine.grammar.sample`` (temperature 0 is greedy)."""
    logits = logits.float().masked_fill(~mask, float("-inf"))
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p >= top_p  # keep the smallest head whose mass reaches top_p
        probs = probs.scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate_online(policy, melody: torch.Tensor, temperature: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """melody [B, T] melody tokens -> chord tokens [B, T], chord t never seeing melody t."""
    b, n = melody.shape
    logits, cache = policy(torch.full((b, 1), T.BOS, dtype=torch.long, device=melody.device))
    if isinstance(policy, torch.nn.Module):  # a torch policy fills a preallocated cache (an ONNX one keeps its own)
        cache = KVBuffer.from_cache(cache, capacity=1 + 2 * n)
    pos, prev, out = 1, None, []
    for t in range(n):
        c = sample_masked(logits[:, -1], chord_mask(prev, b).to(melody.device), temperature, generator)
        out.append(c)
        prev = c
        logits, cache = policy(torch.stack([c, melody[:, t]], 1), past=cache, start=pos)
        pos += 2
    return torch.stack(out, 1)


@torch.no_grad()
def generate_offline(teacher, melody: torch.Tensor, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """melody [B, T] -> chord tokens [B, T] from the teacher that sees all of the melody."""
    b, n = melody.shape
    enc_in = torch.cat([torch.full((b, 1), T.BOS, dtype=torch.long, device=melody.device), melody,
                        torch.full((b, 1), T.EOS, dtype=torch.long, device=melody.device)], 1)
    memory = teacher.encode(enc_in)  # incl. every layer's cross-attention K/V: projected once, not per step
    logits, cache = teacher(enc_in, torch.full((b, 1), T.BOS, dtype=torch.long, device=melody.device), memory=memory)
    prev, out = None, []
    for t in range(n):
        c = sample_masked(logits[:, -1], chord_mask(prev, b).to(melody.device), temperature, generator)
        out.append(c)
        prev = c
        logits, cache = teacher(enc_in, c[:, None], past=cache, start=t + 1, memory=memory)
    return torch.stack(out, 1)


def chord_indices(chord_tokens: np.ndarray) -> np.ndarray:
    """Chord tokens -> vocabulary index per frame (-1 for silence / anything else)."""
    t = np.asarray(chord_tokens)
    return np.where((t >= T.CHORD_HOLD) & (t < T.VOCAB_SIZE), (t - T.CHORD_HOLD) % (T.CHORD_ON - T.CHORD_HOLD), -1)


@torch.no_grad()
def generate_jam(policy, agent, batch: int, frames: int, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-model jamming (GAPT Eq. 1): at every frame the chord policy and the melody agent each decide from the
    shared history before frame t, then both hear both. Returns (chord tokens, melody tokens), each [B, frames]."""
    bos = torch.full((batch, 1), T.BOS, dtype=torch.long)
    p_logits, p_cache = policy(bos)
    a_logits, a_cache = agent(bos)
    prev_c = prev_m = None
    chords, melody = [], []
    for t in range(frames):
        c = sample_masked(p_logits[:, -1], chord_mask(prev_c, batch), temperature, generator)
        m = sample_masked(a_logits[:, -1], chord_mask(prev_m, batch, MELODY_SLOT), temperature, generator)
        chords.append(c)
        melody.append(m)
        prev_c, prev_m = c, m
        p_logits, p_cache = policy(torch.stack([c, m], 1), past=p_cache, start=1 + 2 * t)
        a_logits, a_cache = agent(torch.stack([m, c], 1), past=a_cache, start=1 + 2 * t)
    return torch.stack(chords, 1), torch.stack(melody, 1)
