"""One parser module per dataset, all with the same two functions.

``discover(data_dir, workdir) -> list[SongRef]`` lists the songs cheaply (extracting tarballs into ``workdir``);
``parse(ref) -> LeadSheet`` reads one song, raising ``SkipSong`` for an unusable one. Modules are imported lazily
so a worker only pays for the libraries its songs need (music21 is slow to import).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> (module, folder under the data directory, role)
SOURCES: dict[str, tuple[str, str, str]] = {
    "pop909": ("training.data.sources.pop909", "pop909", "train"),
    "nottingham": ("training.data.sources.nottingham", "nottingham", "train"),
    "chord_melody_dataset": ("training.data.sources.chord_melody_dataset", "chord_melody_dataset", "train"),
    "openewld": ("training.data.sources.openewld", "openewld", "ood"),
    "hooktheory": ("training.data.sources.hooktheory", "hooktheory", "melody"),
}
TRAINING_SOURCES = tuple(name for name, (_, _, role) in SOURCES.items() if role == "train")


def load(name: str) -> ModuleType:
    return importlib.import_module(SOURCES[name][0])
