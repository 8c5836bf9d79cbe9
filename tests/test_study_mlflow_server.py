"""A study logging to a real MLflow tracking server (on loopback), artifacts proxied by it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

from studies import write_spec
from study.launch import run_study
from study.spec import load_spec


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
    yield uri, tmp_path / "artifacts"
    proc.terminate()
    proc.wait(30)


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
