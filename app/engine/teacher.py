"""Run a bundled offline teacher with onnxruntime: chords for a whole, already heard melody.

Why it exists: the live app listens first. During the listen-first intro nothing is played, but the online
policy needs a chord history to continue from; the teacher, which sees the intro's whole melody (its future
included), fills in the chords that would have fitted. Those chords are context for the online policy only and
are never played. The graph has no cache (a full recompute per chord), which is fine for a short intro.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .bundle import Bundle, BundleError, check_forward, onnx_session, run_model
from .grammar import Grammar, sample


class OnnxTeacher:
    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        bundle.require_role("offline_teacher")
        self.session = onnx_session(bundle, threads)
        self.bundle, self.card = bundle, bundle.card
        names = [i.name for i in self.session.get_inputs()]
        if names != ["melody", "chords"]:
            raise BundleError(f"{bundle.onnx_path}: graph inputs {names} are not melody/chords")
        vocab = self.session.get_outputs()[0].shape[2]
        if vocab != self.card.vocab_size:
            raise BundleError(f"{bundle.onnx_path}: graph vocabulary {vocab} does not match the card's token "
                              f"table ({self.card.vocab_size} tokens)")
        self.grammar = Grammar.from_vocab(self.card.vocab)
        self.bos, self.eos = self.card.vocab.bos, self.card.vocab.eos
        self.context_frames = self.card.context_frames
        silence = self.card.vocab.silence
        check_forward(lambda: self.logits([silence, silence], []))

    def intro_filler(self, seed: int, temperature: float = 1.0) -> Callable[[list[int]], list[int]]:
        """The planner's ``intro`` hook: chords for the most recent frames it can take, sampled from its own
        generator (seeded apart from the policy's, so the live jam and the re-jam fill the same intro)."""
        rng = np.random.default_rng(seed + 1)
        return lambda melody: self.fill(melody[-self.context_frames:], rng, temperature)

    def logits(self, melody: Sequence[int], chords: Sequence[int], at_end: bool = False) -> np.ndarray:
        """Logits [len(chords) + 1, V]: row i predicts chord i given the whole melody and chords before it."""
        enc = [self.bos, *map(int, melody)] + ([self.eos] if at_end else [])
        dec = [self.bos, *map(int, chords)]
        (out,) = run_model(self.bundle, self.session, {"melody": np.asarray([enc], np.int64),
                                                       "chords": np.asarray([dec], np.int64)})
        return out[0]

    def fill(self, melody: Sequence[int], rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, at_end: bool = False) -> list[int]:
        """One chord token per melody frame, sampled left to right under the token grammar (a hold only continues
        the chord sounding the frame before).

        ``at_end``: the melody is the end of the song. Training puts EOS after the melody only there, so an intro,
        which the song goes on from, leaves it off (otherwise the teacher would close with a cadence).
        """
        if len(melody) > self.context_frames:
            raise ValueError(f"{len(melody)} melody frames: the teacher was trained on at most "
                             f"{self.context_frames}; fill a shorter intro")
        chords: list[int] = []
        last = None
        for _ in melody:
            logits = self.logits(melody, chords, at_end)[-1]
            last = sample(logits, self.grammar.allowed("chord", last), rng, temperature, top_k, top_p)
            chords.append(last)
        return chords
