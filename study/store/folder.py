"""A study's results folder: its layout, who it is, who owns it, who is writing it, what it ran.

``StudyFolder`` is the one place that knows the folder's file names (``LAYOUT``) and reads or
writes ``study.json`` (a :class:`StudyState`). Its rules:

- **Identity.** A study gets a random id when it starts (``study_id``); ``study.json`` records
  it with the folder's path. Everything outside the folder that the study writes is tied to
  the id (the MLflow parent run's tag, the Optuna study's user attribute, the pruner saved in
  Ray's experiment state, the ``--storage`` prefix), and every store inside the folder is found
  relative to where the folder is now. A folder whose recorded path is not its own was moved
  (resumed as the same study) or copied: a copy whose original is still at the recorded path
  is refused, so a copy never writes into the original's runs and records.
- **Ownership.** ``study.json`` is the folder's marker: it names the study and lists, as its
  manifest, every entry this project writes there. A folder is used only if it is new, empty or
  carries this study's marker; ``--overwrite`` removes exactly the manifest's entries (and the
  temporary files of interrupted atomic writes of them, named ``.ENTRY.hvae-tmp-XXXX.tmp``),
  never anything else, and never the folder itself, the working directory or a parent of it.
- **Only real files.** No entry of the layout, and nothing inside one, may be a symbolic link
  (a write or a removal would reach what the link points at); the lock and ``study.json`` are
  opened without following links.
- **One writer.** ``study.lock`` is held with ``fcntl.flock`` for the whole run. The kernel
  releases it when the process dies, so a SIGKILL leaves no stale lock; a second run on the
  same folder is refused with the holder's pid, host and start time.
- **What it ran.** ``study.json`` records the resolved study (see ``study.spec.fingerprint``); a
  ``--resume`` with a changed study file is refused, naming what changed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from study.core.errors import UserError
from study.core.io import TMP_MARK, write_json

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
#: the temporary name of an interrupted atomic write of an entry (``study.core.io.atomic_path``)
_TEMPORARY = re.compile(rf"\.(?P<entry>.+)\.{re.escape(TMP_MARK)}[A-Za-z0-9_]+\.tmp")

#: study names: letters, digits, ``_`` and ``-``; the study file's name is the study's name
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def check_name(name: str, where: str = "study name") -> str:
    """``name`` if it is a safe slug (it becomes a folder and an MLflow experiment name)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise UserError(f"{where} {name!r} is not allowed: use letters, digits, '_' and '-' "
                        "(at most 100, starting with a letter or digit)")
    return name


def new_study_id() -> str:
    """A random identity for a new study (12 hex digits)."""
    return secrets.token_hex(6)


class StudyState(BaseModel):
    """``study.json``: the folder's marker, manifest, identity and what the study ran.

    ``study_id`` is made when the study starts (None in folders of older versions);
    ``generation`` counts the runs that took the folder (the MLflow parent run carries the same
    count, so a second folder of the same study that continued it is noticed); ``path``,
    ``host`` and ``inode`` say where the folder was last taken. URIs are saved with passwords
    masked."""

    model_config = ConfigDict(extra="allow")

    study: str
    study_id: str | None = None
    generation: int = 0
    created: str | None = None
    path: str | None = None
    host: str | None = None
    #: the folder's file system identity ("device:inode"): kept by a move on one file system,
    #: new in a copy
    inode: str | None = None
    manifest: list[str] = list(LAYOUT)
    budget: str | None = None
    parent_run_id: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resolved: dict[str, Any] | None = None
    fingerprint: str | None = None
    sequential: dict[str, Any] | None = None
    rounds: list[dict[str, Any]] | None = None
    #: the run's seeds are the study file's confirmatory range (``--confirmatory``)
    confirmatory: bool = False
    #: the SHA-256 of the study file when the study started (what recipe the verdicts are of)
    spec_sha256: str | None = None


class UnreadableState(UserError):
    """``study.json`` exists but cannot be read as a study state."""


