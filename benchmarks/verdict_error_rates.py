"""The verdict procedure's false-verdict rate and power at every study's own claims and seeds.

Run: ``python benchmarks/verdict_error_rates.py [--sims 2000] [--budget default] [--effect 1.0]``.
For each study with claims (at the budget's seeds; under the sequential design of its published
run where it had one, ``--until-decided``), ``study.judge.simulate`` drives the one decision
function, ``study.judge.decide.decide``, with per-seed values drawn under no effect from each
distribution of ``simulate.DISTRIBUTIONS`` (normal, t3, lognormal sigma 0.5/1/1.5, a bimodal
"stuck seed", tied counts) and prints the family-wise rate of false verdicts (the target: at
most alpha = 0.05 plus Monte-Carlo error), then the power: the mean share of the study's
directional claims supported when each has a true effect of ``--effect`` standard deviations of
its per-seed values. docs/ARCHITECTURE.md quotes the output with the command and commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: the designs of the published runs that used --until-decided (max seeds)
SEQUENTIAL = {"kl_iw_mnist_matched": 9, "variance_mode": 10}


def main() -> None:
    from study.judge.sequential import Design
    from study.judge.simulate import DISTRIBUTIONS, false_verdicts, power
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import available, load_spec

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sims", type=int, default=2000)
    p.add_argument("--budget", default="default")
    p.add_argument("--effect", type=float, default=1.0)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    short = {"normal": "normal", "t3": "t3", "lognormal 0.5": "logn0.5",
             "lognormal 1.0": "logn1", "lognormal 1.5": "logn1.5",
             "bimodal (stuck seed)": "bimodal", "tied (Poisson 0.7)": "tied"}
    print(f"false-verdict rate (family-wise) under no effect, {args.sims} simulated studies each; "
          f"power at {args.effect:g} sd; budget {args.budget}")
    print(f"{'study':<22}{'claims':>7}{'seeds':>6}{'looks':>10}"
          + "".join(f"{short[d]:>9}" for d in DISTRIBUTIONS) + f"{'power':>7}")
    start = time.perf_counter()
    worst = 0.0
    for name in available():
        spec = load_spec(name)
        if not spec.claims:
            continue
        seeds = len(ResolvedStudy(spec, args.budget).first.seeds)
        design = Design(seeds, seeds, max(seeds, SEQUENTIAL[name])) \
            if name in SEQUENTIAL and SEQUENTIAL[name] > seeds else None
        looks = "/".join(map(str, design.looks)) if design else "fixed"
        rates = [false_verdicts(spec.claims, seeds, d, args.sims, rng, spec.alpha, design)
                 for d in DISTRIBUTIONS]
        worst = max(worst, max(r.false for r in rates))
        pw = power(spec.claims, seeds, args.effect, max(200, args.sims // 4), rng, spec.alpha,
                   design)
        print(f"{name:<22}{len(spec.claims):>7}{seeds:>6}{looks:>10}"
              + "".join(f"{r.false:>9.3f}" for r in rates) + f"{pw:>7.2f}", flush=True)
    se = np.sqrt(0.05 * 0.95 / args.sims)
    print(f"worst rate {worst:.3f} (alpha 0.05, one Monte-Carlo standard error at 0.05: "
          f"{se:.3f}); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
