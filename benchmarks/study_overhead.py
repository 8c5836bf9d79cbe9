"""What does running a study through Ray Tune + Optuna + MLflow + Parquet cost?

Run: ``python benchmarks/study_overhead.py`` (about 8 minutes on 2 CPUs). One fixed Spirals
study of 8 configurations (4 widths x 2 depths, 3 seeds each as one ensemble, about 10 s of
training each) is run three ways in this one invocation, each in a fresh process, each twice in the order
plain, pool, study, study, pool, plain (the means cancel a linear drift of the machine's speed):

1. plain: one process trains the 8 configurations one after another on one torch thread
   (``study.trial.run_trial``, the same training, evaluation and plots as a study trial, no Ray,
   no MLflow); its wall time over the CPU count is the ideal parallel time;
2. pool: what a user writes without Ray, a pool of one process per CPU running the same 8
   trials longest first (the plain run's times);
3. study: ``python -m study.run`` on the same 8 configurations (Ray start-up, MLflow sqlite
   tracking, Optuna, Parquet, checkpoints, everything).

It prints the three times, the ratios study / ideal (target at most 1.15) and study / pool,
the study's fixed start-up before its first trial, its trials' time in the Ray workers against
the same trials in the plain process and in the pool, and the CPU seconds each kind of process
of the study used (driver, trial workers, raylet, GCS, dashboard, monitors).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from process_cpu import Sampled, run_sampled  # noqa: E402 - after the path

FIXED = {"dataset": "spirals", "noise": 0.05, "kind": "hvae", "n_train": 5000, "n_val": 1000,
         "n_test": 2000, "epochs": 40, "batch_size": 128, "eval_importance": 200,
         "ood_importance": 20, "ood_shifts": [0.5, 1.0]}
FACTORS = {"width": {"grid": [16, 32, 48, 64]}, "depth": {"grid": [1, 2]}}


def write_spec(folder: Path) -> Path:
    spec = {"name": "overhead", "question": "benchmark: cost of the study engine",
            "fixed": FIXED, "factors": FACTORS, "seeds": 3, "pruner": {"name": "none"},
            "budgets": {"default": {}}, "resources": {"cpus": 1}, "checkpoint_every": 10}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


WORKER = """
import json, sys, time, torch
sys.path.insert(0, {repo!r})
from pathlib import Path
from study.spec.spec_file import load_spec
from study.train import FolderIO
from study.trial.run_trial import run_trial
torch.set_num_threads(1)
spec = load_spec({spec!r})
cells = spec.grid_cells()
for i in {indices!r}:
    t = time.perf_counter()
    io = FolderIO(Path({folder!r}) / f"{{{prefix!r}}}-{{i}}", resume=False, every=10)
    run_trial(spec.trial_config(cells[i], "default"), io, device="cpu", threads=1)
    print(json.dumps([i, time.perf_counter() - t]), flush=True)
