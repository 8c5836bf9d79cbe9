"""Fault injection with the real parts (Ray, Optuna, MLflow, Parquet): a study that goes through a
fault ends with every trial exactly once in Parquet and MLflow and the final metrics it would
have had without the fault (compared with an uninterrupted run of the same study)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from faults import (
    CHECKPOINT_EVERY,
    LRS,
    assert_complete,
    checkpointed_unfinished,
    checkpointed_victims,
    checkpoints_made,
    fault_spec,
    finish,
    free_port,
    recorded_checkpoints,
    start_driver,
    start_mlflow_server,
    stop,
    trial_id,
    trial_workers,
    trials_done,
    wait_for,
)

from study.engine.ray_state import KEPT_STATE
from study.spec.spec_file import load_spec
from study.store.results import read_trials
from study.trial.run_trial import NoCheckpoints, run_trial

pytestmark = pytest.mark.slow  # whole studies through Ray


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted study: its results folder."""
    folder = tmp_path_factory.mktemp("reference")
    finish(start_driver(fault_spec(folder), folder / "res", f"sqlite:///{folder}/mlflow.db",
                        "--max-concurrent", "1"))
    return folder / "res"


def test_max_concurrent_is_honoured(reference):
    spans = read_trials(reference).drop_duplicates("trial_id").sort_values("started_at")
    assert (spans["started_at"].to_numpy()[1:] >= spans["ended_at"].to_numpy()[:-1]).all()


def test_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path, reference):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
    victims = checkpointed_victims(res, proc, 3)
    workers = trial_workers(proc.pid)
    assert workers
    for w in workers:  # every trial worker: the running trial's (and a spare Ray started)
        w.send_signal(signal.SIGKILL)
    finish(proc)

    trials = assert_complete(res, uri, reference).drop_duplicates("trial_id").set_index("trial_id")
    for victim in victims:  # retried once, from its last checkpoint, not from epoch 0
        assert trials.loc[victim, "num_failures"] == 1
        restored = int(trials.loc[victim, "restored_from_epoch"])
        assert restored > 0 and restored % CHECKPOINT_EVERY == 0
    assert (trials[trials["num_failures"] == 0]["restored_from_epoch"] == 0).all()


def test_killed_driver_is_resumed_without_duplicates_or_losses(tmp_path, reference):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
    # Ray Tune records a trial's checkpoints in its experiment state at least every 10 s and
    # after every `num_to_keep` (2) of them; a resumed driver knows only those. Four made ->
    # at least two are on record.
    wait_for(lambda: trials_done(res) >= 1 and any(
        checkpoints_made(p) >= 4 for p in checkpointed_unfinished(res)), proc,
        what="one trial done and the next one checkpointed four times")
    victims = {trial_id(p) for p in checkpointed_unfinished(res) if checkpoints_made(p) >= 4}
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and every worker
    proc.wait(30)
    assert 1 <= trials_done(res) < len(LRS)
    # Ray deletes all but its last `num_to_keep` checkpoints as soon as a new one is registered,
    # but saves its record of them only every ~10 s: a driver killed in between leaves a record
    # naming a checkpoint that is gone (CI saw it). Made certain here: delete what Ray recorded.
    gone = recorded_checkpoints(res / "ray", victims)
    assert gone
    for folder in gone:
        shutil.rmtree(folder, ignore_errors=True)

    finish(start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1", "--resume"))
    trials = assert_complete(res, uri, reference).drop_duplicates("trial_id").set_index("trial_id")
    for victim in victims:  # restarted from a checkpoint that is left, not from epoch 0
        restored = int(trials.loc[victim, "restored_from_epoch"])
        assert restored > 0 and restored % CHECKPOINT_EVERY == 0


def test_mlflow_outage_mid_study_is_ridden_out(tmp_path, reference):
    port = free_port()
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = start_mlflow_server(server_dir, port)
    uri = f"http://127.0.0.1:{port}"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
    try:
        wait_for(lambda: trials_done(res) >= 1, proc, what="the first trial")
        stop(server)  # the tracking server goes away mid-study ...
        down = trials_done(res)
        wait_for(lambda: trials_done(res) > down, proc, what="a trial ending during the outage")
        server = start_mlflow_server(server_dir, port)  # ... and comes back on the same store
        out, err = finish(proc)
        assert_complete(res, uri, reference)  # every write arrived, each once
    finally:
        if proc.poll() is None:
            stop(proc)
        stop(server)
    assert not (res / "mlflow_unsent.json").exists() and "warning" not in err


def test_mlflow_that_never_returns_is_recorded_as_a_loss(tmp_path):
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, f"http://127.0.0.1:{port}", "--max-concurrent",
                        "1", "--mlflow-grace", "3", report=True)
    wait_for(lambda: trials_done(res) >= 1, proc, what="the first trial")
    stop(server)
    out, err = finish(proc)  # the study itself succeeds: Parquet has everything
    trials = read_trials(res)
    assert trials["trial_id"].nunique() == len(LRS) and set(trials["trial_status"]) == {"finished"}
    lost = json.loads((res / "mlflow_unsent.json").read_text())["unsent"]
    lost_trials = {x["trial_id"] for x in lost if x["what"] != "end-parent"}
    assert lost_trials and lost_trials <= set(trials["trial_id"])  # named, per trial
    assert any(x["what"] == "finish" for x in lost) and lost[-1]["what"] == "end-parent"
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 2 and sum("mlflow_unsent.json" in w for w in warning) == 1
    # the report is written all the same; its answer waits for the server like the rest
    answer = next(w for w in warning if "the answer is not on the MLflow parent run" in w)
    assert f"python -m study.report {tmp_path / 'faulty.yaml'} --results {res}" in answer
    assert (res / "report" / "report.md").is_file()


