"""Settings declared once. ``JamSettings`` is the one type of what shapes a jam: tempo, meter and count-in, the
planner's ``PlanSettings`` and the ``VoicingSettings``, nested. Every number a user can set has one entry in a
table of ``Knob`` s (``knobs.py``: name, label, help, range, unit, flag; its type and default are its field's):

* ``PLAN_KNOBS``: the planner's settings (``PlanSettings``; the decode-time steering has ``steering.KNOBS``);
* ``JAM_KNOBS``: the jam's own (``JamSettings``);
* ``BAND_KNOBS``: how the band plays (``JamSettings``: comping style, bass line, drums, dynamics range), flags of
  ``comper jam`` / ``rejam`` / ``render``, the GUI's style pickers (choices-style knobs: ``choices``, not a range);
* ``RUN_KNOBS``: how a terminal command runs (``comper jam --seconds``, ``--threads``, ``bench --frames``, the
  input limits of ``rejam`` / ``render``); no GUI control;
* ``RULES``: what must hold between two knobs (the committed part of a plan is at most the plan).

From these come, with nothing declared again: the command-line flags of ``comper jam`` / ``rejam`` / ``bench``
(and ``comper-train eval --protocol live``), each value's range check (``check_args``: one line naming the flag,
the value and the range, exit status 2, before anything opens or loads; ``--temperature nan`` or ``--bpm 0`` used
to be taken or end in a traceback), ``plan_from_args`` / ``JamSettings.from_args``, the desktop app's controls
(``gui/transport.py`` lays out every ``gui`` knob with its range, step and unit) and its saved settings
(``gui/settings.py``: stored under the knob's name, a saved value out of range clamped with a note).

Adding a knob, e.g. a new planning setting:

1. a field with its default on ``PlanSettings`` (``app/engine/planner.py``), and the code there that uses it
   (a jam-wide setting: a field on ``JamSettings`` below);
2. its ``Knob`` in ``PLAN_KNOBS`` (``JAM_KNOBS``): label, help, ``lo``/``hi``, unit, GUI step; ``flag=None`` for
   one with no command-line flag, ``gui=False`` for one the window does not show (nor save);
3. a rule with another knob, if there is one, in ``RULES``.

Nothing else: ``tests/test_options.py`` checks that every entry is a flag of the commands it belongs to with
the table's type, default and range, ``tests/test_gui.py`` that every ``gui`` one is a control of the window with
the same range.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import ComperError
from . import steering
from .bass import BASS_LINES, DEFAULT_BASS
from .drums import DRUM_CHOICES
from .knobs import Knob, clamp_all, declared, shown
from .midifile import InputLimits
from .planner import PlanSettings
from .styles import DEFAULT_STYLE, STYLES
from .voicing import VoicingSettings


class OptionError(ComperError, ValueError):
    """An option out of its range; the message names the flag (or setting), the value and the range."""


@dataclass(frozen=True)
class JamSettings:
    bpm: float = 100.0
    meter: tuple[int, int] = (4, 4)
    count_in_bars: int = 1
    plan: PlanSettings = PlanSettings()
    voicing: VoicingSettings = VoicingSettings()
    chord_velocity: int = 72
    bass_velocity: int = 84
    realtime: bool = True  # ask the OS for real-time priority for the scheduler thread (ignored if not allowed)
    style: str = DEFAULT_STYLE  # the comping style (styles.STYLES)
    bass: str = DEFAULT_BASS  # the bass line (bass.BASS_LINES)
    drums: str = "off"  # the drum groove (drums.DRUM_CHOICES; auto: the style's)
    dynamics_low: int = 30  # the band's velocities stay within these, following the player's
    dynamics_high: int = 115

    @property
    def count_in_beats(self) -> float:
        """In quarter notes (the clock's beat): a bar of 6/8 is three of them."""
        return self.count_in_bars * self.meter[0] * 4 / self.meter[1]

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> JamSettings:
        """The settings the flags of ``add_plan_arguments`` and ``add_arguments(p, JAM_KNOBS)`` (and ``--meter``)
        describe; ``OptionError`` / ``SteeringError`` (ValueErrors) name a bad value."""
        values = _values_from_args(args, JAM_KNOBS) | _values_from_args(args, BAND_KNOBS)
        if getattr(args, "meter", None) is not None:
            values["meter"] = tuple(args.meter)
        return replace(cls(**values, plan=plan_from_args(args)), **overrides)


PLAN_KNOBS: tuple[Knob, ...] = declared(
    PlanSettings,
    Knob("listen_beats", "Listen first", "beats the player plays alone first", 0.0, 64.0, unit="beats",
         flag="--listen", decimals=1),
    Knob("lookahead_beats", "Lookahead", "beats planned ahead", 0.25, 16.0, unit="beats", step=0.5,
         flag="--lookahead"),
    Knob("commit_beats", "Commit", "beats of the plan that are frozen", 0.25, 16.0,
         unit="beats", step=0.5, flag="--commit"),
    Knob("temperature", "Temperature", "sampling temperature: 0 plays the likeliest chord, higher ones take more "
         "chances", 0.0, 3.0, step=0.05),
    Knob("seed", "Seed", "the sampler's seed (the desktop app draws a new one for every jam)", 0, 2**32 - 1,
         gui=False),
    Knob("top_p", "Nucleus", "draw only from the likeliest chords whose probabilities add up to this (1: from all "
         "the grammar allows): trims the rare, out-of-place chords a high temperature lets in", 0.05, 1.0, gui=False),
    Knob("top_k", "Top k", "draw only from the k likeliest chords (0: no limit)", 0, 200, gui=False),
)

JAM_KNOBS: tuple[Knob, ...] = declared(
    JamSettings,
    Knob("bpm", "Tempo", "tempo in beats per minute", 30.0, 300.0, unit="bpm", decimals=1),
    Knob("count_in_bars", "Count-in", "bars of count-in before frame 0", 0, 4, unit="bar(s)", flag="--count-in"),
)

BAND_KNOBS: tuple[Knob, ...] = declared(
    JamSettings,
    Knob("style", "Band style", "how the chords are played: " + "; ".join(f"{k}: {v.label}" for k, v in STYLES.items()),
         choices=tuple(STYLES)),
    Knob("bass", "Bass", "the bass line: " + "; ".join(f"{k}: {v.label}" for k, v in BASS_LINES.items()),
         choices=tuple(BASS_LINES)),
    Knob("drums", "Drums", "a General MIDI drum groove on channel 10 (auto: the one that suits the style; off: none)",
         choices=DRUM_CHOICES),
    Knob("dynamics_low", "Softest", "the band's softest velocity (it follows the player's, smoothed)", 1, 127),
    Knob("dynamics_high", "Loudest", "the band's loudest velocity (it follows the player's, smoothed)", 1, 127),
)

RUN_KNOBS: tuple[Knob, ...] = (
    Knob("seconds", "Length", "stop after this long", 0.1, 24 * 3600.0, unit="seconds",
         gui=False, kind=float),
    Knob("threads", "Threads", "onnxruntime threads", 1, 64, gui=False, kind=int, default=1),
    Knob("frames", "Frames", "frames to plan", 1, 1_000_000, gui=False, kind=int, default=2000),
) + declared(
    InputLimits,
    Knob("max_minutes", "Longest input", f"refuse an input longer than this (and any file over "
         f"{InputLimits().max_bytes // 2**20} MB)", 0.01, 24 * 60.0, unit="minutes",
         gui=False),
    Knob("max_frames", "Longest melody", "refuse a melody longer than this many 16ths", 1, 10_000_000,
         gui=False),
)

GUI_KNOBS: tuple[Knob, ...] = tuple(k for k in JAM_KNOBS + PLAN_KNOBS if k.gui)


@dataclass(frozen=True)
class AtMost:
    """A rule between two knobs of one settings object: ``name`` may not exceed ``limit``. A ``name`` flag left
    out follows ``limit`` down (its default, or the limit if that is less), as it always did."""

    name: str
    limit: str
    why: str


RULES: tuple[AtMost, ...] = (
    AtMost("commit_beats", "lookahead_beats", "only chords already planned can be promised"),
)


def knob(name: str) -> Knob:
    """The knob of that name, in any table."""
    return next(k for k in JAM_KNOBS + PLAN_KNOBS + RUN_KNOBS + BAND_KNOBS if k.name == name)


def dest(k: Knob) -> str:
    """The attribute its flag gives in argparse's namespace (``--count-in``: ``count_in``)."""
    return k.option.lstrip("-").replace("-", "_")


# --- the command line ----------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser, knobs: tuple[Knob, ...] | list[Knob],
                  defaults: Mapping[str, object] | None = None, unset: Mapping[str, str] | None = None) -> None:
    """One flag per knob (by name: ``defaults`` overrides the table's default, ``unset`` says what a flag left
    out means when its default is None)."""
    defaults, unset = defaults or {}, unset or {}
    follows = {r.name: knob(r.limit) for r in RULES}
    for k in knobs:
        default = defaults.get(k.name, None if k.name in follows else k.default)
        said = f"default {shown(default)}" if default is not None else unset.get(k.name, "")
        if k.name in follows and k.name not in defaults:
            said = f"default {shown(k.default)}, or {follows[k.name].option} if less"
        if k.choices:
            p.add_argument(k.option, dest=dest(k), type=k.kind, default=default, choices=k.choices,
                           help=f"{k.help} ({said or 'default ' + shown(k.default)})")
            continue
        p.add_argument(k.option, dest=dest(k), type=k.kind, default=default,
                       help=f"{k.help} (between {k.between}{'; ' + said if said else ''})")


