"""The online policy: a decoder over the interleaved stream ``[BOS, c1, m1, c2, m2, ...]``.

Trained with MLE on every token (so it can also imagine the player's melody, as ReaLJam needs); the melody agent
is the same class trained on the mirror interleaving. ``value_head`` adds the PPO critic's scalar per position.
"""

from __future__ import annotations

import torch
from torch import nn

from .transformer import ModelConfig, Transformer

Cache = list[tuple[torch.Tensor, torch.Tensor]]


class OnlinePolicy(nn.Module):
    def __init__(self, cfg: ModelConfig, value_head: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = Transformer(cfg, causal=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, 0.0, 0.02)
        self.value_head = nn.Linear(cfg.d_model, 1) if value_head else None

    def forward(self, tokens: torch.Tensor, past: Cache | None = None, start: int | torch.Tensor = 0,
                with_value: bool = False):
        """tokens [B, L] -> logits [B, L, V], new cache (and values [B, L] when ``with_value``)."""
        h, cache = self.trunk(tokens, past=past, start=start)
        logits = self.lm_head(h)
        if with_value:
            if self.value_head is None:
                raise ValueError("this policy has no value head")
            return logits, cache, self.value_head(h).squeeze(-1)
        return logits, cache

    def empty_cache(self, batch: int, device: torch.device | str = "cpu", dtype=torch.float32) -> Cache:
        shape = (batch, self.cfg.n_head, 0, self.cfg.head_dim)
        return [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                for _ in range(self.cfg.n_layer)]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
