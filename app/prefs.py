"""Blind A/B preferences: which of two versions of a take (the take and a comparison, or two comparisons) a player
liked better, heard without knowing which was which. One JSON line per choice in ``preferences.jsonl`` in the
sessions folder:

    {"time": "...Z", "take": {"file": "ode.mid", "sha256": "..."}, "seed": 1234,
     "a": {"file": "ode.vs-realchords.mid", "model": "realchords", "steering": "balanced", ...},
     "b": {"file": "ode.mid", "model": "gapt", ...}, "picked": "a"}

Why lines and not one JSON document: each choice is a fact of its own; a line that got damaged (an editor, a
full disk in an older version) loses that choice only, and ``summary`` skips it and says which line it was. The
file is still written through the one output writer (the old lines and the new one, atomically), so a failed
write leaves the earlier choices as they were.

``comper prefs --summary`` prints the win rates per pair of versions, a version named by its model and steering
preset ("gapt (balanced)"), so choices between the same two models on different takes add up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .compare import read_sidecar, sha256_of, source_of, steering_preset
from .recording.output import write_file

FILE = "preferences.jsonl"
SIDES = ("a", "b")


def prefs_path(folder: str | Path | None = None) -> Path:
    from .session import sessions_dir

    return Path(folder if folder is not None else sessions_dir()) / FILE


def version_of(midi: str | Path) -> dict[str, Any]:
    """What a preference line says about one version: its file, model and settings."""
    midi = Path(midi)
    side = read_sidecar(midi)
    model = side.get("model")
    settings = side.get("settings") if isinstance(side.get("settings"), dict) else {}
    plan = settings.get("plan") if isinstance(settings.get("plan"), dict) else {}
    role = ("comparison" if "comparison_of" in side else "second opinion" if "second_opinion_of" in side
            else "take")
    return {"file": midi.name, "role": role,
            "model": (model.get("name") if isinstance(model, dict) else model) or "?",
            "steering": steering_preset(side), "temperature": plan.get("temperature", side.get("temperature")),
            "seed": side.get("seed"), "sha256": sha256_of(midi)}


def take_of(first: Path, second: Path) -> dict[str, Any]:
    """The take both versions come from: the file name with the sidecar's id when it has one, and the MIDI file's
    hash (it survives a rename, the sidecar's text does not)."""
    take = source_of(first) or source_of(second) or first
    out: dict[str, Any] = {"file": take.name}
    side_id = read_sidecar(take).get("id")
    if side_id is not None:
        out["id"] = side_id
    if take.is_file():
        out["sha256"] = sha256_of(take)
    return out


def choice(a: Path, b: Path, picked: str, seed: int, when: datetime | None = None) -> dict[str, Any]:
    if picked not in SIDES:
        raise ValueError(f"picked {picked!r}: 'a' or 'b'")
    when = when or datetime.now(UTC)
    return {"time": when.isoformat().replace("+00:00", "Z"), "take": take_of(a, b), "seed": seed,
            "a": version_of(a), "b": version_of(b), "picked": picked}


def record(line: dict[str, Any], path: str | Path) -> Path:
    """Add one choice to the preferences file (the earlier lines kept as they are)."""
    path = Path(path)
    old = path.read_bytes() if path.is_file() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    new = old + (json.dumps(line, ensure_ascii=False) + "\n").encode()
    write_file(path, lambda f: f.write(new), (".jsonl",))
    return path


def label(version: dict[str, Any]) -> str:
    steer = version.get("steering")
    return f"{version.get('model') or '?'}" + (f" ({steer})" if steer else "")


@dataclass
class PairTally:
    pair: tuple[str, str]  # the two labels, sorted
    wins: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.wins.values())

    def describe(self) -> str:
        parts = [f"{name} {self.wins.get(name, 0)} ({100 * self.wins.get(name, 0) / self.total:.0f}%)"
                 for name in dict.fromkeys(self.pair)]
        return f"{self.pair[0]} vs {self.pair[1]}: {self.total} choice{'s' if self.total != 1 else ''}; " + ", ".join(parts)


def _parse(text: str) -> tuple[str, str, str]:
    """(label of A, label of B, the picked side) of one line; ValueError saying what is wrong."""
    try:
        d = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    if d.get("picked") not in SIDES:
        raise ValueError("'picked' is not 'a' or 'b'")
    for side in SIDES:
        if not isinstance(d.get(side), dict):
            raise ValueError(f"no version {side!r}")
    return label(d["a"]), label(d["b"]), d["picked"]


def summary(lines: Iterable[str], name: str = FILE) -> tuple[list[PairTally], list[str]]:
    """Win counts per pair of versions, and one message per line that is not a choice (skipped)."""
    tallies: dict[tuple[str, str], PairTally] = {}
    errors = []
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            a, b, picked = _parse(text)
        except ValueError as e:
            errors.append(f"{name} line {n}: {e}; skipped")
            continue
        pair = tuple(sorted((a, b)))
        tally = tallies.setdefault(pair, PairTally(pair))
        winner = a if picked == "a" else b
        tally.wins[winner] = tally.wins.get(winner, 0) + 1
    return sorted(tallies.values(), key=lambda t: (-t.total, t.pair)), errors
