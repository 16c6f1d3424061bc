"""`comper export`: a real re-jam (the shipped default model, a fixed seed) as MusicXML that music21 reads back with
the same chord symbols per bar and the same melody notes; the chord chart drawn offscreen with a line per four
bars and ink in every bar; bad inputs and targets refused in one line, the input never overwritten."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import mido  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from app.cli import main  # noqa: E402
from app.leadsheet import read_leadsheet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ODE = REPO / "assets" / "melodies" / "ode_to_joy.mid"


@pytest.fixture(scope="module")
def take(tmp_path_factory) -> Path:
    """A real re-jam of the demo melody: shipped default model, fixed seed, through the CLI."""
    out = tmp_path_factory.mktemp("take") / "ode.mid"
    assert main(["rejam", str(ODE), "-o", str(out), "--seed", "7"]) == 0
    return out


def midi_facts(path: Path):
    """What the MIDI file itself says: ticks per bar, the chord changes by tick (a re-struck chord is none), the
    melody's (onset in quarters, pitch), and the pitches sounding on the Chords and Bass tracks at each tick."""
    mid = mido.MidiFile(path)
    tracks = {t.name: t for t in mid.tracks}
    sig = next(m for m in tracks["Conductor"] if m.type == "time_signature")
    bar = sig.numerator * mid.ticks_per_beat * 4 // sig.denominator
    changes, tick = {}, 0
    for msg in tracks["Conductor"]:
        tick += msg.time
        if msg.type == "marker" and (not changes or list(changes.values())[-1] != msg.text):
            changes[tick] = msg.text
    melody, tick = [], 0
    for msg in tracks["Melody"]:
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            melody.append((tick / mid.ticks_per_beat, msg.note))
    spans = []
    for name in ("Chords", "Bass"):
        tick, on = 0, {}
        for msg in tracks[name]:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                on[msg.note] = tick
            elif msg.type in ("note_on", "note_off") and msg.note in on:
                spans.append((on.pop(msg.note), tick, msg.note))
    return mid.ticks_per_beat, bar, changes, sorted(melody), spans


