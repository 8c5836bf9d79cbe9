"""Packs on one CPU core: how throughput grows with the members trained as one model, the
trial's own trainer against a bare batched-matmul MLP of the same shapes, measured in one run.

Run: ``python benchmarks/pack_throughput.py`` (CPU, about 5 minutes; ``--compile`` adds the
trainer with its objective compiled by ``torch.compile`` at the largest packs, a few minutes
more). One torch thread, as a study trial runs with ``resources.cpus: 1``.

The model is the 2-D HVAE of spirals_depth at depth 2 (z=[2, 2], three hidden layers of 64 per
block, IW=10 sampled KL, 128 points per step and member). For packs of 1, 5, 20, 80 and 320
members:

- **trainer**: ``Trainer.train_epoch`` on an ensemble of that many members (one seed each),
  ``--steps`` steps per epoch, the best of ``--repeats`` epochs after one warm-up epoch;
- **bare**: the same ensemble layers as bare ``torch.baddbmm`` calls (each layer's own input
  shape, from ``models.linear_shapes``; inputs that need a gradient, so the backward costs
  what the model's does), a SiLU after each, backward, fused Adam: what the matmuls and one
  element-wise operation per layer cost with none of the model's other work. This is the
  ceiling the trainer is held to, measured beside it, not assumed.

Then stopped members: a trainer of 8 members with 8, 4 and 2 of them still training (the others
stopped by early stopping), seconds per step: a stopped member is not computed, so the step
should scale with the members training.

Per pack size: the samples per second per core (one sample = one data point of one member),
the same per member, the matmul GFLOP/s (``models.training_flops``) and the trainer's share of
the bare ceiling; then the pack size where the trainer is fastest per core (the knee). The
machine's fp32 matmul peak is printed for scale.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import study.trial.trainer as trainer_module  # noqa: E402
from models import linear_shapes, training_flops, training_objective  # noqa: E402
from study.data import load_data  # noqa: E402
from study.spec.config import trial_config  # noqa: E402

MODEL = {"dataset": "spirals", "noise": 0.05, "kind": "hvae", "latents": [2, 2],
         "hidden": [[64, 64, 64], [64, 64, 64]], "iw_samples": 10, "kl": "sampled",
         "warmup_epochs": 10, "lr": 3e-3, "n_val": 100, "n_test": 100}
SIZES = (1, 5, 20, 80, 320)


def matmul_peak() -> float:
    """GFLOP/s of the best of a few 1024^2 fp32 matmuls on this thread."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    return 2 * 1024**3 * 10 / (time.perf_counter() - start) / 1e9


def trainer_step_seconds(members: int, steps: int, repeats: int, compiled: bool = False) -> float:
    """Seconds per training step of the trial's trainer on a pack of ``members``."""
    cfg = trial_config(MODEL | {"seeds": list(range(members)), "n_train": 128 * steps,
                                "batch_size": 128, "epochs": 100})
    trainer = trainer_module.Trainer(cfg, load_data(cfg.data_config()), device="cpu")
    objective = trainer_module.training_objective
    if compiled:
        trainer_module.training_objective = torch.compile(training_objective)
    try:
        trainer.train_epoch()  # warm-up (and the compile)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            trainer.train_epoch()
            best = min(best, time.perf_counter() - start)
    finally:
        trainer_module.training_objective = objective
    return best / steps


def stopped_step_seconds(training: int, members: int, steps: int, repeats: int) -> float:
    """Seconds per training step of a ``members`` trainer with only ``training`` of them still
    training (the others marked stopped, as early stopping marks them)."""
    cfg = trial_config(MODEL | {"seeds": list(range(members)), "n_train": 128 * steps,
                                "batch_size": 128, "epochs": 100})
    trainer = trainer_module.Trainer(cfg, load_data(cfg.data_config()), device="cpu")
    trainer.train_epoch()
    trainer.state.stopped_epoch = [1 if e >= training else None for e in range(members)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_epoch()
        best = min(best, time.perf_counter() - start)
    return best / steps


def bare_step_seconds(members: int, steps: int, repeats: int) -> float:
    """Seconds per step of the bare batched-matmul MLP of the model's layer shapes."""
    cfg = trial_config(MODEL | {"seeds": [0]})
    shapes = linear_shapes(cfg.architecture(), 128, cfg.iw_samples)
    weights = [torch.nn.Parameter(torch.randn(members, n_in, n_out) / n_in**0.5)
               for _, n_in, n_out in shapes]
    biases = [torch.nn.Parameter(torch.zeros(members, 1, n_out)) for _, _, n_out in shapes]
    inputs = [torch.randn(members, rows, n_in, requires_grad=True) for rows, n_in, _ in shapes]
    optimizer = torch.optim.Adam(weights + biases, lr=1e-3, fused=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = sum(torch.nn.functional.silu(torch.baddbmm(b, x, w)).sum()
                   for w, b, x in zip(weights, biases, inputs))
        loss.backward()
        optimizer.step()

    step()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, time.perf_counter() - start)
    return best / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (best is kept)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--compile", action="store_true",
                        help="also the trainer with its objective compiled, at the two largest")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = trial_config(MODEL | {"seeds": [0]})
    flops = training_flops(cfg.architecture(), 128, cfg.iw_samples)  # one member, one step
    print(f"torch {torch.__version__}, 1 thread; fp32 matmul peak {matmul_peak():.1f} GFLOP/s")
    print(f"model: 2-D HVAE z=[2, 2], hidden [64, 64, 64] per block, IW=10, 128 points per step "
          f"and member: {flops / 1e6:.1f} MFLOP per member and step (matmuls, fwd + bwd)")
    print(f"{'members':>8} {'trainer s/step':>15} {'samples/s/core':>15} {'per member':>11} "
          f"{'GFLOP/s':>8} {'bare GFLOP/s':>13} {'trainer/bare':>13}")
    rates = {}
    for members in args.sizes:
        t = trainer_step_seconds(members, args.steps, args.repeats)
        b = bare_step_seconds(members, args.steps, args.repeats)
        rates[members] = members * 128 / t
        print(f"{members:>8} {t:>15.4f} {members * 128 / t:>15.0f} {128 / t:>11.0f} "
              f"{members * flops / t / 1e9:>8.2f} {members * flops / b / 1e9:>13.2f} "
              f"{b / t:>13.2f}", flush=True)
    knee = max(rates, key=rates.get)
    print(f"fastest per core: packs of {knee} members ({rates[knee]:.0f} samples/s)")
    full = None
    for training in (8, 4, 2):
        t = stopped_step_seconds(training, 8, args.steps, args.repeats)
        full = full or t
        print(f"8 members, {training} still training: {t:.4f} s per step "
              f"({t / full:.2f} of all 8)", flush=True)
    if args.compile:
        for members in sorted(args.sizes)[-2:]:
            eager = trainer_step_seconds(members, args.steps, args.repeats)
            fused = trainer_step_seconds(members, args.steps, args.repeats, compiled=True)
            print(f"torch.compile of the objective, {members} members: {eager:.4f} -> "
                  f"{fused:.4f} s per step ({eager / fused:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