"""


def worker(spec_path: Path, folder: Path, indices: list[int], prefix: str) -> subprocess.Popen:
    code = WORKER.format(repo=str(REPO), spec=str(spec_path), folder=str(folder),
                         indices=indices, prefix=prefix)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def plain(spec_path: Path, folder: Path, n: int) -> tuple[float, dict[int, float]]:
    """A fresh process training the configurations in sequence (start-up included)."""
    start = time.perf_counter()
    proc = worker(spec_path, folder, list(range(n)), "plain")
    out, _ = proc.communicate()
    assert proc.returncode == 0
    times = dict(json.loads(line) for line in out.splitlines() if line.strip())
    return time.perf_counter() - start, {int(k): v for k, v in times.items()}


def pool(spec_path: Path, folder: Path, times: dict[int, float],
         cpus: int) -> tuple[float, dict[int, float]]:
    """One process per CPU, each taking the next-longest trial as it frees up (greedy LPT,
    decided from the plain run's times): (wall time, each trial's time in its process)."""
    order = sorted(times, key=lambda i: -times[i])
    loads, shares = [0.0] * cpus, [[] for _ in range(cpus)]
    for i in order:
        j = loads.index(min(loads))
        loads[j] += times[i]
        shares[j].append(i)
    start = time.perf_counter()
    procs = [worker(spec_path, folder, share, f"pool{j}") for j, share in enumerate(shares) if share]
    each: dict[int, float] = {}
    for p in procs:
        out, _ = p.communicate()
        assert p.returncode == 0
        each.update({int(k): v for k, v in (json.loads(line) for line in out.splitlines()
                                             if line.strip())})
    return time.perf_counter() - start, each


def study_run(spec_path: Path, folder: Path) -> Sampled:
    """``python -m study.run`` in a fresh process: its wall time and CPU seconds by kind of
    process (``process_cpu.run_sampled``)."""
    done = run_sampled([sys.executable, "-m", "study.run", str(spec_path), "--quiet",
                        "--results", str(folder / "results"),
                        "--tracking-uri", f"sqlite:///{folder}/mlflow.db"], cwd=REPO)
    assert done.returncode == 0, done.output[-2000:]
    return done


def study_round(spec_path: Path, folder: Path, in_pool: dict[int, float],
                cpus: int) -> dict[str, object]:
    """One ``study.run`` of the study into a fresh results folder: its wall time, CPU table,
    fixed start-up, its end (from the last trial's end to the process's exit: the summary,
    the report, Ray's shutdown), the trials' time in the Ray workers, and that time against
    the same configuration's time in the pool, for the first trial of each worker (which starts the
    worker process and imports PyTorch and the trial code) and for the later ones."""
    from study.spec.spec_file import load_spec
    from study.store.results import read_trials

    for old in (folder / "results", folder / "mlflow.db"):
        subprocess.run(["rm", "-rf", str(old)], check=True)
    started_at = time.time()
    done = study_run(spec_path, folder)
    trials = read_trials(folder / "results").drop_duplicates("trial_id").sort_values("started_at")
    seconds = (trials["ended_at"] - trials["started_at"]).dt.total_seconds()
    cells = load_spec(str(spec_path)).grid_cells()
    index = {tuple(sorted(c.items())): i for i, c in enumerate(cells)}
    pool_time = [in_pool[index[tuple(sorted({k: r[f"factor.{k}"] for k in cells[0]}.items()))]]
                 for _, r in trials.iterrows()]
    first, later = list(range(min(cpus, len(trials)))), list(range(cpus, len(trials)))
    stamp = lambda t: t.tz_localize("UTC").timestamp()  # noqa: E731 - Parquet holds UTC
    return {"wall": done.wall, "cpu": done.cpu,
            "startup": stamp(trials["started_at"].min()) - started_at,
            "end": started_at + done.wall - stamp(trials["ended_at"].max()),
            "busy": seconds.sum(),
            "first_extra": mean([seconds.iloc[i] - pool_time[i] for i in first]),
            "later_ratio": sum(seconds.iloc[i] for i in later) / sum(pool_time[i] for i in later)}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec_path = write_spec(folder)
        from study.spec.spec_file import load_spec

        n = len(load_spec(str(spec_path)).grid_cells())
        # plain, pool, study, study, pool, plain: each way's mean cancels a linear drift of
        # the machine's speed over the run (measured: 20% between minutes on this VM)
        plain1, times1 = plain(spec_path, folder, n)
        pool1, in_pool1 = pool(spec_path, folder, times1, cpus)
        studies = [study_round(spec_path, folder, in_pool1, cpus) for _ in range(2)]
        pool2, in_pool2 = pool(spec_path, folder, times1, cpus)
        plain2, times2 = plain(spec_path, folder, n)
    total, pooled = mean([plain1, plain2]), mean([pool1, pool2])
    per_config = {i: mean([times1[i], times2[i]]) for i in times1}
    in_pool = {i: mean([in_pool1[i], in_pool2[i]]) for i in in_pool1}
    study = mean([r["wall"] for r in studies])
    startup = mean([r["startup"] for r in studies])
    end = mean([r["end"] for r in studies])
    busy = mean([r["busy"] for r in studies])
    first_extra = mean([r["first_extra"] for r in studies])
    later_ratio = mean([r["later_ratio"] for r in studies])
    cpu = {k: mean([r["cpu"].get(k, 0.0) for r in studies]) for k in studies[0]["cpu"]}
    ideal = total / cpus
    print(f"{n} configurations x 3 seeds, Spirals, {FIXED['epochs']} epochs of {FIXED['n_train']} "
          f"points, {cpus} CPUs; every figure is the mean of two runs (order plain, pool, study, "
          "study, pool, plain)")
    print(f"plain process: {plain1:.1f} s, {plain2:.1f} s; pool: {pool1:.1f} s, {pool2:.1f} s; "
          "study.run: " + ", ".join(f"{r['wall']:.1f} s" for r in studies))
    print("plain, per configuration: " + ", ".join(f"{per_config[i]:.1f}" for i in range(n)) + " s")
    print(f"plain process (start-up, imports, {n} trainings in sequence): {total:.1f} s; "
          f"/ {cpus} CPUs = {ideal:.1f} s (ideal parallel)")
    print(f"plain pool of {cpus} processes, longest first: {pooled:.1f} s (its trials: "
          f"{sum(in_pool.values()):.1f} s, {sum(in_pool.values()) / sum(per_config.values()):.2f}x "
          "the plain process's)")
    print(f"python -m study.run (fresh process, Ray + Optuna + MLflow + Parquet): {study:.1f} s")
    print(f"  of which start-up before the first trial starts (imports, ray.init, MLflow store): "
          f"{startup:.1f} s")
    print(f"  of which the end after the last trial (summary, report, Ray's shutdown): {end:.1f} s")
    print(f"  trial time in Ray workers (actor start for the first trials included): {busy:.1f} s "
          f"vs {sum(per_config.values()):.1f} s plain ({busy / sum(per_config.values()):.2f}x), "
          f"{sum(in_pool.values()):.1f} s in the pool ({busy / sum(in_pool.values()):.2f}x)")
    print(f"    the first trial of each of the {cpus} workers: +{first_extra:.1f} s over the pool "
          f"(worker process start, imports); the later trials: {later_ratio:.2f}x the pool's")
    print(f"  CPU seconds during the study ({study * cpus:.0f} available): " + "; ".join(
        f"{name} {sec:.1f}" for name, sec in sorted(cpu.items(), key=lambda kv: -kv[1])))
    print(f"ratio study / ideal: {study / ideal:.2f} (target <= 1.15); study / pool: "
          f"{study / pooled:.2f}; without the fixed start-up: {(study - startup) / ideal:.2f}")


if __name__ == "__main__":
    main()
