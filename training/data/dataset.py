"""Training windows over the cache: beat-aligned 256-frame crops, random transposition, tokenized on the fly.

Every window is cut from the concatenated frame arrays with numpy slicing (no per-song Python objects), so a
single process serves tens of thousands of windows a second and a DataLoader needs no workers on a 2-core CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from . import tokens as T
from .cache import Cache
from .codec import Frames, chord_tokens, interleave, melody_tokens, random_crop_start, transpose
from .sources import TRAINING_SOURCES

ORDERS = ("chord_first", "melody_first", "separate")


@dataclass(frozen=True)
class WindowConfig:
    window: int = 256  # frames (64 beats), the papers' training length
    transpose_low: int = -6
    transpose_high: int = 5  # inclusive; the paper's -6..+6 double-counts the tritone
    order: str = "chord_first"  # chord policy; "melody_first" = melody agent; "separate" = offline teacher


def encode_window(frames: Frames, window: int, order: str, at_end: bool) -> dict[str, np.ndarray]:
    """Tokenize one (already cropped) window, padded to a fixed length; EOS only where the song really ends."""
    mel, ch = melody_tokens(frames), chord_tokens(frames)
    if order == "separate":
        def part(x: np.ndarray) -> np.ndarray:
            out = np.full(window + 2, T.PAD, np.int64)
            out[0] = T.BOS
            out[1:1 + len(x)] = x
            if at_end:
                out[1 + len(x)] = T.EOS
            return out
        return {"melody": part(mel), "chords": part(ch)}
    first, second = (ch, mel) if order == "chord_first" else (mel, ch)
    seq = interleave(first, second, bos=True, eos=at_end)
    out = np.full(2 * window + 2, T.PAD, np.int64)
    out[: len(seq)] = seq
    return {"tokens": out}


class WindowDataset(torch.utils.data.Dataset):
    """Windows of the songs of one split.

    ``augment=True``: each item is a random beat-aligned crop of a song with a random transposition (a song
    appears once per 256 frames it holds, so long songs are seen proportionally more).
    ``augment=False``: the songs tiled into consecutive windows, untransposed: a fixed set for validation.
    """

    def __init__(self, cache: Cache, split: str, sources: tuple[str, ...] = TRAINING_SOURCES,
                 config: WindowConfig = WindowConfig(), augment: bool = True, seed: int = 0,
                 with_chords: bool | None = True) -> None:
        if config.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {config.order!r}")
        self.cache, self.config, self.augment, self.seed = cache, config, augment, seed
        self.song_ids = np.array(cache.select(split, sources, with_chords), np.int64)
        if len(self.song_ids) == 0:
            raise ValueError(f"no songs in split {split!r} for sources {sources} in {cache.path}")
        starts = np.array([cache.songs[i]["start"] for i in self.song_ids], np.int64)
        stops = np.array([cache.songs[i]["stop"] for i in self.song_ids], np.int64)
        n_windows = np.maximum(1, -(-(stops - starts) // config.window))
        self.item_song = np.repeat(np.arange(len(self.song_ids)), n_windows)
        # For the tiled (validation) view: the k-th window of each song starts k*window frames in.
        self.item_offset = np.concatenate([np.arange(n) * config.window for n in n_windows])
        self.starts, self.stops = starts, stops
        self._rng: np.random.Generator | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.item_song)

    def _generator(self) -> np.random.Generator:
        # DataLoader workers fork the dataset: give each process its own stream.
        if self._rng is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**32, self._pid])
        return self._rng

    def sources_of_items(self) -> list[str]:
        return [self.cache.songs[self.song_ids[s]]["source"] for s in self.item_song]

    def mixing_weights(self, mix: dict[str, float]) -> torch.Tensor:
        """Per-item sampling weights so that a batch draws each source with probability ``mix[source]``."""
        srcs = np.array(self.sources_of_items())
        w = np.zeros(len(srcs))
        for name, p in mix.items():
            sel = srcs == name
            if sel.any():
                w[sel] = p / sel.sum()
        return torch.as_tensor(w, dtype=torch.double)

    def window(self, item: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """One window as numpy arrays (``rng`` None: the deterministic tiled view)."""
        s = self.item_song[item]
        a, b = int(self.starts[s]), int(self.stops[s])
        n, w = b - a, self.config.window
        offset = random_crop_start(n, w, rng) if rng is not None else int(self.item_offset[item])
        stop = min(offset + w, n)
        c = self.cache
        frames = Frames(c.melody[a + offset:a + stop], c.melody_onset[a + offset:a + stop],
                        c.chord[a + offset:a + stop], c.chord_onset[a + offset:a + stop]).crop(0, stop - offset)
        if rng is not None:
            k = int(rng.integers(self.config.transpose_low, self.config.transpose_high + 1))
            if k:
                frames = transpose(frames, k)
        out = encode_window(frames, w, self.config.order, at_end=stop == n)
        out["length"] = np.int64(stop - offset)
        return out

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        win = self.window(item, self._generator() if self.augment else None)
        return {k: torch.from_numpy(np.asarray(v)) for k, v in win.items()}
