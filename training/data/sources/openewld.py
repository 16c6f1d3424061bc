"""OpenEWLD (the public-domain Wikifonia subset): one compressed MusicXML lead sheet per song.

The files are clean single-part lead sheets, so music21 reads them as they are and ``read_score`` does the rest
(repeats expanded, chord pitch content from the ``<harmony>`` elements). Paths hold non-ASCII characters,
apostrophes, commas, brackets and braces: they are only ever globbed, never built by hand.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from music21 import converter

from training.data.leadsheet import LeadSheet, SongRef
from training.data.sources.music21_score import read_score

NAME = "openewld"


def discover(data_dir: Path, workdir: Path) -> list[SongRef]:
    root = Path(data_dir) / NAME / "dataset"
    return [SongRef(NAME, p.parent.relative_to(root).as_posix(), str(p)) for p in sorted(root.glob("**/*.mxl"))]


def parse(ref: SongRef) -> LeadSheet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parse(ref.path, format="musicxml", forceSource=True, storePickle=False)
    content = read_score(score)
    return LeadSheet(NAME, ref.song_id, content.notes, content.chords, content.meter, content.key, ref.path,
                     content.extra)
