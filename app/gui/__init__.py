"""The desktop app (PySide6): a face on the live engine in ``app.engine``.

Qt is imported only inside ``run``, so ``import app.gui`` (and the CLI) never needs PySide6.
"""

from __future__ import annotations


def run(argv: list[str] | None = None) -> int:
    """Open the app (``--demo``, ``--seconds``, ``--screenshot``: see ``options.py``); returns the exit status."""
    from .app import main

    return main(argv)
