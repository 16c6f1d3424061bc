"""Everything from the raw datasets to the shipped bundles, in one resumable command.

    comper-train pipeline --config small --data ../shared/data --out pipeline/small

Stages, in order: the data cache; MLE pretraining of the online policy, the offline teacher and the melody agent;
the reward models; the RL systems: the paper's comparison (``realchords``, ``gapt-no-adv``, ``gapt``) and the
teacher's signal alone (``distill``);
the export of the bundles (as shipped in ``models/``); the steering calibration of each online policy (online MLE and the RL
systems) on the validation split (``training/calibrate.py``); the evaluation of those bundles (test split and OpenEWLD);
their figures written into the cards, and the models table. Every stage resumes where it
stopped (each one checkpoints), and a finished stage is skipped, so the same command can be re-run after a kill
or across sessions. ``pipeline.json`` in the output folder records the time each stage took.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class PipelineConfig:
    model: str  # the model size preset (training/models/transformer.py)
    pretrain_recipe: str  # training/pretrain.py RECIPES
    teacher_steps: int | None  # the offline teacher's schedule length, when shorter than the recipe's
    reward_recipe: str  # training/rewards.py RECIPES
    reward_kinds: tuple[str, ...]
    rl_config: str  # training/rl/ppo.py CONFIGS
    eval_songs: int
    melody_agent: bool = True
    systems: tuple[str, ...] = ("realchords", "gapt-no-adv", "gapt", "distill")
    # systems whose shipped checkpoint is chosen on the validation curve (rl.ppo.select_snapshot: the best harmony
    # that keeps the songs' diversity and harmonic rhythm); the others ship their last update
    early_stopped: tuple[str, ...] = ("realchords", "gapt-no-adv", "gapt", "distill")
    build_limit: int | None = None  # songs per source (smoke runs)
    calibration_songs: int = 120  # validation songs per steering trial (training/calibrate.py)


PRESETS: dict[str, PipelineConfig] = {
    # The paper-sized models on one GPU.
    "paper": PipelineConfig("paper", "paper", None, "paper", ("contrastive", "discriminative"), "paper", 500),
    # What this 2-core CPU trains in a few sessions (the shipped bundles).
    "small": PipelineConfig("small", "cpu", 900, "cpu", ("contrastive", "discriminative"), "cpu", 200,
                            melody_agent=False),
    # Seconds: the tests.
    "smoke": PipelineConfig("tiny", "smoke", None, "smoke", ("contrastive",), "smoke", 2, melody_agent=False,
                            systems=("realchords", "gapt"), build_limit=3, calibration_songs=1),
}


DESCRIPTIONS = {  # the line a musician reads in the model picker
    "online-mle": "Online MLE: the chord policy after pretraining only (no RL); varied, often off the melody",
    "realchords": "ReaLchords: RL with coherence rewards, taught by the offline teacher",
    "gapt-no-adv": "GAPT without the discriminator: RL with coherence rewards and an entropy bonus, taught by the teacher",
    "gapt": "GAPT: RL with coherence rewards and a co-evolving discriminator, taught by the offline teacher",
    "distill": "Distill: taught by the offline teacher alone (on-policy forward KL, no rewards)",
    "offline-teacher": "Offline teacher (sees the whole melody): fills the listen-first intro's context chords",
}


@dataclass
class Stage:
    name: str
    run: Callable[[], object]
    outputs: list[str] = field(default_factory=list)


def stages(cfg: PipelineConfig, data: Path, out: Path, cache: Path) -> list[Stage]:
    """The stage list; each closure is resumable on its own."""
    from .cards import add_evaluation, describe, models_table
    from .data.cache import build
    from .evaluate import evaluate, write_report
    from .export import export_bundle
    from .pretrain import RECIPES as PRE
    from .pretrain import pretrain, with_overrides
    from .rewards import recipe_for, train_reward
    from .rl.ppo import CONFIGS, select_snapshot, train_rl, with_system

    runs = out / "runs"
    out_models = out / "models"
    steps: list[Stage] = []
    if not (cache / "stats.json").exists():
        steps.append(Stage("data", lambda: build(data, cache, limit=cfg.build_limit)))
    else:
        steps.append(Stage("data", lambda: None))
    kinds = ["online", "offline"] + (["melody"] if cfg.melody_agent else [])
    for kind in kinds:
        recipe = PRE[cfg.pretrain_recipe]
        if kind == "offline" and cfg.teacher_steps:
            recipe = with_overrides(recipe, max_steps=cfg.teacher_steps)
        steps.append(Stage(f"pretrain-{kind}", lambda k=kind, r=recipe: pretrain(k, cfg.model, cache, runs / f"{k}", r)))
    for kind in cfg.reward_kinds:
        steps.append(Stage(f"reward-{kind}", lambda k=kind: train_reward(
            k, cfg.model, cache, runs / f"rw-{k}", recipe_for(k, cfg.reward_recipe))))
    rewards = [runs / f"rw-{k}" for k in cfg.reward_kinds]
    for system in cfg.systems:
        steps.append(Stage(f"rl-{system}", lambda s=system: train_rl(
            with_system(CONFIGS[cfg.rl_config], s), runs / "online", runs / "offline", rewards, cache,
            runs / f"rl-{s}", system=s)))
    bundles = {"online-mle": runs / "online", "offline-teacher": runs / "offline",
               **{s: runs / f"rl-{s}" for s in cfg.systems}}

    def export_all() -> None:  # as shipped: the policies' weights stored in fp16, the teacher int8 if it can
        for name, run in bundles.items():
            which = select_snapshot(run) if name in cfg.early_stopped else "best"
            export_bundle(run, name, out_models, int8=name == "offline-teacher", fp16=name != "offline-teacher",
                          which=which)

    steps.append(Stage("export", export_all))

    def calibrate_all() -> None:  # the engine's steering for each online policy, on validation (calibrate.py)
        from .calibrate import calibrate, engine_plan, write_calibration

        plan = engine_plan()
        for name in ("online-mle", *cfg.systems):
            chosen, _ = calibrate(out_models / f"{name}.json", cache, plan, songs=cfg.calibration_songs,
                                  teacher=out_models / "offline-teacher.json", jobs=2)
            write_calibration(out_models / f"{name}.json", chosen, "valid", cfg.calibration_songs, "balanced")

    steps.append(Stage("calibrate", calibrate_all))
    # the bundles themselves are evaluated, so the figures in their cards are the shipped files' figures
    systems = {name: str(out_models / f"{name}.json") for name in bundles if name != "offline-teacher"}
    systems["offline-teacher"] = str(runs / "offline")  # a teacher bundle has no online runner: its run
    systems.update({"key-online": "baseline:online-key", "tonic-oracle": "baseline:tonic"})
    for split in ("test", "ood"):
        steps.append(Stage(f"eval-{split}", lambda sp=split: write_report(
            evaluate(systems, cache, sp, cfg.eval_songs, 0,
                     melody_agent=runs / "melody" if cfg.melody_agent else None,
                     embedding=runs / "rw-contrastive" if "contrastive" in cfg.reward_kinds else None),
            out / "reports" / sp)))

    def write_cards() -> None:
        for name in bundles:
            for split in ("test", "ood"):
                add_evaluation(out_models / f"{name}.json", out / "reports" / split / "metrics.json", name)
            if name in DESCRIPTIONS:
                describe(out_models / f"{name}.json", DESCRIPTIONS[name])
        (out_models / "TABLE.md").write_text(models_table(out_models) + "\n")

    steps.append(Stage("cards", write_cards))
    return steps


def run_pipeline(config: str, data: Path, out: Path, cache: Path | None = None, only: list[str] | None = None) -> dict:
    """Run (or resume) every stage; returns the per-stage record that is also written to ``pipeline.json``."""
    from tqdm import tqdm

    cfg = PRESETS[config]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache else out / "cache"
    record_path = out / "pipeline.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {"config": asdict(cfg), "stages": {}}
    plan = stages(cfg, Path(data), out, cache)
    bar = tqdm(plan, desc=f"pipeline {config}", unit="stage", file=sys.stderr, position=0, dynamic_ncols=True)
    for stage in bar:
        bar.set_postfix_str(stage.name)
        done = record["stages"].get(stage.name, {}).get("done")
        if done or (only and stage.name not in only):
            continue
        t0 = time.perf_counter()
        stage.run()
        spent = record["stages"].get(stage.name, {}).get("seconds", 0.0) + time.perf_counter() - t0
        record["stages"][stage.name] = {"done": True, "seconds": round(spent, 1)}
        record_path.write_text(json.dumps(record, indent=1))
    bar.close()
    total = sum(s["seconds"] for s in record["stages"].values())
    for name, s in record["stages"].items():
        print(f"{name:<22} {s['seconds'] / 60:8.1f} min", file=sys.stderr)
    print(f"{'total':<22} {total / 60:8.1f} min", file=sys.stderr)
    return record
