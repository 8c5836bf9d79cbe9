"""MLflow writes of a running study, sent in order by a background thread that outlives outages.

The driver must never stall or crash because the tracking server blinked: the recorder puts
every MLflow write (create a trial's child run, log a batch of metrics, end the run with its
tags and plots) into an :class:`MlflowOutbox`, which returns at once. One thread sends them in
order; while the server is unreachable it retries the same write with exponential backoff
(capped at ``retry_max_s``), so everything arrives, in order, once the server is back.

Writes are idempotent, so a write retried after a lost reply is harmless: a child run is looked
up by its ``ray_trial_id`` tag before it is created, and epoch metrics are sent only for epochs
after the last one the run already has (a trial retried from a checkpoint re-reports the epochs
since then; a resumed study re-finds that last epoch in MLflow). They are also resumable: a
write of several batches keeps its progress, so a retry after a connection dropped half-way
sends only what did not arrive.

A write MLflow refuses for good (a 4xx such as an invalid value) is skipped and recorded. At the
end :meth:`close` waits up to ``grace_s`` for the queue to drain; what is still unsent is
returned as explicit loss records (trial id, what, last error), which the launcher writes to
``mlflow_unsent.json`` beside the Parquet tables (the source of truth, which has everything).
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.store.tracking import PARENT_TAG, metric_key

logger = logging.getLogger(__name__)

TRIAL_TAG = "ray_trial_id"
#: the artifact of a child run with its final metrics per seed (the run's metrics are the means)
PER_SEED_FILE = "final_per_seed.csv"
#: MLflow error codes that a retry cannot fix.
PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
             "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_STATE"}


@dataclass
class _Op:
    key: str  # the trial id (or the parent run id for parent writes)
    what: str  # "create", "epochs", "final", "finish", "end-parent"
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0


def is_permanent(err: BaseException) -> bool:
    return getattr(err, "error_code", None) in PERMANENT


class MlflowOutbox:
    """Ordered, retried MLflow writes for one study invocation (see the module docstring).

    uri: tracking URI. experiment_id: the study's experiment. step_metric: a metric logged at
    every epoch, used to find the last epoch an existing run already has.
    """

    def __init__(self, uri: str, experiment_id: str, step_metric: str,
                 retry_max_s: float = 10.0, flush_every_s: float = 30.0,
                 run_tags: dict[str, str] | None = None) -> None:
        """``run_tags``: tags of every child run besides its parent and trial id (e.g. MLflow's
        ``mlflow.source.*`` tags naming the command that ran it)."""
        from mlflow.tracking import MlflowClient

        self.uri, self.experiment_id, self.step_metric = uri, experiment_id, step_metric
        self.run_tags = dict(run_tags or {})
        self.client = MlflowClient(tracking_uri=uri)
        self.retry_max_s, self.flush_every_s = retry_max_s, flush_every_s
        self.losses: list[dict[str, Any]] = []
        self.outage_s = 0.0  # total time spent waiting for the server
        self.sent = 0
        self._queue: deque[_Op] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._run_ids: dict[str, str] = {}
        self._had: dict[str, dict[str, float]] = {}  # trial id -> metrics its run already has
        self._last_step: dict[str, int] = {}  # trial id -> last epoch the run has
        self._pending: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self._last_flush: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="mlflow-outbox", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def _put(self, op: _Op) -> None:
        with self._cond:
            self._queue.append(op)
            self._cond.notify_all()

    def child_run(self, trial_id: str, parent_id: str, name: str, params: dict[str, Any]) -> None:
        """Create (or re-find) the child run of ``trial_id`` under ``parent_id``."""
        self._put(_Op(trial_id, "create", {"parent": parent_id, "name": name, "params": params}))

    def log_epoch(self, trial_id: str, step: int, metrics: dict[str, float]) -> None:
        """Buffer one epoch's metrics; they are sent at most every ``flush_every_s`` per run."""
        self._pending.setdefault(trial_id, []).append((step, metrics))
        if time.monotonic() - self._last_flush.get(trial_id, 0.0) >= self.flush_every_s:
            self.flush(trial_id)

    def flush(self, trial_id: str) -> None:
        self._last_flush[trial_id] = time.monotonic()
        epochs = self._pending.pop(trial_id, [])
        if epochs:
            self._put(_Op(trial_id, "epochs", {"epochs": epochs}))

    def finish(self, trial_id: str, status: str, tags: dict[str, str],
               final: dict[str, float] | None, step: int, artifacts: Path | None,
               per_seed: dict[str, list] | None = None) -> None:
        """Send the buffered epochs, the final metrics, the tags, ``artifacts`` (a folder,
        uploaded when the write is sent: it must stay on disk) and ``per_seed`` (columns of
        equal length, uploaded as the artifact ``PER_SEED_FILE``), then end the run."""
        self.flush(trial_id)
        self._put(_Op(trial_id, "finish", {"status": status, "tags": tags, "final": final or {},
                                           "step": step, "artifacts": artifacts,
                                           "per_seed": per_seed}))

    def end_parent(self, run_id: str, status: str = "FINISHED") -> None:
        self._put(_Op(run_id, "end-parent", {"status": status}))

    def drain(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every queued write was sent (or refused)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            return not (self._queue or self._busy)

    def close(self, grace_s: float) -> list[dict[str, Any]]:
        """Send what is buffered, wait up to ``grace_s`` seconds for the queue to drain and
        return the loss records (skipped writes and whatever is still unsent)."""
        for trial_id in list(self._pending):
            self.flush(trial_id)
        self.drain(grace_s)
        with self._cond:
            self._closing = True
            unsent = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for op in unsent:
            self.losses.append({"trial_id": op.key, "what": op.what, "attempts": op.attempts,
                                "error": "not sent: the tracking server did not come back in time"})
        return list(self.losses)

    # ------------------------------------------------------------------ sender thread
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                op = self._queue[0]
                self._busy = True
            delay = 0.5
            while True:
                op.attempts += 1
                try:
                    self._send(op)
                    self.sent += 1
                    break
                except Exception as err:  # noqa: BLE001 - anything else is worth a retry
                    if is_permanent(err):
                        self.losses.append({"trial_id": op.key, "what": op.what,
                                            "attempts": op.attempts, "error": _first_line(err)})
                        logger.warning("MLflow refused %s of %s: %s", op.what, op.key,
                                       _first_line(err))
                        break
                    if op.attempts == 1:
                        logger.warning("MLflow unreachable (%s); retrying", _first_line(err))
                    t0 = time.monotonic()
                    with self._cond:
                        if self._closing:
                            return
                        self._cond.wait(timeout=delay)
                        if self._closing:
                            return
                    self.outage_s += time.monotonic() - t0
                    delay = min(self.retry_max_s, delay * 2)
            with self._cond:
                if self._queue and self._queue[0] is op:
                    self._queue.popleft()
                self._busy = False
                self._cond.notify_all()

    def _send(self, op: _Op) -> None:
        """Send ``op``; each step records its progress in ``op.payload``, so a retry after a
        partial failure resumes where it stopped instead of sending anything twice."""
        if op.what in ("epochs", "finish") and op.key not in self._run_ids:
            raise _NoRun(f"trial {op.key} has no MLflow run")
        if op.what == "create":
            self._create(op.key, op.payload)
        elif op.what == "epochs":
            self._send_epochs(op.key, op.payload)
        elif op.what == "finish":
            self._finish(op.key, op.payload)
        elif op.what == "end-parent":
            self.client.set_terminated(op.key, op.payload["status"])

    def _create(self, trial_id: str, p: dict[str, Any]) -> None:
        from mlflow.entities import Param

        if "run_id" not in p:
            found = self.client.search_runs(
                [self.experiment_id], max_results=1, filter_string=(
                    f"tags.{TRIAL_TAG} = '{trial_id}' and tags.`{PARENT_TAG}` = '{p['parent']}'"))
            if found:  # a resumed study: the run and its params are there
                run_id = found[0].info.run_id
                # what the run already holds (latest values): a trial recorded again (its
                # Parquet row was lost) must not log its final metrics a second time
                p["had"] = dict(found[0].data.metrics)
                history = self.client.get_metric_history(run_id, metric_key(self.step_metric))
                p["last_step"] = max((m.step for m in history), default=0)
                if found[0].info.status != "RUNNING":
                    self.client.update_run(run_id, status="RUNNING")
                p["params"] = {}
            else:
                run_id = self.client.create_run(
                    self.experiment_id, run_name=p["name"],
                    tags={**self.run_tags, PARENT_TAG: p["parent"], TRIAL_TAG: trial_id}).info.run_id
                p["last_step"] = 0
            p["run_id"] = run_id
        items = [Param(k, str(v)[:6000]) for k, v in p["params"].items()]
        while items:  # logging the same value again is allowed: a retried batch is harmless
            self.client.log_batch(p["run_id"], params=items[:100])
            items = items[100:]
        p["params"] = {}
        self._run_ids[trial_id] = p["run_id"]
        self._had[trial_id] = p.get("had", {})
        self._last_step.setdefault(trial_id, p["last_step"])

    def _send_epochs(self, trial_id: str, p: dict[str, Any]) -> None:
        """Whole epochs per batch (at most ~1000 values), in step order; after each batch the
        run's last step moves on, so nothing is sent twice. The timestamp is fixed when the
        write is first tried: a batch the server stored but whose reply was lost is sent again
        identical on the retry, and MLflow's store keeps one copy of an identical metric."""
        from mlflow.entities import Metric

        now = p.setdefault("timestamp_ms", int(time.time() * 1000))
        batch: list[Metric] = []
        for step, metrics in sorted(p["epochs"], key=lambda e: e[0]):
            if step <= self._last_step[trial_id]:
                continue
            values = [Metric(metric_key(k), float(v), now, step) for k, v in metrics.items()
                      if math.isfinite(v)]
            if batch and len(batch) + len(values) > 1000:
                self.client.log_batch(self._run_ids[trial_id], metrics=batch)
                self._last_step[trial_id] = batch[-1].step
                batch = []
            batch += values
        if batch:
            self.client.log_batch(self._run_ids[trial_id], metrics=batch)
            self._last_step[trial_id] = batch[-1].step

    def _finish(self, trial_id: str, p: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._run_ids[trial_id]
        if "final_left" not in p:
            now = int(time.time() * 1000)
            had = self._had.get(trial_id, {})
            p["final_left"] = [Metric(metric_key(k), float(v), now, p["step"])
                               for k, v in p["final"].items() if math.isfinite(v)
                               and not _same(had.get(metric_key(k)), float(v))]
        while p["final_left"]:
            self.client.log_batch(run_id, metrics=p["final_left"][:1000])
            p["final_left"] = p["final_left"][1000:]
        if p["tags"]:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in p["tags"].items()])
            p["tags"] = {}
        if p["artifacts"] is not None and p["artifacts"].is_dir():
            self.client.log_artifacts(run_id, str(p["artifacts"]))  # same paths: overwritten
            p["artifacts"] = None
        if p.get("per_seed"):
            import pandas as pd

            with tempfile.TemporaryDirectory(prefix="hvae-seeds-") as tmp:
                path = Path(tmp) / PER_SEED_FILE
                pd.DataFrame(p["per_seed"]).to_csv(path, index=False)
                self.client.log_artifact(run_id, str(path))  # same path: overwritten
            p["per_seed"] = None
        self.client.set_terminated(run_id, p["status"])


def _same(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


class _NoRun(Exception):
    error_code = "RESOURCE_DOES_NOT_EXIST"  # its create was refused: nothing to write to


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