def open_regular(path: Path, flags: int, link: str) -> int:
    """A descriptor of ``path`` opened without following a symbolic link (``O_NOFOLLOW``) and
    only if it is a regular file (a FIFO or a device named like a state file is never used);
    ``link`` ends the one-line error a link gets."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link; {link}") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path} is not a regular file; move it away or use another --results")
    return fd


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``, a regular file read without following a link (``open_regular``)."""
    fd = open_regular(path, os.O_RDONLY, "hvae-study reads and writes only real files in a "
                      "results folder: put the file itself there, or use another --results")
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_state(path: Path) -> StudyState | None:
    """The study state in the file ``path`` (None if there is none); an unreadable one is an
    :class:`UnreadableState` naming the file and what is wrong."""
    if not os.path.lexists(path):
        return None
    try:
        data = json.loads(read_regular(path).decode())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return StudyState(**data)
    except UserError:
        raise
    except (OSError, ValueError, ValidationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnreadableState(f"{path}: not a readable study state ({first[:160]})") from None


class Holder:
    """Who holds a folder's lock."""

    def __init__(self, pid: int, host: str, started: str) -> None:
        self.pid, self.host, self.started = pid, host, started

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, running since {self.started}"


_UNKNOWN = Holder(-1, "unknown", "unknown")


class FolderLock:
    """An exclusive ``flock`` on ``path`` (created if missing, never through a symbolic link),
    with the holder's identity written into it. ``acquire`` raises :class:`FolderInUse` if
    another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self, flags: int) -> int:
        """A descriptor of the lock file: never through a link, only a regular file."""
        return open_regular(self.path, flags, "the study's lock file is never written through a "
                            "link: remove the link, or use another --results")

    def holder(self) -> Holder | None:
        """The identity the current holder wrote, if the file says one."""
        try:
            data = json.loads(read_regular(self.path).decode() or "{}")
            return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
        except (OSError, ValueError, KeyError, TypeError, UserError):
            return None

    def busy(self) -> Holder | None:
        """Probe without keeping the lock: the holder if another process holds it, else None
        (nothing is created when the file does not exist)."""
        if self.held or not os.path.lexists(self.path):
            return None
        fd = self._open(os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self.holder() or _UNKNOWN
        finally:
            os.close(fd)  # closing releases a probe's lock
        return None

    def acquire(self) -> None:
        fd = self._open(os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUse(self.path.parent, self.holder() or _UNKNOWN) from None
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


def resolve_results(path: str | os.PathLike) -> Path:
    """The absolute path of a results folder as given (links in it followed); a symbolic link
    loop, or a link to nothing, is one clear error."""
    given = Path(path)
    try:
        resolved = given.expanduser().resolve(strict=False)
    except (RuntimeError, OSError) as err:  # RuntimeError: a loop (Python < 3.13), else ELOOP
        raise UserError(f"--results {given}: cannot be resolved ({err}); a symbolic link in it "
                        "points back at itself: give a real folder") from None
    if given.is_symlink() and not resolved.exists():
        raise UserError(f"--results {given} is a symbolic link to {resolved}, which does not "
                        "exist; give a real folder")
    return resolved


class StudyFolder:
    """The results folder of study ``name`` at ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, name: str) -> None:
        self.path = resolve_results(path)
        self.name = check_name(name)
        self.lock = FolderLock(self.path / LOCK)
        self.created = False  # this invocation made the folder
        #: set by ``check``: the previous state an ``--overwrite`` replaces (None: none, or
        #: unreadable), whether this folder is that study's home (not a copy), and where a
        #: resumed study's folder was before it was moved
        self.replaced: StudyState | None = None
        self.replaced_home = False
        self.unreadable = False
        self.moved_from: Path | None = None
        self._state: StudyState | None = None

    # ------------------------------------------------------------------ layout and state
    def __truediv__(self, entry: str) -> Path:
        return self.path / entry

    @property
    def optuna_url(self) -> str:
        """The Optuna database, where the folder is now."""
        return f"sqlite:///{self.path / OPTUNA_DB}"

    def read_state(self) -> StudyState | None:
        """``study.json`` (None if there is none); an unreadable one is :class:`UnreadableState`."""
        return read_state(self.path / STATE)

    @property
    def state(self) -> StudyState:
        """The state this run wrote or resumed (``begin`` / ``resume_as``)."""
        if self._state is None:
            raise RuntimeError("the study's state is not written yet")
        return self._state

    def _write(self, state: StudyState) -> None:
        write_json(self.path / STATE, state.model_dump(mode="json"))
        self._state = state

    def _inode(self) -> str:
        st = os.stat(self.path)
        return f"{st.st_dev}:{st.st_ino}"

    def begin(self, study_id: str, **fields: Any) -> StudyState:
        """Write the state of a new study: its identity, where it lives, and ``fields``."""
        state = StudyState(study=self.name, study_id=study_id, generation=1,
                           created=time.strftime("%Y-%m-%d %H:%M:%S %Z"), path=str(self.path),
                           host=socket.gethostname(), inode=self._inode(), **fields)
        self._write(state)
        return state

    def resume_as(self, state: StudyState, **fields: Any) -> StudyState:
        """Write the state of a resumed study: one more generation, its folder where it is
        now, and ``fields``."""
        state = state.model_copy(update={"generation": state.generation + 1,
                                         "path": str(self.path), "host": socket.gethostname(),
                                         "inode": self._inode(), "manifest": list(LAYOUT),
                                         **fields})
        self._write(state)
        return state

    def update(self, **fields: Any) -> StudyState:
        """Change ``fields`` of this run's state and write it."""
        state = self.state.model_copy(update=fields)
        self._write(state)
        return state

    # ------------------------------------------------------------------ checks (no writes)
    def _refuse_dangerous_location(self) -> None:
        cwd = Path.cwd().resolve()
        home = Path.home().resolve()
        if self.path == cwd or self.path in cwd.parents or self.path in (home, Path("/")):
            raise UserError(f"--results {self.path} is the working directory, a parent of it or "
                            "the home folder; give the study a folder of its own (e.g. "
                            f"results/{self.name})")

    def _entries(self) -> list[str]:
        """What the folder holds besides the lock file (which only this project writes)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != LOCK)

    def _refuse_links(self) -> None:
        """No entry of the layout, and nothing inside one, is a symbolic link."""
        for entry in LAYOUT:
            top = self.path / entry
            if top.is_symlink():
                raise UserError(f"{top} is a symbolic link (to {os.readlink(top)}); hvae-study "
                                "reads and writes only real files in a results folder: put the "
                                "file itself there, or use another --results")
            if entry == LOCK or not top.is_dir():
                continue
            for root, dirs, files in os.walk(top, followlinks=False):
                for name in dirs + files:
                    path = Path(root) / name
                    if path.is_symlink():
                        raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}) "
                                        f"inside the study's {entry}; remove it (hvae-study "
                                        "writes and removes only real files there)")

    def where_is_home(self, state: StudyState) -> str:
        """``same`` (the folder is where its state says), ``moved`` (the same folder, or the
        recorded place no longer holds this study) or ``copy`` (it does: this folder is a
        copy). A move on one file system keeps the folder's inode; a copy, or a move across file
        systems, makes a new one, and is told from a copy only by the original's absence."""
        if not state.path or Path(state.path) == self.path:
            return "same"
        if self.is_home_of(state):
            return "moved"
        try:
            other = read_state(Path(state.path) / STATE)
        except UserError:
            other = None
        if other is not None and other.study_id == state.study_id:
            return "copy"
        return "moved"

    def is_home_of(self, state: StudyState) -> bool:
        """Whether this folder is surely the one ``state``'s study was made in or moved to (its
        path and inode, or its inode after a move): only then may ``--overwrite`` delete that
        study's copy on shared storage. A copy, or a folder copied from another disk, may not."""
        return state.inode is not None and self.path.is_dir() and state.inode == self._inode()

    def check(self, resume: bool, overwrite: bool) -> StudyState | None:
        """Decide, without writing anything, whether this run may use the folder; returns the
        saved state of the study to resume (None for a new study)."""
        self._refuse_dangerous_location()
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"results folder {self.path} is not a directory")
        holder = self.lock.busy()
        if holder is not None:
            raise FolderInUse(self.path, holder)
        self._refuse_links()
        self.replaced, self.replaced_home, self.unreadable = None, False, False
        try:
            state = self.read_state() if self.path.is_dir() else None
        except UnreadableState as err:
            if resume:
                raise UnreadableState(f"{err}; this folder cannot be resumed: start the study "
                                      "anew with --overwrite (it removes only what a study "
                                      "writes)") from None
            if not overwrite:
                raise UnreadableState(f"{err}; add --overwrite to start the study anew here (it "
                                      "removes only what a study writes), or use another "
                                      "--results") from None
            self.unreadable = True
            self._check_writable()
            return None
        if state is not None and state.study != self.name:
            raise UserError(f"results folder {self.path} holds the results of study "
                            f"{state.study!r}, not {self.name!r}; use another --results")
        if resume:
            return self._check_resumable(state)
        if state is not None:
            if not overwrite:
                raise UserError(f"{self.path} already holds this study's results; add --resume to "
                                "continue it, --overwrite to replace it, or --results DIR")
            self.replaced = state
            self.replaced_home = self.is_home_of(state)
            self._check_writable()
            return None
        entries = self._entries()
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
        return None

    def _check_resumable(self, state: StudyState | None) -> StudyState:
        if state is None:
            raise UserError(f"--resume: {self.path} holds no study to resume (no {STATE}); "
                            "run it without --resume first")
        if state.study_id is None:
            raise UserError(f"--resume: {self.path / STATE} was written by an older hvae-study "
                            "and records no study identity, so it cannot be resumed safely; "
                            "start the study anew with --overwrite")
        if state.resolved is None:
            raise UserError(f"--resume: {self.path / STATE} records no resolved study (what its "
                            "trials train), so a resume could mix settings; start the study anew "
                            "with --overwrite")
        home = self.where_is_home(state)
        if home == "copy":
            raise UserError(f"--resume: results folder {self.path} is a copy of {state.path} "
                            f"(study {self.name!r}, id {state.study_id}), which is still there; "
                            f"resume that folder (--results {state.path}), or start this copy "
                            "anew as a study of its own with --overwrite")
        self.moved_from = Path(state.path) if home == "moved" else None
        return state

    def _check_writable(self) -> None:
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            why = "not a directory" if not existing.is_dir() else "permission denied"
            raise UserError(f"results folder {self.path} is not writable: {existing} is {why}")

    # ------------------------------------------------------------------ taking it
    def take(self, resume: bool, overwrite: bool) -> StudyState | None:
        """Create the folder if needed, lock it for this process, check again under the lock
        (another run may have started in between) and, for ``--overwrite``, remove the previous
        run's entries. Returns the state to resume (``resume``) or None."""
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

    def owned_names(self) -> set[str]:
        """The entries ``--overwrite`` may remove: the manifest's (all a study can write when
        the manifest is lost), never the lock, which is held."""
        manifest = self.replaced.manifest if self.replaced is not None else list(LAYOUT)
        return {e for e in manifest if e in LAYOUT and e != LOCK}

    def remove_owned(self) -> list[str]:
        """Remove the manifest's entries, matched by exact name, and the temporary files of
        interrupted writes of them (``.ENTRY.hvae-tmp-XXXX.tmp``), nothing else; the lock file
        stays (it is held). Returns what was removed."""
        owned = self.owned_names()
        removed = []
        for entry in self._entries():
            temporary = _TEMPORARY.fullmatch(entry)
            if entry in owned or (temporary is not None and temporary["entry"] in owned):
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
