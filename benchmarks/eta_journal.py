"""The progress line's inputs of a real run, journaled, and the ETA re-computed from them.

``python benchmarks/eta_journal.py JOURNAL study.run ARGS...`` runs ``python -m study.run
ARGS...`` unchanged, appending to JOURNAL (pickle records, ``time.monotonic()`` seconds, a
clock shared by every process of this machine) every call the recorder makes to the progress
line: a trial started, reported an epoch, ended, and each printed line with its running trials.

``replay(journal, name, budget, end)`` feeds those calls, at their times, to a progress line of
the current code (``study.engine.tuner.study_progress``) and returns what its ETA says at each
printed line against the time that was actually left (``end``: when the run ended). So a change
to the ETA is checked against real runs without running them again; ``benchmarks/cost_model.py
--run`` keeps a journal of every run it makes (``--journal DIR``) and ``--replay DIR`` reads
them. Used by the benchmark only: the product never journals.
"""

from __future__ import annotations

import pickle
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ETA = re.compile(r"ETA (?:(\d+)h)?(?:(\d+)m)?(\d+)s")
#: a progress line as ``study.engine.progress`` prints it: "[  1m05s] ..."
LINE = re.compile(r"^\[\s*(?:\d+h)?(?:\d+m)?\d+s\] ")


def eta_seconds(line: str) -> int | None:
    """The ETA a progress line says, in seconds (None: it says none)."""
    m = ETA.search(line)
    return None if m is None else 3600 * int(m[1] or 0) + 60 * int(m[2] or 0) + int(m[3])


def printed(journal: Path, stdout: str, end: float) -> list[tuple[float, float, float]]:
    """[(seconds since the run was spawned, ETA said, seconds actually left)] of each progress
    line a journaled run printed with an ETA: its time from the journal (each printed line is
    one ``line`` record, in order), not from the line's own clock, which starts after Ray."""
    evs = events(journal)
    times = [t for t, kind, *_ in evs if kind == "line"]
    lines = [line for line in stdout.splitlines() if LINE.match(line)]
    if len(times) != len(lines):
        raise SystemExit(f"{journal}: {len(times)} journaled progress lines, {len(lines)} printed")
    return [(t - evs[0][0], eta, end - t) for t, line in zip(times, lines)
            if (eta := eta_seconds(line)) is not None]


def _journal(path: str) -> None:
    """Wraps the progress line's methods so that each call is appended to ``path``."""
    from ray.tune.experiment import Trial

    from study.engine.progress import Progress

    out = open(path, "ab")

    def log(*event: Any) -> None:
        pickle.dump((time.monotonic(), *event), out)
        out.flush()

    def wrap(name: str, record) -> None:
        method = getattr(Progress, name)

        def journaled(self, *args, **kwargs):
            record(*args, **kwargs)
            return method(self, *args, **kwargs)
        setattr(Progress, name, journaled)

    wrap("trial_started", lambda tid: log("started", tid))
    wrap("trial_reported", lambda tid, epoch, restored_from=0:
         log("reported", tid, epoch, restored_from))
    wrap("trial_ended", lambda tid, status, epochs, value=None, label="", config=None:
         log("ended", tid, status, epochs, value, label, config))
    wrap("line", lambda trials, epoch_of: log(
        "line", [(t.trial_id, t.config) for t in trials if t.status == Trial.RUNNING],
        dict(epoch_of)))
    log("begin")


def events(journal: Path) -> list[tuple]:
    out = []
    with open(journal, "rb") as f:
        while True:
            try:
                out.append(pickle.load(f))
            except EOFError:
                return out


def replay(journal: Path, name: str, budget: str, end: float) -> list[tuple[float, float, float]]:
    """[(seconds since the run was spawned, ETA the current code says, seconds actually left)]
    at every printed line of the journaled run (the study's one round; ``end``: when it
    ended; the journal's first record: when ``benchmarks/cost_model.py`` spawned it)."""
    from ray.tune.experiment import Trial

    from study.engine.tuner import study_progress
    from study.spec.resolved import ResolvedStudy
    from study.spec.spec_file import load_spec

    evs = events(journal)
    begin = evs[0][0]
    now = [evs[1][0] if len(evs) > 1 else begin]
    progress = None
    out = []
    for t, kind, *args in evs[1:]:
        now[0] = t
        if progress is None:
            progress = study_progress(ResolvedStudy(load_spec(name), budget))
            progress.clock, progress._start = (lambda: now[0]), t
        if kind == "started":
            progress.trial_started(*args)
        elif kind == "reported":
            progress.trial_reported(*args)
        elif kind == "ended":
            progress.trial_ended(*args)
        elif kind == "line":
            running, epoch_of = args
            trials = [SimpleNamespace(trial_id=i, config=c, status=Trial.RUNNING)
                      for i, c in running]
            eta = eta_seconds(progress.line(trials, epoch_of))
            if eta is not None:
                out.append((t - begin, eta, end - t))
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    journal, module, *argv = sys.argv[1:]
    if module != "study.run":
        raise SystemExit(f"usage: {sys.argv[0]} JOURNAL study.run ARGS...")
    _journal(journal)
    from study.run import exit_now, main
    exit_now(main(argv))
