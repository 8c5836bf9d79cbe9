"""How long does each study's ``smoke`` budget take, as a user runs it?

Run: ``python benchmarks/smoke_times.py [NAME ...] [--budget smoke]`` (all studies and the
README's example study file by default, or NAME ``README`` for it alone;
about 10 minutes on 2 CPUs). Each study runs in a fresh process exactly as the README says,
``python -m study.run NAME --budget smoke`` (Ray start-up, MLflow, Parquet, plots, the report
included), into a temporary folder; the table gives the wall time of the whole command and the
promise it is measured against (under 60 s for ``smoke``). Needs the MNIST and Fashion-MNIST
files of ``$HVAE_DATA_DIR`` (or ``../shared/data``) for the image studies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def readme_example() -> str:
    """The YAML block of README.md's "Writing a study" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Writing a study"):]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def main() -> None:
    from study.spec.spec_file import available, load_spec

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="studies (default: all)")
    p.add_argument("--budget", default="smoke")
    p.add_argument("--limit-s", type=float, default=60.0, help="the promise checked (seconds)")
    args = p.parse_args()
    env = dict(os.environ)
    env.setdefault("HVAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    rows = []
    names = args.names or available() + ["README"]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            target = name
            if name == "README":  # the example study file of README.md, as written
                target = f"{tmp}/my_study.yaml"
                Path(target).write_text(readme_example())
            spec = load_spec(target)
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "study.run", target, "--budget", args.budget,
                 "--results", f"{tmp}/results", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"],
                cwd=REPO, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        if done.returncode:
            print(done.stdout[-1500:], done.stderr[-1500:], file=sys.stderr)
        rows.append((name, spec.num_trials(args.budget), wall, status))
        print(f"{name}: {wall:.1f} s ({status})", flush=True)
    print(f"\n| study | trials | wall time of `python -m study.run NAME --budget {args.budget}` | "
          f"under {args.limit_s:g} s |")
    print("|---|---:|---:|---|")
    for name, trials, wall, status in rows:
        ok = "yes" if wall < args.limit_s and status == "ok" else f"**no** ({status})"
        label = "README example (`my_study`)" if name == "README" else name
        print(f"| {label} | {trials} | {wall:.1f} s | {ok} |")


if __name__ == "__main__":
    main()
