"""The run loop every trainer plugs into: MLE pretraining, the reward models and RL post-training.

A trainer builds its model, optimiser, data and metadata, then runs a ``RunLoop`` of callbacks: what one
step does, what a validation point measures, how the run is checkpointed. The loop owns the rest, the same way for
all of them:

- resume: the run restarts at the checkpoint's step, and log rows past it are dropped, since the resumed run logs
  them again (every step seeds its own randomness from (seed, step), so it logs the same values);
- ``log.jsonl``: one JSON row per logged step (and per validation point), flushed as written, so a killed run keeps
  its curve up to the kill;
- the progress bar (rate and ETA, on stderr);
- the schedule: validation every ``eval_every`` steps and at the schedule's end, ``ckpt_last`` every ``ckpt_every``
  steps and at the stop step, the curves redrawn after each save;
- ``until``: stop early, with a checkpoint, keeping the schedule (a long run trained in pieces across sessions, each
  resumed with the same command).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import NonFiniteLoss


@dataclass
class RunLoop:
    """One run's schedule and the trainer's callbacks; ``run`` drives them."""

    out: Path  # the run folder: log.jsonl lives here
    name: str  # the progress bar's label
    total: int  # the schedule's length (max_steps / updates): the bar's total and the last step
    start: int  # the step restored from the checkpoint (0 for a new run)
    step_fn: Callable[[int], dict]  # does step i (0-based: it seeds from i), returns its log row's fields
    save_fn: Callable[[int], None]  # writes ckpt_last (resumable) after step n
    eval_every: int
    ckpt_every: int
    log_every: int = 1
    eval_fn: Callable[[int], dict] | None = None  # the validation figures after step n (1-based)
    on_eval: Callable[[int, dict], None] | None = None  # sees each validation row (the best checkpoint)
    plot_fn: Callable[[], None] | None = None  # redraws the curves from log.jsonl, after each save
    postfix: Callable[[dict], dict] | None = None  # the progress bar's fields, from a logged row
    key: str = "step"  # the log's step key ("update" for RL)
    unit: str = "step"
    # RL: a validation point belongs to its update (one row, timed with it), and a run stopped by ``until`` ends on
    # one. MLE and the reward models: validation rows of their own, at eval_every and the schedule's end only.
    eval_in_row: bool = False
    eval_at_stop: bool = False
    on_row: Callable[[dict], None] | None = None  # the last touch to a step's row before it is logged (RL: timings)
    main: bool = True  # False on DDP ranks but 0: they step (their gradients count) and write nothing

    def evaluates(self, step: int, stop: int) -> bool:
        return self.eval_fn is not None and (step % self.eval_every == 0 or step == self.total
                                             or (self.eval_at_stop and step == stop))

    def run(self, until: int | None = None, quiet: bool = False) -> dict:
        """Steps ``start`` .. the stop step; returns the last validation row ({} when none was taken)."""
        from tqdm import tqdm

        stop = stop_step(self.total, until)
        log_path = Path(self.out) / "log.jsonl"
        if self.main:
            truncate_log(log_path, self.key, self.start)
        result: dict = {}
        with ExitStack() as closing:  # the bar and the log close on the way out, also when a step raises
            bar = closing.enter_context(tqdm(total=self.total, initial=self.start, desc=self.name, unit=self.unit,
                                             file=sys.stderr, disable=quiet or not self.main, dynamic_ncols=True))
            log = closing.enter_context(open(log_path, "a")) if self.main else None

            def write(row: dict) -> None:
                log.write(json.dumps(row) + "\n")
                log.flush()  # a killed run keeps its curve up to the kill

            for i in range(self.start, stop):
                step = i + 1
                row = {self.key: step, **self.step_fn(i)}
                if not self.main:
                    continue
                figures = self.eval_fn(step) if self.evaluates(step, stop) else None
                if figures is not None and self.eval_in_row:
                    row.update(figures)
                if self.on_row is not None:
                    self.on_row(row)
                if step % self.log_every == 0 or step == 1:
                    write(row)
                    if self.postfix is not None:
                        bar.set_postfix(**self.postfix(row))
                if figures is not None:
                    result = row if self.eval_in_row else {self.key: step, **figures}
                    if not self.eval_in_row:
                        write(result)
                    if not quiet:
                        bar.write(f"{self.key} {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()
                                                                     if isinstance(v, float)), file=sys.stderr)
                    if self.on_eval is not None:
                        self.on_eval(step, result)
                bar.update()
                if step % self.ckpt_every == 0 or step == stop:
                    self.save_fn(step)
                    if self.plot_fn is not None:
                        self.plot_fn()
        return result


def stop_step(total: int, until: int | None) -> int:
    """Where a run stops: the schedule's end, or ``until`` when it is set and comes earlier."""
    return min(total, until or total)


def truncate_log(log_path: Path, key: str, step: int) -> None:
    """Drop the rows past ``step`` (the checkpoint's): logged after the last save, they are lost with the kill,
    and the resumed run logs them again."""
    if log_path.exists():
        rows = [line for line in log_path.read_text().splitlines() if line.strip() and json.loads(line)[key] <= step]
        log_path.write_text("".join(r + "\n" for r in rows))


def guarded_step(loss: torch.Tensor, model: torch.nn.Module, opt: torch.optim.Optimizer, grad_clip: float,
                 step: int, last: Path) -> float:
    """Backward, clip, step; a non-finite loss stops the run before it can touch the weights or a checkpoint."""
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"non-finite loss ({loss.item()}) at step {step}; stopped. The last good checkpoint "
                            f"is {last}" + ("" if last.exists() else " (none written yet)"))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return float(gnorm)
