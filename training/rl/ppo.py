"""RL post-training of the online chord policy: ReaLchords-style PPO and GAPT, the whole algorithm in one file.

    comper-train rl --system gapt --config cpu --init runs/online-small --teacher runs/offline-small \\
        --rewards runs/rw-contrastive runs/rw-discriminative ... --cache cache/data --out runs/gapt-small

One update (after CleanRL's single-file PPO):

1. Draw data windows (melody + its real chords) and roll the policy out strictly online under the token
   grammar: chord t is sampled before melody t is fed (KV-cached, ``generate_online``).
2. Score each rollout: the sum of the reward models (coherence), the rule penalties, and with ``adversarial``
   GAPT's ``R_adv = -log(1 - D(y))`` from a discriminator that sees chords only. The sum sits on the last chord;
   every chord position also pays ``-beta * KL(pi || teacher)`` over the full vocabulary, the teacher being the
   offline model that sees the whole melody (ReaLchords' distillation anchor).
3. GAE over chord positions only (gamma 1, lambda 0.95) with a critic initialised from the policy; a clipped PPO
   step per minibatch for the actor (plus the entropy bonus) and a value regression for the critic.
4. GAPT's two-phase schedule for D: one D update (one pass over the minibatches, data chords vs rollouts, label
   smoothing 0.1) every ``d_every`` updates during the first ``d_phase1`` updates, afterwards only while the mean
   R_adv of the last 3 updates is above ``d_threshold`` (the policy is fooling D).

Resumable to the update: every update draws from a generator seeded by (seed, update).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data import tokens as T
from ..data.cache import Cache, load as load_cache
from ..data.dataset import WindowConfig, WindowDataset
from ..data.sources import TRAINING_SOURCES
from ..evaluation import diversity as D
from ..evaluation.harmony import note_in_chord
from ..generate import CHORD_SLOT, HOLD_OF, chord_indices, generate_online
from ..models.policy import OnlinePolicy
from ..pretrain import DEFAULT_MIX, autocast, load_checkpoint, load_model, save_checkpoint
from . import penalties


CPU = torch.device("cpu")  # RL runs on the CPU here (the rollout loop is latency-bound); see autocast


@dataclass(frozen=True)
class RLConfig:
    updates: int = 1000
    rollouts: int = 384  # per update
    minibatch: int = 48  # -> 8 PPO minibatches per update
    frames: int = 256
    actor_lr: float = 5e-6
    critic_lr: float = 9e-5
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100  # updates of linear warmup, then cosine to 10% of the peak
    kl_beta: float = 0.001
    entropy: float = 0.0
    clip: float = 0.2
    gae_lambda: float = 0.95
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    adversarial: bool = False
    d_lr: float = 9e-5
    d_every: int = 5
    d_phase1: int = 200
    d_threshold: float = 1.0
    d_window: int = 3
    d_smoothing: float = 0.1
    d_config: str = "small"
    adv_weight: float = 1.0  # gamma of R = R_coh + R_rules + gamma R_adv (GAPT C.9)
    eval_every: int = 10
    eval_songs: int = 64
    ckpt_every: int = 5
    seed: int = 0


CONFIGS: dict[str, RLConfig] = {
    # GAPT C.5 / the reference code's gapt.yml (the code's learning rates: 5e-6 / 9e-5).
    "paper": RLConfig(d_config="paper"),
    # The same schedule shape scaled to a 2-core CPU: 100 updates of 64 rollouts; D's warm-up scaled 200 -> 20.
    # 100 updates are 400 optimiser steps, not the paper's thousands, so the actor's rate is higher: at 2e-5 a run
    # moved nowhere (22 updates: clipfrac 0, approx_kl < 5e-4, validation harmony 0.343 -> 0.362).
    # GAPT's discriminator at this scale (all runs seed 0, validation harmony / Vendi; the MLE point is 0.351 / 14.7):
    # - D frozen after a short warm-up gets fooled: D every 2nd update at 9e-5 (phase 1 = 20 updates) reached
    #   0.402 / 22.4 at update 20, then the policy learned the frozen D (adversarial reward ~1, coherence ~0): 0.22
    #   at 50. Weighting the adversarial term 0.25 only delayed it (0.24 at 50).
    # - D trained every update at 3e-4 wins outright (accuracy 0.98-1.0 from update 25): its reward is a constant
    #   ~0.05 that says nothing about diversity, and the run collapses like gapt-no-adv (adversarial weight 0.25:
    #   0.392 / 3.6 at 80; weight 1: 0.336 / 6.3 at 20); at 1e-4 the same by update 20 (0.359 / 7.7).
    # - D trained every update at 3e-5 (no gated phase: d_phase1 = updates) stays informative (accuracy 0.6-0.9 up
    #   to update 25) and keeps diversity while harmony rises: 0.410 / 19.8 at 10, 0.441 / 17.8 at 20 (seed 1:
    #   0.386 / 15.5, 0.397 / 15.7 at 30). Later the coherence rewards fall in every run at this actor rate, so the
    #   shipped gapt is the snapshot its validation curve chooses (select_snapshot: u20).
    "cpu": RLConfig(updates=100, rollouts=64, minibatch=16, warmup=10, actor_lr=1e-4, critic_lr=3e-4, d_every=1,
                    d_lr=3e-5, d_phase1=100, eval_every=10, eval_songs=48, adv_weight=1.0),
    "smoke": RLConfig(updates=3, rollouts=4, minibatch=2, frames=32, warmup=1, d_every=1, d_phase1=2, eval_every=2,
                      eval_songs=4, ckpt_every=1, d_config="tiny"),
}
SYSTEMS: dict[str, dict] = {
    "realchords": {"entropy": 0.0, "adversarial": False},
    "gapt-no-adv": {"entropy": 0.01, "adversarial": False},
    "gapt": {"entropy": 0.01, "adversarial": True},
}


def schedule_fires(update: int, recent_adv: list[float], cfg: RLConfig) -> bool:
    """GAPT Algorithm 1: train D after update ``update`` (1-based)?"""
    if update <= cfg.d_phase1:
        return update == 1 or update % cfg.d_every == 0
    return len(recent_adv) >= cfg.d_window and float(np.mean(recent_adv[-cfg.d_window:])) > cfg.d_threshold


def lr_factor(update: int, cfg: RLConfig, total: int | None = None, warmup: int | None = None) -> float:
    total, warmup = total or cfg.updates, cfg.warmup if warmup is None else warmup
    if update < warmup:
        return (update + 1) / warmup
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def chord_masks(chords: torch.Tensor) -> torch.Tensor:
    """[B, T, V] the grammar's allowed tokens at every chord slot given the chord before it."""
    b, n = chords.shape
    mask = CHORD_SLOT.expand(b, n, -1).clone()
    hold = HOLD_OF[chords[:, :-1]]  # the hold that may follow each chord
    rows, cols = torch.nonzero(hold >= 0, as_tuple=True)
    mask[rows, cols + 1, hold[rows, cols]] = True
    return mask


