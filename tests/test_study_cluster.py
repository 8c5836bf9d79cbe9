"""Two Ray nodes with logical GPUs: 4 trials at 0.5 GPU on 2 GPUs must use both nodes."""

from __future__ import annotations

import ray
from ray.cluster_utils import Cluster

from studies import write_spec
from study.launch import run_study
from study.results import read_trials
from study.spec import load_spec


def test_trials_spread_over_two_nodes_with_fractional_gpus(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        spec = load_spec(str(write_spec(
            tmp_path, "tiny_cluster", factors={"lr": {"grid": [0.001, 0.002, 0.003, 0.004]}},
            budgets={"smoke": {"epochs": 15}}, resources={"cpus": 1, "gpus": 0.5})))
        out = run_study(spec, "smoke", tmp_path / "res", address=cluster.address,
                        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", quiet=True)
        trials = read_trials(out.results).drop_duplicates("trial_id")
        assert len(trials) == 4 and set(trials["trial_status"]) == {"finished"}
        assert trials["node_id"].nunique() == 2  # both nodes ran trials
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        assert set(trials["node_id"]) == nodes
        assert set(trials["device"]) == {"cpu"}  # logical GPUs, no CUDA here: the CPU is used
    finally:
        ray.shutdown()
        cluster.shutdown()
