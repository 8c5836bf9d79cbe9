"""How close equal training FLOPs come to equal training time, for a study with ``match_compute``.

Run: ``python benchmarks/matched_compute.py [STUDY] [--budget default] [--threads 1]``
(default ``kl_iw_mnist_matched``; MNIST from ``--data-dir`` / ``$HVAE_DATA_DIR``). For each
configuration of the study: its matched epochs, its training GFLOP per seed (epochs x points x 3x
the forward matmul FLOPs with its importance samples), the measured seconds of one training
epoch of all its seeds as one ensemble (after a warm-up epoch, on ``--threads`` threads, as a
trial runs), the seconds its matched training takes, and that time over the costliest
configuration's. A ratio near 1 everywhere means the study's configurations got about equal
time as well as equal FLOPs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", nargs="?", default="kl_iw_mnist_matched")
    p.add_argument("--budget", default="default")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPUs)")
    args = p.parse_args()

    import torch

    from models.size import training_flops
    from study.data import load_data
    from study.spec.spec_file import load_spec
    from study.trial.trainer import Trainer

    torch.set_num_threads(args.threads)
    spec = load_spec(args.study)
    if spec.match_compute is None:
        sys.exit(f"error: study {spec.name} does not set match_compute")
    rows = []
    for cell in spec.grid_cells():
        cfg = spec.trial_config(cell, args.budget)
        gflop = training_flops(cfg.architecture(), 1, cfg.iw_samples) * cfg.n_train \
            * cfg.epochs / 1e9
        trainer = Trainer(cfg, load_data(cfg.data_config()), device="cpu")
        trainer.train_epoch()  # warm-up: allocations, first-call costs
        start = time.perf_counter()
        trainer.train_epoch()
        per_epoch = time.perf_counter() - start
        label = ", ".join(f"{k}={v}" for k, v in cell.items())
        rows.append((label, cfg.epochs, gflop, per_epoch, per_epoch * cfg.epochs))
    costliest = max(rows, key=lambda r: r[2] / r[1])[4]  # most FLOPs per epoch
    seeds = len(spec.trial_config(spec.grid_cells()[0], args.budget).seeds)
    print(f"study {spec.name}, budget {args.budget}, {seeds} seeds per ensemble, "
          f"{args.threads} thread(s)\n")
    print("| configuration | epochs | training GFLOP per seed | s per epoch (all seeds) | "
          "s of matched training | time / costliest's |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, epochs, gflop, per_epoch, total in rows:
        print(f"| {label} | {epochs} | {gflop:,.0f} | {per_epoch:.2f} | {total:.0f} | "
              f"{total / costliest:.2f} |")


if __name__ == "__main__":
    main()
