"""After the take: a session (or a ``comper rejam`` output) as a lead sheet, MusicXML (``musicxml``, music21 from
the optional extra ``comper[export]``) and a printable chord chart (``chart``, Qt: PNG or PDF).

``export`` is what ``comper export`` and the Sessions panel call: the targets are checked first (one line for a
folder, a wrong suffix, one of Comper's own files, the session itself or its sidecar), then everything is built
in memory and written together through the one output writer (``app.recording.output``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.midifile import InputLimits
from ..recording.output import check_target, existing_sidecar, write_together
from .sheet import LeadSheet, LeadSheetError, read_leadsheet

MUSICXML = (".musicxml", ".xml")
CHART = (".png", ".pdf")

__all__ = ["CHART", "MUSICXML", "Exported", "LeadSheet", "LeadSheetError", "export", "read_leadsheet"]


@dataclass
class Exported:
    sheet: LeadSheet
    written: list[Path] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return self.sheet.warnings


def export(session: str | os.PathLike, musicxml: str | os.PathLike | None = None,
           chart: str | os.PathLike | None = None, limits: InputLimits | None = None) -> Exported:
    """Write the lead sheet of ``session`` as MusicXML and/or a chord chart (PNG or PDF, by the suffix).
    ``limits``: how long a session may be (``InputLimits``; default 20 minutes). Raises ``LeadSheetError`` or
    ``OutputError``, one line each, before anything is written."""
    if musicxml is None and chart is None:
        raise LeadSheetError("nothing to export: give --musicxml OUT.musicxml and/or --chart OUT.png|OUT.pdf")
    inputs = [p for p in (Path(session), existing_sidecar(session)) if p is not None]
    targets = []
    if musicxml is not None:
        targets.append(("musicxml", check_target(musicxml, MUSICXML, inputs)))
    if chart is not None:
        targets.append(("chart", check_target(chart, CHART, inputs)))
    if musicxml is not None:
        from .musicxml import require_music21

        require_music21()  # said before the session is read
    sheet = read_leadsheet(session, limits)
    files = []
    for what, path in targets:
        if what == "musicxml":
            from .musicxml import musicxml_bytes

            data = musicxml_bytes(sheet)
        else:
            from .chart import chart_bytes

            data = chart_bytes(sheet, path.suffix.lower().lstrip("."))
        files.append((path, lambda f, data=data: f.write(data)))
    write_together(files)
    return Exported(sheet, [p for p, _ in files])
