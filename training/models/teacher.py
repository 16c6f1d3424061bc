"""The offline teacher: an encoder over the whole melody, a decoder over the chords so far.

phi(c_t | m_1..T, c_<t): it sees the future melody, which is what makes it a useful KL anchor for the online
policy (ReaLchords' "distillation from a teacher that sees the future") and a good intro-filler in the live app.
The papers use T5 relative position bias; we use rotary positions in both stacks so there is one attention code
path (a documented departure).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..data import tokens as T
from .transformer import ModelConfig, Transformer


class Encoded(NamedTuple):
    """What the decoder needs of a melody: fixed for a whole generation, so it is computed once."""

    memory: torch.Tensor  # [B, L, d] encoder output
    padding: torch.Tensor  # [B, L] True at PAD
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per decoder layer: cross-attention (k, v) of ``memory``


class OfflineTeacher(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Transformer(cfg, causal=False)
        self.decoder = Transformer(cfg, causal=True, cross=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, 0.0, 0.02)

    def encode(self, melody: torch.Tensor) -> Encoded:
        """melody [B, L] = [BOS, m1..mT, EOS, PAD...] -> the memory, its padding mask and every decoder layer's
        cross-attention keys/values (so decoding steps do not re-project the memory)."""
        padding = melody == T.PAD
        memory, _ = self.encoder(melody, key_padding=padding)
        return Encoded(memory, padding, self.decoder.cross_kv(memory))

    def forward(self, melody: torch.Tensor, chords: torch.Tensor, past=None, start: int = 0,
                memory: Encoded | None = None):
        """Logits for the chord decoder input ``chords`` [B, L] given the full melody; returns (logits, cache).

        ``memory``: ``encode(melody)`` computed once for a generation (``melody`` is then not read)."""
        enc = memory if memory is not None else self.encode(melody)
        h, cache = self.decoder(chords, past=past, start=start, memory=enc.memory, memory_padding=enc.padding,
                                memory_kv=enc.cross_kv)
        return self.lm_head(h), cache

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
