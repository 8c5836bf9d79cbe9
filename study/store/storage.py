"""Shared storage for a study on a cluster: any URI pyarrow's filesystems open (``s3://``,
``gs://``, ``file://``, ...).

With ``--storage URI`` (or ``$HVAE_STORAGE``), a study's prefix is ``URI/NAME/ID``, ``ID`` the
study's identity (``study.store.folder.StudyState.study_id``), so two results folders of one study
name never share a prefix and ``--overwrite`` clears only its own. Ray Tune keeps the
experiment state and every checkpoint under ``PREFIX/ray`` (its ``storage_path``: what lets a
trial restart on another node), and :class:`Mirror` copies the driver's results folder (Parquet
tables, plots, Optuna database, ``study.json``) to ``PREFIX/`` as trials end. A study whose head
node is lost can be resumed from any machine: ``--resume`` pulls the folder back when it is not
there (``find_study`` picks the prefix).

Credentials never appear here: pyarrow's S3/GCS filesystems take them from the environment or
the instance's role.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs as pafs

from study.core.errors import UserError
from study.core.io import atomic_path
from study.core.redact import redact
from study.store.folder import EPOCHS, LAYOUT, PLOTS, SCORES, STATE, TRIALS, StudyState

logger = logging.getLogger(__name__)


def open_storage(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of ``uri``; a clear error if pyarrow cannot open it."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for bad URIs
        raise UserError(f"--storage {redact(uri)!r} cannot be opened: "
                        f"{redact(str(err).splitlines()[0])}") from None


def study_uri(storage: str, name: str, study_id: str) -> str:
    """The prefix of study ``name`` with identity ``study_id`` under ``storage``."""
    return f"{storage.rstrip('/')}/{name}/{study_id}"


def find_study(storage: str, name: str, local: Path) -> tuple[str, StudyState]:
    """(prefix, state) of the study ``name`` to resume from ``storage`` into ``local`` (its
    results folder is not here, e.g. a lost head node): the only one under ``URI/NAME``, or the
    one whose folder was ``local``; anything else is one error naming the candidates."""
    import json

    fs, root = open_storage(storage)
    base = f"{root.rstrip('/')}/{name}"
    found: list[tuple[str, StudyState]] = []
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            continue
        try:
            with fs.open_input_stream(f"{info.path}/{STATE}") as f:
                state = StudyState(**json.loads(f.read()))
        except Exception:  # noqa: BLE001 - not a study's prefix (or unreadable): not a candidate
            continue
        if state.study == name and state.study_id == info.base_name:
            found.append((study_uri(storage, name, info.base_name), state))
    here = [f for f in found if f[1].path == str(local)]
    if len(found) == 1 or len(here) == 1:
        return (found if len(found) == 1 else here)[0]
    where = f"{redact(storage.rstrip('/'))}/{name}"
    if not found:
        raise UserError(f"--resume: {local} holds no study to resume (no {STATE}), and neither "
                        f"does {where}; run it without --resume first")
    listed = "; ".join(f"id {s.study_id} from {s.path} ({s.budget}, started {s.created or '?'})"
                       for _, s in sorted(found, key=lambda f: (f[1].created or "", f[0])))
    raise UserError(f"--resume: {where} holds {len(found)} studies named {name!r} ({listed}); "
                    "give the --results folder of the one to resume")


class Mirror:
    """Copies of files of the local results folder ``local`` under ``uri`` (see module doc)."""

    def __init__(self, uri: str, local: Path) -> None:
        self.uri, self.local = uri, Path(local)
        self.fs, self.root = open_storage(uri)

    def check_writable(self) -> None:
        """Write and delete a marker: fail before the study starts, not after its first trial."""
        marker = f"{self.root}/.hvae-write-test"
        try:
            self.fs.create_dir(self.root, recursive=True)
            with self.fs.open_output_stream(marker) as f:
                f.write(b"ok")
            self.fs.delete_file(marker)
        except Exception as err:  # noqa: BLE001
            raise UserError(f"--storage {redact(self.uri)!r} is not writable: "
                            f"{redact(str(err).splitlines()[0])}") from None

    def push(self, *relative: str) -> bool:
        """Copy these files or folders (relative to ``local``); False (and a warning) if the
        storage failed; the next push, at the latest the one at the end, copies them again."""
        try:
            for rel in relative:
                src = self.local / rel
                if not src.exists():
                    continue
                dst = f"{self.root}/{rel}"
                if src.is_dir():
                    self._push_dir(src, dst)
                    continue
                self._put(src, dst)
            return True
        except Exception as err:  # noqa: BLE001 - storage outages must not stop the study
            logger.warning("could not copy results to %s: %s", redact(self.uri),
                           redact(str(err).splitlines()[0]))
            return False

    def _put(self, src: Path, dst: str) -> None:
        """One local file to ``dst`` on the storage."""
        self.fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
        pafs.copy_files(str(src), dst, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    def _push_dir(self, src: Path, dst: str) -> None:
        """Copy the files of ``src`` that ``dst`` lacks, or holds with another size or an older
        time (one listing of ``dst``, then only those uploads: the end-of-study copy of
        ``plots/`` or ``scores.parquet/`` re-sends only what a failed per-trial copy missed)."""
        remote = {}
        if self.fs.get_file_info(dst).type == pafs.FileType.Directory:
            remote = {i.path[len(dst):].lstrip("/"): (i.size, i.mtime_ns)
                      for i in self.fs.get_file_info(pafs.FileSelector(dst, recursive=True))
                      if i.type == pafs.FileType.File}
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            rel = path.relative_to(src).as_posix()
            size, mtime = remote.get(rel, (None, None))
            stat = path.stat()
            if size == stat.st_size and mtime is not None and mtime >= stat.st_mtime_ns:
                continue
            self._put(path, f"{dst}/{rel}")

    def push_trial(self, trial_id: str) -> bool:
        """One trial's files, then ``trials.parquet`` (a trial's row arrives last)."""
        return self.push(f"{EPOCHS}/{trial_id}.parquet", f"{SCORES}/{trial_id}.parquet",
                         f"{PLOTS}/{trial_id}", TRIALS)

    def clear(self) -> None:
        """Delete this study's entries under its prefix (``--overwrite``): the names of the
        results folder's manifest, then the prefix itself if nothing else is left in it."""
        for entry in LAYOUT:
            path = f"{self.root}/{entry}"
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(path)
            elif info.type == pafs.FileType.File:
                self.fs.delete_file(path)
        try:
            left = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
            if not left and self.fs.get_file_info(self.root).type == pafs.FileType.Directory:
                self.fs.delete_dir(self.root)
        except OSError:
            pass  # an object store without folders: nothing to remove

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(f"{self.root}/{rel}").type != pafs.FileType.NotFound

    def pull(self) -> None:
        """Copy every file under ``uri`` except Ray's folder into ``local``."""
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True)):
            rel = info.path[len(self.root):].lstrip("/")
            if info.type != pafs.FileType.File or rel.split("/", 1)[0] == "ray":
                continue
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.fs.open_input_stream(info.path) as src, atomic_path(target) as tmp:
                Path(tmp).write_bytes(src.read())
