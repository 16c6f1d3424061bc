"""Training of the coherence reward models (contrastive and discriminative, full or rhythm-only).

    comper-train rewards --kind contrastive --config small --recipe cpu --seed 42 --cache cache/data \
        --out runs/contrastive-small-s42

The run loop is ``loop.py``'s, as ``pretrain.py``'s is: every batch is drawn from a generator seeded by (seed, step)
and dropout and the discriminative negatives are seeded by the step, so a killed run resumed from ``ckpt_last.pt``
sees the batches it would have seen; checkpoints hold only tensors and plain values (``weights_only=True``);
``log.jsonl`` and ``loss.png`` hold the curves. At every eval step the valid split is scored, and the best checkpoint
(by validation loss) is kept. At the end the best checkpoint is scored on the test split; the figures go into
``metrics.json`` and into both checkpoints' metadata (key ``test``):

- contrastive: retrieval over a pool of ``eval_pool`` test windows (512 unless overridden; the pool actually used is
  reported as ``pool_size``; fewer when the split holds fewer windows), melody->chords (``m2c_``) and chords->melody
  (``c2m_``): recall@1/5/10 and mAP@10 (one relevant item per query, so AP = 1 / rank when rank <= 10, else 0);
  ties count against the query.
- discriminative: each pool window's real pair (label 1) and its chords with a deranged melody (label 0), P(real) >=
  0.5 read as "real": precision, recall, F1 (and accuracy).

One process (CPU or one GPU): InfoNCE wants the whole batch on one device, and these models are small.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import BestCheckpoint, autocast, load_checkpoint, pick_device, save_checkpoint
from .data import tokens as T
from .data.cache import Cache
from .data.cache import load as load_cache
from .data.dataset import WindowConfig, WindowDataset
from .loop import RunLoop, guarded_step, stop_step
from .models.rewards import ContrastiveReward, build_reward, derangement, info_nce
from .models.transformer import ModelConfig, preset
from .pretrain import DEFAULT_MIX, Recipe, draw_batch, lr_at, plot_curves

KINDS = ("contrastive", "discriminative")
# The papers' reward models have 6 layers (GAPT C.2); our `paper` preset has 8 (the policy's). Heads stay 8 at
# width 512 (head dim 64, as in the reference's x-transformers; 6 heads would not divide 512).
CONFIG_OVERRIDES = {"paper": {"n_layer": 6}}


@dataclass(frozen=True)
class RewardRecipe(Recipe):
    """pretrain's Recipe plus the evaluation pool. ``batch_size`` counts real pairs: the discriminative loss adds
    as many shuffled negatives (the reference's "128" = 64 real + 64 shuffled)."""

    eval_pool: int = 512  # windows scored at eval steps (valid) and at the end (test)


RECIPES: dict[str, dict[str, RewardRecipe]] = {
    "contrastive": {
        # GAPT C.2: Adam, lr 1e-4, batch 196, 8,000 steps (rhythm-only: 2,500, see recipe_for); schedule unstated:
        # a short warmup, then constant.
        "paper": RewardRecipe(batch_size=196, lr=1e-4, min_lr_ratio=1.0, warmup_steps=100, max_steps=8000,
                              weight_decay=0.0, betas=(0.9, 0.999), eval_every=500, ckpt_every=250),
        # A 2-core CPU, `small` config: 64 x 2 windows of 258 tokens a step (~33k tokens, ~8 s at the ~4k tokens/s
        # a `small` model trains at on this CPU), 200 steps: about 30 minutes with the evaluations (measured: 16 s a
        # step with one thread while both cores were busy with other training).
        "cpu": RewardRecipe(batch_size=64, lr=5e-4, warmup_steps=20, max_steps=200, weight_decay=0.0, eval_every=50,
                            ckpt_every=25, eval_pool=256),
        "smoke": RewardRecipe(batch_size=4, lr=1e-3, warmup_steps=2, max_steps=6, weight_decay=0.0, eval_every=3,
                              ckpt_every=2, log_every=1, eval_pool=16),
    },
    "discriminative": {
        # GAPT C.2: Adam, lr 1e-4, batch 128 = 64 real + 64 shuffled, 3,000 steps (rhythm-only: 32 + 32).
        "paper": RewardRecipe(batch_size=64, lr=1e-4, min_lr_ratio=1.0, warmup_steps=100, max_steps=3000,
                              weight_decay=0.0, betas=(0.9, 0.999), eval_every=500, ckpt_every=250),
        # 32 real + 32 shuffled pairs of 516 tokens a step (~33k tokens), 200 steps: about 30 CPU minutes (measured:
        # 16 s a step with one thread while both cores were busy with other training).
        "cpu": RewardRecipe(batch_size=32, lr=5e-4, warmup_steps=20, max_steps=200, weight_decay=0.0, eval_every=50,
                            ckpt_every=25, eval_pool=256),
        "smoke": RewardRecipe(batch_size=4, lr=1e-3, warmup_steps=2, max_steps=6, weight_decay=0.0, eval_every=3,
                              ckpt_every=2, log_every=1, eval_pool=16),
    },
}
RHYTHM_PAPER = {"contrastive": {"max_steps": 2500}, "discriminative": {"batch_size": 32}}


def recipe_for(kind: str, name: str, rhythm: bool = False) -> RewardRecipe:
    if kind not in RECIPES:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}")
    if name not in RECIPES[kind]:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES[kind])}")
    r = RECIPES[kind][name]
    return replace(r, **RHYTHM_PAPER[kind]) if rhythm and name == "paper" else r


