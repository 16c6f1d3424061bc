"""Decode-time steering: log-priors and masks on the chord logits, so the chords a policy plays keep a musician's
harmonic rhythm, stay in the key of the tune and fit the melody, whatever the weights learned.

Everything here acts on the logits *before* sampling (a mask is a -inf prior); nothing rewrites a sampled chord.
The policy's own distribution, scaled by the temperature, stays the base: ``logits / T + prior``. Four parts:

* **Harmonic rhythm** (``rhythm``): where a chord may change. ``any`` (every 16th), ``beat``, ``half`` (bar and
  half bar), ``bar``, or ``auto``: on beats, with a cost for changing that grows from the bar line to the half bar
  to the other beats (``change_cost`` nats at the bar line, +0.5 and +1 nat further down), so chords change about
  as often, and where, the songs of the data change them (chosen on the validation split). Off the grid the chord
  is held (mask). A model's card may calibrate it (``steering.change_cost_offset``, added to the player's cost):
  the presets were chosen on one model, and another may hold its chords longer.
* **Key** (``key``, ``key_strength``): ``auto`` follows the key of the melody heard so far (``key.KeyTracker``);
  a key name (``C``, ``F#m``) fixes it; ``off``. Each chord tone outside the key costs ``key_strength`` nats,
  faded in over the first two bars of melody while the estimate firms up.
* **Melody fit** (``melody_fit``): a chord gains up to ``melody_fit`` nats by the share of the recent melody (the
  last two beats, heard and imagined) that its tones cover; and up to ``tonal_fit`` nats by the share of the
  whole tune heard so far (the key tracker's decaying pitch-class profile) it covers: the notes a tune keeps
  returning to are the best guess of the notes still to come under a chord promised beats ahead.
* **Plan search** (``candidates``): at a frame where the chord may change, K chords are drawn from the steered
  distribution and the one that fits best (key, melody and tune; not the policy's own score, which favours
  holding the chord and would freeze it) is committed, the first drawn on a tie. K = 1 is plain sampling.

Adding a knob: one field on ``SteerSettings`` with a ``Knob`` entry in ``KNOBS`` (its limits, label and help), and
the code that uses it below. The command-line flags, the GUI controls and the saved settings are derived from
``KNOBS``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ComperError
from .card import Card
from .key import ALL_KEYS, Key, KeyTracker
from .knobs import Knob, declared

FRAMES_PER_BEAT = 4
RHYTHMS = ("auto", "any", "beat", "half", "bar")
FIT_WINDOW_FRAMES = 8  # the recent melody a chord should fit: two beats
AUTO_EXTRA_COST = {"bar": 0.0, "half": 0.5, "beat": 1.0}  # on top of change_cost, by metrical position


class SteeringError(ComperError, ValueError):
    """A steering value out of range or unknown; the message names the setting."""


@dataclass(frozen=True)
class SteerSettings:
    """The defaults are the "balanced" preset, chosen on the validation split (models/README.md, "Steering")."""

    rhythm: str = "auto"
    change_cost: float = 0.0
    key: str = "auto"
    key_strength: float = 1.5
    melody_fit: float = 2.0
    tonal_fit: float = 4.0
    candidates: int = 3

    @property
    def is_off(self) -> bool:
        return self == STEER_OFF

    def checked(self) -> SteerSettings:
        """This, or ValueError naming the setting that is out of range."""
        for knob in KNOBS:
            v = getattr(self, knob.name)
            if (why := knob.problem(v)) is not None:
                raise SteeringError(f"steering {knob.name} {v if knob.lo is not None else repr(v)}: {why}")
        if self.key not in ("auto", "off"):
            try:
                Key.parse(self.key)
            except ValueError as e:
                raise SteeringError(f"steering {e}") from None
        return self

    def clamped(self) -> SteerSettings:
        """Every value forced into its range (a saved setting from another build), defaults where it makes no sense."""
        out = {k.name: k.clamped(getattr(self, k.name)) for k in KNOBS if k.lo is not None or k.choices}
        key = self.key if isinstance(self.key, str) else "auto"
        try:
            key = key if key in ("auto", "off") else Key.parse(key).name
        except ValueError:
            key = "auto"
        return replace(self, **out, key=key)


KNOBS: tuple[Knob, ...] = declared(
    SteerSettings,
    Knob("rhythm", "Chord changes", "where a chord may change: auto (beats, preferring bar lines), any 16th, "
         "beat, half (bar and half bar) or bar", choices=RHYTHMS),
    Knob("change_cost", "Change reluctance", "nats against changing chord at a bar line (auto adds more for weaker "
         "beats); higher: fewer changes, below 0: eager to change", -4.0, 8.0),
    Knob("key", "Key", "auto (follow the melody), off, or a key to stay in: C, F#, Bb, Am ..."),
    Knob("key_strength", "Stay in key", "nats per chord tone outside the key; 0: off", 0.0, 8.0),
    Knob("melody_fit", "Melody fit", "nats for a chord whose tones hold all of the recent melody", 0.0, 8.0),
    Knob("tonal_fit", "Tune fit", "nats for a chord whose tones hold all of the tune heard so far", 0.0, 8.0),
    Knob("candidates", "Plan search", "chords drawn at each change point; the best steered one is played "
         "(1: plain sampling)", 1, 16),
)


STEER_OFF = SteerSettings(rhythm="any", change_cost=0.0, key="off", key_strength=0.0, melody_fit=0.0, tonal_fit=0.0,
                          candidates=1)
# "Safe <-> adventurous": one control that drives all the weights. "balanced" is the default, chosen on the
# validation split (models/README.md, "Steering"); never on the test songs.
PRESETS: dict[str, SteerSettings] = {
    "off": STEER_OFF,
    "adventurous": SteerSettings(key_strength=1.0, tonal_fit=2.0, candidates=1),
    "balanced": SteerSettings(),
    "safe": SteerSettings(change_cost=0.5, key_strength=3.0, candidates=8),
}
DEFAULT_PRESET = "balanced"


def preset_of(s: SteerSettings) -> str | None:
    return next((name for name, p in PRESETS.items() if p == s), None)


def compose(preset: str, rhythm: str = "auto", key: str = "auto") -> SteerSettings:
    """What the GUI's three controls mean together: the safe <-> adventurous preset, with the player's choice of
    where chords change and which key to stay in (``off`` ignores both: the raw policy)."""
    if preset == "off":
        return STEER_OFF
    return replace(PRESETS.get(preset, PRESETS[DEFAULT_PRESET]), rhythm=rhythm, key=key).clamped()


RHYTHM_LABELS = {"auto": "auto (like the songs)", "any": "any 16th", "beat": "every beat", "half": "half bar",
                 "bar": "each bar"}


# --- command line (derived from KNOBS) -----------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--steer PRESET`` and one flag per knob (overriding the preset)."""
    g = p.add_argument_group("steering (decode-time priors on the chord logits)")
    g.add_argument("--steer", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help=f"safe <-> adventurous preset (default {DEFAULT_PRESET}); 'off': the raw policy")
    for knob in KNOBS:
        g.add_argument(knob.option, dest=f"steer_{knob.name}", type=knob.kind, default=None,
                       choices=knob.choices, help=knob.help)


