"""What does running a study through Ray Tune + Optuna + MLflow + Parquet cost?

Run: ``python benchmarks/study_overhead.py`` (about 3 minutes on 2 CPUs). One fixed Spirals
study of 8 configurations (4 widths x 2 depths, 3 seeds each as one ensemble, about 10 s of
training each in a plain process) is run twice, in this one invocation:

1. plain: a fresh Python process trains the 8 configurations one after another with one torch
   thread (``study.trial.run_trial``: the same training, evaluation and plots as a study trial;
   no Ray, no MLflow); its wall time divided by the CPU count is the ideal parallel time;
2. study: ``python -m study.run`` on the same 8 configurations (a fresh process: Ray start-up,
   MLflow sqlite tracking, Parquet, checkpoints, everything).

It prints both and their ratio (target: at most 1.15).
"""

from __future__ import annotations

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


PLAIN = """
import sys, time, torch
sys.path.insert(0, {repo!r})
from study.spec_file import load_spec
from pathlib import Path
from study.train import FolderIO
from study.trial import run_trial
torch.set_num_threads(1)
spec = load_spec({spec!r})
for i, cell in enumerate(spec.grid_cells()):
    t = time.perf_counter()
    io = FolderIO(Path({folder!r}) / f"plain-{{i}}", resume=False, every=10)
    run_trial(spec.trial_config(cell, "default"), io, device="cpu", threads=1)
    print(f"{{time.perf_counter() - t:.2f}}")
"""


def plain(spec_path: Path, folder: Path) -> tuple[float, list[float]]:
    """Wall time of a fresh Python process that trains the 8 configurations in sequence
    (interpreter start and imports included, as they are for study.run)."""
    code = PLAIN.format(repo=str(REPO), spec=str(spec_path), folder=str(folder))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return time.perf_counter() - start, [float(x) for x in out.stdout.split()]


def main() -> None:
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec_path = write_spec(folder)
        total, per_config = plain(spec_path, folder)
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
    print(f"8 configurations x 3 seeds, Spirals, {FIXED['epochs']} epochs of {FIXED['n_train']} points, "
          f"{cpus} CPUs")
    print("plain, per configuration: " + ", ".join(f"{t:.1f}" for t in per_config) + " s")
    print(f"plain process (start-up, imports, 8 trainings in sequence): {total:.1f} s; "
          f"/ {cpus} CPUs = {ideal:.1f} s (ideal parallel)")
    print(f"python -m study.run (fresh process, Ray + Optuna + MLflow + Parquet): {study:.1f} s")
    print(f"  of which start-up before the first trial starts (imports, ray.init, MLflow store): "
          f"{startup:.1f} s")
    print(f"  trial time in Ray workers (actor start for the first trials included): {busy:.1f} s "
          f"vs {sum(per_config):.1f} s plain")
    print(f"ratio study / ideal: {study / ideal:.2f} (target <= 1.15); "
          f"without the fixed start-up: {(study - startup) / ideal:.2f}")


if __name__ == "__main__":
    main()
