"""Load run: a study of many short trials; is every trial accounted for, and does the driver's
memory stay bounded?

Run: ``python benchmarks/load_run.py [--trials 240]`` (about 6 minutes on 2 CPUs for 240).
It writes a study of ``--trials`` tiny Moons VAEs (a grid of learning rates x noise levels,
2 seeds, 4 epochs, median pruning after 5 trials, checkpoints every 2 epochs), runs
``python -m study.run`` on it in a fresh process with MLflow on a sqlite store, samples the
driver process's RSS (the driver alone: Ray's own processes and the trial workers are separate
processes) every 0.25 s, then checks the outcome against Parquet, MLflow and Optuna:

- every trial once in ``trials.parquet`` (one row per seed) with a final status, and the
  Parquet, MLflow and Optuna counts of finished / pruned / failed trials agree;
- the driver's peak RSS, and its RSS when 25%, 50%, 75% and 100% of the trials had ended
  (bounded: the growth per 100 trials between 25% and 75% is small against the peak; what
  remains is Ray Tune's in-memory Trial objects, one per trial, by Tune's design).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXED = {"dataset": "moons", "n_train": 256, "n_val": 128, "n_test": 128, "latents": [2],
         "hidden": [8], "kind": "vae", "batch_size": 128, "epochs": 4, "eval_importance": 10,
         "ood_importance": 5, "ood_shifts": [1.0]}


def write_spec(folder: Path, trials: int) -> Path:
    noises = [0.02, 0.05, 0.1, 0.2]
    lrs = [float(f"{v:.6g}") for v in np.geomspace(3e-4, 3e-2, trials // len(noises))]
    spec = {"name": "load_run", "question": "benchmark: many short trials",
            "fixed": FIXED, "factors": {"lr": {"grid": lrs}, "noise": {"grid": noises}},
            "seeds": 2, "budgets": {"default": {}}, "checkpoint_every": 2,
            "pruner": {"name": "median", "args": {"n_startup_trials": 5, "n_warmup_steps": 1}}}
    path = folder / "load_run.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=240, help="trials (a multiple of 4)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = write_spec(folder, args.trials)
        res, uri = folder / "res", f"sqlite:///{folder}/mlflow.db"
        cmd = [sys.executable, "-m", "study.run", str(spec), "--results", str(res),
               "--tracking-uri", uri]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        samples: list[tuple[float, int, int]] = []  # (seconds, rss bytes, trials ended)
        ended = [0]

        def watch_output() -> None:
            for line in proc.stdout:
                if "trials done" in line:  # "[  12s] trials done 5/240  running 2  pruned 1 ..."
                    parts = line.split()
                    done = int(parts[parts.index("done") + 1].split("/")[0])
                    ended[0] = done + int(parts[parts.index("pruned") + 1]) + \
                        int(parts[parts.index("failed") + 1])
                elif line.strip() and not re.match(r"(trial |-+ |\w{5}_\d{5} )", line):
                    print("  |", line.rstrip())

        reader = threading.Thread(target=watch_output, daemon=True)
        reader.start()
        driver = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                samples.append((time.monotonic() - t0, driver.memory_info().rss, ended[0]))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.25)
        reader.join(10)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            print(f"study failed with exit code {proc.returncode}")
            return 1
        report(res, uri, args.trials, samples, wall)
    return 0


def report(res: Path, uri: str, n: int, samples: list[tuple[float, int, int]], wall: float) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    from study.store.results import read_epochs, read_trials

    trials = read_trials(res)
    per_trial = trials.drop_duplicates("trial_id")
    parquet = per_trial["trial_status"].value_counts().to_dict()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("load_run")
    runs = client.search_runs([exp.experiment_id], max_results=50_000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    mlflow_status: dict[str, int] = {}
    for r in children:
        mlflow_status[r.data.tags.get("status", "none")] = mlflow_status.get(r.data.tags.get("status", "none"), 0) + 1
    study = optuna.load_study(study_name="load_run", storage=f"sqlite:///{res}/optuna.db")
    optuna_states: dict[str, int] = {}
    for t in study.trials:
        optuna_states[t.state.name] = optuna_states.get(t.state.name, 0) + 1

    print(f"\nload run: {n} trials in {wall:.0f} s ({n / wall * 60:.0f} trials/min) on "
          f"{psutil.cpu_count()} CPUs")
    print(f"Parquet : {len(per_trial)} trials, {len(trials)} seed rows, "
          f"{len(read_epochs(res))} epoch rows; status {parquet}")
    print(f"MLflow  : {len(children)} child runs (unique trial tags: "
          f"{len({r.data.tags['ray_trial_id'] for r in children})}); status {mlflow_status}")
    print(f"Optuna  : {len(study.trials)} trials; states {optuna_states}")
    ok = (len(per_trial) == n and trials["trial_id"].nunique() == n
          and len({r.data.tags['ray_trial_id'] for r in children}) == n == len(children)
          and set(r.data.tags["ray_trial_id"] for r in children) == set(per_trial["trial_id"])
          and len(study.trials) == n
          and parquet.get("finished", 0) == optuna_states.get("COMPLETE", 0)
          and parquet.get("pruned", 0) == optuna_states.get("PRUNED", 0)
          and parquet.get("failed", 0) + parquet.get("diverged", 0) == optuna_states.get("FAIL", 0))
    print("every trial accounted for: " + ("yes" if ok else "NO"))

    rss = np.array([s[1] for s in samples], float) / 2**20
    done = np.array([s[2] for s in samples])
    print(f"driver RSS: peak {rss.max():.0f} MiB")
    marks = []
    for q in (0.25, 0.5, 0.75, 1.0):
        idx = np.flatnonzero(done >= q * n)
        if idx.size:
            marks.append((q, rss[idx[0]]))
            print(f"  at {int(q * 100):3d}% of trials ended: {rss[idx[0]]:.0f} MiB")
    marks = dict(marks)
    if 0.25 in marks and 0.75 in marks:  # steady state: after start-up, before the end's reads
        growth = marks[0.75] - marks[0.25]
        print(f"  growth from 25% to 75% of trials: {growth:+.0f} MiB "
              f"({growth / (0.5 * n) * 100:+.1f} MiB per 100 trials)")

if __name__ == "__main__":
    raise SystemExit(main())
