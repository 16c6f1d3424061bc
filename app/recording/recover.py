"""Crash recovery: find journals that never got their closing line and turn them into saved sessions.

The app calls ``find_unfinished`` at start-up (before it opens a new journal) and offers to recover each one.
``recover`` first repairs the journal in place (cuts a torn last line, appends a closing line marked
``"recovered": true``), so the same journal is not offered again, then saves it like a normal session.
"""

from __future__ import annotations

import os
from pathlib import Path

from .journal import SUFFIX, JournalError, encode_line, is_finished, read_journal, utc_now
from .save import save_session


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
                out.append(p)
        except OSError:
            continue
    return sorted(out, key=lambda p: (p.stat().st_mtime, p.name))


def recover(journal_path: str | os.PathLike, midi_path: str | os.PathLike | None = None) -> Path:
    """Close an unfinished journal and save it (default: ``<session>.mid`` next to it); returns the MIDI path.

    Raises ``JournalError`` if the journal has no readable header (nothing to recover). A finished journal is
    just saved again.
    """
    path = Path(journal_path)
    journal = read_journal(path)
    if not journal.finished:
        with open(path, "r+b") as f:
            f.truncate(journal.valid_bytes)  # drop a torn last line, keep every complete one
            f.seek(0, os.SEEK_END)
            f.write(encode_line({"e": "close", "ended": utc_now(), "recovered": True,
                            "truncated_tail": journal.truncated}))
            f.flush()
            os.fsync(f.fileno())
    return save_session(path, midi_path or default_midi_path(path))


__all__ = ["JournalError", "default_midi_path", "find_unfinished", "recover"]
