"""Chord systems an evaluation can run: training runs, model bundles, built-in baselines, the ground truth.

A bundle runs through onnxruntime exactly as the app runs it (same graph, same card, same grammar), wrapped so
the batched torch generator can drive it: the report then measures what the musician will hear.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.engine.key import estimate_key as app_estimate_key

from ..data import tokens as T
from ..data.cache import Cache, DataError
from ..data.chords import N_QUALITIES, QUALITY_INDEX
from ..data.sources import TRAINING_SOURCES

BASELINES = ("tonic", "online-key", "frequent", "random")


class OnnxBatchPolicy:
    """A bundle's ONNX graph behind the torch policy call signature: (tokens, past, start) -> (logits, cache)."""

    def __init__(self, bundle_path: Path, threads: int = 2) -> None:
        from app.engine.bundle import load_bundle
        from app.engine.policy import OnnxPolicy

        self.card_path = Path(bundle_path)
        self.app_policy = OnnxPolicy(load_bundle(bundle_path), threads=threads)
        if self.app_policy.card["vocab_size"] != T.VOCAB_SIZE or self.app_policy.card["tokens"] != T.token_table():
            raise DataError(f"{bundle_path}: bundle vocabulary ({self.app_policy.card['vocab_size']} tokens) is not "
                            f"this training code's ({T.VOCAB_SIZE}); it cannot be evaluated on this cache")
        self.session = self.app_policy.session
        self.cache_shape = self.app_policy.cache_shape

    def __call__(self, tokens: torch.Tensor, past=None, start: int = 0):
        b = tokens.shape[0]
        if past is None:
            shape = (self.cache_shape[0], b, *self.cache_shape[2:])
            past = (np.zeros(shape, np.float32), np.zeros(shape, np.float32))
        logits, k, v = self.session.run(None, {"tokens": tokens.numpy().astype(np.int64),
                                               "start": np.array(start, np.int64), "past_k": past[0],
                                               "past_v": past[1]})
        return torch.from_numpy(logits), (k, v)


@dataclass
class System:
    name: str
    spec: str
    kind: str  # truth | baseline | online | offline
    model: object = None


def load_system(name: str, spec: str) -> System:
    """``spec``: a run folder (``RUN@best|last|u<N>`` picks a checkpoint), a bundle (``.json`` / ``.onnx`` / name),
    ``baseline:NAME`` or ``truth``."""
    if spec == "truth":
        return System(name, spec, "truth")
    if spec.startswith("baseline:"):
        base = spec.split(":", 1)[1]
        if base not in BASELINES:
            raise DataError(f"--system {name}={spec}: unknown baseline (choose {', '.join(BASELINES)})")
        return System(name, spec, "baseline")
    run, _, which = spec.partition("@")  # RUN_DIR@u20: an RL snapshot, so snapshots are compared without exporting
    path = Path(run)
    if path.is_dir():
        named = re.fullmatch(r"u\d+|best|last", which)  # a snapshot brought back alone is a run too
        wanted = (f"ckpt_{which}.pt",) if named else ("ckpt_best.pt", "ckpt_last.pt")
        if not any((path / f).is_file() for f in wanted):
            raise DataError(f"--system {name}={spec}: no {' or '.join(wanted)} in {path} (not a training run?)")
        from ..checkpoints import load_model

        try:
            model, ckpt = load_model(path, which or "best")
        except (ValueError, FileNotFoundError) as e:
            raise DataError(f"--system {name}={spec}: {e}") from e
        if ckpt["kind"] == "melody":
            raise DataError(f"--system {name}={spec}: a melody agent is not a chord system")
        return System(name, spec, ckpt["kind"], model)
    bundle = Path(spec)  # the whole spec: "@" only names a checkpoint of a run folder
    card = bundle if bundle.suffix == ".json" else bundle.with_suffix(".json")
    if card.is_file():
        from app.engine.bundle import BundleError

        try:
            return System(name, spec, "online", OnnxBatchPolicy(card))
        except BundleError as e:
            raise DataError(str(e)) from e
    raise DataError(f"--system {name}={spec}: no run folder, bundle or baseline by that name")


def estimate_key(melody: np.ndarray) -> tuple[int, str]:
    """Krumhansl-Schmuckler key of a melody (pitch per frame, -1 silence), weighted by duration: the app's own
    estimate (``app.engine.key``), so the baseline and the engine's key steering hear the same key."""
    key = app_estimate_key(melody)
    return (key.tonic, key.mode) if key else (0, "major")


def _triad(tonic: int, mode: str) -> int:
    return tonic * N_QUALITIES + QUALITY_INDEX["min" if mode == "minor" else "maj"]


def most_frequent_chord(cache: Cache) -> int:
    counts: Counter = Counter()
    for i in cache.select("train", TRAINING_SOURCES, with_chords=True):
        c = cache.frames(i).chord
        counts.update(c[c >= 0].tolist())
    return counts.most_common(1)[0][0]


def baseline_chords(name: str, melody: np.ndarray, key: list | None, rng: np.random.Generator,
                    frequent: int) -> tuple[np.ndarray, np.ndarray]:
    """(chord index per frame, onset per frame) for a no-model baseline, a chord struck on every beat.

    ``tonic`` knows the song's annotated key (or the key of its whole melody): not an online system.
    ``online-key`` re-estimates the key each beat from the melody heard so far: the fair online baseline.
    """
    n = len(melody)
    chords = np.full(n, -1, np.int64)
    for beat in range(0, n, 4):
        if name == "tonic":
            tonic, mode = (key[0], key[1]) if key else estimate_key(melody)
            chords[beat:beat + 4] = _triad(tonic, mode)
        elif name == "online-key":
            heard = melody[:beat]
            if (heard >= 0).any():
                chords[beat:beat + 4] = _triad(*estimate_key(heard))
        elif name == "frequent":
            chords[beat:beat + 4] = frequent
        elif name == "random":
            chords[beat:beat + 4] = rng.integers(0, 12 * N_QUALITIES)
    onset = np.zeros(n, bool)
    onset[::4] = chords[::4] >= 0
    return chords, onset
