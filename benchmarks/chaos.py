"""A long chaos run on results folders (``tests/chaos.py``): random sequences of interrupts,
copies, moves, damaged records, second folders on one storage and MLflow store, resumes,
overwrites and reports, every invariant checked after each step.

Run: ``python benchmarks/chaos.py [--steps 60] [--seeds 1 2 3] [--work DIR]``. Prints every
step, then per seed and in all: operations tried, invariant checks, how many broke (each broken
one named). docs/faults.md quotes the figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def main() -> int:
    from chaos import Chaos, Report

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--work", default=None, help="workspace (default: a temporary folder)")
    args = p.parse_args()
    total = Report()
    with tempfile.TemporaryDirectory(prefix="hvae-chaos-") as tmp:
        work = Path(args.work or tmp)
        for seed in args.seeds:
            report = Chaos(work / f"seed{seed}", seed=seed).run(args.steps)
            print(f"seed {seed}: {report.summary()}", flush=True)
            for k, v in report.operations.items():
                total.operations[k] = total.operations.get(k, 0) + v
            for k, v in report.exits.items():
                total.exits[k] = total.exits.get(k, 0) + v
            total.checks += report.checks
            total.broken += [f"seed {seed} {b}" for b in report.broken]
            total.seconds += report.seconds
    print(f"all: {total.summary()}")
    for b in total.broken:
        print(f"BROKEN {b}")
    return 1 if total.broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
