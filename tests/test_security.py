"""Security: no credentials in the repository, checkpoints loaded without unpickling code, and a
local Ray with token authentication on and no dashboard."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO

from study.engine.trainable import cached_data
from study.spec.config import trial_config
from study.trial.trainer import Trainer

SECRETS = [r"AKIA[0-9A-Z]{16}", r"(?i)aws_secret_access_key\s*[=:]", r"-----BEGIN [A-Z ]*PRIVATE KEY",
           r"(?i)(api|secret)[_-]?key\s*[=:]\s*['\"][A-Za-z0-9/+]{16,}"]


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
        return [REPO / f for f in out]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return [p for p in REPO.rglob("*") if p.is_file() and ".venv" not in p.parts]


def test_no_credentials_in_the_repository():
    files = [f for f in _tracked_files() if f.suffix in {".py", ".yaml", ".yml", ".md", ".toml", ".json", ".cfg", ".txt", ""}]
    assert any(f.name == "ray_cluster.yaml" for f in files)
    for f in files:
        text = f.read_text(errors="ignore")
        for pattern in SECRETS:
            assert not re.search(pattern, text), f"{f}: {pattern}"


def test_every_torch_load_is_weights_only():
    calls = 0
    for root in ("models", "study", "benchmarks"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and \
                        getattr(node.func.value, "id", None) == "torch":
                    calls += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    assert isinstance(kw.get("weights_only"), ast.Constant) and \
                        kw["weights_only"].value is True, f"{path}:{node.lineno}"
    assert calls >= 1


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['HVAE_TEST_MARKER']}",))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("HVAE_TEST_MARKER", str(marker))
    cfg = trial_config({"dataset": "moons", "n_train": 64, "n_val": 32, "n_test": 32,
                        "latents": [2], "hidden": [8], "kind": "vae", "seeds": [0]})
    trainer = Trainer(cfg, cached_data(cfg.data_config()))
    state = trainer.state_dict() | {"model": _Payload()}
    torch.save(state, tmp_path / "trainer.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        trainer.load(tmp_path / "trainer.pt")
    assert not marker.exists()


def test_local_ray_keeps_token_authentication_and_starts_no_dashboard():
    import ray
    from ray._raylet import AuthenticationMode, get_authentication_mode

    from study.engine.launch import start_ray

    if ray.is_initialized():
        ray.shutdown()
    assert os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled"
    start_ray(num_cpus=1)
    try:
        assert get_authentication_mode() == AuthenticationMode.TOKEN
        node = ray._private.worker.global_worker.node
        assert not node.address_info.get("webui_url")  # no dashboard UI
        # whatever dashboard process Ray keeps (its job/state API) listens on loopback only
        import psutil

        procs = psutil.Process().children(recursive=True)
        dashboards = [p for p in procs if any(a.endswith("dashboard/dashboard.py") for a in p.cmdline())]
        listening = [(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        exposed = {ip for ip, port in listening if port in (8265, 5000)} - {"127.0.0.1", "::1"}
        assert not exposed, listening
        for p in dashboards:
            assert "--host=127.0.0.1" in p.cmdline(), p.cmdline()
    finally:
        ray.shutdown()


def test_nothing_puts_the_drivers_environment_into_rays_runtime_environment(monkeypatch):
    """Ray ships a job's ``runtime_env`` (env_vars included) to every node; the project never
    sets one, so credentials in the driver's shell stay on the driver's machine."""
    import ray

    from study.engine.launch import start_ray

    for path in (REPO / "study").rglob("*.py"):
        assert "runtime_env" not in path.read_text(), path
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-key")
    start_ray(num_cpus=1)
    try:
        env = ray.get_runtime_context().runtime_env
        assert not env.get("env_vars"), env
        assert "not-a-real-key" not in str(env)
    finally:
        ray.shutdown()


def test_trial_actors_get_no_runtime_environment_from_ray_tune(monkeypatch):
    """Ray Tune gives each trial actor a runtime environment of its own: ``PL_DISABLE_FORK``
    and the driver's AWS credentials, which Ray ships to the node that runs the actor (and
    starts the actor through its runtime-environment setup, a slower start). A study's driver
    turns that off (``plain_trial_workers``): the actor sees neither."""
    import ray
    from ray.tune.execution import class_cache

    from study.engine.launch import start_ray
    from study.engine.tuner import plain_trial_workers

    class Probe:
        def environment(self) -> dict[str, str | None]:
            return {k: os.environ.get(k) for k in ("PL_DISABLE_FORK", "AWS_SECRET_ACCESS_KEY")}

    if ray.is_initialized():
        ray.shutdown()
    defaults = dict(class_cache.DEFAULT_ENV_VARS)
    passed_on = set(class_cache.ENV_VARS_TO_PROPAGATE)
    start_ray(num_cpus=1)
    try:
        # set after Ray started: a local worker sees it only if Tune passes it on
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-key")
        class_cache.DEFAULT_ENV_VARS.update({"PL_DISABLE_FORK": "1"})  # as Ray Tune ships
        class_cache.ENV_VARS_TO_PROPAGATE.add("AWS_SECRET_ACCESS_KEY")
        tune_way = class_cache._ActorClassCache().get(Probe).remote()
        assert ray.get(tune_way.environment.remote()) == {
            "PL_DISABLE_FORK": "1", "AWS_SECRET_ACCESS_KEY": "not-a-real-key"}
        ray.kill(tune_way)

        assert plain_trial_workers() is True
        ours = class_cache._ActorClassCache().get(Probe).remote()
        assert ray.get(ours.environment.remote()) == {
            "PL_DISABLE_FORK": None, "AWS_SECRET_ACCESS_KEY": None}
    finally:
        ray.shutdown()
        class_cache.DEFAULT_ENV_VARS.update(defaults)
        class_cache.ENV_VARS_TO_PROPAGATE.update(passed_on)
