"""ray_cluster.yaml: valid for Ray's cluster launcher and what the study runner needs from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import ray
import yaml
from conftest import REPO

CONFIG = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())


def _commands(*keys: str) -> str:
    return "\n".join(c for k in keys for c in CONFIG.get(k, []))


def test_valid_against_rays_cluster_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(CONFIG, schema)
    # and Ray's own loader: provider defaults filled in, then validated as `ray up` does
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(CONFIG))


def test_cpu_head_and_autoscaling_gpu_workers_on_aws():
    assert CONFIG["provider"]["type"] == "aws"
    types = CONFIG["available_node_types"]
    head = types[CONFIG["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never compete with the driver
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = [t for name, t in types.items() if name != CONFIG["head_node_type"]]
    assert len(workers) == 1 and workers[0]["node_config"]["InstanceType"].startswith("g5.")
    assert workers[0]["min_workers"] == 0 < workers[0]["max_workers"] <= CONFIG["max_workers"]


def test_project_installed_from_this_checkout_the_readme_way():
    assert CONFIG["file_mounts"]["~/hvae-study"] == "."
    setup = _commands("setup_commands")
    assert "pip install -q torch==2.13.0" in setup
    assert setup.index("torch==2.13.0") < setup.index('pip install -q -e "$HOME/hvae-study[cluster]"')


def test_environment_the_study_runner_reads():
    env = dict(re.findall(r"export (\w+)=(\S+?)'", _commands("setup_commands")))
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["HVAE_STORAGE"].startswith("s3://")  # checkpoints + results copy: shared storage
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"  # the driver runs on the head
    assert {"HVAE_RESULTS_DIR", "HVAE_DATA_DIR"} <= set(env)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in CONFIG[key] if "ray start" in c]
        assert starts and all("source ~/hvae.env" in c for c in starts)  # token auth on


def test_nothing_but_ssh_open_and_services_on_localhost():
    rules = CONFIG["provider"]["security_group"]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
    head = _commands("head_start_ray_commands")
    assert "--dashboard-host=127.0.0.1" in head
    server = [c for c in CONFIG["head_start_ray_commands"] if "mlflow server" in c and "nohup" in c]
    assert len(server) == 1 and "--host 127.0.0.1" in server[0]
    assert "--artifacts-destination $HVAE_STORAGE/" in server[0]  # artifacts on the bucket
    assert "0.0.0.0" not in head and "--dashboard-host=0" not in head


def test_no_credentials_in_the_cluster_file():
    text = (REPO / "ray_cluster.yaml").read_text()
    for pattern in (r"AKIA[0-9A-Z]{16}", r"(?i)aws_secret_access_key", r"(?i)aws_access_key_id",
                    r"(?i)password", r"PRIVATE KEY"):
        assert not re.search(pattern, text), pattern
    workers = CONFIG["available_node_types"]["gpu_worker"]["node_config"]
    assert workers["IamInstanceProfile"] == {"Name": "hvae-study-worker"}  # an instance role
