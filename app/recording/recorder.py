"""The ``Recorder``: the one object the engine talks to while a jam runs; it turns calls into journal lines.

Why a facade: the engine should not know the journal's schema (see ``journal.py``), and every call must be cheap
and non-blocking (one ``os.write``, no fsync on the caller's thread), because it is made from the MIDI input
callback and the chord scheduler.

Settings (a mapping or a dataclass) are stored verbatim in the header; these keys are also read:
``bpm`` (required), ``meter`` ("4/4", [4, 4] or (4, 4); default 4/4), ``model_name`` / ``model_sha256`` (or
``model`` as a name or as {"name", "sha256"}), ``seed``, ``t0`` (clock time of frame 0, optional) and
``programs`` ({"melody": 0, "chords": 4, "bass": 32}, GM programs for the saved MIDI file).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .journal import SessionJournal, app_version, closing_line, control_event, utc_now
from .save import save_session


def jsonable(obj: Any) -> Any:
    """Settings as plain JSON values (dataclasses, tuples, paths, numpy scalars; NaN/inf become null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalar
        return jsonable(obj.item())
    return str(obj)


def parse_meter(meter: Any) -> list[int]:
    """'3/4', [3, 4] or (3, 4) -> [3, 4]; the denominator must be a power of two (MIDI stores its log2)."""
    if meter is None:
        return [4, 4]
    parts = meter.split("/") if isinstance(meter, str) else list(meter)
    num, den = (int(x) for x in parts)
    if num < 1 or den < 1 or den & (den - 1):
        raise ValueError(f"unsupported meter: {meter!r}")
    return [num, den]


def make_header(settings: Any) -> dict[str, Any]:
    s = jsonable(settings)
    if not isinstance(s, dict):
        raise TypeError("Recorder settings must be a mapping or a dataclass")
    if s.get("bpm") is None or not float(s["bpm"]) > 0:
        raise ValueError("Recorder settings need a positive 'bpm'")
    model = s.get("model")
    model_name = s.get("model_name") or (model.get("name") if isinstance(model, dict) else model)
    model_sha = s.get("model_sha256") or (model.get("sha256") if isinstance(model, dict) else None)
    return {
        "app_version": app_version(),
        "started": utc_now(),
        "bpm": float(s["bpm"]),
        "meter": parse_meter(s.get("meter")),
        "model": {"name": model_name, "sha256": model_sha},
        "seed": s.get("seed"),
        "t0": s.get("t0"),
        "settings": s,
    }


def _t(time: float) -> float:
    return round(float(time), 6)


class Recorder:
    """Records one session into ``<dir>/session-<date>-<time>.journal.jsonl``; ``save()`` makes the MIDI file."""

    def __init__(self, directory: str | os.PathLike, settings: Any, *, stem: str | None = None,
                 fsync_interval: float = 1.0) -> None:
        self.journal = SessionJournal.create(directory, make_header(settings), stem, fsync_interval)

    @property
    def path(self) -> Path:
        return self.journal.path

    @property
    def closed(self) -> bool:
        return self.journal.closed

    def melody_on(self, frame: int, time: float, pitch: int, vel: int) -> None:
        self.journal.append({"e": "on", "f": int(frame), "t": _t(time), "p": int(pitch), "v": int(vel)})

    def melody_off(self, frame: int, time: float, pitch: int) -> None:
        self.journal.append({"e": "off", "f": int(frame), "t": _t(time), "p": int(pitch)})

    def melody_control(self, frame: int, time: float, status: int, data: tuple[int, ...]) -> None:
        """A controller, pitch bend or pressure the player sent with the melody (``ControlEvent.status`` and
        ``data``): one ``cc``, ``bend``, ``pressure`` or ``keypressure`` line; another status is not written."""
        event = control_event(status, data)
        if event is not None:
            self.journal.append({"e": event.pop("e"), "f": int(frame), "t": _t(time), **event})

    def chord(self, frame: int, time: float, symbol: str | None, pitches: list[int], bass: int | None,
              onset: bool, token: int, apart: bool = False) -> None:
        """The chord sounding from ``frame``: ``pitches`` = the voicing (the bass may be included or not; it
        is written once, on the Bass track), ``bass`` = the bass note or None, ``onset`` False for a hold frame.
        An empty ``pitches`` with no bass is silence. ``apart``: the notes that sounded are journaled one by one
        (``note`` / ``note_off``: a comping style, a bass line, drums), so saving takes only the chord symbol and
        token from this line."""
        event = {"e": "chord", "f": int(frame), "t": _t(time), "s": symbol or None, "p": [int(p) for p in pitches],
                 "b": None if bass is None else int(bass), "on": bool(onset), "tok": int(token)}
        if apart:
            event["x"] = True
        self.journal.append(event)

    def note(self, frame: int, time: float, part: str, pitch: int, vel: int) -> None:
        """A note-on of the band (``part``: "chords", "bass" or "drums") at its own time within ``frame``."""
        self.journal.append({"e": "pn", "f": int(frame), "t": _t(time), "c": part, "p": int(pitch), "v": int(vel)})

    def note_off(self, frame: int, time: float, part: str, pitch: int) -> None:
        self.journal.append({"e": "pf", "f": int(frame), "t": _t(time), "c": part, "p": int(pitch)})

    def tempo(self, frame: int, time: float, bpm: float) -> None:
        """The jam's own clock goes to ``bpm`` from ``frame`` on (starting at ``time``): without this line the saved
        file would place everything after the change at the old tempo, off its beats."""
        self.journal.append({"e": "tempo", "f": int(frame), "t": _t(time), "bpm": float(bpm)})

    def grid(self, frame: int, time: float) -> None:
        """When ``frame`` started on an external clock, whose tempo is its source's (no tempo is known ahead): the
        saved file's tempo map is drawn through these times."""
        self.journal.append({"e": "grid", "f": int(frame), "t": _t(time)})

    def melody_token(self, frame: int, token: int) -> None:
        """The melody token the model was fed for ``frame`` (completes the token stream in the sidecar)."""
        self.journal.append({"e": "tok", "f": int(frame), "tok": int(token)})

    def stats(self, **counters: Any) -> None:
        """Timing counters so far, e.g. ``frames_planned=…, deadline_misses=…``; the latest values win."""
        self.journal.append({"e": "stats", **jsonable(counters)})

    def close(self, **stats: Any) -> None:
        """Write the closing line (with final counters, if given); idempotent."""
        self.journal.close(**({"stats": jsonable(stats)} if stats else {}))

    def save(self, midi_path: str | os.PathLike, **stats: Any) -> Path:
        """Write the MIDI file and its JSON sidecar, then close the journal (with final counters, if given);
        returns the MIDI path. In that order: a save that fails (a full disk, a refused path) leaves the journal
        unfinished, so the take is still offered by ``recover`` (or saved by a second ``save``)."""
        closing = closing_line(**({"stats": jsonable(stats)} if stats else {}))
        out = save_session(self.path, midi_path, closing=closing)
        self.journal.write_close(closing)
        return out

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
