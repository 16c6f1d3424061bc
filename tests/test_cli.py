"""The command line as a hostile or unlucky user meets it: generated bad MIDI files through `comper rejam` and
`comper render`, generated bad journals through `comper recover` (hypothesis, in-process, bounded in time), and a
reader of stdout that goes away. Whatever the input: no traceback, a failure is one `comper: error:` line (status 2),
and the output folder holds complete outputs only."""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import mido
import pytest
from hostile_midi import vlq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.cli import main
from app.recording.output import SIDECAR_SUFFIX

REPO = Path(__file__).resolve().parents[1]

# bounded: a few dozen files each, a model call per frame for at most 64 frames, at most 15 s of audio per render
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_cli(args: list[str]) -> tuple[int, list[str]]:
    """``main(args)`` in-process; (status, stderr lines). An exception other than a user error propagates: the
    property fails with its traceback."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue().splitlines()


def assert_one_error_line(code: int, err: list[str]) -> None:
    """Status 0 with warnings at most, or status 2 with exactly one error line (and warnings)."""
    assert code in (0, 2), (code, err)
    errors = [ln for ln in err if ln.startswith("comper: error: ")]
    assert all(ln.startswith(("comper: error: ", "comper: warning: ")) for ln in err), err
    assert len(errors) == (1 if code == 2 else 0), err


def outcome(command: str, code: int, err: list[str]) -> None:
    """Label the example for ``--hypothesis-show-statistics``: how far the generated input got."""
    why = next((ln.split(": ", 3)[-1][:40] for ln in err if ln.startswith("comper: error: ")), "ok")
    event(f"{command}: {why.split('(')[0].strip()}")


def assert_complete_session(midi: Path) -> None:
    """A session MIDI file any program reads (every delta time fits the format) with its sidecar."""
    mid = mido.MidiFile(str(midi))
    assert [t.name for t in mid.tracks] == ["Conductor", "Melody", "Chords", "Bass", "Drums"]
    assert all(0 <= m.time <= 0x0FFFFFFF for t in mid.tracks for m in t)
    json.loads(midi.with_name(midi.name + SIDECAR_SUFFIX).read_text())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("."))


# -- bad MIDI files ---------------------------------------------------------------------------------------------

DELTA = st.one_of(st.integers(0, 240), st.integers(0, 240), st.sampled_from([0, 1, 2**14, 2**21, 2**28 - 1]))
CHANNEL = st.one_of(st.sampled_from([0, 9]), st.integers(0, 15))
BYTE7 = st.integers(0, 127)
NOTE = st.builds(lambda d, k, c, p, v: vlq(d) + bytes([k | c, p, v]), DELTA, st.sampled_from([0x80, 0x90, 0x90]),
                 CHANNEL, BYTE7, BYTE7)  # drums among them, unterminated and re-struck notes too
PAIR = st.builds(lambda c, p, v, d: b"\x00" + bytes([0x90 | c, p, v]) + vlq(d) + bytes([0x80 | c, p, 0]),
                 st.sampled_from([0, 0, 0, 1, 9]), BYTE7, st.integers(1, 127), st.integers(0, 240))  # a played note
EVENT = st.one_of(
    NOTE,
    st.builds(lambda d, t: vlq(d) + b"\xff\x51\x03" + t.to_bytes(3, "big"), DELTA,
              st.one_of(st.sampled_from([0, 1, 500000, 2**24 - 1]), st.integers(0, 2**24 - 1))),  # tempo, 0 too
    st.builds(lambda d, n, e: vlq(d) + b"\xff\x58\x04" + bytes([n, e, 24, 8]), DELTA, st.integers(0, 255),
              st.sampled_from([0, 2, 3, 5, 200])),  # time signatures, absurd ones too
    st.builds(lambda d, c, n, v: vlq(d) + bytes([0xB0 | c, n, v]), DELTA, CHANNEL, st.sampled_from([7, 64, 120, 123]),
              BYTE7),
    st.builds(lambda d, name: vlq(d) + b"\xff\x03" + vlq(len(name)) + name, DELTA, st.binary(max_size=8)),
    st.builds(lambda d, p, v: vlq(d) + bytes([p, v]), DELTA, BYTE7, BYTE7),  # running status, maybe with no status
    st.builds(lambda d, data: vlq(d) + b"\xf0" + vlq(len(data) + 1) + bytes(data) + b"\xf7", DELTA,
              st.lists(BYTE7, max_size=6)),
)
TRACK = st.builds(lambda events, end: b"".join(events) + (b"\x00\xff\x2f\x00" if end else b""),
                  st.lists(st.one_of(PAIR, PAIR, EVENT), max_size=24), st.booleans())


@st.composite
def midi_files(draw) -> bytes:
    """A MIDI file built from parts that are each legal or nearly so, then maybe cut short, flipped or padded."""
    fmt = draw(st.sampled_from([0, 1, 1, 2, 3]))
    division = draw(st.sampled_from([480, 480, 480, 96, 1, 0, 0x7FFF, 0x8000, 0xE728]))
    tracks = draw(st.lists(TRACK, min_size=1, max_size=3))
    declared = draw(st.sampled_from([len(tracks)] * 4 + [0, len(tracks) + 1]))
    data = b"MThd" + struct.pack(">IHHH", 6, fmt, declared, division)
    data += b"".join(b"MTrk" + struct.pack(">I", len(t)) + t for t in tracks)
    mutation = draw(st.sampled_from(["none"] * 5 + ["cut", "flip", "pad"]))
    if mutation == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    elif mutation == "pad":
        data += draw(st.binary(min_size=1, max_size=16))
    return data


@PROPERTY
@given(data=midi_files())
def test_bad_midi_files_through_rejam_and_render_never_give_a_traceback(data):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src, out = tmp / "in.mid", tmp / "out"
        out.mkdir()
        src.write_bytes(data)
        code, err = run_cli(["rejam", str(src), "-o", str(out / "x.mid"), "--model", "gapt", "--teacher", "none",
                             "--listen", "0", "--max-frames", "64"])
        assert_one_error_line(code, err)
        outcome("rejam", code, err)
        if code == 0:  # a complete take: the MIDI file and its sidecar, both readable
            assert sorted(p.name for p in out.iterdir()) == ["x.mid", "x.mid" + SIDECAR_SUFFIX]
            assert_complete_session(out / "x.mid")
        else:
            assert list(out.iterdir()) == []
        code, err = run_cli(["render", str(src), "-o", str(out / "x.wav"), "--max-minutes", "0.25"])
        assert_one_error_line(code, err)
        outcome("render", code, err)
        if code == 0:
            with wave.open(str(out / "x.wav")) as w:
                assert w.getnframes() > 0 and w.getnchannels() == 2
        else:
            assert not (out / "x.wav").exists()
        assert leftovers(out) == [] and src.read_bytes() == data  # the input is never touched


# -- bad journals -----------------------------------------------------------------------------------------------

ANY = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                st.text(max_size=4), st.lists(st.integers(-1, 300), max_size=3))
FRAME = st.one_of(st.integers(-64, 256), ANY)
TIME = st.one_of(st.floats(-1.0, 60.0), st.sampled_from([1e12, -1e12, 1e300]), ANY)
PITCH = st.one_of(st.integers(0, 127), ANY)
JOURNAL_EVENT = st.one_of(
    st.fixed_dictionaries({"e": st.just("on"), "f": FRAME, "t": TIME, "p": PITCH, "v": PITCH}),
    st.fixed_dictionaries({"e": st.just("off"), "f": FRAME, "t": TIME, "p": PITCH}),
    st.fixed_dictionaries({"e": st.just("chord"), "f": FRAME, "t": TIME, "s": st.one_of(st.none(), st.text(max_size=5)),
                           "p": st.one_of(st.lists(PITCH, max_size=4), ANY), "b": st.one_of(st.none(), PITCH),
                           "on": st.one_of(st.booleans(), ANY), "tok": st.one_of(st.integers(0, 700), ANY)}),
    st.fixed_dictionaries({"e": st.just("tok"), "f": FRAME, "tok": ANY}),
    st.fixed_dictionaries({"e": st.sampled_from(["stats", "later-kind", "close"]), "x": ANY}),
    st.dictionaries(st.sampled_from(["e", "f", "t", "p"]), ANY, max_size=4),
)
HEADER = st.fixed_dictionaries(
    {"e": st.just("header"), "format": st.one_of(st.just(1), ANY)},
    optional={"bpm": st.one_of(st.floats(1, 2000), ANY), "meter": st.one_of(st.just([4, 4]), ANY),
              "t0": st.one_of(st.floats(-10, 10), ANY), "settings": st.one_of(st.just({}), ANY,
                                                                              st.just({"programs": {"melody": 999}}))})
LINE = st.one_of(JOURNAL_EVENT.map(lambda e: json.dumps(e)), st.sampled_from(["", "{", "[1, 2]", "null", "\x00\xff"]))


@st.composite
def journals(draw) -> str:
    header = draw(st.one_of(HEADER.map(json.dumps), LINE))  # mostly a header, sometimes none
    lines = [header, *draw(st.lists(LINE, max_size=20))]
    tail = draw(st.sampled_from(["", "", '{"e": "on", "f": 3, "t"']))  # a torn last line, as a kill leaves it
    return "\n".join(lines) + "\n" + tail


@PROPERTY
@given(texts=st.lists(journals(), min_size=1, max_size=3))
def test_bad_journals_through_recover_never_give_a_traceback(texts):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i, text in enumerate(texts):
            (folder / f"session-{i}.journal.jsonl").write_text(text, encoding="utf-8", errors="surrogateescape")
        code, err = run_cli(["recover", "--dir", str(folder)])
        assert code in (0, 2), (code, err)
        event(f"recover: {len(list(folder.glob('*.mid')))} of {len(texts)} saved")
        assert all(ln.startswith("comper: ") for ln in err), err
        assert leftovers(folder) == []
        for mid in folder.glob("*.mid"):  # every MIDI file written is complete, with its sidecar
            assert_complete_session(mid)
        code, err = run_cli(["recover", "--dir", str(folder)])  # a second pass: what is left is offered again,
        assert code in (0, 2) and all(ln.startswith("comper: skipped ") or ln.startswith("comper: warning: ")
                                      for ln in err), err  # and nothing recovered twice


# -- stdout --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["models", "--json"], ["list-ports", "--json"], ["--help"]])
def test_a_reader_of_stdout_that_goes_away_ends_the_command_quietly(args):
    """`comper models --json | true` used to end in a BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written, as `| true` often is
    try:
        p = subprocess.run([sys.executable, "-m", "app.cli", *args], stdout=write_end, stderr=subprocess.PIPE,
                           cwd=REPO, timeout=120)
    finally:
        os.close(write_end)
    assert p.stderr.decode() == ""
    # the status of a command ended by SIGPIPE; argparse's help swallows the error itself and exits 0
    assert p.returncode in ((0, 141) if args == ["--help"] else (141,))
