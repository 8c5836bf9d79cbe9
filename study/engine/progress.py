"""Progress lines of a running study: at most every ``every`` seconds, and when a trial ends.

    [  1m05s] 3/8 done (2 finished, 1 pruned, 0 failed) | 2 running: depth=2 45/150,
              depth=3 12/150 | 3 waiting | best val_bound -0.934 (depth=2) | epochs 1,234/2,400,
              ETA 2m10s

The counters always add up to the study's trials. The ETA is the cost model's time of the
work left (``study.spec.cost``: each trial's training phases, validation, final evaluation and
fixed cost; early stopping's expected epochs; a pruned or early-stopped trial's epochs dropped)
at the paces trials have shown (wall seconds per model second of one trial: the trials that
ended, from their start to their last reported epoch, and the running ones up to theirs; the
restart candidates' phase and the training after it apart; a running trial's own paces for its
own training left; the final evaluation and closing at the pace that the ended trials'
closings have shown, from their last epoch to their end), laid out on the study's slots as the
trials will run:
each running trial's time left, less the time since its last report, then the waiting trials
on the first free slot. "~" marks epochs that are an expectation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ray.tune.experiment import Trial

from study.spec import cost

DONE = ("finished", "diverged", "pruned", "failed")
#: the most model seconds the ETA's pace is shrunk toward the model's own by (moons_depth's
#: trials are 6 model-minutes each: one whole trial held the pace near the model's, 1.9x too
#: slow, for a quarter of the run)
PRIOR_S = 60.0


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
    of the trials the study will run (a trial not started yet counts as their mean, or with
    ``grid`` as the cheapest of them: a grid starts its trials costliest first,
    ``study.engine.search``); ``clock``: the time in seconds (tests give their own). The
    recorder tells it when a trial starts, reports an epoch and ends."""

    def __init__(self, total: int, metric: str, mode: str, factors: list[str],
                 estimate: Callable[[dict[str, Any]], cost.Estimate],
                 plan: list[cost.Estimate], every: float = 10.0, grid: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.metric, self.mode = total, metric, mode
        self.factors, self.every, self.clock = factors, every, clock
        self.estimate = estimate
        self.waiting_s = sum(e.seconds for e in plan) / len(plan)
        self.closing_s = sum(e.closing_s for e in plan) / len(plan)
        self.plan, self.grid = plan, grid
        #: the share of their planned epochs that the ended trials with early stopping trained
        self.stopped: list[float] = []
        self.expected = any(e.work.expected for e in plan)
        self.status: dict[str, str] = {}
        self.trained: dict[str, int] = {}  # epochs of trials that ended
        self.best: tuple[float, str] | None = None
        #: when each running trial started and its epoch then (None until its first report
        #: tells: 0, or the epoch of the checkpoint it was restored from)
        self.since: dict[str, tuple[float, int | None]] = {}
        #: each running trial's last reported epoch and when it came
        self.reported: dict[str, tuple[int, float]] = {}
        #: each running trial's reports (epoch, when), in order
        self.reports: dict[str, list[tuple[int, float]]] = {}
        #: (wall seconds, model seconds) of the trials that ran in this driver and ended: their
        #: restart candidates' phase (from their start to the first report after the choice) ...
        self.ended_restarts: list[tuple[float, float]] = []
        #: ... their training after it (to their last reported epoch; a trial not evaluated
        #: (pruned, failed) or never reporting, to its end) ...
        self.ended: list[tuple[float, float]] = []
        #: ... and their closing (final evaluation, files, records: from their last reported
        #: epoch to their end)
        self.closed: list[tuple[float, float]] = []
        #: the most trials seen running at once: the study's slots
        self.slots = 1
        self._start = clock()
        self._last_print = -math.inf
        self._force = False

    def trial_started(self, trial_id: str) -> None:
        """A trial's worker starts (a new trial, a retried one, or one restored on resume)."""
        self.since[trial_id] = (self.clock(), None)
        self.reported.pop(trial_id, None)
        self.reports.pop(trial_id, None)

    def trial_reported(self, trial_id: str, epoch: int, restored_from: int = 0) -> None:
        """A trial reported ``epoch`` (a result may carry several epochs); it started at
        ``restored_from`` (0, or the epoch of the checkpoint it was restored from), which its
        pace counts from. A trial not seen starting counts from this report."""
        now = self.clock()
        t0, e0 = self.since.get(trial_id, (None, None))
        if t0 is None:
            self.since[trial_id] = (now, epoch)
        elif e0 is None:
            self.since[trial_id] = (t0, restored_from)
        self.reported[trial_id] = (epoch, now)
        self.reports.setdefault(trial_id, []).append((epoch, now))

    def label(self, config: dict[str, Any]) -> str:
        return ", ".join(f"{k}={_short(config.get(k))}" for k in self.factors) or "the configuration"

    def trial_ended(self, trial_id: str, status: str, epochs: int, value: float | None = None,
                    label: str = "", config: dict[str, Any] | None = None) -> None:
        self.status[trial_id] = status
        self.trained[trial_id] = epochs
        if trial_id in self.since and config is not None:  # ran here: its time shows the pace
            est = self._stopping(self.estimate(config))
            self._paced(trial_id, est, epochs,
                        status in ("finished", "diverged"))  # pruned or failed: no evaluation
            if est.work.expected and status in ("finished", "diverged"):
                self.stopped.append(epochs / est.work.planned_epochs)
        self.reported.pop(trial_id, None)
        self.reports.pop(trial_id, None)
        self.since.pop(trial_id, None)
        if status in ("finished", "diverged") and value is not None and math.isfinite(value):
            sign = 1 if self.mode == "max" else -1
            if self.best is None or sign * value > sign * self.best[0]:
                self.best = (value, label)
        self._force = True

    def _paced(self, trial_id: str, est: cost.Estimate, epochs: int, evaluated: bool) -> None:
        """An ended trial's wall and model seconds: its restart phase, its training after it
        and its closing apart where it was evaluated after reporting an epoch, otherwise its
        phases and the rest as training."""
        (t0, e0), now = self.since[trial_id], self.clock()
        e0 = e0 or 0
        restarts, trained = self._split(trial_id, est)
        parts = [(self.ended_restarts, *restarts), (self.ended, *trained)]
        e, t = self.reported.get(trial_id, (e0, t0))
        at = est.seconds_through(e) + est.started_s(e)
        if evaluated and e > e0:
            parts.append((self.closed, now - t, est.seconds_ended(epochs) - at))
        else:  # the rest of its time is training (and its fixed cost's other half)
            done = est.seconds_ended(epochs, evaluated) + (0.0 if evaluated
                                                           else est.started_s(epochs))
            parts.append((self.ended, now - t, done - at))
        for into, wall, model_s in parts:
            if model_s > 0 and wall > 0:
                into.append((wall, model_s))

    def line(self, trials: list[Trial], epoch_of: dict[str, int]) -> str:
        counts = {s: sum(v == s for v in self.status.values()) for s in DONE}
        done = sum(counts.values())
        running = [t for t in trials if t.status == Trial.RUNNING and t.trial_id not in self.status]
        waiting = max(0, self.total - done - len(running))
        parts = [f"{done}/{self.total} done ({counts['finished'] + counts['diverged']} finished, "
                 f"{counts['pruned']} pruned, {counts['failed']} failed)"]
        ests = {t.trial_id: self._stopping(self.estimate(t.config),
                                           self.reported.get(t.trial_id, (0, 0.0))[0])
                for t in running}
        # a trial's epoch: its last epoch result's, or the epochs it has trained before it can
        # report any (restart candidates', from progress results)
        epoch_of = {t.trial_id: max(epoch_of.get(t.trial_id, 0),
                                    self.reported.get(t.trial_id, (0, 0.0))[0]) for t in running}
        if running:
            shown = ", ".join(
                f"{self.label(t.config)} {epoch_of[t.trial_id]}/"
                f"{ests[t.trial_id].work.epochs_text}" for t in running[:4])
            parts.append(f"{len(running)} running: {shown}" + (" ..." if len(running) > 4 else ""))
        parts.append(f"{waiting} waiting")
        if self.best is not None:
            parts.append(f"best {self.metric} {self.best[0]:.4g} ({self.best[1]})")
        parts.append(self._eta(running, waiting, ests, epoch_of))
        return f"[{duration(self.clock() - self._start):>6}] " + " | ".join(parts)

    def _eta(self, running: list[Trial], waiting: int, ests: dict[str, cost.Estimate],
             epoch_of: dict[str, int]) -> str:
        """``epochs trained/expected, ETA`` (see the module docstring)."""
        now = self.clock()
        at = {t.trial_id: epoch_of.get(t.trial_id, 0) for t in running}
        self.slots = max(self.slots, len(running))
        trained = sum(self.trained.values()) + sum(at.values())
        plan = [self._stopping(e) for e in self.plan]
        expected = sum(self.trained.values()) + waiting * sum(
            e.work.epochs for e in plan) / len(plan) + sum(
            max(ests[i].work.epochs, e) for i, e in at.items())
        restart, pace = self.paces(ests)
        close = self.closing_pace(pace)
        busy = []
        for i in at:  # each running trial's time left, less the time since it last reported
            e, t = self.reported.get(i, (0, self.since.get(i, (now, None))[0]))
            est = ests[i]
            # its own paces, shrunk toward the study's by a quarter of its model seconds (at
            # most PRIOR_S): the model may misjudge one configuration against another
            prior = min(est.seconds / 4, PRIOR_S)
            (rw, rm), (mw, mm) = self._split(i, est)
            own_restart = (rw + prior * restart) / (rm + prior)
            # after the choice: toward the study's pace as far off as its restarts were
            own = (mw + prior * pace * own_restart / restart) / (mm + prior)
            left = est.seconds_left(e) - est.started_s(e)
            closing = min(left, est.closing_s - est.started_s(e))
            choosing = min(max(est.restart_s - est.seconds_through(e), 0.0), left - closing)
            busy.append(max(choosing * own_restart + (left - closing - choosing) * own
                            + closing * close - (now - t), 0.0))
        left_s = cost.makespan([r * restart + (s - c - r) * pace + c * close
                                for s, c, r in self.waiting(waiting, plan)], self.slots, 0.0,
                               busy=busy)
        approx = "~" if self.expected or any(e.work.expected for e in ests.values()) else ""
        eta = f", ETA {duration(left_s)}" if (running or self.ended) and left_s > 0 else ""
        return f"epochs {trained:,}/{approx}{expected:,.0f}{eta}"

    def waiting(self, n: int, plan: list[cost.Estimate] | None = None
                ) -> list[tuple[float, float, float]]:
        """The model seconds of the ``n`` trials waiting, of their closing and of their restart
        candidates' phase: a grid's ``n`` cheapest configurations, otherwise ``n`` mean
        trials (of ``plan``, default the study's)."""
        parts = sorted((e.seconds, e.closing_s, e.restart_s) for e in plan or self.plan)
        if self.grid and n <= len(parts):
            return parts[:n]
        return [tuple(sum(p[k] for p in parts) / len(parts) for k in range(3))] * n

    def _stopping(self, est: cost.Estimate, epoch: int = 0) -> cost.Estimate:
        """``est`` with early stopping expected at the share ``f`` of their planned epochs that
        the ended trials have shown (their mean, shrunk toward ``cost.EARLY_STOP_FRACTION`` by
        one trial; that alone before any has ended), and, for a trial still running at
        ``epoch``, at the mean of what is left: stopping shares taken as uniform on [2f - 1, 1]
        (mean f), a trial past 2f - 1 of its epochs is expected to stop halfway between where
        it is and its last epoch. With the runs of 2026-11-26's 0.87 as the prior (seeds then
        stopped together), ood_distance's and spirals_depth's trials ran all 300 epochs or
        nearly, and the ETA fell 20-50% short of the time left. A trial without early stopping
        is itself."""
        if not est.work.expected:
            return est
        f = (sum(self.stopped) + cost.EARLY_STOP_FRACTION) / (len(self.stopped) + 1)
        at = epoch / est.work.planned_epochs
        if at > 2 * f - 1:
            f = max(f, (at + 1) / 2)
        return est if f == cost.EARLY_STOP_FRACTION else est.stopping_at(f)

    def pace(self, ests: dict[str, cost.Estimate]) -> float:
        """Wall seconds per model second of a trial's training (after its restart phase, if
        any; ``paces``)."""
        return self.paces(ests)[1]

    def paces(self, ests: dict[str, cost.Estimate]) -> tuple[float, float]:
        """Wall seconds per model second of the restart candidates' phase and of the training
        after it: the ended trials' wall time over their model seconds (``ended_restarts``,
        ``ended``), and each running trial's from its start (or the epoch it was restored from;
        with half its fixed cost, its start) to its last reported epoch, split where it reported
        the choice. The first is shrunk toward 1 (the model's own pace), the second toward the
        first (the same machine, before the training after the choice has shown its own), each
        by one mean trial's model seconds, at most ``PRIOR_S``, so the first reports do not set
        them alone (and a study of a few long trials is not held to the model's pace for most
        of a trial). A wide ensemble of candidates and the narrower one after the choice
        differ from the model differently (moons_depth: 0.56-0.63 against 0.40-0.63 of the
        model's time)."""
        restarts, trained = list(self.ended_restarts), list(self.ended)
        for i, est in ests.items():
            r, m = self._split(i, est)
            restarts.append(r)
            trained.append(m)
        prior = min(self.waiting_s, PRIOR_S)
        restart = (sum(w for w, _ in restarts) + prior) / (sum(m for _, m in restarts) + prior)
        pace = (sum(w for w, _ in trained) + prior * restart) / (sum(m for _, m in trained)
                                                                 + prior)
        return restart, pace

    def closing_pace(self, pace: float) -> float:
        """Wall seconds per model second of a trial's closing (its final evaluation, files and
        records): the ended trials' time from their last reported epoch to their end over the
        model's seconds for it, shrunk by one mean closing's model seconds (at most
        ``PRIOR_S``) toward the ended trials' pace from start to end (the training ``pace``
        before any ended): the model's evaluation rates may misjudge the evaluation against
        training (by 0.45-1.6x, ``study.spec.cost``)."""
        wall = sum(w for w, _ in self.closed)
        model = sum(m for _, m in self.closed)
        if model:
            whole = self.closed + self.ended + self.ended_restarts
            pace = sum(w for w, _ in whole) / sum(m for _, m in whole)
        prior = min(self.closing_s, PRIOR_S)
        return (wall + prior * pace) / (model + prior)

    def _split(self, trial_id: str, est: cost.Estimate) -> tuple[tuple[float, float],
                                                                  tuple[float, float]]:
        """(wall seconds, model seconds) of a running trial from its start to its last reported
        epoch (from the epoch it was restored from; half its fixed cost, its start, counted with
        its first epoch): in its restart candidates' phase (to its first report at or after the
        choice) and after it; (0, 0) for what it has not reported."""
        none = (0.0, 0.0)
        (t0, e0), reports = self.since.get(trial_id, (0.0, None)), self.reports.get(trial_id, [])
        if e0 is None or not reports or reports[-1][0] <= e0:
            return none, none

        def at(epoch: int) -> float:
            return est.seconds_through(epoch) + est.started_s(epoch)

        (e, t), c = reports[-1], est.choice_epoch
        if not c or e0 >= c:
            return none, (t - t0, at(e) - at(e0))
        ce, ct = next(((ep, tt) for ep, tt in reports if ep >= c), (e, t))
        return (ct - t0, at(ce) - at(e0)), ((t - ct, at(e) - at(ce)) if e > ce else none)

    def maybe_print(self, trials: list[Trial], epoch_of: dict[str, int]) -> None:
        now = self.clock()
        if not self._force and now - self._last_print < self.every:
            return
        self._force, self._last_print = False, now
        print(self.line(trials, epoch_of), flush=True)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
