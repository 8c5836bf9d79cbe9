"""Kill the driver of a running study (SIGKILL, whole process group) and resume it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mlflow.tracking import MlflowClient

from conftest import REPO
from studies import write_spec
from study.results import read_trials


def _study(tmp_path, *extra):
    spec = write_spec(tmp_path, "tiny_resume", factors={"lr": {"grid": [0.002, 0.003, 0.004, 0.005]}},
                      budgets={"smoke": {"epochs": 150, "n_train": 1024}}, checkpoint_every=20)
    cmd = [sys.executable, "-m", "study.run", str(spec), "--budget", "smoke", "--results",
           str(tmp_path / "res"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--max-concurrent", "1", "--num-cpus", "2", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def test_killed_driver_resumes_without_duplicates_or_losses(tmp_path):
    proc = _study(tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        trials = read_trials(tmp_path / "res") if (tmp_path / "res" / "trials.parquet").exists() else None
        if trials is not None and trials["trial_id"].nunique() >= 1:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    time.sleep(1)  # let the next trial get going
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    done_before = read_trials(tmp_path / "res")["trial_id"].nunique()
    assert 1 <= done_before < 4, "the study must be interrupted mid-way"

    resumed = _study(tmp_path, "--resume")
    out, _ = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, out
    trials = read_trials(tmp_path / "res")
    assert len(trials) == 4 * 2 and trials["trial_id"].nunique() == 4  # each trial once
    assert set(trials["trial_status"]) == {"finished"} and (trials["epochs"] == 150).all()
    assert sorted(trials.drop_duplicates("trial_id")["factor.lr"]) == [0.002, 0.003, 0.004, 0.005]

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny_resume")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1  # the parent run is reused
    assert sorted(c.data.tags["ray_trial_id"] for c in children) == sorted(trials["trial_id"].unique())
    assert all(c.data.tags.get("status") == "finished" for c in children)
