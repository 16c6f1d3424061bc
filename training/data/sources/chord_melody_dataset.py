"""Chord-Melody-Dataset (shiehn): OCR'd lead sheets, one MusicXML file per song, shipped here as one tarball.

Why the chord timing is rewritten: the format promises exactly 2 chord symbols per 4/4 bar (a whole-bar chord is
written twice), but the OCR placed each ``<harmony>`` before an arbitrary note and gave it a noisy ``<offset>``
(0.1, 0.525 ... beats; the second symbol of a bar is often before the bar's first note). Read literally, the
chords would change at random points and two symbols at one time would hide each other. So the ``<offset>``
elements are dropped and the n symbols of a bar split it evenly (2 per bar: beats 0 and 2), in written order.
Repeated symbols are then merged (``merge_repeated``) into the real harmonic rhythm.

Before music21 sees a file, the fretboard diagrams (``<frame>``) and layout (``<print>``) are removed too: half
of each file's bytes, about 10% of its parse time. The key is the key signature's (every staged file has one); only
without one the file name gives it (``ds.xml`` = D# / Eb major; the files are transposed there, C major / A minor
normalised).
"""

from __future__ import annotations

import tarfile
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from music21 import converter, harmony, stream

from training.data.chords import parse_pitch_class
from training.data.leadsheet import Key, LeadSheet, SongRef
from training.data.sources.music21_score import melody_part, read_score

NAME = "chord_melody_dataset"
TARBALL = "chord_melody_dataset_one_key_per_song.tar.gz"
_DONE = ".extracted"


def discover(data_dir: Path, workdir: Path) -> list[SongRef]:
    dest = Path(workdir) / NAME
    if not (dest / _DONE).exists():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(Path(data_dir) / NAME / TARBALL) as tar:
            tar.extractall(dest, filter="data")
        (dest / _DONE).write_text("ok\n")
    return [SongRef(NAME, p.parent.name, str(p)) for p in sorted(dest.glob("*/*.xml"))]


def clean_xml(data: bytes) -> bytes:
    """Drop harmony offsets, fretboard frames and print layout (see the module docstring)."""
    root = ET.fromstring(data)
    for parent in root.iter():
        for child in list(parent):
            if child.tag in ("frame", "print") or (parent.tag == "harmony" and child.tag == "offset"):
                parent.remove(child)
    return ET.tostring(root, encoding="utf-8")


def spread_bar_chords(score: stream.Score) -> None:
    """Place the n chord symbols of each bar at k/n of the bar, in written order."""
    for bar in melody_part(score).getElementsByClass(stream.Measure):
        symbols = list(bar.getElementsByClass(harmony.ChordSymbol))
        if not symbols:
            continue
        length = float(bar.barDuration.quarterLength)
        bar.remove(symbols)
        for k, h in enumerate(symbols):
            bar.insert(k * length / len(symbols), h)


def key_from_file_name(path: Path) -> Key:
    """'c.xml' -> C major, 'ds.xml' -> D# major, 'as.xml' -> A# major."""
    stem = path.stem.lower()
    return Key(parse_pitch_class(stem[0].upper() + stem[1:].replace("s", "#")), "major")


def parse(ref: SongRef) -> LeadSheet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = converter.parseData(clean_xml(Path(ref.path).read_bytes()), format="musicxml")
    spread_bar_chords(score)
    content = read_score(score)
    key = content.key or key_from_file_name(Path(ref.path))
    return LeadSheet(NAME, ref.song_id, content.notes, content.chords, content.meter, key, ref.path,
                     content.extra)
