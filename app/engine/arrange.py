"""The arranger: committed chord tokens in, the notes of every frame out (chords, bass, drums), precomputed.

Why precomputed: the scheduler thread must stay a clock. The planner promises (commits) chords a few beats ahead;
as soon as a frame and the beat after it are committed, the arranger works out that frame's notes (which pitches
to release, which to strike, how late within the frame for swing and humanize, at what velocity factor) into a
``FramePlan``. Playing a frame is then a table look-up (``ChordPerformer.play``). A plan is only used if it was
made from the chord that really sounds and from the state the previous frame really left (a late plan, a model
switch, a panic); otherwise the frame is worked out on the spot, the same way.

Only committed chords are ever looked at (the walking bass's next root included): ``prepare`` is given the
promised plan, never the tentative one.

The style, bass line and drum groove are data (``styles.py``, ``bass.py``, ``drums.py``). Humanize is seeded by
the jam's seed and the frame alone (a hash, no shared random stream), so the same seed gives the same take
whether a frame was precomputed or worked out late.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .bass import BASS_LINES, DEFAULT_BASS, approach, chord_tones, nearest
from .drums import ENTRY, FILL, pattern_for
from .styles import DEFAULT_STYLE, STEPS_PER_BAR, STYLES, Hit, metric_accent, swing_offset
from .vocab import Vocabulary
from .voicing import Voicing, VoicingSettings, revoice, voice

PART_CHORDS, PART_BASS, PART_DRUMS = "chords", "bass", "drums"
WALK_LOW, WALK_HIGH = -4, 7  # the walking line's range around the voicing's bass range
Note = tuple[str, int]  # (part, pitch)


@dataclass(frozen=True)
class Arrangement:
    """How the band plays: the names of the style, bass line and drum groove, and what the patterns are laid on
    (the meter, the listen-first intro, the seed, the tempo)."""

    style: str = DEFAULT_STYLE
    bass: str = DEFAULT_BASS
    drums: str = "off"
    meter: tuple[int, int] = (4, 4)
    listen: int = 0  # frames of listen-first intro (the drum fill comes in the bar before it ends)
    seed: int = 0
    bpm: float = 100.0

    @classmethod
    def of(cls, settings) -> Arrangement:
        """The arrangement a ``JamSettings`` describes."""
        return cls(settings.style, settings.bass, settings.drums, tuple(settings.meter), settings.plan.listen,
                   settings.plan.seed, settings.bpm)

    @property
    def is_plain(self) -> bool:
        """Today's sound: a held pad over a held root, no drums."""
        return (self.style, self.bass, self.drums) == (DEFAULT_STYLE, DEFAULT_BASS, "off")


@dataclass(frozen=True)
class ArrState:
    """What one frame leaves to the next (immutable: a precomputed plan says which state it started from)."""

    chord: int | None = None  # the chord index sounding (None: silence)
    start: int = 0  # the frame it was struck
    voicing: Voicing | None = None
    last_voicing: Voicing | None = None  # for voice leading across rests
    bass: int | None = None  # the last bass note struck
    sounding: tuple[tuple[str, int, int | None], ...] = ()  # (part, pitch, frame it ends or None: at the change)


@dataclass(frozen=True)
class FramePlan:
    frame: int
    token: int
    offs: tuple[Note, ...]  # released at the frame's start
    ons: tuple[tuple[float, str, int, float, int], ...]  # (seconds after the frame's start, part, pitch, gain, +vel)
    chord: tuple[str | None, tuple[int, ...], int | None] | None  # (symbol, voicing, bass) when the chord changes
    struck: bool  # a chord was struck (not a hold, not silence)
    before: ArrState
    after: ArrState = field(default_factory=ArrState)


