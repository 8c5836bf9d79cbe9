"""What the README promises of its own commands (issue 26): the commands it shows are there,
its training example makes the configuration it describes, the tools it opens are installed,
the runner's synopsis names only flags the runner has, and the single-process test line works.
Every command of the README and docs/ is run in its fast form by tests/test_docs_commands.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from cli import run_cli
from conftest import REPO, SHARED_DATA
from doc_commands import page_commands

README = (REPO / "README.md").read_text()
#: the README's fenced commands (its inline ones and docs/ are tests/test_docs_commands.py's)
COMMANDS = [c for c in page_commands(README, "README.md", str(SHARED_DATA)) if c.fenced]


def test_the_readme_has_the_commands_this_test_runs():
    assert {"study.run", "study.train", "pytest", "mlflow"} <= {c.tool for c in COMMANDS}


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.tool == "study.train"])
def test_the_readme_training_command_makes_the_configuration_it_describes(command):
    from study.spec.config import trial_config
    from study.train import parser, values_from

    cfg = trial_config(values_from(parser().parse_args(command.args)))
    assert cfg.dataset == "spirals" and [list(h) for h in cfg.hidden] == [[64, 64], [32, 32]]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.tool in ("mlflow",
                                                                       "optuna-dashboard")])
def test_a_tool_the_readme_opens_is_installed(command):
    tool = shutil.which(command.tool, path=str(REPO / ".venv" / "bin")) or \
        shutil.which(command.tool)
    if command.tool == "optuna-dashboard":  # the optional extra: its install line exists
        assert 'pip install -e ".[dashboard]"' in README
        return
    assert tool, f"{command.tool} is not on PATH"
    r = subprocess.run([tool, *command.args, "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_single_process_test_line_works():
    assert "python -m pytest\n-n 0" in README or "python -m pytest -n 0" in README
    r = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "--collect-only", "-q",
                        "tests/test_stats.py"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("tool", ["study.run", "study.report"])
def test_the_synopsis_names_only_flags_the_command_has(tool):
    synopsis = README.split("## The study runner", 1)[1].split("```\n", 2)[1]
    lines = " ".join(line for line in synopsis.splitlines() if tool in line or
                     (line.startswith(" ") and tool == "study.run"))
    flags = set(re.findall(r"--[a-z][a-z-]*", lines))
    assert flags, synopsis
    r = run_cli(tool, "--help", cwd=REPO)
    missing = {f for f in flags if f not in r.stdout}
    assert not missing, missing
