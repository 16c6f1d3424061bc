"""Same take, other model: a recorded take's melody replayed through another model or steering preset, with
``comper rejam``'s semantics, saved beside the take as ``TAKE.vs-MODEL[-STEER].mid`` (a session of its own).

    comper compare TAKE.mid --model realchords [--steer safe] [-o OUT.mid]

Why a re-jam and not a re-harmonization: the question a player asks is "what would that model have played had I
played this to it?", so the other model hears the take's Melody track as it was played, on the same simulated
clock, causally, as live. Everything the take's sidecar says about how it was jammed (the seed, the planning
settings, the band, the tempo in the file) is kept; only what is named changes (the model, and the steering
preset when ``steer`` is given), so the two versions differ by that alone. The take is never rewritten.

Both versions are measured against the same melody frames with ``reharmonize.lane`` (harmony = note-in-chord
ratio, changes per bar, distinct chords), and the comparison's sidecar names its take (``comparison_of``), so the
replay view can draw both chord lanes side by side (``replay_lanes``) and the blind A/B (``app.prefs``) knows
which take two versions belong to.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .engine import steering
from .engine.bundle import resolve_model, shipped_bundles, shipped_teacher
from .engine.card import BundleError, Card
from .engine.midifile import read_melody
from .engine.options import BAND_KNOBS
from .engine.planner import PlanSettings
from .leadsheet.reharmonize import ChordLane, lane, session_chord_pcs
from .leadsheet.sheet import LeadSheetError, read_leadsheet
from .recording.output import (
    MIDI,
    OutputError,
    check_target,
    read_sidecar,
    sidecar_path,
    write_together,
)

MARK = ".vs-"  # TAKE.mid -> TAKE.vs-realchords.mid
SOURCE_KEYS = ("comparison_of", "second_opinion_of")  # sidecar fields naming the take a version was made from


@dataclass(frozen=True)
class Comparison:
    take: Path
    out: Path
    model: str
    steer: str | None  # the preset named (None: the take's own steering)
    seed: int
    take_lane: ChordLane
    other_lane: ChordLane


@dataclass(frozen=True)
class LaneView:
    """One version's chords as the replay view draws them: a title, its figures, (start, end, symbol) in frames."""

    title: str
    figures: ChordLane
    blocks: tuple[tuple[int, int, str], ...]
    playing: bool  # the version being replayed (drawn bright)


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_name(model: str | None) -> str:
    """The bundle's own name (a path given on the command line names the file, the card names the model)."""
    return Card.load(resolve_model(model)).name


def default_output(take: str | Path, model: str, steer: str | None = None) -> Path:
    take = Path(take)
    tag = re.sub(r"[^\w.+-]+", "_", model + (f"-{steer}" if steer else ""))
    return take.with_name(f"{take.stem}{MARK}{tag}{take.suffix or '.mid'}")


def source_of(midi: str | Path, side: dict | None = None) -> Path | None:
    """The take a comparison or second opinion was made from (beside it), or None for a take itself."""
    side = read_sidecar(midi) if side is None else side
    for key in SOURCE_KEYS:
        src = side.get(key)
        name = src.get("file") if isinstance(src, dict) else src
        if isinstance(name, str) and name and Path(name).name == name:
            return Path(midi).with_name(name)
    return None


def _take_plan(side: dict, steer: str | None, seed: int | None) -> PlanSettings:
    """The take's planning settings (a sidecar from another build: what cannot be read stays the default), with
    the steering preset ``steer`` and ``seed`` when given."""
    settings = side.get("settings") if isinstance(side.get("settings"), dict) else {}
    plan_d = settings.get("plan") if isinstance(settings.get("plan"), dict) else {}
    known = {f.name for f in fields(PlanSettings)} - {"steer", "bar_beats", "downbeat_frame"}
    plan = PlanSettings()
    numbers = {k: type(getattr(plan, k))(v) for k, v in plan_d.items()
               if k in known and isinstance(v, int | float) and not isinstance(v, bool)}
    plan = replace(plan, **numbers)
    take_steer = plan_d.get("steer")
    if steer is not None:
        plan = replace(plan, steer=steering.PRESETS[steer])
    elif isinstance(take_steer, dict):
        names = {f.name for f in fields(steering.SteerSettings)}
        try:
            plan = replace(plan, steer=steering.SteerSettings(**{k: v for k, v in take_steer.items() if k in names})
                           .checked())
        except (TypeError, ValueError):
            pass
    take_seed = side.get("seed")
    return replace(plan, seed=seed if seed is not None else take_seed if isinstance(take_seed, int) else 0)


def _take_band(side: dict) -> dict[str, object]:
    """The take's band (style, bass, drums), so only the model (and steering) differ."""
    settings = side.get("settings") if isinstance(side.get("settings"), dict) else {}
    was = settings.get("band") if isinstance(settings.get("band"), dict) else {}
    return {k.name: was[k.name] for k in BAND_KNOBS if k.choices and k.name in was and k.problem(was[k.name]) is None}


@lru_cache(maxsize=1)
def _shipped_symbols() -> dict[str, frozenset[int]]:
    for card in shipped_bundles():
        try:
            return symbols_of(Card.load(card))
        except BundleError:
            continue
    return {}


def symbols_of(card: Card) -> dict[str, frozenset[int]]:
    """Chord symbol -> pitch classes, from a card's vocabulary (the markers name chords by these symbols)."""
    return {t.symbol: frozenset(t.pitch_classes) for t in card.vocab.chord_info.values()}


