"""Calibrate the engine's steering to one policy, on the validation split: the ``steering.change_cost_offset`` of
its card.

    comper-train calibrate --bundle models/gapt.json --cache cache/data --songs 96 --jobs 2 --write

Why: the steering presets were chosen on one model, and the change cost that makes it change chord as often as
the songs do is not another model's. A policy trained toward a teacher holds its chords longer (its own
distribution already favours holding), so under the same preset it plays a chord a bar or less. The card's offset
is added to whatever change cost the player picks, so "balanced" means the songs' harmonic rhythm for every
shipped model, and the player's knob keeps its meaning.

How: every offset of a small grid runs the same validation songs through the app's engine (the live protocol,
the player's preset and plan settings), and the offset whose chord changes per bar are nearest the songs' own is
chosen (a tie: the higher harmony). Harmony, Vendi and out-of-key time are printed beside it, so a setting that
buys the rhythm with the harmony is seen. Never the test songs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_OFFSETS = (-3.0, -2.0, -1.0, 0.0)


@dataclass(frozen=True)
class Trial:
    offset: float
    harmony: float
    vendi: float
    changes_per_bar: float
    truth_changes_per_bar: float
    out_of_key: float

    @property
    def rhythm_ratio(self) -> float:
        return self.changes_per_bar / self.truth_changes_per_bar


def engine_plan():
    """The plan settings ``comper rejam`` and ``comper jam`` play with when no flag is given (the balanced
    preset): what the pipeline calibrates for."""
    import argparse

    from app.engine.options import add_plan_arguments, plan_from_args

    parser = argparse.ArgumentParser()
    add_plan_arguments(parser)
    return plan_from_args(parser.parse_args([]))


def choose(trials: list[Trial]) -> Trial:
    """The offset whose harmonic rhythm is nearest the songs' (ratio 1); a tie goes to the higher harmony."""
    return min(trials, key=lambda t: (round(abs(t.rhythm_ratio - 1.0), 2), -t.harmony))


def calibrate(card_path: Path, cache: Path, plan, offsets: tuple[float, ...] = DEFAULT_OFFSETS, split: str = "valid",
              songs: int = 96, seed: int = 0, teacher: Path | None = None, jobs: int = 1,
              embedding: Path | None = None, log=print) -> tuple[Trial, list[Trial]]:
    """Run the live protocol once per offset (``plan``: the player's settings, the card's own offset replaced by
    each trial's); returns the chosen trial and all of them."""
    from app.engine.card import Card
    from app.engine.steering import KNOBS

    from .data.cache import DataError
    from .evaluate import LiveProtocol, evaluate

    if split != "valid":
        raise DataError(f"comper-train calibrate: steering is chosen on the validation split, not {split!r}")
    if plan.steer.is_off:
        raise DataError("comper-train calibrate: --steer off plays the raw policy; there is no steering to calibrate")
    card = Card.load(card_path)
    cost = next(k for k in KNOBS if k.name == "change_cost")
    trials = []
    for offset in offsets:
        # the engine adds the card's offset to the plan's cost: trial offset = plan cost shift from the card's
        shifted = plan.steer.change_cost + offset - card.change_cost_offset
        if (why := cost.problem(shifted)) is not None:
            raise DataError(f"--offsets {offset:g}: the change cost it plays ({shifted:g}) {why}")
        live = LiveProtocol(replace(plan, steer=replace(plan.steer, change_cost=shifted)), teacher, jobs=jobs)
        result = evaluate({"policy": str(card_path)}, cache, split, songs, seed, plan.temperature,
                          embedding=embedding, live=live, log=lambda *_: None)
        m, truth = result["protocols"]["live"]["policy"], result["protocols"]["live"]["ground truth"]
        trial = Trial(offset, m["harmony"]["mean"], m["vendi"], m["changes_per_bar"], truth["changes_per_bar"],
                      m["out_of_key"])
        trials.append(trial)
        log(f"offset {offset:+5.1f}  harmony {trial.harmony:.3f}  Vendi {trial.vendi:5.2f}  changes/bar "
            f"{trial.changes_per_bar:.2f} ({trial.rhythm_ratio:.2f}x the songs')  out-of-key {trial.out_of_key:.3f}")
    return choose(trials), trials


def write_calibration(card_path: Path, chosen: Trial, split: str, songs: int, preset: str | None) -> None:
    """The chosen offset into the card (``steering``), with what it was chosen on and what it gave there."""
    from app.engine.card import Card, SteeringCalibration

    card = Card.load(card_path)
    calibration = SteeringCalibration(chosen.offset, split, {
        "songs": songs, "preset": preset, "harmony": round(chosen.harmony, 3),
        "changes_per_bar_vs_songs": round(chosen.rhythm_ratio, 2), "command": "comper-train calibrate"})
    replace(card, steering=calibration).save(card_path)
