"""The cost model (``study.spec.cost``) against measured wall times.

Run: ``python benchmarks/cost_model.py [--run NAME ...] [--replay DIR] [--phases DIR] [--fit]
[--spread N NAME ...] [--budget default]``.

Without ``--run`` (about a minute): for every study with a published run (docs/results), the dry
run's estimate (rates timed now, on this machine) and the estimate at the reference rates (what
the ETA and the start order use) against the published run's wall time. The published runs
were made on another day on a machine of this kind; ``benchmarks/models_throughput.py`` shows
how fast this one is against that day.

With ``--fit``: the reference rates' constants fitted to the step and pass times the dry run
measures for every configuration of every study.

With ``--phases DIR``: for each journaled run in DIR, each trial's restart candidates' phase,
its training after them and its closing (final evaluation, files, records), measured from the
journal, beside the dry run's estimate of each at rates timed now (the training after the
candidates bracketed by all its seeds training every epoch it reported, and half of them).

With ``--spread N NAME ...`` (a few minutes): ``python -m study.run NAME --dry-run`` invoked N
times in fresh processes, and the spread of the minutes it estimates (the rates are timed anew
each time, on a machine that others share).

With ``--run`` (the studies' own time): each study is run as the README says, into a fresh
results folder, and timed; the table compares the estimates made just before with the measured
wall time, and the progress line's ETA at a tenth, a quarter, half and three quarters of the
run with the time that was actually left. Each run's progress journal is kept (``--journal``,
``runs/eta_journals/`` by default); ``--replay DIR`` re-computes the ETA of those runs with the
current code (``benchmarks/eta_journal.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PUBLISHED = re.compile(r"`python -m study\.run (\w+) --budget (\w+)([^`&]*)"
                       r"(?:&&[^`]*)?`: [^,]+, (?:(\d+) min )?(\d+) s, exit 0")


def published() -> dict[str, tuple[str, float, bool]]:
    """study -> (budget, wall seconds, run with --until-decided) from docs/results/README.md."""
    text = (REPO / "docs" / "results" / "README.md").read_text()
    return {m[1]: (m[2], 60 * int(m[4] or 0) + int(m[5]), "--until-decided" in m[3])
            for m in PUBLISHED.finditer(text)}


def estimates(name: str, budget: str) -> tuple[float, float]:
    """(dry-run seconds at rates timed here, seconds at the reference rates) of the study's
    first round, 2 trials at a time (this machine's 2 cores)."""
    from study.spec import cost
    from study.spec.plan import measured_rates, planned_trials, slots
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    spec = load_spec(name)
    plan = planned_trials(ResolvedStudy(spec, budget))
    n = slots(spec, None, None)
    cache: dict = {}
    timed = [cost.seconds(p.work, measured_rates(p.cfg, cache))
             for p in plan for _ in range(p.count)]
    ref = [cost.estimate(p.cfg).seconds for p in plan for _ in range(p.count)]
    return (cost.makespan(timed, n, cost.STUDY_S, cost.SHARED_SLOWDOWN),
            cost.makespan(ref, n, cost.STUDY_S))


def fit(budget: str) -> None:
    """Least-squares fit (relative error) of the reference rates' constants to the step and
    pass times the dry run measures for every configuration of every study."""
    import numpy as np

    from models.size import forward_flops
    from study.spec.cost import step_terms
    from study.spec.plan import measured_rates, planned_trials
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import available, load_spec

    steps, passes, cache = [], [], {}
    for name in available():
        for p in planned_trials(ResolvedStudy(load_spec(name), budget)):
            cfg, arch = p.cfg, p.cfg.architecture()
            rates = measured_rates(cfg, cache)
            flops, (layers, rows, step_flops) = forward_flops(arch, 1, 1), step_terms(cfg)
            for ph in p.work.phases:
                points = ph.members * cfg.batch_size
                steps.append((layers, rows * points, step_flops * points,
                              rates.step_s(ph.members)))
            passes.append((1.0, flops, rates.pass_s))
    for what, table, names in (("step", steps, ("STEP_LAYER_S", "STEP_ROW_S", "1/STEP_FLOPS")),
                               ("pass", passes, ("PASS_S", "1/PASS_FLOPS"))):
        t = np.array(table, float)
        a = t[:, :-1] / t[:, -1:]
        coef, *_ = np.linalg.lstsq(a, np.ones(len(t)), rcond=None)
        ratio = a @ coef
        print(f"{what}: {len(t)} measurements; " + ", ".join(
            f"{n} = {c:.3g}" for n, c in zip(names, coef)) +
            f"; model / measured {ratio.min():.2f}-{ratio.max():.2f}")


def run(name: str, budget: str, journal: Path) -> tuple[float, list[tuple[float, float, float]]]:
    """(wall seconds, [(fraction of the run, ETA said, time actually left)]) of one run; the
    progress line's inputs journaled to ``journal`` (``benchmarks/eta_journal.py``)."""
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(REPO / "benchmarks" / "eta_journal.py"), str(journal),
               "study.run", name, "--budget", budget, "--results", f"{tmp}/results",
               "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        journal.parent.mkdir(parents=True, exist_ok=True)
        with open(journal, "wb") as f:
            pickle.dump((time.monotonic(), "spawn", name, budget), f)
        start = time.monotonic()
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                             env=os.environ | {"PYTHONPATH": str(REPO)})
        wall = time.monotonic() - start
        with open(journal, "ab") as f:
            pickle.dump((time.monotonic(), "exit", out.returncode), f)
    if out.returncode:
        raise SystemExit(f"{name}: exit {out.returncode}: {out.stderr.strip().splitlines()[-1:]}")
    from eta_journal import events, printed

    return wall, checks(printed(journal, out.stdout, events(journal)[-1][0]), wall)


