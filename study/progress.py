"""Progress lines of a running study, at most every ``every`` seconds and when a trial ends."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial

if TYPE_CHECKING:
    from .recorder import StudyRecorder


class Progress:
    """Counts of finished / running / pruned / failed trials out of ``total`` and the best
    value of the study metric so far."""

    def __init__(self, total: int, metric: str, mode: str, every: float = 15.0) -> None:
        self.total, self.metric, self.mode, self.every = total, metric, mode, every
        self.status: dict[str, str] = {}
        self.best: tuple[float, str] | None = None
        self._start = time.monotonic()
        self._last_print = -math.inf
        self._force = False

    def trial_ended(self, trial_id: str, status: str, value: float | None = None,
                    label: str = "") -> None:
        self.status[trial_id] = status
        if status in ("finished", "diverged") and value is not None and math.isfinite(value):
            sign = 1 if self.mode == "max" else -1
            if self.best is None or sign * value > sign * self.best[0]:
                self.best = (value, label)
        self._force = True

    def counts(self, trials: list[Trial]) -> dict[str, Any]:
        done = list(self.status.values())
        return {"done": sum(s in ("finished", "diverged") for s in done),
                "running": sum(t.status == Trial.RUNNING for t in trials),
                "pruned": done.count("pruned"), "failed": done.count("failed"),
                "total": self.total}

    def maybe_print(self, trials: list[Trial], recorder: StudyRecorder | None = None) -> None:
        now = time.monotonic()
        if not self._force and now - self._last_print < self.every:
            return
        self._force, self._last_print = False, now
        c = self.counts(trials)
        best = (f"  best {self.metric} {self.best[0]:.4f} ({self.best[1]})" if self.best else "")
        print(f"[{now - self._start:6.0f}s] trials done {c['done']}/{c['total']}  running "
              f"{c['running']}  pruned {c['pruned']}  failed {c['failed']}{best}", flush=True)
