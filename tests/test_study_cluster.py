"""Two Ray nodes with logical GPUs and shared storage (a ``file://`` URI through pyarrow's
filesystems, the code path of ``s3://``/``gs://``): 4 trials at 0.5 GPU on 2 GPUs use both
nodes, checkpoints and a copy of the results land on the storage, and a study whose results
folder is gone (a lost head node) is resumed from the storage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import ray
from conftest import REPO
from ray.cluster_utils import Cluster
from studies import write_spec

from study.engine.launch import end_autoscaler_monitor, run_study
from study.report.build import main as report_main
from study.spec.spec_file import load_spec
from study.store.results import read_trials

pytestmark = pytest.mark.slow  # whole studies through Ray


def test_trials_spread_over_two_nodes_with_fractional_gpus_and_shared_storage(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    bucket = tmp_path / "bucket"
    storage = f"file://{bucket}"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert not end_autoscaler_monitor()  # a driver that joined: the cluster's own is kept
        assert cluster.head_node.all_processes["monitor"][0].process.poll() is None
        spec_file = write_spec(
            tmp_path, "tiny_cluster", factors={"lr": {"grid": [0.001, 0.002, 0.003, 0.004]}},
            budgets={"smoke": {"epochs": 15}}, resources={"cpus": 1, "gpus": 0.5},
            checkpoint_every=5)
        spec = load_spec(str(spec_file))
        out = run_study(spec, "smoke", tmp_path / "res", address=cluster.address,
                        tracking_uri=uri, quiet=True, storage=storage)
        trials = read_trials(out.results).drop_duplicates("trial_id")
        assert len(trials) == 4 and set(trials["trial_status"]) == {"finished"}
        assert trials["node_id"].nunique() == 2  # both nodes ran trials
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert set(trials["node_id"]) == nodes
        assert set(trials["device"]) == {"cpu"}  # logical GPUs, no CUDA here: the CPU is used

        study_id = json.loads((out.results / "study.json").read_text())["study_id"]
        shared = bucket / "tiny_cluster" / study_id  # the prefix carries the study's identity
        assert not (out.results / "ray").exists()  # Ray's state and checkpoints: on the storage
        assert len(list((shared / "ray").glob("run_study_trial_*/checkpoint_*"))) >= 4
        pd.testing.assert_frame_equal(read_trials(shared), read_trials(out.results))
        assert len(list((shared / "scores.parquet").glob("*.parquet"))) == 4
        assert len(list((shared / "plots").iterdir())) == 4
        assert (shared / "optuna.db").exists() and (shared / "study.json").exists()
        assert report_main([str(spec_file), "--results", str(out.results), "--no-mlflow"]) == 0
        assert (shared / "report" / "report.md").read_text() == \
            (out.results / "report" / "report.md").read_text()

        shutil.rmtree(out.results)  # the head node is lost; the storage survives
        again = run_study(spec, "smoke", tmp_path / "res", address=cluster.address,
                          tracking_uri=uri, quiet=True, storage=storage, resume=True)
        assert again.parent_run_id == out.parent_run_id  # the same MLflow parent run
        pd.testing.assert_frame_equal(read_trials(again.results), read_trials(shared))
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_study_without_address_starts_its_own_ray_beside_a_running_one(tmp_path):
    """``ray.init()`` without an address joins the Ray last started on the machine (here a test
    cluster; for a user, ``ray start``) and fails on ``num_cpus``; ``start_ray`` starts its own."""
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    show = "import ray; {}; print(ray.get_runtime_context().gcs_address)"
    try:
        ours = subprocess.run(
            [sys.executable, "-c", show.format("from study.engine.launch import start_ray; start_ray("
                                               "num_cpus=1)")],
            cwd=REPO, capture_output=True, text=True, timeout=120, env=os.environ | {
                "RAY_ADDRESS": ""})
        plain = subprocess.run([sys.executable, "-c", show.format("ray.init(num_cpus=1)")],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        cluster.shutdown()
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.split()[-1] != cluster.address  # a Ray of its own, not the running one
    assert plain.returncode != 0 and "existing cluster" in plain.stderr  # what it guards against
