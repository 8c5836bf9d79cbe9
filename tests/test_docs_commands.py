"""Every command the README and docs/ show works as written (issue 26): the lines of each page's
``bash`` blocks and its inline commands, each checked in the fast form that proves it would run:

- ``python -m study.run ...``: run as a ``--dry-run`` (the study, budget and every flag
  accepted, the preflight checks passed); ``--list`` as written;
- ``python -m pytest ...``: collects the tests with those arguments;
- ``python -m study.report``, ``python -m study.train`` and ``python benchmarks/*.py``: the
  program runs as far as its argument parser, which accepts the words as written
  (``tests/parse_only.py``; nothing is trained or timed); a study named must exist;
- ``ray ...`` and ``mlflow ...``: their own command-line parsers (click) accept the command,
  subcommands and options (an inline mention: its subcommands and the options it names
  exist), and ``ray job submit``'s entry point is checked as a command too;
- ``python -c``: run;
- ``aws``: the ``cluster`` extra the page installs provides it (no cloud here);
- install lines and other programs (venv, pip, ssh, sed, shell assignments): not run.

A command of a kind not listed fails the test, so a new kind of command gets a check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import click
import pytest
from cli import run_cli
from conftest import REPO, SHARED_DATA
from doc_commands import Command, page_commands

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "docs" / "results" / "README.md"]
COMMANDS = [c for page in PAGES
            for c in page_commands(page.read_text(), str(page.relative_to(REPO)),
                                   str(SHARED_DATA))]
#: programs whose lines are not run: installs and other tools' own commands
NOT_RUN = ("pip", "ssh", "sed", "export", "git", "python3", ".", "source")
PARSED = ("study.report", "study.train")


def _click_command(group: click.Group, name: str, words: list[str], whole: bool) -> tuple:
    """The (sub)command ``words`` name and its parsed parameters, by the program's own click
    parser; ``whole=False`` (an inline mention such as ``ray job stop``): only the subcommands
    must exist."""
    ctx = group.make_context(name, list(words)) if whole else None
    cmd: click.Command = group
    rest = list(words)
    while isinstance(cmd, click.Group):
        if whole:
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            break
        sub_name, cmd, rest = cmd.resolve_command(ctx or click.Context(group), rest)
        if whole:
            ctx = cmd.make_context(sub_name, rest, parent=ctx)
    return cmd, (ctx.params if whole and ctx is not None else {})


def _entry_points() -> list[Command]:
    """The commands ``ray job submit -- ...`` runs on the cluster."""
    from ray.scripts.scripts import cli

    out = []
    for c in COMMANDS:
        if c.tool == "ray" and c.args[:2] == ["job", "submit"] and "--" in c.args:
            cmd, params = _click_command(cli, "ray", c.args, True)
            out.append(Command(tuple(params["entrypoint"]), True, c.where + " (ray job submit)"))
    return out


ALL = COMMANDS + _entry_points()


def _ids(cs: list[Command]) -> list[str]:
    return [f"{c.where}: {' '.join(c.words)[:70]}" for c in cs]


def _unique(cs: list[Command]) -> list[Command]:
    seen, out = set(), []
    for c in cs:
        if c.words not in seen:
            seen.add(c.words)
            out.append(c)
    return out


def _kind(c: Command) -> str:
    if c.tool == "study.run":
        return ("as written" if "--list" in c.args else "dry-run") if c.args else "program"
    if c.tool == "pytest":
        return "pytest"
    if c.tool in PARSED or c.tool.startswith("benchmarks/"):
        return "parse" if c.fenced or c.args else "program"
    if c.tool in ("ray", "mlflow", "-c", "aws"):
        return c.tool
    if c.tool in NOT_RUN or "=" in c.tool:
        return "not run"
    return "unknown"


def test_the_docs_show_commands_of_every_kind_this_test_checks():
    kinds = {_kind(c) for c in ALL}
    assert "unknown" not in kinds, [c.words for c in ALL if _kind(c) == "unknown"]
    assert {"dry-run", "as written", "pytest", "parse", "program", "ray", "mlflow", "-c",
            "aws"} <= kinds, kinds
    assert len(ALL) > 60, len(ALL)


DRY_RUNS = _unique([c for c in ALL if _kind(c) == "dry-run"])


@pytest.fixture(scope="module")
def dry_run_results(tmp_path_factory) -> dict[tuple[str, ...], dict]:
    """Every study command's dry run, in one interpreter (``tests/dry_runs.py``: the rates
    timed for one command's models are reused by the next, as in any one process)."""
    r = subprocess.run([sys.executable, str(REPO / "tests" / "dry_runs.py"),
                        json.dumps([c.args for c in DRY_RUNS])],
                       cwd=tmp_path_factory.mktemp("dry_runs"), capture_output=True, text=True,
                       timeout=540, env=os.environ | {"HVAE_DATA_DIR": str(SHARED_DATA)})
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return {tuple(row["args"]): row for row in rows}


@pytest.mark.xdist_group("dry_runs")  # one worker runs them: the fixture once
@pytest.mark.parametrize("command", DRY_RUNS, ids=_ids(DRY_RUNS))
def test_a_study_command_of_the_docs_runs_as_a_dry_run(command, dry_run_results):
    r = dry_run_results[tuple(command.args)]
    assert r["status"] == 0, f"{command.where}: {' '.join(command.words)}: {r['stderr']}"
    assert "estimated" in r["stdout"] and "nothing was run or written" in r["stdout"]


AS_WRITTEN = _unique([c for c in ALL if _kind(c) == "as written"])


