"""A chaos harness for results folders: random sequences of what users and machines do to a
study (interrupt it at a random moment, copy or move its folder, delete or truncate one of its
records, run a second folder of the same study on the same storage and MLflow store, resume,
overwrite, report), with the invariants of docs/faults.md checked after every step:

- **no byte outside a folder's own entries changes**: the user's files (in the workspace, in
  every results folder, on the shared storage) stay as they were; a step on one folder changes
  no other folder's entries and no other study's storage prefix;
- **every trial at most once in each store**, and exactly once when the study says it finished
  (exit 0): rows of ``trials.parquet``, Optuna trials of the folder's ``optuna.db``, MLflow
  child runs under the folder's parent run;
- **every exit is 0, 1, 2, 130 or 143** with at most one ``error:`` line and no traceback
  (a driver the harness SIGKILLs is the harness's doing and exempt); a refusal (2) writes
  nothing in the folder.

``Chaos(root, seed).run(steps)`` runs the real command-line tools (``python -m study.run`` /
``study.report``) on a tiny study; ``tests/test_chaos.py`` runs a short fixed-seed sequence,
``benchmarks/chaos.py`` a long one and prints its figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from studies import write_spec

REPO = Path(__file__).resolve().parents[1]
NAME = "chaos"
#: every entry a study may write in its folder (the manifest of study.store.folder.LAYOUT)
OWNED = ("study.json", "study.lock", "ray", "rounds", "optuna.db", "optuna.db-journal",
         "optuna.db-wal", "optuna.db-shm", "trials.parquet", "epochs.parquet", "scores.parquet",
         "plots", "report", "mlflow_unsent.json")
ALLOWED_EXITS = {0, 1, 2, 130, 143}
#: a user's files, which no step may touch: in the workspace, in each folder, on the storage
USER_FILES = {"notes.txt": "my notes", ".trials.parquet.bak": "my backup",
              ".study.json.orig": "{}", ".report.draft.md": "draft"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under ``root`` (relative path -> content hash or link target)."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in files + [d for d in dirs if (Path(dirpath) / d).is_symlink()]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            try:
                out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else digest(p)
            except OSError:
                out[rel] = "?"
    return out


@dataclass
class Outcome:
    op: str
    folder: str
    exit: int | None
    stderr: str = ""
    killed: bool = False


@dataclass
class Report:
    """What a chaos run did: operations by kind, exits by status, invariant checks made and
    broken (each with the step and what broke)."""

    operations: dict[str, int] = field(default_factory=dict)
    exits: dict[int, int] = field(default_factory=dict)
    checks: int = 0
    broken: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(self.operations.items()))
        exits = ", ".join(f"{k}: {v}" for k, v in sorted(self.exits.items()))
        return (f"{sum(self.operations.values())} operations ({ops}); exits {exits}; "
                f"{self.checks} invariant checks, {len(self.broken)} broken; "
                f"{self.seconds:.0f} s")


class Chaos:
    """The workspace of one chaos run (see the module docstring)."""

    def __init__(self, root: Path, seed: int, epochs: int = 60, max_interrupt_s: float = 14.0) -> None:
        self.root, self.rng = Path(root), random.Random(seed)
        self.root.mkdir(parents=True, exist_ok=True)
        self.spec = write_spec(self.root, NAME, factors={"lr": {"grid": [0.003, 0.006]}},
                               budgets={"smoke": {"epochs": epochs, "n_train": 512}},
                               checkpoint_every=5)
        self.uri = f"sqlite:///{self.root}/mlflow.db"
        self.bucket = self.root / "bucket"
        self.bucket.mkdir(exist_ok=True)
        self.max_interrupt_s = max_interrupt_s
        self.folders: list[Path] = []  # results folders that exist
        self.storage: dict[Path, bool] = {}  # folder -> runs with --storage
        self.count = 0
        self.last_target = ""  # the folder a copy or move made
        self.home: dict[str, str] = {}  # study id -> the folder it lives in (see ``check``)
        self.report = Report()
        for name, text in USER_FILES.items():
            (self.root / name).write_text(text)
        (self.bucket / "users_own_file.txt").write_text("on the shared storage")

    # ------------------------------------------------------------------ running the tools
    def _cmd(self, folder: Path, *flags: str) -> list[str]:
        cmd = [sys.executable, "-m", "study.run", str(self.spec), "--budget", "smoke",
               "--results", str(folder), "--tracking-uri", self.uri, "--quiet",
               "--mlflow-grace", "5"]
        if self.storage.get(folder):
            cmd += ["--storage", f"file://{self.bucket}"]
        return cmd + list(flags)

    def _run(self, op: str, folder: Path, cmd: list[str], interrupt: bool) -> Outcome:
        proc = subprocess.Popen(cmd, cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        killed = False
        if interrupt:
            sig = self.rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
            try:
                proc.wait(self.rng.uniform(2.0, self.max_interrupt_s))
            except subprocess.TimeoutExpired:
                try:
                    if sig == signal.SIGKILL:
                        os.killpg(proc.pid, signal.SIGKILL)
                        killed = True
                    else:
                        proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        try:
            out, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return Outcome(op, str(folder), None, err + "\n[the harness: no exit after 400 s]")
        if killed:  # reap what the driver left (its Ray) before the next step
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return Outcome(op, str(folder), proc.returncode, err, killed)

    # ------------------------------------------------------------------ operations
    def _new_folder(self) -> Path:
        self.count += 1
        return self.root / f"res{self.count}"

    def op_start(self) -> Outcome:
        folder = self._new_folder()
        self.storage[folder] = self.rng.random() < 0.5
        out = self._run("start", folder, self._cmd(folder), self.rng.random() < 0.5)
        if folder.exists():
            self.folders.append(folder)
        return out

    def add_user_files(self) -> None:
        """The user keeps notes (and look-alike hidden files) beside every study's results."""
        for folder in self.folders:
            if folder.is_dir():
                for name, text in USER_FILES.items():
                    if not (folder / name).exists():
                        (folder / name).write_text(text)

    def op_resume(self, folder: Path) -> Outcome:
        return self._run("resume", folder, self._cmd(folder, "--resume"), self.rng.random() < 0.4)

    def op_overwrite(self, folder: Path) -> Outcome:
        return self._run("overwrite", folder, self._cmd(folder, "--overwrite"),
                         self.rng.random() < 0.3)

    def op_report(self, folder: Path) -> Outcome:
        cmd = [sys.executable, "-m", "study.report", str(self.spec), "--results", str(folder),
               "--tracking-uri", self.uri]
        return self._run("report", folder, cmd, False)

    def op_copy(self, folder: Path) -> Outcome:
        target = self._new_folder()
        self.last_target = target.name
        shutil.copytree(folder, target, symlinks=True)
        self.folders.append(target)
        self.storage[target] = self.storage.get(folder, False)
        return Outcome("copy", str(folder), None)

    def op_move(self, folder: Path) -> Outcome:
        target = self._new_folder()
        self.last_target = target.name
        folder.rename(target)
        self.folders[self.folders.index(folder)] = target
        for sid, home in list(self.home.items()):
            if home == folder.name:
                self.home[sid] = target.name
        self.storage[target] = self.storage.pop(folder, False)
        return Outcome("move", str(folder), None)

    def op_damage(self, folder: Path) -> Outcome:
        """Delete or truncate one record of the folder."""
        trials = folder / "trials.parquet"
        choices = ["truncate study.json", "delete a trials.parquet row", "delete trials.parquet",
                   "truncate optuna.db", "delete study.json"]
        what = self.rng.choice(choices)
        if what == "truncate study.json" and (folder / "study.json").exists():
            data = (folder / "study.json").read_bytes()
            (folder / "study.json").write_bytes(data[: len(data) // 2])
        elif what == "delete study.json":
            (folder / "study.json").unlink(missing_ok=True)
        elif what == "delete a trials.parquet row" and trials.exists():
            table = pq.read_table(trials).to_pandas()
            if len(table):
                drop = table["trial_id"].iloc[0]
                table[table["trial_id"] != drop].to_parquet(trials, index=False)
        elif what == "delete trials.parquet":
            trials.unlink(missing_ok=True)
        elif what == "truncate optuna.db" and (folder / "optuna.db").exists():
            data = (folder / "optuna.db").read_bytes()
            (folder / "optuna.db").write_bytes(data[:1000])
        return Outcome(f"damage: {what}", str(folder), None)

    def choose(self, wanted: str | None = None) -> tuple[str, Path | None]:
        """The next operation (``wanted`` when it is possible, else drawn) and its folder:
        resume, copy, move, damage and report need a study's folder (one with
        ``study.json``), overwrite any folder, start a new one."""
        studies = [f for f in self.folders if (f / "study.json").exists()]
        reported = [f for f in studies if (f / "trials.parquet").exists()]
        kinds = {"start": 2.0 if len(studies) >= 2 else 6.0, "overwrite": 1.5 if self.folders else 0,
                 "resume": 5.0 if studies else 0, "copy": 1.5 if studies else 0,
                 "move": 1.5 if studies else 0, "damage": 1.5 if studies else 0,
                 "report": 1.0 if reported else 0}
        kind = wanted if kinds.get(wanted or "", 0) > 0 else \
            self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
        pool = {"start": [None], "overwrite": self.folders, "report": reported}.get(kind, studies)
        return kind, self.rng.choice(pool)

    def step(self, kind: str, folder: Path | None) -> Outcome:
        if kind == "start":
            return self.op_start()
        return getattr(self, f"op_{kind}")(folder)

    # ------------------------------------------------------------------ invariants
    def owner(self, rel: str) -> str:
        """The owner of a workspace path: ``folder:resN`` for a folder's own entries,
        ``storage:ID`` for a study's prefix, ``mlflow`` for the tracking store and its
        artifacts, ``user`` for everything else."""
        parts = rel.split("/")
        if parts[0] in ("mlflow.db", "mlflow.db-journal", "mlruns"):
            return "mlflow"
        if parts[0] == "bucket" and len(parts) >= 4 and parts[1] == NAME:
            return f"storage:{parts[2]}"
        if len(parts) >= 2 and parts[0].startswith("res") and (
                parts[1] in OWNED or _temporary_of(parts[1])):
            return f"folder:{parts[0]}"
        return "user"

    def study_id(self, folder: Path) -> str | None:
        try:
            return json.loads((folder / "study.json").read_text()).get("study_id")
        except (OSError, ValueError):
            return None

    def check(self, before: dict[str, str], after: dict[str, str], out: Outcome,
              id_before: str | None) -> list[str]:
        """The invariants after one step (see the module docstring); returns what broke.

        A study's storage prefix may change only in a step on its home folder (the folder that
        made the study, or the one it was moved to), on the folder it is after the step (a new
        study), or in a resume of a folder that holds the study (a copy whose original cannot
        be found continues the study, and the original is then refused)."""
        broken: list[str] = []
        self.report.checks += 1
        name = Path(out.folder).name
        if out.exit is not None or out.killed:
            status = -9 if out.killed else out.exit
            self.report.exits[status] = self.report.exits.get(status, 0) + 1
        if out.op in ("start", "resume", "overwrite", "report") and not out.killed:
            lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
            if out.exit not in ALLOWED_EXITS:
                broken.append(f"exit {out.exit}: {out.stderr[-300:]}")
            if len(lines) > 1:
                broken.append(f"{len(lines)} error lines: {lines}")
            if "Traceback" in out.stderr:
                broken.append("a traceback: " + out.stderr[-800:])
        id_after = self.study_id(Path(out.folder)) if Path(out.folder).exists() else None
        allowed = {i for i, home in self.home.items() if home == name}
        allowed |= {id_after} - set(self.home) - {None}
        if out.op == "resume" and id_before is not None:
            allowed.add(id_before)
        for rel in set(before) | set(after):
            if before.get(rel) == after.get(rel):
                continue
            owner = self.owner(rel)
            ok = owner == "mlflow" or owner == f"folder:{name}" or \
                (owner.startswith("storage:") and owner[8:] in allowed)
            if out.op in ("copy", "move") and rel.split("/")[0] in (name, self.last_target):
                ok = True  # the harness's own file operation
            if not ok:
                broken.append(f"{rel} ({owner}) changed by {out.op} of {name}")
            if out.exit == 2 and owner == f"folder:{name}" and not rel.endswith("study.lock") \
                    and out.op in ("start", "resume", "overwrite"):
                broken.append(f"refused (exit 2) but {rel} changed")
        if id_after is not None and id_after not in self.home:
            self.home[id_after] = name
        if out.op == "resume" and id_before is not None and out.exit != 2:
            self.home[id_before] = name
        broken += self._stores(out)
        return broken

    def _stores(self, out: Outcome) -> list[str]:
        """At most once in every store, for every folder; exactly once for a finished one."""
        broken: list[str] = []
        for folder in self.folders:
            if not folder.exists():
                continue
            try:
                state = json.loads((folder / "study.json").read_text())
            except (OSError, ValueError):
                continue
            rows = _rows(folder)
            if rows is not None and rows.duplicated(["trial_id", "seed"]).any():
                broken.append(f"{folder.name}: a trial twice in trials.parquet")
            optuna_ids = _optuna_ids(folder)
            if optuna_ids is not None and len(optuna_ids) != len(set(optuna_ids)):
                broken.append(f"{folder.name}: a Ray trial twice in optuna.db")
            children = _children(self.uri, state.get("parent_run_id"))
            tids = [c for c in children]
            if len(tids) != len(set(tids)):
                broken.append(f"{folder.name}: a trial twice under its MLflow parent run")
            finished = out.exit == 0 and out.op in ("start", "resume", "overwrite") and \
                Path(out.folder) == folder
            if finished:
                n = 2
                if rows is None or rows["trial_id"].nunique() != n or len(rows) != 2 * n:
                    broken.append(f"{folder.name}: exit 0 but trials.parquet has "
                                  f"{0 if rows is None else rows['trial_id'].nunique()} trials")
                if optuna_ids is None or len(set(optuna_ids)) != n:
                    broken.append(f"{folder.name}: exit 0 but optuna.db has {optuna_ids}")
                if len(set(tids)) != n:
                    broken.append(f"{folder.name}: exit 0 but MLflow has {len(set(tids))} "
                                  "child runs")
        return broken

    # ------------------------------------------------------------------ the run
    def run(self, steps: int, log=print, kinds: list[str] | None = None) -> Report:
        """``steps`` operations: ``kinds`` first (each where possible), then drawn ones."""
        start = time.monotonic()
        for i in range(steps):
            before = snapshot(self.root)
            kind, chosen = self.choose(kinds[i] if kinds and i < len(kinds) else None)
            id_before = self.study_id(chosen) if chosen is not None else None
            out = self.step(kind, chosen)
            after = snapshot(self.root)
            self.report.operations[out.op.split(":")[0]] = \
                self.report.operations.get(out.op.split(":")[0], 0) + 1
            if Path(out.folder) != chosen:
                id_before = None  # a new folder
            broken = self.check(before, after, out, id_before)
            tail = out.stderr.strip().splitlines()[-1:] if out.stderr.strip() else []
            log(f"step {i + 1}: {out.op} {Path(out.folder).name} -> "
                f"{'killed' if out.killed else out.exit} {tail}")
            for b in broken:
                self.report.broken.append(f"step {i + 1} ({out.op} {Path(out.folder).name}): {b}")
                log(f"  BROKEN: {b}")
            self.add_user_files()
        self.report.seconds = time.monotonic() - start
        return self.report


def _temporary_of(entry: str) -> bool:
    import re

    m = re.fullmatch(r"\.(.+)\.hvae-tmp-[A-Za-z0-9_]+\.tmp", entry)
    return bool(m and m.group(1) in OWNED)


def _rows(folder: Path):
    path = folder / "trials.parquet"
    if not path.exists():
        return None
    try:
        return pq.read_table(path).to_pandas()
    except Exception:  # noqa: BLE001 - damaged by the harness
        return None


def _optuna_ids(folder: Path) -> list[str] | None:
    import sqlite3

    db = folder / "optuna.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return [json.loads(r[0]) for r in con.execute(
                "SELECT value_json FROM trial_user_attributes WHERE key = 'ray_trial_id'")]
    except sqlite3.Error:
        return None


def _children(uri: str, parent: str | None) -> list[str]:
    """The ``ray_trial_id`` of every child run of ``parent`` (one per run)."""
    if not parent:
        return []
    import sqlite3

    db = uri[len("sqlite:///"):]
    if not os.path.exists(db):
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        runs = [r[0] for r in con.execute(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = ?", (parent,))]
        out = []
        for run in runs:
            lifecycle = con.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?",
                                    (run,)).fetchone()
            if lifecycle and lifecycle[0] != "active":
                continue
            tag = con.execute("SELECT value FROM tags WHERE run_uuid = ? AND key = 'ray_trial_id'",
                              (run,)).fetchone()
            out.append(tag[0] if tag else run)
        return out
