"""The reward models of the RL stage, in one readable file.

- ``ContrastiveReward``: a melody encoder and a chord encoder trained CLIP-style (symmetric InfoNCE over the batch);
  reward = cosine of the two embeddings. Its chord embedding also feeds the Vendi diversity metric.
- ``DiscriminativeReward``: one encoder over melody and chords together; reward = P(real pair), trained against
  melodies shuffled within the batch.
- ``ChordDiscriminator``: GAPT's D(y), chord tokens only, trained during RL (data chords vs rollouts); reward
  ``R_adv = -log(1 - D(y))``.
- Rhythm-only variants of the first two (``rhythm=True``) see onset / hold / silence only (``rhythm_only``).

Every model takes token windows as the dataset serves them with ``order="separate"``: ``[BOS, x1..xT, EOS?, PAD...]``
in the full token vocabulary (the rhythm variants map them to their 6-token vocabulary themselves, so callers never
need to know which variant they hold). Encoders are ``Transformer(causal=False)`` with padding masked; each model
reads the hidden state at the BOS position (the papers' "BOS-position output").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import tokens as T
from .transformer import ModelConfig, Transformer

# ---------------------------------------------------------------------------------------------------------------
# Rhythm-only tokens

RHYTHM_VOCAB = 6
R_PAD, R_BOS, R_EOS, R_SILENCE, R_ONSET, R_HOLD = range(RHYTHM_VOCAB)  # the specials keep their ids

_RHYTHM_TABLE = np.full(T.VOCAB_SIZE, R_HOLD, np.int64)
_RHYTHM_TABLE[[T.PAD, T.BOS, T.EOS, T.SILENCE]] = [R_PAD, R_BOS, R_EOS, R_SILENCE]
_RHYTHM_TABLE[T.NOTE_ON:T.CHORD_HOLD] = R_ONSET
_RHYTHM_TABLE[T.CHORD_ON:T.VOCAB_SIZE] = R_ONSET
_RHYTHM_TABLE_T = torch.from_numpy(_RHYTHM_TABLE)


def rhythm_only(tokens):
    """Full-vocabulary tokens (torch or numpy) -> {PAD 0, BOS 1, EOS 2, SILENCE 3, ONSET 4, HOLD 5}.

    NOTE_ON / CHORD_ON -> ONSET, NOTE_HOLD / CHORD_HOLD -> HOLD; pitch and chord identity are dropped. Not
    idempotent (ids 4 and 5 are NOTE_HOLD(0) and NOTE_HOLD(1) in the full vocabulary): apply it once, to full tokens.
    """
    if isinstance(tokens, np.ndarray):
        return _RHYTHM_TABLE[tokens]
    return _RHYTHM_TABLE_T.to(tokens.device)[tokens]


# ---------------------------------------------------------------------------------------------------------------
# Shared pieces


class Encoder(nn.Module):
    """A bidirectional Transformer over one token window; returns the hidden state at position 0 (BOS)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.body = Transformer(cfg, causal=False)

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        padding = tokens == T.PAD if padding is None else padding
        h, _ = self.body(tokens, key_padding=padding)
        return h[:, 0]


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return x if x.shape[1] >= width else F.pad(x, (0, width - x.shape[1]), value=T.PAD)


def frame_count(x: torch.Tensor) -> torch.Tensor:
    """[B, L] window -> [B] number of frame tokens after BOS, up to the first special token (EOS or PAD)."""
    return (x[:, 1:] >= T.SILENCE).long().cumprod(1).sum(1)


