"""The evaluation report's figures: harmony vs diversity, adaptation curves, chord frequencies, chord lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.chords import Chord


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, ax, path: Path, title: str, legend: bool = True, grid: bool = True) -> None:
    ax.set_title(title)
    if grid:
        ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def harmony_vs_diversity(systems: dict[str, dict], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for i, (name, m) in enumerate(systems.items()):
        h = m["harmony"]
        err = [[h["mean"] - h["ci95"][0]], [h["ci95"][1] - h["mean"]]]
        ax.errorbar(h["mean"], m["vendi"], xerr=err, fmt="o", color=f"C{i}", capsize=3, label=name)
        ax.annotate(name, (h["mean"], m["vendi"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("harmony: note-in-chord ratio (95% CI)")
    ax.set_ylabel("diversity: Vendi score")
    _finish(fig, ax, path, title, legend=False)


def adaptation_curves(systems: dict[str, dict], path: Path, change_beat: int, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, m) in enumerate(systems.items()):
        curve = np.asarray(m["per_beat"], dtype=float)
        rec = m.get("beats_to_recover")
        ax.plot(np.arange(len(curve)), curve, color=f"C{i}",
                label=f"{name} (recovers in {rec if rec is not None else 'never'} beats)")
    ax.axvline(change_beat, color="k", ls="--", lw=1)
    ax.text(change_beat + 0.5, 0.02, "melody +6 semitones", fontsize=8)
    ax.set_xlabel("beat")
    ax.set_ylabel("note-in-chord ratio")
    ax.set_ylim(0, 1)
    _finish(fig, ax, path, title)


def chord_frequencies(systems: dict[str, dict], path: Path, title: str, top: int = 24) -> None:
    """Share of chord frames for the most common chords of the first system (the ground truth)."""
    plt = _plt()
    names = list(systems)
    ref = np.asarray(systems[names[0]]["chord_frequency"], dtype=float)
    order = np.argsort(-ref)[:top]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        freq = np.asarray(systems[name]["chord_frequency"], dtype=float)
        share = freq / max(freq.sum(), 1)
        ax.bar(np.arange(len(order)) + i * width, share[order], width, label=name, color=f"C{i}")
    ax.set_xticks(np.arange(len(order)) + 0.4 - width / 2)
    ax.set_xticklabels([Chord.from_index(int(c)).symbol for c in order], rotation=60, fontsize=8)
    ax.set_ylabel("share of chord frames")
    _finish(fig, ax, path, title, grid=False)


def chord_lengths(systems: dict[str, dict], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (name, m) in enumerate(systems.items()):
        hist = np.asarray(m["chord_length_hist"], dtype=float)
        ax.plot(np.arange(len(hist)), hist / max(hist.sum(), 1), "o-", ms=3, color=f"C{i}", label=name)
    ax.set_xlabel("chord length (16th-note frames; last bin: 33 and longer)")
    ax.set_ylabel("share of chords")
    _finish(fig, ax, path, title)