def test_diverging_trial_is_recorded_everywhere_and_the_study_goes_on(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    # lr 1.0 with an unbounded learned output std on noise-free data, 32 hidden units: every
    # seed diverges in its first epoch (with 8 units about half of the seeds' noise streams only
    # reach losses of 1e14-1e25)
    spec = fault_spec(tmp_path, fixed={"noise": 0.0, "min_output_std": 0.0, "hidden": [32]},
                      pruner={"name": "median", "args": {"n_startup_trials": 10}})
    spec.write_text(spec.read_text().replace("- 0.004", "- 1.0"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    finish(start_driver(spec, res, uri))
    assert not (res / "plots").exists()  # --no-plots (start_driver's default): no figures

    trials = read_trials(res)
    assert trials["trial_id"].nunique() == 3 and len(trials) == 6
    bad = trials[trials["factor.lr"] == 1.0]
    good = trials[trials["factor.lr"] != 1.0]
    assert set(bad["trial_status"]) == {"diverged"} and set(bad["seed_status"]) == {"diverged"}
    assert (bad["diverged_epoch"] >= 1).all() and (bad["epochs"] < 120).all()
    assert set(good["trial_status"]) == {"finished"} and (good["epochs"] == 120).all()
    # the trials that did not diverge have the numbers of the same configuration trained
    # alone in this process, without Ray, Optuna or MLflow
    study_spec = load_spec(str(spec))
    for lr, rows in good.groupby("factor.lr"):
        alone = run_trial(study_spec.trial_config({"lr": lr}, "smoke"), NoCheckpoints(), threads=1,
                          plots=False)
        assert np.allclose(rows.sort_values("seed")["test_ll"], alone.evaluation.members["test_ll"],
                           rtol=1e-6)

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("faulty").experiment_id
    children = [r for r in client.search_runs([exp]) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.tags["ray_trial_id"] for r in children) == sorted(trials["trial_id"].unique())
    runs = [r for r in children if r.data.tags["status"] == "diverged"]
    assert len(runs) == 1 and runs[0].data.tags["ray_trial_id"] == bad["trial_id"].iloc[0]
    assert int(runs[0].data.tags["diverged_epoch"]) == int(bad["diverged_epoch"].min())

    study = optuna.load_study(study_name="faulty", storage=f"sqlite:///{res}/optuna.db")
    states = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    told = states[bad["trial_id"].iloc[0]]
    assert told.state == optuna.trial.TrialState.FAIL
    assert told.user_attrs["diverged_epoch"] == int(bad["diverged_epoch"].min())
    assert told.user_attrs["diverged_seeds"] == 2
    assert {states[t].state for t in good["trial_id"]} == {optuna.trial.TrialState.COMPLETE}


def test_removed_worker_node_moves_its_trials_to_the_other_node(tmp_path, reference):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--address", cluster.address)
    try:
        # 3 trials on 3 CPUs, one on the head: of any two running, one is on the worker node
        wait_for(lambda: (res / "ray").exists() and sum(
            checkpoints_made(p) >= 3 for p in checkpointed_unfinished(res)) >= 2,
            proc, what="two trials running with checkpoints")
        cluster.remove_node(worker, allow_graceful=False)  # the node is lost, not drained
        finish(proc)
        head = cluster.head_node.node_id
    finally:
        cluster.shutdown()
    trials = assert_complete(res, uri, reference).drop_duplicates("trial_id")
    assert set(trials["node_id"]) == {head}  # every trial ended on the surviving node
    moved = trials[trials["num_failures"] > 0]
    assert (moved["restored_from_epoch"] > 0).any()  # the worker's trial with 3 checkpoints
    assert (moved["restored_from_epoch"] % CHECKPOINT_EVERY == 0).all()


def _runs_by_trial(uri: str) -> tuple[object, dict[str, object]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("faulty").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    return parent, {r.data.tags["ray_trial_id"]: r for r in runs if "ray_trial_id" in r.data.tags}


def _optuna_states(res) -> dict[str, str]:
    import optuna

    study = optuna.load_study(study_name="faulty", storage=f"sqlite:///{res}/optuna.db")
    return {t.user_attrs["ray_trial_id"]: t.state.name for t in study.trials}


def _resume_line(res) -> str:
    """The command the driver prints: the study as the user named it (here its file)."""
    return (f"continue with: python -m study.run {res.parent / 'faulty.yaml'} --resume --results "
            f"{res} --budget smoke")


def test_ctrl_c_stops_cleanly_and_resume_finishes_every_trial_once(tmp_path, reference):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
    wait_for(lambda: trials_done(res) >= 1 and any(
        checkpoints_made(p) >= 3 for p in checkpointed_unfinished(res)), proc,
        what="one trial done and the next one checkpointed three times")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    done = read_trials(res).drop_duplicates("trial_id")
    assert 1 <= len(done) < len(LRS)
    line = f"interrupted: {len(done)} of {len(LRS)} trials finished; {_resume_line(res)}"
    assert [x for x in err.splitlines() if x.strip()] == [line], err

    parent, children = _runs_by_trial(uri)
    assert parent.info.status == "KILLED"
    unfinished = [t for t in children if t not in set(done["trial_id"])]
    assert unfinished and all(children[t].info.status == "KILLED" for t in unfinished)
    assert all(children[t].info.status == "FINISHED" for t in done["trial_id"])
    states = _optuna_states(res)
    assert "RUNNING" not in states.values()
    assert {states[t] for t in done["trial_id"]} == {"COMPLETE"}
    assert {states[t] for t in unfinished} == {"WAITING"}

    # every checkpoint of the interrupted trial is unreadable (truncated): it restarts from 0
    victim = next(p for p in checkpointed_unfinished(res) if checkpoints_made(p) >= 3)
    for checkpoint in victim.glob("checkpoint_*"):
        trainer = checkpoint / "trainer.pt"
        trainer.write_bytes(trainer.read_bytes()[:1000])

    # broken files of a resumed study are named, and nothing runs (each file is broken in
    # place and then put back: a copy of the folder would be refused as a copy); Ray's state
    # is refused only when the copy kept of it is damaged too (study.engine.ray_state)
    newest = sorted(p.name for p in (res / "ray").glob("experiment_state*.json"))[-1]
    for broken in [{"optuna.db": b"not a database" * 100},
                   {"trials.parquet": b"PAR1 truncated"},
                   {f"ray/{newest}": b'{"trial_data": [', f"ray/{KEPT_STATE}": b'{"tuner.pkl": '}]:
        good = {name: (res / name).read_bytes() for name in broken}
        for name, content in broken.items():
            (res / name).write_bytes(content)
        r = start_driver(fault_spec(tmp_path), res, uri, "--resume")
        r_out, r_err = r.communicate(timeout=120)
        assert r.returncode == 2, (r_out, r_err)
        first = [x for x in r_err.splitlines() if x.strip()][0]
        assert first.startswith(f"error: {res / next(iter(broken))}"), first
        for name, content in broken.items():
            assert (res / name).read_bytes() == content  # refused: nothing written
            (res / name).write_bytes(good[name])

    finish(start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1", "--resume"))
    trials = assert_complete(res, uri, reference).drop_duplicates("trial_id").set_index("trial_id")
    before = done.set_index("trial_id")
    assert (trials.loc[before.index, "ended_at"] == before["ended_at"]).all()  # not trained again
    v = trials.loc[trial_id(victim)]  # and its numbers are those of the uninterrupted study
    assert v["restored_from_epoch"] == 0
    assert v["restore_note"].startswith("unreadable checkpoint checkpoint_0")
    assert v["restore_note"].endswith("restarted from epoch 0")


def test_sigterm_then_a_second_signal_aborts_at_once_and_resume_finishes(tmp_path, reference):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
    wait_for(lambda: (res / "ray").exists() and any(
        checkpoints_made(p) >= 2 for p in checkpointed_unfinished(res)), proc,
        what="a trial checkpointed twice")
    proc.send_signal(signal.SIGTERM)  # what a batch scheduler or `kill` sends
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # ... and an impatient second signal
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    # the second signal lands while Tune stops (the count of finished trials is then printed)
    # or, on a loaded machine, after it (the count is not known yet): either way, the resume
    [line] = [x for x in err.splitlines() if x.startswith("interrupted: ")]
    assert line.endswith(f" {_resume_line(res)}") and ("trials finished; " in line
                                                         or line.startswith("interrupted: continue")), err
    parent, children = _runs_by_trial(uri)
    assert parent.info.status == "KILLED"
    assert {c.info.status for c in children.values()} <= {"FINISHED", "KILLED"}
    assert "RUNNING" not in _optuna_states(res).values()

    finish(start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1", "--resume"))
    assert_complete(res, uri, reference)


def _fill(disk) -> None:
    """Write a file until the disk is full."""
    block = b"\0" * 65536
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass


def test_a_full_disk_stops_the_study_loudly_and_resume_finishes_it(tmp_path, reference):
    disk = tmp_path / "disk"
    disk.mkdir()
    # a small tmpfs of its own as the results folder's disk (the tests run as root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        uri = f"sqlite:///{tmp_path}/mlflow.db"
        res = disk / "res"
        proc = start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1")
        wait_for(lambda: trials_done(res) >= 1, proc, what="the first trial")
        recorded = read_trials(res)
        _fill(disk)
        out, err = proc.communicate(timeout=400)
        assert proc.returncode == 1, (out, err)
        errors = [x for x in err.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and "the disk is full" in errors[0], err
        assert errors[0].endswith(f"free space, then continue with: python -m study.run "
                                  f"{tmp_path / 'faulty.yaml'} --resume --results {res} --budget smoke")
        # what was recorded is whole: every trial in trials.parquet has its epochs and scores
        trials = read_trials(res)
        assert set(recorded["trial_id"]) <= set(trials["trial_id"])
        for tid in trials["trial_id"].unique():
            assert (res / "epochs.parquet" / f"{tid}.parquet").exists()
            assert (res / "scores.parquet" / f"{tid}.parquet").exists()
        (disk / "filler").unlink()
        finish(start_driver(fault_spec(tmp_path), res, uri, "--max-concurrent", "1", "--resume"))
        assert_complete(res, uri, reference)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


#: a packed configuration trains as it would alone (tests/test_packs.py: bit for bit), so its
#: final numbers meet the unpacked reference at the tolerance of every other fault test
PACKED_RTOL = 1e-6


def test_killed_pack_server_and_trial_workers_are_retried_from_their_checkpoints(tmp_path,
                                                                               reference):
    """``--pack on``: the three trials train in the pack servers; every trial worker and every
    pack server is killed mid-study. Ray Tune retries the trials from their checkpoints, the
    servers restart, and the study ends as the uninterrupted, unpacked one."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--pack", "on")
    victims = checkpointed_victims(res, proc, 3)
    servers, workers = trial_workers(proc.pid, "PackServer"), trial_workers(proc.pid)
    assert servers and workers
    for w in servers + workers:
        w.send_signal(signal.SIGKILL)
    finish(proc)
    trials = assert_complete(res, uri, reference, rtol=PACKED_RTOL)
    trials = trials.drop_duplicates("trial_id").set_index("trial_id")
    assert (trials["pack_members"] >= 2).all()
    for victim in victims:  # retried, from its last checkpoint, not from epoch 0
        assert trials.loc[victim, "num_failures"] >= 1
        restored = int(trials.loc[victim, "restored_from_epoch"])
        assert restored > 0 and restored % CHECKPOINT_EVERY == 0


def test_killed_driver_of_a_packed_study_is_resumed_without_duplicates_or_losses(tmp_path,
                                                                                 reference):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = tmp_path / "res"
    proc = start_driver(fault_spec(tmp_path), res, uri, "--pack", "on")
    victims = checkpointed_victims(res, proc, 4)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray, the servers and every worker
    proc.wait(30)
    assert trials_done(res) < len(LRS)
    finish(start_driver(fault_spec(tmp_path), res, uri, "--pack", "on", "--resume"))
    trials = assert_complete(res, uri, reference, rtol=PACKED_RTOL)
    trials = trials.drop_duplicates("trial_id").set_index("trial_id")
    for victim in victims:  # restarted from a checkpoint, not from epoch 0
        assert int(trials.loc[victim, "restored_from_epoch"]) > 0
