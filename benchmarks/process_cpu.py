"""A command's wall time and the CPU seconds of its process tree by kind of process (the study
driver, Ray Tune's trial actors, pack servers, Ray's own processes); a helper of the benchmarks
``study_overhead.py`` and ``pack_end_to_end.py``.

The tree is sampled every ``every_s`` seconds (psutil); a process's CPU time is its last
sample, so a process that lives less than one interval is missed and the last ``every_s`` of
each process's life is not counted (at most 0.2 s each at the default).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

#: (text in a process's command line, its kind), first match wins; a Ray worker that has not
#: yet taken an actor or task is ``default_worker.py`` (or ``setup_worker.py``, the start of
#: one with a runtime environment), then ``ray::IDLE``, until it does
ROLES = (("study.run", "driver (Tune loop, recorder, Optuna, MLflow, Parquet)"),
         ("ray::IDLE", "Ray workers starting or idle"),
         ("ray::PackServer", "pack servers"),
         ("ray::hvae-pack-", "pack servers"),  # a named actor's title while it starts
         ("ray::", "trial actors (Ray Tune)"),
         ("default_worker", "Ray workers starting or idle"),
         ("setup_worker", "Ray workers starting or idle"),
         ("raylet", "raylet"), ("gcs_server", "GCS"),
         ("dashboard", "dashboard head and agent"), ("agent", "dashboard head and agent"),
         ("monitor", "log monitor and autoscaler monitor"))
STARTING = "Ray workers starting or idle"


def role(proc: psutil.Process) -> str | None:
    """What a process of the study's tree is, for the CPU-time table (None: it has just
    ended, and its command line cannot be read)."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return None
    if not cmd:
        return None
    return next((name for key, name in ROLES if key in cmd), "other Ray processes")


@dataclass
class Sampled:
    """What ``run_sampled`` saw: wall seconds, exit status, output (stdout and stderr
    together), CPU seconds and process count by kind."""
    wall: float
    returncode: int
    output: str
    cpu: dict[str, float] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        """``kind N processes S CPU s`` per kind, most CPU first, joined by "; "."""
        return "; ".join(f"{name} {self.cpu[name]:.1f} ({self.processes[name]})"
                         for name in sorted(self.cpu, key=lambda k: -self.cpu[k]))


def run_sampled(args: list[str], cwd: Path, env: dict | None = None,
                every_s: float = 0.2) -> Sampled:
    """Run ``args`` to its end, sampling its process tree's CPU times."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    root, seen = psutil.Process(proc.pid), {}
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()  # a full pipe would stall the command
    while proc.poll() is None:
        for p in [root, *root.children(recursive=True)]:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    kind = seen.get(p.pid, (STARTING,))[0]
                    if kind == STARTING:  # a worker's kind is known once it takes an actor
                        kind = role(p) or kind
                    seen[p.pid] = (kind, t.user + t.system)
            except psutil.Error:
                pass
        time.sleep(every_s)
    wall = time.perf_counter() - start
    reader.join()
    out = Sampled(wall, proc.returncode, "".join(chunks))
    for kind, seconds in seen.values():
        out.cpu[kind] = out.cpu.get(kind, 0.0) + seconds
        out.processes[kind] = out.processes.get(kind, 0) + 1
    return out
