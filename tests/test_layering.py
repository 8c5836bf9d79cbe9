"""The import graph against the layers ``study.LAYERS`` declares: every import counts (top level,
inside functions, under ``TYPE_CHECKING``); no circles between modules, no layer importing a
project package it is not given or a third-party package banned for it, and the report and the
trial configuration usable without PyTorch (a fresh interpreter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from study import LAYERS

TOP = ("study.run", "study.train", "study")  # the command lines and the package itself


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it; ``from X import y`` counts as ``X`` and
    as ``X.y`` (``y`` may be a module)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p, _module(p))
            for root in ("models", "study") for p in (REPO / root).rglob("*.py")}


def layer_of(module: str) -> str | None:
    """The layer a module belongs to (the longest declared prefix), None for the top."""
    hits = [layer for layer in LAYERS if module == layer or module.startswith(layer + ".")]
    return max(hits, key=len) if hits else None


def _within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_every_module_is_in_a_layer_or_at_the_top():
    graph = _graph()
    loose = sorted(m for m in graph if layer_of(m) is None and m not in TOP)
    assert not loose, f"modules in no layer of study.LAYERS: {loose}"
    for layer in LAYERS:  # each layer's package says what it may import
        doc = ast.get_docstring(ast.parse((REPO / layer.replace(".", "/") / "__init__.py").read_text()))
        assert doc and ("May import" in doc or layer == "models"), f"{layer}: no 'May import' paragraph"


def test_no_import_circles():
    graph = _graph()
    internal = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(internal[node]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(internal):
        if module not in state:
            visit(module, [module])


def test_no_layer_imports_what_it_is_not_given():
    graph = _graph()
    project = set(graph)
    wrong = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            continue
        allowed, banned = LAYERS[layer]
        for dep in sorted(deps):
            if dep in project and dep not in TOP[-1:]:
                if not _within(dep, (layer, *allowed)):
                    wrong.append(f"{module} imports {dep} (layer {layer_of(dep) or dep})")
            elif _within(dep, TOP[:2]):
                wrong.append(f"{module} imports the command line {dep}")
            elif dep.split(".")[0] in banned:
                wrong.append(f"{module} imports {dep}, banned for {layer}")
    assert not wrong, "\n".join(wrong)


def test_the_rule_catches_an_arrow_back_up_and_a_banned_library(tmp_path):
    """The checks above on two made-up modules: a trial module importing the engine inside a
    function, and a report module importing PyTorch under TYPE_CHECKING."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from study.engine.launch import run_study\n")
    assert "study.engine.launch" in _imports(bad, "study.trial.bad")
    assert not _within("study.engine.launch", ("study.trial", *LAYERS["study.trial"][0]))
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n")
    assert "torch" in _imports(bad, "study.report.bad") and "torch" in LAYERS["study.report"][1]


@pytest.mark.parametrize("modules", [
    "study.report.build, study.spec.config, study.spec.study_spec, study.spec.spec_file",
    "study.judge.verdicts, study.judge.sequential, study.store.results, study.store.tracking",
])
def test_the_report_and_the_trial_configuration_load_without_torch(modules):
    code = (f"import sys; import {modules}; "
            "from study.spec.config import trial_config; trial_config({'latents': [2, 2]}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
