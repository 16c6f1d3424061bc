"""Long texts that never widen the window: a model's description, a port's name, a chord symbol, a status line.

A plain ``QLabel`` or ``QComboBox`` asks for the width of its whole text, so one long description used to push the
window past the screen (issue 19: it must fit 1280x720 at every moment of a jam). Here a label asks for a few
characters at least and draws what does not fit with an ellipsis; a combo box sizes itself to a number of
characters and Qt elides its current item. Either way the full text is the tooltip.
"""

from __future__ import annotations

from PySide6 import QtGui
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QTextDocument
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

MIN_CHARS = 6  # the least a label shrinks to, in average character widths (plus the ellipsis)
MAX_CHARS = 60  # the most a label asks for (it takes more where the layout has room)


def plain_text(text: str) -> str:
    """``text`` as read, rich text ("next <b>G7</b>") without its markup."""
    if not QtGui.Qt.mightBeRichText(text):
        return text
    doc = QTextDocument()
    doc.setHtml(text)
    return doc.toPlainText()


class ElidedLabel(QLabel):
    """A one-line label that may be narrower than its text: the text is cut with an ellipsis (at ``mode``: the
    end, or the middle for a path), ``text()`` stays the full text, and so does the tooltip unless ``auto_tip`` is
    off (an owner that sets its own tooltip). It asks for ``max_chars`` characters at most (more where there is
    room) and shrinks to ``min_chars``."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight, min_chars: int = MIN_CHARS,
                 max_chars: int = MAX_CHARS, auto_tip: bool = True) -> None:
        super().__init__(parent)
        self.mode, self.min_chars, self.max_chars, self.auto_tip = mode, min_chars, max_chars, auto_tip
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        super().setText(text)
        if self.auto_tip:
            self.setToolTip(plain_text(text))

    def _chars_width(self, chars: int) -> int:
        m = self.contentsMargins()
        fm = self.fontMetrics()
        return fm.averageCharWidth() * chars + fm.horizontalAdvance("…") + m.left() + m.right()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        full = super().minimumSizeHint()
        return QSize(min(full.width(), self._chars_width(self.min_chars)), full.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        full = super().sizeHint()
        return QSize(min(full.width(), self._chars_width(self.max_chars)), full.height())

    def is_elided(self) -> bool:
        """Whether the text is cut now (it is wider than the label)."""
        return QLabel.sizeHint(self).width() > self.width()

    def shown_text(self) -> str:
        """What the label shows now: the text, or its elided form."""
        plain = plain_text(self.text())
        if not self.is_elided():
            return plain
        return self.fontMetrics().elidedText(plain, self.mode, max(0, self.contentsRect().width()))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if not self.is_elided():
            super().paintEvent(event)
            return
        painter = QPainter(self)
        painter.setPen(self.palette().color(self.foregroundRole()))
        painter.setFont(self.font())
        align = self.alignment() | Qt.AlignmentFlag.AlignVCenter
        painter.drawText(self.contentsRect(), int(align), self.shown_text())


def elide_combo(combo: QComboBox, chars: int) -> QComboBox:
    """Size ``combo`` to ``chars`` characters whatever its items (Qt elides the current one to fit), with the
    current item's full text as its tooltip (an owner that changes the items with its signals blocked calls
    ``full_text_tip`` after). An item's own tooltip (``Qt.ToolTipRole``) still shows in the list."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.currentIndexChanged.connect(lambda _index: full_text_tip(combo))
    full_text_tip(combo)
    return combo


def full_text_tip(combo: QComboBox) -> None:
    """The current item's full text as the box's tooltip."""
    combo.setToolTip(combo.currentText())