def add_plan_arguments(p: argparse.ArgumentParser, listen: float = 8.0, has_seed_and_temperature: bool = False) -> None:
    """Every ``PLAN_KNOBS`` flag (``has_seed_and_temperature``: the parser declares those two itself) and the
    steering flags."""
    own = ("seed", "temperature") if has_seed_and_temperature else ()
    add_arguments(p, [k for k in PLAN_KNOBS if k.name not in own], {"listen_beats": listen})
    steering.add_arguments(p)


def check_args(args: argparse.Namespace, knobs: tuple[Knob, ...] | None = None) -> None:
    """``OptionError`` for the first flag out of its range (of ``knobs``; default: every table) or a rule between
    two flags given that does not hold. Flags a command does not have are not looked at."""
    given, knobs = vars(args), JAM_KNOBS + PLAN_KNOBS + RUN_KNOBS + BAND_KNOBS if knobs is None else knobs
    for k in knobs:
        value = given.get(dest(k))
        if value is not None and (why := k.problem(value)) is not None:
            raise OptionError(f"{k.option} {value}: {why}")
    check_rules({k.name: given[dest(k)] for k in knobs if given.get(dest(k)) is not None})


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``p.parse_args(argv)`` with every number checked against its range (``check_args``): a bad one is
    argparse's own error (status 2)."""
    args = p.parse_args(argv)
    try:
        check_args(args)
    except OptionError as e:
        p.error(str(e))
    return args


