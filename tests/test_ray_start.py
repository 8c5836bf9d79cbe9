"""The local Ray a study starts: no workers beyond the ones its trials use."""

from __future__ import annotations

import time

import psutil
import pytest
import ray

from study.engine.launch import start_ray, stop_ray

pytestmark = pytest.mark.slow  # starts Ray


def _ray_workers() -> list[str]:
    return [p.cmdline()[0] for p in psutil.Process().children(recursive=True)
            if p.cmdline() and p.cmdline()[0].startswith("ray::")
            and "Agent" not in p.cmdline()[0]]


def test_a_local_ray_prestarts_no_idle_workers_and_still_runs_actors():
    """Ray prestarts one worker per CPU for a first driver; a Tune trial's actor never used
    them (it gets a worker of its own), so the study's Ray starts none."""
    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=2)
    try:
        time.sleep(3)  # Ray prestarts its workers within about a second of the driver's start
        assert _ray_workers() == [], _ray_workers()

        @ray.remote(num_cpus=1)
        class Echo:
            def echo(self, x: int) -> int:
                return x

        actors = [Echo.remote() for _ in range(2)]
        assert ray.get([a.echo.remote(i) for i, a in enumerate(actors)]) == [0, 1]
        assert sorted(_ray_workers()) == ["ray::Echo", "ray::Echo"]
    finally:
        stop_ray()
