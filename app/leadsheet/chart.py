"""The printable chord chart of a lead sheet, drawn with Qt (QPainter on a QImage for PNG, a QPdfWriter for PDF):
the title, the tempo, meter and key, then the bars four to a line with the chord symbols heard in each.

As musicians write a chart: each bar shows the chords heard in it once, in order, placed at the beat where they
come in (a re-struck chord is no new symbol); a bar that only repeats the bar before, a single held chord, is the
simile sign (a slash between two dots); a bar whose chord is held over from a bar of several shows that chord;
no chord is N.C. Flats and sharps are the music signs. The last bar ends with the final double bar.

Works with no display: without a running Qt application one is made on the offscreen platform.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
)

from ..engine.key import NAMES
from .sheet import Bar, LeadSheet

BARS_PER_LINE = 4
WIDTH = 1240  # A4 at 150 dpi, for the PNG and the PDF's page alike
PAGE_HEIGHT = 1754
DPI = 150
MARGIN = 80
HEADER = 190  # title, subtitle, tempo/meter/key line
LINE_HEIGHT = 120
LINE_GAP = 28
INK = QColor(20, 20, 20)
PAPER = QColor(255, 255, 255)
FONT = "DejaVu Sans"
_app = None


@dataclass(frozen=True)
class Layout:
    """Where everything goes: one rectangle per bar, line by line, and the pages (a PNG is one tall page)."""

    width: int
    height: int
    cells: list[QRectF]  # per bar
    lines: int


def ensure_app() -> None:
    """A Qt application for fonts and painting: the running one, else a new one on the offscreen platform (a
    ``QApplication``, not a bare ``QGuiApplication``: widgets made later in the same process need one)."""
    global _app
    if QGuiApplication.instance() is None:
        from PySide6.QtWidgets import QApplication

        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        _app = QApplication([])


def layout(sheet: LeadSheet, page_height: int | None = None) -> Layout:
    """The cells of every bar: four to a line under the header; ``page_height``: lines go on to the next page
    (cells of later pages are placed as if the pages were stacked); None: one page as tall as needed."""
    lines = -(-sheet.n_bars // BARS_PER_LINE)
    cell_w = (WIDTH - 2 * MARGIN) / BARS_PER_LINE
    step = LINE_HEIGHT + LINE_GAP
    per_page = max(1, (page_height - HEADER - 2 * MARGIN) // step) if page_height else lines
    cells = []
    for b in range(sheet.n_bars):
        line = b // BARS_PER_LINE
        page, row = divmod(line, per_page)
        y = page * (page_height or 0) + MARGIN + HEADER + row * step
        cells.append(QRectF(MARGIN + (b % BARS_PER_LINE) * cell_w, y, cell_w, LINE_HEIGHT))
    height = page_height or int(MARGIN + HEADER + lines * step + MARGIN)
    return Layout(WIDTH, height, cells, lines)


def subtitle(sheet: LeadSheet) -> str:
    key = NAMES[sheet.key.tonic] + (" minor" if sheet.key.mode == "minor" else " major")
    return f"\u2669 = {sheet.bpm:g}    {sheet.meter[0]}/{sheet.meter[1]}    Key: {_signs(key)}"


def _signs(text: str) -> str:
    """Letter flats and sharps as the music signs: 'Bbm7b5' -> 'B♭m7♭5' (only a 'b' after a note or a digit's
    place: a root's or an alteration's)."""
    out = []
    for i, ch in enumerate(text):
        if ch == "b" and i > 0 and (text[i - 1] in "ABCDEFG" or (i + 1 < len(text) and text[i + 1].isdigit())):
            out.append("\u266d")
        elif ch == "#":
            out.append("\u266f")
        else:
            out.append(ch)
    return "".join(out)


def shown(bars: list[Bar]) -> list[tuple[tuple[int, str | None], ...] | str]:
    """What each bar shows: its chords at their ticks, or "%" (the simile sign) for a bar that repeats the single
    held chord of the bar before."""
    out: list = []
    before: tuple = ()
    for bar in bars:
        heard = bar.sounding()
        if len(heard) == 1 and heard == before:
            out.append("%")
        else:
            items = [] if bar.changes and bar.changes[0][0] == 0 else [(0, bar.held)]
            for tick, symbol in bar.changes:
                if not items or items[-1][1] != symbol:
                    items.append((tick, symbol))
            out.append(tuple(items))
        before = heard
    return out


def _font(px: float, bold: bool = False, italic: bool = False) -> QFont:
    f = QFont(FONT)
    f.setPixelSize(max(1, int(px)))
    f.setBold(bold)
    f.setItalic(italic)
    return f


def _symbol_parts(symbol: str) -> tuple[str, str]:
    """The root and the quality as shown: ('B♭', 'm7♭5')."""
    root, suffix = (symbol[:2], symbol[2:]) if len(symbol) > 1 and symbol[1] in "b#" else (symbol[:1], symbol[1:])
    return _signs(root), _signs("X" + suffix)[1:]  # a quality's 'b' only before a digit


def _symbol_width(symbol: str | None, size: float) -> float:
    if symbol is None:
        return QFontMetricsF(_font(size * 0.7, italic=True)).horizontalAdvance("N.C.")
    root, suffix = _symbol_parts(symbol)
    return (QFontMetricsF(_font(size, bold=True)).horizontalAdvance(root)
            + QFontMetricsF(_font(size * 0.62, bold=True)).horizontalAdvance(suffix))


def _draw_symbol(p: QPainter, symbol: str | None, x: float, baseline: float, size: float) -> float:
    """A chord symbol at (x, baseline): the root full size, the quality smaller and raised; returns its width."""
    if symbol is None:
        p.setFont(_font(size * 0.7, italic=True))
        p.drawText(QPointF(x, baseline), "N.C.")
        return _symbol_width(None, size)
    root, suffix = _symbol_parts(symbol)
    p.setFont(_font(size, bold=True))
    p.drawText(QPointF(x, baseline), root)
    p.setFont(_font(size * 0.62, bold=True))
    p.drawText(QPointF(x + QFontMetricsF(_font(size, bold=True)).horizontalAdvance(root), baseline - size * 0.38),
               suffix)
    return _symbol_width(symbol, size)


def _draw_simile(p: QPainter, cell: QRectF) -> None:
    """The one-bar repeat sign: a thick slash with a dot on either side, in the middle of the cell."""
    c, h = cell.center(), cell.height() * 0.36
    p.save()
    p.setPen(QPen(INK, h * 0.16, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
    p.drawLine(QPointF(c.x() - h * 0.35, c.y() + h * 0.5), QPointF(c.x() + h * 0.35, c.y() - h * 0.5))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(INK)
    r = h * 0.11
    p.drawEllipse(QPointF(c.x() - h * 0.42, c.y() - h * 0.28), r, r)
    p.drawEllipse(QPointF(c.x() + h * 0.42, c.y() + h * 0.28), r, r)
    p.restore()


def _draw_header(p: QPainter, sheet: LeadSheet, top: float) -> None:
    p.setPen(INK)
    p.setFont(_font(44, bold=True))
    p.drawText(QRectF(MARGIN, top, WIDTH - 2 * MARGIN, 64), Qt.AlignmentFlag.AlignHCenter, sheet.title)
    if sheet.model:
        p.setFont(_font(17, italic=True))
        by = f"chords: Comper ({sheet.model}" + (f", seed {sheet.seed})" if sheet.seed is not None else ")")
        p.drawText(QRectF(MARGIN, top + 70, WIDTH - 2 * MARGIN, 26), Qt.AlignmentFlag.AlignRight, by)
    p.setFont(_font(22))
    p.drawText(QRectF(MARGIN, top + 110, WIDTH - 2 * MARGIN, 34), Qt.AlignmentFlag.AlignLeft, subtitle(sheet))


def _draw_line_ends(p: QPainter, cells: list[QRectF], first: int, final: bool) -> None:
    """Bar lines: one before each bar; the line's end a bar line, the piece's end the final double bar."""
    thin = QPen(INK, 2.5)
    p.setPen(thin)
    for cell in cells:
        p.drawLine(cell.topLeft(), cell.bottomLeft())
    last = cells[-1]
    if final:
        x = last.right()
        p.drawLine(QPointF(x - 10, last.top()), QPointF(x - 10, last.bottom()))
        p.setPen(QPen(INK, 7, Qt.PenStyle.SolidLine, Qt.PenCapStyle.FlatCap))
        p.drawLine(QPointF(x - 2.5, last.top()), QPointF(x - 2.5, last.bottom()))
    else:
        p.drawLine(last.topRight(), last.bottomRight())
    p.setFont(_font(14))
    p.drawText(QPointF(cells[0].left() + 2, cells[0].top() - 6), str(first))


def paint(p: QPainter, sheet: LeadSheet, lay: Layout, page_height: int | None = None,
          new_page=None) -> None:
    """Draw the whole chart; ``new_page()`` is called before each page after the first (PDF)."""
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    bars, looks = sheet.bars(), shown(sheet.bars())
    _draw_header(p, sheet, MARGIN)
    page = 0
    for start in range(0, len(bars), BARS_PER_LINE):
        cells = [QRectF(c) for c in lay.cells[start:start + BARS_PER_LINE]]
        if page_height:
            on_page = int(cells[0].top() // page_height)
            if on_page != page:
                new_page()
                page = on_page
            for c in cells:
                c.translate(0, -page * page_height)
        p.fillRect(QRectF(cells[0].left(), cells[0].top(), cells[-1].right() - cells[0].left(), 1.5), INK)
        p.fillRect(QRectF(cells[0].left(), cells[0].bottom() - 1.5, cells[-1].right() - cells[0].left(), 1.5), INK)
        _draw_line_ends(p, cells, start + 1, start + len(cells) == len(bars))
        for cell, look in zip(cells, looks[start:start + BARS_PER_LINE]):
            if look == "%":
                _draw_simile(p, cell)
                continue
            _draw_bar(p, sheet, cell, look)


def _draw_bar(p: QPainter, sheet: LeadSheet, cell: QRectF, items: tuple) -> None:
    """The chords of one bar, each at its beat (pushed right where the one before needs the room), in the largest
    size (one for the bar) at which all fit in the bar."""
    p.setPen(INK)
    pad, gap = 14.0, 10.0
    beats = [cell.left() + pad + (cell.width() - 2 * pad) * tick / sheet.bar_ticks for tick, _ in items]
    right = cell.right() - pad / 2
    for size in (40.0, 36.0, 32.0, 28.0, 25.0, 22.0, 20.0):
        xs, end = [], cell.left() + pad
        for beat, (_, symbol) in zip(beats, items):
            xs.append(max(beat, end))
            end = xs[-1] + _symbol_width(symbol, size) + gap
        if end - gap <= right:
            break
    baseline = cell.center().y() + size * 0.36
    for x, (_, symbol) in zip(xs, items):
        _draw_symbol(p, symbol, x, baseline, size)


def chart_bytes(sheet: LeadSheet, fmt: str) -> bytes:
    """The chart as a PNG (``fmt`` "png") or PDF ("pdf") file's bytes."""
    ensure_app()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if fmt == "pdf":
        writer = QPdfWriter(buf)
        writer.setResolution(DPI)
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                         QMarginsF(0, 0, 0, 0)))
        writer.setTitle(sheet.title)
        writer.setCreator("Comper")
        lay = layout(sheet, PAGE_HEIGHT)
        p = QPainter(writer)
        paint(p, sheet, lay, PAGE_HEIGHT, writer.newPage)
        p.end()
    else:
        lay = layout(sheet)
        image = QImage(lay.width, lay.height, QImage.Format.Format_RGB32)
        image.fill(PAPER)
        p = QPainter(image)
        paint(p, sheet, lay)
        p.end()
        image.save(buf, "PNG")
    buf.close()
    return bytes(data.data())


def render_image(sheet: LeadSheet) -> QImage:
    """The chart as an image (what the PNG holds)."""
    image = QImage()
    image.loadFromData(chart_bytes(sheet, "png"), "PNG")
    return image
