"""How close is ``--dry-run``'s time estimate to the time a study really takes?

Run: ``python benchmarks/dry_run_accuracy.py [--work /tmp/hvae-results]`` after
``benchmarks/rerun_results.py`` (which keeps each study's wall time in ``WORK/NAME.json``), on a
quiet machine (the estimate times a few training steps). For each study with a kept run at the
same budget: the dry run's estimate, the measured wall time and their ratio.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def estimate_minutes(name: str, budget: str) -> float:
    out = subprocess.run([sys.executable, "-m", "study.run", name, "--budget", budget, "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"estimated ([0-9.]+) minutes", out).group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="/tmp/hvae-results")
    p.add_argument("--budget", default="default")
    args = p.parse_args()
    rows = []
    for record_file in sorted(Path(args.work).glob("*.json")):
        record = json.loads(record_file.read_text())
        if f"--budget {args.budget}" not in record["command"] or "--until-decided" in record["command"]:
            continue  # rounds of --until-decided are not in the estimate
        est = estimate_minutes(record["study"], args.budget)
        real = record["wall_s"] / 60
        rows.append((record["study"], est, real))
        print(f"{record['study']}: estimated {est:.1f} min, took {real:.1f} min", flush=True)
    print(f"\n| study | dry-run estimate (min) | measured (min) | measured / estimate |\n"
          f"|---|---:|---:|---:|")
    for name, est, real in rows:
        print(f"| {name} | {est:.1f} | {real:.1f} | {real / est:.2f} |")


if __name__ == "__main__":
    main()
