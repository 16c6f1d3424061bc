"""`comper jam` as a musician runs it, over real MIDI on JACK: killed mid-jam it loses nothing that was played;
ended by SIGTERM or Ctrl-C, a planner fault or a crash, it leaves no note sounding at the port; a bad journal in
its folder never blocks it; and on a machine with no MIDI at all it fails in one line.

The crash test runs the real command in a subprocess, plays notes into its virtual input from another JACK client,
waits until chords arrive at a third (the synth), kills it with SIGKILL, runs `comper recover`, and compares the
recovered MIDI file with what was sent and what was heard.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mido
import pytest
import rtmidi
from jack_helpers import Synth, unique, wait_until

from app.recording import find_unfinished, sidecar_path

REPO = Path(__file__).resolve().parents[1]
PHRASE = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62]
TRACK_CHANNEL = {"Chords": 1, "Bass": 2}  # app.engine.performer.PARTS


def strikes_heard(messages: list[tuple[int, ...]]) -> list[frozenset]:
    """Chords as the synth heard them: each run of chord/bass note-ons (between note-offs) is one strike."""
    out, run = [], set()
    for m in messages:
        if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0 and m[0] & 0x0F in (1, 2):
            run.add((m[0] & 0x0F, m[1]))
            continue
        if run:
            out.append(run)
            run = set()
    if run:
        out.append(run)
    # the saved file writes a bass note once, on the Bass track, even if the voicing doubles it
    return [frozenset(n for n in r if not (n[0] == 1 and (2, n[1]) in r)) for r in out]


def strikes_saved(mid: mido.MidiFile) -> list[frozenset]:
    by_tick: dict[int, set] = {}
    for track in mid.tracks:
        if track.name not in TRACK_CHANNEL:
            continue
        now = 0
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                by_tick.setdefault(now, set()).add((TRACK_CHANNEL[track.name], msg.note))
    return [frozenset(by_tick[t]) for t in sorted(by_tick)]


def melody_saved(mid: mido.MidiFile) -> list[int]:
    track = next(t for t in mid.tracks if t.name == "Melody")
    now, ons, open_ = 0, [], set()
    for msg in track:
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert msg.note not in open_
            open_.add(msg.note)
            ons.append((now, msg.note))
        elif msg.type in ("note_on", "note_off"):
            open_.discard(msg.note)
    assert not open_, "every melody note ends in the saved file, the one held at the kill too"
    return [p for _, p in sorted(ons, key=lambda x: x[0])]


def jam_command(tmp_path: Path, bundle: Path, synth: str, *extra: str) -> list[str]:
    """`comper jam` from the virtual input to ``synth`` on JACK at 240 bpm, recorded into ``tmp_path``."""
    return [sys.executable, "-m", "app.cli", "jam", "--in", "virtual", "--out", synth, "--midi-api", "JACK",
            "--bpm", "240", "--listen", "1", "--count-in", "0", "--record", str(tmp_path / "jam.mid"),
            "--model", str(bundle), "--teacher", "none", "--seed", "2", *extra]


def start_jam(tmp_path: Path, bundle: Path, synth: str) -> tuple[subprocess.Popen, Path]:
    """The jam in a subprocess, once it plays; its output goes to ``tmp_path / "jam.log"``."""
    log_path = tmp_path / "jam.log"
    env = dict(os.environ, COMPER_SESSIONS=str(tmp_path), PYTHONUNBUFFERED="1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(jam_command(tmp_path, bundle, synth), cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started = wait_until(lambda: proc.poll() is not None or "Ctrl-C ends the jam" in log_path.read_text(), 30)
    assert started and proc.poll() is None, f"comper jam did not start: {log_path.read_text()[-2000:]}"
    return proc, log_path


@contextlib.contextmanager
def ended(proc: subprocess.Popen, player) -> Iterator[None]:
    """Whatever the test does with the jam, the jam process ends (killed if still running) and the player's port
    goes away."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        player.close_port()
        player.delete()


def open_comper_in(player) -> None:
    port = next((i for i, n in enumerate(player.get_ports()) if n.endswith(":Comper in")), None)
    assert port is not None, f"no ':Comper in' among {player.get_ports()}"
    player.open_port(port)


