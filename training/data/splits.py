"""Train / valid / test assignment, fixed by a seed so every run and every machine agrees.

Training sources split 80/10/10 per dataset (ids sorted, then a seeded permutation per source, so adding one
dataset never reshuffles another); OpenEWLD is held out whole as the out-of-distribution set; the Hooktheory
melody clips keep their official artist-stratified split.
"""

from __future__ import annotations

import zlib

import numpy as np

SPLIT_SEED = 1234
FRACTIONS = (0.8, 0.1, 0.1)


def assign_splits(songs: list[dict], seed: int = SPLIT_SEED) -> list[str]:
    """One split name per song dict (keys: source, song_id, and split for sources with an official one)."""
    out = [""] * len(songs)
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(songs):
        if s["source"] == "openewld":
            out[i] = "ood"
        elif s.get("official_split"):
            out[i] = s["official_split"]
        else:
            by_source.setdefault(s["source"], []).append(i)
    for source, idx in by_source.items():
        idx = sorted(idx, key=lambda i: songs[i]["song_id"])
        rng = np.random.default_rng([seed, zlib.crc32(source.encode())])
        order = rng.permutation(len(idx))
        n_train = int(round(FRACTIONS[0] * len(idx)))
        n_valid = int(round(FRACTIONS[1] * len(idx)))
        for rank, j in enumerate(order):
            out[idx[j]] = "train" if rank < n_train else "valid" if rank < n_train + n_valid else "test"
    return out
