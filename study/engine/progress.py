"""Progress lines of a running study: at most every ``every`` seconds, and when a trial ends.

    [  1m05s] 3/8 done (2 finished, 1 pruned, 0 failed) | 2 running: depth=2 45/150,
              depth=3 12/150 | 3 waiting | best val_bound -0.934 (depth=2) | epochs 1,234/2,400,
              ETA 2m10s

The counters always add up to the study's trials. The ETA is the cost model's time of the
work left (``study.spec.cost``: each trial's training phases, validation, final evaluation and
fixed cost; early stopping's expected epochs; a pruned or early-stopped trial's epochs dropped)
at the pace of the work done so far (the model's seconds of the work done over the wall time
since the study's start-up), so trials of different cost and the evaluation at each trial's
end are counted; "~" marks epochs that are an expectation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ray.tune.experiment import Trial

from study.spec import cost

DONE = ("finished", "diverged", "pruned", "failed")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts, running trials' epochs, the best value of the study metric, and the ETA.

    ``estimate(config)``: a trial's cost estimate from its Ray config; ``plan``: the estimates
    of the study's configurations (a trial not started yet counts as their mean);
    ``study_s``: the study's fixed start-up, left out of the pace."""

    def __init__(self, total: int, metric: str, mode: str, factors: list[str],
                 estimate: Callable[[dict[str, Any]], cost.Estimate],
                 plan: list[cost.Estimate], every: float = 10.0,
                 study_s: float = cost.STUDY_S) -> None:
        self.total, self.metric, self.mode = total, metric, mode
        self.factors, self.every, self.study_s = factors, every, study_s
        self.estimate = estimate
        self.waiting_s = sum(e.seconds for e in plan) / len(plan)
        self.waiting_epochs = sum(e.work.epochs for e in plan) / len(plan)
        self.expected = any(e.work.expected for e in plan)
        self.status: dict[str, str] = {}
        self.trained: dict[str, int] = {}  # epochs of trials that ended
        self.ended_s: dict[str, float] = {}  # the model's seconds of trials that ended
        self.best: tuple[float, str] | None = None
        self._start = time.monotonic()
        self._last_print = -math.inf
        self._force = False

    def label(self, config: dict[str, Any]) -> str:
        return ", ".join(f"{k}={_short(config.get(k))}" for k in self.factors) or "the configuration"

    def trial_ended(self, trial_id: str, status: str, epochs: int, value: float | None = None,
                    label: str = "", config: dict[str, Any] | None = None) -> None:
        self.status[trial_id] = status
        self.trained[trial_id] = epochs
        self.ended_s[trial_id] = self.waiting_s if config is None else \
            self.estimate(config).seconds_ended(epochs, evaluated=status != "failed")
        if status in ("finished", "diverged") and value is not None and math.isfinite(value):
            sign = 1 if self.mode == "max" else -1
            if self.best is None or sign * value > sign * self.best[0]:
                self.best = (value, label)
        self._force = True

    def line(self, trials: list[Trial], epoch_of: dict[str, int]) -> str:
        counts = {s: sum(v == s for v in self.status.values()) for s in DONE}
        done = sum(counts.values())
        running = [t for t in trials if t.status == Trial.RUNNING and t.trial_id not in self.status]
        waiting = max(0, self.total - done - len(running))
        parts = [f"{done}/{self.total} done ({counts['finished'] + counts['diverged']} finished, "
                 f"{counts['pruned']} pruned, {counts['failed']} failed)"]
        ests = {t.trial_id: self.estimate(t.config) for t in running}
        if running:
            shown = ", ".join(
                f"{self.label(t.config)} {epoch_of.get(t.trial_id, 0)}/"
                f"{ests[t.trial_id].work.epochs_text}" for t in running[:4])
            parts.append(f"{len(running)} running: {shown}" + (" ..." if len(running) > 4 else ""))
        parts.append(f"{waiting} waiting")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g} ({self.best[1]})")
        parts.append(self._eta(running, waiting, ests, epoch_of))
        return f"[{duration(time.monotonic() - self._start):>6}] " + " | ".join(parts)

    def _eta(self, running: list[Trial], waiting: int, ests: dict[str, cost.Estimate],
             epoch_of: dict[str, int]) -> str:
        """``epochs trained/expected, ETA``: the model's seconds left at the pace so far.

        The pace (wall seconds per model second) is the time since the start-up over the model
        seconds done, shrunk toward the model's own pace (its seconds, as many at once as are
        running) by one mean trial's worth of seconds, so the first epochs of a study (whose
        worker start-up the model counts only as a trial's fixed cost) do not set it alone. A
        running trial is credited half its fixed cost (its start) from its first epoch."""
        at = {t.trial_id: epoch_of.get(t.trial_id, 0) for t in running}
        trained = sum(self.trained.values()) + sum(at.values())
        expected = sum(self.trained.values()) + waiting * self.waiting_epochs + sum(
            max(ests[i].work.epochs, e) for i, e in at.items())
        done_s = sum(self.ended_s.values()) + sum(
            ests[i].seconds_through(e) + ests[i].started_s(e) for i, e in at.items())
        left_s = waiting * self.waiting_s + sum(
            ests[i].seconds_left(e) - ests[i].started_s(e) for i, e in at.items())
        elapsed = max(time.monotonic() - self._start - self.study_s, 0.0)
        prior = self.waiting_s
        pace = (elapsed + prior / max(len(running), 1)) / (done_s + prior)
        approx = "~" if self.expected or any(e.work.expected for e in ests.values()) else ""
        eta = f", ETA {duration(left_s * pace)}" if (done_s or running) and left_s > 0 else ""
        return f"epochs {trained:,}/{approx}{expected:,.0f}{eta}"

    def maybe_print(self, trials: list[Trial], epoch_of: dict[str, int]) -> None:
        now = time.monotonic()
        if not self._force and now - self._last_print < self.every:
            return
        self._force, self._last_print = False, now
        print(self.line(trials, epoch_of), flush=True)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
