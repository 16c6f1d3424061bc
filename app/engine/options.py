"""Command-line flags for the planner's settings, declared once: ``comper jam``, ``rejam``, ``bench`` and
``comper-train eval --protocol live`` all take them from here, so a setting means the same everywhere.

Their ranges are one table, ``PLAN_KNOBS`` (``steering.Knob``, as the steering knobs' ``KNOBS``), checked by
``plan_from_args`` before anything opens or loads: a value out of range (``--temperature nan`` or ``-1``) is one
line, not a jam that samples from NaN."""

from __future__ import annotations

import argparse
from dataclasses import replace

from . import steering
from .planner import PlanSettings
from .steering import Knob


class OptionError(ValueError):
    """A planner option out of its range; the message names the flag and the range."""


PLAN_KNOBS: tuple[Knob, ...] = (
    Knob("temperature", "Temperature", "sampling temperature: 0 plays the likeliest chord, higher ones take more "
         "chances", 0.0, 3.0),
)


def _knob(name: str) -> Knob:
    return next(k for k in PLAN_KNOBS if k.name == name)


def check_plan_args(args: argparse.Namespace) -> None:
    """Raise ``OptionError`` for the first flag of ``PLAN_KNOBS`` given out of its range."""
    for knob in PLAN_KNOBS:
        value = getattr(args, knob.name, None)
        if value is not None and (why := knob.problem(value)) is not None:
            raise OptionError(f"--{knob.name.replace('_', '-')} {value}: {why}")


def add_plan_arguments(p: argparse.ArgumentParser, listen: float = 8.0, has_seed_and_temperature: bool = False) -> None:
    """Lookahead, commit, listen-first, temperature, seed, and the steering flags (``has_seed_and_temperature``:
    the parser declares those two itself)."""
    d = PlanSettings()
    p.add_argument("--lookahead", type=float, default=d.lookahead_beats, help="beats planned ahead")
    p.add_argument("--commit", type=float, default=d.commit_beats, help="beats of the plan that are frozen")
    p.add_argument("--listen", type=float, default=listen, help="beats the player plays alone first")
    if not has_seed_and_temperature:
        p.add_argument("--temperature", type=float, default=d.temperature, help=_knob("temperature").help)
        p.add_argument("--seed", type=int, default=d.seed)
    steering.add_arguments(p)


def plan_from_args(args: argparse.Namespace, **overrides) -> PlanSettings:
    """The PlanSettings the flags of ``add_plan_arguments`` describe (``OptionError`` / ``SteeringError``, both
    ValueErrors, name a bad value)."""
    check_plan_args(args)
    d = PlanSettings()
    temperature = d.temperature if args.temperature is None else args.temperature
    return replace(PlanSettings(lookahead_beats=args.lookahead, commit_beats=args.commit, listen_beats=args.listen,
                                temperature=temperature, seed=args.seed, steer=steering.from_args(args)),
                   **overrides)
