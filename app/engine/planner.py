"""The planner: which chord sounds at every frame, decided ahead of time with ReaLJam's semantics.

* The real history (every frame already played: the chord that sounded and the melody that was heard) lives in
  the policy's KV cache and only grows; at the context limit the window slides (re-prefill of the recent frames,
  positions restarting at 0), so an hour-long jam costs the same per frame as the first minute.
* Chords are planned ``lookahead`` beats ahead on a *scratch branch* of that cache: committed chords (the first
  ``commit`` beats, frozen once promised) are teacher-forced, the policy imagines the player's melody between
  them, and the chords beyond the committed part are sampled (and shown as tentative until they are committed).
* Every chord for frame g is decided from melody heard before g: causality holds whatever the settings.

Cost: a branch whose imagined next frame turns out to be exactly what the player did is still a valid sample
given the real history, so it is kept and only extended by one frame; otherwise it is re-imagined from the real
cache. Holding a note or resting (most frames) therefore costs one model call instead of one per lookahead frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .policy import OnnxPolicy, PolicyState

FRAMES_PER_BEAT = 4


@dataclass(frozen=True)
class PlanSettings:
    lookahead_beats: float = 4
    commit_beats: float = 4
    listen_beats: float = 8  # the player alone first: no chords before this
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    slide_hop_frames: int = 16  # frames dropped at once when the window slides

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


class Vocabulary:
    """Token ids and chord facts read from the bundle card (the app never imports training code)."""

    def __init__(self, card: dict) -> None:
        special = card["special"]
        self.bos, self.silence = int(special["bos"]), int(special["silence"])
        self.note_on, self.note_hold, self.chord_info = {}, {}, {}
        for t in card["tokens"]:
            if t["kind"] == "note_on":
                self.note_on[t["pitch"]] = t["id"]
            elif t["kind"] == "note_hold":
                self.note_hold[t["pitch"]] = t["id"]
            elif t["kind"] in ("chord_on", "chord_hold"):
                self.chord_info[t["id"]] = t
        self.chord_on_of = {t["chord"]: t["id"] for t in self.chord_info.values() if t["kind"] == "chord_on"}

    def melody_token(self, pitch: int, onset: bool, previous_pitch: int) -> int:
        if pitch < 0:
            return self.silence
        return self.note_on[pitch] if onset or pitch != previous_pitch else self.note_hold[pitch]

    def is_onset(self, tok: int) -> bool:
        return self.chord_info.get(tok, {}).get("kind") == "chord_on"

    def as_onset(self, tok: int) -> int:
        """A chord or note hold at the start of a (re-prefilled) window becomes its onset."""
        if tok in self.chord_info:
            return self.chord_on_of[self.chord_info[tok]["chord"]]
        for pitch, hold in self.note_hold.items():
            if hold == tok:
                return self.note_on[pitch]
        return tok


@dataclass
class Branch:
    """A scratch continuation of the real history. Entry i holds the imagined melody of frame ``first + i``, the
    chord of frame ``first + i + 1`` and the model state (and next-token logits) after feeding both."""

    first: int
    melody: list[int] = field(default_factory=list)
    chords: list[int] = field(default_factory=list)
    states: list[PolicyState] = field(default_factory=list)
    logits: list[np.ndarray] = field(default_factory=list)

    def drop_first(self) -> "Branch":
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

    def __init__(self, policy: OnnxPolicy, settings: PlanSettings = PlanSettings()) -> None:
        self.policy, self.s = policy, settings
        self.vocab = Vocabulary(policy.card)
        self.context_frames = (int(policy.card["context_tokens"]) - 2) // 2
        if self.s.lookahead + self.s.slide_hop_frames >= self.context_frames:
            raise ValueError(f"lookahead {self.s.lookahead} frames leaves no history in a "
                             f"{self.context_frames}-frame context")
        self.rng = np.random.default_rng(settings.seed)
        self.committed: dict[int, int] = {}
        self.history: list[tuple[int, int]] = []  # (chord, melody) tokens of the heard frames in the window
        self.next_frame = 0
        self.prev_pitch = -1
        self.calls = 0
        logits, state = self._run([self.vocab.bos], self.policy.empty(), None)
        c0 = self.vocab.silence if self.s.listen > 0 else self._sample_chord(logits, state)
        self.committed[0] = c0
        self.logits, self.state = self._run([c0], state, True)
        self.branch = Branch(0)

    # --- the model ------------------------------------------------------------------------------------------

    def _run(self, tokens: list[int], state: PolicyState, chord_first: bool | None):
        self.calls += 1
        logits, state = self.policy.run(tokens, state, chord_first_slot=chord_first)
        return logits[-1], state

    def _sample_chord(self, logits: np.ndarray, state: PolicyState) -> int:
        s = self.s
        return self.policy.sample_chord(logits, state, self.rng, s.temperature, s.top_k, s.top_p)

    def _sample_note(self, logits: np.ndarray, state: PolicyState) -> int:
        s = self.s
        return self.policy.sample_note(logits, state, self.rng, s.temperature, s.top_k, s.top_p)

    def _decide_chord(self, g: int, committed: dict[int, int]) -> int | None:
        """The chord of frame g if it is already fixed (promised, or silence while listening); None: sample it."""
        if g in self.committed or g in committed:
            return self.committed.get(g, committed.get(g))
        if g < self.s.listen:
            committed[g] = self.vocab.silence
            return self.vocab.silence
        return None

    # --- planning -------------------------------------------------------------------------------------------

    def chord_for(self, frame: int) -> int:
        """The chord token promised for ``frame``."""
        return self.committed.get(frame, self.vocab.silence)

    def _extend(self, horizon: int, committed: dict[int, int]) -> None:
        """Grow the branch until it holds the chord of frame ``horizon``."""
        b = self.branch
        while b.first + len(b.chords) < horizon:
            i = len(b.chords)
            state, logits = (b.states[-1], b.logits[-1]) if i else (self.state, self.logits)
            m = self._sample_note(logits, state)  # imagine the player's melody at frame first + i
            g = b.first + i + 1
            c = self._decide_chord(g, committed)
            if c is None:
                logits, state = self._run([m], state, False)
                c = self._sample_chord(logits, state)
                logits, state = self._run([c], state, True)
            else:
                logits, state = self._run([m, c], state, False)
            b.melody.append(m)
            b.chords.append(c)
            b.states.append(state)
            b.logits.append(logits)

    def _slide_if_needed(self) -> bool:
        if len(self.history) + self.s.lookahead + 1 <= self.context_frames:
            return False
        keep = self.context_frames - self.s.lookahead - self.s.slide_hop_frames
        self.history = self.history[len(self.history) - keep:]
        v = self.vocab
        tokens = [v.bos]
        for i, (c, m) in enumerate(self.history):
            tokens += [v.as_onset(c), v.as_onset(m)] if i == 0 else [c, m]
        nxt = self.committed[self.next_frame]
        tokens.append(v.as_onset(nxt) if not self.history else nxt)
        _, state = self._run([tokens[0]], self.policy.empty(), None)
        self.logits, self.state = self._run(tokens[1:], state, True)
        return True

    def advance(self, pitch: int, onset: bool) -> PlanResult:
        """Frame ``next_frame`` has been heard (its top pitch or -1, and whether it was struck): plan ahead."""
        t0, calls0 = time.perf_counter(), self.calls
        f = self.next_frame
        m = self.vocab.melody_token(pitch, onset, self.prev_pitch)
        self.prev_pitch = pitch
        self.history.append((self.committed[f], m))
        self.next_frame = f + 1
        committed: dict[int, int] = {}
        b = self.branch
        reused = bool(b.chords) and b.first == f and b.melody[0] == m
        if reused:  # the player did what the branch imagined: its first state is the real state now
            if f + 1 not in self.committed:  # the branch's chord for f + 1 was drawn from melody <= f: promise it
                committed[f + 1] = b.chords[0]
            self.state, self.logits = b.states[0], b.logits[0]
            self.branch = b.drop_first()
        else:
            c_next = self._decide_chord(f + 1, committed)
            if c_next is None:  # nothing promised for the next frame (a late plan): decide it now
                logits, state = self._run([m], self.state, False)
                c_next = self._sample_chord(logits, state)
                committed[f + 1] = c_next
                self.logits, self.state = self._run([c_next], state, True)
            else:
                self.logits, self.state = self._run([m, c_next], self.state, False)
            self.branch = Branch(f + 1)
        self.committed.update(committed)
        if self._slide_if_needed():
            self.branch = Branch(f + 1)
        self._extend(f + self.s.lookahead, committed)
        b = self.branch
        for i, c in enumerate(b.chords):  # what falls inside the commit horizon is promised now
            g = b.first + 1 + i
            if g < self.next_frame + self.s.commit and g not in self.committed:
                committed[g] = c
        self.committed.update(committed)
        for g in [g for g in self.committed if g < f - 16]:
            del self.committed[g]
        tentative = {b.first + 1 + i: c for i, c in enumerate(b.chords) if b.first + 1 + i not in self.committed}
        return PlanResult(f, committed, tentative, time.perf_counter() - t0, self.calls - calls0, reused)
