"""The desktop app (PySide6): a face on the live engine in ``app.engine``.

Qt is imported only inside ``run``, so ``import app.gui`` (and the CLI) never needs PySide6.
"""

from __future__ import annotations


def no_display_reason() -> str | None:
    """Why a window cannot open here, or None. Qt itself aborts the process with a page of text when it finds no
    display; a musician on a headless box gets one line and the way to run the app anyway."""
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the window on ($DISPLAY and $WAYLAND_DISPLAY are unset); on a desktop run `comper`, "
            "here try `QT_QPA_PLATFORM=offscreen comper --demo --seconds 12 --screenshot shot.png` or `comper jam`")


def run(argv: list[str] | None = None) -> int:
    """Open the app (``--demo``, ``--seconds``, ``--screenshot``: see ``options.py``); returns the exit status."""
    import sys

    reason = no_display_reason()
    if reason:
        print(f"comper: error: {reason}", file=sys.stderr)
        return 2
    from .app import main

    return main(argv)