def interleaved(chords: torch.Tensor, melody: torch.Tensor) -> torch.Tensor:
    """[BOS, c1, m1, ..., cT, mT]; the model's input is all but the last token, chord t is predicted at 2t."""
    seq = torch.stack([chords, melody], 2).flatten(1)
    return torch.cat([torch.full((chords.shape[0], 1), T.BOS, dtype=torch.long), seq], 1)


def masked_logprobs(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float().masked_fill(~mask, float("-inf")), dim=-1)


def policy_logprobs(model, chords, melody, mask, with_value: bool = False):
    """Log-probs [B, T, V] (masked) of every chord slot, and the values there when ``with_value``."""
    inputs = interleaved(chords, melody)[:, :-1]
    if with_value:
        logits, _, values = model(inputs, with_value=True)
        return masked_logprobs(logits[:, 0::2], mask), values[:, 0::2]
    logits, _ = model(inputs)
    return masked_logprobs(logits[:, 0::2], mask)


def teacher_logprobs(teacher, melody_window: torch.Tensor, chords: torch.Tensor) -> torch.Tensor:
    """The offline teacher's full-vocabulary log-probs [B, T, V] at each chord given the whole melody."""
    dec_in = torch.cat([torch.full((chords.shape[0], 1), T.BOS, dtype=torch.long), chords[:, :-1]], 1)
    logits, _ = teacher(melody_window, dec_in)
    return torch.log_softmax(logits.float(), dim=-1)


