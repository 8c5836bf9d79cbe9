"""The import graph: no circles, nothing flowing back up the layers, and the report and the
trial configuration usable without PyTorch (static analysis of the source, then a fresh
interpreter for the torch-free imports)."""

from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

#: lower layers may not import the higher ones named here
FORBIDDEN = {
    "models": ("study", "ray", "optuna", "mlflow"),
    "study.data": ("study.trainer", "study.trial", "study.launch", "study.recorder", "study.report"),
    "study.trainer": ("study.trial", "study.launch", "study.recorder", "ray", "optuna", "mlflow"),
    "study.trial": ("study.launch", "study.recorder", "ray", "optuna", "mlflow"),
    "study.report": ("torch", "models.hvae", "study.trainer", "study.plots", "ray"),
}


def _module(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module -> modules it imports at top level (imports inside functions are lazy by intent)."""
    graph: dict[str, set[str]] = {}
    for root in ("models", "study"):
        for path in (REPO / root).rglob("*.py"):
            name = _module(path)
            package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            found: set[str] = set()
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")
                        base = base[: len(base) - node.level + 1]
                        mod = ".".join(base + ([node.module] if node.module else []))
                    else:
                        mod = node.module or ""
                    found.add(mod)
                    found |= {f"{mod}.{a.name}" for a in node.names}
            graph[name] = found
    return graph


def _internal(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}


def test_no_import_circles():
    graph = _internal(_imports())
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_nothing_imports_back_up_the_layers():
    graph = _imports()
    for module, deps in graph.items():
        for prefix, banned in FORBIDDEN.items():
            if module == prefix or module.startswith(prefix + "."):
                bad = sorted(d for d in deps for b in banned if d == b or d.startswith(b + "."))
                assert not bad, f"{module} imports {bad}"


def test_the_report_and_the_trial_configuration_load_without_torch():
    code = ("import sys; import study.report, study.config, study.spec, study.spec_file; "
            "from study.config import trial_config; trial_config({'latents': [2, 2]}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
