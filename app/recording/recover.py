"""Crash recovery: find journals that never got their closing line and turn them into saved sessions.

The app calls ``recover_all`` at start-up (before it opens a new journal), ``comper jam`` before a new jam, and
``comper recover`` on demand (``--list``: the same, writing nothing). Each journal is recovered on its own: one that
cannot be (no header, an output path that is refused) is reported and skipped, never stopping the others or the new
jam; a bad line or field inside one is skipped and reported (``Journal.problems``), never stopping the rest of it.

Order: the MIDI file and its sidecar are written first; only then is the journal repaired in place (a torn last
line cut, a closing line marked ``"recovered": true`` appended), so a save that fails (a full disk) leaves the
journal unfinished and it is offered again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .journal import SUFFIX, Journal, JournalError, closing_line, encode_line, is_finished, read_journal
from .output import MIDI, OutputError, check_target
from .save import build_midi, write_session

MAX_PROBLEM_LINES = 5  # per journal: a journal with thousands of bad lines is reported in a few lines


def default_midi_path(journal_path: str | os.PathLike) -> Path:
    """``session-X.journal.jsonl`` -> ``session-X.mid`` in the same folder."""
    p = Path(journal_path)
    stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem
    return p.with_name(stem + ".mid")


def find_unfinished(directory: str | os.PathLike) -> list[Path]:
    """Journals in ``directory`` without a closing line, oldest first (an empty or unreadable one is skipped)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    out = []
    for p in d.glob("*" + SUFFIX):
        try:
            if p.stat().st_size > 0 and not is_finished(p):
                out.append((p.stat().st_mtime, p.name, p))
        except OSError:
            continue
    return [p for *_, p in sorted(out)]


@dataclass
class Recovery:
    """What recovering one journal did (or, for a dry run, would do)."""

    journal: Path
    midi: Path  # the file written (or that would be)
    written: bool = False
    melody_notes: int = 0
    chord_onsets: int = 0
    problems: list[str] = field(default_factory=list)  # lines and fields skipped or replaced inside the journal
    failure: JournalError | OutputError | None = None  # why the journal is skipped (nothing written)

    @property
    def error(self) -> str | None:
        """One line naming the file and why it was skipped; None when it was (or would be) saved."""
        return None if self.failure is None else str(self.failure)

    def headline(self) -> str:
        """What was (or would be) written, or why the journal is skipped."""
        if self.error and self.written:
            return f"recovered {self.journal} -> {self.midi}, but {self.error}"
        if self.error:
            return f"skipped {self.error}"
        if self.written:
            return f"recovered {self.journal} -> {self.midi}"
        return (f"would recover {self.journal} -> {self.midi} ({self.melody_notes} melody notes, "
                f"{self.chord_onsets} chord onsets)")

    def problem_lines(self) -> list[str]:
        """The problems inside the journal, one line each naming the file, capped at ``MAX_PROBLEM_LINES``."""
        lines = [f"{self.journal}: {p}" for p in self.problems[:MAX_PROBLEM_LINES]]
        if len(self.problems) > MAX_PROBLEM_LINES:
            lines.append(f"{self.journal}: ... and {len(self.problems) - MAX_PROBLEM_LINES} more problem(s)")
        return lines


def _mark_recovered(journal: Journal, line: dict) -> None:
    """Cut a torn last line (every complete one stays) and append the closing line: not offered again."""
    try:
        with open(journal.path, "r+b") as f:
            f.truncate(journal.valid_bytes)
            f.seek(0, os.SEEK_END)
            f.write(encode_line(line))
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise JournalError(f"{journal.path}: saved, but cannot be marked recovered ({e.strerror or e})") from None


def recover_one(journal_path: str | os.PathLike, midi_path: str | os.PathLike | None = None,
                write: bool = True) -> Recovery:
    """Recover one journal (default output: ``<session>.mid`` next to it), or with ``write=False`` only say what
    would be written. Never raises for a bad journal or a refused path: ``Recovery.error`` says why."""
    path = Path(journal_path)
    result = Recovery(path, Path(midi_path or default_midi_path(path)))
    try:
        journal = read_journal(path)
        result.problems = journal.problems
        check_target(result.midi, MIDI)
        if not write:
            summary = build_midi(journal)[1]
        else:
            closing = journal.close or closing_line(recovered=True, truncated_tail=journal.truncated)
            summary = write_session(journal, result.midi, closing)
            result.written = True
            if journal.close is None:
                _mark_recovered(journal, closing)
    except (JournalError, OutputError) as e:
        result.failure = e
        return result
    result.melody_notes, result.chord_onsets = summary["melody_notes"], summary["chord_onsets"]
    return result


def recover_all(directory: str | os.PathLike, write: bool = True) -> list[Recovery]:
    """``recover_one`` for every unfinished journal in ``directory``, oldest first, each on its own."""
    return [recover_one(p, write=write) for p in find_unfinished(directory)]


def recover(journal_path: str | os.PathLike, midi_path: str | os.PathLike | None = None) -> Path:
    """Close an unfinished journal and save it (default: ``<session>.mid`` next to it); returns the MIDI path.

    Raises ``JournalError`` if the journal has no readable header (nothing to recover), ``OutputError`` for a path
    that cannot be written. A finished journal is just saved again.
    """
    result = recover_one(journal_path, midi_path)
    if result.failure is not None:
        raise result.failure
    return result.midi


__all__ = ["JournalError", "Recovery", "default_midi_path", "find_unfinished", "recover", "recover_all",
           "recover_one"]
