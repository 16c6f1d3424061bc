"""The planner: which chord sounds at every frame, decided ahead of time with ReaLJam's semantics.

* The real history (every frame already played: the chord that sounded and the melody that was heard) lives in
  the policy's KV cache and only grows; at the context limit the window slides (re-prefill of the recent frames,
  positions restarting at 0), so an hour-long jam costs the same per frame as the first minute.
* Chords are planned ``lookahead`` beats ahead on a *scratch branch* of that cache: committed chords (the first
  ``commit`` beats, frozen once promised) are teacher-forced, the policy imagines the player's melody between
  them, and the chords beyond the committed part are sampled (and shown as tentative until they are committed).
* Every chord for frame g is decided from melody heard before g: causality holds whatever the settings.
* Intro fill (optional): when the first chord after the listen-first beats is about to be promised, an offline
  teacher writes chords under the melody heard so far into the history. They are context only (the intro stays
  silent); without them the policy would condition on beats of "no chord" and tend to keep silent.
* Late plans: when the clock reaches a frame the worker has not planned yet, the live scheduler holds the chord
  that sounds and tells the planner (``override``), so the history always says what was really heard.

Cost: a branch whose imagined next frame turns out to be exactly what the player did is still a valid sample
given the real history, so it is kept and only extended by one frame. Otherwise the branch is rebuilt from the
real cache, but its imagined melody is carried over and re-scored with the already promised chords in ONE model
call (a chunk; the per-frame states are prefixes of that call's cache), and only the newest frame is sampled.
So a frame costs a handful of calls whatever the lookahead, instead of two per lookahead frame. (The carried
melody was imagined from a slightly older history: a plausible continuation, not a fresh sample. The chords it
conditions are the promised ones, so the music is unchanged; only chords still to be sampled see it.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .policy import OnnxPolicy, PolicyState
from .steering import FIT_WINDOW_FRAMES, Steerer, SteerSettings

FRAMES_PER_BEAT = 4
SHADOW_CHUNK = 8  # history frames fed into the next window's cache per planned frame


@dataclass(frozen=True)
class PlanSettings:
    lookahead_beats: float = 4
    commit_beats: float = 4
    listen_beats: float = 8  # the player alone first: no chords before this
    # 1.1: with the default steering this scored better than 1.0 on every count on the validation split (harmony,
    # Vendi, changes per bar; models/README.md "Steering"): the priors carry more weight against a flatter policy
    temperature: float = 1.1
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    slide_hop_frames: int = 64  # frames dropped at once when the window slides (a quarter of a small context)
    steer: SteerSettings = SteerSettings()  # decode-time steering (steering.py); STEER_OFF: the raw policy
    bar_beats: float = 4.0  # quarter-note beats per bar (the meter), for the harmonic-rhythm grid
    downbeat_frame: int = 0  # a frame on a bar line (frame 0 after a count-in; a pickup shifts it)

    @property
    def lookahead(self) -> int:
        return max(1, int(round(self.lookahead_beats * FRAMES_PER_BEAT)))

    @property
    def commit(self) -> int:
        # At least the next frame is promised: it will sound before another plan can arrive.
        return min(self.lookahead, max(1, int(round(self.commit_beats * FRAMES_PER_BEAT))))

    @property
    def listen(self) -> int:
        return int(round(self.listen_beats * FRAMES_PER_BEAT))


@dataclass
class Branch:
    """A scratch continuation of the real history. Entry i holds the imagined melody of frame ``first + i``, the
    chord of frame ``first + i + 1`` and the model state (and next-token logits) after feeding both."""

    first: int
    melody: list[int] = field(default_factory=list)
    chords: list[int] = field(default_factory=list)
    states: list[PolicyState] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)

    def drop_first(self) -> Branch:
        return Branch(self.first + 1, self.melody[1:], self.chords[1:], self.states[1:], self.logits[1:])


@dataclass
class PlanResult:
    frame: int  # the frame that was just heard
    committed: dict[int, int]  # frame -> chord token, newly promised by this plan
    tentative: dict[int, int]  # frame -> chord token beyond the commit horizon (may still change)
    seconds: float
    model_calls: int
    reused: bool


class Planner:
    """Feed it one heard frame at a time (``advance``); read the chords to play with ``chord_for``.

    Invariant between calls: the real cache holds ``[BOS, c0, m0, ..., c_{f-1}, m_{f-1}, c_f]`` where f is the next
    frame to be heard; c_f is always committed (it sounds before another plan could arrive).
    """

    def __init__(self, policy: OnnxPolicy, settings: PlanSettings = PlanSettings(),
                 intro: Callable[[list[int]], list[int]] | None = None) -> None:
        """``intro``: melody tokens heard so far -> one context chord token per frame (the offline teacher)."""
        self.policy, self.s, self.intro = policy, settings, intro
        self.intro_pending = intro is not None and settings.listen > 0
        self.vocab = policy.card.vocab
        self.context_frames = (policy.card.context_tokens - 2) // 2
        if self.s.lookahead + self.s.slide_hop_frames >= self.context_frames:
            raise ValueError(f"lookahead {self.s.lookahead} frames leaves no history in a "
                             f"{self.context_frames}-frame context")
        self.rng = np.random.default_rng(settings.seed)
        self.steer = Steerer(policy.card, settings.steer, settings.bar_beats, settings.downbeat_frame)
        self.committed: dict[int, int] = {}
        self.history: list[tuple[int, int]] = []  # (chord, melody) tokens of the heard frames in the window
        self.next_frame = 0
        self.prev_pitch = -1
        self.calls = 0
        logits, state = self._run([self.vocab.bos], self.policy.empty(), None)
        c0 = self.vocab.silence if self.s.listen > 0 else self._sample_chord(logits, state, 0, [])
        self.committed[0] = c0
        self.logits, self.state = self._run([c0], state, True)
        self.branch = Branch(0)
        self.shadow: PolicyState | None = None  # the next window's cache, grown ahead of the slide
        self.shadow_first = self.shadow_fed = 0  # its first frame, and the frame up to which it is fed
        self.dangling: tuple[int, np.ndarray, PolicyState] | None = None  # see _feed_and_rescore

    # --- the model ------------------------------------------------------------------------------------------

    def _run(self, tokens: list[int], state: PolicyState, chord_first: bool | None):
        self.calls += 1
        logits, state = self.policy.run(tokens, state, chord_first_slot=chord_first)
        return logits[-1], state

    def _sample_chord(self, logits: np.ndarray, state: PolicyState, g: int, imagined: list[int]) -> int:
        """The chord of frame g, steered. ``imagined``: melody tokens of the frames between the real history and
        g (the branch's imagination), for the melody-fit prior."""
        s = self.s
        if self.steer.s.is_off:
            return self.policy.sample_chord(logits, state, self.rng, s.temperature, s.top_k, s.top_p)
        recent = [self.vocab.pitch_of.get(m, -1) for _, m in self.history[-FIT_WINDOW_FRAMES:]]
        recent += [self.vocab.pitch_of.get(m, -1) for m in imagined[-FIT_WINDOW_FRAMES:]]
        fit = self.steer.fit(recent)
        prior = self.steer.prior(g, state.last_chord, recent, fit)
        k = self.steer.s.candidates if self.steer.is_change_point(g) else 1
        # plan search, best of K: K draws from the steered distribution, the best fitting one is played
        draws = [self.policy.sample_chord(logits, state, self.rng, s.temperature, s.top_k, s.top_p, prior)
                 for _ in range(k)]
        return max(draws, key=lambda c: fit[c])  # max keeps the first of equals

    def _sample_note(self, logits: np.ndarray, state: PolicyState) -> int:
        s = self.s
        return self.policy.sample_note(logits, state, self.rng, s.temperature, s.top_k, s.top_p)

    def _decide_chord(self, g: int, committed: dict[int, int]) -> int | None:
        """The chord of frame g if it is already fixed (promised, or silence while listening); None: sample it."""
        if g in self.committed or g in committed:
            return self.committed.get(g, committed.get(g))
        if g < self.s.listen and (self.intro is None or self.intro_pending):
            committed[g] = self.vocab.silence
            return self.vocab.silence
        return None

    # --- planning -------------------------------------------------------------------------------------------

    def chord_for(self, frame: int) -> int:
        """The chord token promised to sound at ``frame`` (the listen-first intro is silent whatever its context)."""
        if frame < self.s.listen:
            return self.vocab.silence
        return self.committed.get(frame, self.vocab.silence)

    def is_planned(self, frame: int) -> bool:
        """Whether the chord of ``frame`` has been decided (the live scheduler asks before playing it)."""
        return frame < self.s.listen or frame in self.committed

    def _feed_and_rescore(self, pending: list[int], carry: list[int], horizon: int,
                          committed: dict[int, int]) -> None:
        """One model call for the rest of the real history (``pending``: ``[m_f, c_f+1]`` or ``[c_f+1]``, or
        nothing) and a branch re-scored from a carried imagined melody, as far as its chords are decided. The real
        state and every branch state are prefixes of that call's cache."""
        b = self.branch
        melody, chords = [], []
        for m in carry:
            g = b.first + len(chords) + 1
            c = self._decide_chord(g, committed) if g <= horizon else None
            if c is None:
                break
            melody.append(m)
            chords.append(c)
        dangling = None  # the next carried note, whose chord is still to be sampled: fed now, sampled by _extend
        if len(melody) < len(carry) and b.first + len(chords) + 1 <= horizon:
            dangling = carry[len(melody)]
        tokens = pending + [t for pair in zip(melody, chords) for t in pair] + ([dangling] if dangling else [])
        if not tokens:
            return
        base, n0 = self.state.length, self.state.length + len(pending)
        self.calls += 1
        logits, state = self.policy.run(tokens, self.state, chord_first_slot=len(pending) == 1)
        if pending:
            last_note = pending[0] if len(pending) == 2 else self.state.last_note
            self.state = PolicyState(state.k[:, :, :, :n0], state.v[:, :, :, :n0], n0, pending[-1], last_note)
            self.logits = logits[len(pending) - 1]
        for i, (m, c) in enumerate(zip(melody, chords)):
            n = n0 + 2 * (i + 1)
            b.melody.append(m)
            b.chords.append(c)
            b.states.append(PolicyState(state.k[:, :, :, :n], state.v[:, :, :, :n], n, last_chord=c, last_note=m))
            b.logits.append(logits[n - base - 1])
        if dangling is not None:
            self.dangling = (dangling, logits[-1], replace(state, last_note=dangling))

    def _extend(self, horizon: int, committed: dict[int, int]) -> None:
        """Grow the branch until it holds the chord of frame ``horizon``."""
        b = self.branch
        while b.first + len(b.chords) < horizon:
            i = len(b.chords)
            state, logits = (b.states[-1], b.logits[-1]) if i else (self.state, self.logits)
            g = b.first + i + 1
            if self.dangling is not None:  # its note is already fed (by the re-scoring call)
                (m, logits, state), self.dangling = self.dangling, None
                c = self._decide_chord(g, committed)
                if c is None:
                    c = self._sample_chord(logits, state, g, b.melody + [m])
                logits, state = self._run([c], state, True)
                b.melody.append(m)
                b.chords.append(c)
                b.states.append(state)
                b.logits.append(logits)
                continue
            m = self._sample_note(logits, state)  # imagine the player's melody at frame first + i
            c = self._decide_chord(g, committed)
            if c is None:
                logits, state = self._run([m], state, False)
                c = self._sample_chord(logits, state, g, b.melody + [m])
                logits, state = self._run([c], state, True)
            else:
                logits, state = self._run([m, c], state, False)
            b.melody.append(m)
            b.chords.append(c)
            b.states.append(state)
            b.logits.append(logits)

    def _slide_if_due(self) -> bool:
        """At the context limit, drop the oldest frames. The shadow cache (built a chunk per frame beforehand)
        makes this one short call; without it (a window that filled faster than the shadow grew) the whole
        window is re-prefilled at once."""
        if len(self.history) + self.s.lookahead + 1 <= self.context_frames:
            return False
        hist_first = self.next_frame - len(self.history)
        if self.shadow is None:
            keep = self.context_frames - self.s.lookahead - self.s.slide_hop_frames
            self.history = self.history[len(self.history) - keep:]
            self._prefill()
            return True
        rest = self.history[self.shadow_fed - hist_first:]
        nxt = self.committed[self.next_frame]
        self.calls += 1
        logits, state = self.policy.run([t for pair in rest for t in pair] + [nxt], self.shadow, chord_first_slot=True)
        self.history = self.history[self.shadow_first - hist_first:]
        self.state = replace(state, last_chord=nxt, last_note=self.history[-1][1])
        self.logits = logits[-1]
        self.shadow = None
        self.branch = Branch(self.next_frame)
        return True

    def idle(self) -> None:
        """Work that can wait until the plan is published (the live worker calls it after each frame's plan;
        the simulated clock right after ``advance``): growing the next window's cache."""
        self._grow_shadow()

    def _grow_shadow(self) -> None:
        """Feed a few frames of the next window into the shadow cache, starting early enough that it has caught
        up with the history when the window must slide: the slide's cost is spread over the frames before it."""
        hist_first = self.next_frame - len(self.history)
        if self.shadow is None:
            frames_left = self.context_frames - self.s.lookahead - len(self.history)  # advances until the slide
            to_feed = len(self.history) - self.s.slide_hop_frames
            if frames_left > to_feed // (SHADOW_CHUNK - 1) + 2 or to_feed <= 0:
                return
            self.shadow, self.shadow_first = self.policy.empty(), hist_first + self.s.slide_hop_frames
            self.shadow_fed = self.shadow_first
        todo = self.history[self.shadow_fed - hist_first:][:SHADOW_CHUNK]
        if not todo:
            return
        v = self.vocab
        tokens = [v.bos] if self.shadow_fed == self.shadow_first else []
        for i, (c, m) in enumerate(todo):
            window_start = self.shadow_fed == self.shadow_first and i == 0
            tokens += [v.as_onset(c), v.as_onset(m)] if window_start else [c, m]
        self.calls += 1
        _, self.shadow = self.policy.run(tokens, self.shadow, chord_first_slot=None)
        self.shadow_fed += len(todo)

    def _prefill(self) -> None:
        """Rebuild the real cache from the window's history and the promised chord of the next frame."""
        v = self.vocab
        tokens = [v.bos]
        for i, (c, m) in enumerate(self.history):
            tokens += [v.as_onset(c), v.as_onset(m)] if i == 0 else [c, m]
        nxt = self.committed[self.next_frame]
        tokens.append(v.as_onset(nxt) if not self.history else nxt)
        _, state = self._run([tokens[0]], self.policy.empty(), None)
        self.logits, self.state = self._run(tokens[1:], state, True)
        self.branch = Branch(self.next_frame)

    def override(self, frame: int, token: int) -> None:
        """``frame`` sounded ``token`` although the plan said otherwise (or had not said yet: a late plan). The
        history and the plan follow what was really heard."""
        if frame < self.next_frame:
            raise ValueError(f"frame {frame} is already in the history (next frame {self.next_frame})")
        if self.committed.get(frame) == token:
            return
        self.committed[frame] = token
        if frame == self.next_frame:
            self._prefill()
        else:
            self.branch = Branch(self.next_frame)

    def take_over(self, other: Planner) -> None:
        """Continue ``other``'s jam with this planner's model (a model switch): same history, same promises."""
        keep = self.context_frames - self.s.lookahead - self.s.slide_hop_frames
        self.history = list(other.history[-keep:])
        self.committed = dict(other.committed)
        self.next_frame, self.prev_pitch = other.next_frame, other.prev_pitch
        self.steer.tracker = other.steer.tracker  # the key heard so far carries over
        self.intro_pending = self.intro_pending and other.intro_pending
        self._prefill()

    def _fill_intro_if_due(self, f: int, committed: dict[int, int]) -> bool:
        """True when the teacher's intro was written into the history (and the cache re-prefilled)."""
        if not (self.intro_pending and f + self.s.commit + 1 >= self.s.listen):
            return False
        return self._fill_intro(committed)

    def _fill_intro(self, committed: dict[int, int]) -> bool:
        """The teacher's chords under the melody heard so far become the history's context (never played).

        Runs one frame before the first audible chord could be promised, so the next frame is still in the intro
        (whenever ``listen`` exceeds ``commit``) and every audible chord is planned with the teacher's context."""
        self.intro_pending = False
        first = self.next_frame - len(self.history)
        if first > 0:  # the window already slid past the start: nothing to fill
            return False
        self.shadow = None  # its frames are rewritten
        chords = self.intro([m for _, m in self.history])  # may cover only the most recent frames
        skip = len(self.history) - len(chords)
        self.history = self.history[:skip] + [(c, m) for c, (_, m) in zip(chords, self.history[skip:])]
        for g in range(self.next_frame + 1, self.s.listen):  # intro frames not heard yet: the policy imagines them
            self.committed.pop(g, None)
            committed.pop(g, None)
        if self.next_frame < self.s.listen:
            nxt = chords[-1] if chords else self.vocab.silence  # any valid context chord for the next frame
            self.committed[self.next_frame] = committed[self.next_frame] = self.vocab.hold(nxt)
        self._prefill()
        return True

    def advance(self, pitch: int, onset: bool) -> PlanResult:
        """Frame ``next_frame`` has been heard (its top pitch or -1, and whether it was struck): plan ahead."""
        t0, calls0 = time.perf_counter(), self.calls
        f = self.next_frame
        m = self.vocab.melody_token(pitch, onset, self.prev_pitch)
        self.prev_pitch = pitch
        self.steer.hear(pitch)
        self.history.append((self.committed[f], m))
        self.next_frame = f + 1
        committed: dict[int, int] = {}
        b = self.branch
        reused = bool(b.chords) and b.first == f and b.melody[0] == m
        pending: list[int] = []  # real tokens still to feed after the real state
        if reused:  # the player did what the branch imagined: its first state is the real state now
            if f + 1 not in self.committed:  # the branch's chord for f + 1 was drawn from melody <= f: promise it
                committed[f + 1] = b.chords[0]
            self.state, self.logits = b.states[0], b.logits[0]
            self.branch = b.drop_first()
            carry = []
        else:
            carry = self.vocab.fix_holds(m, b.melody[1:]) if b.chords and b.first == f else []
            c_next = self._decide_chord(f + 1, committed)
            if c_next is None:  # nothing promised for the next frame (a late plan): decide it now
                self.logits, self.state = self._run([m], self.state, False)
                c_next = self._sample_chord(self.logits, self.state, f + 1, [])
                committed[f + 1] = c_next
                pending = [c_next]
            else:
                pending = [m, c_next]
            self.branch = Branch(f + 1)
        self.committed.update(committed)
        if self._slide_if_due() or self._fill_intro_if_due(f, committed):
            pending = []  # the re-prefill fed the whole history
            if reused:
                carry = b.melody[1:]  # the branch was dropped with the old cache: carry its imagination
        self._feed_and_rescore(pending, carry, f + self.s.lookahead, committed)
        self._extend(f + self.s.lookahead, committed)
        b = self.branch
        for i, c in enumerate(b.chords):  # what falls inside the commit horizon is promised now
            g = b.first + 1 + i
            if g < self.next_frame + self.s.commit and g not in self.committed:
                committed[g] = c
        self.committed.update(committed)
        for g in [g for g in self.committed if g < f - 16]:
            del self.committed[g]
        self.dangling = None
        tentative = {b.first + 1 + i: c for i, c in enumerate(b.chords) if b.first + 1 + i not in self.committed}
        return PlanResult(f, committed, tentative, time.perf_counter() - t0, self.calls - calls0, reused)
