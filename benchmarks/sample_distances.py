"""Where do a 2-D study's decoded prior samples go? Distance to the curve and coverage per seed.

Run: ``python benchmarks/sample_distances.py RESULTS [--samples 4000]`` on a study's kept results
folder (e.g. ``/tmp/hvae-results/ood_distance`` after ``benchmarks/rerun_results.py``). For each
trial's last checkpoint, per seed: the fraction of ``--samples`` decoder means farther than 0.03,
0.1 and 0.2 from the curve, their median distance, and ``curve_coverage`` (the test points with a
sample within the tolerance). docs/quality.md quotes its output for ``ood_distance``.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch

from models import build_model
from study.data import load_data
from study.data.synthetic import distance_to_curve
from study.spec.config import TrialConfig
from study.trial.metrics import curve_coverage, sample_tolerance
from study.trial.trainer import read_checkpoint

BEYOND = (0.03, 0.1, 0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--samples", type=int, default=4000)
    args = p.parse_args()
    print(f"{'configuration':46s}  seed  " + "  ".join(f">{d:<5g}" for d in BEYOND)
          + "  median  coverage")
    for trial in sorted(glob.glob(str(args.results / "ray" / "run_study_trial_*"))):
        checkpoints = sorted(glob.glob(trial + "/checkpoint_*/trainer.pt"))
        if not checkpoints:
            continue
        state = read_checkpoint(checkpoints[-1])
        cfg = TrialConfig.model_validate_json(state["config"])
        if cfg.is_image:
            continue
        model = build_model(cfg.architecture(), cfg.seeds)
        model.load_state_dict(state["model"])
        model.eval()
        data = load_data(cfg.data_config())
        torch.manual_seed(0)
        with torch.no_grad():
            gen = model.sample(args.samples).x_mean.numpy()
        label = f"{cfg.dataset}, noise {cfg.noise:g}, depth {len(cfg.latents)}, " \
                f"h={list(cfg.hidden[0])}"
        for e, seed in enumerate(cfg.seeds):
            dist = distance_to_curve(gen[e], data.curve)
            x_test = data.x_test[e] if data.x_test.ndim == 3 else data.x_test
            cover = curve_coverage(gen[e], x_test, cfg.noise)
            far = "  ".join(f"{np.mean(dist > d):6.3f}" for d in BEYOND)
            print(f"{label[:46]:46s}  {seed:4d}  {far}  {np.median(dist):6.3f}  {cover:8.3f}"
                  f"   (tolerance {sample_tolerance(cfg.noise):g})")


if __name__ == "__main__":
    main()