@pytest.mark.parametrize("command", AS_WRITTEN, ids=_ids(AS_WRITTEN))
def test_a_quick_study_command_of_the_docs_runs_as_written(command, tmp_path):
    r = run_cli("study.run", *command.args, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, f"{command.where}: {' '.join(command.words)}: {r.stderr}"


PYTEST = _unique([c for c in ALL if _kind(c) == "pytest"])


@pytest.mark.parametrize("command", PYTEST, ids=_ids(PYTEST))
def test_a_test_command_of_the_docs_collects_the_tests(command):
    r = subprocess.run([sys.executable, "-m", "pytest", *command.args, "--collect-only", "-q",
                        "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"{command.where}: {r.stdout[-2000:]}{r.stderr}"
    assert "tests collected" in r.stdout


PARSES = _unique([c for c in ALL if _kind(c) == "parse"])


@pytest.fixture(scope="module")
def parse_results() -> dict[tuple[str, ...], dict]:
    """Every program-and-arguments command parsed by its program, in one interpreter."""
    words = [(["-m", c.tool] if not c.tool.startswith("benchmarks/") else [c.tool]) + c.args
             for c in PARSES]
    r = subprocess.run([sys.executable, str(REPO / "tests" / "parse_only.py"), json.dumps(words)],
                       cwd=REPO, capture_output=True, text=True, timeout=600,
                       env=os.environ | {"HVAE_DATA_DIR": str(SHARED_DATA)})
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return {tuple(row["command"]): row for row in rows}


@pytest.mark.parametrize("command", PARSES, ids=_ids(PARSES))
def test_a_program_of_the_docs_accepts_its_arguments_as_written(command, parse_results):
    words = (["-m", command.tool] if not command.tool.startswith("benchmarks/")
             else [command.tool]) + command.args
    row = parse_results[tuple(words)]
    helped = "--help" in command.args and row["status"] == 0  # argparse's help ends it first
    assert row["parsed"] or helped, \
        f"{command.where}: {' '.join(command.words)}: exit {row['status']}: {row['error']}"
    if command.tool == "study.report":
        from study.spec.spec_file import load_spec

        load_spec(command.args[0])  # the study it names exists
    if command.tool == "study.train" and not helped:
        from study.spec.config import trial_config
        from study.train import parser, values_from

        trial_config(values_from(parser().parse_args(command.args)))


PROGRAMS = _unique([c for c in ALL if _kind(c) == "program"])


@pytest.mark.parametrize("command", PROGRAMS, ids=_ids(PROGRAMS))
def test_a_program_the_docs_name_exists(command):
    if command.tool.startswith("benchmarks/"):
        assert (REPO / command.tool).is_file(), command.where
    else:
        import importlib.util

        assert importlib.util.find_spec(command.tool) is not None, command.where


CLICK = _unique([c for c in ALL if _kind(c) in ("ray", "mlflow")])


@pytest.mark.parametrize("command", CLICK, ids=_ids(CLICK))
def test_a_ray_or_mlflow_command_of_the_docs_is_accepted_by_its_parser(command):
    if command.tool == "ray":
        from ray.scripts.scripts import cli
    else:
        from mlflow.cli import cli
    try:
        if command.fenced:
            _click_command(cli, command.tool, command.args, True)
        else:  # a mention: its subcommands, and the options it names
            own = command.args[:command.args.index("--")] if "--" in command.args \
                else command.args  # after "--": the entry point's words
            names = [a for a in own if not a.startswith("-")]
            cmd, _ = _click_command(cli, command.tool, names, False)
            known = {o for p in cmd.params for o in p.opts}
            unknown = [a for a in own if a.startswith("-") and a.split("=")[0] not in known]
            assert not unknown, f"{command.where}: {' '.join(command.words)}: {unknown}"
    except click.UsageError as err:
        pytest.fail(f"{command.where}: {' '.join(command.words)}: {err}")


def test_the_click_check_refuses_what_its_program_would():
    from ray.scripts.scripts import cli

    for words in (["up", "--no-such-option", "x.yaml"], ["no-such-command"], ["job", "logs"]):
        with pytest.raises(click.UsageError):
            _click_command(cli, "ray", words, True)
    assert _click_command(cli, "ray", ["job", "stop"], False)[0].name == "stop"


@pytest.mark.parametrize("command", [c for c in ALL if _kind(c) == "-c"],
                         ids=_ids([c for c in ALL if _kind(c) == "-c"]))
def test_a_python_snippet_of_the_docs_runs(command):
    r = subprocess.run([sys.executable, *command.words[1:]], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{command.where}: {r.stderr}"


def test_the_aws_cli_the_cluster_doc_uses_comes_with_the_extra_it_installs():
    aws = [c for c in ALL if c.tool == "aws"]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert aws and all("cluster" in c.where for c in aws)
    assert 'pip install -e ".[cluster]"' in (REPO / "docs" / "cluster.md").read_text()
    assert any(d.startswith("awscli") for d in extras["cluster"]), extras["cluster"]


def test_parse_only_refuses_a_flag_its_program_does_not_have():
    words = [["benchmarks/cost_model.py", "--no-such-flag"], ["benchmarks/cost_model.py"],
             ["-m", "study.report", "spirals_depth", "--no-mlflow"],
             ["tests/doc_commands.py"]]  # a script with no parser is not started
    r = subprocess.run([sys.executable, str(REPO / "tests" / "parse_only.py"), json.dumps(words)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(row["parsed"], row["status"]) for row in rows] == [(False, 2), (True, 0),
                                                               (True, 0), (False, 2)]
    assert "--no-such-flag" in rows[0]["error"] and "not run" in rows[3]["error"]
