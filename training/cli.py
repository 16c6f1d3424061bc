"""`comper-train`: one command per training stage (data, pretrain, rewards, rl, eval, export, pipeline).

Each stage module adds its own sub-command; errors a user can fix (a missing folder, a bad cache) print one
line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from app.errors import ComperError

from .data.cache import DataError
from .errors import NonFiniteLoss


def _default_processes() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _data_build(args: argparse.Namespace) -> None:
    from .data.cache import build
    from .data.report import format_stats

    stats = build(Path(args.data), Path(args.out), processes=args.processes, only=args.only, limit=args.limit)
    print(format_stats(stats))


def _data_stats(args: argparse.Namespace) -> None:
    from .data.cache import load
    from .data.report import format_stats

    cache = load(Path(args.cache))
    print(json.dumps(cache.stats, indent=1) if args.json else format_stats(cache.stats))


def _pretrain(args: argparse.Namespace) -> None:
    import torch

    from .pretrain import RECIPES, pretrain, with_overrides

    if args.threads:
        torch.set_num_threads(args.threads)

    recipe = with_overrides(RECIPES[args.recipe], max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed)
    result = pretrain(args.model, args.config, Path(args.cache), Path(args.out), recipe, device=args.device,
                      until=args.until)
    print(json.dumps(result))


def _eval(args: argparse.Namespace) -> None:
    import torch

    from .evaluate import evaluate, merge_results, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    systems = {}
    for spec in args.system:
        name, sep, target = spec.partition("=")
        if not sep or not name:
            raise DataError(f"--system {spec!r}: expected NAME=RUN_DIR, NAME=BUNDLE or NAME=baseline:KIND")
        systems[name] = target
    t0 = time.perf_counter()
    base = None
    if args.add_to:
        base_path = Path(args.add_to) / "metrics.json"
        if not base_path.exists():
            raise DataError(f"--add-to {args.add_to}: no metrics.json there")
        base = json.loads(base_path.read_text())
    live = None
    if args.protocol == "live":
        from app.engine.options import plan_from_args

        from .evaluate import LiveProtocol

        try:
            plan = plan_from_args(args)
        except ValueError as e:
            raise DataError(str(e)) from e
        live = LiveProtocol(plan, _live_teacher(args.teacher), jobs=args.jobs)
        args.temperature = plan.temperature
    elif args.temperature is None:
        args.temperature = 1.0
    result = evaluate(systems, Path(args.cache), args.split, args.n, args.seed, args.temperature,
                      Path(args.melody_agent) if args.melody_agent else None,
                      Path(args.embedding) if args.embedding else None, live=live)
    if base is not None:
        result = merge_results(base, result, f"--add-to {args.add_to}")
    write_report(result, Path(args.out))
    print(f"wrote {Path(args.out) / 'report.md'}, metrics.json and 4 plots in {time.perf_counter() - t0:.1f} s")


def _live_teacher(spec: str | None) -> Path | None:
    """The intro-fill teacher for the live protocol: a bundle path or name, 'none', or the shipped one."""
    from app.engine.bundle import resolve_model, shipped_teacher

    if spec == "none":
        return None
    if spec:
        return Path(resolve_model(spec))
    bundle = shipped_teacher()
    return bundle.card_path if bundle else None


def add_dataclass_overrides(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` flag per scalar field of the config dataclass ``cls`` (``--x/--no-x`` for booleans),
    default None: the preset decides unless the command line says otherwise. The dataclass is the one declaration;
    a new knob is a flag without touching the parser."""
    import dataclasses

    group = parser.add_argument_group(f"{cls.__name__} overrides (unset: the preset's value)")
    for f in dataclasses.fields(cls):
        if f.name in skip or not isinstance(f.default, (bool, int, float, str)):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, dest=f.name, type=type(f.default), default=None, metavar=type(f.default).__name__.upper())


def dataclass_overrides(args: argparse.Namespace, cls) -> dict:
    import dataclasses

    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def rl_config(args: argparse.Namespace):
    """The named preset, the system's knobs, then whatever the command line overrides (unset flags change nothing)."""
    from .rl.ppo import CONFIGS, RLConfig, with_system

    return with_system(CONFIGS[args.config], args.system, **dataclass_overrides(args, RLConfig))


def _rl(args: argparse.Namespace) -> None:
    import torch

    from .checkpoints import pick_device
    from .rl.ppo import train_rl

    pick_device(args.device)  # a device this machine lacks: one line, before the data and the models load
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = rl_config(args)
    row = train_rl(cfg, Path(args.init), Path(args.teacher), [Path(r) for r in args.rewards or []], Path(args.cache),
                   Path(args.out), system=args.system, until=args.until, device=args.device)
    print(json.dumps(row))


