"""``Knob``: one setting's limits, labels and command-line flag, the single declaration its flag, its GUI control,
its saved value and its range check come from. The tables of knobs are ``steering.KNOBS`` (decode-time
steering), ``options.PLAN_KNOBS`` / ``JAM_KNOBS`` / ``RUN_KNOBS`` (planning, the jam, how a command runs) and
``gui.settings.APP_KNOBS`` (the desktop app's own preferences)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

_KINDS = {"int": int, "float": float, "str": str, "bool": bool}


def shown(value: object) -> str:
    """A value as a message shows it: 4 not 4.0, 1e+04 never (ints in full), strings quoted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Knob:
    """One setting. ``name`` is its field (and its key in the saved settings); ``lo``/``hi`` an inclusive range
    (NaN is never in it) or ``choices`` the values allowed. ``kind`` and ``default`` come from the field that
    declares the setting (``declared``), or are given here for a flag that has no settings field."""

    name: str
    label: str  # a musician's words (the GUI)
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""  # after the value: "beats", "bpm"
    step: float = 1.0  # the GUI control's step
    decimals: int = 2  # the GUI control's decimals (a float knob)
    flag: str | None = ""  # the command-line flag: "" is --name-with-dashes, None none (the GUI's only)
    gui: bool = True  # a control in the window, and a saved setting of the app
    kind: type | None = None
    default: object = None

    @property
    def option(self) -> str | None:
        """The command-line flag, e.g. ``--count-in`` (None: the knob has none)."""
        if self.flag is None:
            return None
        return self.flag or f"--{self.name.replace('_', '-')}"

    @property
    def between(self) -> str:
        return f"{shown(self.lo)} and {shown(self.hi)}" + (f" {self.unit}" if self.unit else "")

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed (choices or range; NaN is never in a range), or None when it is."""
        if self.choices and value not in self.choices:
            return f"choose one of {', '.join(self.choices)}"
        if self.lo is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                        and self.lo <= value <= self.hi):
            return f"must be between {self.between}"
        return None

    def clamped(self, value: object, default: object = None) -> object:
        """``value`` forced into the range (of ``kind``), or ``default`` (the knob's own if not given) where it
        makes no sense: an unknown choice, a value that is no number, NaN."""
        default = self.default if default is None else default
        if self.choices:
            return value if value in self.choices else default
        if self.lo is None:
            return value
        kind = self.kind or type(default)
        try:
            number = float(value)
            if math.isnan(number):
                return default
            return kind(min(self.hi, max(self.lo, number)))
        except (TypeError, ValueError, OverflowError):
            return default


def clamp_all(knobs: tuple[Knob, ...], values: dict[str, object]) -> tuple[dict[str, object], list[str]]:
    """``values`` (by knob name) each forced into its knob's range or choices; a note for every value changed,
    naming the setting, the value, what is allowed and what is used instead."""
    new = {k.name: k.clamped(values[k.name]) for k in knobs}
    notes = [f"{k.label} {shown(values[k.name])}: {k.problem(values[k.name]) or 'not allowed'}; "
             f"{shown(new[k.name])} is used" for k in knobs if new[k.name] != values[k.name]]
    return new, notes


def declared(owner: type, *knobs: Knob) -> tuple[Knob, ...]:
    """The knobs of the settings dataclass ``owner``, each with the kind and default of its field (declared
    there once)."""
    defaults, types = owner(), {f.name: f.type for f in dataclasses.fields(owner)}
    out = []
    for k in knobs:
        annotation = types[k.name]
        name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        kind = _KINDS.get(name.replace(" | None", "").replace("None | ", "").strip())
        out.append(dataclasses.replace(k, kind=kind, default=getattr(defaults, k.name)))
    return tuple(out)