def check_rules(named: Mapping[str, object]) -> None:
    """``OptionError`` for a rule of ``RULES`` that the values (by knob name) break."""
    for rule in RULES:
        a, b = knob(rule.name), knob(rule.limit)
        if rule.name in named and rule.limit in named and named[rule.name] > named[rule.limit]:
            raise OptionError(f"{a.option} {named[rule.name]}: must be at most {b.option} ({named[rule.limit]}): "
                              f"{rule.why}")


def _values_from_args(args: argparse.Namespace, knobs: tuple[Knob, ...]) -> dict[str, object]:
    """Field values of the flags given (a flag left out, or None: the field keeps its default)."""
    check_args(args, knobs)
    given = vars(args)
    return {k.name: given[dest(k)] for k in knobs if k.option and given.get(dest(k)) is not None}


def plan_from_args(args: argparse.Namespace, **overrides) -> PlanSettings:
    """The ``PlanSettings`` the flags of ``add_plan_arguments`` describe (``OptionError`` / ``SteeringError``,
    both ValueErrors, name a bad value)."""
    given = _values_from_args(args, PLAN_KNOBS)
    for rule in RULES:  # a flag left out follows its limit down
        if rule.name not in given and knob(rule.name) in PLAN_KNOBS:
            given[rule.name] = min(knob(rule.name).default, given.get(rule.limit, knob(rule.limit).default))
    plan = PlanSettings(**given, steer=steering.from_args(args))
    check_rules(values_of(plan, PLAN_KNOBS))
    return replace(plan, **overrides)


# --- settings objects (the GUI) ------------------------------------------------------------------------------------

def values_of(obj: object, knobs: tuple[Knob, ...]) -> dict[str, object]:
    """Name -> value of every knob, read from ``obj`` (a ``PlanSettings``, a ``JamSettings``)."""
    return {k.name: getattr(obj, k.name) for k in knobs}


def values(jam: JamSettings, knobs: tuple[Knob, ...] = GUI_KNOBS) -> dict[str, object]:
    """Name -> value of every knob of ``knobs`` (the planning ones read from ``jam.plan``)."""
    return {k.name: getattr(jam.plan if k in PLAN_KNOBS else jam, k.name) for k in knobs}


def with_values(jam: JamSettings, new: Mapping[str, object]) -> JamSettings:
    """``jam`` with the knobs named in ``new`` set (each in its part: ``jam`` or ``jam.plan``)."""
    own = {k.name: new[k.name] for k in JAM_KNOBS + BAND_KNOBS if k.name in new}
    plan = {k.name: new[k.name] for k in PLAN_KNOBS if k.name in new}
    return replace(jam, **own, plan=replace(jam.plan, **plan))


def clamped(jam: JamSettings, knobs: tuple[Knob, ...] = GUI_KNOBS) -> tuple[JamSettings, list[str]]:
    """Every value of ``knobs`` forced into its range and every rule made to hold (a saved setting from another
    build, or edited by hand); a note for each value changed."""
    new, notes = clamp_all(knobs, values(jam, knobs))
    for rule in RULES:
        if rule.name in new and rule.limit in new and new[rule.name] > new[rule.limit]:
            a, b = knob(rule.name), knob(rule.limit)
            notes.append(f"{a.label} {shown(new[a.name])}: more than the {b.label.lower()} ({rule.why}); "
                         f"{shown(new[b.name])} is used")
            new[rule.name] = new[rule.limit]
    return with_values(jam, new), notes