def test_a_rejam_exports_to_musicxml_that_music21_reads_back_the_same(take, tmp_path, capsys):
    music21 = pytest.importorskip("music21", reason="the export extra: pip install 'comper[export]'")
    from music21 import converter, harmony, key, meter, tempo

    xml = tmp_path / "ode.musicxml"
    assert main(["export", str(take), "--musicxml", str(xml)]) == 0
    assert f"wrote {xml}" in capsys.readouterr().out
    tpb, bar, changes, melody, spans = midi_facts(take)
    assert len(changes) >= 8, "the re-jam comped the tune"
    score = converter.parse(str(xml))
    assert isinstance(score, music21.stream.Score)

    got, per_bar = {}, {}
    for cs in score.recurse().getElementsByClass(harmony.ChordSymbol):
        if isinstance(cs, harmony.NoChord):
            continue
        tick = round(((cs.measureNumber - 1) * bar / tpb + cs.offset) * tpb)
        symbol = cs.root().name.replace("-", "b") + cs.chordKindStr
        got[tick] = symbol
        per_bar.setdefault(cs.measureNumber, []).append(symbol)
        sounding = {p % 12 for on, off, p in spans if on <= tick < off}
        assert sounding and sounding <= {p.pitchClass for p in cs.pitches}, (symbol, tick)  # what it means too
    expected_per_bar = {}
    for tick, symbol in changes.items():
        expected_per_bar.setdefault(tick // bar + 1, []).append(symbol)
    assert per_bar == expected_per_bar
    assert got == changes

    part = score.parts[0]
    notes = sorted((float(n.offset), p.midi) for n in part.stripTies().flatten().notes for p in n.pitches
                   if not isinstance(n, harmony.Harmony))  # a chord symbol is a music21 chord too
    assert notes == melody

    measures = part.getElementsByClass("Measure")
    end = max(sum(m.time for m in t) for t in mido.MidiFile(take).tracks)
    assert len(measures) == round(end / bar)
    assert [ts.ratioString for ts in score.recurse().getElementsByClass(meter.TimeSignature)] == ["4/4"]
    bpm = mido.tempo2bpm(next(m.tempo for m in mido.MidiFile(take).tracks[0] if m.type == "set_tempo"))
    assert [mm.number for mm in score.recurse().getElementsByClass(tempo.MetronomeMark)] == [pytest.approx(bpm)]
    [ks] = score.recurse().getElementsByClass(key.KeySignature)
    assert ks.sharps == 0, "Ode to Joy is in C"
    assert score.metadata.bestTitle == "ode"


def test_the_key_is_the_sessions_when_the_jam_was_held_in_one(take, tmp_path):
    copy = tmp_path / "held.mid"
    shutil.copy(take, copy)
    side = json.loads((take.parent / "ode.mid.session.json").read_text())
    side["settings"]["plan"]["steer"]["key"] = "Bb"
    (tmp_path / "held.mid.session.json").write_text(json.dumps(side))
    sheet = read_leadsheet(copy)
    assert (sheet.key.name, sheet.key_from) == ("Bb", "session")
    assert read_leadsheet(take).key_from == "melody"


def ink(image) -> np.ndarray:
    """Bool [height, width]: where the image is not paper."""
    from PySide6.QtGui import QImage

    grey = image.convertToFormat(QImage.Format.Format_Grayscale8)
    rows = np.frombuffer(grey.constBits(), np.uint8).reshape(grey.height(), grey.bytesPerLine())
    return rows[:, :grey.width()] < 160


def check_chart(png: Path, sheet) -> None:
    """One line per four bars (counted on the left bar line, not taken from the layout) and ink in every bar."""
    from PySide6.QtGui import QImage

    from app.leadsheet.chart import MARGIN, layout

    image = QImage(str(png))
    assert not image.isNull()
    dark = ink(image)
    column = dark[:, MARGIN]
    runs = int(column[0]) + int(np.count_nonzero(column[1:] & ~column[:-1]))
    assert runs == math.ceil(sheet.n_bars / 4)
    lay = layout(sheet)
    assert (image.width(), image.height()) == (lay.width, lay.height)
    for n, cell in enumerate(lay.cells, 1):
        inside = dark[int(cell.top()) + 8:int(cell.bottom()) - 8, int(cell.left()) + 8:int(cell.right()) - 12]
        assert inside.sum() > 100, f"bar {n} is empty"


def test_the_chart_of_the_rejam_has_a_line_per_four_bars_and_every_bar_drawn(take, tmp_path, capsys):
    png, pdf = tmp_path / "ode.png", tmp_path / "ode.pdf"
    assert main(["export", str(take), "--chart", str(png)]) == 0
    assert main(["export", str(take), "--chart", str(pdf)]) == 0
    sheet = read_leadsheet(take)
    assert sheet.n_bars == 16
    check_chart(png, sheet)
    assert pdf.read_bytes().startswith(b"%PDF")


def write_session(path: Path, meter=(3, 4), bars=5) -> None:
    """A small session by hand: C for two bars, C and G in the third, G held on, then no chord."""
    tpb = 480
    bar = meter[0] * tpb * 4 // meter[1]
    conductor = [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=0),
                 mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0)]
    chords = [(0, 2 * bar, "C", [48, 64, 67]), (2 * bar, 2 * bar + tpb, "C", [48, 64, 67]),
              (2 * bar + tpb, 4 * bar, "G", [43, 62, 71])]
    events = [(t, mido.MetaMessage("marker", text=s)) for t, _, s, _ in chords]
    conductor += _timed(events)
    acc = []
    for on, off, _, pitches in chords:
        acc += [(on, mido.Message("note_on", note=p, velocity=80)) for p in pitches]
        acc += [(off, mido.Message("note_off", note=p)) for p in pitches]
    melody = [(i * tpb, mido.Message("note_on", note=72 - i % 5, velocity=80)) for i in range(bars * meter[0])]
    melody += [(i * tpb + 400, mido.Message("note_off", note=72 - i % 5)) for i in range(bars * meter[0])]
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for name, msgs in (("Conductor", conductor), ("Melody", _timed(melody)), ("Chords", _timed(acc))):
        mid.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name=name), *msgs]))
    mid.save(path)