def _unit(seed: int, *keys: int) -> float:
    """A number in [0, 1) from the seed and the keys: splitmix64, so every frame's humanize is its own."""
    x = (seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    for k in keys:
        x = (x ^ (k & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x / 2.0**64


class Arranger:
    """Works out frame plans one frame after another (``step``); holds no state itself."""

    def __init__(self, vocab: Vocabulary, arrangement: Arrangement = Arrangement(),
                 voicing: VoicingSettings = VoicingSettings()) -> None:
        self.vocab, self.a, self.voicing = vocab, arrangement, voicing
        self.style = STYLES[arrangement.style]
        self.line = BASS_LINES[arrangement.bass]
        self.groove = pattern_for(arrangement.drums, self.style.drums)
        self.bar = max(1, round(arrangement.meter[0] * 16 / arrangement.meter[1]))
        self.frame_s = 60.0 / (arrangement.bpm * 4)
        self.lookahead = 4 if self.line.approach else 0  # frames of committed plan a frame needs to be precomputed
        self.hits: dict[int, list[Hit]] = {}
        for h in self.style.hits:
            self.hits.setdefault(h.step, []).append(h)
        self.bass_hits = {h.step: h for h in self.line.hits}
        self.drum_hits: dict[int, list[tuple[int, float]]] = {}
        for s, note, gain in self.groove.hits if self.groove else ():
            self.drum_hits.setdefault(s, []).append((note, gain))
        self.swing = self.style.swing
        self.drum_swing = max(self.style.swing, self.groove.swing if self.groove else 0.0)

    # --- one frame ------------------------------------------------------------------------------------------

    def step(self, state: ArrState, g: int, token: int, upcoming: Mapping[int, int]) -> FramePlan:
        """The plan of frame ``g`` sounding ``token`` after ``state``; ``upcoming``: committed tokens of the
        frames after it (the walking bass looks a beat ahead; a frame missing there is not known yet)."""
        info = self.vocab.chord_info.get(token)
        chord = info.chord if info else None
        changed = chord != state.chord or bool(info and info.is_onset)
        pos = g % self.bar
        step = pos % STEPS_PER_BAR
        offs: list[Note] = []
        keep: list[tuple[str, int, int | None]] = []
        for part, pitch, end in state.sounding:
            if (changed and part != PART_DRUMS) or (end is not None and end <= g):
                offs.append((part, pitch))
            else:
                keep.append((part, pitch, end))
        ons: list[tuple[float, str, int, float, int]] = []
        record = None
        voicing, last, start, bass = state.voicing, state.last_voicing, state.start, state.bass
        if changed:
            if info is None:
                voicing, record = None, (None, (), None)
            else:
                voicing = voice(info.root, info.pitch_classes, self.voicing,
                                last if self.voicing.voice_leading else None)
                last, start = voicing, g
                record = (info.symbol, voicing.notes, voicing.bass)

        def strike(part: str, pitches, length: int | None, gain: float, late: float, i: int) -> None:
            end = None if not length else g + length
            for pt, q, e in list(keep):  # the bass plays one note at a time; a held chord ends at the next hit
                if pt == part and (part == PART_BASS or (part == PART_CHORDS and e is None) or q in pitches):
                    offs.append((pt, q))
                    keep.remove((pt, q, e))
            for k, p in enumerate(pitches):
                jitter_s, jitter_v = self._humanize(g, i * 16 + k)
                ons.append((late + jitter_s, part, p, gain, jitter_v))
                keep.append((part, p, end))

        if info is not None and voicing is not None:
            style, accent = self.style, metric_accent(pos, self.bar)
            late = swing_offset(step, self.swing, style.swing_unit) * self.frame_s
            hits = self.hits.get(step, [])
            if changed and (style.hold or (style.strike_on_change and not hits)):
                strike(PART_CHORDS, voicing.notes, 0, accent, 0.0, 0)
            for n, h in enumerate(hits):
                if style.revoice and not changed:
                    voicing = revoice(voicing, info.pitch_classes, self.voicing)
                    last = voicing
                pick = voicing.notes if h.voices is None else \
                    tuple(dict.fromkeys(voicing.notes[v % len(voicing.notes)] for v in h.voices))
                strike(PART_CHORDS, pick, h.length, accent * h.accent, late, 1 + n)
            bass = self._bass(g, step, start, info, voicing, changed, state.bass, upcoming, strike, accent, late)
        if self.groove is not None:
            self._drums(g, pos, strike)
        after = ArrState(chord, start, voicing, last, bass if info is not None else None, tuple(keep))
        return FramePlan(g, token, tuple(offs), tuple(ons), record, bool(changed and info is not None), state, after)

    def _humanize(self, g: int, k: int) -> tuple[float, int]:
        s = self.style
        if not (s.humanize_ms or s.humanize_velocity):
            return 0.0, 0
        u, w = _unit(self.a.seed, g, k, 1), _unit(self.a.seed, g, k, 2)
        return u * s.humanize_ms / 1000, round((2 * w - 1) * s.humanize_velocity)

    def _bass(self, g, step, start, info, voicing: Voicing, changed: bool, previous: int | None, upcoming, strike,
              accent: float, late: float) -> int | None:
        """Strike this frame's bass note, if any; returns the last bass note struck."""
        lo, hi = self.voicing.bass_low + WALK_LOW, self.voicing.bass_high + WALK_HIGH
        walking = self.line.approach
        root = voicing.bass if voicing.bass is not None else nearest(info.root, 40, lo, hi)
        if walking and previous is not None:
            root = nearest(info.root, previous, lo, hi)
        if changed:
            strike(PART_BASS, (root,), 0, accent * 1.05, 0.0, 8)
            return root
        h = self.bass_hits.get(step)
        if h is None:
            return previous
        if h.degree == "walk":
            target = self._next_root(g, info.chord, upcoming)
            prev = previous if previous is not None else root
            if target is not None:
                note = approach(nearest(target, prev, lo, hi), prev)
            else:
                tones = chord_tones(info.root, info.pitch_classes)
                k = max(1, (g - start) // 4)  # the beats of the chord climb its tones from the root
                note = nearest((info.root + tones[k % len(tones)]) % 12, prev, lo, hi)
        else:
            note = root + {"root": 0, "fifth": 7, "octave": 12}[h.degree]
        strike(PART_BASS, (note,), h.length, accent, late, 9)
        return note

    def _next_root(self, g: int, chord: int, upcoming: Mapping[int, int]) -> int | None:
        """The root of the committed chord that follows within the next beat (None: no change there, or not
        committed yet: a walking line never steps towards a tentative chord)."""
        for k in range(1, 5):
            tok = upcoming.get(g + k)
            if tok is None:
                return None
            nxt = self.vocab.chord_info.get(tok)
            if nxt is None:
                return None  # silence follows: nothing to walk to
            if nxt.chord != chord or nxt.is_onset:
                return nxt.root
        return None

    def _drums(self, g: int, pos: int, strike) -> None:
        listen, bar = self.a.listen, self.bar
        if g < listen:  # silent while the player plays alone, but for the fill in the last bar (end-aligned)
            if listen - g <= min(bar, STEPS_PER_BAR):
                fill_step = STEPS_PER_BAR - (listen - g)
                for n, (s, note, gain) in enumerate(FILL):
                    if s == fill_step:
                        strike(PART_DRUMS, (note,), 1, gain, 0.0, 32 + n)
            return
        late = swing_offset(pos % STEPS_PER_BAR, self.drum_swing) * self.frame_s
        hits = list(self.drum_hits.get(pos % STEPS_PER_BAR, []))
        if listen > 0 and g == listen:
            hits += [(note, gain) for s, note, gain in ENTRY if s == 0]
        for n, (note, gain) in enumerate(hits):
            strike(PART_DRUMS, (note,), 1, gain * metric_accent(pos, bar), late, 48 + n)