def window_config(rhythm: bool) -> WindowConfig:
    """Separate melody and chord windows; rhythm-only models train without transposition (GAPT §3.4)."""
    if rhythm:
        return WindowConfig(order="separate", transpose_low=0, transpose_high=0)
    return WindowConfig(order="separate")


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def retrieval_metrics(sim: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10), map_k: int = 10) -> dict[str, float]:
    """Row i of ``sim`` [N, N] is query i scored against every candidate; candidate i is its one right answer.

    rank = candidates scored above the right one plus other candidates tied with it (ties count against the query:
    a constant model scores 0, never 1). recall@k = P(rank < k); mAP@k with one relevant item = mean over queries of
    1 / (rank + 1) where rank < k, else 0.
    """
    sim = sim.float()
    n = sim.shape[0]
    right = sim.diagonal()[:, None]
    other = ~torch.eye(n, dtype=torch.bool, device=sim.device)
    rank = ((sim > right) | ((sim == right) & other)).sum(1)
    out = {f"recall@{k}": float((rank < k).float().mean()) for k in ks}
    out[f"map@{map_k}"] = float(torch.where(rank < map_k, 1.0 / (rank + 1).float(), torch.zeros(())).mean())
    return out


def binary_prf(scores: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Precision, recall, F1 and accuracy of ``scores >= threshold`` against 0/1 ``labels`` (0 where undefined)."""
    pred, truth = scores >= threshold, labels.bool()
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": float((pred == truth).float().mean())}


def pool_windows(ds: WindowDataset, n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A fixed set of up to ``n`` tiled, untransposed windows spread evenly over the split (distinct items)."""
    idx = np.arange(len(ds)) if n >= len(ds) else np.linspace(0, len(ds) - 1, n).astype(int)
    wins = [ds.window(int(i), None) for i in idx]
    return {k: torch.from_numpy(np.stack([w[k] for w in wins])).to(device) for k in ("melody", "chords")}


@torch.no_grad()
def evaluate(kind: str, model: torch.nn.Module, pool: dict[str, torch.Tensor], chunk: int, seed: int = 0) -> dict:
    """Loss and metrics on a pool of windows; the loss is computed in chunks of the training batch size (so it is
    comparable to the training loss), the metrics over the whole pool."""
    was_training = model.training
    model.eval()
    mel, ch = pool["melody"], pool["chords"]
    n = len(mel)
    dev = mel.device
    out: dict = {"pool_size": n}
    with autocast(dev):
        if kind == "contrastive":
            em = torch.cat([model.embed_melody(mel[a:a + chunk]) for a in range(0, n, chunk)])
            ec = torch.cat([model.embed_chords(ch[a:a + chunk]) for a in range(0, n, chunk)])
            losses = [(info_nce(em[a:a + chunk], ec[a:a + chunk], model.logit_scale).float(), len(em[a:a + chunk]))
                      for a in range(0, n, chunk)]
            out["loss"] = sum(float(v) * m for v, m in losses) / n
            sim = em @ ec.T
            out.update({f"m2c_{k}": v for k, v in retrieval_metrics(sim).items()})
            out.update({f"c2m_{k}": v for k, v in retrieval_metrics(sim.T).items()})
        else:
            perm = derangement(n, torch.Generator().manual_seed(seed), dev)
            pos = torch.cat([model.logits(mel[a:a + chunk], ch[a:a + chunk]) for a in range(0, n, chunk)])
            shuffled = mel[perm]
            neg = torch.cat([model.logits(shuffled[a:a + chunk], ch[a:a + chunk]) for a in range(0, n, chunk)])
            z = torch.cat([pos, neg]).float()
            labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(dev)
            out["loss"] = float(F.binary_cross_entropy_with_logits(z, labels))
            out.update(binary_prf(torch.sigmoid(z), labels))
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Training


def step_loss(kind: str, model: torch.nn.Module, batch: dict[str, torch.Tensor], generator: torch.Generator):
    if kind == "contrastive":
        return model.loss(batch["melody"], batch["chords"])
    return model.loss(batch["melody"], batch["chords"], generator=generator)


def _add_to_checkpoint(path: Path, **fields) -> None:
    if path.exists():
        ckpt = load_checkpoint(path)
        ckpt.update(fields)
        tmp = path.with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)


