"""MLflow: one experiment per study, a parent run per invocation, a nested child run per trial.

Only the driver talks to MLflow (workers never need the tracking URI). The default store is
MLflow 3's own default, a sqlite file in the working directory, so ``mlflow ui`` shows
everything; ``--tracking-uri http://host:5000`` logs to a server instead.

Child runs carry the tag ``ray_trial_id``; a resumed study finds its child runs by that tag and
its parent run by the id saved in the results folder, so nothing is duplicated.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .errors import UserError

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "ray_trial_id"
DEFAULT_URI = "sqlite:///mlflow.db"


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_reachable(uri: str | None, timeout: float = 5.0) -> None:
    """Fail fast (before Ray starts) when an http(s) tracking server does not answer."""
    import urllib.error
    import urllib.request

    if not uri or not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: a server is there (auth and API errors surface later)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"MLflow tracking URI {uri!r} is not usable: cannot connect "
                            f"({reason})") from None


class Tracker:
    """A thin, batching wrapper over ``MlflowClient`` for one study invocation."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri = uri or DEFAULT_URI
        self.client = MlflowClient(tracking_uri=self.uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        except Exception as err:  # noqa: BLE001 - any client failure means "cannot track"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(f"MLflow tracking URI {self.uri!r} is not usable: {first[:300]}") from None
        self._buffers: dict[str, list] = {}
        self._last_flush: dict[str, float] = {}

    # ------------------------------------------------------------------ runs
    def start_parent(self, run_id: str | None, tags: dict[str, str], run_name: str) -> str:
        """Reuse ``run_id`` (resume) or create a new parent run; returns its id."""
        if run_id:
            try:
                self.client.update_run(run_id, status="RUNNING")
                return run_id
            except Exception:  # noqa: BLE001 - deleted or foreign run: start a new one
                pass
        return self.client.create_run(self.experiment_id, tags=tags, run_name=run_name).info.run_id

    def child_run(self, parent_id: str, trial_id: str, name: str, params: dict[str, Any]) -> str:
        """The child run of ``trial_id`` under ``parent_id``, created once."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{TRIAL_TAG} = '{trial_id}' and tags.`{PARENT_TAG}` = '{parent_id}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={PARENT_TAG: parent_id, TRIAL_TAG: trial_id})
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        return run.info.run_id

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int,
                    flush_every: float = 30.0) -> None:
        """Buffer metrics; send them at most every ``flush_every`` seconds per run."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        buf = self._buffers.setdefault(run_id, [])
        buf.extend(Metric(_key(k), float(v), now, step) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and math.isfinite(v))
        if time.monotonic() - self._last_flush.get(run_id, 0.0) >= flush_every:
            self.flush(run_id)

    def flush(self, run_id: str) -> None:
        buf = self._buffers.pop(run_id, [])
        self._last_flush[run_id] = time.monotonic()
        for i in range(0, len(buf), 1000):
            self.client.log_batch(run_id, metrics=buf[i : i + 1000])

    def finish(self, run_id: str, status: str, tags: dict[str, str],
               artifacts: Path | None = None) -> None:
        """Flush, tag, upload ``artifacts`` (a folder) and end the run."""
        self.flush(run_id)
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)
        if artifacts is not None and artifacts.exists():
            self.client.log_artifacts(run_id, str(artifacts))
        self.client.set_terminated(run_id, status)


def _key(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . space / only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
