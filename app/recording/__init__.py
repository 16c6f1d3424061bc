"""Recording: the session journal (written as the jam happens), saving to MIDI + JSON, and crash recovery.

The engine only needs ``Recorder``; the app's start-up uses ``find_unfinished`` / ``recover``.
"""

from .journal import Journal, JournalError, SessionJournal, read_journal
from .recorder import Recorder
from .recover import default_midi_path, find_unfinished, recover
from .save import save_session, sidecar_path

__all__ = [
    "Journal", "JournalError", "Recorder", "SessionJournal", "default_midi_path", "find_unfinished",
    "read_journal", "recover", "save_session", "sidecar_path",
]
