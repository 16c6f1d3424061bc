"""Shared fixtures: where the real datasets are (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("COMPER_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not (d / "pop909").is_dir():
        pytest.fail(f"datasets not found at {d} (set COMPER_DATA)")
    return d