def kl_to_teacher(logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary KL(pi || teacher) per position from log-probs [..., V] (tokens pi cannot pick add 0)."""
    return (logp.exp() * (logp - teacher_logp)).nan_to_num(0.0).sum(-1)


def entropy_of(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp.nan_to_num(0.0)).sum(-1)


def total_reward(terms: dict[str, torch.Tensor], cfg: RLConfig) -> torch.Tensor:
    """R = R_coh + R_rules + gamma R_adv per rollout; the terms stay unweighted in the log (the D schedule reads
    the raw adversarial reward)."""
    return torch.stack([v * (cfg.adv_weight if k == "adversarial" else 1.0) for k, v in terms.items()]).sum(0)


def gae(rewards: torch.Tensor, values: torch.Tensor, lam: float, gamma: float = 1.0) -> torch.Tensor:
    """Advantages over chord positions; the episode ends after the last chord (bootstrap value 0)."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv


class Trainer:
    """Holds the models, optimisers and schedule state of one RL run."""

    def __init__(self, cfg: RLConfig, init: Path, teacher: Path, rewards: list[Path], cache: Cache, out: Path,
                 system: str) -> None:
        from ..models.rewards import ChordDiscriminator, RewardEnsemble
        from ..models.transformer import preset

        self.cfg, self.out, self.system = cfg, Path(out), system
        torch.manual_seed(cfg.seed)
        policy, self.init_ckpt = load_model(init)
        if not isinstance(policy, OnlinePolicy):
            raise ValueError(f"--init {init}: holds a {self.init_ckpt['kind']} model, not an online policy")
        self.policy = policy.train()
        for m in self.policy.modules():  # dropout 0 during RL (reference code)
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        self.critic = OnlinePolicy(policy.cfg, value_head=True)
        self.critic.load_state_dict(policy.state_dict(), strict=False)
        torch.nn.init.zeros_(self.critic.value_head.weight)
        torch.nn.init.zeros_(self.critic.value_head.bias)
        for m in self.critic.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        self.teacher, tck = load_model(teacher)
        if tck["kind"] != "offline":
            raise ValueError(f"--teacher {teacher}: holds a {tck['kind']} model, not the offline teacher")
        self.teacher.requires_grad_(False)
        self.rewards = RewardEnsemble(rewards) if rewards else None
        # validation Vendi also on the contrastive reward model's chord embedding, when the ensemble has one
        from ..evaluate import ChordEmbedder
        from ..models.rewards import ContrastiveReward

        members = self.rewards.models.values() if self.rewards else []
        encoders = [m for m in members if isinstance(m, ContrastiveReward)]
        self.val_embedder = ChordEmbedder(model=encoders[0]) if encoders else None
        self.actor_opt = torch.optim.AdamW(self.policy.parameters(), lr=cfg.actor_lr, betas=cfg.betas, weight_decay=0)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=cfg.critic_lr, betas=cfg.betas,
                                            weight_decay=0)
        self.disc = self.disc_opt = None
        if cfg.adversarial:
            self.disc = ChordDiscriminator(preset(cfg.d_config))
            self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.d_lr, betas=cfg.betas, weight_decay=0)
        self.update = 0
        self.d_updates = 0
        self.recent_adv: list[float] = []
        wcfg = WindowConfig(window=cfg.frames, order="separate")
        self.train_ds = WindowDataset(cache, "train", TRAINING_SOURCES, wcfg, seed=cfg.seed)
        long_enough = np.array([self.train_ds.stops[s] - self.train_ds.starts[s] >= cfg.frames
                                for s in self.train_ds.item_song])
        weights = self.train_ds.mixing_weights(DEFAULT_MIX).numpy() * long_enough
        self.weights = weights / weights.sum()
        val = WindowDataset(cache, "valid", TRAINING_SOURCES, wcfg, augment=False)
        items = [i for i in range(len(val)) if val.item_offset[i] == 0][:cfg.eval_songs]
        self.val_windows = [val.window(i, None) for i in items]

    # --- one update -----------------------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        items = rng.choice(len(self.train_ds), size=self.cfg.rollouts, p=self.weights)
        wins = [self.train_ds.window(int(i), rng) for i in items]
        return {k: torch.from_numpy(np.stack([w[k] for w in wins])) for k in ("melody", "chords")}

    @torch.no_grad()
    def rollout(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        with autocast(CPU):  # bf16 matmuls where the CPU has them (~2x); log-probs and rewards are fp32
            return self._rollout(batch, gen)

    def _rollout(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        n = self.cfg.frames
        melody = batch["melody"][:, 1:1 + n]
        self.policy.eval()
        chords = generate_online(self.policy, melody, self.cfg.temperature, gen)
        self.policy.train()
        mask = chord_masks(chords)
        logp = policy_logprobs(self.policy, chords, melody, mask)
        _, values = policy_logprobs(self.critic, chords, melody, mask, with_value=True)
        t_logp = teacher_logprobs(self.teacher, batch["melody"], chords)
        kl = kl_to_teacher(logp, t_logp)
        fake = batch["chords"].clone()
        fake[:, 1:1 + n] = chords
        terms: dict[str, torch.Tensor] = {}
        if self.rewards is not None:
            terms.update(self.rewards.score(batch["melody"], fake))
        terms.update({f"penalty_{k}": v for k, v in penalties.all_penalties(chords, melody).items()})
        if self.disc is not None:
            terms["adversarial"] = self.disc.adversarial_reward(fake)
        terms = {k: v.float() for k, v in terms.items()}
        values = values.float()
        total = total_reward(terms, self.cfg)
        rewards = -self.cfg.kl_beta * kl
        rewards[:, -1] += total
        return {"chords": chords, "melody": melody, "mask": mask, "logp": logp.gather(-1, chords[..., None])[..., 0],
                "values": values, "rewards": rewards, "kl": kl, "terms": terms, "fake": fake, "real": batch["chords"],
                "entropy": entropy_of(logp)}

    def ppo_step(self, ro: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        adv = gae(ro["rewards"], ro["values"], cfg.gae_lambda)
        returns = adv + ro["values"]
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        factor = lr_factor(self.update, cfg)
        for g in self.actor_opt.param_groups:
            g["lr"] = cfg.actor_lr * factor
        for g in self.critic_opt.param_groups:
            g["lr"] = cfg.critic_lr * factor
        stats: dict[str, list[float]] = {"pg_loss": [], "value_loss": [], "entropy_mb": [], "clipfrac": [],
                                         "approx_kl": []}
        order = rng.permutation(cfg.rollouts)
        for a in range(0, cfg.rollouts, cfg.minibatch):
            mb = torch.as_tensor(order[a:a + cfg.minibatch])
            chords, melody, mask = ro["chords"][mb], ro["melody"][mb], ro["mask"][mb]
            with autocast(CPU):
                logp_all = policy_logprobs(self.policy, chords, melody, mask)
            new_logp = logp_all.gather(-1, chords[..., None])[..., 0]
            ratio = (new_logp - ro["logp"][mb]).exp()
            a_mb = adv[mb]
            pg = torch.max(-a_mb * ratio, -a_mb * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
            entropy = entropy_of(logp_all).mean()
            self.actor_opt.zero_grad(set_to_none=True)
            (pg - cfg.entropy * entropy).backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
            self.actor_opt.step()
            with autocast(CPU):
                _, values = policy_logprobs(self.critic, chords, melody, mask, with_value=True)
            v_loss = 0.5 * (values.float() - returns[mb]).pow(2).mean()
            self.critic_opt.zero_grad(set_to_none=True)
            v_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
            self.critic_opt.step()
            with torch.no_grad():
                stats["pg_loss"].append(pg.item())
                stats["value_loss"].append(v_loss.item())
                stats["entropy_mb"].append(entropy.item())
                stats["clipfrac"].append(((ratio - 1).abs() > cfg.clip).float().mean().item())
                stats["approx_kl"].append(((ratio - 1) - ratio.log()).mean().item())
        return {k: float(np.mean(v)) for k, v in stats.items()}

    def train_discriminator(self, ro: dict[str, torch.Tensor], rng: np.random.Generator) -> float:
        """One D update = one pass over the minibatches (data chords vs rollouts); returns D's accuracy."""
        cfg = self.cfg
        for g in self.disc_opt.param_groups:
            g["lr"] = cfg.d_lr * lr_factor(self.d_updates, cfg, total=max(10, cfg.updates // cfg.d_every),
                                           warmup=max(1, cfg.warmup // cfg.d_every))
        order = rng.permutation(cfg.rollouts)
        correct = []
        for a in range(0, cfg.rollouts, cfg.minibatch):
            mb = torch.as_tensor(order[a:a + cfg.minibatch])
            with autocast(CPU):
                loss = self.disc.loss(ro["real"][mb], ro["fake"][mb], smoothing=cfg.d_smoothing).float()
            self.disc_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.max_grad_norm)
            self.disc_opt.step()
            with torch.no_grad():
                correct.append(torch.cat([self.disc.logits(ro["real"][mb]) > 0,
                                          self.disc.logits(ro["fake"][mb]) <= 0]).float().mean().item())
        self.d_updates += 1
        return float(np.mean(correct))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Harmony and diversity of the current policy on a fixed set of validation melodies."""
        n = self.cfg.frames
        mel = torch.from_numpy(np.stack([w["melody"][1:1 + n] for w in self.val_windows]))
        mel = torch.where(mel == T.PAD, torch.full_like(mel, T.SILENCE), mel)
        mel = torch.where(mel == T.EOS, torch.full_like(mel, T.SILENCE), mel)
        self.policy.eval()
        with autocast(CPU):
            chords = generate_online(self.policy, mel, 1.0, torch.Generator().manual_seed(12345)).numpy()
        self.policy.train()
        pitches = np.where((mel.numpy() >= T.NOTE_HOLD) & (mel.numpy() < T.CHORD_HOLD),
                           (mel.numpy() - T.NOTE_HOLD) % T.N_PITCHES, -1)
        idx = [chord_indices(c) for c in chords]
        harmony = [r for r in (note_in_chord(p, c) for p, c in zip(pitches, idx)) if r is not None]
        onsets = [o >= T.CHORD_ON for o in chords]
        emb = np.stack([D.bigram_embedding(c, o) for c, o in zip(idx, onsets)])
        row = {"val_harmony": float(np.mean(harmony)), "val_vendi": D.vendi_score(emb),
               "val_chord_entropy": D.chord_symbol_entropy(idx)}
        if self.val_embedder is not None:  # the evaluation's own diversity measure (GAPT B.3)
            row["val_vendi_emb"] = D.vendi_score(self.val_embedder(idx, onsets))
        return row

    # --- checkpoints ------------------------------------------------------------------------------------------

    def state(self) -> dict:
        meta = {k: self.init_ckpt[k] for k in ("model_config", "config_name", "mix") if k in self.init_ckpt}
        return {**meta, "kind": "online", "stage": f"rl:{self.system}", "rl_config": asdict(self.cfg),
                "critic": self.critic.state_dict(), "critic_optim": self.critic_opt.state_dict(),
                "disc": self.disc.state_dict() if self.disc else None,
                "disc_optim": self.disc_opt.state_dict() if self.disc_opt else None,
                "d_updates": self.d_updates, "recent_adv": list(self.recent_adv),
                "init_step": self.init_ckpt.get("step"), "recipe": self.init_ckpt.get("recipe")}

    def save(self) -> None:
        save_checkpoint(self.out / "ckpt_last.pt", self.policy, self.actor_opt, self.update, self.state())

    def save_snapshot(self, val: dict[str, float]) -> None:
        """The policy alone at a validation point (``ckpt_u<N>.pt``, a tenth of ``ckpt_last``'s size).

        RL curves are not monotone at this scale: a run can peak and then drift. Snapshots let the shipped
        checkpoint be chosen on the validation curve (``export --checkpoint u<N>``), never on the test split."""
        meta = {k: v for k, v in self.state().items() if k not in ("critic", "critic_optim", "disc", "disc_optim")}
        save_checkpoint(self.out / f"ckpt_u{self.update}.pt", self.policy, None, self.update, {**meta, "val": val})

    def restore(self) -> None:
        ck = load_checkpoint(self.out / "ckpt_last.pt")
        self.policy.load_state_dict(ck["model"])
        self.actor_opt.load_state_dict(ck["optim"])
        self.critic.load_state_dict(ck["critic"])
        self.critic_opt.load_state_dict(ck["critic_optim"])
        if self.disc is not None and ck.get("disc") is not None:
            self.disc.load_state_dict(ck["disc"])
            self.disc_opt.load_state_dict(ck["disc_optim"])
        self.update, self.d_updates, self.recent_adv = ck["step"], ck["d_updates"], list(ck["recent_adv"])


def read_log(log_path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]


def select_snapshot(run: Path, min_vendi_ratio: float = 0.9) -> str:
    """Early stopping on the validation curve, GAPT's own criterion: the snapshot with the best validation harmony
    among those that keep at least ``min_vendi_ratio`` of the MLE point's Vendi (update 0); ``last`` if none does.

    Only the validation split is read, so the test split stays unseen by the choice."""
    val = [r for r in read_log(Path(run) / "log.jsonl") if "val_vendi" in r]
    start = next((r for r in val if r["update"] == 0), None)
    if start is None:
        raise ValueError(f"{run}/log.jsonl: no update-0 validation row to measure diversity against")
    key = "val_vendi_emb" if "val_vendi_emb" in start else "val_vendi"  # the evaluation's embedding where logged
    keep = [r for r in val if r["update"] > 0 and r[key] >= min_vendi_ratio * start[key]
            and (Path(run) / f"ckpt_u{r['update']}.pt").exists()]
    return f"u{max(keep, key=lambda r: r['val_harmony'])['update']}" if keep else "last"


def plot_rl(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_path)
    val = [r for r in rows if "val_harmony" in r]
    rows = [r for r in rows if "kl" in r]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    steps = [r["update"] for r in rows]
    reward_keys = sorted({k for r in rows for k in r if k.startswith("r_")})
    for k in reward_keys:
        axes[0, 0].plot(steps, [r.get(k, np.nan) for r in rows], label=k[2:])
    axes[0, 0].set_title("reward terms (mean per rollout)")
    axes[0, 0].legend(fontsize=7)
    for ax, keys, title in ((axes[0, 1], ["kl"], "KL(pi || teacher) per chord"),
                            (axes[0, 2], ["entropy"], "policy entropy per chord"),
                            (axes[1, 0], ["value_loss", "pg_loss"], "losses"),
                            (axes[1, 2], ["d_updates", "d_accuracy"], "discriminator")):
        for k in keys:
            ax.plot(steps, [r.get(k, np.nan) for r in rows], label=k)
        ax.set_title(title)
        ax.legend(fontsize=7)
    if val:
        ax = axes[1, 1]
        ax.plot([r["update"] for r in val], [r["val_harmony"] for r in val], "o-", color="C0", label="harmony")
        ax.set_ylabel("note-in-chord")
        ax2 = ax.twinx()
        ax2.plot([r["update"] for r in val], [r["val_vendi"] for r in val], "s-", color="C1", label="Vendi (bigrams)")
        emb = [r for r in val if "val_vendi_emb" in r]
        if emb:
            ax2.plot([r["update"] for r in emb], [r["val_vendi_emb"] for r in emb], "^--", color="C2",
                     label="Vendi (contrastive embedding)")
        ax2.set_ylabel("Vendi")
        ax2.legend(fontsize=7, loc="lower right")
        ax.set_title("validation: harmony (o) and diversity (s)")
    for ax in axes.flat:
        ax.set_xlabel("PPO update")
        ax.grid(alpha=0.3)
    fig.suptitle(png.parent.name)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_systems(runs: dict[str, Path], png: Path) -> None:
    """The RL systems side by side over updates: validation harmony and Vendi, KL, entropy, the summed
    coherence reward: the curves the paper's argument is read from (does harmony rise; does diversity hold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(22, 4))
    for name, run in runs.items():
        rows = read_log(Path(run) / "log.jsonl")
        val = [r for r in rows if "val_harmony" in r]
        axes[0].plot([r["update"] for r in val], [r["val_harmony"] for r in val], "o-", label=name)
        axes[1].plot([r["update"] for r in val], [r["val_vendi"] for r in val], "s-", label=name)
        rows = [r for r in rows if "kl" in r]
        steps = [r["update"] for r in rows]
        axes[2].plot(steps, [r["kl"] for r in rows], label=name)
        axes[3].plot(steps, [r["entropy"] for r in rows], label=name)
        coherence = [sum(v for k, v in r.items() if k.startswith("r_rw")) for r in rows]
        k = min(5, len(coherence))
        axes[4].plot(steps[k - 1:], np.convolve(coherence, np.ones(k) / k, mode="valid"), label=name)
    for ax, title in zip(axes, ("validation harmony (note-in-chord)", "validation Vendi", "KL(pi || teacher) per chord",
                                "policy entropy per chord", "coherence reward (sum, 5-update mean)")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PPO update")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def train_rl(cfg: RLConfig, init: Path, teacher: Path, rewards: list[Path], cache: Cache | Path, out: Path,
             system: str = "custom", until: int | None = None, quiet: bool = False) -> dict:
    from tqdm import tqdm

    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr = Trainer(cfg, init, teacher, rewards, cache, out, system)
    log_path = out / "log.jsonl"
    if (out / "ckpt_last.pt").exists():
        tr.restore()
        if log_path.exists():
            keep = [line for line in log_path.read_text().splitlines()
                    if line.strip() and json.loads(line)["update"] <= tr.update]
            log_path.write_text("".join(line + "\n" for line in keep))
    (out / "config.json").write_text(json.dumps({"system": system, "rl_config": asdict(cfg), "init": str(init),
                                                 "teacher": str(teacher), "rewards": [str(r) for r in rewards]},
                                                indent=1))
    stop = min(cfg.updates, until or cfg.updates)
    bar = tqdm(total=cfg.updates, initial=tr.update, desc=f"rl {system}", unit="update", file=sys.stderr,
               disable=quiet, dynamic_ncols=True)
    row: dict = {}
    with open(log_path, "a") as log:
        if tr.update == 0 and not log_path.stat().st_size:  # where the curves start: the MLE policy itself
            log.write(json.dumps({"update": 0, **tr.validate()}) + "\n")
        while tr.update < stop:
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, tr.update])
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + tr.update)
            ro = tr.rollout(tr.draw(rng), gen)
            t_rollout = time.perf_counter() - t0
            stats = tr.ppo_step(ro, rng)
            tr.update += 1
            row = {"update": tr.update, **{f"r_{k}": v.float().mean().item() for k, v in ro["terms"].items()},
                   "kl": ro["kl"].mean().item(), "entropy": ro["entropy"].mean().item(), **stats,
                   "lr_factor": lr_factor(tr.update - 1, cfg)}
            if tr.disc is not None:
                tr.recent_adv.append(row["r_adversarial"])
                if schedule_fires(tr.update, tr.recent_adv, cfg):
                    row["d_accuracy"] = tr.train_discriminator(ro, rng)
                row["d_updates"] = tr.d_updates
            if tr.update % cfg.eval_every == 0 or tr.update == stop:
                val = tr.validate()
                row.update(val)
                tr.save_snapshot(val)
            row["seconds"] = round(time.perf_counter() - t0, 2)
            row["rollout_seconds"] = round(t_rollout, 2)
            log.write(json.dumps(row) + "\n")
            log.flush()
            bar.set_postfix(reward=f"{sum(v for k, v in row.items() if k.startswith('r_')):.2f}",
                            kl=f"{row['kl']:.3f}", s_per_update=f"{row['seconds']:.1f}")
            bar.update()
            if tr.update % cfg.ckpt_every == 0 or tr.update == stop:
                tr.save()
                plot_rl(log_path, out / "curves.png")
    bar.close()
    return row


def with_system(cfg: RLConfig, system: str, **overrides) -> RLConfig:
    if system not in SYSTEMS:
        raise ValueError(f"unknown RL system {system!r}; choose {', '.join(SYSTEMS)}")
    return replace(cfg, **{**SYSTEMS[system], **{k: v for k, v in overrides.items() if v is not None}})