def score_test_split(kind: str, out: Path, cache: Cache, mix: dict, recipe: RewardRecipe, rhythm: bool,
                     dev: torch.device) -> dict:
    """Score the best checkpoint (the last when no validation loss was finite) on the test split; write
    metrics.json and the checkpoints' ``test`` field."""
    which = "best" if (out / "ckpt_best.pt").exists() else "last"
    best = load_checkpoint(out / f"ckpt_{which}.pt")
    model = build_reward(kind, ModelConfig(**best["model_config"]), rhythm).to(dev)
    model.load_state_dict(best["model"])
    test_ds = WindowDataset(cache, "test", tuple(mix), window_config(rhythm), augment=False)
    figures = evaluate(kind, model, pool_windows(test_ds, recipe.eval_pool, dev), recipe.batch_size)
    metrics = {"kind": kind, "rhythm": rhythm, "split": "test", "checkpoint": which, "step": best["step"],
               "test_windows": len(test_ds), **figures}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    for name in ("ckpt_best.pt", "ckpt_last.pt"):
        _add_to_checkpoint(out / name, test=metrics)
    return metrics


def train_reward(kind: str, config: str, cache: Cache | Path, out: Path, recipe: RewardRecipe, rhythm: bool = False,
                 mix: dict[str, float] | None = None, device: str | None = None, quiet: bool = False,
                 until: int | None = None) -> dict:
    """Train (or resume) one reward model; returns the last validation figures and, once finished, ``test``.

    ``until``: stop (with a checkpoint) after this step, keeping the recipe's schedule (resume with the same call).
    """
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}")
    dev = pick_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    mix = mix or DEFAULT_MIX
    wcfg = window_config(rhythm)
    train_ds = WindowDataset(cache, "train", tuple(mix), wcfg)
    val_ds = WindowDataset(cache, "valid", tuple(mix), wcfg, augment=False)
    weights = train_ds.mixing_weights(mix).numpy()
    weights /= weights.sum()
    val_pool = pool_windows(val_ds, recipe.eval_pool, dev)

    overrides = CONFIG_OVERRIDES.get(config, {})
    torch.manual_seed(recipe.seed)
    model = build_reward(kind, preset(config, **overrides), rhythm).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    meta = {"kind": kind, "rhythm": rhythm, "config_name": config, "config_overrides": overrides,
            "model_config": asdict(model.cfg), "recipe": asdict(recipe), "window": asdict(wcfg), "mix": mix,
            "cache": str(cache.path), "token_vocab": T.VOCAB_SIZE}
    last, best = out / "ckpt_last.pt", BestCheckpoint(out / "ckpt_best.pt")
    start = 0
    if last.exists():
        ckpt = load_checkpoint(last)
        if (ckpt.get("kind"), ckpt.get("rhythm"), ckpt.get("model_config")) != (kind, rhythm, meta["model_config"]):
            what = f"{'rhythm-only ' if ckpt.get('rhythm') else ''}{ckpt.get('kind')} {ckpt.get('config_name')}"
            raise ValueError(f"{last}: holds a {what} run, not {'rhythm-only ' if rhythm else ''}{kind} {config}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        start, best.value = ckpt["step"], ckpt.get("best_val", math.inf)
    (out / "config.json").write_text(json.dumps(meta, indent=1))
    model.train()
    pairs_seen, t0 = 0, time.time()

    def step(i: int) -> dict:
        nonlocal pairs_seen
        rng = np.random.default_rng([recipe.seed, i])
        torch.manual_seed(recipe.seed * 1_000_003 + i)
        gen = torch.Generator().manual_seed(recipe.seed * 1_000_003 + i)  # the discriminative negatives
        batch = draw_batch(train_ds, weights, recipe.batch_size, rng, dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(i, recipe)
        with autocast(dev):
            loss = step_loss(kind, model, batch, gen)
        gnorm = guarded_step(loss, model, opt, recipe.grad_clip, i, last)
        pairs_seen += recipe.batch_size
        rate = pairs_seen / max(time.time() - t0, 1e-9)
        row = {"lr": lr_at(i, recipe), "grad_norm": gnorm, "loss": loss.item(), "pairs_per_s": round(rate, 2)}
        if isinstance(model, ContrastiveReward):
            row["logit_scale"] = float(model.logit_scale.detach().exp())
        return row

    def validate(n: int) -> dict:
        return {f"val_{k}": v for k, v in evaluate(kind, model, val_pool, recipe.batch_size).items()}

    result = RunLoop(
        out=out, name=f"{'rhythm ' if rhythm else ''}{kind} {config}", total=recipe.max_steps, start=start,
        step_fn=step, eval_fn=validate, on_eval=lambda n, val: best.offer(n, val, model, opt, meta),
        save_fn=lambda n: save_checkpoint(last, model, opt, n, best.meta(meta)),
        plot_fn=lambda: plot_curves(out / "log.jsonl", out / "loss.png"),
        postfix=lambda row: {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.1e}", "pairs_s": f"{row['pairs_per_s']:,.1f}"},
        eval_every=recipe.eval_every, ckpt_every=recipe.ckpt_every, log_every=recipe.log_every,
    ).run(until=until, quiet=quiet)
    if max(start, stop_step(recipe.max_steps, until)) >= recipe.max_steps:  # the schedule is done: score the test split
        metrics_path = out / "metrics.json"
        if metrics_path.exists():
            result["test"] = json.loads(metrics_path.read_text())
        else:
            result["test"] = score_test_split(kind, out, cache, mix, recipe, rhythm, dev)
            if not quiet:
                print(f"test ({result['test']['pool_size']} windows): " + ", ".join(
                    f"{k} {v:.3f}" for k, v in result["test"].items() if isinstance(v, float)), file=sys.stderr)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _rewards_command(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = recipe_for(args.kind, args.recipe, args.rhythm)
    overrides = {"max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                 "eval_pool": args.pool}
    recipe = replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    result = train_reward(args.kind, args.config, Path(args.cache), Path(args.out), recipe, rhythm=args.rhythm,
                          device=args.device, until=args.until)
    print(json.dumps(result))


def add_rewards_parser(stages) -> argparse.ArgumentParser:
    """Add the ``rewards`` sub-command to ``comper-train``'s sub-parsers (``stages = parser.add_subparsers()``)."""
    from .models.transformer import PRESETS

    rw = stages.add_parser("rewards", help="train a coherence reward model (resumes from OUT/ckpt_last.pt)")
    rw.add_argument("--kind", required=True, choices=list(KINDS))
    rw.add_argument("--rhythm", action="store_true",
                    help="the rhythm-only variant (onset / hold / silence, trained without transposition)")
    rw.add_argument("--config", default="small", choices=list(PRESETS), help="model size (paper: 6 layers)")
    rw.add_argument("--recipe", default="paper", choices=list(RECIPES["contrastive"]), help="optimisation preset")
    rw.add_argument("--seed", type=int, help="run seed (the papers' ensembles: 42 and 1234)")
    rw.add_argument("--cache", required=True)
    rw.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, loss.png, metrics.json)")
    rw.add_argument("--steps", type=int, help="override the recipe's max steps (the schedule's length)")
    rw.add_argument("--until", type=int, help="stop after this step (resume later with the same command)")
    rw.add_argument("--batch-size", type=int, help="real pairs per step")
    rw.add_argument("--lr", type=float)
    rw.add_argument("--pool", type=int, help="windows in the evaluation pool (default: the recipe's)")
    rw.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    rw.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    rw.set_defaults(func=_rewards_command)
    return rw
