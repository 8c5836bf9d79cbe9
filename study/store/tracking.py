"""MLflow: one experiment per study, a parent run per invocation, a nested child run per trial.

Only the driver talks to MLflow (workers never need the tracking URI). The default store is
``$MLFLOW_TRACKING_URI`` if set, else MLflow 3's own default, a sqlite file in the working
directory, so ``mlflow ui`` shows everything; ``--tracking-uri http://host:5000`` logs to a
server instead. :class:`Tracker` makes the experiment and the parent run before the study
starts (an unusable store fails there, before anything is written); during the study the
trials' writes go through an :class:`~study.engine.outbox.MlflowOutbox`, which survives outages.
URIs are printed and saved with their password masked (``study.core.redact``).

Child runs carry the tag ``ray_trial_id``; a resumed study finds its child runs by that tag and
its parent run by the id saved in the results folder (``study.json``), in the store saved there,
so nothing is duplicated. The parent run carries the study's identity (``study_id``) and the
count of runs that continued it (``study_generation``): a parent run that is missing, belongs
to another study, or was continued by another folder of the same study (a copy) is refused
with one line instead of being replaced silently (``--new-parent`` starts a new one).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from study.core.errors import UserError
from study.core.redact import MASK, redact

if TYPE_CHECKING:
    from study.store.folder import StudyState

DEFAULT_URI = "sqlite:///mlflow.db"
#: MLflow's tag for a description shown on an experiment's (or run's) page
DESCRIPTION_TAG = "mlflow.note.content"
#: MLflow 3's UI opens an experiment by its kind: model training opens on the runs table (an
#: experiment without a kind may open on the GenAI traces page, empty for a study)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
#: tags of a study's parent run: its identity, the runs that continued it, its results folder
STUDY_ID_TAG, GENERATION_TAG, FOLDER_TAG = "study_id", "study_generation", "results"
PARENT_TAG = "mlflow.parentRunId"


#: MLflow 3 groups a run's charts by the part of a metric's name before its last "/", the
#: sections in alphabetical order and the names without a "/" last (seen in MLflow 3.17.2:
#: docs/mlflow/): so the learning curves (the means over seeds) go under "curves/" and lead,
#: the final means ("final/") and the per-seed curves ("seeds/<metric>/") follow
CURVES, FINAL, SEEDS = "curves", "final", "seeds"


def curve_key(name: str) -> str:
    """The MLflow name of an epoch metric's curve (its mean over seeds): ``curves/val_bound``."""
    return f"{CURVES}/{name}"


def seed_curve_key(name: str, seed: int) -> str:
    """The MLflow name of one seed's curve: ``seeds/val_bound/seed_3``."""
    return f"{SEEDS}/{name}/seed_{seed}"


def final_key(name: str) -> str:
    """The MLflow name of a final metric's mean over seeds: ``final/test_ll``."""
    return f"{FINAL}/{name}"


def metric_key(name: str) -> str:
    """MLflow metric names allow letters, digits, _ - . space / only."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)


def resolve_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else MLflow 3's default ``sqlite:///mlflow.db``."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative sqlite path made absolute (what ``study.json`` records, so a
    study resumed from another working directory finds the same store)."""
    path = sqlite_file(uri)
    if path is None or path.is_absolute():
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return f"sqlite:///{path.resolve()}" + (f"?{query}" if query else "")


def recorded_uri(saved: str | None) -> str | None:
    """The tracking URI a resumed study uses when none is given: the one its ``study.json``
    saved, unless it was saved with its password masked (then the environment's, or the
    default)."""
    return saved if saved and MASK not in saved else None


class TrackingError(UserError):
    """The tracking store cannot be reached or used."""


