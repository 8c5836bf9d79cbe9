"""Shared storage for a study on a cluster: any URI pyarrow's filesystems open (``s3://``,
``gs://``, ``file://``, ...).

With ``--storage URI`` (or ``$HVAE_STORAGE``), Ray Tune keeps the experiment state and every
checkpoint under ``URI/NAME/ray`` (its ``storage_path``: what lets a trial restart on another
node), and :class:`Mirror` copies the driver's results folder (Parquet tables, plots, Optuna
database, ``study.json``) to ``URI/NAME/`` as trials end. A study whose head node is lost can be
resumed from any machine: ``--resume`` pulls the folder back when it is not there.

Credentials never appear here: pyarrow's S3/GCS filesystems take them from the environment or
the instance's role.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs as pafs

from .errors import UserError
from .folder import EPOCHS, LAYOUT, PLOTS, SCORES, TRIALS
from .io import atomic_path
from .redact import redact

logger = logging.getLogger(__name__)


def open_storage(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) of ``uri``; a clear error if pyarrow cannot open it."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for bad URIs
        raise UserError(f"--storage {redact(uri)!r} cannot be opened: "
                        f"{redact(str(err).splitlines()[0])}") from None


def study_uri(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


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
        """Delete this study's entries under ``uri`` (``--overwrite``): the names of the
        results folder's manifest, nothing else a user may keep there."""
        for entry in LAYOUT:
            path = f"{self.root}/{entry}"
            info = self.fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                self.fs.delete_dir(path)
            elif info.type == pafs.FileType.File:
                self.fs.delete_file(path)

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
