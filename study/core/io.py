"""Atomic file writes: a temporary file in the same folder, then ``os.replace``; readers see
the old file or the new one, never half of one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: the marker in the name of a temporary file of an atomic write, ``.NAME.hvae-tmp-XXXX.tmp``:
#: what ``--overwrite`` recognises as its own (``study.store.folder``), so that a user's look-alike
#: hidden files (``.trials.parquet.bak``) are never taken for one
TMP_MARK = "hvae-tmp-"


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk and replaces
    ``path`` (the rename flushed too), on error it is removed. The result survives a crash of
    the process and of the machine, or does not exist."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TMP_MARK}", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a file the study writes follows the umask
    os.close(fd)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """JSON with NaN as null and infinities as "inf"/"-inf" (strict JSON), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_jsonable(data), f, indent=1)


def write_parquet(path: str | os.PathLike, table: pa.Table | dict[str, Any]) -> None:
    """A Parquet file written atomically from a table or a dict of equal-length columns."""
    if not isinstance(table, pa.Table):
        table = pa.table(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    """A text file written atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)




def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """A binary file written atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
