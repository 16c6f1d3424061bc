"""Recording: the session journal (written as the jam happens), saving to MIDI + JSON, and crash recovery; and
``output``, the one writer every file Comper writes goes through.

The engine only needs ``Recorder``; the app's start-up and ``comper jam`` / ``recover`` use ``recover_all``.
"""

from .journal import Journal, JournalError, SessionJournal, read_journal
from .output import OutputError, existing_sidecar, sidecar_path
from .recorder import Recorder
from .recover import Recovery, default_midi_path, find_unfinished, recover, recover_all, recover_one
from .save import save_session

__all__ = [
    "Journal", "JournalError", "OutputError", "Recorder", "SessionJournal", "default_midi_path", "existing_sidecar",
    "Recovery", "find_unfinished", "read_journal", "recover", "recover_all", "recover_one", "save_session",
    "sidecar_path",
]
