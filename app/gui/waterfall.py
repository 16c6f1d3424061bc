"""The view: a waterfall above a piano keyboard, and a banner with the current and next chord in large type.

Time falls downward at a steady speed. The bright *now line* sits a little above the keys: the AI's plan comes
down toward it from above (promised chords solid, tentative ones faded), the player's notes appear at it as they
are played, and everything keeps falling into the keys, where what sounds now is lit (the player's keys in the
melody colour, the AI's chord and bass in theirs).

Replaying a comparison, two narrow chord lanes stand side by side at the right, on the same time axis: the take's
chords and the other version's, each headed by its name and figures (harmony, changes per bar, distinct chords),
the one that sounds drawn bright. Why lanes and not a second set of keys: the two versions' chords are read
against each other at a glance, while the keys keep showing what sounds.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from . import style
from .elide import ElidedLabel
from .view_model import COMMITTED, PLAYED, TENTATIVE, ViewState

_BLACK = {1, 3, 6, 8, 10}
_ALPHA = {PLAYED: style.ALPHA_PLAYED, COMMITTED: style.ALPHA_COMMITTED, TENTATIVE: style.ALPHA_TENTATIVE}
IDLE_HINT = "Press Space (or Start) to jam; play on a MIDI keyboard or the computer keys"


def _color(name: str, alpha: int = 255) -> QColor:
    c = QColor(name)
    c.setAlpha(alpha)
    return c


class PianoGeometry:
    """Pitch -> horizontal extent, for the keys and for the waterfall columns above them."""

    def __init__(self, left: float, width: float, low: int = style.LOW_PITCH, high: int = style.HIGH_PITCH) -> None:
        self.low, self.high = low, high
        whites = [p for p in range(low, high + 1) if p % 12 not in _BLACK]
        self.white_w = width / len(whites)
        self._x: dict[int, tuple[float, float]] = {}
        i = 0
        for p in range(low, high + 1):
            if p % 12 in _BLACK:
                w = self.white_w * 0.6
                self._x[p] = (left + i * self.white_w - w / 2, w)
            else:
                self._x[p] = (left + i * self.white_w, self.white_w)
                i += 1

    def span(self, pitch: int) -> tuple[float, float] | None:
        """(x, width) of a pitch's key, or None when it is off the keyboard."""
        return self._x.get(pitch)

    @staticmethod
    def is_black(pitch: int) -> bool:
        return pitch % 12 in _BLACK