def _rl_plot(args: argparse.Namespace) -> None:
    from .rl.ppo import plot_systems

    runs = dict(spec.split("=", 1) if "=" in spec else (Path(spec).name, spec) for spec in args.runs)
    missing = [r for r in runs.values() if not (Path(r) / "log.jsonl").exists()]
    if missing:
        raise DataError(f"comper-train rl-plot: no log.jsonl in {', '.join(missing)}")
    plot_systems({k: Path(v) for k, v in runs.items()}, Path(args.out))
    print(f"wrote {args.out}")


def _pipeline(args: argparse.Namespace) -> None:
    import torch

    from .pipeline import run_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    run_pipeline(args.config, Path(args.data), Path(args.out), Path(args.cache) if args.cache else None, args.only)


def _card(args: argparse.Namespace) -> None:
    from .cards import add_evaluation, describe, models_table

    if args.table:
        print(models_table(Path(args.table)))
        return
    if not args.bundle:
        raise DataError("comper-train card: give --bundle CARD (with --report/--system or --description) or --table DIR")
    if args.description:
        describe(Path(args.bundle), args.description)
    for report in args.report or []:
        entry = add_evaluation(Path(args.bundle), Path(report), args.system or Path(args.bundle).stem)
        print(f"{args.bundle}: {report} -> harmony {entry['harmony']:.3f}, Vendi {entry.get('vendi', 0):.1f}")


def _calibrate(args: argparse.Namespace) -> None:
    from app.engine.card import BundleError, Card
    from app.engine.options import plan_from_args
    from app.engine.steering import preset_of

    from .calibrate import calibrate, calibrate_teacher, write_calibration

    try:
        plan = plan_from_args(args)
        if Card.load(args.bundle).role == "offline_teacher":  # its second opinion on whole melodies
            chosen, _ = calibrate_teacher(Path(args.bundle), Path(args.cache), plan.steer, tuple(args.offsets),
                                          args.songs, plan.seed)
        else:
            chosen, _ = calibrate(Path(args.bundle), Path(args.cache), plan, tuple(args.offsets), "valid",
                                  args.songs, plan.seed, _live_teacher(args.teacher), args.jobs,
                                  Path(args.embedding) if args.embedding else None)
        print(f"chosen: change-cost offset {chosen.offset:+g} ({chosen.rhythm_ratio:.2f}x the songs' chord changes, "
              f"harmony {chosen.harmony:.3f}) on {args.songs} validation songs")
        if args.write:
            write_calibration(Path(args.bundle), chosen, "valid", args.songs, preset_of(plan.steer))
            print(f"wrote steering.change_cost_offset {chosen.offset:+g} into {args.bundle}")
    except (BundleError, ValueError) as e:
        raise DataError(str(e)) from e


def _keep(args: argparse.Namespace) -> None:
    from .keep import keep

    card = keep(Path(args.run), args.name, Path(args.out), args.checkpoint)
    print(f"wrote {Path(args.out) / card['file']} ({card['parameters'] / 1e6:.1f}M parameters, bf16) and its card")


def _recover(args: argparse.Namespace) -> None:
    from .recover import recover

    card = Path(args.bundle)
    if not card.with_suffix(".json").is_file() or not card.with_suffix(".onnx").is_file():
        raise DataError(f"--bundle {args.bundle}: no NAME.json + NAME.onnx there")
    r = recover(card.with_suffix(".json"), Path(args.out))
    print(f"wrote {r['out']}: {r['bundle']} at step {r['step']}, max logit difference to the graph "
          f"{r['max_logit_diff']:.2g}")


