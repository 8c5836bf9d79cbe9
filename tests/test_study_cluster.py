"""Two Ray nodes with logical GPUs and shared storage (a ``file://`` URI through pyarrow's
filesystems, the code path of ``s3://``/``gs://``): 4 trials at 0.5 GPU on 2 GPUs use both
nodes, checkpoints and a copy of the results land on the storage, and a study whose results
folder is gone (a lost head node) is resumed from the storage."""

from __future__ import annotations

import pytest

import shutil

import pandas as pd
import ray
from ray.cluster_utils import Cluster

from studies import write_spec
from study.launch import run_study
from study.report import main as report_main
from study.results import read_trials
from study.spec_file import load_spec

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

        shared = bucket / "tiny_cluster"
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
