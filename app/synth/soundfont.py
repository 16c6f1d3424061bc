"""Find a General MIDI soundfont, or say in one line everywhere we looked.

A soundfont is ~6-150 MB and licensed separately, so the repository ships none: we use the one the system
package manager installed (Debian's ``libfluidsynth3`` depends on one: ``fluid-soundfont-gm`` or
``timgm6mb-soundfont``, both registered as ``/usr/share/sounds/sf2/default-GM.sf2``). Order of precedence:

1. the explicit path (e.g. ``--soundfont``): if given it must exist; we never silently play another sound;
2. ``$COMPER_SOUNDFONT``: same rule;
3. ``.sf2``/``.sf3`` files in the repository's ``assets/`` folder (a user may drop one there);
4. the usual system locations (Debian/Ubuntu, Fedora, Arch, Homebrew, Windows, the user's data folder).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "COMPER_SOUNDFONT"
ASSETS = Path(__file__).resolve().parents[2] / "assets"

SYSTEM_LOCATIONS: tuple[str, ...] = (
    "/usr/share/sounds/sf2/default-GM.sf2",  # Debian/Ubuntu alternative (points at the installed GM font)
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # timgm6mb-soundfont
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/soundfonts/default.sf2",  # Fedora/Arch
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Arch soundfont-fluid
    "/usr/share/soundfonts/FluidR3_GM2-2.sf2",  # Fedora fluid-soundfont-gm
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",  # Homebrew (Apple silicon)
    "/usr/local/share/fluidsynth/default.sf2",
    "~/.local/share/soundfonts/default.sf2",
    "~/Library/Audio/Sounds/Banks/default.sf2",  # macOS user banks
    "C:/soundfonts/default.sf2",  # FluidSynth's own default on Windows
)


class SoundfontNotFound(FileNotFoundError):
    """No usable soundfont; the message is one line listing every place that was tried."""


def search_locations() -> list[Path]:
    """The fallback candidates after the explicit path and the environment: assets first, then the system."""
    found = sorted([*ASSETS.glob("*.sf2"), *ASSETS.glob("*.sf3")]) if ASSETS.is_dir() else []
    return found + [Path(loc).expanduser() for loc in SYSTEM_LOCATIONS]


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path:
    """The soundfont to load; raises ``SoundfontNotFound`` (one line) if none exists.

    An explicit path or ``$COMPER_SOUNDFONT`` that does not exist is an error even if a system font exists:
    the user asked for that sound, and silently playing another would hide their typo.
    """
    env = os.environ.get(ENV_VAR)
    for label, given in (("explicit path", explicit), (f"${ENV_VAR}", env)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise SoundfontNotFound(f"soundfont not found: {path} (from {label})")
            return path.resolve()
    for path in search_locations():
        if path.is_file():
            return path.resolve()
    looked = [f"${ENV_VAR} (unset)", f"{ASSETS}/*.sf2|*.sf3", *SYSTEM_LOCATIONS]
    raise SoundfontNotFound(
        "no soundfont found; looked in: " + ", ".join(looked)
        + f"; install one (Debian/Ubuntu: apt-get install fluid-soundfont-gm) or set ${ENV_VAR}"
    )
