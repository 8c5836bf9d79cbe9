"""Training and evaluation throughput per core, against this machine's matmul peak.

Run: ``python benchmarks/models_throughput.py`` (CPU, about 4 minutes on 2 cores). In one run:

1. the machine's fp32 matmul peak (``torch.mm`` of 1024^2 and 2048^2, this process's threads);
2. training samples/s per seed and core (one sample = one data point for one seed; one torch
   thread, as a study trial runs with ``resources.cpus: 1``) through the trial's own
   ``Trainer.train_epoch``, and the achieved GFLOP/s (matmul FLOPs counted by
   ``models.size.forward_flops``, x3 for forward and backward), for the 2-D HVAE z=[2, 2]
   h=[[64, 64], [32, 32]] (IW=1 analytic KL, and IW=10 sampled KL as the 2-D studies train)
   and the MNIST VAE [512, 512] z=64, for ensembles of E = 1, 5 and 10 seeds;
3. the trainer's epoch before issue 15 (the default Adam, three host copies and a masked
   gradient write per parameter each step) against today's, on the same trainer and data (2-D
   HVAE, E=5), alternating three times, as the baseline of the speed-up;
4. the evaluation's likelihood part on 10,000 2-D points with E=5 (test log-likelihood K=1000,
   and the IW=1 and K=100 estimates), on all of this process's threads, each row in a fresh
   process (seconds, peak memory, minor page faults): the three separate passes of before
   issue 15; one pass of 1000 samples reused for all three, with glibc's default heap
   thresholds and the plain layout of the narrow output layers (the code of 2026-12-04); the
   same with the trial worker's heap thresholds (``study.trial.device.reuse_host_memory``);
   and with narrow outputs computed transposed as well (``models.ensemble.NARROW_OUT``: today's
   code path, as a trial's worker runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import (  # noqa: E402
    build_model,
    ensemble,
    estimate_log_likelihood,
    training_flops,
    training_objective,
)
from study.data import load_data  # noqa: E402
from study.spec.config import trial_config  # noqa: E402
from study.trial.device import reuse_host_memory  # noqa: E402
from study.trial.trainer import Trainer  # noqa: E402

CURVES = {"dataset": "spirals", "kind": "hvae", "latents": [2, 2], "hidden": [[64, 64], [32, 32]],
          "n_val": 200, "n_test": 100}
MNIST = {"dataset": "mnist", "kind": "vae", "latents": [64], "hidden": [512, 512],
         "activation": "relu", "n_val": 200, "n_test": 100}


def matmul_peak() -> float:
    """GFLOP/s of the best of a few large fp32 matmuls."""
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(2):
            a @ b
        start = time.perf_counter()
        reps = 5
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def train_rate(settings: dict, seeds: int, steps: int, k: int, data_dir: str | None) -> dict:
    """Samples/s per seed and GFLOP/s of ``steps`` steps of ``Trainer.train_epoch``."""
    extra = {"iw_samples": k, "kl": "sampled" if k > 1 else "analytic"}
    cfg = trial_config(settings | extra | {"seeds": seeds, "n_train": steps * 128, "epochs": 1,
                                           "data_dir": data_dir}, "benchmark")
    trainer = Trainer(cfg, load_data(cfg.data_config()), device="cpu")
    trainer.train_epoch()  # warm-up
    start = time.perf_counter()
    trainer.train_epoch()
    seconds = time.perf_counter() - start
    samples = seeds * steps * 128
    flops = training_flops(cfg.architecture(), 1, k) * samples
    return {"per_seed": samples / seconds / seeds, "gflops": flops / seconds / 1e9}


def old_train_epoch(trainer: Trainer) -> None:
    """The trainer's epoch before issue 15, on the same trainer: the default Adam, three host
    copies per step, a masked gradient write per parameter, metrics summed on the host."""
    cfg, model = trainer.cfg, trainer.model
    order = trainer._batches()
    n = order.shape[1]
    alive_np = np.ones(len(cfg.seeds), dtype=bool)
    sums = np.zeros(len(cfg.seeds))
    for i in range(math.ceil(n / cfg.batch_size)):
        idx = order[:, i * cfg.batch_size : (i + 1) * cfg.batch_size]
        x = trainer.x_train[trainer._members, idx] if trainer.x_train.dim() == 3 else trainer.x_train[idx]
        terms = training_objective(model, x, cfg.iw_samples, cfg.kl)
        losses = terms.loss_per_member.detach().cpu().numpy()
        alive = torch.as_tensor(alive_np & np.isfinite(losses))
        trainer.optimizer.zero_grad(set_to_none=False)
        torch.where(alive, terms.loss_per_member, 0.0).sum().backward()
        with torch.no_grad():
            for p in model.parameters():
                p.grad[~alive] = 0.0
        trainer.optimizer.step()
        sums += losses + terms.bound.cpu().numpy() + terms.kl_layers.cpu().numpy().sum(1)


def before_and_now(seeds: int, steps: int, rounds: int = 3) -> tuple[float, float]:
    """Samples/s per seed of the epoch before issue 15 and of today's, on the 2-D HVAE (IW=1),
    alternating ``rounds`` times (this machine's speed drifts): the medians."""
    cfg = trial_config(CURVES | {"seeds": seeds, "n_train": steps * 128, "epochs": 1}, "benchmark")
    data = load_data(cfg.data_config())
    old, new = Trainer(cfg, data, device="cpu"), Trainer(cfg, data, device="cpu")
    old.optimizer = torch.optim.Adam(old.model.parameters(), lr=cfg.lr)  # the default of before
    old_train_epoch(old)
    new.train_epoch()
    times: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(rounds):
        for name, run in (("before", lambda: old_train_epoch(old)), ("now", new.train_epoch)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    rate = lambda t: steps * 128 / float(np.median(t))  # noqa: E731 - per seed
    return rate(times["before"]), rate(times["now"])


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident memory since its ``exec`` (``VmHWM``; ``ru_maxrss`` would
    also count the forked parent's memory, which Linux carries across ``exec``)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def eval_child(points: int, seeds: int, separate: int, reuse: int, narrow: int) -> None:
    """In a fresh process: the likelihood part of the evaluation; prints JSON. ``reuse``: the
    trial worker's heap thresholds; ``narrow``: narrow outputs computed transposed (else every
    layer in the plain layout)."""
    if reuse:
        reuse_host_memory()
    if not narrow:
        ensemble.NARROW_OUT = 2**62
    torch.manual_seed(0)
    cfg = trial_config(CURVES | {"seeds": seeds}, "benchmark").architecture()
    model = build_model(cfg, list(range(seeds)))
    x = torch.randn(points, 2)
    estimate_log_likelihood(model, x[:10], n_importance=10)  # load kernels before the baseline
    base = rss_mib()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    if separate:
        for k in (1000, 1, 100):
            estimate_log_likelihood(model, x, k)
    else:
        estimate_log_likelihood(model, x, 1000, fewer=(1, 100))
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "peak_above_baseline_mib": peak_rss_mib() - base,
                      "page_faults": usage.ru_minflt - faults}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per measurement")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--eval-child", nargs=5, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--eval-only", action="store_true",
                        help="only the likelihoods of 10,000 2-D points (part 4, about 2 minutes)")
    args = parser.parse_args()
    if args.eval_child:
        eval_child(*args.eval_child)
        return
    threads = torch.get_num_threads()
    if args.eval_only:
        print(f"torch {torch.__version__}, CPU; evaluation on {threads} threads")
        likelihood_rows()
        return
    torch.set_num_threads(1)
    peak = matmul_peak()
    print(f"torch {torch.__version__}, CPU; training on 1 thread (one core), evaluation on {threads}")
    print(f"fp32 matmul peak of one core: {peak:.0f} GFLOP/s\n")
    print(f"{'training (Trainer.train_epoch)':<46}{'E':>4}{'samples/s/seed':>16}{'GFLOP/s':>10}{'% peak':>8}")
    rows = [("2-D HVAE, IW=1", CURVES, 1, args.steps), ("2-D HVAE, IW=10 sampled KL", CURVES, 10, args.steps),
            ("MNIST VAE [512, 512] z=64, IW=1", MNIST, 1, max(10, args.steps // 10))]
    rates = {}
    for name, settings, k, steps in rows:
        for seeds in (1, 5, 10):
            r = train_rate(settings, seeds, steps, k, args.data_dir)
            rates[(name, seeds)] = r["per_seed"]
            print(f"{name:<46}{seeds:>4}{r['per_seed']:>16,.0f}{r['gflops']:>10.1f}"
                  f"{100 * r['gflops'] / peak:>7.0f}%")
    before, now = before_and_now(5, args.steps)
    print(f"\nthe trainer's epoch before issue 15, 2-D HVAE IW=1, E=5 (median of 3, alternating): "
          f"{before:,.0f} samples/s/seed; now {now:,.0f}: {now / before:.2f}x (target >= 1.5x)")
    print(f"ensemble E=5 over E=1 (2-D HVAE, IW=1): "
          f"{5 * rates[('2-D HVAE, IW=1', 5)] / rates[('2-D HVAE, IW=1', 1)]:.2f}x the samples/s\n")

    likelihood_rows()


def likelihood_rows() -> None:
    """Part 4: each way of computing the likelihoods of 10,000 2-D points, in a fresh process."""
    print(f"{'likelihoods of 10,000 2-D points, E=5':<58}{'seconds':>8}{'peak MiB':>10}"
          f"{'page faults':>13}")
    rows = (("K=1000, IW=1, K=100 as three passes (before issue 15)", (1, 0, 0)),
            ("one K=1000 pass, IW=1 and K=100 from it (2026-12-04)", (0, 0, 0)),
            ("  + the trial worker's heap thresholds", (0, 1, 0)),
            ("  + narrow outputs transposed (now)", (0, 1, 1)))
    seconds = []
    for label, flags in rows:
        out = subprocess.run([sys.executable, __file__, "--eval-child", "10000", "5",
                              *map(str, flags)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        seconds.append(r["seconds"])
        print(f"{label:<58}{r['seconds']:>8.1f}{r['peak_above_baseline_mib']:>10.0f}"
              f"{r['page_faults']:>13,}")
    print(f"now against 2026-12-04: {seconds[1] / seconds[-1]:.2f}x; against before issue 15: "
          f"{seconds[0] / seconds[-1]:.2f}x (target: the K=1000 evaluation under 10 s)")


if __name__ == "__main__":
    main()
