"""The built-in synth: soundfont discovery, the audio-driver probe (silent mode), and offline rendering that really
sounds (proved by a frequency check of the rendered WAV)."""

from __future__ import annotations

import errno
import glob
import os
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from app.recording import OutputError
from app.synth import BuiltinSynth, RenderError, SoundfontNotFound, find_soundfont, render_midi_to_wav
from app.synth import soundfont as sf_mod
from app.synth import synth as synth_mod

C_MAJOR = {"C4": 261.63, "E4": 329.63, "G4": 392.00}
NOT_PLAYED = {"Eb4": 311.13, "C#4": 277.18, "F4": 349.23, "A4": 440.00}


def spectrum_peaks(wav: Path, start: float, stop: float, freqs: dict[str, float]) -> dict[str, float]:
    """Peak magnitude within +-3 Hz of each frequency, relative to the median magnitude in 50-2000 Hz."""
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2).mean(axis=1)
    seg = x[int(start * sr):int(stop * sr)]
    seg = seg * np.hanning(len(seg))
    n = 4 * sr  # zero-padded to 0.25 Hz bins
    mag = np.abs(np.fft.rfft(seg, n=n))
    f = np.fft.rfftfreq(n, 1 / sr)
    floor = np.median(mag[(f > 50) & (f < 2000)])
    return {k: float(mag[(f > v - 3) & (f < v + 3)].max() / floor) for k, v in freqs.items()}


def assert_c_major(wav: Path, start: float, stop: float) -> None:
    played = spectrum_peaks(wav, start, stop, C_MAJOR)
    absent = spectrum_peaks(wav, start, stop, NOT_PLAYED)
    weakest = min(played.values())
    assert weakest > 50, (played, absent)  # measured: 800-2800x the floor
    assert max(absent.values()) < weakest / 10, (played, absent)  # measured: < 5x the floor


def c_major_midi(path: Path, seconds: float = 1.0) -> Path:
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(120)))
    tr.append(mido.Message("program_change", channel=0, program=0))
    for p in (60, 64, 67):
        tr.append(mido.Message("note_on", note=p, velocity=90, time=0))
    ticks = int(seconds * 2 * 480)
    for i, p in enumerate((60, 64, 67)):
        tr.append(mido.Message("note_off", note=p, velocity=0, time=ticks if i == 0 else 0))
    mid.save(str(path))
    return path


# -- soundfont discovery -----------------------------------------------------------------------------------------


SF2_HEADER = b"RIFF\x04\x00\x00\x00sfbk"  # what find_soundfont looks at; FluidSynth reads the rest


def test_explicit_soundfont_wins(tmp_path, monkeypatch):
    mine = tmp_path / "mine.sf2"
    mine.write_bytes(SF2_HEADER)
    monkeypatch.setenv("COMPER_SOUNDFONT", str(tmp_path / "other.sf2"))
    assert find_soundfont(str(mine)) == mine.resolve()


def test_env_soundfont(tmp_path, monkeypatch):
    env = tmp_path / "env.sf2"
    env.write_bytes(SF2_HEADER)
    monkeypatch.setenv("COMPER_SOUNDFONT", str(env))
    assert find_soundfont(None) == env.resolve()


@pytest.mark.parametrize("source", ["explicit", "env"])
def test_missing_requested_soundfont_is_an_error_not_a_fallback(tmp_path, monkeypatch, source):
    missing = tmp_path / "typo.sf2"
    if source == "env":
        monkeypatch.setenv("COMPER_SOUNDFONT", str(missing))
    with pytest.raises(SoundfontNotFound) as err:
        find_soundfont(str(missing) if source == "explicit" else None)
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg


@pytest.mark.parametrize("source", ["explicit", "env"])
def test_a_file_that_is_no_soundfont_is_refused_in_one_line(tmp_path, monkeypatch, source):
    fake = c_major_midi(tmp_path / "random.mid")
    if source == "env":
        monkeypatch.setenv("COMPER_SOUNDFONT", str(fake))
    with pytest.raises(SoundfontNotFound) as err:
        find_soundfont(str(fake) if source == "explicit" else None)
    assert str(err.value) == (f"{fake}: not a soundfont (an .sf2/.sf3 file starts with RIFF....sfbk) "
                              f"(from {'explicit path' if source == 'explicit' else '$COMPER_SOUNDFONT'})")
    wav = tmp_path / "x.wav"  # a WAV file is RIFF too, of another form
    wav.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(SoundfontNotFound, match="not a soundfont"):
        find_soundfont(wav)


def test_doctor_and_render_refuse_a_soundfont_that_is_none(tmp_path, monkeypatch, capsys):
    """`comper doctor --soundfont random.mid` used to say "[ok]"."""
    from app.cli import main

    fake = tmp_path / "random.mid"
    fake.write_bytes(os.urandom(2048))
    monkeypatch.setenv("COMPER_MODELS", str(tmp_path / "no-models"))  # no model to check: this is about the synth
    assert main(["doctor", "--soundfont", str(fake)]) == 1
    said = f"{fake}: not a soundfont (an .sf2/.sf3 file starts with RIFF....sfbk) (from explicit path)"
    out = capsys.readouterr().out.splitlines()
    assert f"[!!] synth: {said}" in out and not any("soundfont" in ln for ln in out if ln.startswith("[ok]")), out
    midi = c_major_midi(tmp_path / "c.mid")
    assert main(["render", str(midi), "-o", str(tmp_path / "c.wav"), "--soundfont", str(fake)]) == 2
    assert capsys.readouterr().err == f"comper: error: {said}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mid", "random.mid"]


def test_a_found_file_that_is_no_soundfont_is_passed_over(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPER_SOUNDFONT", raising=False)
    monkeypatch.setattr(sf_mod, "ASSETS", tmp_path / "assets")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "broken.sf2").write_bytes(b"\0" * 64)
    real = tmp_path / "sys" / "default-GM.sf2"
    real.parent.mkdir()
    real.write_bytes(SF2_HEADER)
    monkeypatch.setattr(sf_mod, "SYSTEM_LOCATIONS", (str(real),))
    assert find_soundfont() == real.resolve()
    real.unlink()
    with pytest.raises(SoundfontNotFound, match=f"not soundfonts: {tmp_path / 'assets' / 'broken.sf2'}"):
        find_soundfont()


def test_no_soundfont_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPER_SOUNDFONT", raising=False)
    monkeypatch.setattr(sf_mod, "ASSETS", tmp_path / "assets")
    monkeypatch.setattr(sf_mod, "SYSTEM_LOCATIONS", (str(tmp_path / "sys" / "default-GM.sf2"), "/nowhere/FluidR3_GM.sf2"))
    with pytest.raises(SoundfontNotFound) as err:
        find_soundfont()
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("$COMPER_SOUNDFONT (unset)", str(tmp_path / "assets"), str(tmp_path / "sys" / "default-GM.sf2"),
                 "/nowhere/FluidR3_GM.sf2", "fluid-soundfont-gm"):
        assert part in msg, msg


def test_system_soundfont_is_found(monkeypatch):
    monkeypatch.delenv("COMPER_SOUNDFONT", raising=False)
    assert "/usr/share/sounds/sf2/default-GM.sf2" in sf_mod.SYSTEM_LOCATIONS
    assert "/usr/share/sounds/sf2/FluidR3_GM.sf2" in sf_mod.SYSTEM_LOCATIONS
    path = find_soundfont()
    assert path.is_file() and path.suffix in (".sf2", ".sf3")


# -- the live synth and its driver probe -------------------------------------------------------------------------