def _export(args: argparse.Namespace) -> None:
    from .export import export_bundle

    card = export_bundle(Path(args.run), args.name, Path(args.out), int8=args.int8, which=args.checkpoint,
                         fp16=args.fp16)
    print(f"wrote {Path(args.out) / (args.name + '.onnx')} and .json (max |ONNX - torch| logit "
          f"{card.onnx.max_abs_logit_diff_vs_torch:.1e})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comper-train", description=__doc__.splitlines()[0])
    stages = p.add_subparsers(dest="stage", required=True)

    data = stages.add_parser("data", help="parse the datasets into the frame cache")
    data_cmds = data.add_subparsers(dest="command", required=True)
    b = data_cmds.add_parser("build", help="parse every source and write the cache")
    b.add_argument("--data", required=True, help="the datasets folder (e.g. ../shared/data)")
    b.add_argument("--out", required=True, help="cache folder to write")
    b.add_argument("--processes", type=int, default=_default_processes(), help="parser processes")
    b.add_argument("--only", nargs="+", help="build only these sources")
    b.add_argument("--limit", type=int, help="at most this many songs per source (quick builds)")
    b.set_defaults(func=_data_build)
    s = data_cmds.add_parser("stats", help="print what a cache holds")
    s.add_argument("--cache", required=True)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_data_stats)

    from .models.transformer import PRESETS
    from .pretrain import MODELS, RECIPES

    pt = stages.add_parser("pretrain", help="MLE pretraining (resumes from OUT/ckpt_last.pt when present)")
    pt.add_argument("--model", required=True, choices=list(MODELS))
    pt.add_argument("--config", default="small", choices=list(PRESETS), help="model size")
    pt.add_argument("--recipe", default="paper", choices=list(RECIPES), help="optimisation preset")
    pt.add_argument("--cache", required=True)
    pt.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl, loss.png)")
    pt.add_argument("--steps", type=int, help="override the recipe's max steps (the schedule's length)")
    pt.add_argument("--until", type=int, help="stop after this step (resume later with the same command)")
    pt.add_argument("--batch-size", type=int)
    pt.add_argument("--lr", type=float)
    pt.add_argument("--seed", type=int)
    pt.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    pt.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    pt.set_defaults(func=_pretrain)

    from .rewards import add_rewards_parser

    add_rewards_parser(stages)

    ev = stages.add_parser("eval", help="compare chord systems on held-out melodies")
    ev.add_argument("--system", action="append", required=True,
                    help="NAME=RUN_DIR[@best|last|uN], NAME=BUNDLE(.json) or NAME=baseline:tonic|online-key|frequent|random (repeatable)")
    ev.add_argument("--cache", required=True)
    ev.add_argument("--split", default="test", choices=["valid", "test", "ood"])
    ev.add_argument("--n", type=int, help="at most this many songs")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--temperature", type=float,
                    help="sampling temperature (default: 1.0 for the fixed protocol, the engine's own for live)")
    ev.add_argument("--melody-agent", help="a melody-agent run: adds the model-model jamming protocol")
    ev.add_argument("--embedding", help="a contrastive reward-model run whose chord encoder embeds for Vendi")
    ev.add_argument("--threads", type=int, help="CPU threads for torch (1 when another job shares the CPU: torch "
                                                "eager slows 30-65x on an oversubscribed core)")
    ev.add_argument("--add-to", help="an earlier report folder: evaluate only these systems with its settings and "
                                     "write the combined report (each system has its own seeded sampler)")
    ev.add_argument("--out", required=True)
    ev.add_argument("--protocol", default="fixed", choices=["fixed", "live"],
                    help="fixed: the free-running policy (and the tritone protocol); live: every song through the "
                         "app's engine as `comper rejam` plays it, with the planning and steering flags below")
    ev.add_argument("--jobs", type=int, default=1, help="live protocol: worker processes sharing the songs")
    ev.add_argument("--teacher", help="live protocol: the intro-fill teacher bundle (default: the shipped one; 'none')")
    from app.engine.options import add_plan_arguments

    add_plan_arguments(ev, has_seed_and_temperature=True)
    ev.set_defaults(func=_eval)

    from .rl.ppo import CONFIGS as RL_CONFIGS
    from .rl.ppo import SYSTEMS as RL_SYSTEMS

    rl = stages.add_parser("rl", help="RL post-training of an online policy (PPO; GAPT with --system gapt)")
    rl.add_argument("--system", default="gapt", choices=list(RL_SYSTEMS),
                    help="realchords: no discriminator, no entropy bonus; gapt-no-adv: entropy 0.01; gapt: both; "
                         "distill: the teacher's KL as a loss, alone")
    rl.add_argument("--config", default="cpu", choices=list(RL_CONFIGS), help="scale of the run")
    rl.add_argument("--init", required=True, help="the MLE online-policy run to start from")
    rl.add_argument("--teacher", required=True, help="the offline-teacher run (KL anchor)")
    rl.add_argument("--rewards", nargs="*", help="reward-model runs (the coherence ensemble)")
    rl.add_argument("--cache", required=True)
    rl.add_argument("--out", required=True)
    rl.add_argument("--until", type=int, help="stop after this update (resume later with the same command)")
    rl.add_argument("--threads", type=int, help="CPU threads for torch (1 when another job shares the CPU)")
    rl.add_argument("--device", default="cpu", help="where the models run: cpu (default; the rollout loop is "
                    "latency-bound on a small CPU) or cuda")
    from .rl.ppo import RLConfig

    add_dataclass_overrides(rl, RLConfig, skip=("d_config",))
    rl.set_defaults(func=_rl)

    rp = stages.add_parser("rl-plot", help="RL runs side by side: validation harmony / Vendi, KL, entropy, reward")
    rp.add_argument("--runs", nargs="+", required=True, help="RL run folders, optionally NAME=RUN")
    rp.add_argument("--out", required=True, help="the PNG to write")
    rp.set_defaults(func=_rl_plot)

    from .pipeline import PRESETS as PIPELINES

    pl = stages.add_parser("pipeline", help="every stage from the datasets to the bundles, resumable")
    pl.add_argument("--config", default="small", choices=list(PIPELINES))
    pl.add_argument("--data", required=True, help="the datasets folder (e.g. ../shared/data)")
    pl.add_argument("--out", required=True, help="folder for the cache, runs, reports and bundles")
    pl.add_argument("--cache", help="an existing data cache to use (default: OUT/cache, built if missing)")
    pl.add_argument("--only", nargs="+", help="run only these stages (e.g. eval-test export)")
    pl.add_argument("--threads", type=int, help="CPU threads for torch")
    pl.set_defaults(func=_pipeline)

    cd = stages.add_parser("card", help="put evaluation figures (or a description) into a model card; --table")
    cd.add_argument("--bundle", help="the card (.json) to update")
    cd.add_argument("--report", nargs="+", help="eval metrics.json files (their split names the entry)")
    cd.add_argument("--system", help="the system's name in the reports (default: the bundle's file name)")
    cd.add_argument("--description", help="one line for the app's model picker")
    cd.add_argument("--table", help="print the markdown table of every card in this folder")
    cd.set_defaults(func=_card)

    ex = stages.add_parser("export", help="write a model bundle (ONNX + JSON card) for the app")
    ex.add_argument("--run", required=True)
    ex.add_argument("--name", required=True)
    ex.add_argument("--out", default="models")
    ex.add_argument("--checkpoint", default="best",
                    help="best (validation loss), last, or u<N>: an RL run's policy at validation point N")
    ex.add_argument("--fp16", action="store_true", help="online policy: store the weights in fp16 (half the file; "
                                                         "rounded before export, computed in fp32)")
    ex.add_argument("--int8", action="store_true", help="online policy: also write an int8 variant; offline teacher: "
                                                         "ship int8 instead of fp32 (each only if greedy chords match)")
    ex.set_defaults(func=_export)

    rc = stages.add_parser("recover", help="a shipped policy bundle back into a torch run folder (RL's --init), "
                                           "checked against the graph: no pretraining on a new machine")
    rc.add_argument("--bundle", required=True, help="an online-policy bundle, e.g. models/online-mle.json")
    rc.add_argument("--out", required=True, help="the run folder to write (ckpt_best.pt, ckpt_last.pt, config.json)")
    rc.set_defaults(func=_recover)

    cb = stages.add_parser("calibrate", help="the change-cost offset that gives a policy (or the teacher's second "
                                             "opinion) the songs' harmonic rhythm under the engine's steering "
                                             "(validation split), into its card")
    cb.add_argument("--bundle", required=True, help="an online-policy bundle's card, e.g. models/gapt.json")
    cb.add_argument("--cache", required=True)
    cb.add_argument("--songs", type=int, default=96, help="validation songs per trial (default 96)")
    cb.add_argument("--offsets", type=float, nargs="+", default=[-3.0, -2.0, -1.0, 0.0],
                    help="the offsets tried, in nats (default -3 -2 -1 0)")
    cb.add_argument("--jobs", type=int, default=1, help="worker processes sharing the songs")
    cb.add_argument("--teacher", help="the intro-fill teacher bundle (default: the shipped one; 'none')")
    cb.add_argument("--embedding", help="a contrastive reward model whose chord encoder embeds for Vendi")
    cb.add_argument("--write", action="store_true", help="write the chosen offset into the card")
    add_plan_arguments(cb)
    cb.set_defaults(func=_calibrate)

    kp = stages.add_parser("keep", help="a run's weights into the repository in bf16 with a card "
                                        "(models/weights/NAME.pt + .json), for the next stage on a new machine")
    kp.add_argument("--run", required=True)
    kp.add_argument("--name", required=True)
    kp.add_argument("--out", default="models/weights")
    kp.add_argument("--checkpoint", default="best", choices=["best", "last"])
    kp.set_defaults(func=_keep)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ComperError as e:  # DataError, and the app's errors (a broken bundle, a bad steering flag, ...)
        print(f"comper-train: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLoss as e:
        print(f"comper-train: error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("comper-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