def check_usable(uri: str | None, resuming: bool = False) -> None:
    """Before anything starts: a store that keeps nothing (in memory) is refused, a sqlite file
    a resumed study's parent run lives in must exist (opening it would make a new, empty one),
    and an http(s) server must answer."""
    uri = resolve_uri(uri)
    if uri.split("?", 1)[0] in ("sqlite://", "sqlite:///:memory:") or ":memory:" in uri:
        raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is in memory: nothing would be "
                            "kept once the study ends; give a file (sqlite:///mlflow.db) or a "
                            "server (http://host:5000)")
    path = sqlite_file(uri)
    if resuming and path is not None and not path.exists():
        raise TrackingError(f"MLflow tracking URI {redact(uri)!r}: {path} does not exist, and "
                            "this study's parent run is in it; give the store's new place with "
                            "--tracking-uri, or continue under a new parent run with --new-parent")
    check_reachable(uri)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def server_url(uri: str) -> str:
    """An http(s) tracking URI without its user, password, query or trailing "/": the server
    to reach, and a link safe to print (``https://host:5000/mlflow``)."""
    import urllib.parse

    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def check_reachable(uri: str | None, timeout: float = 5.0) -> None:
    """Fail fast (before Ray starts) when an http(s) tracking server does not answer. A user
    and password in the URI are sent as basic authentication, as MLflow's client sends them."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    uri = resolve_uri(uri)
    if not uri.startswith(("http://", "https://")):
        return
    parts = urllib.parse.urlsplit(uri)
    request = urllib.request.Request(server_url(uri) + "/health")
    if parts.username:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered: a server is there (auth and API errors surface later)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"MLflow tracking URI {redact(uri)!r} is not usable: cannot "
                            f"connect ({redact(str(reason))})") from None


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


@contextmanager
def serialised_store_setup(uri: str, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a sqlite store's file while MLflow creates or migrates
    its schema: two studies started at once on a new ``mlflow.db`` would otherwise both create
    the tables and one fail ("table ... already exists"). ``flock`` and SQLite's ``fcntl``
    locks do not interact on Linux. Other stores: nothing to do.

    Call it before this process's MLflow threads write to the store: closing a descriptor of a
    file drops the process's POSIX locks on it, which an SQLite transaction may hold."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # an empty file is a new database
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise TrackingError(f"MLflow tracking URI {redact(uri)!r}: another process has "
                                    f"been setting up {path} for {timeout_s:.0f} s") from None
            time.sleep(0.1)
    try:
        yield
    finally:
        os.close(fd)  # releases the flock


class Tracker:
    """The study's experiment (created if missing) and its parent run, reached synchronously:
    an unusable tracking store fails here, as a :class:`TrackingError`."""

    def __init__(self, uri: str | None, experiment: str, description: str | None = None) -> None:
        """``description``: the experiment's description in the MLflow UI (the study's
        question), set on every start so it follows the study file."""
        from mlflow.tracking import MlflowClient

        self.uri = resolve_uri(uri)
        try:
            with serialised_store_setup(self.uri):
                self.client = MlflowClient(tracking_uri=self.uri)
                exp = self.client.get_experiment_by_name(experiment)
                self.experiment_id = exp.experiment_id if exp else \
                    self.client.create_experiment(experiment)
                self.client.set_experiment_tag(self.experiment_id, KIND_TAG, KIND)
                if description:
                    self.client.set_experiment_tag(self.experiment_id, DESCRIPTION_TAG,
                                                   description[:5000])
        except TrackingError:
            raise
        except Exception as err:  # noqa: BLE001 - any client failure means "cannot track"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(f"MLflow tracking URI {redact(self.uri)!r} is not usable: "
                                f"{redact(first)[:300]}") from None

    # ------------------------------------------------------------------ runs
    def find_parent(self, state: StudyState, new_parent: bool = False) -> str | None:
        """The parent run a resumed study continues (None: it has none yet, or ``new_parent``
        replaces a lost one). One that cannot be found in this store, belongs to another
        study, or was continued by another folder of this study is a :class:`TrackingError`."""
        run_id = state.parent_run_id
        if run_id is None:  # the study stopped before its parent run was recorded
            found = self.client.search_runs(
                [self.experiment_id], max_results=1,
                filter_string=f"tags.{STUDY_ID_TAG} = '{state.study_id}'")
            return found[0].info.run_id if found and PARENT_TAG not in found[0].data.tags \
                else None
        try:
            run = self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - any lookup failure: the run is not in this store
            run = None
        lost = run is None or run.info.lifecycle_stage != "active" or \
            run.info.experiment_id != self.experiment_id
        other = run.data.tags.get(STUDY_ID_TAG) if run is not None and not lost else None
        if not lost and other not in (None, state.study_id):
            lost = True
        if lost:
            if new_parent:
                return None
            why = "is not in" if other is None else f"belongs to another study (id {other}) in"
            raise TrackingError(
                f"the MLflow parent run {run_id} of this study {why} {redact(self.uri)} "
                f"(experiment {state.study!r}); give the store it is in with --tracking-uri, or "
                "continue under a new parent run with --new-parent")
        ahead = int(run.data.tags.get(GENERATION_TAG, "0") or 0)
        if ahead > state.generation:
            raise TrackingError(
                f"the MLflow parent run {run_id} was continued by another folder of this study "
                f"({run.data.tags.get(FOLDER_TAG, 'elsewhere')}) after this one was last "
                "written: this folder is a stale copy; resume that folder, or start this one "
                "anew as a study of its own with --overwrite")
        return run_id

    def start_parent(self, run_id: str | None, tags: dict[str, str], run_name: str) -> str:
        """Continue ``run_id`` (resume: RUNNING again, ``tags`` updated) or create a new parent
        run; returns its id."""
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            from mlflow.entities import RunTag

            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
            return run_id
        return self.client.create_run(self.experiment_id, tags=tags, run_name=run_name).info.run_id