def figures(sessions: list[Path], symbols: dict[str, frozenset[int]] | None = None) -> list[ChordLane]:
    """Each session's chords against the first one's melody frames (the versions of one take share it)."""
    symbols = symbols if symbols is not None else _shipped_symbols()
    sheet = read_leadsheet(sessions[0])
    frames = read_melody(sessions[0], track="Melody").frames
    pitches = [p for p, _ in frames]
    bar_frames = max(1, sheet.bar_ticks * 4 // sheet.ticks_per_beat)
    return [lane(pitches, session_chord_pcs(s, len(frames), symbols), bar_frames) for s in sessions]


def compare(take: str | Path, model: str | None = None, steer: str | None = None, out: str | Path | None = None,
            seed: int | None = None) -> Comparison:
    """Re-jam the take's melody with ``model`` (``steer``: a preset of ``steering.PRESETS``; None keeps the
    take's), write it beside the take (``out``, default ``default_output``) and measure both versions. A
    comparison or second opinion given as ``take`` stands for its take (the same melody), when that lies beside it.
    ``LeadSheetError`` / ``MidiFileError`` / ``OutputError`` / ``BundleError``: one line naming what is wrong."""
    from .engine.rejam import rejam
    from .engine.teacher import OnnxTeacher

    take = Path(take)
    root = source_of(take)
    take = root if root is not None and root.is_file() else take
    if steer is not None and steer not in steering.PRESETS:
        raise steering.SteeringError(f"--steer {steer!r}: one of {', '.join(steering.PRESETS)}")
    read_leadsheet(take)  # refuses a file that is not a session, in one line, before a model loads
    melody = read_melody(take, track="Melody")
    card = Card.load(resolve_model(model))
    out = Path(out) if out is not None else default_output(take, card.name, steer)
    check_target(out, MIDI, inputs=[take])
    if out.resolve() == take.resolve():
        raise OutputError(f"{out}: not written: it is the take; the comparison goes beside it, not over it")
    side = read_sidecar(take)
    plan = _take_plan(side, steer, seed)
    teacher_bundle = shipped_teacher() if plan.listen_beats > 0 else None
    teacher = OnnxTeacher(teacher_bundle) if teacher_bundle is not None else None
    done = rejam(take, str(resolve_model(model)), out, plan, track="Melody", teacher=teacher, melody=melody,
                 band=_take_band(side))
    take_lane, other_lane = figures([take, done.out], symbols_of(card))
    new_side = read_sidecar(done.out)
    new_side["comparison_of"] = {"file": take.name, "sha256": sha256_of(take)}
    new_side["steering_preset"] = steer or steering_preset(side)
    new_side["figures"] = {"take": _figures_dict(take_lane), "comparison": _figures_dict(other_lane)}
    text = json.dumps(new_side, indent=1, ensure_ascii=False) + "\n"
    write_together([(sidecar_path(done.out), lambda f: f.write(text.encode()))])
    return Comparison(take, done.out, card.name, steer, plan.seed, take_lane, other_lane)


def _figures_dict(c: ChordLane) -> dict[str, Any]:
    return {"harmony": c.harmony, "changes_per_bar": round(c.changes_per_bar, 3), "distinct_chords": c.distinct}


def steering_preset(side: dict) -> str | None:
    """The steering preset a session was made with (its own rhythm and key choices aside), "custom" for settings
    no preset has, None when the sidecar does not say."""
    if isinstance(side.get("steering_preset"), str):
        return side["steering_preset"]
    settings = side.get("settings") if isinstance(side.get("settings"), dict) else {}
    plan = settings.get("plan") if isinstance(settings.get("plan"), dict) else {}
    raw = plan.get("steer") if "steer" in plan else side.get("steering", "missing")
    if raw == "missing":
        return None
    if raw is None:
        return "off"
    if not isinstance(raw, dict):
        return "custom"
    try:
        s = steering.SteerSettings(**{k: v for k, v in raw.items() if k in {f.name for f in fields(steering.SteerSettings)}})
    except TypeError:
        return "custom"
    return steering.preset_of(s) or steering.preset_of(replace(s, rhythm="auto", key="auto")) or "custom"


def version_title(midi: str | Path, side: dict | None = None) -> str:
    """"gapt (balanced)": the model and steering a version was made with, as the lanes and the A/B name it."""
    side = read_sidecar(midi) if side is None else side
    model = side.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    preset = steering_preset(side)
    return f"{name or '?'}" + (f" ({preset})" if preset else "")


def _blocks(path: Path) -> tuple[tuple[int, int, str], ...]:
    sheet = read_leadsheet(path)
    per_frame = sheet.ticks_per_beat / 4
    end = round(sheet.n_bars * sheet.bar_ticks / per_frame)
    changes = [(round(t / per_frame), s) for t, s in sheet.chords]
    return tuple((start, changes[i + 1][0] if i + 1 < len(changes) else end, s)
                 for i, (start, s) in enumerate(changes) if s is not None)


def replay_lanes(midi: str | Path) -> list[LaneView]:
    """The take's lane and this version's, when ``midi`` is a comparison (or a second opinion) whose take lies
    beside it; [] otherwise (a take alone has one lane: the waterfall's own)."""
    midi = Path(midi)
    side = read_sidecar(midi)
    take = source_of(midi, side)
    if take is None or not take.is_file():
        return []
    try:
        take_lane, this_lane = figures([take, midi])
        return [LaneView(f"take: {version_title(take)}", take_lane, _blocks(take), False),
                LaneView(version_title(midi, side), this_lane, _blocks(midi), True)]
    except (LeadSheetError, OSError, ValueError):
        return []
