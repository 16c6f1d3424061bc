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

Resumable to the update: every update draws from a generator seeded by (seed, update). The run loop (log, progress
bar, validation and checkpoint schedule, ``until``) is ``training/loop.py``'s, shared with the other trainers.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import autocast, load_checkpoint, load_model, pick_device, save_checkpoint
from ..data import tokens as T
from ..data.cache import Cache
from ..data.cache import load as load_cache
from ..data.dataset import WindowConfig, WindowDataset
from ..data.sources import TRAINING_SOURCES
from ..evaluation import diversity as D
from ..evaluation.harmony import note_in_chord
from ..generate import CHORD_SLOT, HOLD_OF, chord_indices, generate_online
from ..loop import RunLoop
from ..models.policy import OnlinePolicy
from ..pretrain import DEFAULT_MIX
from . import penalties

CPU = torch.device("cpu")  # the default: on 2 cores the rollout loop is latency-bound; ``--device cuda`` where one is


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
    # On-policy distillation: the actor's loss adds `distill` x a per-chord divergence to the teacher over the full
    # vocabulary at the rollouts' own states, differentiated directly (not through the reward): a dense,
    # low-variance signal at every chord, where the KL-as-reward anchor (kl_beta) reaches the actor only through
    # noisy advantages. Linear schedule from `distill` to `distill * distill_final` over the run.
    distill: float = 0.0
    distill_final: float = 1.0
    # "forward": KL(teacher || pi), whose minimiser without the future melody is the teacher's distribution
    # averaged over the futures; "reverse": KL(pi || teacher), whose minimiser is their geometric mean, which
    # starves chord changes (they differ between futures, holds do not): the policy stops changing chord.
    distill_divergence: str = "forward"
    coherence: bool = True  # reward models + rule penalties through PPO; False: distillation alone (no critic)
    rhythm: float = 0.0  # weight of the harmonic-rhythm rule term (penalties.harmonic_rhythm)
    critic_warmup: int = 0  # the first updates train the critic only: advantages from a zero critic are noise
    adv_norm: bool = True  # per-batch advantage normalisation
    eval_every: int = 10
    eval_songs: int = 64
    ckpt_every: int = 5
    seed: int = 0


CONFIGS: dict[str, RLConfig] = {
    # GAPT C.5 / the reference code's gapt.yml (the code's learning rates: 5e-6 / 9e-5).
    "paper": RLConfig(d_config="paper"),
    # The same schedule shape scaled to a 2-core CPU: 100 updates of 64 rollouts, a higher actor rate, D trained every
    # update at 3e-5, and the teacher's dense signal (distill 2, forward KL) with the harmonic-rhythm term: why each
    # of these, with the runs that chose them, is in models/README.md ("RL at CPU scale").
    "cpu": RLConfig(updates=100, rollouts=64, minibatch=16, warmup=10, actor_lr=1e-4, critic_lr=3e-4, d_every=1,
                    d_lr=3e-5, d_phase1=100, eval_every=10, eval_songs=48, adv_weight=1.0, distill=2.0, rhythm=1.0,
                    critic_warmup=5),
    "smoke": RLConfig(updates=3, rollouts=4, minibatch=2, frames=32, warmup=1, d_every=1, d_phase1=2, eval_every=2,
                      eval_songs=4, ckpt_every=1, d_config="tiny"),
}
SYSTEMS: dict[str, dict] = {
    "realchords": {"entropy": 0.0, "adversarial": False},
    "gapt-no-adv": {"entropy": 0.01, "adversarial": False},
    "gapt": {"entropy": 0.01, "adversarial": True},
    # the teacher's dense signal alone: no reward models, no critic, no policy gradient
    "distill": {"entropy": 0.0, "adversarial": False, "coherence": False, "distill": 1.0},
}


def schedule_fires(update: int, recent_adv: list[float], cfg: RLConfig) -> bool:
    """GAPT Algorithm 1: train D after update ``update`` (1-based)?"""
    if update <= cfg.d_phase1:
        return update == 1 or update % cfg.d_every == 0
    return len(recent_adv) >= cfg.d_window and float(np.mean(recent_adv[-cfg.d_window:])) > cfg.d_threshold


