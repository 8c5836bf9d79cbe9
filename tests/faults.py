"""Helpers for the fault-injection tests: one small study, its uninterrupted reference, a
driver in its own process group, and the check that a study that went through a fault has
every trial exactly once, with the numbers it would have had without the fault."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pandas as pd
import psutil
from conftest import REPO
from mlflow.tracking import MlflowClient
from studies import write_spec

from study.engine.outbox import PER_SEED_FILE
from study.store.results import read_epochs, read_trials

NAME = "faulty"
LRS = [0.002, 0.003, 0.004]
EPOCHS = 120
CHECKPOINT_EVERY = 10
#: final metrics that must not depend on how a trial got there (not timings, not node ids)
COMPARED = ["test_ll", "test_ll_kl", "ll_gap", "iw_gap", "kl_z", "active_units_z",
            "auroc_neg_elbo_shifted_1", "last_val_elbo", "min_output_std"]


def fault_spec(folder: Path, **fields) -> Path:
    """3 trials x 2 seeds of a tiny Moons VAE, ~2-4 s each here, a checkpoint every 10 epochs."""
    return write_spec(folder, NAME, factors={"lr": {"grid": LRS}},
                      budgets={"smoke": {"epochs": EPOCHS, "n_train": 1024}},
                      checkpoint_every=CHECKPOINT_EVERY, **fields)


def start_driver(spec: Path, results: Path, tracking_uri: str, *extra: str,
                 report: bool = False, plots: bool = False) -> subprocess.Popen:
    """``python -m study.run`` in a new process group (so a SIGKILL takes Ray with it);
    without the report at the end unless ``report``, and without per-trial figures unless
    ``plots`` (the faults tested here are the run's; reports and figures are tested where
    they are the subject)."""
    cmd = [sys.executable, "-m", "study.run", str(spec), "--budget", "smoke", "--results",
           str(results), "--tracking-uri", tracking_uri, "--quiet", *extra,
           *([] if report else ["--no-report"]), *([] if plots else ["--no-plots"])]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (out, err)
    return out, err


def wait_for(predicate, proc: subprocess.Popen | None = None, timeout: float = 240,
             what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study ended before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def trials_done(results: Path) -> int:
    if not (results / "trials.parquet").exists():
        return 0
    return read_trials(results)["trial_id"].nunique()


def checkpointed_unfinished(results: Path) -> list[Path]:
    """Trial folders with at least one checkpoint whose trial is not in Parquet yet."""
    done = set(read_trials(results)["trial_id"]) if (results / "trials.parquet").exists() else set()
    folders = [p for p in (results / "ray").glob("run_study_trial_*") if any(p.glob("checkpoint_*"))]
    return [p for p in folders if not any(t in p.name for t in done)]


def checkpointed_victims(res: Path, proc: subprocess.Popen, at_least: int) -> set[str]:
    """Wait until a running trial has reported ``at_least`` checkpoints (the first ones'
    results have surely reached the driver); the ids of the unfinished trials that have."""
    wait_for(lambda: (res / "ray").exists() and any(
        checkpoints_made(p) >= at_least for p in checkpointed_unfinished(res)), proc,
        what=f"a running trial checkpointed {at_least} times")
    return {trial_id(p) for p in checkpointed_unfinished(res) if checkpoints_made(p) >= at_least}


def checkpoints_made(folder: Path) -> int:
    """How many checkpoints a trial folder's trial has reported (Ray numbers them from 0 and
    keeps only the last ``num_to_keep``)."""
    return 1 + max((int(p.name.rsplit("_", 1)[1]) for p in folder.glob("checkpoint_*")), default=-1)


def recorded_checkpoints(experiment: Path, trial_ids: set[str]) -> list[Path]:
    """The checkpoint folders that Ray's saved experiment state names as the latest of each of
    ``trial_ids`` (read through Ray's public ``ExperimentAnalysis``)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(experiment))
    return [Path(t.checkpoint.path) for t in analysis.trials
            if t.trial_id in trial_ids and t.checkpoint is not None]


def trial_id(folder: Path) -> str:
    """The Ray trial id in a trial folder's name (``run_study_trial_<id>_<n>_...``)."""
    parts = folder.name.split("_")
    return f"{parts[3]}_{parts[4]}"


def trial_workers(root_pid: int | None = None, name: str = "ImplicitFunc") -> list[psutil.Process]:
    """Ray worker processes that are running a trial (``ray::ImplicitFunc...``), or with
    ``name`` "PackServer" the pack servers of ``--pack on``."""
    procs = psutil.Process(root_pid).children(recursive=True) if root_pid else psutil.process_iter()
    found = []
    for p in procs:
        try:
            if name in " ".join(p.cmdline()):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def per_seed(results: Path) -> pd.DataFrame:
    t = read_trials(results)
    return t.set_index(["factor.lr", "seed"]).sort_index()


def assert_complete(results: Path, tracking_uri: str, reference: Path | None = None,
                    rtol: float = 1e-6) -> pd.DataFrame:
    """Every trial once in Parquet (one row per seed, every epoch once) and once in MLflow (one
    child run with its status, final metrics equal to Parquet's, every epoch logged once); with
    ``reference``, the final metrics equal those of the uninterrupted study (to ``rtol``)."""
    trials = read_trials(results)
    assert trials["trial_id"].nunique() == len(LRS) and len(trials) == 2 * len(LRS)
    assert sorted(trials.drop_duplicates("trial_id")["factor.lr"]) == LRS
    assert not trials.duplicated(["trial_id", "seed"]).any()
    epochs = read_epochs(results)
    assert not epochs.duplicated(["trial_id", "epoch", "seed"]).any()
    for tid, g in epochs.groupby("trial_id"):
        assert sorted(g["epoch"].unique()) == list(range(1, EPOCHS + 1)), tid
    if reference is not None:
        got, ref = per_seed(results), per_seed(reference)
        assert list(got.index) == list(ref.index)
        assert (got["trial_status"] == ref["trial_status"]).all()
        for col in COMPARED:
            pd.testing.assert_series_equal(got[col], ref[col], rtol=rtol, check_names=False)
        assert (got["epochs"] == ref["epochs"]).all()

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["ray_trial_id"] for c in children) == sorted(trials["trial_id"].unique())
    by_id = trials.set_index(["trial_id", "seed"])
    for c in children:
        tid = c.data.tags["ray_trial_id"]
        assert c.data.tags["status"] == by_id.loc[(tid, 0), "trial_status"]
        assert c.info.status == "FINISHED"
        with tempfile.TemporaryDirectory() as tmp:
            finals = pd.read_csv(client.download_artifacts(c.info.run_id, PER_SEED_FILE, tmp))
        for seed in (0, 1):
            logged = float(finals.loc[finals["seed"] == seed, "test_ll"].iloc[0])
            assert math.isclose(logged, by_id.loc[(tid, seed), "test_ll"], rel_tol=1e-6)
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "curves/val_elbo")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (tid, steps)
    assert_optuna_complete(results, trials)
    return trials


OPTUNA_STATE = {"finished": "COMPLETE", "pruned": "PRUNED", "diverged": "FAIL", "failed": "FAIL"}


def assert_optuna_complete(results: Path, trials: pd.DataFrame) -> None:
    """Exactly one Optuna trial per study trial (no orphans, no duplicate ``ray_trial_id``), in
    the state its Parquet status says, none left RUNNING or WAITING."""
    import optuna

    study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{results}/optuna.db")
    ids = [t.user_attrs.get("ray_trial_id") for t in study.trials]
    assert sorted(ids, key=str) == sorted(trials["trial_id"].unique()), ids
    status = trials.drop_duplicates("trial_id").set_index("trial_id")["trial_status"]
    for t in study.trials:
        assert t.state.name == OPTUNA_STATE[status[t.user_attrs["ray_trial_id"]]], t
        if t.state.name == "COMPLETE":
            assert len(t.intermediate_values) == EPOCHS
    assert study.metric_names == ["val_bound"]  # the study metric (the default search metric)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on loopback with a sqlite store in ``folder``; waits for /health."""
    mlflow = Path(sys.executable).with_name("mlflow")
    # no job runner: its worker processes leave the server's process group and outlive it
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).close()
            return proc
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL a process group and reap it."""
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
