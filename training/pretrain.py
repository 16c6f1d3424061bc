"""MLE pretraining of the online policy, the offline teacher and the melody agent (the loop: ``loop.py``).

    comper-train pretrain --model online --config small --recipe cpu --cache cache/data --out runs/online-small

Resumable to the step: every batch is drawn from a generator seeded by (seed, step, rank), and dropout is
seeded by the step, so a run killed and resumed from its checkpoint sees the same batches it would have seen and
its loss curve simply continues. Checkpoints hold only tensors and plain values and load with
``weights_only=True``. Several GPUs: ``torchrun --nproc_per_node N -m training.cli pretrain ...`` (DDP; each
rank draws its own batches).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from .checkpoints import BestCheckpoint, autocast, build_model, load_checkpoint, pick_device, save_checkpoint
from .data import tokens as T
from .data.cache import Cache
from .data.cache import load as load_cache
from .data.dataset import WindowConfig, WindowDataset
from .loop import RunLoop, guarded_step
from .models.transformer import preset

MODELS = {"online": "chord_first", "melody": "melody_first", "offline": "separate"}
# Mini-batch mixing over our training sources (the paper's 60/30/10 over Hooktheory/POP909/Nottingham, with
# Chord-Melody-Dataset standing in for the missing Hooktheory chords, weighted by size).
DEFAULT_MIX = {"pop909": 0.5, "nottingham": 0.25, "chord_melody_dataset": 0.25}


@dataclass(frozen=True)
class Recipe:
    """Optimisation settings; named presets below."""

    batch_size: int = 64
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 500
    max_steps: int = 11000
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 500
    eval_batches: int = 16
    ckpt_every: int = 250
    log_every: int = 10
    seed: int = 0


RECIPES: dict[str, Recipe] = {
    # The papers' setting (GAPT C.1: batch 64, lr 1e-4, ~11k online / 13k offline steps), for a GPU.
    "paper": Recipe(),
    # What a 2-core CPU finishes in about 80 minutes per model (online and offline side by side, one thread
    # each, bf16 where the CPU has it): the `small` model, a higher peak lr, 1200 steps of 32 windows (~20M
    # tokens, ~6 epochs of the chord data before transposition). The offline teacher's step costs ~1.6x the
    # online one's; the shipped teacher used `--steps 900`.
    "cpu": Recipe(batch_size=32, lr=1e-3, warmup_steps=100, max_steps=1200, eval_every=100, eval_batches=8,
                  ckpt_every=50),
    # Seconds: tests and smoke runs.
    "smoke": Recipe(batch_size=4, lr=1e-3, warmup_steps=2, max_steps=6, eval_every=3, eval_batches=2,
                    ckpt_every=2, log_every=1),
}


def lr_at(step: int, r: Recipe) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio`` of the peak."""
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps
    progress = min(1.0, (step - r.warmup_steps) / max(1, r.max_steps - r.warmup_steps))
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def draw_batch(ds: WindowDataset, weights: np.ndarray, batch_size: int, rng: np.random.Generator,
               device: torch.device) -> dict[str, torch.Tensor]:
    items = rng.choice(len(ds), size=batch_size, p=weights)
    wins = [ds.window(int(i), rng) for i in items]
    return {k: torch.from_numpy(np.stack([w[k] for w in wins])).to(device) for k in wins[0] if k != "length"}