def checks(said: list[tuple[float, float, float]], wall: float) -> list[tuple[float, float, float]]:
    """[(fraction of the run, ETA said, time left)] at the first line at or after 10%, 25%, 50%
    and 75% of the run, from [(seconds into the run, ETA said, time left)]."""
    out = []
    for frac in (0.1, 0.25, 0.5, 0.75):
        near = [s for s in said if s[0] >= frac * wall]
        if near:
            at, eta, left = near[0]
            out.append((at / wall, eta, left))
    return out


def replayed(folder: Path) -> None:
    """The ETA the current code says, replayed from the journals in ``folder``, at 10%, 25%,
    50% and 75% of each run (``benchmarks/eta_journal.py``)."""
    from eta_journal import events, replay

    print("| study | wall | ETA said / left at 10%, 25%, 50%, 75% of the run (replayed) |")
    print("|---|---:|---|")
    for journal in sorted(folder.glob("*.pkl")):
        evs = events(journal)
        (start, _, name, budget), (end, _, rc) = evs[0], evs[-1]
        if rc:
            continue
        said, wall = replay(journal, name, budget, end), end - start
        eta = ", ".join(f"{s / 60:.1f}/{left / 60:.1f} min ({s / left - 1:+.0%})"
                        for _, s, left in checks(said, wall))
        print(f"| {name} | {wall / 60:.1f} min | {eta} |", flush=True)


def _cell(label: str) -> list[tuple[str, object]]:
    """A trial's label ("depth=2, noise=0") as (factor, value) pairs, numbers as floats."""
    def value(v: str) -> object:
        try:
            return float(v)
        except ValueError:
            return v
    return [(k, value(v)) for k, _, v in (kv.partition("=") for kv in label.split(", "))]


def phases(folder: Path) -> None:
    """Per trial of each journaled run: the candidates' phase, the training after it and the
    closing, measured against the dry run's estimates at rates timed now."""
    from eta_journal import events

    from study.spec import cost
    from study.spec.plan import measured_rates, planned_trials
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    print("| study | trial | candidates: measured / est. | after them: measured / est. all "
          "seeds - half | epochs | closing: measured / est. |")
    print("|---|---|---:|---:|---:|---:|")
    cache: dict = {}
    for journal in sorted(folder.glob("*.pkl")):
        evs = events(journal)
        name, budget = evs[0][2], evs[0][3]
        plan = planned_trials(ResolvedStudy(load_spec(name), budget))
        started, reports = {}, {}
        for t, kind, *rest in evs:
            if kind == "started":
                started[rest[0]] = t
            elif kind == "reported":
                reports.setdefault(rest[0], []).append((t, rest[1]))
            elif kind == "ended" and rest[0] in reports:
                label = rest[4]
                p = next(p for p in plan if _cell(p.label) == _cell(label))
                w, r, N = p.work, measured_rates(p.cfg, cache), p.cfg.choice_epoch
                E, R = w.members, p.cfg.restarts
                chose = next(t for t, ep in reports[rest[0]] if ep >= N) if N else started[rest[0]]
                (last, epochs), start = reports[rest[0]][-1], started[rest[0]]

                def epoch_s(m: int) -> float:
                    return w.steps_per_epoch * r.step_s(m) + m * w.val_passes * r.pass_s

                print(f"| {name} | {label} | {chose - start:.0f} / {N * epoch_s(E * R):.0f} s | "
                      f"{last - chose:.0f} / {(epochs - N) * epoch_s(E):.0f}-"
                      f"{(epochs - N) * epoch_s((E + 1) // 2):.0f} s | {epochs} | "
                      f"{t - last:.0f} / {cost.closing_seconds(w, r):.0f} s |", flush=True)


