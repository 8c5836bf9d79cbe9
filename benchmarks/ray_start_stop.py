"""What a study's local Ray costs to start an actor and to shut down, the project's way against
Ray's defaults, alternated in one invocation.

Run: ``python benchmarks/ray_start_stop.py [--rounds 2]`` (about a minute on 2 CPUs). Printed:
- an actor's start (creation to its first call's answer, seconds) with the runtime environment
  Ray Tune gives every trial actor by default (``PL_DISABLE_FORK``: Ray starts it through its
  runtime-environment setup) and without one (``study.engine.tuner.plain_trial_workers``), in
  one Ray, alternated ``--rounds`` times;
- ``ray.shutdown`` of a local Ray started by ``study.engine.launch.start_ray``, as Ray does it
  alone and after ``end_autoscaler_monitor`` (what ``stop_ray`` does), a fresh Ray each,
  alternated ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Probe:
    """An actor that answers."""

    def ping(self) -> int:
        return 1


def actor_start(runtime_env: dict | None) -> float:
    """Seconds from an actor's creation to its first answer (the actor is then killed)."""
    import ray

    cls = ray.remote(num_cpus=1, runtime_env=runtime_env)(Probe)
    start = time.perf_counter()
    actor = cls.remote()
    ray.get(actor.ping.remote())
    seconds = time.perf_counter() - start
    ray.kill(actor)
    time.sleep(0.5)  # its process gone before the next one starts
    return seconds


def shutdown(end_monitor_first: bool) -> float:
    """Seconds of ``ray.shutdown`` (after ``end_autoscaler_monitor`` or not) of a fresh Ray."""
    import ray

    from study.engine.launch import end_autoscaler_monitor, start_ray

    start_ray(num_cpus=1)
    time.sleep(1.0)  # its processes settled
    start = time.perf_counter()
    if end_monitor_first:
        end_autoscaler_monitor()
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    import ray

    from study.engine.launch import start_ray

    tune_env = {"env_vars": {"PL_DISABLE_FORK": "1"}}  # Ray Tune's default for a trial actor
    start_ray(num_cpus=2)
    starts: dict[str, list[float]] = {"Ray Tune's runtime environment": [], "none": []}
    try:
        for _ in range(args.rounds):
            starts["Ray Tune's runtime environment"].append(actor_start(tune_env))
            starts["none"].append(actor_start(None))
    finally:
        ray.shutdown()
    stops: dict[str, list[float]] = {"ray.shutdown alone": [],
                                     "autoscaler monitor ended first": []}
    for _ in range(args.rounds):
        stops["ray.shutdown alone"].append(shutdown(False))
        stops["autoscaler monitor ended first"].append(shutdown(True))
    print(f"local Ray, {args.rounds} rounds alternated; seconds")
    for name, values in starts.items():
        print(f"actor start, {name}: " + ", ".join(f"{v:.2f}" for v in values))
    for name, values in stops.items():
        print(f"shutdown, {name}: " + ", ".join(f"{v:.2f}" for v in values))


if __name__ == "__main__":
    main()
