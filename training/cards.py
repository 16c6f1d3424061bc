"""Evaluation figures into model cards, and the models table out of them.

    comper-train card --bundle models/gapt.json --report reports/test/metrics.json --system gapt
    comper-train card --table models/          # the markdown table of models/README.md

The figures a card states are the ones ``comper-train eval`` measured on that very bundle (or on the run it was
exported from), copied with the split, song count, seed and bootstrap interval, so anyone can re-run the command
and compare. Writing a card never touches its ONNX file, so the sha256 stays valid; cards are read and written
through the app's typed ``Card`` (checked, written whole or not at all).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from app.engine.card import BundleError, Card

from .data.cache import DataError

SUMMARY = ("vendi", "chord_entropy", "chord_length_entropy", "distinct_4grams", "chord_silence_ratio",
           "onset_interval_emd_x1e3", "pitch_classes_per_chord", "early_stop_ratio")


def add_evaluation(card_path: Path, report: Path, system: str) -> dict:
    """Copy ``system``'s figures from an eval ``metrics.json`` into the card under its split; returns them."""
    card_path, report = Path(card_path), Path(report)
    card = _load(card_path)
    metrics = json.loads(report.read_text())
    fixed = metrics["protocols"]["fixed"]
    if system not in fixed:
        raise DataError(f"{report}: no system {system!r} (it has {', '.join(fixed)})")
    m = fixed[system]
    entry = {"songs": metrics["songs"], "seed": metrics["seed"], "temperature": metrics["temperature"],
             "frames": metrics["window"], "diversity_embedding": metrics["diversity_embedding"],
             "harmony": m["harmony"]["mean"], "harmony_ci95": m["harmony"]["ci95"],
             **{k: m[k] for k in SUMMARY if k in m},
             "ground_truth_harmony": fixed["ground truth"]["harmony"]["mean"]}
    tritone = metrics["protocols"].get("tritone", {}).get(system)
    if tritone is not None:
        entry["tritone_beats_to_recover"] = tritone.get("beats_to_recover")
    replace(card, evaluation={**card.evaluation, metrics["split"]: entry}).save(card_path)
    return entry


def describe(card_path: Path, description: str) -> None:
    """The one line a musician reads in the model picker."""
    replace(_load(Path(card_path)), description=description).save(card_path)


def _load(card_path: Path) -> Card:
    try:
        return Card.load(card_path)
    except BundleError as e:
        raise DataError(str(e)) from e


def _fmt(entry: dict | None, key: str, digits: int) -> str:
    if not entry or entry.get(key) is None:
        return "-"
    return f"{entry[key]:.{digits}f}"


def models_table(models_dir: Path) -> str:
    """Markdown: one row per bundle with its size, training and the test / OpenEWLD figures of its card."""
    rows = ["| bundle | role | parameters | training | test harmony | test Vendi | test chord entropy "
            "| OpenEWLD harmony | OpenEWLD Vendi |", "|---|---|---|---|---|---|---|---|---|"]
    for card_path in sorted(Path(models_dir).glob("*.json")):
        card = json.loads(card_path.read_text())
        if "onnx" not in card:
            continue
        ev = card.get("evaluation", {})
        t, o = ev.get("test"), ev.get("ood")
        train = card.get("training", {})
        steps = train.get("steps")
        stage = train.get("stage", "?")
        unit = "PPO updates" if stage.startswith("rl") else "steps"
        what = stage + (f", {steps} {unit}" if steps else "")
        params = card.get("model", {}).get("parameters")
        rows.append(f"| `{card['name']}` | {card.get('role', 'online_policy')} | "
                    f"{params / 1e6:.1f}M | {what} | " if params else f"| `{card['name']}` | - | - | {what} | ")
        rows[-1] += (f"{_fmt(t, 'harmony', 3)} | {_fmt(t, 'vendi', 1)} | {_fmt(t, 'chord_entropy', 2)} | "
                     f"{_fmt(o, 'harmony', 3)} | {_fmt(o, 'vendi', 1)} |")
    return "\n".join(rows)
