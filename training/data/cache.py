"""Build the processed cache from the raw datasets, and load it back fast.

The cache is a folder: ``frames.npz`` (every song's frames concatenated, plus offsets: loads in well under a
second), ``songs.json`` (one record per kept song: source, id, split, meter, key, frame range) and ``stats.json``
(what the build kept, skipped and simplified). The build parses songs in worker processes; a song that fails
is skipped with a warning naming its file and the reason, and counted, so one bad file never stops a build.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from app.errors import ComperError

from . import sources
from .chords import N_CHORDS, Chord
from .codec import FRAMES_PER_BEAT, EncodeStats, Frames, encode, trim_bounds
from .leadsheet import SkipSong, SongRef
from .splits import assign_splits
from .tokens import VOCAB_SIZE

CACHE_VERSION = 1
MIN_FRAMES = 4 * FRAMES_PER_BEAT  # songs shorter than one bar carry nothing to learn


class DataError(ComperError):
    """A problem with the data directory or the cache that stops the command (one clear line)."""


@dataclass
class SongResult:
    ref: SongRef
    frames: Frames | None = None
    meta: dict | None = None
    stats: EncodeStats | None = None
    n_notes: int = 0
    skip_reason: str | None = None


def _process(ref: SongRef) -> SongResult:
    """Parse + encode one song (runs in a worker). Never raises: failures come back as a skip reason."""
    try:
        sheet = sources.load(ref.source).parse(ref)
        frames, stats = encode(sheet)
        if len(frames) < MIN_FRAMES:
            raise SkipSong("shorter than one bar")
        if not (frames.melody >= 0).any():
            raise SkipSong("no melody notes")
        if sheet.chords is not None and not (frames.chord >= 0).any():
            raise SkipSong("no chords")
        meta = {
            "source": ref.source, "song_id": ref.song_id, "path": ref.path, "has_chords": sheet.chords is not None,
            "meter": list(sheet.meter), "key": [sheet.key.tonic, sheet.key.mode] if sheet.key else None,
            "official_split": sheet.extra.get("split"),
            # the score beat of frame 0: with the meter it gives the bar phase (steering, off-beat metrics)
            "first_beat": float(trim_bounds(sheet)[0]),
        }
        return SongResult(ref, frames, meta, stats, n_notes=int(frames.melody_onset.sum()))
    except SkipSong as e:
        return SongResult(ref, skip_reason=str(e))
    except Exception as e:  # noqa: BLE001 - any parser failure is one skipped song, reported with its file
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        return SongResult(ref, skip_reason=f"unreadable ({type(e).__name__}: {msg})")


def discover_all(data_dir: Path, workdir: Path, only: list[str] | None = None) -> list[SongRef]:
    """Every song of every source found under ``data_dir``."""
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    refs: list[SongRef] = []
    found = []
    for name, (_, folder, _) in sources.SOURCES.items():
        if only and name not in only:
            continue
        if not (data_dir / folder).is_dir():
            print(f"warning: {data_dir / folder} not found; source {name} skipped", file=sys.stderr)
            continue
        found.append(name)
        refs.extend(sources.load(name).discover(data_dir, workdir))
    if not found:
        expected = ", ".join(f"{f}/" for _, f, _ in sources.SOURCES.values())
        raise DataError(f"data directory {data_dir} holds none of the datasets (expected {expected})")
    return refs


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="song", dynamic_ncols=True, mininterval=0.5, file=sys.stderr)


def build(data_dir: Path, out: Path, processes: int = 2, only: list[str] | None = None,
          limit: int | None = None) -> dict:
    """Parse every song, encode it, assign splits, and write the cache folder. Returns the stats."""
    t0 = time.time()
    data_dir, out = Path(data_dir).resolve(), Path(out)
    with tempfile.TemporaryDirectory(prefix="comper-build-") as tmp:
        refs = discover_all(data_dir, Path(tmp), only)
        shown = {r.path: display_path(r.path, Path(tmp), data_dir) for r in refs}
        if limit:
            per: Counter = Counter()
            refs = [r for r in refs if (per.update([r.source]) or per[r.source] <= limit)]
        # Slow parsers (music21) first so the cheap MIDI clips fill the gaps at the end.
        slow = {"nottingham": 0, "chord_melody_dataset": 0, "openewld": 0, "pop909": 1, "hooktheory": 2}
        refs.sort(key=lambda r: slow.get(r.source, 1))
        results: list[SongResult] = []
        bar = _progress(len(refs), "parsing")
        if processes <= 1:
            it = map(_process, refs)
            pool = None
        else:
            pool = mp.get_context("fork").Pool(processes)
            it = pool.imap_unordered(_process, refs, chunksize=8)
        try:
            for res in it:
                res.ref = replace(res.ref, path=shown[res.ref.path])
                if res.skip_reason:
                    bar.write(f"warning: skipped {res.ref.path}"
                              f"{'' if res.ref.part is None else f' (tune {res.ref.part})'}: {res.skip_reason}", file=sys.stderr)
                results.append(res)
                bar.update()
        finally:
            bar.close()
            if pool:
                pool.close()
                pool.join()
    for res in results:
        if res.meta:
            res.meta["path"] = res.ref.path
    return write_cache(results, out, build_seconds=time.time() - t0, data_dir=data_dir)


def display_path(path: str, workdir: Path, data_dir: Path) -> str:
    """Where a user finds the song: files extracted from a tarball are named as members of it."""
    p = Path(path)
    if p.is_relative_to(workdir):
        rel = p.relative_to(workdir)
        return f"{data_dir / rel.parts[0]}/<tarball member {Path(*rel.parts[1:])}>"
    return path


def write_cache(results: list[SongResult], out: Path, build_seconds: float, data_dir: Path) -> dict:
    kept = sorted((r for r in results if r.frames is not None), key=lambda r: (r.ref.source, r.ref.song_id))
    metas = [r.meta for r in kept]
    for meta, split in zip(metas, assign_splits(metas)):
        meta["split"] = split
    offsets = np.zeros(len(kept) + 1, np.int64)
    offsets[1:] = np.cumsum([len(r.frames) for r in kept])
    for meta, a, b in zip(metas, offsets[:-1], offsets[1:]):
        meta["start"], meta["stop"] = int(a), int(b)
        meta.pop("official_split", None)

    def cat(field: str, dtype) -> np.ndarray:
        return np.concatenate([getattr(r.frames, field) for r in kept]).astype(dtype) if kept else np.zeros(0, dtype)

    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "frames.npz", melody=cat("melody", np.int16), melody_onset=cat("melody_onset", bool),
             chord=cat("chord", np.int16), chord_onset=cat("chord_onset", bool), offsets=offsets)
    (out / "songs.json").write_text(json.dumps(metas))
    stats = summarize(results, kept, metas)
    stats.update(version=CACHE_VERSION, build_seconds=round(build_seconds, 1), data_dir=str(data_dir))
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    return stats


def summarize(results: list[SongResult], kept: list[SongResult], metas: list[dict]) -> dict:
    """Per-source counts, skip reasons, chord coverage, and the most common chords."""
    per: dict[str, dict] = {}
    chord_frames: Counter = Counter()
    for res in results:
        s = per.setdefault(res.ref.source, {
            "songs_found": 0, "songs_kept": 0, "songs_skipped": 0, "skip_reasons": Counter(), "frames": 0,
            "melody_notes": 0, "chord_beats": {"exact": 0.0, "simplified": 0.0, "unmapped": 0.0, "no_chord": 0.0},
            "splits": Counter(), "simplified_labels": Counter(), "unmapped_labels": Counter()})
        s["songs_found"] += 1
        if res.skip_reason:
            s["songs_skipped"] += 1
            s["skip_reasons"][res.skip_reason.split(" (")[0]] += 1
            continue
        s["songs_kept"] += 1
        s["frames"] += len(res.frames)
        s["melody_notes"] += res.n_notes
        for k in ("exact", "simplified", "unmapped", "no_chord"):
            s["chord_beats"][k] += getattr(res.stats, k)
        s["simplified_labels"].update(res.stats.simplified_labels)
        s["unmapped_labels"].update(res.stats.unmapped_labels)
        ch = res.frames.chord
        chord_frames.update(ch[ch >= 0].tolist())
    for meta in metas:
        per[meta["source"]]["splits"][meta["split"]] += 1
    for s in per.values():
        cb = s["chord_beats"]
        chord_time = cb["exact"] + cb["simplified"] + cb["unmapped"]
        s["chord_beats"] = {k: round(v, 2) for k, v in cb.items()}
        s["mapped_fraction"] = round((cb["exact"] + cb["simplified"]) / chord_time, 5) if chord_time else None
        s["exact_fraction"] = round(cb["exact"] / chord_time, 5) if chord_time else None
        s["skip_reasons"] = dict(s["skip_reasons"].most_common())
        s["splits"] = dict(sorted(s["splits"].items()))
        s["top_simplified_labels"] = {k: round(v, 1) for k, v in s.pop("simplified_labels").most_common(10)}
        s["top_unmapped_labels"] = {k: round(v, 1) for k, v in s.pop("unmapped_labels").most_common(10)}
    total = sum(chord_frames.values())
    return {
        "sources": per,
        "songs_kept": len(kept),
        "frames": int(sum(len(r.frames) for r in kept)),
        "vocabulary": {"chords_in_table": N_CHORDS, "chords_used": len(chord_frames), "tokens": VOCAB_SIZE},
        "top_chords": [{"chord": Chord.from_index(c).symbol, "share": round(n / total, 4)}
                       for c, n in chord_frames.most_common(10)] if total else [],
    }


@dataclass
class Cache:
    """The loaded cache: concatenated frames plus per-song records."""

    melody: np.ndarray
    melody_onset: np.ndarray
    chord: np.ndarray
    chord_onset: np.ndarray
    songs: list[dict]
    stats: dict
    path: Path

    def frames(self, i: int) -> Frames:
        s = self.songs[i]
        a, b = s["start"], s["stop"]
        return Frames(self.melody[a:b], self.melody_onset[a:b], self.chord[a:b], self.chord_onset[a:b])

    def select(self, split: str | None = None, sources_: tuple[str, ...] | None = None,
               with_chords: bool | None = None) -> list[int]:
        return [i for i, s in enumerate(self.songs)
                if (split is None or s["split"] == split) and (sources_ is None or s["source"] in sources_)
                and (with_chords is None or s["has_chords"] == with_chords)]


def load(path: Path) -> Cache:
    """Load a cache folder; a missing or foreign folder is a DataError naming the file."""
    path = Path(path)
    for name in ("frames.npz", "songs.json", "stats.json"):
        if not (path / name).is_file():
            raise DataError(f"{path / name} not found: is {path} a cache written by `comper-train data build`?")
    stats = json.loads((path / "stats.json").read_text())
    if stats.get("version") != CACHE_VERSION:
        raise DataError(f"{path / 'stats.json'}: cache version {stats.get('version')} is not {CACHE_VERSION}; rebuild it")
    with np.load(path / "frames.npz") as z:
        arrays = {k: z[k] for k in ("melody", "melody_onset", "chord", "chord_onset")}
    return Cache(**arrays, songs=json.loads((path / "songs.json").read_text()), stats=stats, path=path)