def _sound_output_possible() -> bool:
    """A sound card, a sound server socket or a default JACK server would let a driver open legitimately."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return bool(
        Path("/dev/snd").exists() or Path("/dev/dsp").exists()
        or glob.glob("/run/user/*/pulse/native") or glob.glob("/run/user/*/pipewire-0")
        or (runtime and (Path(runtime, "pulse", "native").exists() or Path(runtime, "pipewire-0").exists()))
        or glob.glob(f"/dev/shm/jack_{os.environ.get('JACK_DEFAULT_SERVER', 'default')}_*")  # a JACK server socket
    )


def test_probe_on_this_machine_ends_silent_without_raising():
    with BuiltinSynth() as synth:
        result = synth.start()
        assert result in (*synth_mod.DRIVER_ORDER, "silent")
        if _sound_output_possible():
            pytest.skip(f"this machine has audio output ({result}); the silent path is covered below")
        assert result == "silent" and synth.state == "silent" and synth.driver is None
        assert synth.reason.startswith("no audio output (") and "\n" not in synth.reason
        assert "pulseaudio:" in synth.reason and "alsa:" in synth.reason  # each failure with FluidSynth's words
        assert "file" not in synth.tried  # the file driver would write fluidsynth.wav into the cwd
        # silent mode is a visible no-op: notes are tracked so every note-on still gets its note-off
        synth.note_on("chords", 60, 100)
        synth.note_on(synth_mod.BASS, 36)
        assert synth.sounding() == {(1, 60), (2, 36)}
        synth.all_notes_off()
        assert synth.sounding() == set()
        synth.program_select("melody", 73)
        assert synth.programs[0] == 73


def test_driver_not_in_this_build_goes_silent_with_reason(monkeypatch):
    monkeypatch.setattr(synth_mod, "DRIVER_ORDER", ("coreaudio", "dsound"))
    synth = BuiltinSynth()
    assert synth.start() == "silent"
    assert "none of coreaudio, dsound is in this FluidSynth build (has " in synth.reason
    assert synth.start("coreaudio") == "silent"  # an explicit driver: no fallback, and the reason says why
    assert "coreaudio: not in this FluidSynth build" in synth.reason
    synth.close()
    synth.close()  # idempotent
    assert synth.state == "closed"


def test_missing_soundfont_goes_silent_with_reason(tmp_path):
    synth = BuiltinSynth(soundfont=tmp_path / "nope.sf2")
    assert synth.start() == "silent"
    assert "nope.sf2" in synth.reason


def test_a_driver_that_opens_plays_for_real(tmp_path, monkeypatch):
    """FluidSynth's ``file`` driver is a real audio driver (a thread rendering in real time into
    ./fluidsynth.wav): it proves the live path (channels, programs, note on/off) sounds a C major chord."""
    monkeypatch.chdir(tmp_path)
    import time

    synth = BuiltinSynth(programs={"chords": 0})
    assert synth.start("file") == "file"
    assert synth.state == "playing" and synth.driver == "file" and synth.reason == ""
    for p in (60, 64, 67):
        synth.note_on("chords", p, 100)
    time.sleep(0.8)
    synth.all_notes_off()
    assert synth.sounding() == set()
    synth.close()
    assert_c_major(tmp_path / "fluidsynth.wav", 0.15, 0.6)


def test_program_out_of_range_is_refused():
    with pytest.raises(ValueError):
        BuiltinSynth().program_select("bass", 128)


# -- offline rendering -------------------------------------------------------------------------------------------


def test_render_c_major_sounds_c_e_g(tmp_path):
    midi = c_major_midi(tmp_path / "c.mid", seconds=1.0)
    info = render_midi_to_wav(midi, tmp_path / "c.wav")
    assert info.notes == 3 and info.peak > 1000
    assert info.sample_rate == 44100 and abs(info.seconds - 2.5) < 0.01  # 1 s + 1.5 s tail
    with wave.open(str(info.wav_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 44100)
        assert w.getnframes() == info.samples
    assert_c_major(info.wav_path, 0.1, 0.9)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_midi_is_a_one_line_error_naming_the_file(tmp_path, kind):
    bad = tmp_path / f"{kind}.mid"
    if kind == "garbage":
        bad.write_bytes(b"this is not a MIDI file\n" * 10)
    else:
        good = c_major_midi(tmp_path / "good.mid").read_bytes()
        bad.write_bytes(good[: len(good) - 12])
    with pytest.raises(RenderError) as err:
        render_midi_to_wav(bad, tmp_path / "out.wav")
    msg = str(err.value)
    assert str(bad) in msg and "\n" not in msg
    assert not (tmp_path / "out.wav").exists()


def test_a_render_that_fails_midway_leaves_the_old_file_whole(tmp_path, full_disk):
    """The WAV used to be written in place: a full disk, a kill or a bad input left part of one under its name."""
    midi = c_major_midi(tmp_path / "c.mid", seconds=3.0)
    wav = tmp_path / "c.wav"
    render_midi_to_wav(midi, wav)
    before = wav.read_bytes()
    full_disk(1)
    with pytest.raises(OutputError) as err:
        render_midi_to_wav(midi, wav)
    assert str(err.value) == f"{wav}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert wav.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.mid", "c.wav"]
    (tmp_path / "bad.mid").write_bytes(b"MThd garbage")
    with pytest.raises(RenderError):
        render_midi_to_wav(tmp_path / "bad.mid", wav)
    assert wav.read_bytes() == before


def test_render_refuses_a_target_that_is_no_wav_file(tmp_path):
    midi = c_major_midi(tmp_path / "c.mid")
    before = midi.read_bytes()
    folder = tmp_path / "x.wav"
    folder.mkdir()
    for target, why in ((midi, "must end in .wav"), (folder, "it is a folder")):
        with pytest.raises(OutputError, match=why):
            render_midi_to_wav(midi, target)
    assert midi.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.mid", "x.wav"]


def test_a_file_over_the_limits_is_refused_before_anything_renders(tmp_path, capsys):
    """A 44-byte MIDI file with one note-off 2^28 ticks on once made `render` write 544 MB of WAV in 10 s."""
    import time

    from hostile_midi import one_note_then_a_note_off_far_away

    from app.cli import main
    from app.engine.midifile import InputLimits

    huge = one_note_then_a_note_off_far_away(tmp_path / "huge.mid")
    out = tmp_path / "out"
    t0 = time.monotonic()
    assert main(["render", str(huge), "-o", str(out / "huge.wav")]) == 2
    assert time.monotonic() - t0 < 5
    assert capsys.readouterr().err == (f"comper: error: {huge}: 4660.3 minutes of music, over the 20-minute limit "
                                       f"(--max-minutes)\n")
    assert not out.exists()
    midi = c_major_midi(tmp_path / "c.mid", seconds=3.0)
    assert main(["render", str(midi), "-o", str(out / "c.wav"), "--max-minutes", "0.04"]) == 2  # 2.4 s
    assert "0.1 minutes of music, over the 0.04-minute limit" in capsys.readouterr().err
    assert main(["render", str(midi), "-o", str(out / "c.wav"), "--max-minutes", "0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["c.wav"]
    with pytest.raises(RenderError, match="over the 40 bytes limit for a MIDI file"):
        render_midi_to_wav(midi, out / "c.wav", limits=InputLimits(max_bytes=40))
    # the app's own sessions are rendered whatever their length (no limits unless given)
    with pytest.raises(RenderError, match="not a readable"):
        render_midi_to_wav(tmp_path / "missing.mid", out / "x.wav")


def test_a_type_2_file_renders_its_patterns_in_sequence(tmp_path, capsys):
    """`render` of a type-2 file used to raise TypeError ("can't merge tracks in type 2 (asynchronous) file")."""
    from hostile_midi import type2_file

    path = type2_file(tmp_path / "patterns.mid")
    info = render_midi_to_wav(path, tmp_path / "p.wav")
    assert info.notes == 6 and abs(info.seconds - (2.0 + 2.0 + 1.5)) < 0.01  # 4 beats at 120, 2 at 60, the tail
    assert info.peak > 1000


def test_render_ignores_a_tempo_of_zero_and_says_so(tmp_path, capsys):
    from app.cli import main

    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=0), mido.Message("note_on", note=60),
                                      mido.Message("note_off", note=60, time=960)]))
    mid.save(tmp_path / "t0.mid")
    assert main(["render", str(tmp_path / "t0.mid"), "-o", str(tmp_path / "t0.wav")]) == 0
    out, err = capsys.readouterr()
    assert err == f"comper: warning: {tmp_path / 't0.mid'}: 1 set_tempo event of 0 us per beat ignored (not a tempo)\n"
    assert "wrote" in out and "2.5 s of audio" in out  # 2 beats at the default 120 bpm, then the tail


def test_a_render_killed_with_sigterm_leaves_no_temporary_file(tmp_path):
    """SIGTERM mid-render once left a hidden ``.c.wav.XXXX.tmp`` beside the target: it now ends the command as
    Ctrl-C does (exit 130), the writer's clean-up runs, and the old WAV is whole."""
    import signal
    import subprocess
    import sys
    import time

    midi = c_major_midi(tmp_path / "c.mid", seconds=1.0)
    wav = tmp_path / "c.wav"
    render_midi_to_wav(midi, wav)
    before = wav.read_bytes()
    long_midi = c_major_midi(tmp_path / "long.mid", seconds=15 * 60.0)  # 15 minutes: seconds of rendering
    long_midi.replace(midi)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "render", str(midi), "-o", str(wav)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".c.wav.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, f"the render ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, f"exit {proc.returncode}: {err[-1500:]}"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["c.mid", "c.wav"] and wav.read_bytes() == before, f"left {left}; the render said: {err[-500:]}"


