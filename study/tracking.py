"""MLflow: one experiment per study, a parent run per invocation, a nested child run per trial.

Only the driver talks to MLflow (workers never need the tracking URI). The default store is
``$MLFLOW_TRACKING_URI`` if set, else MLflow 3's own default, a sqlite file in the working
directory, so ``mlflow ui`` shows everything; ``--tracking-uri http://host:5000`` logs to a
server instead. :class:`Tracker` makes the experiment and the parent run before the study
starts (an unusable store fails there, before anything is written); during the study the
trials' writes go through an :class:`~study.outbox.MlflowOutbox`, which survives outages.

Child runs carry the tag ``ray_trial_id``; a resumed study finds its child runs by that tag and
its parent run by the id saved in the results folder, so nothing is duplicated.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from .errors import UserError

from .outbox import MlflowOutbox

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow 3's default ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


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

    uri = resolve_uri(uri)
    if not uri.startswith(("http://", "https://")):
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
    """The study's experiment (created if missing) and its parent run, reached synchronously:
    an unusable tracking store fails here, as a :class:`TrackingError`."""

    def __init__(self, uri: str | None, experiment: str) -> None:
        for name in ("mlflow.store.db.utils", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        except Exception as err:  # noqa: BLE001 - any client failure means "cannot track"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(f"MLflow tracking URI {self.uri!r} is not usable: {first[:300]}") from None

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


_OUTBOXES: dict[tuple[str, str], MlflowOutbox] = {}


def study_outbox(uri: str | None, experiment: str, step_metric: str,
                 experiment_id: str | None = None) -> MlflowOutbox:
    """The driver's one outbox for ``experiment`` at ``uri`` (opened on first use; looks the
    experiment up unless ``experiment_id`` is given).

    A registry rather than an attribute: Ray Tune unpickles its own copy of the recorder
    callback when a study is resumed, and that copy must find the launcher's outbox."""
    uri = resolve_uri(uri)
    if (uri, experiment) not in _OUTBOXES:
        experiment_id = experiment_id or Tracker(uri, experiment).experiment_id
        _OUTBOXES[(uri, experiment)] = MlflowOutbox(uri, experiment_id, step_metric)
    return _OUTBOXES[(uri, experiment)]


def close_study_outbox(uri: str | None, experiment: str, grace_s: float) -> list[dict]:
    """Drain and close the outbox of ``experiment`` (see ``MlflowOutbox.close``); the loss records."""
    box = _OUTBOXES.pop((resolve_uri(uri), experiment), None)
    return box.close(grace_s) if box is not None else []
