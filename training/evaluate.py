"""`comper-train eval`: run chord systems on the same held-out melodies and compare their harmony.

Systems are training runs (online policy or offline teacher), model bundles, or built-in baselines with no
model: ``baseline:tonic`` (the tonic triad of the song's annotated key, or the Krumhansl-Schmuckler key of its
melody when none is annotated, struck on every beat: it knows the whole song's key, so it is not an online
system), ``baseline:online-key`` (the same, but on each beat the key is estimated from the melody heard so far:
the fair no-model baseline for an online accompanist), ``baseline:frequent`` (the most common training chord on
every beat) and ``baseline:random`` (a uniformly random vocabulary chord on every beat). The ground truth is
always added. Every system sees the first 256-frame window of each song of the split, with the same seeds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .data import tokens as T
from .data.cache import Cache, load as load_cache
from .data.chords import N_QUALITIES, QUALITY_INDEX
from .data.codec import melody_tokens
from .data.sources import TRAINING_SOURCES
from .evaluation.harmony import mean_over_songs, note_in_chord
from .generate import chord_indices, generate_offline, generate_online

WINDOW = 256
# Krumhansl-Kessler key profiles (major, minor), tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(melody: np.ndarray) -> tuple[int, str]:
    """Krumhansl-Schmuckler key of a melody (pitch per frame, -1 silence), weighted by duration."""
    hist = np.bincount(melody[melody >= 0] % 12, minlength=12).astype(float)
    best = max(((np.corrcoef(hist, np.roll(prof, k))[0, 1], k, mode) for mode, prof in
                (("major", _KK_MAJOR), ("minor", _KK_MINOR)) for k in range(12)), key=lambda x: np.nan_to_num(x[0]))
    return best[1], best[2]


def test_windows(cache: Cache, split: str, n: int | None) -> list[int]:
    songs = cache.select(split, TRAINING_SOURCES if split != "ood" else ("openewld",), with_chords=True)
    return songs[:n] if n else songs


def _beat_chords(chord: np.ndarray, length: int) -> np.ndarray:
    return np.full(length, chord, np.int64)


def baseline_chords(name: str, cache: Cache, songs: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Chord index per frame for a built-in baseline."""
    out = []
    if name == "frequent":
        train = cache.select("train", TRAINING_SOURCES, with_chords=True)
        counts = Counter()
        for i in train:
            c = cache.frames(i).chord
            counts.update(c[c >= 0].tolist())
        top = counts.most_common(1)[0][0]
    for i in songs:
        f = cache.frames(i)
        n = min(len(f), WINDOW)
        if name == "tonic":
            key = cache.songs[i].get("key")
            tonic, mode = (key[0], key[1]) if key else estimate_key(f.melody[:n])
            quality = QUALITY_INDEX["min" if mode == "minor" else "maj"]
            out.append(_beat_chords(tonic * N_QUALITIES + quality, n))
        elif name == "online-key":
            chords = np.full(n, -1, np.int64)
            for beat in range(0, n, 4):
                heard = f.melody[:beat]
                if (heard >= 0).any():
                    tonic, mode = estimate_key(heard)
                    chords[beat:beat + 4] = tonic * N_QUALITIES + QUALITY_INDEX["min" if mode == "minor" else "maj"]
            out.append(chords)
        elif name == "frequent":
            out.append(_beat_chords(top, n))
        elif name == "random":
            beats = rng.integers(0, 12 * N_QUALITIES, -(-n // 4))
            out.append(np.repeat(beats, 4)[:n])
        else:
            raise ValueError(f"unknown baseline {name!r} (tonic, online-key, frequent, random)")
    return out


def model_chords(run: Path, cache: Cache, songs: list[int], seed: int, temperature: float,
                 batch: int = 64) -> list[np.ndarray]:
    from .pretrain import load_model

    model, ckpt = load_model(run)
    kind = ckpt["kind"]
    if kind == "melody":
        raise ValueError(f"{run}: a melody agent is not a chord system")
    gen = torch.Generator().manual_seed(seed)
    out = []
    for a in range(0, len(songs), batch):
        ids = songs[a:a + batch]
        frames = [cache.frames(i) for i in ids]
        n = max(min(len(f), WINDOW) for f in frames)
        mel = np.full((len(ids), n), T.SILENCE, np.int64)
        for r, f in enumerate(frames):
            m = melody_tokens(f.crop(0, min(len(f), WINDOW)))
            mel[r, :len(m)] = m
        mel_t = torch.as_tensor(mel)
        chords = (generate_online if kind == "online" else generate_offline)(model, mel_t, temperature, gen)
        for r, f in enumerate(frames):
            out.append(chord_indices(chords[r, :min(len(f), WINDOW)].numpy()))
    return out


def bootstrap_ci(values: list[float], rng: np.random.Generator, n: int = 1000) -> tuple[float, float]:
    v = np.asarray(values)
    means = v[rng.integers(0, len(v), (n, len(v)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def evaluate_systems(systems: dict[str, str], cache: Cache | Path, split: str = "test", n: int | None = None,
                     seed: int = 0, temperature: float = 1.0) -> dict:
    cache = cache if isinstance(cache, Cache) else load_cache(cache)
    songs = test_windows(cache, split, n)
    melodies = [cache.frames(i).melody[:WINDOW] for i in songs]
    results = {}
    all_systems = {"ground truth": "truth", **systems}
    for name, spec in all_systems.items():
        rng = np.random.default_rng(seed)
        if spec == "truth":
            chords = [cache.frames(i).chord[:WINDOW] for i in songs]
        elif spec.startswith("baseline:"):
            chords = baseline_chords(spec.split(":", 1)[1], cache, songs, rng)
        else:
            chords = model_chords(Path(spec), cache, songs, seed, temperature)
        per_song = [r for r in (note_in_chord(m, c) for m, c in zip(melodies, chords)) if r is not None]
        score, counted = mean_over_songs(melodies, chords)
        lo, hi = bootstrap_ci(per_song, np.random.default_rng(seed))
        silence = float(np.mean([((c < 0) & (m >= 0)).sum() / max((m >= 0).sum(), 1)
                                 for m, c in zip(melodies, chords)]))
        results[name] = {"spec": spec, "note_in_chord": score, "ci95": [lo, hi], "songs": counted,
                         "chord_silence_ratio": silence}
    return {"split": split, "songs": len(songs), "seed": seed, "temperature": temperature, "systems": results}


def write_report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "harmony.json").write_text(json.dumps(result, indent=1))
    lines = [f"# Harmony on the {result['split']} split", "",
             f"{result['songs']} songs, first 256 frames each, seed {result['seed']}, temperature "
             f"{result['temperature']}; chords strictly online for online policies.", "",
             "| system | note-in-chord | 95% CI | chord silence over melody |", "|---|---|---|---|"]
    for name, r in result["systems"].items():
        lines.append(f"| {name} | {r['note_in_chord']:.3f} | {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f} | "
                     f"{r['chord_silence_ratio']:.3f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
