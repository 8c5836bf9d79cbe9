"""A study's results folder: its layout, who owns it, who is writing it, what it ran.

``StudyFolder`` is the one place that knows the folder's file names (``LAYOUT``), and its rules:

- **Ownership.** ``study.json`` is the folder's marker: it names the study and lists, as its
  manifest, every entry this project writes there. A folder is used only if it is new, empty or
  carries this study's marker; ``--overwrite`` removes exactly the manifest's entries (and the
  temporary files of interrupted atomic writes of them), never anything else, and never the
  folder itself, the working directory or a parent of it.
- **One writer.** ``study.lock`` is held with ``fcntl.flock`` for the whole run. The kernel
  releases it when the process dies, so a SIGKILL leaves no stale lock; a second run on the
  same folder is refused with the holder's pid, host and start time.
- **What it ran.** ``study.json`` records the resolved study (see ``study.fingerprint``); a
  ``--resume`` with a changed study file is refused, naming what changed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import write_json

STATE = "study.json"
LOCK = "study.lock"
RAY_DIR = "ray"
ROUNDS_DIR = "rounds"  # Ray Tune experiments of the rounds of --until-decided
OPTUNA_DB = "optuna.db"
TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
SCORES = "scores.parquet"
PLOTS = "plots"
REPORT_DIR = "report"
UNSENT = "mlflow_unsent.json"
#: every entry a study writes into its folder (its manifest); sqlite adds its journal files
LAYOUT = (STATE, LOCK, RAY_DIR, ROUNDS_DIR, OPTUNA_DB, f"{OPTUNA_DB}-journal", f"{OPTUNA_DB}-wal",
          f"{OPTUNA_DB}-shm", TRIALS, EPOCHS, SCORES, PLOTS, REPORT_DIR, UNSENT)
#: what the end of a study copies to shared storage (trials' own files are copied as they end)
MIRRORED = (TRIALS, EPOCHS, SCORES, PLOTS, OPTUNA_DB, STATE, UNSENT)

#: study names: letters, digits, ``_`` and ``-``; the study file's name is the study's name
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def check_name(name: str, where: str = "study name") -> str:
    """``name`` if it is a safe slug (it becomes a folder and an MLflow experiment name)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{where} {name!r} is not allowed: use letters, digits, '_' and '-' "
                        "(at most 100, starting with a letter or digit)")
    return name


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock."""

    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, running since {self.started}"


class FolderLock:
    """An exclusive ``flock`` on ``path`` (created if missing), with the holder's identity
    written into it. ``acquire`` raises :class:`FolderInUse` if another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> Holder | None:
        """The identity the current holder wrote, if the file says one."""
        try:
            data = json.loads(self.path.read_text() or "{}")
            return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def busy(self) -> Holder | None:
        """Probe without keeping the lock: the holder if another process holds it, else None
        (nothing is created when the file does not exist)."""
        if self.held or not self.path.exists():
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder() or Holder(-1, "unknown", "unknown")
        finally:
            os.close(fd)  # closing releases a probe's lock
        return None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(self.path.parent, self.holder() or Holder(-1, "unknown", "unknown"))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the kernel drops the lock with the last descriptor
            self._fd = None


class FolderInUse(UserError):
    def __init__(self, folder: Path, holder: Holder) -> None:
        super().__init__(f"results folder {folder} is in use by another study run "
                         f"({holder.describe()}); wait for it to end, or use another --results")