def derangement(n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """A random permutation of 0..n-1 with no fixed point (i -> perm[i] != i): one random cycle through all items."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}")
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)  # order[i] -> order[i + 1]
    return perm.to(device) if device is not None else perm


def info_nce(mel_emb: torch.Tensor, chord_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE: row i of each [B, d] (unit) matrix is the other's positive, the rest negatives."""
    logits = logit_scale.exp().clamp(max=100.0) * mel_emb @ chord_emb.T
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


def _model_config(cfg: ModelConfig, rhythm: bool) -> ModelConfig:
    return replace(cfg, vocab_size=RHYTHM_VOCAB if rhythm else T.VOCAB_SIZE)


# ---------------------------------------------------------------------------------------------------------------
# Contrastive reward


class ContrastiveReward(nn.Module):
    """Melody encoder + chord encoder; BOS output -> MLP (d -> d, ReLU, -> d) -> L2 norm; CLIP-style training."""

    def __init__(self, cfg: ModelConfig, rhythm: bool = False) -> None:
        super().__init__()
        self.cfg, self.rhythm = _model_config(cfg, rhythm), rhythm
        self.melody_encoder, self.chord_encoder = Encoder(self.cfg), Encoder(self.cfg)
        self.melody_proj, self.chord_proj = _mlp(cfg.d_model), _mlp(cfg.d_model)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        return rhythm_only(x) if self.rhythm else x

    def embed_melody(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, L] melody windows -> [B, d] unit vectors."""
        return F.normalize(self.melody_proj(self.melody_encoder(self._in(mel))).float(), dim=-1)

    def embed_chords(self, ch: torch.Tensor) -> torch.Tensor:
        """[B, L] chord windows -> [B, d] unit vectors (also the Vendi metric's embedding)."""
        return F.normalize(self.chord_proj(self.chord_encoder(self._in(ch))).float(), dim=-1)

    def loss(self, mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        return info_nce(self.embed_melody(mel), self.embed_chords(ch), self.logit_scale)

    def score(self, mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        """[B] cosine similarity in [-1, 1]: the RL reward."""
        return (self.embed_melody(mel) * self.embed_chords(ch)).sum(-1)


# ---------------------------------------------------------------------------------------------------------------
# Discriminative reward


def pair_tokens(mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
    """Melody and chord windows -> one sequence ``[BOS, m1..mn, EOS, PAD.., BOS, c1..cn, EOS, PAD..]``.

    ``n`` = the joint length (the shorter part's frame count): both parts are cut to it and everything after is
    padding, so neither the padding nor a song-end EOS can tell a shuffled pair from a real one. The EOS marks the
    end of the judged span (always present), not the end of the song. The BOS that opens the chord part is the
    separator: no new token. Each part keeps its fixed width W, so chord frame i always sits W positions after
    melody frame i (rotary positions then relate them directly).
    """
    width = max(mel.shape[1], ch.shape[1])
    mel, ch = _pad_to(mel, width), _pad_to(ch, width)
    n = torch.minimum(frame_count(mel), frame_count(ch))
    width = max(width, int(n.max()) + 2)
    mel, ch = _pad_to(mel, width), _pad_to(ch, width)
    pos = torch.arange(width, device=mel.device)[None]
    rows = torch.arange(len(n), device=mel.device)

    def part(x: torch.Tensor) -> torch.Tensor:
        y = torch.where((pos >= 1) & (pos <= n[:, None]), x, T.PAD)
        y[:, 0] = T.BOS
        y[rows, n + 1] = T.EOS
        return y

    return torch.cat([part(mel), part(ch)], dim=1)


class DiscriminativeReward(nn.Module):
    """One encoder over the pair (``pair_tokens``); BOS hidden -> one logit; P(real) = sigmoid(logit).

    The papers' 2-way softmax head is the same model: softmax([z0, z1])[1] = sigmoid(z1 - z0).
    """

    def __init__(self, cfg: ModelConfig, rhythm: bool = False) -> None:
        super().__init__()
        self.cfg, self.rhythm = _model_config(cfg, rhythm), rhythm
        if 2 * 258 > self.cfg.max_len:
            raise ValueError(f"max_len {self.cfg.max_len} is too short for a melody + chords pair (516 tokens)")
        self.encoder = Encoder(self.cfg)
        self.head = nn.Linear(cfg.d_model, 1)

    def logits(self, mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        x = pair_tokens(mel, ch)
        if self.rhythm:
            x = rhythm_only(x)
        return self.head(self.encoder(x)).squeeze(-1).float()

    def score(self, mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        """[B] P(real pair) in [0, 1]: the RL reward."""
        return torch.sigmoid(self.logits(mel, ch))

    def loss(self, mel: torch.Tensor, ch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """BCE over B real pairs (label 1) and the same chords with the melodies deranged (label 0)."""
        perm = derangement(len(mel), generator, mel.device)
        z = self.logits(torch.cat([mel, mel[perm]]), torch.cat([ch, ch]))
        labels = torch.cat([torch.ones(len(mel)), torch.zeros(len(mel))]).to(z.device)
        return F.binary_cross_entropy_with_logits(z, labels)


# ---------------------------------------------------------------------------------------------------------------
# GAPT's chord discriminator


def adversarial_reward_from_logits(z: torch.Tensor) -> torch.Tensor:
    """R_adv = -log(1 - sigmoid(z)) = softplus(z), exact and stable for any z (the reference adds 1e-12 instead)."""
    return F.softplus(z)


class ChordDiscriminator(nn.Module):
    """D(y): an encoder over ``[BOS] + chord tokens`` only; BOS hidden -> one logit; D = sigmoid(logit)."""

    def __init__(self, cfg: ModelConfig, rhythm: bool = False) -> None:
        super().__init__()
        if rhythm:
            raise ValueError("the chord discriminator has no rhythm-only variant")
        self.cfg, self.rhythm = _model_config(cfg, False), False
        self.encoder = Encoder(self.cfg)
        self.head = nn.Linear(cfg.d_model, 1)

    def logits(self, ch: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ch)).squeeze(-1).float()

    def probability(self, ch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(ch))

    def adversarial_reward(self, ch: torch.Tensor) -> torch.Tensor:
        return adversarial_reward_from_logits(self.logits(ch))

    def loss(self, real_ch: torch.Tensor, fake_ch: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
        """BCE, data chords real, rollout chords fake, with label smoothing ``smoothing``.

        GAPT uses a 2-way softmax with cross-entropy label smoothing 0.1, whose targets are (1 - s) * onehot + s / 2
        = 0.95 / 0.05; with one logit z = z_real - z_fake that is exactly BCE against 1 - s/2 (real) and s/2 (fake).
        """
        return self.loss_and_accuracy(real_ch, fake_ch, smoothing)[0]

    def loss_and_accuracy(self, real_ch: torch.Tensor, fake_ch: torch.Tensor,
                          smoothing: float = 0.1) -> tuple[torch.Tensor, float]:
        """``loss`` and D's accuracy on the same logits (one forward pass, not two)."""
        width = max(real_ch.shape[1], fake_ch.shape[1])
        z = self.logits(torch.cat([_pad_to(real_ch, width), _pad_to(fake_ch, width)]))
        targets = torch.cat([torch.full((len(real_ch),), 1 - smoothing / 2),
                             torch.full((len(fake_ch),), smoothing / 2)]).to(z.device)
        accuracy = ((z > 0) == (targets > 0.5)).float().mean().item()
        return F.binary_cross_entropy_with_logits(z, targets), accuracy


# ---------------------------------------------------------------------------------------------------------------
# Loading and the ensemble

KINDS: dict[str, type[nn.Module]] = {
    "contrastive": ContrastiveReward,
    "discriminative": DiscriminativeReward,
    "chord_discriminator": ChordDiscriminator,
}


def build_reward(kind: str, cfg: ModelConfig, rhythm: bool = False) -> nn.Module:
    if kind not in KINDS:
        raise ValueError(f"unknown reward kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind](cfg, rhythm=rhythm)


def load_reward(run: str | Path, which: str = "best") -> tuple[nn.Module, dict]:
    """A reward model from a run folder (``ckpt_best.pt`` or ``ckpt_last.pt``) or a checkpoint file, in eval mode,
    and its checkpoint metadata (everything but the weights and the optimiser state). Loads with weights_only."""
    from ..checkpoints import load_checkpoint

    path = Path(run)
    path = path if path.is_file() else path / f"ckpt_{which}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") not in KINDS:
        raise ValueError(f"{path}: holds a {ckpt.get('kind')!r} model, not a reward model")
    model = build_reward(ckpt["kind"], ModelConfig(**ckpt["model_config"]), bool(ckpt.get("rhythm", False)))
    model.load_state_dict(ckpt["model"])
    return model.eval(), {k: v for k, v in ckpt.items() if k not in ("model", "optim")}


class RewardEnsemble(nn.Module):
    """Frozen coherence rewards, summed with weight 1 each as in the reference code.

    ``members``: run folders / checkpoint files (named by their folder) / kept weights (named by their file), or a ``{name: model}`` mapping. GAPT's
    chord discriminator is not a member: it changes during RL and is scored separately.
    """

    def __init__(self, members: Iterable[str | Path] | Mapping[str, nn.Module], which: str = "best") -> None:
        super().__init__()
        if isinstance(members, Mapping):
            named = list(members.items())
        else:
            named = []
            for run in members:
                p = Path(run)
                # a run's checkpoint file is named by its run folder; a kept file (models/weights/NAME.pt) by NAME
                name = (p.parent.name if p.name.startswith("ckpt_") else p.stem) if p.is_file() else p.name
                named.append((name, load_reward(p, which)[0]))
        self.names: list[str] = []
        self.models = nn.ModuleDict()
        for name, model in named:
            if isinstance(model, ChordDiscriminator):
                raise ValueError(f"{name}: the chord discriminator is scored separately, not in the ensemble")
            key, k = name.replace(".", "_"), 2
            while key in self.models:
                key, k = f"{name.replace('.', '_')}_{k}", k + 1
            self.names.append(key)
            self.models[key] = model.eval().requires_grad_(False)
        if not self.names:
            raise ValueError("an empty reward ensemble")

    def train(self, mode: bool = True) -> RewardEnsemble:
        return super().train(False)  # frozen: dropout stays off whatever the caller's module tree does

    @torch.no_grad()
    def score(self, mel: torch.Tensor, ch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.models[name].score(mel, ch) for name in self.names}

    @torch.no_grad()
    def total(self, mel: torch.Tensor, ch: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(self.score(mel, ch).values())).sum(0)
