"""The driver-side Ray Tune callback: every trial into MLflow and Parquet, and progress lines.

For each trial: a child run when it starts (params: the flat config and the factors), its
epoch metrics as they arrive (batched), and when it ends its status (finished / pruned /
diverged / failed), the final metrics per seed and mean, the plots, and its Parquet rows.
MLflow writes go through the study's :class:`~study.outbox.MlflowOutbox` (in order, retried
while the server is away), so a tracking outage never stalls or fails the study; Parquet rows
are written at once.

Epoch rows are keyed by (trial, epoch, seed): a trial retried from a checkpoint (its worker or
node died) or resumed by a new driver re-reports the epochs before its checkpoint, which
replace the same rows instead of adding copies, and MLflow gets only epochs it has not seen.

A trial's status is derived, not shared: it ended with an error -> ``failed``; its last result
is not the final evaluation -> ``pruned`` (the only thing that stops a trial early is the
pruning scheduler); otherwise ``finished``, or ``diverged`` if any seed diverged (with the
first divergence epoch in the MLflow tag ``diverged_epoch`` and per seed in Parquet). Seeds
have their own status in ``trials.parquet``; ``num_failures`` and ``restored_from_epoch`` say
whether a trial was retried and from which checkpoint.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from .outbox import MlflowOutbox
from .results import ResultsStore
from .spec import StudySpec
from .storage import Mirror
from .tracking import study_outbox

#: Per-seed learning curves sent to MLflow (all of them are in epochs.parquet).
PER_SEED_TO_MLFLOW = {"val_elbo", "train_bound"}


class StudyRecorder(Callback):
    """Writes MLflow runs and Parquet rows; prints progress at most every ``every`` seconds."""

    def __init__(self, spec: StudySpec, budget: str, results: Path, tracking_uri: str | None,
                 parent_run_id: str, every: float = 15.0, quiet: bool = False,
                 mirror_uri: str | None = None) -> None:
        self.spec, self.budget, self.results = spec, budget, Path(results)
        self.tracking_uri, self.parent_run_id = tracking_uri, parent_run_id
        self.every, self.quiet = every, quiet
        self.mirror_uri = mirror_uri
        self._mirror: Mirror | None = None
        self.status: dict[str, str] = {}
        self.best: tuple[float, str] | None = None
        self._outbox: MlflowOutbox | None = None
        self._store: ResultsStore | None = None
        self._runs: set[str] = set()
        self._epochs: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
        self._start = time.monotonic()
        self._last_print = 0.0
        self._started: dict[str, float] = {}
        self._last_epoch: dict[str, dict] = {}

    def __getstate__(self) -> dict:  # pickled into Ray's experiment state: no clients
        state = self.__dict__.copy()
        state["_outbox"] = state["_store"] = state["_mirror"] = None
        state["_runs"], state["_epochs"], state["_last_epoch"] = set(), {}, {}
        return state

    @property
    def outbox(self) -> MlflowOutbox:
        if self._outbox is None:
            self._outbox = study_outbox(self.tracking_uri, self.spec.name, self.spec.search.metric)
        return self._outbox

    @property
    def store(self) -> ResultsStore:
        if self._store is None:
            self._store = ResultsStore(self.results)
        return self._store

    # ------------------------------------------------------------------ helpers
    def _factors(self, trial: Trial) -> dict[str, Any]:
        return {k: trial.config.get(k) for k in self.spec.factors}

    def _run(self, trial: Trial) -> str:
        """The trial's id, once its child run has been asked for."""
        if trial.trial_id not in self._runs:
            cfg = self.spec.trial_config(self._factors(trial), self.budget)
            params = {f"factor.{k}": v for k, v in self._factors(trial).items()} | cfg.flat()
            name = "trial " + ", ".join(f"{k}={v}" for k, v in self._factors(trial).items())
            self.outbox.child_run(trial.trial_id, self.parent_run_id, name[:200] or trial.trial_id,
                                  params)
            self._runs.add(trial.trial_id)
        return trial.trial_id

    # ------------------------------------------------------------------ Ray hooks
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._started.setdefault(trial.trial_id, time.time())
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict, **info) -> None:
        if result.get("phase") != "epoch":
            return
        rows = self._epochs.setdefault(trial.trial_id, {})
        self._last_epoch[trial.trial_id] = result.get("history", [result])[-1]
        run_id = self._run(trial)
        for item in result.get("history", [result]):
            epoch = int(item["epoch"])
            metrics = {}
            for key, value in item.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool) or key == "epoch":
                    continue
                if "/seed_" in key:
                    name, seed = key.rsplit("/seed_", 1)
                    row = rows.setdefault((epoch, int(seed)), {"trial_id": trial.trial_id,
                                                               "epoch": epoch, "seed": int(seed)})
                    row[name] = value
                    if name not in PER_SEED_TO_MLFLOW:
                        continue  # every per-seed value is in epochs.parquet
                metrics[key] = value
            self.outbox.log_epoch(run_id, epoch, metrics)
        self._progress(trials)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._finish(trial, failed=False)
        self._progress(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._finish(trial, failed=True)
        self._progress(trials, force=True)

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        for run_id in self._runs:
            self.outbox.flush(run_id)

    # ------------------------------------------------------------------ end of a trial
    def _finish(self, trial: Trial, failed: bool) -> None:
        last = trial.last_result or {}
        final = None if failed else _final_files(trial)
        if failed:
            status = "failed"
        elif last.get("phase") != "final" or final is None:
            status = "pruned"
        else:
            status = "diverged" if any(final["members"]["diverged"]) else "finished"
        self.status[trial.trial_id] = status
        value = last.get(self.spec.search.metric)
        if status in ("finished", "diverged") and isinstance(value, float) and math.isfinite(value):
            sign = 1 if self.spec.search.mode == "max" else -1
            if self.best is None or sign * value > sign * self.best[0]:
                self.best = (value, ", ".join(f"{k}={v}" for k, v in self._factors(trial).items()))
        cfg = self.spec.trial_config(self._factors(trial), self.budget)
        seeds = list(cfg.seeds)
        epoch_rows = list(self._epochs.pop(trial.trial_id, {}).values())
        last_epoch = self._last_epoch.pop(trial.trial_id, {})
        rows = []
        for e, seed in enumerate(seeds):
            row: dict[str, Any] = {"trial_id": trial.trial_id, "seed": seed, "member": e,
                                   "trial_status": status, "epochs": int(last.get("epoch", 0)),
                                   "node_id": last.get("node_id"), "device": last.get("device"),
                                   "num_failures": int(trial.num_failures),
                                   "restored_from_epoch": int(last.get("restored_from", 0)),
                                   "started_at": self._started.get(trial.trial_id, math.nan),
                                   "ended_at": time.time()}
            row |= {f"factor.{k}": v for k, v in self._factors(trial).items()}
            row |= {f"config.{k}": v for k, v in cfg.flat().items() if k != "seeds"}
            for k in ("val_elbo", "train_bound"):  # the last epoch's, whatever the status
                row[f"last_{k}"] = last_epoch.get(f"{k}/seed_{seed}", math.nan)
            if final is not None:
                row |= {k: vals[e] for k, vals in final["members"].items()}
                row["status"] = "diverged" if row.get("diverged") else status
            else:
                row["status"] = status
            rows.append(row)
        scores = final["dir"] / "scores.parquet" if final else None
        plots = self.store.put_trial(trial.trial_id, rows, epoch_rows, scores,
                                     final["dir"] / "plots" if final else None)

        if self.mirror_uri:  # shared storage: this trial's rows and files, as it ends
            if self._mirror is None:
                self._mirror = Mirror(self.mirror_uri, self.results)
            self._mirror.push("trials.parquet", f"epochs.parquet/{trial.trial_id}.parquet",
                              f"scores.parquet/{trial.trial_id}.parquet", f"plots/{trial.trial_id}")

        run_id = self._run(trial)
        metrics: dict[str, float] = {}
        tags = {"status": status, "num_failures": str(trial.num_failures),
                "restored_from_epoch": str(int(last.get("restored_from", 0)))}
        if final is not None:
            metrics = {f"final/{k}": v for k, v in final["mean"].items()}
            for k, vals in final["members"].items():
                metrics |= {f"final/{k}/seed_{s}": v for s, v in zip(seeds, vals)}
            diverged = [v for v in final["members"].get("diverged_epoch", []) if math.isfinite(v)]
            if diverged:
                tags["diverged_epoch"] = str(int(min(diverged)))
            final["tmp"].cleanup()
        mlflow_status = {"failed": "FAILED", "pruned": "KILLED"}.get(status, "FINISHED")
        self.outbox.finish(run_id, mlflow_status, tags, metrics, int(last.get("epoch", 0)), plots)

    # ------------------------------------------------------------------ progress
    def counts(self, trials: list[Trial]) -> dict[str, int]:
        done = [self.status.get(t.trial_id) for t in trials]
        return {
            "done": sum(s in ("finished", "diverged") for s in done),
            "running": sum(t.status == Trial.RUNNING for t in trials),
            "pruned": done.count("pruned"),
            "failed": done.count("failed"),
            "total": self.spec.num_trials(self.budget),
        }

    def _progress(self, trials: list[Trial], force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self._last_print < self.every):
            return
        self._last_print = now
        c = self.counts(trials)
        best = (f"  best {self.spec.search.metric} {self.best[0]:.4f} ({self.best[1]})"
                if self.best else "")
        print(f"[{now - self._start:6.0f}s] trials done {c['done']}/{c['total']}  running "
              f"{c['running']}  pruned {c['pruned']}  failed {c['failed']}{best}", flush=True)


def _final_files(trial: Trial) -> dict[str, Any] | None:
    """The final checkpoint's metrics (and a local copy of its folder), if it has one."""
    checkpoint = trial.checkpoint
    if checkpoint is None:
        return None
    tmp = tempfile.TemporaryDirectory(prefix="hvae-final-")
    folder = Path(checkpoint.to_directory(tmp.name))
    metrics = folder / "metrics.json"
    if not metrics.exists():
        tmp.cleanup()
        return None
    data = json.loads(metrics.read_text())
    data["members"] = {k: [_number(v) for v in vals] for k, vals in data["members"].items()}
    data["mean"] = {k: _number(v) for k, v in data["mean"].items()}
    return data | {"dir": folder, "tmp": tmp}


def _number(v: Any) -> float:
    """JSON's null back to NaN and "inf"/"-inf" back to floats (see study.io.write_json)."""
    return math.nan if v is None else float(v)
