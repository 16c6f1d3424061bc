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


PER_SOURCE = 10


def smoke_pretrain(kind: str, cache, tmp_path_factory) -> Path:
    """A real (tiny, seconds-long) MLE run of one model kind on the small cache."""
    from training.pretrain import RECIPES, pretrain

    out = tmp_path_factory.mktemp("run") / f"{kind}-tiny"
    pretrain(kind, "tiny", cache, out, RECIPES["smoke"], device="cpu", quiet=True)
    return out


@pytest.fixture(scope="session")
def small_cache(shared_data, tmp_path_factory):
    """A cache of a few real songs per source, built once per test session."""
    from training.data import cache as cache_mod

    out = tmp_path_factory.mktemp("cache")
    stats = cache_mod.build(shared_data, out, processes=2, limit=PER_SOURCE)
    return cache_mod.load(out), stats


@pytest.fixture(scope="session")
def tiny_run(small_cache, tmp_path_factory):
    """A real (tiny, seconds-long) MLE run of the online policy on the small cache."""
    return smoke_pretrain(kind="online", cache=small_cache[0], tmp_path_factory=tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory):
    """The tiny run exported as a model bundle (ONNX + card), with its int8 variant."""
    from training.export import export_bundle

    out = tmp_path_factory.mktemp("models")
    export_bundle(tiny_run, "tiny-test", out, int8=True)
    return out / "tiny-test.json"


@pytest.fixture(scope="session")
def tiny_melody_agent(small_cache, tmp_path_factory):
    """A tiny MLE run of the melody agent."""
    return smoke_pretrain(kind="melody", cache=small_cache[0], tmp_path_factory=tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_teacher(small_cache, tmp_path_factory):
    """A tiny MLE run of the offline teacher."""
    return smoke_pretrain(kind="offline", cache=small_cache[0], tmp_path_factory=tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_rewards(small_cache, tmp_path_factory):
    """A contrastive and a rhythm-only discriminative reward model (tiny, a few steps each)."""
    from training.rewards import recipe_for, train_reward

    runs = []
    for kind, rhythm in (("contrastive", False), ("discriminative", True)):
        out = tmp_path_factory.mktemp("run") / f"{kind}{'-rhythm' if rhythm else ''}"
        train_reward(kind, "tiny", small_cache[0], out, recipe_for(kind, "smoke", rhythm), rhythm=rhythm,
                     device="cpu", quiet=True)
        runs.append(out)
    return runs


@pytest.fixture(scope="session")
def jack(tmp_path_factory):
    """A private JACK dummy server for the whole test session (tests/jack_helpers.py)."""
    from jack_helpers import run_jack

    yield from run_jack(tmp_path_factory)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(n)``: the n-th file the output writer writes from now on hits a full disk (ENOSPC) after its
    first bytes, as a real full disk does; the writer's own temporary-file handling runs for real."""
    import errno

    from app.recording import output

    real = output._write_temp

    def arm(nth: int = 1) -> None:
        calls = 0

        def write_temp(path, write):
            nonlocal calls
            calls += 1
            if calls != nth:
                return real(path, write)

            def fill(f):
                f.write(b"\0" * 4096)
                f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            return real(path, fill)

        monkeypatch.setattr(output, "_write_temp", write_temp)

    return arm


@pytest.fixture(scope="session")
def nan_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with every weight NaN and a card whose sha256 matches (tests/fault_helpers.py)."""
    from fault_helpers import nan_weights_copy

    return nan_weights_copy(tiny_bundle, tmp_path_factory.mktemp("nan-models"), "tiny-nan")
