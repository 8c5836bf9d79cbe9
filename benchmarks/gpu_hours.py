"""GPU hours of every study's ``full`` budget, from the throughput measured on a GPU.

Run: ``python benchmarks/gpu_hours.py [--budget full]`` (seconds, no GPU needed). For every
trial of a study it counts, with the cost model (``study.spec.cost``), the matmul FLOPs of
training (3 x the forward pass, IW samples included, restart candidates and early stopping's
expected epochs, every seed), of validation and of the final evaluation (``models.size`` on
PyTorch's meta device), and turns them into time with the rates ``benchmarks/gpu_check.py``
measured on one H100 (docs/benchmarks.md):

- image models (MLPs of 512 units) are compute-bound: 13.3 TFLOP/s achieved in training; one
  process per GPU reaches 290k samples/s and two reach 400k in aggregate, so two trials share
  a GPU (``--gpus-per-trial 0.5``), about 1.38x the work of one;
- the 2-D models are launch-bound: a training step of the E=10 ensemble takes 6.9 ms whatever
  its width, so their time is steps x 6.9 ms, and four trials share a GPU
  (``--gpus-per-trial 0.25``; assumed to scale, as a launch-bound process leaves the GPU idle
  most of the time).

The cluster of ``ray_cluster.yaml`` has A10G GPUs (g5.xlarge), not measured here: its column
assumes 0.47x the H100's rate for the image models (the ratio of their FP32 peaks, 31.2 vs 67
TFLOP/s) and the same step time for the launch-bound 2-D models. Evaluation is counted at the
training rate. The dollar column is the A10G hours at ``G5_XLARGE_USD``, g5.xlarge's Linux
on-demand price (us-east-1, AWS's rate card as of June 2026; check your region's): the GPU
time only, not the head node (m6i.2xlarge, ``M6I_2XLARGE_USD`` an hour while the cluster is
up). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

H100_TFLOPS = 13.3  # measured, training, MNIST VAE [512, 512] z=64, E=10, IW=10
SHARE_GAIN = {0.5: 400_027 / 320_429}  # two processes on one H100 vs one (measured)
STEP_2D_S = 6.93e-3  # measured, 2-D HVAE z=[2, 2], E=10, IW=10, one step on the H100
A10G_FACTOR = 31.2 / 67.0
G5_XLARGE_USD = 1.006  # an hour, on-demand, Linux, us-east-1, June 2026
M6I_2XLARGE_USD = 0.384  # an hour, on-demand, Linux, us-east-1


def trial_cost(cfg) -> tuple[float, float]:
    """(matmul FLOPs of training + validation + evaluation, training steps) of one trial (all
    seeds), from the cost model (``study.spec.cost``: restarts, early stopping's expected
    epochs, every evaluation pass)."""
    from study.spec import cost

    work = cost.trial_work(cfg)
    train, forward = cost.flops(cfg, work)
    return train + forward, work.train_steps


def study_hours(name: str, budget: str) -> dict:
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    spec = load_spec(name)
    study = ResolvedStudy(spec, budget)
    per_cell = study.samples_per_cell
    flops = steps = 0.0
    image = False
    for cell in study.cells:
        values = dict(cell)
        for fname, f in spec.sampled_factors.items():  # the middle of a sampled range
            low, high = f.uniform or f.loguniform or f.int or (None, None)
            if low is not None:
                values[fname] = (math.sqrt(low * high) if f.loguniform else (low + high) / 2)
                if f.int:
                    values[fname] = int(round(values[fname]))
        cfg = study.config(values)
        image = cfg.is_image
        f, s = trial_cost(cfg)
        flops += f * per_cell
        steps += s * per_cell
    if image:
        h100 = flops / (H100_TFLOPS * 1e12) / SHARE_GAIN[0.5] / 3600
        a10g = h100 / A10G_FACTOR
        share = "0.5"
    else:
        h100 = a10g = steps * STEP_2D_S / 4 / 3600  # four launch-bound trials per GPU
        share = "0.25"
    return {"study": name, "trials": study.num_trials, "pflop": flops / 1e15,
            "h100": h100, "a10g": a10g, "share": share}


def main() -> None:
    from study.spec.spec_file import available

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="full")
    args = p.parse_args()
    rows = [study_hours(n, args.budget) for n in available()]
    print("| study | trials | PFLOP | H100 GPU hours | A10G GPU hours (assumed rate) | "
          f"USD on g5.xlarge (${G5_XLARGE_USD}/h) | --gpus-per-trial |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['study']} | {r['trials']} | {r['pflop']:.2f} | {r['h100']:.2f} | "
              f"{r['a10g']:.2f} | {r['a10g'] * G5_XLARGE_USD:.2f} | {r['share']} |")
    total = sum(r["a10g"] for r in rows)
    print(f"\nall studies: {sum(r['h100'] for r in rows):.1f} H100 GPU hours, "
          f"{total:.1f} A10G GPU hours, about ${total * G5_XLARGE_USD:.0f} of g5.xlarge time "
          f"on demand ({args.budget} budgets; the head node adds ${M6I_2XLARGE_USD}/h while "
          "the cluster is up)")


if __name__ == "__main__":
    main()
