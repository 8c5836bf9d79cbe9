"""The driver-side Ray Tune callback: every trial into Parquet and MLflow, and progress lines.

For each trial: a child run when it starts (params: the factors and the flat config), its epoch
metrics as they arrive, and when it ends its status (``study.engine.outcome``), its rows and files in
Parquet and the final metrics, tags and plots in MLflow. MLflow writes go through the study's
:class:`~study.engine.outbox.MlflowOutbox` (in order, retried while the server is away), so a tracking
outage never stalls or fails the study; Parquet rows are written at once, the trial's
``trials.parquet`` row last, after its epochs, scores and plots are on disk.

Nothing is recorded twice or lost:

- epoch rows are keyed by (epoch, seed): a trial retried from a checkpoint, or resumed by a new
  driver, re-reports the epochs before its checkpoint, which replace themselves; MLflow gets
  only epochs its run does not have yet (the outbox);
- at its first step, a resumed study records the trials Ray Tune finished but the previous
  driver never recorded (it died, or the disk filled, in between), from their final
  checkpoints;
- a trial that fails because the disk is full is not recorded as failed: :class:`DiskFull`
  stops the study, and ``--resume`` runs the trial again once there is space.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from study.engine import ray_state
from study.engine.outbox import MlflowOutbox
from study.engine.outcome import FinalFiles, final_files, trial_rows, trial_status
from study.engine.progress import Progress
from study.spec.config import TrialConfig
from study.spec.resolved import ResolvedStudy
from study.spec.seed_range import SeedRange
from study.spec.study_spec import ROUND_SEEDS
from study.store.columns import factor_column
from study.store.results import ResultsStore
from study.store.tracking import curve_key, final_key, seed_curve_key
from study.store.storage import Mirror
from study.trial.records import (
    epochs_trained,
    history_of,
    is_epoch_result,
    progress_epochs,
    reported,
)

#: Per-seed learning curves sent to MLflow (all of them are in epochs.parquet).
PER_SEED_TO_MLFLOW = ("val_bound", "val_elbo", "train_bound")
_NO_SPACE = ("No space left on device", "database or disk is full", f"[Errno {errno.ENOSPC}]")


class DiskFull(Exception):
    """The disk of the results folder (or of Ray's storage) is full."""


def is_disk_full(err: BaseException | str | None) -> bool:
    """Whether an exception (anywhere in its chain) or an error text says the disk is full."""
    if err is None:
        return False
    if isinstance(err, str):
        return any(s in err for s in _NO_SPACE)
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, DiskFull) or (isinstance(err, OSError) and err.errno == errno.ENOSPC) \
                or any(s in str(err) for s in _NO_SPACE):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_detail(err: BaseException) -> str:
    """The one line of an error (chain) that says which write found the disk full."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return f"{err.strerror}: {err.filename}" if err.filename else str(err.strerror)
        for line in str(err).splitlines():
            if any(s in line for s in _NO_SPACE):
                return line.strip()
        err = err.__cause__ or err.__context__
    return "No space left on device"


def run_name(factors: dict[str, Any], round_seeds: list[int] | None = None) -> str:
    """A trial's name, its configuration: the factors (``depth=4``), and the seeds of a round
    of ``--until-decided`` (``depth=4, seeds 5-9``); the MLflow child run's name and the Optuna
    trial's user attribute ``name`` (``study.engine.pruning``), so a chart's legend names the
    configuration. The trial's plots folder is ``plots/<its Ray trial id>``, the child run's tag
    ``ray_trial_id``."""
    name = ", ".join(f"{k}={v}" for k, v in factors.items()) or "trial"
    if round_seeds:
        name += f", seeds {SeedRange(round_seeds[0], round_seeds[-1]).text}"
    return name[:200]


def mlflow_status(status: str) -> str:
    """The MLflow run status of a trial status."""
    return {"failed": "FAILED", "pruned": "KILLED"}.get(status, "FINISHED")


class StudyRecorder(Callback):
    """Writes Parquet rows and MLflow runs of every trial; see the module docstring.

    Ray Tune pickles its callbacks into the experiment state; ``__getstate__`` keeps only the
    configuration, and a resumed study hands Tune a new recorder (``study.engine.launch``)."""

    def __init__(self, study: ResolvedStudy, results: Path, *, parent_run_id: str,
                 outbox: MlflowOutbox, mirror: Mirror | None = None,
                 progress: Progress | None = None, experiment: Path | None = None) -> None:
        """``experiment``: Ray Tune's experiment folder when it is local (a copy of its state
        is kept after each recorded trial: ``study.engine.ray_state``)."""
        self.study, self.spec, self.results = study, study.spec, Path(results)
        self.experiment = experiment
        self.parent_run_id, self.outbox, self.mirror = parent_run_id, outbox, mirror
        self.progress = progress
        self.store = ResultsStore(self.results)
        self.started: set[str] = set()  # trials with a child run
        self.recorded: set[str] = self.store.known_trials()
        self.seen: set[str] = set()  # every trial Tune has shown us
        self._epochs: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
        self._last: dict[str, Any] = {}
        self._started_at: dict[str, float] = {}
        self._reconciled = False

    def __getstate__(self) -> dict:
        return {k: None for k in self.__dict__}  # nothing of a live recorder is worth keeping

    # ------------------------------------------------------------------ helpers
    def _factors(self, trial: Trial) -> dict[str, Any]:
        return {k: trial.config.get(k) for k in self.spec.factors}

    def _config(self, trial: Trial) -> TrialConfig:
        """The trial's configuration: its factors, and its seeds when a round of
        ``--until-decided`` gave it seeds of its own (``study.judge.sequential.Round``)."""
        return self.study.config(trial.config)

    def _run(self, trial: Trial) -> str:
        """The trial's id, once its child run has been asked for."""
        if trial.trial_id not in self.started:
            factors = self._factors(trial)
            cfg = self._config(trial)
            params = {factor_column(k): v for k, v in factors.items()} | cfg.flat()
            seeds = list(cfg.seeds) if ROUND_SEEDS in trial.config else None
            self.outbox.child_run(trial.trial_id, self.parent_run_id, run_name(factors, seeds),
                                  params)
            self.started.add(trial.trial_id)
        return trial.trial_id

    # ------------------------------------------------------------------ Ray hooks
    def _reconcile(self, trials: list[Trial]) -> None:
        """Once, at the first step or (a restored study with nothing left to run) at the end:
        record the trials that finished under a previous driver but are not in Parquet (it
        died, the disk filled, or their rows were lost since), from their final checkpoints."""
        if self._reconciled:
            return
        self._reconciled = True
        for trial in trials:
            if trial.status == Trial.TERMINATED and trial.trial_id not in self.recorded:
                self._finish(trial, failed=False)
            elif trial.status in (Trial.TERMINATED, Trial.ERROR) and self.progress is not None:
                self._count_recorded(trial)

    def _count_recorded(self, trial: Trial) -> None:
        """A trial a previous driver recorded counts as done in the progress line (not as
        waiting), with its status and epochs as Parquet has them."""
        rows = self.store.trials
        rows = rows[rows["trial_id"] == trial.trial_id] if len(rows) else rows
        if len(rows):
            self.progress.trial_ended(trial.trial_id, str(rows["trial_status"].iloc[0]),
                                      int(rows["epochs"].max()))

    def on_step_begin(self, iteration: int, trials: list[Trial], **info) -> None:
        self.seen.update(t.trial_id for t in trials)
        self._reconcile(trials)
        if self.progress is not None:
            epoch_of = {tid: reported(r).epoch for tid, r in self._last.items()}
            self.progress.maybe_print(trials, epoch_of)

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self.seen.add(trial.trial_id)
        self._started_at.setdefault(trial.trial_id, time.time())
        if self.progress is not None:
            self.progress.trial_started(trial.trial_id)
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict, **info) -> None:
        if not is_epoch_result(result):
            trained = progress_epochs(result)  # restart candidates' epochs: progress only
            if trained is not None and self.progress is not None:
                self.progress.trial_reported(trial.trial_id, trained)
            return
        rows = self._epochs.setdefault(trial.trial_id, {})
        seeds = list(self._config(trial).seeds)
        run_id = self._run(trial)
        for m in history_of(result):
            for row in m.rows(seeds):
                rows[(m.epoch, row["seed"])] = row
            metrics = {curve_key(k): v for k, v in m.tracked().items()}
            for name in PER_SEED_TO_MLFLOW:
                metrics |= {seed_curve_key(name, s): v
                            for s, v in zip(seeds, m.members.get(name, []))}
            self.outbox.log_epoch(run_id, m.epoch, metrics)
        self._last[trial.trial_id] = result
        if self.progress is not None:
            r = reported(result)
            self.progress.trial_reported(trial.trial_id, r.epoch, r.restored_from)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._finish(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        error = None
        try:
            error = trial.get_error()
        except Exception:  # noqa: BLE001 - the error file may itself be unwritable/unreadable
            pass
        if is_disk_full(str(error) if error is not None else None):
            raise DiskFull(f"trial {trial.trial_id} failed writing to a full disk")
        self._finish(trial, failed=True)

    # ------------------------------------------------------------------ end of a trial
    def _finish(self, trial: Trial, failed: bool) -> None:
        try:
            self._record(trial, failed)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise DiskFull(f"{err.filename or self.results}: {err.strerror}") from err
            raise

    def _record(self, trial: Trial, failed: bool) -> None:
        last = trial.last_result or {}
        final: FinalFiles | None = None if failed else final_files(trial)
        try:
            status = trial_status(failed, last, final)
            cfg = self._config(trial)
            epoch_rows = list(self._epochs.pop(trial.trial_id, {}).values())
            if final is not None and final.epochs:
                epoch_rows = final.epochs  # the trial's own record of every epoch
            rows = trial_rows(trial, cfg, self._factors(trial), status=status, last=last,
                              final=final, started_at=self._started_at.get(trial.trial_id),
                              epoch_rows=epoch_rows)
            plots = self.store.put_trial(trial.trial_id, rows, epoch_rows,
                                         final.dir / "scores.parquet" if final else None,
                                         final.dir / "plots" if final else None)
            self.recorded.add(trial.trial_id)
            if self.experiment is not None:
                ray_state.keep(self.experiment)
            if self.mirror is not None:  # shared storage: this trial's rows and files
                self.mirror.push_trial(trial.trial_id)
            self._send_final(trial, status, last, final, cfg.seeds, plots)
        finally:
            if final is not None:
                final.cleanup()
        if self.progress is not None:
            self.progress.trial_ended(trial.trial_id, status, epochs_trained(epoch_rows, last),
                                      reported(last).value(self.spec.search.metric),
                                      self.progress.label(trial.config), trial.config)

    def _send_final(self, trial: Trial, status: str, last: dict, final: FinalFiles | None,
                    seeds, plots: Path | None) -> None:
        run_id = self._run(trial)
        bookkeeping = reported(last)
        tags = {"status": status, "num_failures": str(trial.num_failures),
                "restored_from_epoch": str(bookkeeping.restored_from)}
        if bookkeeping.restore_note:
            tags["restore_note"] = bookkeeping.restore_note[:5000]
        metrics: dict[str, float] = {}
        per_seed: dict[str, list] | None = None
        if final is not None:  # means as metrics; per seed as a table (charts stay readable)
            metrics = {final_key(k): v for k, v in final.mean.items()}
            per_seed = {"seed": list(seeds)} | {k: list(v) for k, v in final.members.items()}
            diverged = [v for v in final.members.get("diverged_epoch", []) if v == v]
            if diverged:
                tags["diverged_epoch"] = str(int(min(diverged)))
        self.outbox.finish(run_id, mlflow_status(status), tags, metrics,
                           bookkeeping.epoch, plots, per_seed)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        self.seen.update(t.trial_id for t in trials)
        self._reconcile(trials)
        if self.progress is not None:
            self.progress.maybe_print(trials, {})

    # ------------------------------------------------------------------ interruption
    def unfinished(self) -> list[str]:
        """Trials that started (a child run exists) and were not recorded."""
        return sorted(self.started - self.recorded)

    def kill_unfinished(self) -> list[str]:
        """End the child runs of unfinished trials as KILLED (an interrupted study); their
        Parquet rows come when ``--resume`` finishes them."""
        ids = self.unfinished()
        for trial_id in ids:
            self.outbox.finish(trial_id, "KILLED", {"status": "interrupted"}, {}, 0, None)
        return ids
