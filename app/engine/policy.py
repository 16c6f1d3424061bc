"""Run a bundled chord policy with onnxruntime: prefill, incremental steps, and grammar-masked sampling.

The KV cache lives in numpy arrays owned by an immutable ``PolicyState``: extending a state returns a new one
and leaves the old one intact, so the live engine can branch a scratch plan off the real history for free.
onnxruntime runs with an explicit thread count and spinning off, so an idle session costs no CPU and the model
never starves the audio and MIDI threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, BundleError, check_forward, onnx_session, run_model
from .grammar import Grammar, sample


@dataclass(frozen=True)
class PolicyState:
    k: np.ndarray  # [layers, 1, heads, length, head_dim]
    v: np.ndarray
    length: int  # tokens consumed so far (the next token's position)
    last_chord: int | None = None  # last token written to a chord slot (for the hold rule)
    last_note: int | None = None


class OnnxPolicy:
    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        bundle.require_role("online_policy")
        self.session = onnx_session(bundle, threads)
        self.bundle, self.card = bundle, bundle.card
        names = [i.name for i in self.session.get_inputs()]
        if names != ["tokens", "start", "past_k", "past_v"]:
            raise BundleError(f"{bundle.onnx_path}: graph inputs {names} are not tokens/start/past_k/past_v")
        vocab = self.session.get_outputs()[0].shape[2]
        if vocab != self.card.vocab_size:
            raise BundleError(f"{bundle.onnx_path}: graph vocabulary {vocab} does not match the card's token "
                              f"table ({self.card.vocab_size} tokens)")
        layers, _, heads, _, head_dim = self.session.get_inputs()[2].shape
        self.cache_shape = (int(layers), 1, int(heads), 0, int(head_dim))
        self.grammar = Grammar.from_vocab(self.card.vocab)
        self.context_tokens = self.card.context_tokens
        self.bos = self.card.vocab.bos
        silence = self.card.vocab.silence
        check_forward(lambda: self.run([self.bos, silence, silence], self.empty()))

    def empty(self) -> PolicyState:
        z = np.zeros(self.cache_shape, np.float32)
        return PolicyState(z, z, 0)

    def run(self, tokens: list[int], state: PolicyState, chord_first_slot: bool | None = None) -> tuple[np.ndarray, PolicyState]:
        """Feed ``tokens`` after ``state``; returns the logits of every fed position [len, V] and the new state.

        ``chord_first_slot`` says whether the first fed token sits in a chord slot (so the state can track the
        last chord / note for the hold rule); None leaves that bookkeeping alone (e.g. BOS). A failed call or
        NaN / inf logits raise ``BundleError`` (``run_model``).
        """
        logits, k, v = run_model(self.bundle, self.session, {
            "tokens": np.asarray(tokens, np.int64)[None], "start": np.array(state.length, np.int64),
            "past_k": state.k, "past_v": state.v})
        last_chord, last_note = state.last_chord, state.last_note
        if chord_first_slot is not None:
            for i, t in enumerate(tokens):
                if (i % 2 == 0) == chord_first_slot:
                    last_chord = int(t)
                else:
                    last_note = int(t)
        return logits[0], PolicyState(k, v, state.length + len(tokens), last_chord, last_note)

    def sample_chord(self, logits: np.ndarray, state: PolicyState, rng: np.random.Generator,
                     temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                     prior: np.ndarray | None = None) -> int:
        """``prior``: decode-time steering, a log-prior [V] added to logits / T (``steering.Steerer``)."""
        return sample(logits, self.grammar.allowed("chord", state.last_chord), rng, temperature, top_k, top_p, prior)

    def sample_note(self, logits: np.ndarray, state: PolicyState, rng: np.random.Generator,
                    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> int:
        return sample(logits, self.grammar.allowed("melody", state.last_note), rng, temperature, top_k, top_p)

    def accompany(self, melody: list[int], rng: np.random.Generator, temperature: float = 1.0) -> list[int]:
        """Chords for a fixed melody token sequence, strictly online: chord t is sampled before melody t is fed."""
        logits, state = self.run([self.bos], self.empty())
        chords = []
        for m in melody:
            c = self.sample_chord(logits[-1], state, rng, temperature)
            chords.append(c)
            logits, state = self.run([c, int(m)], state, chord_first_slot=True)
        return chords
