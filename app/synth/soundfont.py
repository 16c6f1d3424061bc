"""Find a General MIDI soundfont, or say in one line everywhere we looked.

A soundfont is ~6-150 MB and licensed separately, so the repository ships none: we use the one the system
package manager installed (Debian's ``libfluidsynth3`` depends on one: ``fluid-soundfont-gm`` or
``timgm6mb-soundfont``, both registered as ``/usr/share/sounds/sf2/default-GM.sf2``). Order of precedence:

1. the explicit path (e.g. ``--soundfont``): if given it must exist; we never silently play another sound;
2. ``$COMPER_SOUNDFONT``: same rule;
3. ``.sf2``/``.sf3`` files in the repository's ``assets/`` folder (a user may drop one there);
4. the usual system locations (Debian/Ubuntu, Fedora, Arch, Homebrew, Windows, the user's data folder).

A file is taken only if it is a soundfont: a RIFF file of form ``sfbk`` (SF2, and SF3, whose samples are
compressed inside the same container). ``comper doctor --soundfont random.mid`` used to say "[ok]" and the synth then
failed (or played nothing) later; now an explicit path that is no soundfont is one line naming it, and a found one
that is none is passed over (and named if nothing better is found).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ComperError

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


class SoundfontNotFound(ComperError, FileNotFoundError):
    """No usable soundfont (none there, or the file named is no soundfont); the message is one line naming the
    file, or listing every place that was tried."""


def soundfont_problem(path: Path) -> str | None:
    """Why ``path`` is not a soundfont (None: it is one: the header says ``RIFF`` ... ``sfbk``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        return "not a soundfont (an .sf2/.sf3 file starts with RIFF....sfbk)"
    return None


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
            if why := soundfont_problem(path):
                raise SoundfontNotFound(f"{path}: {why} (from {label})")
            return path.resolve()
    passed_over = []
    for path in search_locations():
        if path.is_file():
            if soundfont_problem(path) is None:
                return path.resolve()
            passed_over.append(str(path))
    looked = [f"${ENV_VAR} (unset)", f"{ASSETS}/*.sf2|*.sf3", *SYSTEM_LOCATIONS]
    raise SoundfontNotFound(
        "no soundfont found; looked in: " + ", ".join(looked)
        + (f" (not soundfonts: {', '.join(passed_over)})" if passed_over else "")
        + f"; install one (Debian/Ubuntu: apt-get install fluid-soundfont-gm) or set ${ENV_VAR}"
    )