def play_until_chords(player, synth: Synth, sent: list[int], strikes: int = 3, seconds: float = 10) -> None:
    """Play the phrase (each note into ``sent``) until ``strikes`` chords reached the synth."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (len(sent) < 8 or len(strikes_heard(synth.poll())) < strikes):
        pitch = PHRASE[len(sent) % len(PHRASE)]
        player.send_message([0x90, pitch, 90])
        sent.append(pitch)
        time.sleep(0.1)
        player.send_message([0x80, pitch, 0])
        time.sleep(0.025)
    assert len(strikes_heard(synth.poll())) >= strikes, "no chords reached the synth"


def test_sigkill_mid_jam_loses_no_note_played_and_no_chord_heard(jack, tiny_bundle, tmp_path, capsys):
    from app.cli import main

    synth = Synth(unique("crash-synth"))
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, unique("crash-player"))
    proc, _ = start_jam(tmp_path, tiny_bundle, synth.name)
    with ended(proc, player):
        open_comper_in(player)
        journal = next(tmp_path.glob("*.journal.jsonl"))
        header = json.loads(journal.read_text().splitlines()[0])
        t0, frame_s = header["t0"], 60 / 240 / 4

        sent: list[int] = []
        play_until_chords(player, synth, sent)
        held = PHRASE[len(sent) % len(PHRASE)]
        player.send_message([0x90, held, 90])  # killed while this note is down
        sent.append(held)
        time.sleep(0.2)  # every note sent has reached Comper's input
        # kill half a frame after a chord's time: no chord is being sent then, so "heard" and "saved" must agree
        g = math.ceil((time.monotonic() - t0) / frame_s)
        while time.monotonic() < t0 + (g + 0.5) * frame_s:
            time.sleep(0.0005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    time.sleep(0.1)
    heard = strikes_heard(synth.poll())
    synth.unplug()

    assert find_unfinished(tmp_path) == [journal]
    assert main(["recover", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    midi_path = Path(out.strip().rsplit(" -> ", 1)[1])
    assert midi_path.exists() and find_unfinished(tmp_path) == []

    mid = mido.MidiFile(midi_path)
    assert melody_saved(mid) == sent, "every melody note sent before the kill, in order"
    saved = strikes_saved(mid)
    assert len(heard) >= 3 and saved == heard, "the chords the synth heard, and only those, are in the file"
    side = json.loads(sidecar_path(midi_path).read_text())
    assert side["recovered"] is True and side["model"]["name"] == "tiny-test"


def test_jam_with_no_midi_at_all_fails_in_one_line(tmp_path):
    """No ALSA sequencer (this machine has none) and no JACK server: one line naming the port and saying why no
    port exists, exit status 2, before any model is loaded or synth started (and none of libjack's own noise)."""
    env = dict(os.environ, JACK_DEFAULT_SERVER=f"comper-no-server-{os.getpid()}", JACK_NO_START_SERVER="1",
               COMPER_SESSIONS=str(tmp_path))
    cases = [(["--in", "virtual", "--midi-api", "JACK"], ["'Comper in'", "JACK: no JACK server is running"]),
             (["--in", "My Keyboard"], ["'My Keyboard'", "JACK: no JACK server is running"])]
    if not os.path.exists("/dev/snd/seq"):
        cases[1][1].append("ALSA: no MIDI sequencer")
    for args, expected in cases:
        done = subprocess.run([sys.executable, "-m", "app.cli", "jam", *args, "--seconds", "1"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("comper: error: cannot open "), (args, done.stderr)
        for text in expected:
            assert text in lines[0], (args, lines[0])
        assert done.stdout == "", (args, done.stdout)  # the synth never started
    assert not any(tmp_path.iterdir()), "no session was started"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_jam_ended_by_a_signal_releases_every_note_at_the_port_and_saves_the_take(jack, tiny_bundle, tmp_path,
                                                                                     sig):
    synth = Synth(unique("signal-synth"))
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, unique("signal-player"))
    proc, log_path = start_jam(tmp_path, tiny_bundle, synth.name)
    with ended(proc, player):
        open_comper_in(player)
        play_until_chords(player, synth, [])
        player.send_message([0x90, 67, 90])  # a note held down too
        assert wait_until(lambda: synth.sounding(), 5), "a chord sounds at the port when the signal comes"
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-2000:]
    time.sleep(0.2)
    left = synth.sounding()
    synth.unplug()
    assert not left, f"notes left sounding at the port: {left}"
    assert f"saved {tmp_path / 'jam.mid'}" in log_path.read_text()
    assert find_unfinished(tmp_path) == [] and sidecar_path(tmp_path / "jam.mid").exists()
    assert strikes_saved(mido.MidiFile(tmp_path / "jam.mid")), "the chords played are in the take"


def test_a_bad_journal_in_the_sessions_folder_never_blocks_a_new_jam(jack, tiny_bundle, tmp_path):
    bad = tmp_path / "session-old.journal.jsonl"
    bad.write_text('{"e":"on","f":0,"t":0,"p":60}\n')  # no header: nothing to recover from it
    synth = Synth(unique("journal-synth"))
    env = dict(os.environ, COMPER_SESSIONS=str(tmp_path))
    done = subprocess.run(jam_command(tmp_path, tiny_bundle, synth.name, "--seconds", "1"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    synth.unplug()
    assert done.returncode == 0, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("comper:")]
    assert said == [f"comper: skipped {bad}: line 1 is not a journal header"]
    assert (tmp_path / "jam.mid").exists() and f"saved {tmp_path / 'jam.mid'}" in done.stdout


@pytest.mark.parametrize("kind", ["planner-fault", "crash"])
def test_a_planner_fault_or_a_crash_mid_jam_leaves_no_note_sounding_at_the_port(jack, tiny_bundle, tmp_path, capsys,
                                                                               monkeypatch, kind):
    """In-process (so the model can be broken on cue): NaN logits mid-jam end it with one line, status 2, the take
    saved; an unexpected error in the jam's own loop ends it with its traceback, the take left to `recover`. In
    both, what sounded at the port gets its note-off."""
    import threading

    from fault_helpers import FaultySession

    import app.cli as cli
    import app.engine.policy as policy_module

    sessions: list[FaultySession] = []
    real_session = policy_module.onnx_session

    def faulty_session(bundle, threads=1):
        sessions.append(FaultySession(real_session(bundle, threads), "nan"))
        return sessions[-1]

    monkeypatch.setattr(policy_module, "onnx_session", faulty_session)
    crash = threading.Event()

    def wait_or_crash(session, seconds):
        """The jam's own loop, failing with an error no one expected once ``crash`` is set."""
        while not crash.wait(0.05):
            pass
        raise RuntimeError("boom")

    if kind == "crash":
        monkeypatch.setattr(cli, "_wait_for_end", wait_or_crash)
    monkeypatch.setenv("COMPER_SESSIONS", str(tmp_path))
    synth = Synth(unique("fault-synth"))
    player = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, unique("fault-player"))
    helper_failed: list[BaseException] = []

    def play_then_break() -> None:
        try:
            assert wait_until(lambda: any(n.endswith(":Comper in") for n in player.get_ports()), 30)
            open_comper_in(player)
            play_until_chords(player, synth, [], strikes=2)
            assert wait_until(lambda: synth.sounding(), 5), "a chord sounds when it breaks"
        except BaseException as e:  # noqa: BLE001 - reported by the test, not lost in the thread
            helper_failed.append(e)
        (sessions[-1].arm if kind == "planner-fault" else crash.set)()

    helper = threading.Thread(target=play_then_break, daemon=True)
    helper.start()
    args = jam_command(tmp_path, tiny_bundle, synth.name, "--seconds", "60")[3:]
    t0 = time.monotonic()
    try:
        if kind == "planner-fault":
            assert cli.main(args) == 2
        else:
            with pytest.raises(RuntimeError, match="boom"):
                cli.main(args)
    finally:
        crash.set()
        helper.join(timeout=30)
        player.close_port()
        player.delete()
    assert not helper_failed, helper_failed
    assert time.monotonic() - t0 < 40, "it ended at the fault, not at --seconds"
    time.sleep(0.2)
    left = synth.sounding()
    heard = strikes_heard(synth.poll())
    synth.unplug()
    assert len(heard) >= 2 and not left, f"notes left sounding at the port: {left}"
    out, err = capsys.readouterr()
    if kind == "planner-fault":
        assert err.count("\n") == 1 and err.startswith("comper: error: the jam stopped at frame "), err
        assert f"the planner failed: {tiny_bundle.with_suffix('.onnx')}: the model gave NaN or inf logits" in err
        assert err.endswith(f"; the take so far is saved in {tmp_path / 'jam.mid'}\n")
        assert find_unfinished(tmp_path) == [] and strikes_saved(mido.MidiFile(tmp_path / "jam.mid"))
    else:
        assert len(find_unfinished(tmp_path)) == 1, "the take is left to `comper recover`"
