"""A study logging to a real MLflow tracking server (on loopback), artifacts proxied by it."""

from __future__ import annotations

import pytest
import ray
from faults import free_port, start_mlflow_server, stop
from mlflow.tracking import MlflowClient
from studies import write_spec

from study.engine.launch import run_study
from study.spec.spec_file import load_spec

pytestmark = pytest.mark.slow  # whole studies through Ray


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    proc = start_mlflow_server(tmp_path, port)
    yield f"http://127.0.0.1:{port}", tmp_path / "artifacts"
    stop(proc)


def test_study_logs_to_a_remote_tracking_server(mlflow_server, tmp_path):
    uri, artifact_root = mlflow_server
    spec = load_spec(str(write_spec(tmp_path, "tiny_remote")))
    try:
        out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, num_cpus=2, quiet=True)
    finally:
        ray.shutdown()
    assert out.counts["finished"] == 2
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tiny_remote")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == out.parent_run_id]
    assert len(runs) == 3 and len(children) == 2
    for child in children:
        assert "final/test_ll" in child.data.metrics
        assert "roc.png" in {a.path for a in client.list_artifacts(child.info.run_id)}
    assert list(artifact_root.rglob("roc.png"))  # the server stored the uploaded plots
