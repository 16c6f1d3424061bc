"""The run loop shared by the trainers, driven by a fake trainer: its schedule, its log, and exact resume."""

import json

import numpy as np
import pytest

from training.loop import RunLoop


class Fake:
    """A trainer without a model: its "weight" is a sum of draws, each seeded by (seed, step) as the real ones are.
    ``ckpt`` stands in for ckpt_last.pt; ``kill_at`` kills the process as it starts that step (0-based)."""

    def __init__(self, out, ckpt=None, kill_at=None):
        self.out, self.kill_at, self.saves, self.evals = out, kill_at, [], []
        self.ckpt = ckpt or {"step": 0, "w": 0.0}
        self.w = self.ckpt["w"]
        out.mkdir(exist_ok=True)

    def step(self, i):
        if i == self.kill_at:
            raise KeyboardInterrupt
        self.w += float(np.random.default_rng([0, i]).random())
        return {"w": self.w}

    def validate(self, n):
        self.evals.append(n)
        return {"val_w": -self.w}

    def save(self, n):
        self.saves.append(n)
        self.ckpt = {"step": n, "w": self.w}

    def loop(self, log_every=1, **kw):
        return RunLoop(out=self.out, name="fake", total=7, start=self.ckpt["step"], step_fn=self.step,
                       eval_fn=self.validate, save_fn=self.save, eval_every=3, ckpt_every=2, log_every=log_every, **kw)


def read_log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_the_loop_logs_evaluates_and_saves_on_its_schedule(tmp_path):
    run = Fake(tmp_path / "run")
    result = run.loop(log_every=2).run(quiet=True)
    rows = read_log(run.out)
    assert [r["step"] for r in rows if "w" in r] == [1, 2, 4, 6]  # every log_every, and the first step
    assert [r["step"] for r in rows if "val_w" in r] == [3, 6, 7] == run.evals  # every eval_every, and the end
    assert run.saves == [2, 4, 6, 7]  # every ckpt_every, and the end
    assert result == rows[-1] == {"step": 7, "val_w": -run.w}  # the last validation row


def test_a_run_stopped_by_until_then_killed_then_resumed_logs_what_an_uninterrupted_run_logs(tmp_path):
    straight = Fake(tmp_path / "straight")
    straight.loop().run(quiet=True)

    first = Fake(tmp_path / "pieces")
    first.loop().run(until=3, quiet=True)
    assert first.saves == [2, 3] and first.evals == [3]  # a checkpoint at the stop step
    killed = Fake(first.out, first.ckpt, kill_at=5)  # resumed at 3, killed as it starts step 6
    with pytest.raises(KeyboardInterrupt):
        killed.loop().run(quiet=True)
    assert killed.saves == [4] and [r["step"] for r in read_log(first.out)][-2:] == [4, 5]  # step 5: unsaved
    last = Fake(first.out, killed.ckpt)  # resumed from the step-4 checkpoint
    last.loop().run(quiet=True)
    assert last.saves == [6, 7]
    assert read_log(first.out) == read_log(straight.out)  # step 5's row dropped, then logged again, the same
    assert [r["step"] for r in read_log(first.out)] == [1, 2, 3, 3, 4, 5, 6, 6, 7, 7]


def test_rl_style_validation_joins_its_row_and_a_stopped_run_ends_on_one(tmp_path):
    run = Fake(tmp_path / "rl")
    result = run.loop(key="update", eval_in_row=True, eval_at_stop=True).run(until=5, quiet=True)
    rows = read_log(run.out)
    assert [r["update"] for r in rows] == [1, 2, 3, 4, 5] and run.evals == [3, 5]
    assert [r["update"] for r in rows if "val_w" in r] == [3, 5] and result == rows[-1] == {"update": 5, "w": run.w,
                                                                                           "val_w": -run.w}