def from_args(args: argparse.Namespace) -> SteerSettings:
    """The preset named by ``--steer`` with every knob flag given on top; ValueError names a bad value."""
    over = {k.name: getattr(args, f"steer_{k.name}") for k in KNOBS if getattr(args, f"steer_{k.name}", None) is not None}
    return replace(PRESETS[getattr(args, "steer", DEFAULT_PRESET)], **over).checked()


# --- the priors ----------------------------------------------------------------------------------------------------

class Steerer:
    """Turns settings + what the planner knows at frame g (previous chord, key, recent melody) into a prior [V]."""

    def __init__(self, card: Card, settings: SteerSettings, bar_beats: float = 4.0, downbeat_frame: int = 0) -> None:
        self.s = settings.checked()
        self.change_cost_offset = card.change_cost_offset  # the model's calibration (card ``steering``)
        vocab = card.vocab
        v = len(vocab)
        self.silence = vocab.silence
        self.chord_of = np.full(v, -1, np.int64)  # chord index of a chord token, -1 otherwise
        self.onset = np.zeros(v, bool)
        self.pcs = np.zeros((vocab.n_chords, 12), bool)
        for t in vocab.chord_info.values():
            self.chord_of[t.id] = t.chord
            self.onset[t.id] = t.is_onset
            self.pcs[t.chord, list(t.pitch_classes)] = True
        self.is_chord = self.chord_of >= 0
        # chord tones outside each key: [24 keys, chords]
        self.out_of_key = np.stack([(self.pcs & ~k.scale()).sum(1) for k in ALL_KEYS]).astype(float)
        self.bar_frames = max(1, int(round(bar_beats * FRAMES_PER_BEAT)))
        self.downbeat = downbeat_frame
        self.fixed_key = None if self.s.key in ("auto", "off") else Key.parse(self.s.key)
        self.tracker = KeyTracker()

    # what the planner tells it
    def hear(self, pitch: int) -> None:
        """A real melody frame (imagined ones never move the key)."""
        self.tracker.hear(pitch)

    @property
    def key(self) -> Key | None:
        """The key the prior uses now (None: off, or nothing heard yet)."""
        if self.s.key == "off":
            return None
        return self.fixed_key or self.tracker.key

    def position(self, g: int) -> str:
        """Metrical position of frame g: bar | half | beat | off."""
        r = (g - self.downbeat) % self.bar_frames
        if r == 0:
            return "bar"
        if self.bar_frames % 2 == 0 and r == self.bar_frames // 2:
            return "half"
        return "beat" if r % FRAMES_PER_BEAT == 0 else "off"

    def change_cost(self, g: int) -> float | None:
        """Nats against a chord change at frame g; None: no change allowed there."""
        pos, rhythm, c = self.position(g), self.s.rhythm, self.s.change_cost + self.change_cost_offset
        if rhythm == "any":
            return c
        if pos == "off":
            return None
        if rhythm == "auto":
            return c + AUTO_EXTRA_COST[pos]
        allowed = {"beat": ("bar", "half", "beat"), "half": ("bar", "half"), "bar": ("bar",)}[rhythm]
        return c if pos in allowed else None

    def fit(self, recent_melody: list[int]) -> np.ndarray:
        """How well each token's chord fits the key, the recent melody and the tune heard so far, in nats [V]
        (0 for silence and non-chord tokens)."""
        s = self.s
        chord_score = np.zeros(len(self.pcs))
        key = self.key
        if key is not None and s.key_strength > 0:
            weight = 1.0 if self.fixed_key else self.tracker.confidence
            chord_score -= s.key_strength * weight * self.out_of_key[key.index]
        pitches = [p for p in recent_melody[-FIT_WINDOW_FRAMES:] if p >= 0]
        if pitches and s.melody_fit > 0:
            hist = np.bincount(np.asarray(pitches) % 12, minlength=12).astype(float)
            chord_score += s.melody_fit * (self.pcs @ hist) / hist.sum()
        tune = self.tracker.histogram
        if s.tonal_fit > 0 and tune.sum() > 0:
            chord_score += s.tonal_fit * self.tracker.confidence * (self.pcs @ tune) / tune.sum()
        return np.where(self.is_chord, chord_score[np.maximum(self.chord_of, 0)], 0.0)

    def prior(self, g: int, previous: int | None, recent_melody: list[int],
              fit: np.ndarray | None = None) -> np.ndarray | None:
        """Log-prior [V] for the chord slot of frame g (add to logits / T): the fit plus the harmonic rhythm's
        mask and change costs. ``previous``: the chord-slot token of frame g - 1 (None at the start);
        ``recent_melody``: MIDI pitches (or -1) of the frames before g, oldest first, heard and imagined.
        None when steering is off (sampling is then exactly the raw policy's)."""
        if self.s.is_off:
            return None
        prior = (self.fit(recent_melody) if fit is None else fit).copy()
        prev_chord = -1 if previous is None or previous == self.silence else int(self.chord_of[previous])
        # a change: a chord onset other than the sounding chord, or silence after a chord
        change = self.is_chord & self.onset & (self.chord_of != prev_chord)
        if prev_chord >= 0:
            change[self.silence] = True
        restrike = self.onset & (self.chord_of == prev_chord) & (prev_chord >= 0)
        cost = self.change_cost(g)
        if cost is None:
            prior[change | restrike] = -np.inf
        else:
            prior[change] -= cost
        return prior

    def is_change_point(self, g: int) -> bool:
        return self.change_cost(g) is not None