class StudyFolder:
    """The results folder of study ``name`` at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, name: str) -> None:
        self.path = Path(path).resolve()
        self.name = check_name(name)
        self.lock = FolderLock(self.path / LOCK)
        self.created = False  # this invocation made the folder

    # ------------------------------------------------------------------ layout
    def __truediv__(self, entry: str) -> Path:
        return self.path / entry

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.path / OPTUNA_DB}"

    def state(self) -> dict[str, Any]:
        """``study.json`` ({} if there is none); a broken one is a clear error."""
        path = self.path / STATE
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable study state ({err}); this folder cannot be "
                            "resumed: start the study anew with --overwrite") from None

    def write_state(self, **fields: Any) -> None:
        """Merge ``fields`` into ``study.json`` (the marker: study name and manifest)."""
        state = self.state() | fields | {"study": self.name, "manifest": list(LAYOUT)}
        write_json(self.path / STATE, state)

    # ------------------------------------------------------------------ checks (no writes)
    def _refuse_dangerous_location(self) -> None:
        cwd = Path.cwd().resolve()
        home = Path.home().resolve()
        if self.path == cwd or self.path in cwd.parents or self.path in (home, Path("/")):
            raise UserError(f"--results {self.path} is the working directory, a parent of it or "
                            "the home folder; give the study a folder of its own (e.g. "
                            f"results/{self.name})")

    def _foreign_entries(self) -> list[str]:
        """What the folder holds besides the lock file (which only this project writes)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK)

    def check(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        """Decide, without writing anything, whether this run may use the folder; returns the
        saved state of a previous invocation ({} for a new study)."""
        self._refuse_dangerous_location()
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"results folder {self.path} is not a directory")
        holder = self.lock.busy()
        if holder is not None:
            raise FolderInUse(self.path, holder)
        state = self.state() if self.path.is_dir() else {}
        owner = state.get("study")
        if state and owner != self.name:
            raise UserError(f"results folder {self.path} holds the results of study {owner!r}, "
                            f"not {self.name!r}; use another --results")
        if resume:
            if not state:
                raise UserError(f"--resume: {self.path} holds no study to resume (no {STATE}); "
                                "run it without --resume first")
            return state
        if state:
            if not overwrite:
                raise UserError(f"{self.path} already holds this study's results; add --resume to "
                                "continue it, --overwrite to replace it, or --results DIR")
            return {}
        entries = self._foreign_entries()
        if entries:
            if not overwrite:
                raise UserError(
                    f"results folder {self.path} exists, is not empty and was not made by "
                    f"hvae-study (no {STATE}); use another --results, or add --overwrite to "
                    "write this study beside what is there (none of it is removed)")
            clash = sorted(set(entries) & set(LAYOUT))
            if clash:
                raise UserError(f"{self.path / clash[0]} exists and does not belong to study "
                                f"{self.name!r}; move it away or use another --results")
        self._check_writable()
        return {}

    def _check_writable(self) -> None:
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            why = "not a directory" if not existing.is_dir() else "permission denied"
            raise UserError(f"results folder {self.path} is not writable: {existing} is {why}")

    # ------------------------------------------------------------------ taking it
    def take(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        """Create the folder if needed, lock it for this process, check again under the lock
        (another run may have started in between) and, for ``--overwrite``, remove the previous
        run's entries. Returns the previous state (``resume``) or {}."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.path.mkdir()
                self.created = True
            except FileExistsError:
                pass
        self.lock.acquire()
        try:
            state = self.check(resume, overwrite)
            if overwrite and not resume:
                self.remove_owned()
        except BaseException:
            self.give_up()
            raise
        return state

    def remove_owned(self) -> list[str]:
        """Remove the manifest's entries (and temporary files of them), nothing else; the lock
        file stays (it is held). Returns what was removed."""
        manifest = self.state().get("manifest") or list(LAYOUT)
        owned = {e for e in manifest if e in LAYOUT and e != LOCK}
        removed = []
        for entry in sorted(self._foreign_entries()):
            tmp_of = entry[1:].split(".tmp")[0] if entry.startswith(".") else None
            if entry in owned or any(tmp_of and tmp_of.startswith(o + ".") for o in owned):
                path = self.path / entry
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(entry)
        return removed

    def give_up(self) -> None:
        """Release the lock; a folder this invocation created and left empty is removed."""
        self.lock.release()
        if self.created:
            (self.path / LOCK).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise

    def release(self) -> None:
        self.lock.release()
