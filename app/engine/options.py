"""Command-line flags for the planner's settings, declared once: ``comper jam``, ``rejam``, ``bench`` and
``comper-train eval --protocol live`` all take them from here, so a setting means the same everywhere."""

from __future__ import annotations

import argparse
from dataclasses import replace

from . import steering
from .planner import PlanSettings


def add_plan_arguments(p: argparse.ArgumentParser, listen: float = 8.0, has_seed_and_temperature: bool = False) -> None:
    """Lookahead, commit, listen-first, temperature, seed, and the steering flags (``has_seed_and_temperature``:
    the parser declares those two itself)."""
    d = PlanSettings()
    p.add_argument("--lookahead", type=float, default=d.lookahead_beats, help="beats planned ahead")
    p.add_argument("--commit", type=float, default=d.commit_beats, help="beats of the plan that are frozen")
    p.add_argument("--listen", type=float, default=listen, help="beats the player plays alone first")
    if not has_seed_and_temperature:
        p.add_argument("--temperature", type=float, default=d.temperature)
        p.add_argument("--seed", type=int, default=d.seed)
    steering.add_arguments(p)


def plan_from_args(args: argparse.Namespace, **overrides) -> PlanSettings:
    """The PlanSettings the flags of ``add_plan_arguments`` describe (ValueError names a bad steering value)."""
    d = PlanSettings()
    temperature = d.temperature if args.temperature is None else args.temperature
    return replace(PlanSettings(lookahead_beats=args.lookahead, commit_beats=args.commit, listen_beats=args.listen,
                                temperature=temperature, seed=args.seed, steer=steering.from_args(args)),
                   **overrides)
