"""The one output writer (app/recording/output.py): what it refuses, that a target's name only ever holds a complete
file, and that a refused or failed write leaves nothing behind."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from app.recording import output
from app.recording.output import (
    MIDI,
    OutputError,
    check_target,
    existing_sidecar,
    sidecar_path,
    write_file,
    write_together,
)

OWN = {"gapt.json": "a model card", "gapt.onnx": "a model graph", "session-1.journal.jsonl": "a session journal",
       "take.mid.session.json": "a session sidecar"}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def put(data: bytes):
    return lambda f: f.write(data)


def one_line(e: pytest.ExceptionInfo, path: Path, reason: str) -> None:
    assert str(e.value) == f"{path}: {reason}"


def test_a_new_path_is_written_and_a_regular_file_replaced(tmp_path):
    target = tmp_path / "new" / "a.mid"
    assert write_file(target, put(b"one"), MIDI) == 3  # what the write returned
    write_file(target, put(b"two"), MIDI)
    assert target.read_bytes() == b"two" and names(target.parent) == ["a.mid"]


@pytest.mark.parametrize("name", sorted(OWN))
def test_comper_own_files_are_refused(tmp_path, name):
    for n in OWN:
        (tmp_path / n).write_text("mine")
    with pytest.raises(OutputError) as e:
        write_file(tmp_path / name, put(b"x"), MIDI)
    one_line(e, tmp_path / name, f"not written: it is {OWN[name]}")
    assert names(tmp_path) == sorted(OWN) and all((tmp_path / n).read_text() == "mine" for n in OWN)


def test_a_name_without_the_expected_suffix_is_refused(tmp_path):
    with pytest.raises(OutputError) as e:
        check_target(tmp_path / "song.json", MIDI)
    one_line(e, tmp_path / "song.json", "not written: the name must end in .mid or .midi")
    assert check_target(tmp_path / "Song.MIDI", MIDI) == tmp_path / "Song.MIDI"


def test_a_folder_is_refused_and_kept(tmp_path):
    folder = tmp_path / "take.mid"
    folder.mkdir()
    (folder / "inside").write_text("kept")
    for write in (lambda: write_file(folder, put(b"x"), MIDI), lambda: write_together([(folder, put(b"x"))])):
        with pytest.raises(OutputError) as e:
            write()
        one_line(e, folder, "not written: it is a folder")
    assert folder.is_dir() and names(folder) == ["inside"] and names(tmp_path) == ["take.mid"]


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_is_refused_and_stays_a_device(device, monkeypatch):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")

    def never(src, dst):  # should the check ever regress, fail here rather than replace a device node as root
        raise AssertionError(f"os.replace onto {dst}")

    monkeypatch.setattr(output.os, "replace", never)
    before = os.stat(device)
    assert stat.S_ISCHR(before.st_mode)
    for write in (lambda: check_target(device, MIDI), lambda: write_together([(device, put(b"x"))])):
        with pytest.raises(OutputError) as e:
            write()
        one_line(e, Path(device), "not written: it is a device or other special file")
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe.mid"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="device or other special file"):
        write_file(fifo, put(b"x"), MIDI)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_full_disk_mid_pair_replaces_nothing_and_leaves_nothing(tmp_path, full_disk):
    midi, side = tmp_path / "take.mid", sidecar_path(tmp_path / "take.mid")
    full_disk(2)  # the MIDI file is written whole, then the sidecar runs out of space
    with pytest.raises(OutputError) as e:
        write_together([(midi, put(b"new midi")), (side, put(b"new side"))])
    one_line(e, side, f"cannot write: {os.strerror(errno.ENOSPC)}")
    assert names(tmp_path) == []  # no half pair, no temporary file

    midi.write_bytes(b"old midi")
    side.write_bytes(b"old side")
    full_disk(2)
    with pytest.raises(OutputError):
        write_together([(midi, put(b"new midi")), (side, put(b"new side"))])
    assert midi.read_bytes() == b"old midi" and side.read_bytes() == b"old side"
    assert names(tmp_path) == ["take.mid", "take.mid.session.json"]


def test_a_read_only_destination_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "take.mid"
    target.write_bytes(b"old")

    def read_only(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(output.os, "replace", read_only)
    with pytest.raises(OutputError) as e:
        write_file(target, put(b"new"), MIDI)
    one_line(e, target, f"cannot write: {os.strerror(errno.EROFS)}")
    assert names(tmp_path) == ["take.mid"] and target.read_bytes() == b"old"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_folder_is_one_line_and_leaves_nothing(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError) as e:
            write_file(folder / "take.mid", put(b"x"), MIDI)
        one_line(e, folder / "take.mid", f"cannot write: {os.strerror(errno.EACCES)}")
        assert names(folder) == []
    finally:
        folder.chmod(0o755)


def test_an_error_in_the_write_itself_is_raised_as_it_is_and_leaves_the_target(tmp_path):
    target = tmp_path / "take.wav"
    target.write_bytes(b"old")

    def interrupted(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file(target, interrupted, (".wav",))
    assert names(tmp_path) == ["take.wav"] and target.read_bytes() == b"old"


def test_the_sidecar_cannot_collide_and_old_names_are_still_read(tmp_path):
    midi = tmp_path / "gapt.mid"
    assert sidecar_path(midi) == tmp_path / "gapt.mid.session.json"
    assert sidecar_path(tmp_path / "song.json") != tmp_path / "song.json"
    assert existing_sidecar(midi) is None
    (tmp_path / "gapt.json").write_text("{}")  # what older versions wrote
    assert existing_sidecar(midi) == tmp_path / "gapt.json"
    sidecar_path(midi).write_text("{}")
    assert existing_sidecar(midi) == sidecar_path(midi)  # the current name wins


def test_the_input_is_never_the_output_by_any_name(tmp_path):
    """`comper rejam in.mid -o in.mid` used to replace the melody it read with the re-jam."""
    src = tmp_path / "in.mid"
    src.write_bytes(b"melody")
    (tmp_path / "link.mid").symlink_to(src)
    for target in (src, tmp_path / "link.mid", tmp_path / "sub" / ".." / "in.mid"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputError) as e:
            check_target(target, MIDI, inputs=[src])
        one_line(e, target, "not written: it is the input file")
    assert check_target(tmp_path / "out.mid", MIDI, inputs=[src, tmp_path / "missing.mid"]) == tmp_path / "out.mid"
    assert src.read_bytes() == b"melody"
