"""Recording: the journal round trip, saving to a type-1 MIDI file + sidecar, crash safety (a SIGKILLed recorder
loses nothing it reported), torn last lines, recovery that takes each journal on its own (bad lines and fields
skipped and said, closed only once saved, ``--list`` writing nothing), and a saved session that really sounds its
chords when rendered."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from app.recording import (
    JournalError,
    OutputError,
    Recorder,
    default_midi_path,
    find_unfinished,
    read_journal,
    recover,
    save_session,
    sidecar_path,
)

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"bpm": 100, "meter": "3/4", "model_name": "online-small", "model_sha256": "ab" * 32, "seed": 7,
            "temperature": 0.9, "programs": {"melody": 0, "chords": 4, "bass": 32}}
T0 = 1000.0  # the engine clock's time of frame 0 (any origin)
FRAME = 60 / (100 * 4)  # seconds per 16th at 100 bpm


def t(frame: float) -> float:
    return T0 + frame * FRAME


def record_small_session(directory: Path, close: bool = True) -> Recorder:
    """Two and a half bars of 3/4: C (onset + holds), G, silence, then F left sounding with a hanging melody note."""
    r = Recorder(directory, SETTINGS)
    r.melody_on(-2, t(-2.1), 72, 80)  # during the count-in: gets a bar of lead-in
    r.melody_off(0, t(0.2), 72)
    r.chord(0, t(0), "C", [36, 52, 55, 60], 36, True, 101)  # the bass included in pitches: written once
    for f in (1, 2, 3):
        r.chord(f, t(f), "C", [52, 55, 60], 36, False, 102)
        r.melody_token(f, 300 + f)
    r.melody_on(4, t(4.02), 64, 90)
    r.chord(4, t(4), "G", [55, 59, 62], 43, True, 110)
    r.melody_off(6, t(5.9), 64)
    r.chord(8, t(8), None, [], None, True, 2)  # silence
    r.melody_on(10, t(10), 67, 100)
    r.melody_on(11, t(11), 67, 70)  # struck again without an off
    r.chord(12, t(12), "F", [53, 57, 60], 41, True, 120)
    r.stats(frames_planned=12, deadline_misses=0)
    r.chord(13, t(13), "F", [53, 57, 60], 41, False, 121)
    if close:
        r.close(frames_planned=14, deadline_misses=1, worst_plan_ms=3.5)
    return r


def notes_of(track: mido.MidiTrack) -> list[tuple[int, int, int]]:
    """(on_tick, off_tick, pitch) pairs; asserts the track never has an unmatched or doubled note."""
    now, open_, out = 0, {}, []
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert msg.note not in open_, f"double note-on {msg.note} at {now}"
            open_[msg.note] = now
        elif msg.type in ("note_on", "note_off"):
            assert msg.note in open_, f"note-off without note-on {msg.note} at {now}"
            out.append((open_.pop(msg.note), now, msg.note))
    assert not open_, f"notes never ended: {open_}"
    return sorted(out)


def tick(frame: float, lead_in_bars: int = 1) -> int:
    return round(frame * 120 + lead_in_bars * 3 * 480)  # 480 ticks a quarter, 120 a 16th; 3/4 bars


# -- journal -----------------------------------------------------------------------------------------------------


def test_journal_round_trip(tmp_path):
    r = record_small_session(tmp_path)
    j = read_journal(r.path)
    assert r.path.name.startswith("session-") and r.path.name.endswith(".journal.jsonl")
    h = j.header
    assert h["e"] == "header" and h["format"] == 1 and h["bpm"] == 100.0 and h["meter"] == [3, 4]
    assert h["model"] == {"name": "online-small", "sha256": "ab" * 32} and h["seed"] == 7
    assert h["app_version"] == "0.1.0" and h["started"].endswith("Z") and h["settings"]["temperature"] == 0.9
    assert j.finished and not j.truncated and not j.skipped_lines
    kinds = [e["e"] for e in j.events]
    assert kinds.count("on") == 4 and kinds.count("off") == 2 and kinds.count("chord") == 8
    assert kinds.count("tok") == 3 and kinds.count("stats") == 1
    first_chord = next(e for e in j.events if e["e"] == "chord")
    assert first_chord == {"e": "chord", "f": 0, "t": T0, "s": "C", "p": [36, 52, 55, 60], "b": 36, "on": True,
                           "tok": 101}
    assert j.stats == {"frames_planned": 14, "deadline_misses": 1, "worst_plan_ms": 3.5}
    r.melody_on(20, t(20), 60, 90)  # after close: ignored, never corrupts a finished journal
    assert read_journal(r.path).events == j.events


def test_every_event_is_on_disk_before_the_call_returns(tmp_path):
    r = Recorder(tmp_path, {"bpm": 120})
    for i in range(5):
        r.melody_on(i, float(i), 60 + i, 90)
        assert len(read_journal(r.path).events) == i + 1  # read by another file handle, while still open
    assert find_unfinished(tmp_path) == [r.path]
    r.close()
    assert find_unfinished(tmp_path) == []


@pytest.mark.parametrize("settings", [{}, {"bpm": 0}, {"bpm": 120, "meter": "3/5"}])
def test_bad_settings_are_refused_before_a_journal_exists(tmp_path, settings):
    with pytest.raises(ValueError):
        Recorder(tmp_path, settings)
    assert list(tmp_path.iterdir()) == []


# -- saving ------------------------------------------------------------------------------------------------------


def test_save_writes_type1_midi_with_named_tracks_and_conductor(tmp_path):
    r = record_small_session(tmp_path)
    out = r.save(tmp_path / "jam.mid")
    assert out == tmp_path / "jam.mid"
    mid = mido.MidiFile(str(out))
    assert mid.type == 1 and mid.ticks_per_beat == 480
    assert [tr.name for tr in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass", "Drums"]

    conductor = mid.tracks[0]
    tempos = [m for m in conductor if m.type == "set_tempo"]
    meters = [m for m in conductor if m.type == "time_signature"]
    assert len(tempos) == 1 and round(mido.tempo2bpm(tempos[0].tempo), 6) == 100
    assert len(meters) == 1 and (meters[0].numerator, meters[0].denominator) == (3, 4)
    now, markers = 0, []
    for m in conductor:
        now += m.time
        if m.type == "marker":
            markers.append((now, m.text))
    assert markers == [(tick(0), "C"), (tick(4), "G"), (tick(12), "F")]
    assert not any(m.type in ("note_on", "note_off") for m in conductor)

    melody, chords, bass, drums = (notes_of(tr) for tr in mid.tracks[1:])
    assert drums == []  # a jam without drums: the track is there, empty
    end = tick(13)  # the last event: what still sounds is closed there
    assert melody == [(tick(-2.1), tick(0.2), 72), (tick(4.02), tick(5.9), 64), (tick(10), tick(11), 67),
                      (tick(11), end, 67)]
    assert chords == sorted([(tick(0), tick(4), p) for p in (52, 55, 60)] + [(tick(4), tick(8), p) for p in (55, 59, 62)]
                            + [(tick(12), end, p) for p in (53, 57, 60)])
    assert bass == [(tick(0), tick(4), 36), (tick(4), tick(8), 43), (tick(12), end, 41)]
    channels = [{m.channel for m in tr if m.type in ("note_on", "note_off", "program_change")} for tr in mid.tracks[1:]]
    assert channels == [{0}, {1}, {2}, {9}]
    programs = [[m.program for m in tr if m.type == "program_change"] for tr in mid.tracks[1:]]
    assert programs == [[0], [4], [32], [0]]


def test_sidecar_says_how_the_session_was_made(tmp_path):
    r = record_small_session(tmp_path)
    midi = r.save(tmp_path / "out" / "jam.mid")
    side = json.loads(sidecar_path(midi).read_text())
    assert sidecar_path(midi) == tmp_path / "out" / "jam.mid.session.json"
    assert side["app_version"] == "0.1.0"
    assert side["model"] == {"name": "online-small", "sha256": "ab" * 32}
    assert side["seed"] == 7 and side["bpm"] == 100.0 and side["meter"] == [3, 4]
    assert side["settings"]["temperature"] == 0.9
    assert side["finished"] is True and side["recovered"] is False
    assert side["timing"] == {"frames_planned": 14, "deadline_misses": 1, "worst_plan_ms": 3.5}
    assert side["tokens"][:4] == [[0, 101, None], [1, 102, 301], [2, 102, 302], [3, 102, 303]]
    assert [row[0] for row in side["tokens"]] == [0, 1, 2, 3, 4, 8, 12, 13]
    assert side["melody_notes"] == 4 and side["chord_onsets"] == 3 and side["lead_in_bars"] == 1
    assert side["midi"] == "jam.mid" and Path(side["journal"]) == r.path.resolve()
    assert side["journal_issues"] == {"truncated_tail": False, "skipped_lines": [], "problems": []}
    assert side["started"] and side["ended"]


# -- crash safety ------------------------------------------------------------------------------------------------

CHILD = r"""
import sys, time
from app.recording import Recorder
r = Recorder(sys.argv[1], {"bpm": 120, "meter": "4/4", "model_name": "m", "model_sha256": "cd", "seed": 3})
print("journal", r.path, flush=True)
i = 0
while True:
    t = 50.0 + i * 0.125
    if i % 4 == 0:
        r.chord(i, t, "CFGA"[(i // 4) % 4], [60, 64, 67], 48, True, 10 + i)
    else:
        r.chord(i, t, "CFGA"[(i // 4) % 4], [60, 64, 67], 48, False, 11)
    r.melody_on(i, t, 60 + i % 12, 90)
    r.melody_off(i, t + 0.1, 60 + i % 12)
    if i % 10 == 9:
        r.stats(frames_planned=i + 1, deadline_misses=0)
    print(i, flush=True)
    i += 1
    time.sleep(0.002)
"""


def test_sigkill_mid_session_loses_nothing_reported(tmp_path):
    n = 60
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO)
    try:
        journal = Path(child.stdout.readline().split(" ", 1)[1].strip())
        reported = [int(child.stdout.readline()) for _ in range(n)]
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert reported == list(range(n))

    assert find_unfinished(tmp_path) == [journal]
    midi = recover(journal)
    assert midi == default_midi_path(journal) == tmp_path / journal.name.replace(".journal.jsonl", ".mid")
    assert find_unfinished(tmp_path) == []  # repaired: not offered again

    j = read_journal(journal)
    assert j.finished and j.close.get("recovered") is True
    frames_on = [e["f"] for e in j.events if e["e"] == "on"]
    frames_chord = [e["f"] for e in j.events if e["e"] == "chord"]
    assert frames_on[:n] == list(range(n)) and frames_chord[:n] == list(range(n))

    mid = mido.MidiFile(str(midi))
    assert [tr.name for tr in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass", "Drums"]
    melody = notes_of(mid.tracks[1])
    assert len(melody) >= n
    assert [p for _, _, p in melody[:n]] == [60 + i % 12 for i in range(n)]
    markers = [m.text for m in mid.tracks[0] if m.type == "marker"]
    assert markers[: n // 4] == ["CFGA"[k % 4] for k in range(n // 4)]
    for tr in mid.tracks[2:]:
        notes_of(tr)  # balanced
    side = json.loads(sidecar_path(midi).read_text())
    assert side["recovered"] is True and side["finished"] is True
    assert side["model"] == {"name": "m", "sha256": "cd"} and side["seed"] == 3
    assert side["timing"]["frames_planned"] >= 50


def test_truncated_last_line_is_tolerated_and_repaired(tmp_path):
    r = record_small_session(tmp_path)
    lines = r.path.read_bytes().splitlines(keepends=True)
    assert b'"e":"close"' in lines[-1]
    r.path.write_bytes(b"".join(lines[:-1]) + b'{"e":"on","f":14,"t":10')  # killed in the middle of a write
    complete = read_journal(r.path)
    assert complete.truncated and not complete.finished
    assert len(complete.events) == len(lines) - 2  # every complete line but the header and the close
    assert find_unfinished(tmp_path) == [r.path]
    midi = recover(r.path, tmp_path / "rescued.mid")
    repaired = read_journal(r.path)
    assert repaired.finished and not repaired.truncated and repaired.events == complete.events
    assert repaired.close["recovered"] is True
    assert find_unfinished(tmp_path) == []
    side = json.loads(sidecar_path(midi).read_text())
    assert side["recovered"] is True and side["journal_issues"]["truncated_tail"] is True
    assert side["timing"] == {"frames_planned": 12, "deadline_misses": 0}  # the last stats line before the crash
    mid = mido.MidiFile(str(midi))
    assert [m.text for m in mid.tracks[0] if m.type == "marker"] == ["C", "G", "F"]
    for tr in mid.tracks[1:]:
        notes_of(tr)


def test_journal_without_header_is_a_clear_error(tmp_path):
    empty = tmp_path / "session-x.journal.jsonl"
    empty.write_bytes(b"")
    assert find_unfinished(tmp_path) == []
    with pytest.raises(JournalError, match="session-x.journal.jsonl"):
        recover(empty)


def test_save_session_from_an_open_journal(tmp_path):
    r = record_small_session(tmp_path, close=False)
    midi = save_session(r.path, tmp_path / "snapshot.mid")
    assert json.loads(sidecar_path(midi).read_text())["finished"] is False
    assert len(notes_of(mido.MidiFile(str(midi)).tracks[2])) == 9
    r.close()


def test_a_full_disk_while_saving_leaves_neither_file_nor_temporary(tmp_path, full_disk):
    r = record_small_session(tmp_path)
    out = tmp_path / "out"
    full_disk(2)  # the MIDI file fits, the sidecar does not
    with pytest.raises(OutputError) as e:
        r.save(out / "jam.mid")
    assert str(e.value) == f"{sidecar_path(out / 'jam.mid')}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert list(out.iterdir()) == []  # no MIDI file without its sidecar, no x.mid.tmp
    assert r.save(out / "jam.mid").exists()  # the journal is intact: saving again (disk freed) works


def test_a_melody_note_released_as_it_is_struck_still_ends_after_it(tmp_path):
    r = Recorder(tmp_path, {"bpm": 120, "t0": 0.0})
    r.melody_on(0, 0.0, 60, 90)
    r.melody_off(0, 0.0, 60)  # a note-off at the note-on's time would be written first: a stuck note
    r.melody_on(1, 0.125, 62, 90)
    mid = mido.MidiFile(str(r.save(tmp_path / "short.mid")))
    assert notes_of(mid.tracks[1]) == [(0, 1, 60), (120, 121, 62)]


# -- a saved session sounds ---------------------------------------------------------------------------------------


def test_rendered_session_sounds_its_chord(tmp_path):
    from app.synth import render_midi_to_wav

    r = Recorder(tmp_path, {"bpm": 120, "programs": {"chords": 0, "bass": 32}})
    r.chord(0, 0.0, "C", [60, 64, 67], 36, True, 5)
    for f in range(1, 8):
        r.chord(f, f * 0.125, "C", [60, 64, 67], 36, False, 6)
    r.chord(8, 1.0, None, [], None, True, 2)
    midi = r.save(tmp_path / "c.mid")
    info = render_midi_to_wav(midi, tmp_path / "c.wav")
    assert info.notes == 4

    with wave.open(str(info.wav_path)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2).mean(axis=1)
    seg = x[int(0.1 * sr):int(0.9 * sr)]
    seg = seg * np.hanning(len(seg))
    mag = np.abs(np.fft.rfft(seg, n=4 * sr))
    f = np.fft.rfftfreq(4 * sr, 1 / sr)
    floor = np.median(mag[(f > 50) & (f < 2000)])

    def peak(hz: float) -> float:
        return float(mag[(f > hz - 3) & (f < hz + 3)].max() / floor)

    played = [peak(hz) for hz in (261.63, 329.63, 392.00)]
    assert min(played) > 50, played
    assert peak(311.13) < min(played) / 10 and peak(349.23) < min(played) / 10


# -- recovery: each journal on its own, bad lines skipped and said, closed only once saved ------------------------


def write_journal(path: Path, header: dict | None, events: list[dict]) -> Path:
    """A journal as a crash (or a hand edit, or another version) leaves it: no closing line."""
    lines = ([{"e": "header", "format": 1, **header}] if header is not None else []) + events
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


GOOD_EVENTS = [{"e": "on", "f": 0, "t": 0.0, "p": 60, "v": 90}, {"e": "off", "f": 2, "t": 0.25, "p": 60},
               {"e": "chord", "f": 0, "t": 0.0, "s": "C", "p": [52, 55, 60], "b": 36, "on": True, "tok": 5},
               {"e": "on", "f": 4, "t": 0.5, "p": 64, "v": 80}, {"e": "off", "f": 6, "t": 0.75, "p": 64}]


def recover_cli(args: list[str], capsys) -> tuple[int, list[str], list[str]]:
    from app.cli import main

    code = main(["recover", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_a_broken_older_journal_does_not_stop_a_newer_one_from_being_recovered(tmp_path, capsys):
    old = write_journal(tmp_path / "session-a.journal.jsonl", None, GOOD_EVENTS)  # no header at all
    os.utime(old, (1_000_000, 1_000_000))
    new = write_journal(tmp_path / "session-b.journal.jsonl", {"bpm": 120, "t0": 0.0}, GOOD_EVENTS)
    assert find_unfinished(tmp_path) == [old, new]
    code, out, err = recover_cli(["--dir", str(tmp_path)], capsys)
    assert code == 2  # something was skipped: said, and the status says so too
    assert out == [f"recovered {new} -> {tmp_path / 'session-b.mid'}"]
    assert err == [f"comper: skipped {old}: line 1 is not a journal header"]
    assert melody_notes(tmp_path / "session-b.mid") == [60, 64]
    assert find_unfinished(tmp_path) == [old]  # left as it was, offered again; the good one is done
    assert old.read_text() == "".join(json.dumps(x) + "\n" for x in GOOD_EVENTS)


def melody_notes(midi: Path) -> list[int]:
    return [p for _, _, p in notes_of(mido.MidiFile(str(midi)).tracks[1])]


@pytest.mark.parametrize("header,bad_event,field,expected", [
    ({"bpm": 0}, None, "'bpm' is 0", [60, 64]),
    ({"bpm": "fast"}, None, "'bpm' is \"fast\"", [60, 64]),
    ({"bpm": 120, "meter": [4, 3]}, None, "'meter' is [4, 3]", [60, 64]),
    ({"bpm": 120}, {"e": "on", "f": 1, "t": 0.1, "v": 90}, "without 'p'", [60, 64]),
    ({"bpm": 120}, {"e": "on", "f": 1, "t": 0.1, "p": 200, "v": 90}, "'p' is 200", [60, 64]),
    ({"bpm": 120}, {"e": "chord", "f": 1, "t": "soon", "p": [60]}, "'t' is \"soon\"", [60, 64]),
    ({"bpm": 120}, {"e": "cc", "f": 1, "t": 0.1, "c": 64, "v": 300}, "'v' is 300", [60, 64]),
    ({"bpm": 120}, {"e": "cc", "f": 1, "t": 0.1, "v": 127}, "without 'c'", [60, 64]),
    ({"bpm": 120}, {"e": "bend", "f": 1, "t": 0.1, "v": -5}, "'v' is -5", [60, 64]),
    ({"bpm": 120}, {"e": "pressure", "f": 1, "t": None, "v": 5}, "'t' is null", [60, 64]),
])
def test_a_bad_field_is_skipped_and_said_and_the_rest_is_recovered(tmp_path, capsys, header, bad_event, field,
                                                                    expected):
    events = GOOD_EVENTS[:3] + ([bad_event] if bad_event else []) + GOOD_EVENTS[3:]
    journal = write_journal(tmp_path / "session-x.journal.jsonl", {"t0": 0.0, **header}, events)
    code, out, err = recover_cli(["--dir", str(tmp_path)], capsys)
    assert code == 0 and out == [f"recovered {journal} -> {tmp_path / 'session-x.mid'}"]
    assert len(err) == 1 and err[0].startswith(f"comper: warning: {journal}: line ") and field in err[0], err
    assert melody_notes(tmp_path / "session-x.mid") == expected
    assert find_unfinished(tmp_path) == []  # closed, and only now that its MIDI file exists
    side = json.loads(sidecar_path(tmp_path / "session-x.mid").read_text())
    assert side["recovered"] is True and len(side["journal_issues"]["problems"]) == 1


def test_a_crashed_jam_with_the_sustain_pedal_is_recovered_with_its_pedal(tmp_path, capsys):
    """The player's controllers are journaled as they come (``cc``, ``bend``, ``pressure``, ``keypressure``) and
    recovered onto the Melody track at their times; a pedal still down at the crash is lifted at the end, and a
    controller line with a bad field is skipped and said like any other bad line."""
    controls = [{"e": "cc", "f": 1, "t": 0.125, "c": 64, "v": 127},  # sustain down
                {"e": "bend", "f": 3, "t": 0.375, "v": 10240},
                {"e": "cc", "f": 5, "t": 0.625, "c": 64, "v": 0},  # sustain up
                {"e": "cc", "f": 5, "t": 0.625, "c": 1, "v": 300},  # a bad value: skipped, said
                {"e": "bend", "f": 6, "t": 0.75, "v": 8192},
                {"e": "pressure", "f": 6, "t": 0.75, "v": 33},
                {"e": "keypressure", "f": 6, "t": 0.75, "p": 64, "v": 20},
                {"e": "cc", "f": 7, "t": 0.875, "c": 67, "v": 100}]  # soft pedal, never lifted: the crash
    journal = write_journal(tmp_path / "session-p.journal.jsonl", {"bpm": 120, "t0": 0.0}, GOOD_EVENTS + controls)
    code, out, err = recover_cli(["--dir", str(tmp_path)], capsys)
    assert code == 0 and out == [f"recovered {journal} -> {tmp_path / 'session-p.mid'}"]
    assert len(err) == 1 and "line 10: cc event field 'v' is 300" in err[0], err
    melody = mido.MidiFile(str(tmp_path / "session-p.mid")).tracks[1]
    assert melody[0].name == "Melody" and melody_notes(tmp_path / "session-p.mid") == [60, 64]
    now, got = 0, []
    for msg in melody:
        now += msg.time
        if msg.type in ("control_change", "pitchwheel", "aftertouch", "polytouch"):
            assert msg.channel == 0
            got.append((now, msg.type, *(getattr(msg, a) for a in ("control", "value", "pitch", "note")
                                         if hasattr(msg, a))))
    assert [g for g in got if g[1] == "control_change"] == [
        (120, "control_change", 64, 127), (600, "control_change", 64, 0), (840, "control_change", 67, 100),
        (840, "control_change", 67, 0)], "the soft pedal left down at the crash is lifted at the end"
    assert [g for g in got if g[1] != "control_change"] == [
        (360, "pitchwheel", 2048), (720, "pitchwheel", 0), (720, "aftertouch", 33), (720, "polytouch", 20, 64)]
    side = json.loads(sidecar_path(tmp_path / "session-p.mid").read_text())
    assert side["melody_controls"] == 8 and side["recovered"] is True
    assert find_unfinished(tmp_path) == []


def test_a_journal_is_closed_only_after_its_files_are_written(tmp_path, full_disk):
    r = record_small_session(tmp_path, close=False)
    full_disk(1)  # the MIDI file does not fit
    with pytest.raises(OutputError):
        r.save(tmp_path / "jam.mid", frames=14)
    assert find_unfinished(tmp_path) == [r.path], "the take is still offered for recovery"
    assert not (tmp_path / "jam.mid").exists()
    full_disk(2)  # recovery on a disk still full: the sidecar does not fit; the journal stays unfinished again
    with pytest.raises(OutputError):
        recover(r.path)
    assert find_unfinished(tmp_path) == [r.path] and not read_journal(r.path).finished
    midi = recover(r.path)  # the disk freed
    assert find_unfinished(tmp_path) == [] and len(notes_of(mido.MidiFile(str(midi)).tracks[1])) == 4


def test_a_saved_jam_closes_its_journal_with_the_final_counters(tmp_path):
    r = record_small_session(tmp_path, close=False)
    midi = r.save(tmp_path / "jam.mid", frames=14, deadline_misses=2)
    j = read_journal(r.path)
    assert j.finished and j.stats["frames"] == 14 and r.closed
    side = json.loads(sidecar_path(midi).read_text())
    assert side["finished"] is True and side["ended"] == j.close["ended"]
    assert side["timing"] == {"frames_planned": 12, "deadline_misses": 2, "frames": 14}


def test_recover_list_says_what_it_would_do_and_writes_nothing(tmp_path, capsys):
    good = write_journal(tmp_path / "session-a.journal.jsonl", {"bpm": 120, "t0": 0.0}, GOOD_EVENTS)
    bad_pitch = write_journal(tmp_path / "session-b.journal.jsonl", {"bpm": 120, "t0": 0.0},
                              GOOD_EVENTS + [{"e": "on", "f": 9, "t": 1.2, "p": 200}])
    headless = write_journal(tmp_path / "session-c.journal.jsonl", None, GOOD_EVENTS)
    (tmp_path / "session-d.mid").mkdir()  # where session-d would be saved: a folder, refused
    blocked = write_journal(tmp_path / "session-d.journal.jsonl", {"bpm": 120, "t0": 0.0}, GOOD_EVENTS)
    for i, p in enumerate((good, bad_pitch, headless, blocked)):
        os.utime(p, (1_000_000 + i, 1_000_000 + i))

    def snapshot() -> dict:
        return {p.name: (p.is_dir() or p.read_bytes(), p.stat().st_mtime) for p in tmp_path.iterdir()}

    before = snapshot()
    code, out, err = recover_cli(["--dir", str(tmp_path), "--list"], capsys)
    assert snapshot() == before, "--list writes nothing"
    assert code == 2 and err == []
    assert out == [
        f"would recover {good} -> {tmp_path / 'session-a.mid'} (2 melody notes, 1 chord onsets)",
        f"would recover {bad_pitch} -> {tmp_path / 'session-b.mid'} (2 melody notes, 1 chord onsets)",
        f"  {bad_pitch}: line 7: on event field 'p' is 200, not a MIDI note 0..127; line skipped",
        f"skipped {headless}: line 1 is not a journal header",
        f"skipped {tmp_path / 'session-d.mid'}: not written: it is a folder",
    ]
    code, out, _ = recover_cli([str(good), "--list"], capsys)  # one journal named
    assert code == 0 and out[0].startswith(f"would recover {good} -> ") and not (tmp_path / "session-a.mid").exists()


def test_an_event_timed_far_from_the_session_is_left_out_and_said(tmp_path, capsys):
    """A time of 1e300 or -1e12 s (a hand edit, another clock) used to be written as a delta time no MIDI reader
    takes (beyond 2^28 ticks); the rest of the take is saved as it was."""
    far = [{"e": "off", "f": 3, "t": 1e300, "p": 64}, {"e": "on", "f": 1, "t": -1e12, "p": 67, "v": 80}]
    journal = write_journal(tmp_path / "session-x.journal.jsonl", {"bpm": 120, "t0": 0.0}, GOOD_EVENTS + far)
    code, out, err = recover_cli(["--dir", str(tmp_path)], capsys)
    assert code == 0 and out == [f"recovered {journal} -> {tmp_path / 'session-x.mid'}"]
    assert err == [f"comper: warning: {journal}: 2 event(s) timed more than 39 hours from the session's start; "
                   f"left out"]
    mid = mido.MidiFile(str(tmp_path / "session-x.mid"))
    assert max(m.time for t in mid.tracks for m in t) < 0x0FFFFFFF
    assert melody_notes(tmp_path / "session-x.mid") == [60, 64]  # as without the two, the 64 ending at the end
    side = json.loads(sidecar_path(tmp_path / "session-x.mid").read_text())
    assert side["lead_in_bars"] == 0 and len(side["journal_issues"]["problems"]) == 1
