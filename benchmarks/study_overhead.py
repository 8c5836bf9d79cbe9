"""What does running a study through Ray Tune + Optuna + MLflow + Parquet cost?

Run: ``python benchmarks/study_overhead.py`` (about 4 minutes on 2 CPUs). One fixed Spirals
study of 8 configurations (4 widths x 2 depths, 3 seeds each as one ensemble, about 10 s of
training each) is run three ways in this one invocation, each in a fresh process:

1. plain: one process trains the 8 configurations one after another on one torch thread
   (``study.trial.run_trial``, the same training, evaluation and plots as a study trial, no Ray,
   no MLflow); its wall time over the CPU count is the ideal parallel time;
2. pool: what a user writes without Ray, a pool of one process per CPU running the same 8
   trials longest first (the plain run's times);
3. study: ``python -m study.run`` on the same 8 configurations (Ray start-up, MLflow sqlite
   tracking, Optuna, Parquet, checkpoints, everything).

It prints the three times, the ratios study / ideal (target at most 1.15) and study / pool,
the study's fixed start-up before its first trial and its trials' time in the Ray workers
against the same trials in the plain process.
"""

from __future__ import annotations

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
from study.spec_file import load_spec
from study.train import FolderIO
from study.trial import run_trial
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


def pool(spec_path: Path, folder: Path, times: dict[int, float], cpus: int) -> float:
    """One process per CPU, each taking the next-longest trial as it frees up (greedy LPT,
    decided from the plain run's times)."""
    order = sorted(times, key=lambda i: -times[i])
    loads, shares = [0.0] * cpus, [[] for _ in range(cpus)]
    for i in order:
        j = loads.index(min(loads))
        loads[j] += times[i]
        shares[j].append(i)
    start = time.perf_counter()
    procs = [worker(spec_path, folder, share, f"pool{j}") for j, share in enumerate(shares) if share]
    for p in procs:
        p.communicate()
        assert p.returncode == 0
    return time.perf_counter() - start


def main() -> None:
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec_path = write_spec(folder)
        from study.spec_file import load_spec

        n = len(load_spec(str(spec_path)).grid_cells())
        total, per_config = plain(spec_path, folder, n)
        pooled = pool(spec_path, folder, per_config, cpus)
        start, started_at = time.perf_counter(), time.time()
        subprocess.run([sys.executable, "-m", "study.run", str(spec_path), "--quiet",
                        "--results", str(folder / "results"),
                        "--tracking-uri", f"sqlite:///{folder}/mlflow.db"],
                       cwd=REPO, check=True, capture_output=True, text=True)
        study = time.perf_counter() - start
        from study.results import read_trials

        trials = read_trials(folder / "results").drop_duplicates("trial_id")
    startup = trials["started_at"].min().tz_localize("UTC").timestamp() - started_at
    busy = (trials["ended_at"] - trials["started_at"]).dt.total_seconds().sum()
    ideal = total / cpus
    print(f"{n} configurations x 3 seeds, Spirals, {FIXED['epochs']} epochs of {FIXED['n_train']} "
          f"points, {cpus} CPUs")
    print("plain, per configuration: " + ", ".join(f"{per_config[i]:.1f}" for i in range(n)) + " s")
    print(f"plain process (start-up, imports, {n} trainings in sequence): {total:.1f} s; "
          f"/ {cpus} CPUs = {ideal:.1f} s (ideal parallel)")
    print(f"plain pool of {cpus} processes, longest first: {pooled:.1f} s")
    print(f"python -m study.run (fresh process, Ray + Optuna + MLflow + Parquet): {study:.1f} s")
    print(f"  of which start-up before the first trial starts (imports, ray.init, MLflow store): "
          f"{startup:.1f} s")
    print(f"  trial time in Ray workers (actor start for the first trials included): {busy:.1f} s "
          f"vs {sum(per_config.values()):.1f} s plain ({busy / sum(per_config.values()):.2f}x)")
    print(f"ratio study / ideal: {study / ideal:.2f} (target <= 1.15); study / pool: "
          f"{study / pooled:.2f}; without the fixed start-up: {(study - startup) / ideal:.2f}")


if __name__ == "__main__":
    main()
