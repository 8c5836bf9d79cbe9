"""Packs end to end: one study run with ``--pack on`` and with ``--pack off``, in one invocation.

Run: ``python benchmarks/pack_end_to_end.py NAME [NAME ...] [--budget default]`` (variance_mode
at ``default``: about 10 minutes on 2 CPUs). NAME ``small_trials`` is the study of many small
trials below (``SMALL_TRIALS``: spirals_tuning's recipe on a 4 x 4 grid of learning rate and
warm-up, 2 seeds each; about 8 minutes). Each run is the README's command in a fresh
process, ``python -m study.run NAME --budget B --no-plots`` (plots off in both: the figures are
the same work either way), into a temporary folder, off first, then on. Printed per study:
the wall time of each command and their ratio; the largest pack (``pack_members``); how far the
per-seed final numbers of the two runs are apart (the largest absolute difference of
``test_ll`` and of ``last_val_bound``, nats); whether each claim's verdict is the same; and
the CPU seconds each kind of process used in each run (the driver, the trial actors, the pack
servers, Ray's own; the number of processes in brackets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from process_cpu import Sampled, run_sampled  # noqa: E402 - after the path

#: many small trials of one shape: 16 configurations x 2 seeds of a 2-layer Spirals HVAE
SMALL_TRIALS = """name: small_trials
question: Many small trials of one shape (a benchmark of packs).
fixed: {dataset: spirals, noise: 0.05, kind: hvae, latents: [2, 2], hidden_layers: 3,
        width: 64, iw_samples: 10, kl: sampled, lr_schedule: cosine}
factors:
  lr: {grid: [0.0005, 0.001, 0.002, 0.004]}
  warmup_epochs: {grid: [0, 5, 10, 20]}
seeds: 2
pruner: {name: none}
budgets:
  default: {epochs: 20, n_train: 4000, n_test: 1000}
"""


def run(name: str, budget: str, folder: Path, pack: str, env: dict) -> Sampled:
    """The study's command in a fresh process: its wall time and CPU seconds by kind of
    process (``process_cpu.run_sampled``)."""
    done = run_sampled(
        [sys.executable, "-m", "study.run", name, "--budget", budget, "--no-plots", "--quiet",
         "--results", str(folder / pack), "--tracking-uri", f"sqlite:///{folder}/mlflow_{pack}.db",
         "--pack", pack], cwd=REPO, env=env)
    if done.returncode:
        print(done.output[-4000:], file=sys.stderr)
        raise SystemExit(f"{name} --pack {pack}: exit {done.returncode}")
    return done


def compare(folder: Path) -> dict:
    from study.store.results import read_trials

    frames = {}
    for pack in ("off", "on"):
        t = read_trials(folder / pack)
        keys = [c for c in t.columns if c.startswith("factor.")] + ["seed"]
        frames[pack] = t.sort_values(keys).reset_index(drop=True)
    off, on = frames["off"], frames["on"]
    verdicts = {p: [v["verdict"] for v in json.loads(path.read_text())] if path.exists() else []
                for p in ("off", "on")
                for path in [folder / p / "report" / "verdicts.json"]}
    return {"rows": len(on), "pack_members": int(on["pack_members"].max()),
            "test_ll": float((on["test_ll"] - off["test_ll"]).abs().max()),
            "last_val_bound": float((on["last_val_bound"] - off["last_val_bound"]).abs().max()),
            "status": bool((on["trial_status"] == off["trial_status"]).all()),
            "statuses": {p: frames[p].drop_duplicates("trial_id")["trial_status"]
                         .value_counts().to_dict() for p in ("off", "on")},
            "verdicts": verdicts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+")
    p.add_argument("--budget", default="default")
    args = p.parse_args()
    env = dict(os.environ)
    env.setdefault("HVAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    for name in args.names:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            target = name
            if name == "small_trials":
                target = str(folder / "small_trials.yaml")
                Path(target).write_text(SMALL_TRIALS)
            off = run(target, args.budget, folder, "off", env)
            on = run(target, args.budget, folder, "on", env)
            c = compare(folder)
        same = c["verdicts"]["on"] == c["verdicts"]["off"]
        print(f"{name} --budget {args.budget}: --pack off {off.wall:.1f} s, --pack on "
              f"{on.wall:.1f} s ({off.wall / on.wall:.2f}x); largest pack {c['pack_members']} "
              f"members; {c['rows']} seed rows, statuses "
              f"{'equal' if c['status'] else 'DIFFER'}, max |diff| test_ll "
              f"{c['test_ll']:.2g} nats, last_val_bound {c['last_val_bound']:.2g} nats; "
              f"verdicts {'the same' if same else 'DIFFER'}: off {c['verdicts']['off']}, "
              f"on {c['verdicts']['on']}", flush=True)
        if not c["status"]:
            print(f"  trials by status: off {c['statuses']['off']}, on {c['statuses']['on']}")
        for pack, done in (("off", off), ("on", on)):
            print(f"  CPU seconds (processes), --pack {pack}: {done.table()}", flush=True)


if __name__ == "__main__":
    main()
