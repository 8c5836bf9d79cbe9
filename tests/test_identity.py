"""A results folder is one study wherever it lives (issue 22), with the real parts through
``python -m study.run``: a copy never writes into the original's records, a moved folder is
resumed from any working directory in the store it names, a lost Parquet row is recorded again
from its checkpoint, a lost MLflow parent run is refused or replaced (``--new-parent``) with
every trial logged again, and two folders of one study on one ``--storage`` never touch each
other's prefix."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from cli import one_error_line, run_cli
from faults import finish, start_driver, trials_done, wait_for
from mlflow.tracking import MlflowClient
from studies import write_spec

pytestmark = pytest.mark.slow  # whole studies through Ray


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
            for p in sorted(folder.rglob("*"))}


def _children(uri: str, parent: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ident")
    return [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") == parent]


def test_copies_moves_lost_rows_and_lost_parent_runs(tmp_path):
    spec = write_spec(tmp_path, "ident", budgets={"smoke": {"epochs": 3}})
    work1, work2 = tmp_path / "work1", tmp_path / "work2"
    work1.mkdir(), work2.mkdir()
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    study = ("study.run", str(spec), "--budget", "smoke", "--quiet", "--no-plots")
    # Ctrl-C before anything is recorded (issue 22: it printed "continue with ... --resume",
    # which was then refused): the line gives the command as it was, which starts the study
    proc = subprocess.Popen([sys.executable, "-m", *study, "--results", str(a)], cwd=work1,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(3.0)  # imports and Ray's start take longer than this
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    lines = [x for x in err.splitlines() if x.strip()]
    prefix = "interrupted before the study recorded anything; start it again with: "
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    again = shlex.split(lines[0][len(prefix):])
    assert again == ["python", "-m", *study, "--results", str(a)]
    assert not (a / "study.json").exists()
    first = run_cli(*again[2:], cwd=work1)  # MLflow: work1/mlflow.db
    assert first.returncode == 0, first.stderr
    uri = f"sqlite:///{work1}/mlflow.db"
    state = json.loads((a / "study.json").read_text())
    assert state["tracking_uri"] == uri and state["path"] == str(a) and state["generation"] == 1

    shutil.copytree(a, c, symlinks=True)  # cp -a: a copy, its original still there
    before = _tree(c)
    line = one_error_line(run_cli(*study, "--results", str(c), "--resume", cwd=work1))
    assert f"{c} is a copy of {a}" in line and state["study_id"] in line
    assert f"--results {a}" in line and "--overwrite" in line
    assert _tree(c) == before

    a.rename(b)  # mv: the same folder elsewhere
    rows = pq.read_table(b / "trials.parquet").to_pandas()
    lost = rows["trial_id"].iloc[0]
    rows[rows["trial_id"] != lost].to_parquet(b / "trials.parquet", index=False)
    # resumed from another working directory without --tracking-uri: the store study.json names
    again = run_cli(*study, "--results", str(b), "--resume", cwd=work2)
    assert again.returncode == 0, again.stderr
    assert f"moved from {a} to {b}" in again.stdout
    assert not (work2 / "mlflow.db").exists()
    rows = pq.read_table(b / "trials.parquet").to_pandas()
    assert sorted(rows["trial_id"].unique()) == sorted({lost, *rows["trial_id"]}) and len(rows) == 4
    state = json.loads((b / "study.json").read_text())
    assert state["path"] == str(b) and state["generation"] == 2
    children = _children(uri, state["parent_run_id"])
    assert len(children) == 2
    client = MlflowClient(uri)
    for child in children:  # the re-recorded trial's final metrics were not logged twice
        assert len(client.get_metric_history(child.info.run_id, "final/test_ll")) == 1

    client.delete_run(state["parent_run_id"])  # the parent run is lost
    before = _tree(b)
    line = one_error_line(run_cli(*study, "--results", str(b), "--resume", cwd=work1))
    assert f"the MLflow parent run {state['parent_run_id']} of this study is not in" in line
    assert "--new-parent" in line and _tree(b) == before
    replaced = run_cli(*study, "--results", str(b), "--resume", "--new-parent", cwd=work1)
    assert replaced.returncode == 0, replaced.stderr
    new = json.loads((b / "study.json").read_text())["parent_run_id"]
    assert new != state["parent_run_id"]
    children = _children(uri, new)  # every recorded trial logged again under the new parent
    assert sorted(ch.data.tags["ray_trial_id"] for ch in children) == sorted(rows["trial_id"].unique())
    assert all("final/test_ll" in ch.data.metrics and ch.info.status == "FINISHED"
               for ch in children)


def test_two_folders_of_one_study_on_one_storage_never_touch_each_other(tmp_path):
    """Issue 22: folder B with --overwrite replaced folder A's Ray experiment on the shared
    storage; A's --resume then failed for good. The prefix now carries each study's id."""
    spec = write_spec(tmp_path, "faulty", factors={"lr": {"grid": [0.002, 0.003]}},
                      budgets={"smoke": {"epochs": 24, "n_train": 512}}, checkpoint_every=4)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = ("--storage", f"file://{tmp_path / 'bucket'}")
    res_a, res_b = tmp_path / "a", tmp_path / "b"
    proc = start_driver(spec, res_a, uri, "--max-concurrent", "1", *storage)
    wait_for(lambda: trials_done(res_a) >= 1, proc, what="the first trial of A")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(120) == 130
    id_a = json.loads((res_a / "study.json").read_text())["study_id"]
    prefix_a = tmp_path / "bucket" / "faulty" / id_a
    assert (prefix_a / "ray" / "tuner.pkl").exists()
    kept = _tree(prefix_a)
    finish(start_driver(spec, res_b, uri, *storage))
    finish(start_driver(spec, res_b, uri, *storage, "--overwrite"))
    assert _tree(prefix_a) == kept  # B's runs and overwrite left A's prefix alone
    assert sorted(p.name for p in (tmp_path / "bucket" / "faulty").iterdir()) == sorted(
        [id_a, json.loads((res_b / "study.json").read_text())["study_id"]])  # B's old one gone
    finish(start_driver(spec, res_a, uri, "--max-concurrent", "1", *storage, "--resume"))
    # A is whole: every trial once in Parquet and Optuna, and once under A's parent run
    rows = pq.read_table(res_a / "trials.parquet").to_pandas()
    assert rows["trial_id"].nunique() == 2 and not rows.duplicated(["trial_id", "seed"]).any()
    import optuna

    trials = optuna.load_study(study_name="faulty",
                               storage=f"sqlite:///{res_a}/optuna.db").trials
    assert sorted(t.user_attrs["ray_trial_id"] for t in trials) == sorted(rows["trial_id"].unique())
    assert {t.state.name for t in trials} == {"COMPLETE"}
    parent_a = json.loads((res_a / "study.json").read_text())["parent_run_id"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("faulty")
    mine = [r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("mlflow.parentRunId") == parent_a]
    assert sorted(r.data.tags["ray_trial_id"] for r in mine) == sorted(rows["trial_id"].unique())
    assert all(r.info.status == "FINISHED" for r in mine)

