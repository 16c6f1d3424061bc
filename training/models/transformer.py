"""The transformer used by every Comper model, in one readable file (after nanoGPT's ``model.py``).

Pre-norm blocks with RMSNorm, rotary positions, SwiGLU feed-forward and attention through
``scaled_dot_product_attention``. Decoders keep an explicit KV cache (a pair of tensors per layer) so that one
code path serves training (no cache), incremental decoding (cache grows by a chunk) and the ONNX export, whose
graph takes the cache as inputs and returns the extended cache as outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    vocab_size: int = 620
    max_len: int = 1024  # tokens; rotary tables are built this long (sequences of 2*256+2 = 514 fit)
    dropout: float = 0.1
    ffn_mult: float = 4.0  # SwiGLU hidden width = mult * d_model (the papers: 4x)
    rope_base: float = 10000.0
    # Rotary positions in cross-attention too (decoder query at chord position t, encoder key at melody position
    # t): the teacher's chord t and melody frame t are aligned one to one, and without positions cross-attention
    # can only find "its" melody frame by content. Off for checkpoints made before it existed.
    cross_rotary: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ffn_hidden(self) -> int:
        return int(math.ceil(self.ffn_mult * self.d_model / 64) * 64)


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layer=2, n_head=2, d_model=64, dropout=0.0),
    "small": ModelConfig(n_layer=4, n_head=4, d_model=256),
    "paper": ModelConfig(n_layer=8, n_head=8, d_model=512),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model config {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Rotary(nn.Module):
    """Rotary position embedding applied to queries and keys at absolute positions."""

    def __init__(self, head_dim: int, max_len: int, base: float) -> None:
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(max_len).float(), inv)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        # x: [B, H, L, D]; positions: [L]
        cos, sin = self.cos[positions].to(x.dtype), self.sin[positions].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class KVBuffer:
    """One layer's self-attention keys/values, preallocated for a whole generation and filled in place.

    Why: a cache grown with ``torch.cat`` copies all of itself at every decoding step, O(T^2) memory traffic,
    which profiled as most of an RL rollout's time (64 rollouts x 512 tokens). Attention sees views of the filled
    prefix; the values are identical to the concatenated cache's."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, capacity: int) -> None:
        b, h, n, d = k.shape
        self.k = k.new_empty(b, h, capacity, d)
        self.v = v.new_empty(b, h, capacity, d)
        self.k[:, :, :n], self.v[:, :, :n] = k, v
        self.length = n

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise ValueError(f"KV buffer full: {end} positions, capacity {self.k.shape[2]}")
        self.k[:, :, self.length:end], self.v[:, :, self.length:end] = k, v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    @classmethod
    def from_cache(cls, cache: list[tuple[torch.Tensor, torch.Tensor]], capacity: int) -> list[KVBuffer]:
        return [cls(k, v, capacity) for k, v in cache]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.cfg, self.cross = cfg, cross
        self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.cfg.n_head, self.cfg.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor, rotary: Rotary | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, L, D] of ``x`` (for cross-attention: of the encoder memory, rotated to their
        positions when the config says so)."""
        k, v = self.kv(x).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)
        if self.cross and self.cfg.cross_rotary and rotary is not None:
            k = rotary(k, torch.arange(k.shape[2], device=k.device))
        return k, v

    def forward(self, x: torch.Tensor, rotary: Rotary | None, positions: torch.Tensor | None,
                mask: torch.Tensor | None, memory: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | KVBuffer | None = None, is_causal: bool = False,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``memory_kv``: this layer's cross-attention keys/values of ``memory``, projected once per generation
        (``project_kv``) instead of at every decoding step."""
        q = self._heads(self.q(x))
        if memory_kv is not None:
            k, v = memory_kv
        else:
            k, v = self.project_kv(memory if self.cross else x, rotary)
        if not self.cross and rotary is not None:
            q, k = rotary(q, positions), rotary(k, positions)
        elif self.cross and self.cfg.cross_rotary and rotary is not None:
            q = rotary(q, positions)
        if isinstance(past, KVBuffer):
            k, v = past.append(k, v)
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # No dropout on the attention weights: it forces SDPA's unfused math path (25% of a CPU step in the
        # profile); the residual dropouts regularise as well.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(x.shape)
        return self.out(y), past if isinstance(past, KVBuffer) else (k, v)


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.ffn_hidden, bias=False)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention (teacher decoder), SwiGLU."""

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
        self.norm1, self.attn = RMSNorm(cfg.d_model), Attention(cfg)
        self.norm_x = RMSNorm(cfg.d_model) if cross else None
        self.xattn = Attention(cfg, cross=True) if cross else None
        self.norm2, self.ffn = RMSNorm(cfg.d_model), SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rotary, positions, mask, past=None, memory=None, memory_mask=None, is_causal=False,
                memory_kv=None):
        a, kv = self.attn(self.norm1(x), rotary, positions, mask, past=past, is_causal=is_causal)
        x = x + self.drop(a)
        if self.xattn is not None:
            a, _ = self.xattn(self.norm_x(x), rotary, positions, memory_mask, memory=memory, memory_kv=memory_kv)
            x = x + self.drop(a)
        x = x + self.drop(self.ffn(self.norm2(x)))
        return x, kv


def causal_mask(chunk: int, past: int, device: torch.device) -> torch.Tensor:
    """Boolean [chunk, past + chunk]: query i (at absolute past + i) sees keys 0..past + i."""
    q = torch.arange(chunk, device=device).unsqueeze(1) + past
    k = torch.arange(past + chunk, device=device).unsqueeze(0)
    return k <= q


class Transformer(nn.Module):
    """Token embedding + blocks + final norm; ``causal`` picks decoder or (bidirectional) encoder attention."""

    def __init__(self, cfg: ModelConfig, causal: bool = True, cross: bool = False) -> None:
        super().__init__()
        self.cfg, self.causal = cfg, causal
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.rotary = Rotary(cfg.head_dim, cfg.max_len, cfg.rope_base)
        self.blocks = nn.ModuleList(Block(cfg, cross) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.apply(self._init)
        for name, p in self.named_parameters():  # scaled init of residual projections (GPT-2)
            if name.endswith("out.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, tokens: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                start: int | torch.Tensor = 0, key_padding: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_padding: torch.Tensor | None = None,
                memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
        """tokens [B, L] -> hidden [B, L, d] and the per-layer (k, v) cache including this chunk.

        ``key_padding`` [B, L] True where a token is padding (encoders); ``memory`` is the encoder output for
        cross-attention, ``memory_padding`` its padding mask; ``memory_kv`` (from ``cross_kv``) the per-layer
        cross-attention keys/values of ``memory``, which then need not be given.
        """
        b, n = tokens.shape
        past_len = (past[0].length if isinstance(past[0], KVBuffer) else past[0][0].shape[2]) if past else 0
        positions = torch.arange(n, device=tokens.device) + start
        # A causal pass with no cache takes SDPA's fused causal kernel; with a cache (incremental decoding, the
        # ONNX graph) the explicit mask handles the offset between queries and keys.
        fused_causal = self.causal and past is None
        if self.causal:
            mask = None if fused_causal else causal_mask(n, past_len, tokens.device)
        else:
            mask = None if key_padding is None else ~key_padding[:, None, None, :]
        mem_mask = None if memory_padding is None else ~memory_padding[:, None, None, :]
        x = self.drop(self.embed(tokens))
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, self.rotary, positions, mask, past=past[i] if past else None,
                          memory=memory, memory_mask=mem_mask, is_causal=fused_causal,
                          memory_kv=memory_kv[i] if memory_kv else None)
            new_cache.append(kv)
        return self.norm(x), new_cache

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every layer's cross-attention keys/values of ``memory``: fixed for a whole generation, so a decoder
        computes them once rather than re-projecting the memory at every step (most of a step's work)."""
        return [block.xattn.project_kv(memory, self.rotary) for block in self.blocks]
