"""The app's command-line options, shared by `comper` (no subcommand) and `app.gui.run`; no Qt here, so the
CLI can describe them without importing PySide6."""

from __future__ import annotations

import argparse

from ..engine.options import add_arguments, knob


def add_app_options(p: argparse.ArgumentParser) -> None:
    """Options of the desktop app (used when no subcommand is given)."""
    p.add_argument("--demo", action="store_true",
                   help="open the app and jam on the bundled demo melody (assets/melodies/ode_to_joy.mid)")
    add_arguments(p, [knob("seconds")], unset={"seconds": "with --demo: then the session is saved and the app exits"})
    p.add_argument("--screenshot", metavar="FILE.png",
                   help="with --demo --seconds: save a screenshot of the window just before the jam stops")


def app_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="comper", description="Comper, the desktop app")
    add_app_options(p)
    return p
