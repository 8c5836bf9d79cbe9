"""The local Ray a study starts: no workers beyond the ones its trials use."""

from __future__ import annotations

import time

import psutil
import pytest
import ray

from study.engine.launch import end_autoscaler_monitor, start_ray, stop_ray

pytestmark = pytest.mark.slow  # starts Ray


def _ray_workers() -> list[str]:
    """This process's Ray worker processes: named ``ray::...`` once connected, or still
    starting (``default_worker.py`` in their command line); not Ray's agents."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            words = p.cmdline()
        except psutil.Error:  # ended while listed
            continue
        if words and ((words[0].startswith("ray::") and "Agent" not in words[0])
                      or any(w.endswith("default_worker.py") for w in words)):
            found.append(words[0])
    return found


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


def _monitors() -> list[psutil.Process]:
    """This process's Ray autoscaler monitor (``monitor.py``), if running."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any(w.endswith("autoscaler/_private/monitor.py") for w in p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_the_autoscaler_monitor_of_a_local_ray_is_ended_before_the_shutdown():
    """``ray.shutdown`` stops the GCS first, then waits a second for the monitor, whose
    SIGTERM handler reports to the stopped GCS; ``stop_ray`` ends it first, and only it."""
    if ray.is_initialized():
        ray.shutdown()
    start_ray(num_cpus=1)
    try:
        monitor = _monitors()
        assert len(monitor) == 1
        assert end_autoscaler_monitor() is True
        assert not monitor[0].is_running() or monitor[0].status() == psutil.STATUS_ZOMBIE
        assert _monitors() == []
        assert end_autoscaler_monitor() is False  # nothing left to end

        @ray.remote(num_cpus=1)
        def square(x: int) -> int:
            return x * x

        assert ray.get(square.remote(7)) == 49  # the cluster works without it
    finally:
        stop_ray()
    assert end_autoscaler_monitor() is False  # no Ray: nothing to do