def spread(names: list[str], budget: str, n: int) -> None:
    """The dry run's estimate of each study in ``n`` fresh invocations: its least, median and
    largest, and largest / least."""
    import statistics

    print(f"| study | dry-run estimate, {n} invocations | least / median / largest | spread |")
    print("|---|---|---:|---:|")
    for name in names:
        said = []
        for _ in range(n):
            out = subprocess.run([sys.executable, "-m", "study.run", name, "--budget", budget,
                                  "--dry-run"], cwd=REPO, capture_output=True, text=True)
            m = re.search(r"estimated ([\d.]+) minutes", out.stdout)
            if m is None:
                raise SystemExit(f"{name}: no estimate in the dry run's output: "
                                 f"{(out.stderr or out.stdout).strip().splitlines()[-1:]}")
            said.append(float(m[1]))
        print(f"| {name} | {', '.join(f'{m:.1f}' for m in said)} min | {min(said):.1f} / "
              f"{statistics.median(said):.1f} / {max(said):.1f} min | "
              f"{max(said) / min(said):.2f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs="*", default=None, metavar="NAME")
    p.add_argument("--budget", default="default")
    p.add_argument("--fit", action="store_true", help="fit the reference rates' constants")
    p.add_argument("--journal", type=Path, default=REPO / "runs" / "eta_journals",
                   help="where --run keeps each run's progress journal")
    p.add_argument("--replay", type=Path, metavar="DIR", help="the current code's ETA replayed "
                   "from the journals in DIR")
    p.add_argument("--phases", type=Path, metavar="DIR", help="each journaled trial's phases "
                   "measured against the dry run's estimates")
    p.add_argument("--spread", nargs="+", metavar=("N", "NAME"), help="the dry run invoked "
                   "N times per study, and the spread of its estimates")
    args = p.parse_args()
    os.environ.setdefault("HVAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    if args.fit:
        return fit(args.budget)
    if args.replay:
        return replayed(args.replay)
    if args.phases:
        return phases(args.phases)
    if args.spread:
        n, *names = args.spread
        if not n.isdigit() or not names:
            p.error(f"--spread N NAME ...: N a whole number, then study names; got {args.spread}")
        return spread(names, args.budget, int(n))
    if args.run is None:
        print("| study | published wall | dry run (timed now) | ratio | reference rates | ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, (budget, wall, until) in sorted(published().items()):
            timed, ref = estimates(name, budget)
            note = " (first round of --until-decided)" if until else ""
            print(f"| {name}{note} | {wall / 60:.1f} min | {timed / 60:.1f} min | "
                  f"{timed / wall:.2f} | {ref / 60:.1f} min | {ref / wall:.2f} |")
        return
    print("| study | measured wall | dry run | ratio | reference rates | ratio | ETA said / left "
          "at 10%, 25%, 50%, 75% of the run |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in args.run:
        timed, ref = estimates(name, args.budget)
        wall, said = run(name, args.budget, args.journal / f"{name}.{args.budget}.pkl")
        eta = ", ".join(f"{s / 60:.1f}/{left / 60:.1f} min ({s / left - 1:+.0%})"
                        for _, s, left in said)
        print(f"| {name} | {wall / 60:.1f} min | {timed / 60:.1f} min | {timed / wall:.2f} | "
              f"{ref / 60:.1f} min | {ref / wall:.2f} | {eta} |", flush=True)


if __name__ == "__main__":
    main()