def _timed(events):
    out, last = [], 0
    for t, msg in sorted(events, key=lambda e: (e[0], e[1].type == "note_on")):
        out.append(msg.copy(time=t - last))
        last = t
    return out


def test_the_chart_writes_a_held_bar_as_musicians_do(tmp_path):
    from app.leadsheet.chart import shown

    path = tmp_path / "waltz.mid"
    write_session(path)
    sheet = read_leadsheet(path)
    assert (sheet.meter, sheet.n_bars) == ((3, 4), 5)
    assert sheet.warnings and "no sidecar" in sheet.warnings[0]
    looks = shown(sheet.bars())
    assert looks == [((0, "C"),), "%", ((0, "C"), (480, "G")), ((0, "G"),), ((0, None),)]
    png = tmp_path / "waltz.png"
    assert main(["export", str(path), "--chart", str(png)]) == 0
    check_chart(png, sheet)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("comper: error: ") and "\n" not in err, err
    return err


def test_bad_inputs_and_targets_are_one_line(take, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["export", str(ODE), "--chart", str(out)]) == 2
    assert "not a Comper session" in one_line_error(capsys)
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x04\x01\xe0MTrk\xff\xff")
    assert main(["export", str(corrupt), "--chart", str(out)]) == 2
    assert "not a readable MIDI file" in one_line_error(capsys)
    assert main(["export", str(tmp_path / "missing.mid"), "--chart", str(out)]) == 2
    one_line_error(capsys)
    assert main(["export", str(take)]) == 2
    assert "nothing to export" in one_line_error(capsys)
    endless = tmp_path / "endless.mid"
    write_session(endless)
    mid = mido.MidiFile(endless)
    mid.tracks[0][-1] = mid.tracks[0][-1].copy(time=2**27)  # a corrupt time: days of one last bar
    mid.save(endless)
    assert main(["export", str(endless), "--chart", str(out)]) == 2
    assert "minute" in one_line_error(capsys)
    assert not out.exists()

    before = take.read_bytes()
    sidecar = take.parent / "ode.mid.session.json"
    side_before = sidecar.read_bytes()
    for target in (take, sidecar):
        assert main(["export", str(take), "--musicxml", str(target)]) == 2
        one_line_error(capsys)
    link = tmp_path / "link.png"
    link.symlink_to(take)
    assert main(["export", str(take), "--chart", str(link)]) == 2
    assert "it is the input file" in one_line_error(capsys)
    assert main(["export", str(take), "--chart", str(tmp_path)]) == 2
    assert "folder" in one_line_error(capsys)
    assert take.read_bytes() == before and sidecar.read_bytes() == side_before


def test_without_music21_musicxml_says_how_to_install_it_and_the_chart_still_works(take, tmp_path, capsys,
                                                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, "music21", None)  # an import of it fails as if it were not installed
    xml, png = tmp_path / "x.musicxml", tmp_path / "x.png"
    assert main(["export", str(take), "--musicxml", str(xml), "--chart", str(png)]) == 2
    assert "pip install 'comper[export]'" in one_line_error(capsys)
    assert not xml.exists() and not png.exists(), "all or nothing"
    assert main(["export", str(take), "--chart", str(png)]) == 0 and png.exists()


def test_the_sessions_panel_exports_both(take, tmp_path, qtbot):
    from app.gui.background import Background
    from app.gui.sessions import SessionsPanel, read_session

    bg = Background()
    panel = SessionsPanel(bg, lambda: take.parent)
    qtbot.addWidget(panel)
    messages = []
    panel.message.connect(messages.append)
    xml, pdf = tmp_path / "p.musicxml", tmp_path / "p.pdf"
    panel.export_sheet(read_session(take), musicxml=xml)
    panel.export_sheet(read_session(take), chart=pdf)
    qtbot.waitUntil(lambda: len(messages) == 2, timeout=30000)
    assert messages == [f"saved {xml}", f"saved {pdf}"]
    assert xml.read_bytes().startswith(b"<?xml") and pdf.read_bytes().startswith(b"%PDF")
    panel.export_sheet(read_session(take), chart=take)
    qtbot.waitUntil(lambda: len(messages) == 3, timeout=10000)
    assert messages[-1].startswith("not exported: ")
    bg.shutdown()
