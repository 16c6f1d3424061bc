"""The one way Comper writes a file: session MIDI + sidecar, re-jams, WAV renders, exports, screenshots.

Why one writer: each output used to open its target its own way, and an unlucky or mistyped path destroyed
things (a sidecar overwrote a model card, a MIDI file its own sidecar, a device node became a file, a full disk left
``x.mid.tmp`` or a MIDI file without its sidecar, a killed render left half a WAV under the real name). Here:

- a path the user named is checked before anything runs: a new path or a regular file with the expected suffix is
  written; a folder, a device or other special file, one of Comper's own files (a model graph or card, a
  journal, a session sidecar), or the input the command reads (``comper rejam in.mid -o in.mid``) is refused with
  one line naming the path and the reason;
- every file goes to a temporary file in the target's folder, is fsynced, and only then replaces the target with
  ``os.replace`` (atomic: the name holds the old file or the complete new one, never part of one);
- files written together (a MIDI file and its sidecar) are all complete before the first replace, so a failure
  while writing replaces nothing;
- an ``OSError`` (read-only folder, full disk, no permission) becomes an ``OutputError``: one line, and no
  temporary file is left behind.

The sidecar is ``NAME.mid.session.json``: it cannot be the MIDI file itself nor a model card (``NAME.json`` next to
``NAME.onnx``); sidecars of older versions (``NAME.json``) are still read (``existing_sidecar``).
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..errors import ComperError
from .journal import SUFFIX as JOURNAL_SUFFIX
from .journal import fsync_dir

T = TypeVar("T")
Writer = Callable[[BinaryIO], T]

MIDI = (".mid", ".midi")
WAV = (".wav",)
SIDECAR_SUFFIX = ".session.json"
_OWN_SUFFIXES = ((".onnx", "a model graph"), (JOURNAL_SUFFIX, "a session journal"),
                 (SIDECAR_SUFFIX, "a session sidecar"))


class OutputError(ComperError, RuntimeError):
    """A file Comper will not or cannot write; the message is one line naming the path and the reason."""


def sidecar_path(midi_path: str | os.PathLike) -> Path:
    """Where the sidecar of ``midi_path`` is written: ``NAME.mid.session.json`` next to it."""
    p = Path(midi_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def existing_sidecar(midi_path: str | os.PathLike) -> Path | None:
    """The sidecar to read for ``midi_path``: ``NAME.mid.session.json``, else the ``NAME.json`` older versions wrote."""
    for p in (sidecar_path(midi_path), Path(midi_path).with_suffix(".json")):
        if p.is_file():
            return p
    return None


def read_sidecar(midi_path: str | os.PathLike) -> dict:
    """A session's sidecar fields ({} when there is none, it cannot be read, or it is not a JSON object)."""
    path = existing_sidecar(midi_path)
    try:
        side = json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return {}
    return side if isinstance(side, dict) else {}


def _not_replaceable(path: Path) -> str | None:
    """Why ``path`` may not be replaced by a file (None: it is a new path or a regular file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        return e.strerror or str(e)
    if stat.S_ISDIR(mode):
        return "it is a folder"
    if not stat.S_ISREG(mode):
        return "it is a device or other special file"
    return None


def _own_file(path: Path) -> str | None:
    """Which of Comper's own files ``path`` is (None: none of them)."""
    name = path.name.lower()
    for suffix, what in _OWN_SUFFIXES:
        if name.endswith(suffix):
            return what
    if name.endswith(".json") and path.with_suffix(".onnx").exists():
        return "a model card"
    return None


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing or unreadable: not the same existing file
        return False


def check_target(path: str | os.PathLike, suffixes: Sequence[str],
                 inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse (``OutputError``) a user-named output that must not be written; returns it as a ``Path``.
    ``inputs``: the files the command reads, never replaced by what it writes (by any name: links too).

    Called before the work starts (a jam, a re-jam, a render), so a refused path costs nothing."""
    path = Path(path)
    own = _own_file(path)
    if own:
        raise OutputError(f"{path}: not written: it is {own}")
    why = _not_replaceable(path)
    if why:
        raise OutputError(f"{path}: not written: {why}")
    if not path.name.lower().endswith(tuple(suffixes)):
        raise OutputError(f"{path}: not written: the name must end in {' or '.join(suffixes)}")
    if any(_same_file(path, src) for src in inputs):
        raise OutputError(f"{path}: not written: it is the input file")
    return path


def _write_temp(path: Path, write: Writer) -> tuple[Path, object]:
    """``write`` into a new temporary file next to ``path``, synced to disk; returns (temp path, write's result)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            result = write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, result


def write_together(files: Sequence[tuple[str | os.PathLike, Writer]]) -> list[object]:
    """Write every ``(path, write)`` pair, all or nothing: each ``write(binary file)`` fills a temporary file, and
    only when all are complete do they replace their targets (in order). Returns what each ``write`` returned.

    Each path must be new or a regular file (Comper's own derived names, e.g. a sidecar: not checked for being
    Comper's; a path the user named goes through ``check_target`` first). Raises ``OutputError`` for an
    ``OSError``; any other error from a ``write`` is raised as it is. Either way no temporary file is left.
    """
    targets = [Path(p) for p, _ in files]
    for path in targets:
        why = _not_replaceable(path)
        if why:
            raise OutputError(f"{path}: not written: {why}")
    done: list[tuple[Path, Path, object]] = []
    path = targets[0]
    try:
        for path, (_, write) in zip(targets, files):
            path.parent.mkdir(parents=True, exist_ok=True)
            done.append((path, *_write_temp(path, write)))
        for path, tmp, _ in done:
            os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"{path}: cannot write: {e.strerror or e}") from None
    finally:
        for _, tmp, _ in done:
            tmp.unlink(missing_ok=True)  # after a replace it is gone already
    for folder in {p.parent for p in targets}:
        fsync_dir(folder)
    return [result for _, _, result in done]


def write_file(path: str | os.PathLike, write: Writer[T], suffixes: Sequence[str]) -> T:
    """Check the user-named ``path`` (``check_target``), then write it atomically; returns what ``write`` returned."""
    return write_together([(check_target(path, suffixes), write)])[0]