def token_losses(kind: str, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy on every target token (PAD ignored), and separately on chord and melody targets."""
    if kind == "offline":
        chords = batch["chords"]
        logits, _ = model(batch["melody"], chords[:, :-1])
        targets = chords[:, 1:]
        chord_slot = torch.ones_like(targets, dtype=torch.bool)
    else:
        seq = batch["tokens"]
        logits, _ = model(seq[:, :-1])
        targets = seq[:, 1:]
        # Target j is sequence position j + 1: with chord first, chords sit at odd positions (even j).
        even = (torch.arange(targets.shape[1], device=targets.device) % 2 == 0).expand_as(targets)
        chord_slot = even if kind == "online" else ~even
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none",
                         ignore_index=T.PAD).view_as(targets)
    real = targets != T.PAD
    out = {"loss": ce[real].mean()}
    for name, sel in (("chord", real & chord_slot), ("melody", real & ~chord_slot)):
        if sel.any():
            out[name] = ce[sel].mean()
    return out


@torch.no_grad()
def evaluate(kind: str, model: torch.nn.Module, ds: WindowDataset, r: Recipe, device: torch.device) -> dict:
    """Validation loss on a fixed set of tiled, untransposed windows (the same every time)."""
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n = min(len(ds), r.eval_batches * r.batch_size)
    idx = np.linspace(0, len(ds) - 1, n).astype(int)
    for a in range(0, n, r.batch_size):
        wins = [ds.window(int(i), None) for i in idx[a:a + r.batch_size]]
        batch = {k: torch.from_numpy(np.stack([w[k] for w in wins])).to(device) for k in wins[0] if k != "length"}
        with autocast(device):
            for name, v in token_losses(kind, model, batch).items():
                sums[name] = sums.get(name, 0.0) + float(v) * len(wins)
                counts[name] = counts.get(name, 0) + len(wins)
    model.train()
    return {f"val_{k}": sums[k] / counts[k] for k in sums}


def plot_curves(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if train:
        steps = np.array([r["step"] for r in train])
        loss = np.array([r["loss"] for r in train])
        ax.plot(steps, loss, alpha=0.3, color="C0", label="train")
        k = max(1, len(loss) // 50)
        if len(loss) > k:
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color="C0", label="train (smoothed)")
    for key, color in (("val_loss", "C1"), ("val_chord", "C2"), ("val_melody", "C3")):
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax.plot(*zip(*pts), "o-", color=color, label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(png.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def pretrain(kind: str, config: str, cache: Cache | Path, out: Path, recipe: Recipe,
             mix: dict[str, float] | None = None, device: str | None = None, quiet: bool = False,
             until: int | None = None) -> dict:
    """Train (or resume) one model; returns the last validation figures.

    ``until``: stop (with a checkpoint) after this step, keeping the recipe's schedule, so a long run can be
    trained in pieces across sessions and resumed with the same command.
    """
    if kind not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}")
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = 0
    if ddp:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dev = pick_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    mix = mix or DEFAULT_MIX
    wcfg = WindowConfig(order=MODELS[kind])
    train_ds = WindowDataset(cache, "train", tuple(mix), wcfg)
    val_ds = WindowDataset(cache, "valid", tuple(mix), wcfg, augment=False)
    weights = train_ds.mixing_weights(mix).numpy()
    weights /= weights.sum()

    mcfg = preset(config, cross_rotary=True) if kind == "offline" else preset(config)
    torch.manual_seed(recipe.seed)
    model = build_model(kind, mcfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    meta = {"kind": kind, "config_name": config, "model_config": asdict(mcfg), "recipe": asdict(recipe),
            "mix": mix, "cache": str(cache.path), "token_vocab": T.VOCAB_SIZE}
    last, best = out / "ckpt_last.pt", BestCheckpoint(out / "ckpt_best.pt")
    start = 0
    if last.exists():
        ckpt = load_checkpoint(last)
        if ckpt["kind"] != kind or ckpt["model_config"] != asdict(mcfg):
            raise ValueError(f"{last}: holds a {ckpt['kind']} {ckpt['config_name']} run, not {kind} {config}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        start, best.value = ckpt["step"], ckpt.get("best_val", math.inf)
    train_model = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    model.train()
    tokens_seen, t0 = 0, time.time()

    def step(i: int) -> dict:
        nonlocal tokens_seen
        rng = np.random.default_rng([recipe.seed, i, rank])  # each rank draws its own batches
        torch.manual_seed(recipe.seed * 1_000_003 + i)
        batch = draw_batch(train_ds, weights, recipe.batch_size, rng, dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(i, recipe)
        with autocast(dev):
            losses = token_losses(kind, train_model, batch)
        gnorm = guarded_step(losses["loss"], model, opt, recipe.grad_clip, i, last)
        tokens_seen += int((next(iter(batch.values())) != T.PAD).sum())
        rate = tokens_seen / max(time.time() - t0, 1e-9)
        return {"lr": lr_at(i, recipe), "grad_norm": gnorm, "tokens_per_s": round(rate),
                **{k: v.item() for k, v in losses.items()}}

    result = RunLoop(
        out=out, name=f"{kind} {config}", total=recipe.max_steps, start=start, step_fn=step,
        eval_fn=lambda n: evaluate(kind, model, val_ds, recipe, dev), on_eval=lambda n, val: best.offer(n, val, train_model, opt, meta),
        save_fn=lambda n: save_checkpoint(last, train_model, opt, n, best.meta(meta)),
        plot_fn=lambda: plot_curves(out / "log.jsonl", out / "loss.png"),
        postfix=lambda row: {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.1e}", "tok_s": f"{row['tokens_per_s']:,}"},
        eval_every=recipe.eval_every, ckpt_every=recipe.ckpt_every, log_every=recipe.log_every, main=rank == 0,
    ).run(until=until, quiet=quiet)
    if ddp:
        dist.destroy_process_group()
    return result


def with_overrides(recipe: Recipe, **overrides) -> Recipe:
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