def test_the_players_pedal_and_bend_reach_fluidsynth_and_all_notes_off_lifts_the_pedal():
    """Issue 19: the keyboard's sustain pedal (and every other controller) reaches the melody channel; stopping
    (``all_notes_off``) lifts the pedal and resets the controllers, or notes the pedal holds would ring on."""
    calls: list[tuple] = []

    class FakeLib:
        def __getattr__(self, name):
            return type("Fn", (), {"__call__": lambda _self, *a: calls.append((name, *a[1:]))})()

    class FakeFs:
        _fl = FakeLib()

        def fluid_synth_cc(self, _synth, *a):
            calls.append(("cc", *a))

        def fluid_synth_pitch_bend(self, _synth, *a):
            calls.append(("bend", *a))

    class FakeSynth:
        synth = object()

        def cc(self, *a):
            calls.append(("cc", *a))

        def noteoff(self, *a):
            pass

        def all_notes_off(self, ch):
            pass

    synth = BuiltinSynth()
    synth._fs, synth._synth = FakeFs(), FakeSynth()
    synth.control("melody", 0xB0, (64, 127))
    synth.control("melody", 0xE0, (0, 0x50))
    synth.control("melody", 0xD0, (40,))
    synth.control("melody", 0xA0, (60, 30))
    assert calls == [("cc", 0, 64, 127), ("bend", 0, 0x50 << 7), ("fluid_synth_channel_pressure", 0, 40),
                     ("fluid_synth_key_pressure", 0, 60, 30)]
    calls.clear()
    synth.all_notes_off()
    assert calls == [("cc", 0, 64, 0), ("cc", 0, 66, 0), ("cc", 0, 121, 0)]
    calls.clear()
    synth.all_notes_off()
    assert calls == [], "nothing to reset once reset"
    synth._fs, synth._synth = None, None
