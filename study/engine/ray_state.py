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

Ray also pickles the scheduler and the callbacks by module path: ``missing_code`` reads which
of this project's classes and functions a saved file names (from the pickle's opcodes, nothing
unpickled or imported), so a study started by a version whose modules have since moved is
refused with one line instead of failing inside ``Tuner.restore``.
"""

from __future__ import annotations

import ast
import base64
import importlib.util
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


def _globals(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every class or function a pickle refers to, read from its opcodes
    without unpickling (the strings before each ``STACK_GLOBAL``, memo lookups followed)."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, object] = {}
    recent: list[object] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                found.add((module, name))
                recent.append(None)
            elif op.name == "STACK_GLOBAL":
                if len(recent) >= 2 and all(isinstance(x, str) for x in recent[-2:]):
                    found.add((str(recent[-2]), str(recent[-1])))
                recent.append(None)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(arg)))
            elif "UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                recent.append(arg)
            else:
                recent.append(None)
    except ValueError:
        pass  # cut short: is_whole says so
    return found


def missing_code(data: bytes, package: str = "study") -> list[str]:
    """The ``package`` classes and functions a pickled Ray file refers to that this version of
    the code does not have (a study started before the code changed): ``module.name`` each."""
    out = []
    for module, attr in sorted(_globals(data)):
        if (module == package or module.startswith(package + ".")) \
                and attr.split(".")[0] not in _top_level_names(module):
            out.append(f"{module}.{attr}")
    return out


def _top_level_names(module: str) -> set[str]:
    """The names a module of this project defines or imports at its top level, read from its
    source (not imported: the check runs before Ray starts, and importing the engine's modules
    would pull Ray Tune into the main thread); empty when there is no such module."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return set()
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return set()
    names: set[str] = set()
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names
