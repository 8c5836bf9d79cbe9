"""docs/ARCHITECTURE.md's layout names exactly the modules the tree has, the fault and bad-input
tables name tests that exist, and no function in study/ or models/ is longer than 60 lines (a
reader should see a function whole)."""

from __future__ import annotations

import ast
import re

from conftest import REPO

MAX_FUNCTION_LINES = 60


def layout_paths(text: str) -> set[str]:
    """The files the Layout block of ARCHITECTURE.md names, as paths from the repository root:
    a line's indent (2 spaces a level) places it under the folder lines above it; a line's
    first column lists names separated by ", " (a name ending in "/" is a folder)."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    stack: list[str] = []
    paths: set[str] = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        first = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        names = [n.strip() for n in first.split(",") if n.strip()]
        stack = stack[:depth]
        for name in names:
            if name.endswith("/"):
                stack = stack[:depth] + [name.rstrip("/")]
            else:
                paths.add("/".join(stack + [name]))
    return paths


def test_the_layout_names_every_module_and_only_modules_that_exist():
    named = layout_paths((REPO / "docs" / "ARCHITECTURE.md").read_text())
    modules = {str(p.relative_to(REPO)) for root in ("models", "study")
               for p in (REPO / root).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    named_modules = {p for p in named if p.startswith(("models/", "study/"))}
    assert sorted(named_modules - modules) == [], "named in ARCHITECTURE.md, not in the tree"
    assert sorted(modules - named_modules) == [], "in the tree, not named in ARCHITECTURE.md"


def test_the_layout_parser_reads_nested_folders_and_lists():
    text = "## Layout\n```\nstudy/\n  run.py   x\n  core/   y\n    io.py, errors.py   z\n" \
           "  data/  d\n    idx.py\nbenchmarks/  b\n```\n"
    assert layout_paths(text) == {"study/run.py", "study/core/io.py", "study/core/errors.py",
                                  "study/data/idx.py"}


def test_no_function_is_longer_than_60_lines():
    long = []
    for root in ("models", "study"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, "\n".join(long)


def test_every_test_the_fault_tables_name_exists():
    """docs/faults.md and docs/bad-input.md name a test for each row (``file.py::test_name``):
    each must be a test of that file."""
    defined = {(p.name, m.group(1)) for p in (REPO / "tests").glob("test_*.py")
               for m in re.finditer(r"^def (test_\w+)", p.read_text(), re.M)}
    named = {(m.group(1), m.group(2)) for doc in ("faults.md", "bad-input.md")
             for m in re.finditer(r"(test_\w+\.py)::(test_\w+)", (REPO / "docs" / doc).read_text())}
    assert len(named) > 20
    assert sorted(named - defined) == []
