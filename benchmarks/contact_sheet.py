"""Every figure a study makes, on one page: the contact sheet a reader checks them by.

Run: ``python benchmarks/contact_sheet.py NAME [NAME ...] [--budget smoke] [--out docs/figures]
[--from DIR]`` (about a minute per study at ``smoke`` on 2 CPUs). Each study runs in a fresh
process as the README says (``python -m study.run NAME --budget B``, into a temporary folder
and MLflow store; with ``--from DIR``, the results already in ``DIR/NAME`` are used), then its
report's figures and the per-trial plots of its first trial are drawn, each
at its own aspect ratio and labelled with its file name, into ``OUT/contact_sheet_NAME.png``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def figures(results: Path) -> list[Path]:
    """The report's PNGs, then those of the first trial's plots folder."""
    report = sorted((results / "report").glob("*.png"))
    trials = sorted(p for p in (results / "plots").iterdir() if p.is_dir())
    return report + (sorted(trials[0].glob("*.png")) if trials else [])


def sheet(paths: list[Path], title: str, out: Path, cols: int = 2) -> Path:
    """The images of ``paths`` in a grid of ``cols`` columns, each titled by its file."""
    rows = -(-len(paths) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(9 * cols, 6.5 * rows), squeeze=False)
    for ax, p in zip(axes.flat, paths):
        ax.imshow(mpimg.imread(p))
        ax.set_title(f"{p.parent.name}/{p.name}", fontsize=11)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(paths):]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    fig.savefig(out, dpi=60)
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--budget", default="smoke")
    p.add_argument("--out", default=str(REPO / "docs" / "figures"))
    p.add_argument("--from", dest="source", default=None, metavar="DIR",
                   help="results folders made before (DIR/NAME), instead of running")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        if args.source:
            path = sheet(figures(Path(args.source) / name),
                         f"{name} at --budget {args.budget}: every figure",
                         out / f"contact_sheet_{name}.png")
            print(f"{name}: {path}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results = Path(tmp) / name
            cmd = [sys.executable, "-m", "study.run", name, "--budget", args.budget, "--quiet",
                   "--results", str(results), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
            done = subprocess.run(cmd, cwd=REPO, env=os.environ, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name}: study.run exited {done.returncode}: {done.stderr[-500:]}")
            path = sheet(figures(results), f"{name} at --budget {args.budget}: every figure",
                         out / f"contact_sheet_{name}.png")
            print(f"{name}: {path}")


if __name__ == "__main__":
    main()
