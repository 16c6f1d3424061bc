"""The token grammar, built from a card's parsed token table (``vocab.Vocabulary``): no training code, no torch.

Which tokens may follow in a slot: a chord slot takes only chord tokens or silence, a melody slot only note
tokens or silence; a hold must continue exactly the chord / note sounding in that slot's previous frame; special
tokens (PAD, BOS, EOS) never appear mid-sequence. Training (rollouts, evaluation) and the app share this one
definition, so an RL-trained policy is sampled live under the same rules it was trained and scored under.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vocab import Vocabulary


@dataclass(frozen=True)
class Grammar:
    chord_slot: np.ndarray  # bool [V]: allowed in a chord slot, holds excluded
    melody_slot: np.ndarray  # bool [V]: allowed in a melody slot, holds excluded
    hold_of: np.ndarray  # int [V]: the hold token that may follow this token in its slot, -1 if none
    silence: int
    bos: int
    eos: int
    pad: int

    @classmethod
    def from_vocab(cls, vocab: Vocabulary) -> Grammar:
        v = len(vocab)
        kind = [t.kind for t in vocab.tokens]
        chord_slot = np.array([k == "chord_on" for k in kind]) | (np.arange(v) == vocab.silence)
        melody_slot = np.array([k == "note_on" for k in kind]) | (np.arange(v) == vocab.silence)
        hold_of = np.full(v, -1, np.int64)
        for t in vocab.tokens:
            if t.is_chord:
                hold_of[t.id] = vocab.chord_hold_of[t.chord]
            elif t.is_note:
                hold_of[t.id] = vocab.note_hold[t.pitch]
        return cls(chord_slot, melody_slot, hold_of, vocab.silence, vocab.bos, vocab.eos, vocab.pad)

    @classmethod
    def from_table(cls, table: list[dict]) -> Grammar:
        """From a JSON token table (training's ``token_table()``); raises ``VocabularyError`` for a broken one."""
        return cls.from_vocab(Vocabulary.from_table(table))

    @property
    def vocab_size(self) -> int:
        return len(self.hold_of)

    def allowed(self, slot: str, previous: int | None) -> np.ndarray:
        """Bool [V] of the tokens allowed in ``slot`` ("chord" / "melody") after ``previous``, the token of the
        same slot one frame earlier (None at the start of a sequence)."""
        mask = (self.chord_slot if slot == "chord" else self.melody_slot).copy()
        if previous is not None and self.hold_of[previous] >= 0:
            mask[self.hold_of[previous]] = True
        return mask

    def is_valid(self, slot: str, previous: int | None, token: int) -> bool:
        return bool(self.allowed(slot, previous)[token])


def steered_scores(logits: np.ndarray, allowed: np.ndarray, temperature: float,
                   prior: np.ndarray | None = None) -> np.ndarray:
    """``logits / T + prior`` over the allowed tokens (-inf elsewhere), shifted so the best is 0. A prior that
    would leave nothing allowed is ignored (the grammar always wins)."""
    x = np.where(allowed, logits.astype(np.float64), -np.inf)
    t = temperature if temperature > 0 else 1.0
    with np.errstate(over="ignore"):  # shift first: a tiny temperature may only overflow to -inf
        x = (x - x.max()) / t
    if prior is not None:
        y = x + prior
        if np.isfinite(y).any():
            x = y - y[np.isfinite(y)].max()
    return x


def sample(logits: np.ndarray, allowed: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
           top_k: int = 0, top_p: float = 1.0, prior: np.ndarray | None = None) -> int:
    """Sample one token id from ``logits`` [V] restricted to ``allowed``; temperature 0 is greedy. ``prior``: a
    log-prior [V] (decode-time steering, -inf masks) added after the temperature."""
    x = steered_scores(logits, allowed, temperature, prior)
    if temperature <= 0:
        return int(np.argmax(x))
    return _draw(x, allowed, rng, top_k, top_p)


def _draw(x: np.ndarray, allowed: np.ndarray, rng: np.random.Generator, top_k: int, top_p: float) -> int:
    if top_k and top_k < allowed.sum():
        kth = np.partition(x, -top_k)[-top_k]
        x = np.where(x >= kth, x, -np.inf)
    p = np.exp(x - x.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = np.cumsum(p[order]) - p[order] < top_p  # the smallest head whose mass reaches top_p
        q = np.zeros_like(p)
        q[order[keep]] = p[order[keep]]
        p = q / q.sum()
    return int(rng.choice(len(p), p=p))
