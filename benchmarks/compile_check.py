"""Does ``torch.compile`` speed up a training step of the ensembles on one CPU core?

Run: ``python benchmarks/compile_check.py [--steps 300]`` (CPU, a few minutes). For the 2-D
HVAE z=[2, 2] h=[[64, 64], [32, 32]] (IW=1 analytic KL and IW=10 sampled KL, E=5) and the
MNIST VAE [512, 512] z=64 (IW=1, E=5): samples/s per seed of the eager training step (the
objective, backward, fused Adam) against the same step with the objective compiled by
``torch.compile`` (default inductor backend), the compile time, and the loss of both on the
same batch from the same weights (they must agree to float32 rounding: ``fallback_random`` makes the compiled code draw the
same noise). One torch thread, as a
study trial runs.

Then the same through the trial's own ``Trainer.train_epoch`` (2-D HVAE, IW=10 sampled KL, KL
warm-up, 5,000 points per seed, E=5: the data order and indexing, the finite-loss check, the
metric sums), eager against the objective compiled with the warm-up's beta passed as a 0-d
tensor (so its changing value does not recompile): seconds per epoch, alternating twice, and
the first epoch's seconds (the compile). The trainer has no compile switch; the script swaps
the objective it calls.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import study.trial.trainer as trainer_module  # noqa: E402
from models import build_model, training_objective  # noqa: E402
from study.data import load_data  # noqa: E402
from study.spec.config import trial_config  # noqa: E402

CURVES = {"dataset": "spirals", "kind": "hvae", "latents": [2, 2], "hidden": [[64, 64], [32, 32]]}
MNIST = {"dataset": "mnist", "kind": "vae", "latents": [64], "hidden": [512, 512],
         "activation": "relu"}


def rate(model, loss_fn, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """(samples/s per seed, seconds of the first step) of ``steps`` Adam steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(x).backward()
        opt.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * x.shape[1] / (time.perf_counter() - start), first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    # compiled code draws the reparameterisation noise from torch's generator, as eager code
    # does, so both see the same noise and their losses can be compared
    torch._inductor.config.fallback_random = True
    print(f"torch {torch.__version__}, 1 thread, E={args.seeds}, batch 128 per seed")
    print(f"{'model':40}{'eager/s':>10}{'compiled/s':>12}{'speed-up':>10}{'compile s':>11}"
          f"{'loss diff':>11}")
    for label, settings, k, steps in (("2-D HVAE, IW=1", CURVES, 1, args.steps),
                                      ("2-D HVAE, IW=10 sampled KL", CURVES, 10, args.steps),
                                      ("MNIST VAE [512, 512], IW=1", MNIST, 1, args.steps // 10)):
        kl = "sampled" if k > 1 else "analytic"
        cfg = trial_config(settings | {"seeds": args.seeds, "iw_samples": k, "kl": kl}, "bench")
        torch.manual_seed(0)
        eager = build_model(cfg.architecture(), list(range(args.seeds)))
        compiled_model = copy.deepcopy(eager)
        x = torch.rand(args.seeds, 128, cfg.architecture().x_dim)
        if cfg.is_image:
            x = torch.bernoulli(x)

        def objective(model):
            return lambda batch: training_objective(model, batch, k, kl).loss

        compiled = torch.compile(objective(compiled_model))
        torch.manual_seed(1)
        a = objective(eager)(x).item()
        torch.manual_seed(1)
        b = compiled(x).item()
        eager_rate, _ = rate(eager, objective(eager), x, steps)
        compiled_rate, first = rate(compiled_model, compiled, x, steps)
        print(f"{label:40}{eager_rate:>10,.0f}{compiled_rate:>12,.0f}"
              f"{compiled_rate / eager_rate:>9.2f}x{first:>11.1f}{abs(a - b):>11.2e}", flush=True)
    trainer_epochs()


def trainer_epochs(epochs: int = 3) -> None:
    """Seconds per ``Trainer.train_epoch``, eager against a compiled objective, alternating."""
    cfg = trial_config(CURVES | {"seeds": 5, "epochs": 10, "n_train": 5000, "n_val": 200,
                                 "n_test": 100, "iw_samples": 10, "kl": "sampled",
                                 "warmup_epochs": 5}, "bench")
    data = load_data(cfg.data_config())
    compiled = torch.compile(training_objective, dynamic=False)

    def through_compiled(model, x, n_samples, kl, beta, free_bits):
        return compiled(model, x, n_samples, kl, torch.tensor(beta), free_bits)

    print(f"\nthrough Trainer.train_epoch: 2-D HVAE, IW=10 sampled KL, warm-up, "
          f"{cfg.n_train:,} points x E=5, one thread")
    print(f"{'objective':12}{'first epoch s':>15}{'s / epoch':>11}{'train bound (mean)':>20}")
    for label, objective in (("eager", training_objective), ("compiled", through_compiled)) * 2:
        trainer_module.training_objective = objective
        trainer = trainer_module.Trainer(cfg, data, device="cpu", threads=1)
        start = time.perf_counter()
        trainer.train_epoch()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(epochs):
            trainer.state.epoch += 1
            sums = trainer.train_epoch()
        per = (time.perf_counter() - start) / epochs
        print(f"{label:12}{first:>15.1f}{per:>11.3f}{sums['train_bound'].mean():>20.3f}",
              flush=True)
    trainer_module.training_objective = training_objective


if __name__ == "__main__":
    main()
