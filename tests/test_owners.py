"""Every format has one owner, and no other module of study/ spells its keys:

- a Tune result's keys: ``study/trial/records.py`` (``RESULT_KEYS``);
- the ``factor.`` / ``config.`` column prefixes of trials.parquet: ``study/store/columns.py``;
- study.json, its name and its fields: ``study/store/folder.py`` (``StudyState``);
- the structure of metric names (``kl_*``, ``auroc_SCORE_SET``, ...): ``study/spec/metric_names.py``;
- the text form of a seed range ("5-9"): ``study/spec/seed_range.py``.

The checks read the source (string constants that are not docstrings), so a new module that
spells a key fails here, and each check is shown to catch a made-up offender."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

from study.spec.seed_range import SeedRange
from study.store.folder import StudyState
from study.trial.records import RESULT_KEYS

#: study.json fields whose names are ordinary words elsewhere too (a dict of settings has a
#: "budget"; a path is a "path")
GENERIC = {"study", "created", "path", "host", "budget", "storage"}
#: result keys that also name another format (a final metric and Parquet column
#: ``diverged_epoch``, the Parquet column and MLflow tag ``restore_note``, the checkpoint's
#: ``history``): their spelling cannot tell the formats apart, so only the others are checked
SHARED = {"diverged_epoch", "restore_note", "history"}
METRIC_PREFIXES = ("kl_", "auroc_", "auprc_", "fpr80_", "np_auroc_", "exact_ll_auroc_", "test_ll_")


def _strings(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(node, text) of every string constant that is not a docstring, and of the literal head
    of every f-string."""
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant):
            docs.add(id(node.body[0].value))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr) and node.values and \
                isinstance(node.values[0], ast.Constant):
            docs.add(id(node.values[0]))
            out.append((node, str(node.values[0].value)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            out.append((node, node.value))
    return out


def _keys_read(tree: ast.AST) -> list[str]:
    """String keys used as ``x["key"]`` or ``x.get("key", ...)``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            out.append(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "pop", "setdefault") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.append(node.args[0].value)
    return out


def _prefix_tests(tree: ast.AST) -> list[str]:
    """The string arguments of every ``.startswith(...)`` call."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "startswith" and node.args:
            arg = node.args[0]
            items = arg.elts if isinstance(arg, ast.Tuple) else [arg]
            out += [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
    return out


def offences(path: Path, source: str | None = None) -> list[str]:
    """What ``path`` spells that another module owns."""
    rel = str(path.relative_to(REPO)) if path.is_absolute() else str(path)
    tree = ast.parse(source if source is not None else path.read_text())
    found = []
    state_fields = set(StudyState.model_fields) - GENERIC
    if rel != "study/trial/records.py":
        found += [f"result key {k!r}" for k in _keys_read(tree) if k in RESULT_KEYS - SHARED]
    if rel != "study/store/folder.py":
        found += [f"study.json field {k!r}" for k in _keys_read(tree) if k in state_fields]
        found += ["study.json by name" for _, s in _strings(tree) if s == "study.json"]
    if rel != "study/store/columns.py":
        found += [f"column prefix in {s!r}" for _, s in _strings(tree)
                  if s.startswith(("factor.", "config."))]
    if rel != "study/spec/metric_names.py":
        found += [f"metric-name prefix {p!r}" for p in _prefix_tests(tree) if p in METRIC_PREFIXES]
    if rel != "study/spec/seed_range.py":
        found += ["a seed range split on '-'" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "split" and node.args
                  and isinstance(node.args[0], ast.Constant) and node.args[0].value == "-"]
    return found


def test_no_module_spells_a_format_it_does_not_own():
    wrong = {str(p.relative_to(REPO)): offences(p) for p in sorted((REPO / "study").rglob("*.py"))}
    wrong = {k: v for k, v in wrong.items() if v}
    assert not wrong, wrong


@pytest.mark.parametrize("source, what", [
    ("def f(r):\n    return r.get('node_id')\n", "result key 'node_id'"),
    ("def f(r):\n    return r['restored_from']\n", "result key 'restored_from'"),
    ("def f(s):\n    return s['parent_run_id']\n", "study.json field 'parent_run_id'"),
    ("P = 'study.json'\n", "study.json by name"),
    ("def f(k):\n    return f'factor.{k}'\n", "column prefix in 'factor.'"),
    ("C = 'config.lr'\n", "column prefix in 'config.lr'"),
    ("def f(m):\n    return m.startswith(('x', 'kl_'))\n", "metric-name prefix 'kl_'"),
    ("def f(t):\n    return t.split('-')\n", "a seed range split on '-'"),
])
def test_each_check_catches_an_offender(source, what):
    assert what in offences(Path("study/engine/made_up.py"), source)
    assert offences(Path("study/engine/made_up.py"), '"""factor.depth in a docstring"""\n') == []


def test_a_seed_range_reads_back_what_it_writes():
    r = SeedRange(5, 9)
    assert r.text == "5-9" and SeedRange.parse(r.text) == r and r.seeds == [5, 6, 7, 8, 9]
    for bad in ("5", "9-5", "a-b", "5-9-11", "-1-3", ""):
        with pytest.raises(ValueError):
            SeedRange.parse(bad)
