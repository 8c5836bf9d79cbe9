"""A whole copy of Ray Tune's experiment files, kept after each recorded trial.

Ray Tune writes its experiment files (``experiment_state-*.json``, ``searcher-state-*.pkl``,
``tuner.pkl``, ``trainable.pkl``, ...) by copying them from a staging folder, not atomically:
a disk that fills during the copy leaves one cut short and the study could not be resumed
(the full-disk fault test saw a truncated JSON once and a truncated pickle once). After each
recorded trial the recorder keeps every top-level file of the experiment in one JSON file,
written atomically and only when every file is whole; ``--resume`` puts the copy back when one
of Ray's files is unreadable. The copy is at most one trial behind; a trial that went on after
it resumes from its own newest checkpoint.

Only local experiments are kept (with ``--storage`` the mirror is the copy).
"""

from __future__ import annotations

import base64
import json
import pickletools
from pathlib import Path

#: the kept copy, in the experiment folder (a name none of Ray's file searches matches)
KEPT_STATE = "hvae-kept-experiment-state.json"


def is_whole(name: str, data: bytes) -> bool:
    """Whether one of Ray's experiment files reads whole: JSON parses, a pickle's opcodes run
    to its STOP (checked without unpickling, so no class is imported or run). Pickles are told
    by their protocol byte, as Ray names some ``.json``."""
    if not data:
        return False
    try:
        if name.endswith(".pkl") or data[:1] == b"\x80":  # basic-variant-state-*.json is a pickle
            ops = list(pickletools.genops(data))
            return bool(ops) and ops[-1][0].name == "STOP"
        json.loads(data)
    except (ValueError, TypeError):
        return False
    return True


def _files(experiment: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(experiment.iterdir())
            if p.is_file() and not p.is_symlink() and p.name != KEPT_STATE
            and p.suffix in (".json", ".pkl")}


def keep(experiment: Path) -> None:
    """Copy every top-level file of a local Ray Tune experiment into ``KEPT_STATE`` when all
    are whole; otherwise (cut short already, or a full disk now) the previous copy stays."""
    from study.core.io import write_text

    try:
        files = _files(experiment)
    except OSError:
        return
    if not files or not all(is_whole(n, d) for n, d in files.items()):
        return
    text = json.dumps({n: base64.b64encode(d).decode() for n, d in files.items()})
    try:
        write_text(experiment / KEPT_STATE, text)
    except OSError:
        pass  # a full disk: the previous copy stays whole (atomic write)


def kept(read: bytes | None) -> dict[str, bytes] | None:
    """The files of a kept copy (its bytes as read, or None), if it is readable and whole."""
    if read is None:
        return None
    try:
        files = {n: base64.b64decode(t, validate=True) for n, t in json.loads(read).items()}
    except (ValueError, TypeError, AttributeError):
        return None
    return files if files and all(is_whole(n, d) for n, d in files.items()) else None


def restore(experiment: Path) -> bool:
    """Put the kept copy back where one of Ray Tune's files is unreadable; whether it did.

    Ray restores the newest ``experiment_state-*`` and ``searcher-state-*`` by name, so every
    top-level file is replaced by the copy's (newer, cut-short ones removed)."""
    from study.core.io import write_bytes

    try:
        files = _files(experiment)
        copy = kept((experiment / KEPT_STATE).read_bytes()) \
            if (experiment / KEPT_STATE).is_file() else None
    except OSError:
        return False
    if copy is None or all(is_whole(n, d) for n, d in files.items()):
        return False
    for name in files:
        if name not in copy:
            (experiment / name).unlink()
    for name, data in copy.items():
        write_bytes(experiment / name, data)
    return True