def distill_weight(update: int, cfg: RLConfig) -> float:
    """The distillation weight at ``update`` (0-based): linear from ``distill`` to ``distill * distill_final``."""
    progress = min(1.0, update / max(1, cfg.updates - 1))
    return cfg.distill * (1.0 + (cfg.distill_final - 1.0) * progress)


def lr_factor(update: int, cfg: RLConfig, total: int | None = None, warmup: int | None = None) -> float:
    total, warmup = total or cfg.updates, cfg.warmup if warmup is None else warmup
    if update < warmup:
        return (update + 1) / warmup
    progress = min(1.0, (update - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def chord_masks(chords: torch.Tensor) -> torch.Tensor:
    """[B, T, V] the grammar's allowed tokens at every chord slot given the chord before it."""
    b, n = chords.shape
    mask = CHORD_SLOT.to(chords.device).expand(b, n, -1).clone()
    hold = HOLD_OF.to(chords.device)[chords[:, :-1]]  # the hold that may follow each chord
    rows, cols = torch.nonzero(hold >= 0, as_tuple=True)
    mask[rows, cols + 1, hold[rows, cols]] = True
    return mask


def interleaved(chords: torch.Tensor, melody: torch.Tensor) -> torch.Tensor:
    """[BOS, c1, m1, ..., cT, mT]; the model's input is all but the last token, chord t is predicted at 2t."""
    seq = torch.stack([chords, melody], 2).flatten(1)
    return torch.cat([torch.full((chords.shape[0], 1), T.BOS, dtype=torch.long, device=seq.device), seq], 1)


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
    dec_in = torch.cat([torch.full((chords.shape[0], 1), T.BOS, dtype=torch.long, device=chords.device),
                        chords[:, :-1]], 1)
    logits, _ = teacher(melody_window, dec_in)
    return torch.log_softmax(logits.float(), dim=-1)


def kl_to_teacher(logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary KL(pi || teacher) per position from log-probs [..., V] (tokens pi cannot pick add 0).

    Differentiable in ``logp``: the masked tokens (-inf) are kept out of the product instead of patched after it,
    so no 0 * inf reaches the backward pass."""
    allowed = torch.isfinite(logp)
    diff = torch.where(allowed, logp - teacher_logp, torch.zeros_like(logp))
    return (logp.exp() * diff).sum(-1)


def teacher_kl_to_policy(logp: torch.Tensor, teacher_logp: torch.Tensor) -> torch.Tensor:
    """Forward KL(teacher || pi) per position, the teacher renormalised over the tokens pi may pick (the grammar
    mask, read off pi's -inf); differentiable in ``logp``."""
    allowed = torch.isfinite(logp)
    t = torch.log_softmax(teacher_logp.masked_fill(~allowed, float("-inf")), dim=-1)
    diff = torch.where(allowed, t - logp, torch.zeros_like(logp))
    return (t.exp() * diff).sum(-1)


def distill_loss(logp: torch.Tensor, teacher_logp: torch.Tensor, divergence: str) -> torch.Tensor:
    if divergence == "forward":
        return teacher_kl_to_policy(logp, teacher_logp)
    if divergence == "reverse":
        return kl_to_teacher(logp, teacher_logp)
    raise ValueError(f"distill_divergence {divergence!r}: choose forward or reverse")


def entropy_of(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp.nan_to_num(0.0)).sum(-1)


def total_reward(terms: dict[str, torch.Tensor], cfg: RLConfig) -> torch.Tensor:
    """R = R_coh + R_rules + gamma R_adv per rollout; the terms stay unweighted in the log (the D schedule reads
    the raw adversarial reward)."""
    return torch.stack([v * (cfg.adv_weight if k == "adversarial" else 1.0) for k, v in terms.items()]).sum(0)


def gae(rewards: torch.Tensor, values: torch.Tensor, lam: float, gamma: float = 1.0) -> torch.Tensor:
    """Advantages over chord positions; the episode ends after the last chord (bootstrap value 0)."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv


class Trainer:
    """Holds the models, optimisers and schedule state of one RL run."""

    def __init__(self, cfg: RLConfig, init: Path, teacher: Path, rewards: list[Path], cache: Cache, out: Path,
                 system: str, device: torch.device = CPU) -> None:
        from ..models.rewards import ChordDiscriminator, RewardEnsemble
        from ..models.transformer import preset

        self.cfg, self.out, self.system, self.device = cfg, Path(out), system, torch.device(device)
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
        for model in (self.policy, self.critic, self.teacher, self.rewards):
            if model is not None:
                model.to(self.device)
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
            self.disc = ChordDiscriminator(preset(cfg.d_config)).to(self.device)
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
        mel = self._val_rows("melody")
        self.val_ended = (mel == T.PAD) | (mel == T.EOS)  # [B, T] frames past a song's end (padded there)

    # --- one update -----------------------------------------------------------------------------------------

    def draw(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        items = rng.choice(len(self.train_ds), size=self.cfg.rollouts, p=self.weights)
        wins = [self.train_ds.window(int(i), rng) for i in items]
        return {k: torch.from_numpy(np.stack([w[k] for w in wins])) for k in ("melody", "chords")}

    @torch.no_grad()
    def rollout(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        with autocast(self.device):  # bf16 matmuls where the CPU has them (~2x); log-probs and rewards are fp32
            return self._rollout({k: v.to(self.device) for k, v in batch.items()}, gen)

    def _rollout(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
        cfg, n = self.cfg, self.cfg.frames
        t0 = time.perf_counter()
        melody = batch["melody"][:, 1:1 + n]
        self.policy.eval()
        chords = generate_online(self.policy, melody, cfg.temperature, gen)
        self.policy.train()
        if self.device.type == "cuda":  # kernels run asynchronously: time the work, not its launch
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        mask = chord_masks(chords)
        logp = policy_logprobs(self.policy, chords, melody, mask)
        t_logp = teacher_logprobs(self.teacher, batch["melody"], chords)
        kl = kl_to_teacher(logp, t_logp)
        fake = batch["chords"].clone()
        fake[:, 1:1 + n] = chords
        terms: dict[str, torch.Tensor] = {}
        values = torch.zeros(chords.shape, dtype=torch.float32, device=self.device)
        if cfg.coherence:
            _, values = policy_logprobs(self.critic, chords, melody, mask, with_value=True)
            if self.rewards is not None:
                terms.update(self.rewards.score(batch["melody"], fake))
            # the rule terms are integer bookkeeping over [B, T]: on the CPU wherever the models run
            cpu_chords, cpu_melody = chords.cpu(), melody.cpu()
            terms.update({f"penalty_{k}": v.to(self.device)
                          for k, v in penalties.all_penalties(cpu_chords, cpu_melody).items()})
            if cfg.rhythm:
                rhythm = penalties.harmonic_rhythm(cpu_chords, batch["chords"][:, 1:1 + n].cpu())
                terms["rhythm"] = cfg.rhythm * rhythm.to(self.device)
            if self.disc is not None:
                terms["adversarial"] = self.disc.adversarial_reward(fake)
        terms = {k: v.float() for k, v in terms.items()}
        rewards = -cfg.kl_beta * kl
        if terms:
            rewards[:, -1] += total_reward(terms, cfg)
        return {"chords": chords, "melody": melody, "mask": mask, "logp": logp.gather(-1, chords[..., None])[..., 0],
                "teacher_logp": t_logp, "values": values.float(), "rewards": rewards, "kl": kl, "terms": terms,
                "fake": fake, "real": batch["chords"], "entropy": entropy_of(logp),
                "seconds": {"generate": t1 - t0, "score": time.perf_counter() - t1}}

    def ppo_step(self, ro: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, float]:
        """One pass over the rollouts in minibatches: the clipped policy gradient (when ``coherence``), the
        distillation loss and the entropy bonus for the actor, value regression for the critic."""
        cfg = self.cfg
        adv = gae(ro["rewards"], ro["values"], cfg.gae_lambda)
        returns = adv + ro["values"]
        if cfg.adv_norm:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        factor = lr_factor(self.update, cfg)
        for g in self.actor_opt.param_groups:
            g["lr"] = cfg.actor_lr * factor
        for g in self.critic_opt.param_groups:
            g["lr"] = cfg.critic_lr * factor
        w_distill = distill_weight(self.update, cfg)
        train_actor = self.update >= cfg.critic_warmup or not cfg.coherence
        stats: dict[str, list[float]] = {k: [] for k in ("pg_loss", "distill_loss", "value_loss", "entropy_mb",
                                                         "clipfrac", "approx_kl")}
        order = rng.permutation(cfg.rollouts)
        for a in range(0, cfg.rollouts, cfg.minibatch):
            mb = torch.as_tensor(order[a:a + cfg.minibatch], device=self.device)
            chords, melody, mask = ro["chords"][mb], ro["melody"][mb], ro["mask"][mb]
            if train_actor:
                with autocast(self.device):
                    logp_all = policy_logprobs(self.policy, chords, melody, mask)
                new_logp = logp_all.gather(-1, chords[..., None])[..., 0]
                ratio = (new_logp - ro["logp"][mb]).exp()
                a_mb = adv[mb]
                pg = torch.max(-a_mb * ratio, -a_mb * ratio.clamp(1 - cfg.clip, 1 + cfg.clip)).mean()
                entropy = entropy_of(logp_all).mean()
                distill = distill_loss(logp_all, ro["teacher_logp"][mb], cfg.distill_divergence).mean()
                loss = (pg if cfg.coherence else 0.0) + w_distill * distill - cfg.entropy * entropy
                self.actor_opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.actor_opt.step()
                with torch.no_grad():
                    if cfg.coherence:
                        stats["pg_loss"].append(pg.item())
                    stats["distill_loss"].append(distill.item())
                    stats["entropy_mb"].append(entropy.item())
                    stats["clipfrac"].append(((ratio - 1).abs() > cfg.clip).float().mean().item())
                    stats["approx_kl"].append(((ratio - 1) - ratio.log()).mean().item())
            if cfg.coherence:
                with autocast(self.device):
                    _, values = policy_logprobs(self.critic, chords, melody, mask, with_value=True)
                v_loss = 0.5 * (values.float() - returns[mb]).pow(2).mean()
                self.critic_opt.zero_grad(set_to_none=True)
                v_loss.backward()
                torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.critic_opt.step()
                stats["value_loss"].append(v_loss.item())
        return {k: float(np.mean(v)) for k, v in stats.items() if v} | {"distill_weight": w_distill}

    def train_discriminator(self, ro: dict[str, torch.Tensor], rng: np.random.Generator) -> float:
        """One D update = one pass over the minibatches (data chords vs rollouts); returns D's accuracy."""
        cfg = self.cfg
        for g in self.disc_opt.param_groups:
            g["lr"] = cfg.d_lr * lr_factor(self.d_updates, cfg, total=max(10, cfg.updates // cfg.d_every),
                                           warmup=max(1, cfg.warmup // cfg.d_every))
        order = rng.permutation(cfg.rollouts)
        correct = []
        for a in range(0, cfg.rollouts, cfg.minibatch):
            mb = torch.as_tensor(order[a:a + cfg.minibatch], device=self.device)
            with autocast(self.device):  # accuracy before the step, on the logits the loss is computed from
                loss, accuracy = self.disc.loss_and_accuracy(ro["real"][mb], ro["fake"][mb], smoothing=cfg.d_smoothing)
            self.disc_opt.zero_grad(set_to_none=True)
            loss.float().backward()
            torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.max_grad_norm)
            self.disc_opt.step()
            correct.append(accuracy)
        self.d_updates += 1
        return float(np.mean(correct))

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Harmony and diversity of the current policy on a fixed set of validation melodies."""
        mel = torch.from_numpy(np.where(self.val_ended, T.SILENCE, self._val_rows("melody")))
        self.policy.eval()
        with autocast(self.device):
            gen = torch.Generator(self.device).manual_seed(12345)
            chords = generate_online(self.policy, mel.to(self.device), 1.0, gen).cpu().numpy()
        self.policy.train()
        pitches = np.where((mel.numpy() >= T.NOTE_HOLD) & (mel.numpy() < T.CHORD_HOLD),
                           (mel.numpy() - T.NOTE_HOLD) % T.N_PITCHES, -1)
        idx = [chord_indices(c) for c in chords]
        harmony = [r for r in (note_in_chord(p, c) for p, c in zip(pitches, idx)) if r is not None]
        return {"val_harmony": float(np.mean(harmony)), **self._chord_figures(chords, "val")}

    def _val_rows(self, key: str) -> np.ndarray:
        return np.stack([w[key][1:1 + self.cfg.frames] for w in self.val_windows])


    def _chord_figures(self, chords: np.ndarray, prefix: str) -> dict[str, float]:
        """Diversity and harmonic rhythm of chord tokens [B, T] over the songs' own frames (what the policy plays
        past a song's end is dropped): read beside harmony, for the policy and the truth."""
        ended = self.val_ended
        chords = np.where(ended, T.SILENCE, chords)
        idx = [chord_indices(c) for c in chords]
        onsets = [o >= T.CHORD_ON for o in chords]
        emb = np.stack([D.bigram_embedding(c, o) for c, o in zip(idx, onsets)])
        n_changes, offbeat = penalties.changes_and_offbeat(torch.as_tensor(chords))
        row = {f"{prefix}_vendi": D.vendi_score(emb), f"{prefix}_chord_entropy": D.chord_symbol_entropy(idx),
               f"{prefix}_changes_per_bar": float(n_changes.sum() / ((~ended).sum() / 16)),
               f"{prefix}_offbeat": float(offbeat.mean())}
        if self.val_embedder is not None:  # the evaluation's own diversity measure (GAPT B.3)
            row[f"{prefix}_vendi_emb"] = D.vendi_score(self.val_embedder(idx, onsets))
        return row

    @property
    def truth(self) -> dict[str, float]:
        """The same figures for the validation windows' real chords: what the policy's are read against."""
        return self._chord_figures(self._val_rows("chords"), "truth")

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


def select_snapshot(run: Path, min_vendi_ratio: float = 0.9, rhythm_tolerance: float = 0.3) -> str:
    """Early stopping on the validation curve: the snapshot with the best validation harmony among those that keep
    ``min_vendi_ratio`` of the reference's Vendi and, where the log has them, chord changes per bar within
    ``rhythm_tolerance`` of the validation songs' own; ``last`` if none does.

    The reference is the validation songs' real chords where the log has them (GAPT's bar: diversity near the
    data's), else the MLE point (update 0), as in runs logged before the truth was. Only the validation split is
    read, so the test split stays unseen by the choice."""
    val = [r for r in read_log(Path(run) / "log.jsonl") if "val_vendi" in r]
    start = next((r for r in val if r["update"] == 0), None)
    if start is None:
        raise ValueError(f"{run}/log.jsonl: no update-0 validation row to measure diversity against")
    key = "val_vendi_emb" if "val_vendi_emb" in start else "val_vendi"  # the evaluation's embedding where logged
    reference = start.get(key.replace("val_", "truth_"), start[key])
    truth_cpb = start.get("truth_changes_per_bar")

    def keeps(r: dict) -> bool:
        rhythm_ok = truth_cpb is None or abs(r["val_changes_per_bar"] / truth_cpb - 1) <= rhythm_tolerance
        return r[key] >= min_vendi_ratio * reference and rhythm_ok

    keep = [r for r in val if r["update"] > 0 and keeps(r) and (Path(run) / f"ckpt_u{r['update']}.pt").exists()]
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
    """The RL systems side by side over updates: the curves the paper's argument is read from (does harmony rise and
    stay up; does diversity hold against the data's; does the harmonic rhythm stay the songs'; is D informative).
    Diversity and rhythm are drawn beside the validation songs' own figures (dashed, from the update-0 row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("val_harmony", "validation harmony (note-in-chord)", None),
              ("val_vendi_emb", "validation Vendi (contrastive embedding)", "truth_vendi_emb"),
              ("val_chord_entropy", "validation chord entropy (bits)", "truth_chord_entropy"),
              ("val_changes_per_bar", "validation chord changes per bar", "truth_changes_per_bar"),
              ("kl", "KL(pi || teacher) per chord", None), ("entropy", "policy entropy per chord (nats)", None),
              ("coherence", "coherence reward (sum, 5-update mean)", None), ("d_accuracy", "discriminator accuracy", None)]
    fig, axes = plt.subplots(2, 4, figsize=(22, 8))
    for i, (name, run) in enumerate(runs.items()):
        color = f"C{i}"
        rows = read_log(Path(run) / "log.jsonl")
        for ax, (key, title, truth_key) in zip(axes.flat, panels):
            if key == "coherence":
                pts = [(r["update"], sum(v for k, v in r.items() if k.startswith("r_rw"))) for r in rows if "kl" in r]
                k = min(5, len(pts))
                if pts:
                    ax.plot([u for u, _ in pts][k - 1:], np.convolve([v for _, v in pts], np.ones(k) / k, "valid"),
                            color=color, label=name)
            else:
                pts = [(r["update"], r[key]) for r in rows if key in r]
                if pts:
                    ax.plot(*zip(*pts), "o-" if key.startswith("val_") else "-", ms=3, color=color, label=name)
            truth = next((r[truth_key] for r in rows if truth_key and truth_key in r), None)
            if truth is not None:
                ax.axhline(truth, color=color, ls="--", lw=0.8)
            ax.set_title(title, fontsize=10)
    for ax in axes.flat:
        ax.set_xlabel("PPO update")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("RL systems (dashed: the validation songs' own chords)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def train_rl(cfg: RLConfig, init: Path, teacher: Path, rewards: list[Path], cache: Cache | Path, out: Path,
             system: str = "custom", until: int | None = None, quiet: bool = False,
             device: str | torch.device = CPU) -> dict:
    """Train (or resume) one RL run in ``out``; returns the last log row. ``device``: where the models run (rollouts
    on a GPU are drawn from its own generator, so a run is reproducible per device, not across devices)."""
    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tr = Trainer(cfg, init, teacher, rewards, cache, out, system, pick_device(str(device)))
    if (out / "ckpt_last.pt").exists():
        tr.restore()
    (out / "config.json").write_text(json.dumps({"system": system, "rl_config": asdict(cfg), "init": str(init),
                                                 "teacher": str(teacher), "rewards": [str(r) for r in rewards]},
                                                indent=1))
    log_path = out / "log.jsonl"
    if tr.update == 0 and not (log_path.exists() and log_path.read_text().strip()):
        with open(log_path, "a") as log:  # where the curves start: the MLE policy itself
            log.write(json.dumps({"update": 0, **tr.validate(), **tr.truth}) + "\n")
    clock: dict = {}  # this update's start and its phases' seconds, validation included

    def step(update: int) -> dict:
        clock.update(t0=time.perf_counter(), seconds={})
        rng = np.random.default_rng([cfg.seed, update])
        gen = torch.Generator(tr.device).manual_seed(cfg.seed * 1_000_003 + update)
        ro = tr.rollout(tr.draw(rng), gen)
        t1 = time.perf_counter()
        stats = tr.ppo_step(ro, rng)
        clock["seconds"].update(ro["seconds"], ppo=time.perf_counter() - t1)
        tr.update += 1
        row = {**{f"r_{k}": v.float().mean().item() for k, v in ro["terms"].items()},
               "kl": ro["kl"].mean().item(), "entropy": ro["entropy"].mean().item(), **stats,
               "lr_factor": lr_factor(update, cfg)}
        if tr.disc is not None:
            tr.recent_adv.append(row["r_adversarial"])
            if schedule_fires(tr.update, tr.recent_adv, cfg):
                t2 = time.perf_counter()
                row["d_accuracy"] = tr.train_discriminator(ro, rng)
                clock["seconds"]["discriminator"] = time.perf_counter() - t2
            row["d_updates"] = tr.d_updates
        return row

    def validate(n: int) -> dict:
        t = time.perf_counter()
        val = tr.validate()
        tr.save_snapshot(val)
        clock["seconds"]["validate"] = time.perf_counter() - t
        return val

    def timed(row: dict) -> None:
        row["seconds"] = round(time.perf_counter() - clock["t0"], 2)
        row.update({f"seconds_{k}": round(v, 2) for k, v in clock["seconds"].items()})

    return RunLoop(
        out=out, name=f"rl {system}", total=cfg.updates, start=tr.update, step_fn=step, eval_fn=validate,
        save_fn=lambda n: tr.save(), plot_fn=lambda: plot_rl(log_path, out / "curves.png"), on_row=timed,
        postfix=lambda row: {"reward": f"{sum(v for k, v in row.items() if k.startswith('r_')):.2f}",
                             "kl": f"{row['kl']:.3f}", "s_per_update": f"{row['seconds']:.1f}"},
        eval_every=cfg.eval_every, ckpt_every=cfg.ckpt_every, key="update", unit="update",
        eval_in_row=True, eval_at_stop=True,
    ).run(until=until, quiet=quiet)


def with_system(cfg: RLConfig, system: str, **overrides) -> RLConfig:
    if system not in SYSTEMS:
        raise ValueError(f"unknown RL system {system!r}; choose {', '.join(SYSTEMS)}")
    return replace(cfg, **{**SYSTEMS[system], **{k: v for k, v in overrides.items() if v is not None}})
