"""Every command the README shows works as written (issue 26): its fenced commands are
extracted and run, the slow ones in their fast form (a study as ``--dry-run``, a training's
flags parsed by its own parser); install lines are not run. The runner's synopsis names only
flags the runner has, and the single-process test line works."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
from cli import run_cli
from conftest import REPO

README = (REPO / "README.md").read_text()
INSTALL = ("python3 -m venv", "pip install")


def fenced_commands() -> list[str]:
    """Every command line of the README's ``bash`` blocks (comments and continuations
    joined), install lines excepted."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith(INSTALL):
                out.append(line)
    return out


COMMANDS = fenced_commands()


def test_the_readme_has_the_commands_this_test_runs():
    kinds = {shlex.split(c)[:3][-1] if c.startswith("python -m") else shlex.split(c)[0]
             for c in COMMANDS}
    assert {"study.run", "study.train", "pytest", "mlflow"} <= kinds, COMMANDS


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python -m study.run")])
def test_a_study_command_of_the_readme_runs_as_a_dry_run(command, tmp_path, shared_data):
    args = shlex.split(command)[2:] + ["--dry-run"]
    r = run_cli(*args, cwd=REPO, env={"HVAE_DATA_DIR": str(shared_data)}, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "estimated" in r.stdout and "nothing was run or written" in r.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("python -m study.train")])
def test_a_training_command_of_the_readme_parses_and_makes_a_valid_configuration(command):
    from study.spec.config import trial_config
    from study.train import parser, values_from

    cfg = trial_config(values_from(parser().parse_args(shlex.split(command)[3:])))
    assert cfg.dataset == "spirals" and [list(h) for h in cfg.hidden] == [[64, 64], [32, 32]]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] in ("mlflow",
                                                                            "optuna-dashboard")])
def test_a_tool_the_readme_opens_is_installed(command):
    tool = shutil.which(command.split()[0], path=str(REPO / ".venv" / "bin")) or \
        shutil.which(command.split()[0])
    if command.startswith("optuna-dashboard"):  # the optional extra: its install line exists
        assert 'pip install -e ".[dashboard]"' in README
        return
    assert tool, f"{command.split()[0]} is not on PATH"
    r = subprocess.run([tool, *command.split()[1:], "--help"], capture_output=True, text=True,
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
