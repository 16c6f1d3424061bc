"""Calibrate the engine's steering to one policy, on the validation split: the ``steering.change_cost_offset`` of
its card.

    comper-train calibrate --bundle models/gapt.json --cache cache/data --songs 120 --jobs 2 --write
    comper-train calibrate --bundle models/offline-teacher.json --cache cache/data --songs 24 --offsets -2 -1 0 --write

Why: the steering presets were chosen on one model, and the change cost that makes it change chord as often as
the songs do is not another model's. A policy trained toward a teacher holds its chords longer (its own
distribution already favours holding), so under the same preset it plays a chord a bar or less. The card's offset
is added to whatever change cost the player picks, so "balanced" means the songs' harmonic rhythm for every
shipped model, and the player's knob keeps its meaning.

How: every offset of a small grid runs the same validation songs through the app's engine (the live protocol,
the player's preset and plan settings), and the offset whose chord changes per bar are nearest the songs' own is
chosen (a tie: the higher harmony). Harmony, Vendi and out-of-key time are printed beside it, so a setting that
buys the rhythm with the harmony is seen. Never the test songs. For the offline teacher the trial is its second
opinion on each song's whole melody (``comper reharmonize``), not the live protocol (it plays no live jam).
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


def calibrate_teacher(card_path: Path, cache: Path, steer, offsets: tuple[float, ...] = (-2.0, -1.0, 0.0),
                      songs: int = 24, seed: int = 0, temperature: float = 1.0, log=print
                      ) -> tuple[Trial, list[Trial]]:
    """The same choice for the offline teacher's second opinion (``comper reharmonize``): each validation song's
    whole melody comped by the steered teacher (``app.leadsheet.reharmonize.teacher_tokens``, song i with seed
    ``seed + i``), per offset. Vendi and out-of-key time are not measured here (NaN)."""
    import numpy as np

    from app.engine.bundle import load_bundle
    from app.engine.teacher import OnnxTeacher
    from app.leadsheet.reharmonize import teacher_tokens

    from .data.cache import DataError
    from .data.cache import load as load_cache
    from .evaluate import fixed_songs, select_songs
    from .evaluation.harmony import note_in_chord
    from .evaluation.heard import changes_per_bar

    if steer.is_off:
        raise DataError("comper-train calibrate: --steer off plays the raw teacher; there is no steering to calibrate")
    teacher = OnnxTeacher(load_bundle(card_path))
    vocab, own = teacher.card.vocab, teacher.card.change_cost_offset
    data = load_cache(cache)
    songs_ = fixed_songs(data, select_songs(data, "valid", songs))
    truth = [changes_per_bar(f.chord.astype(np.int64), songs_.bar_frames(i)) for i, f in enumerate(songs_.frames)]
    trials = []
    for offset in offsets:
        settings = replace(steer, change_cost=steer.change_cost + offset - own)
        harmony, rate = [], []
        for i, f in enumerate(songs_.frames):
            frames = [(int(p), bool(o)) for p, o in zip(f.melody, f.melody_onset)]
            tokens = teacher_tokens(teacher, frames, seed + i, temperature, settings, songs_.bar_frames(i))
            chords = np.array([vocab.chord_info[t].chord if t in vocab.chord_info else -1 for t in tokens])
            harmony.append(note_in_chord(np.asarray(f.melody), chords))
            rate.append(changes_per_bar(chords, songs_.bar_frames(i)))
        trial = Trial(offset, float(np.mean([h for h in harmony if h is not None])), float("nan"),
                      float(np.mean(rate)), float(np.mean(truth)), float("nan"))
        trials.append(trial)
        log(f"offset {offset:+5.1f}  harmony {trial.harmony:.3f}  changes/bar {trial.changes_per_bar:.2f} "
            f"({trial.rhythm_ratio:.2f}x the songs')")
    return choose(trials), trials


def write_calibration(card_path: Path, chosen: Trial, split: str, songs: int, preset: str | None) -> None:
    """The chosen offset into the card (``steering``), with what it was chosen on and what it gave there."""
    from app.engine.card import Card, SteeringCalibration

    card = Card.load(card_path)
    calibration = SteeringCalibration(chosen.offset, split, {
        "songs": songs, "preset": preset, "harmony": round(chosen.harmony, 3),
        "changes_per_bar_vs_songs": round(chosen.rhythm_ratio, 2), "command": "comper-train calibrate"})
    replace(card, steering=calibration).save(card_path)
