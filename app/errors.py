"""``ComperError``: the base of every error a user can fix (a bad file, field, port, flag or value).

Its message is one line that names the file, field, port or flag and what is wrong; the commands (``comper``,
``comper-train``) print it as ``error: ...`` with exit status 2 instead of a traceback, and the desktop app shows
it in its status line. Anything else is a bug and keeps its traceback. Each subsystem keeps its own subclass
(``BundleError``, ``PortError``, ...), so callers can still catch the one they expect.
"""

from __future__ import annotations


class ComperError(Exception):
    """An error the user can fix; the message is one line naming what is wrong."""