class WaterfallView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(480, 260)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.state: ViewState | None = None
        self.player: list[int] = []  # keys the player holds now
        self.ai: tuple[int, ...] = ()  # the AI's sounding notes (bass first)
        self.ai_bass: int | None = None
        self.paints = 0
        self.on_first_paint = None  # called (once, after the event) when the view is first on screen
        self._keys_key: tuple | None = None
        self._keys_pixmap: QPixmap | None = None
        self._label_font = QFont()
        self._label_font.setBold(True)
        self._label_font.setPointSize(11)
        self._small_font = QFont()
        self._small_font.setPointSize(8)
        self._hint_font = QFont()
        self._hint_font.setPointSize(12)

    def show_state(self, state: ViewState | None, player: list[int], ai: tuple[int, ...],
                   ai_bass: int | None) -> None:
        self.state, self.player, self.ai, self.ai_bass = state, player, ai, ai_bass
        self.update()

    # --- painting ------------------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.paints += 1
        if self.paints == 1 and self.on_first_paint is not None:
            QTimer.singleShot(0, self.on_first_paint)
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor(style.BACKGROUND))
        keys = PianoGeometry(style.GUTTER_WIDTH, w - style.GUTTER_WIDTH - 4)
        wf_bottom = h - style.KEYBOARD_HEIGHT
        s = self.state
        if s is None:
            p.setPen(QColor(style.TEXT_DIM))
            p.setFont(self._hint_font)
            p.drawText(QRectF(0, 0, w, wf_bottom), Qt.AlignmentFlag.AlignCenter, IDLE_HINT)
        else:
            self._waterfall(p, s, keys, w, wf_bottom)
        self._keyboard(p, keys, wf_bottom, h)
        p.end()

    def _waterfall(self, p: QPainter, s: ViewState, keys: PianoGeometry, w: int, bottom: int) -> None:
        span = (style.PAST_BEATS + style.FUTURE_BEATS) * 4
        ppf = bottom / span
        now_y = bottom - style.PAST_BEATS * 4 * ppf
        pos = s.position

        def y(frame: float) -> float:
            return now_y - (frame - pos) * ppf

        first, last = math.floor(pos - style.PAST_BEATS * 4) - 1, math.ceil(pos + style.FUTURE_BEATS * 4) + 1
        # listen-first intro (and count-in): a tinted band
        if s.listen > 0 and first < s.listen:
            top, bot = max(0.0, y(s.listen)), min(float(bottom), y(first))
            p.fillRect(QRectF(style.GUTTER_WIDTH, top, w - style.GUTTER_WIDTH, bot - top), QColor(style.LISTEN_TINT))
            if pos < s.listen:
                p.setPen(QColor(style.TEXT_DIM))
                p.setFont(self._small_font)
                p.drawText(QRectF(style.GUTTER_WIDTH + 6, top + 2, 300, 16), Qt.AlignmentFlag.AlignLeft,
                           "chords start here: listening first")
        # beat and bar lines, bar numbers at the right edge
        beat, bar = s.beat_frames, s.bar_frames
        p.setFont(self._small_font)
        for f in range(first - first % beat, last + 1, beat):
            yy = y(f)
            if not 0 <= yy <= bottom:
                continue
            is_bar = f % bar == 0
            p.setPen(QPen(QColor(style.BAR_LINE if is_bar else style.BEAT_LINE), 1))
            p.drawLine(QPointF(style.GUTTER_WIDTH, yy), QPointF(w, yy))
            if is_bar and f >= 0:
                p.setPen(QColor(style.GUTTER_TEXT))
                p.drawText(QRectF(w - 44, yy - 15, 40, 14), Qt.AlignmentFlag.AlignRight, str(f // bar + 1))
        # the AI's chords
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for b in s.chords:
            if b.end < first or b.start > last:
                continue
            top, bot = max(-4.0, y(b.end)), min(float(bottom) + 4, y(b.start))
            if bot - top < 1:
                continue
            alpha = _ALPHA[b.state]
            outline = (QPen(_color(style.CHORD, 200), 1, Qt.PenStyle.DashLine) if b.state == TENTATIVE
                       else Qt.PenStyle.NoPen)
            for pitch, colour in [(b.bass, style.BASS)] + [(n, style.CHORD) for n in b.notes]:
                x = keys.span(pitch) if pitch is not None else None
                if x is None:
                    continue
                p.setPen(outline)
                p.setBrush(_color(colour, alpha))
                p.drawRoundedRect(QRectF(x[0] + 1, top + 1, x[1] - 2, bot - top - 2), style.NOTE_RADIUS,
                                  style.NOTE_RADIUS)
            if b.onset and 0 <= y(b.start) <= bottom + 2:
                p.setPen(_color(style.CHORD_LABEL, max(alpha, 110)))
                p.setFont(self._label_font)
                p.drawText(QRectF(2, y(b.start) - 20, style.GUTTER_WIDTH - 4, 18),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, b.symbol)
        # the player's notes
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(_color(style.MELODY, style.ALPHA_NOTE))
        for n in s.notes:
            end = n.end if n.end is not None else pos
            if end < first or n.start > last:
                continue
            x = keys.span(n.pitch)
            if x is None:
                continue
            top, bot = max(-4.0, y(end)), min(float(bottom) + 4, y(n.start))
            p.drawRoundedRect(QRectF(x[0] + 1, top, x[1] - 2, max(3.0, bot - top)), style.NOTE_RADIUS,
                              style.NOTE_RADIUS)
        if s.lanes:
            self._lanes(p, s, w, bottom, y, first, last)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setPen(QPen(QColor(style.NOW_LINE), 2))
        p.drawLine(QPointF(style.GUTTER_WIDTH, now_y), QPointF(w, now_y))
        if s.title:
            p.setPen(QColor(style.TEXT_DIM))
            p.drawText(QRectF(style.GUTTER_WIDTH + 6, 4, w, 16), Qt.AlignmentFlag.AlignLeft, s.title)

    def _lanes(self, p: QPainter, s: ViewState, w: int, bottom: int, y, first: float, last: float) -> None:
        """The comparison's chord lanes, side by side left of the bar numbers, each headed by its figures."""
        lw = max(72.0, min(140.0, (w - style.GUTTER_WIDTH) / 6))
        x0 = w - 48 - len(s.lanes) * (lw + 4)
        head = 16 + 12 * 3
        p.setFont(self._small_font)
        for i, lane in enumerate(s.lanes):
            x = x0 + i * (lw + 4)
            p.fillRect(QRectF(x, 0, lw, bottom), _color(style.BACKGROUND, 210))
            alpha = style.ALPHA_PLAYED if lane.playing else style.ALPHA_TENTATIVE
            for start, end, symbol in lane.blocks:
                if end < first or start > last:
                    continue
                top, bot = max(head, y(end)), min(float(bottom), y(start))
                if bot - top < 1:
                    continue
                p.setPen(QPen(_color(style.CHORD_LABEL, 90), 1))
                p.setBrush(_color(style.CHORD, alpha))
                p.drawRect(QRectF(x + 2, top, lw - 4, bot - top))
                if bot - top >= 12:
                    p.setPen(QColor(style.CHORD_LABEL))
                    p.drawText(QRectF(x + 4, bot - 14, lw - 8, 13), Qt.AlignmentFlag.AlignLeft, symbol)
            p.fillRect(QRectF(x, 0, lw, head), _color(style.BACKGROUND, 240))
            p.setPen(QColor(style.CHORD_LABEL if lane.playing else style.TEXT_DIM))
            for j, text in enumerate(lane_caption(lane)):
                p.drawText(QRectF(x + 3, 16 + 12 * j, lw - 6, 12), Qt.AlignmentFlag.AlignLeft,
                           p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, int(lw - 6)))

    def _keyboard(self, p: QPainter, keys: PianoGeometry, top: int, bottom: int) -> None:
        """The keys, from a cached picture that is redrawn only when the lit keys or the size change (most
        frames change neither: the keyboard then costs one blit)."""
        lit = {pitch: style.CHORD for pitch in self.ai}
        if self.ai_bass is not None:
            lit[self.ai_bass] = style.BASS
        lit.update({pitch: style.MELODY for pitch in self.player})
        key = (self.width(), bottom - top, tuple(sorted(lit.items())))
        if key != self._keys_key:
            self._keys_key = key
            self._keys_pixmap = self._draw_keys(keys, self.width(), bottom - top, lit)
        p.drawPixmap(0, top, self._keys_pixmap)

    def _draw_keys(self, keys: PianoGeometry, width: int, height: int, lit: dict[int, str]) -> QPixmap:
        pm = QPixmap(width, height)
        pm.fill(QColor(style.BACKGROUND))
        p = QPainter(pm)
        p.setPen(QPen(QColor(style.KEY_EDGE), 1))
        p.setFont(self._small_font)
        for black in (False, True):
            for pitch in range(keys.low, keys.high + 1):
                if keys.is_black(pitch) != black:
                    continue
                x, kw = keys.span(pitch)
                hh = height * (0.62 if black else 1.0)
                p.setBrush(QColor(lit.get(pitch, style.KEY_BLACK if black else style.KEY_WHITE)))
                p.drawRect(QRectF(x, 0, kw, hh - 1))
                if not black and pitch % 12 == 0:
                    p.drawText(QRectF(x, hh - 16, kw, 14), Qt.AlignmentFlag.AlignCenter, f"C{pitch // 12 - 1}")
        p.end()
        return pm


def lane_caption(lane) -> list[str]:
    """A chord lane's heading: whose chords (▶ the one sounding), then its figures against the take's melody."""
    f = lane.figures
    harmony = "-" if f.harmony is None else f"{f.harmony:.3f}"
    return [("▶ " if lane.playing else "") + lane.title, f"harmony {harmony}",
            f"{f.changes_per_bar:.2f}/bar · {f.distinct} chords"]


def pretty_key(name: str) -> str:
    """'F#m' -> 'F♯ minor', 'Bb' -> 'B♭ major': how a musician reads a key."""
    minor = name.endswith("m")
    root = (name[:-1] if minor else name).replace("#", "♯").replace("b", "♭")
    return f"{root} {'minor' if minor else 'major'}"


class ChordBanner(QWidget):
    """The current chord and the next one ("in N beats") in type big enough to read from the piano bench, the
    bar/beat counter, and the model playing. Labels change only when their text does."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(f"ChordBanner {{ background: {style.BACKGROUND}; }} "
                           f"QLabel {{ color: {style.CHORD_LABEL}; background: transparent; }}")
        self.current = self._label(style.BANNER_CHORD_PT, bold=True, elided=True)
        self.next = self._label(style.BANNER_NEXT_PT, elided=True)
        self.counter = self._label(style.BANNER_COUNTER_PT)
        self.key = self._label(style.BANNER_COUNTER_PT)
        self.key.setToolTip("the key Comper hears in your melody (or the key you fixed); chords lean toward it")
        self.model = self._label(10, elided=True)
        self.model.setStyleSheet(f"QLabel {{ color: {style.TEXT_DIM}; }}")
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 4, 12, 4)
        row.addWidget(self.current, 3)
        row.addWidget(self.next, 4)
        col = QVBoxLayout()
        col.addWidget(self.counter, alignment=Qt.AlignmentFlag.AlignRight)
        col.addWidget(self.key, alignment=Qt.AlignmentFlag.AlignRight)
        col.addWidget(self.model, alignment=Qt.AlignmentFlag.AlignRight)
        row.addLayout(col, 2)
        self.show_state(None)

    @staticmethod
    def _label(points: int, bold: bool = False, elided: bool = False) -> QLabel:
        """``elided``: a long chord symbol or model name is cut to fit, whole in the tooltip."""
        lab = ElidedLabel(min_chars=3) if elided else QLabel()
        f = lab.font()
        f.setPointSize(points)
        f.setBold(bold)
        lab.setFont(f)
        return lab

    @staticmethod
    def _set(label: QLabel, text: str) -> None:
        if label.text() != text:
            label.setText(text)

    def show_state(self, s: ViewState | None) -> None:
        if s is None:
            self._set(self.current, "—")
            self._set(self.next, "")
            self._set(self.counter, "")
            self._set(self.key, "")
            return
        self._set(self.key, f"key {pretty_key(s.key)}" if s.key else "")
        bar, beat = s.counter()
        if s.position < 0:
            self._set(self.counter, f"count-in {beat}")
        else:
            self._set(self.counter, f"bar {bar} · beat {beat}")
        cur = s.current()
        if cur is not None:
            self._set(self.current, cur.symbol)
        elif s.position < s.listen:
            self._set(self.current, "listening")
        else:
            self._set(self.current, "—")
        nxt = s.upcoming()
        if nxt is None:
            self._set(self.next, "")
        else:
            n = s.beats_until(nxt)
            maybe = "?" if nxt.state == TENTATIVE else ""
            self._set(self.next, f"next <b>{nxt.symbol}{maybe}</b> in {n} beat{'s' if n != 1 else ''}")
        self._set(self.model, s.title or s.model)
