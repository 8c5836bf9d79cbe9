"""Training throughput of seed ensembles vs separate models, and the cost of K=1000 evaluation.

Run: ``python benchmarks/models_throughput.py`` (CPU; prints a table). Measures, for the
2-layer HVAE z=[2,2] h=[[64,64],[32,32]] on 2-D data:
  1. training samples/s (one sample = one data point for one seed) for E=1, for E=5 as one
     ensemble, and for 5 separate E=1 models trained one after another; the ratio
     ensemble / separate is the speed-up of the design's "a trial is all its seeds" decision;
  2. wall time and peak memory (RSS above the baseline, in a fresh process) of
     ``estimate_log_likelihood`` with K=1000 on 10,000 points for E=5.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import build_model, estimate_log_likelihood, training_objective  # noqa: E402
from study.config import trial_config  # noqa: E402

CONFIG = trial_config({"kind": "hvae", "latents": [2, 2],
                       "hidden": [[64, 64], [32, 32]]}).architecture()


def train_steps(n_members: int, steps: int, batch: int) -> float:
    """Seconds for ``steps`` Adam steps of an E=n_members ensemble on [E, batch, 2] data."""
    model = build_model(CONFIG, list(range(n_members)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.randn(n_members, batch * 16, 2)
    for i in range(5):  # warm-up
        opt.zero_grad()
        training_objective(model, data[:, :batch]).loss.backward()
        opt.step()
    start = time.perf_counter()
    for i in range(steps):
        j = (i % 16) * batch
        opt.zero_grad()
        training_objective(model, data[:, j : j + batch]).loss.backward()
        opt.step()
    return time.perf_counter() - start


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def eval_child(n_members: int, n_points: int, k: int, max_elements: int) -> None:
    """Runs in a fresh process: prints JSON with seconds and peak RSS above baseline."""
    torch.manual_seed(0)
    model = build_model(CONFIG, list(range(n_members)))
    x = torch.randn(n_points, 2)
    estimate_log_likelihood(model, x[:10], n_importance=10)  # load kernels before the baseline
    base = rss_mib()
    start = time.perf_counter()
    estimate_log_likelihood(model, x, n_importance=k, max_elements=max_elements)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_above_baseline_mib": peak - base}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--eval-child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.eval_child:
        eval_child(*args.eval_child)
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print(f"model: HVAE z={list(CONFIG.latents)} h={[list(h) for h in CONFIG.hidden]}, "
          f"batch {args.batch} per member, {args.steps} Adam steps\n")
    t1 = train_steps(1, args.steps, args.batch)
    t5 = train_steps(5, args.steps, args.batch)
    t_sep = sum(train_steps(1, args.steps, args.batch) for _ in range(5))
    rate = lambda members, seconds: members * args.steps * args.batch / seconds  # noqa: E731
    rows = [("E=1", rate(1, t1)), ("E=5 ensemble", rate(5, t5)),
            ("5 x E=1 in sequence", rate(5, t_sep))]
    print(f"{'training':<22}{'samples/s':>12}")
    for name, r in rows:
        print(f"{name:<22}{r:>12,.0f}")
    print(f"ensemble speed-up over separate models: {t_sep / t5:.2f}x (target >= 2.5x)\n")

    print(f"{'K=1000 eval, 10,000 pts, E=5':<34}{'seconds':>9}{'peak MiB':>10}")
    for max_elements in (2**20, 2**22, 2**24):
        out = subprocess.run(
            [sys.executable, __file__, "--eval-child", "5", "10000", "1000", str(max_elements)],
            check=True, capture_output=True, text=True,
        )
        r = json.loads(out.stdout)
        print(f"{'max_elements=2^%d' % (max_elements.bit_length() - 1):<34}"
              f"{r['seconds']:>9.1f}{r['peak_above_baseline_mib']:>10.0f}")


if __name__ == "__main__":
    main()
