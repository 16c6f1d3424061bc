"""Blind A/B: two versions of a take played as "A" and "B" in an order drawn at random, the player picks the better
one, and the choice is kept as one line of ``preferences.jsonl`` (``app.prefs``).

Why blind: a player who sees "gapt" or "the teacher" hears what they expect. So the order is drawn from a seed
(recorded with the choice, so the draw can be checked), the replay shows only "A" or "B" (no name, no lanes), and
which was which is said only after the pick. The pick buttons wait until both have been played at least once.
"""

from __future__ import annotations

import random
import secrets
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..compare import version_title
from ..prefs import choice, record
from .background import Background

INTRO = "Listen to A and B (in any order, as often as you like), then pick the better one. Which is which is " \
        "shown once you have chosen."


def draw_order(first: Path, second: Path, seed: int) -> tuple[Path, Path]:
    """(A, B): the two versions in the order ``seed`` draws."""
    return (first, second) if random.Random(seed).random() < 0.5 else (second, first)


class BlindAB(QDialog):
    """Not modal: the window (and its waterfall) stay usable while the player listens."""

    play = Signal(object, str)  # the version's MIDI path, "A" or "B"
    stop = Signal()
    chosen = Signal(dict)  # the preference line, once written
    message = Signal(str)

    def __init__(self, first: Path, second: Path, prefs_file: Path, background: Background, seed: int | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Blind A/B")
        self.seed = secrets.randbelow(2**31) if seed is None else seed
        self.a, self.b = draw_order(Path(first), Path(second), self.seed)
        self.prefs_file, self.bg = Path(prefs_file), background
        self.heard: set[str] = set()
        self.line: dict | None = None
        self.info = QLabel(INTRO)
        self.info.setWordWrap(True)
        self.play_a, self.play_b, self.stop_button = QPushButton("Play A"), QPushButton("Play B"), QPushButton("Stop")
        self.pick_a, self.pick_b = QPushButton("A is better"), QPushButton("B is better")
        self.close_button = QPushButton("Close")
        lay = QVBoxLayout(self)
        lay.addWidget(self.info)
        for row_buttons in ((self.play_a, self.play_b, self.stop_button), (self.pick_a, self.pick_b),
                            (self.close_button,)):
            row = QHBoxLayout()
            for b in row_buttons:
                b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                row.addWidget(b)
            lay.addLayout(row)
        self.play_a.clicked.connect(lambda: self.listen("A"))
        self.play_b.clicked.connect(lambda: self.listen("B"))
        self.stop_button.clicked.connect(self.stop)
        self.pick_a.clicked.connect(lambda: self.pick("a"))
        self.pick_b.clicked.connect(lambda: self.pick("b"))
        self.close_button.clicked.connect(self.close)
        self._enable_picks()

    def listen(self, which: str) -> None:
        self.heard.add(which)
        self.play.emit(self.a if which == "A" else self.b, which)
        self._enable_picks()

    def _enable_picks(self) -> None:
        ready = self.heard >= {"A", "B"} and self.line is None
        for b in (self.pick_a, self.pick_b):
            b.setEnabled(ready)
            b.setToolTip("" if ready else "play both first")

    def pick(self, side: str) -> None:
        """Save the choice (off the GUI thread), then say which was which."""
        if self.heard < {"A", "B"} or self.line is not None:
            return
        for b in (self.pick_a, self.pick_b):
            b.setEnabled(False)
        self.stop.emit()
        a, b, seed, path = self.a, self.b, self.seed, self.prefs_file
        self.bg.submit("io", lambda: save_choice(a, b, side, seed, path), self._saved, self._failed)

    def _saved(self, line: dict) -> None:
        self.line = line
        picked = "A" if line["picked"] == "a" else "B"
        self.info.setText(f"A was {version_title(self.a)} ({self.a.name}); B was {version_title(self.b)} "
                          f"({self.b.name}). You picked {picked}: saved to {self.prefs_file.name}.")
        self.message.emit(f"blind A/B: you picked {picked}, {version_title(self.a if picked == 'A' else self.b)}")
        self.chosen.emit(line)

    def _failed(self, e: BaseException) -> None:
        self.message.emit(f"choice not saved: {e}")
        self._enable_picks()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.stop.emit()
        super().closeEvent(event)


def save_choice(a: Path, b: Path, side: str, seed: int, path: Path) -> dict:
    """The preference line for this pick, added to ``path``; returned as written."""
    line = choice(a, b, side, seed)
    record(line, path)
    return line
