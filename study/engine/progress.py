"""Progress lines of a running study: at most every ``every`` seconds, and when a trial ends.

    [  1m05s] 3/8 done (2 finished, 1 pruned, 0 failed) | 2 running: depth=2 45/150,
              depth=3 12/150 | 3 waiting | best val_bound -0.934 (depth=2) | epochs 1,234/2,400,
              ETA 2m10s

The counters always add up to the study's trials; the ETA is the epochs left (a pruned trial's
are dropped) at the rate of the epochs done so far.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune.experiment import Trial

DONE = ("finished", "diverged", "pruned", "failed")


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts, running trials' epochs, the best value of the study metric, and the ETA."""

    def __init__(self, total: int, epochs: int, metric: str, mode: str,
                 factors: list[str], every: float = 10.0) -> None:
        self.total, self.epochs, self.metric, self.mode = total, epochs, metric, mode
        self.factors, self.every = factors, every
        self.status: dict[str, str] = {}
        self.trained: dict[str, int] = {}  # epochs of trials that ended
        self.best: tuple[float, str] | None = None
        self._start = time.monotonic()
        self._last_print = -math.inf
        self._force = False

    def label(self, config: dict[str, Any]) -> str:
        return ", ".join(f"{k}={_short(config.get(k))}" for k in self.factors) or "the configuration"

    def trial_ended(self, trial_id: str, status: str, epochs: int, value: float | None = None,
                    label: str = "") -> None:
        self.status[trial_id] = status
        self.trained[trial_id] = epochs
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
        if running:
            shown = ", ".join(f"{self.label(t.config)} {epoch_of.get(t.trial_id, 0)}/{self.epochs}"
                              for t in running[:4])
            parts.append(f"{len(running)} running: {shown}" + (" ..." if len(running) > 4 else ""))
        parts.append(f"{waiting} waiting")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g} ({self.best[1]})")
        trained = sum(self.trained.values()) + sum(epoch_of.get(t.trial_id, 0) for t in running)
        planned = sum(self.trained.values()) + (self.total - done) * self.epochs
        elapsed = time.monotonic() - self._start
        eta = ""
        if trained and planned > trained:
            eta = f", ETA {duration((planned - trained) * elapsed / trained)}"
        parts.append(f"epochs {trained:,}/{planned:,}{eta}")
        return f"[{duration(elapsed):>6}] " + " | ".join(parts)

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
