"""A study never touches what it did not create, never shares its folder with a second writer,
and resumes only what it started (``python -m study.run`` as a user runs it)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from cli import one_error_line, run_cli
from studies import write_spec


def _study(tmp_path, *extra: str, name: str = "ok", timeout: float = 240):
    return run_cli("study.run", str(tmp_path / f"{name}.yaml"), "--budget", "smoke",
                   "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--quiet", *extra,
                   cwd=tmp_path, timeout=timeout)


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b""
            for p in sorted(folder.rglob("*"))}


def test_a_folder_the_study_did_not_create_is_refused_and_left_as_it_was(tmp_path):
    write_spec(tmp_path, "ok")
    mine = tmp_path / "results" / "ok"
    (mine / "thesis").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "thesis" / "draft.tex").write_text("also mine")
    before = _tree(mine)
    line = one_error_line(_study(tmp_path))
    assert str(mine) in line and "not made by hvae-study" in line and "--overwrite" in line
    assert _tree(mine) == before
    # a file the study would write, already there and not the study's: refused even with --overwrite
    (mine / "trials.parquet").write_text("someone else's table")
    line = one_error_line(_study(tmp_path, "--overwrite"))
    assert str(mine / "trials.parquet") in line and "does not belong" in line
    assert (mine / "trials.parquet").read_text() == "someone else's table"
    assert not (mine / "study.json").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_overwrite_removes_only_what_the_study_wrote(tmp_path):
    write_spec(tmp_path, "ok")
    folder = tmp_path / "results" / "ok"
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    first = _study(tmp_path, "--overwrite")  # beside the user's file, which stays
    assert first.returncode == 0, first.stderr
    state = json.loads((folder / "study.json").read_text())
    # the run ends by writing its report and putting it on the MLflow parent run
    assert f"report:   {folder / 'report' / 'report.md'}" in first.stdout
    assert f"/runs/{state['parent_run_id']}  (the answer" in first.stdout  # its page, linked
    assert (folder / "report" / "report.html").is_file()
    from mlflow.tracking import MlflowClient

    parent = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(state["parent_run_id"])
    assert parent.data.tags["mlflow.note.content"].startswith("**Question.** test study ok")
    assert state["study"] == "ok" and "trials.parquet" in state["manifest"]
    (folder / "mine").mkdir()
    (folder / "mine" / "keep.csv").write_text("1,2")
    (folder / "plots" / "my_extra_plot.png").write_bytes(b"png")  # inside a study folder: the study's
    line = one_error_line(_study(tmp_path))  # a second fresh run needs --overwrite or --resume
    assert "--resume" in line and "--overwrite" in line
    second = _study(tmp_path, "--overwrite")
    assert second.returncode == 0, second.stderr
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "mine" / "keep.csv").read_text() == "1,2"
    assert not (folder / "plots" / "my_extra_plot.png").exists()
    assert json.loads((folder / "study.json").read_text())["parent_run_id"] != state["parent_run_id"]


@pytest.mark.parametrize("where", ["cwd", "parent", "home"])
def test_the_working_directory_its_parents_and_home_are_never_a_results_folder(tmp_path, where):
    write_spec(tmp_path, "ok")
    home, work = tmp_path / "home", tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "ok.yaml").write_text((tmp_path / "ok.yaml").read_text())
    results = {"cwd": ".", "parent": "..", "home": str(home)}[where]
    r = run_cli("study.run", "ok.yaml", "--budget", "smoke", "--results", results, "--overwrite",
                cwd=work, env={"HOME": str(home)})
    line = one_error_line(r)
    assert "working directory" in line
    # (matplotlib keeps its cache under $HOME/.config: that is the user's matplotlib's)
    assert sorted(p.name for p in home.rglob("*") if ".config" not in p.parts) == ["ok.yaml", "work"]


def test_another_studys_folder_is_refused_even_with_overwrite(tmp_path):
    write_spec(tmp_path, "ok")
    other = tmp_path / "results" / "ok"
    other.mkdir(parents=True)
    (other / "study.json").write_text(json.dumps({"study": "other", "manifest": ["study.json"]}))
    line = one_error_line(_study(tmp_path, "--overwrite"))
    assert "study 'other'" in line
    assert json.loads((other / "study.json").read_text())["study"] == "other"


@pytest.mark.parametrize("name", ["../../etc/passwd", "a b", "x;rm -rf ~", "é", "a/b"])
def test_study_names_are_safe_slugs(tmp_path, name):
    line = one_error_line(run_cli("study.run", name, cwd=tmp_path))
    assert "unknown study" in line and "letters, digits" in line
    assert list(tmp_path.iterdir()) == []


def test_a_study_file_whose_name_is_not_a_slug_is_refused(tmp_path):
    path = write_spec(tmp_path, "ok")
    bad = tmp_path / "my study.yaml"
    bad.write_text(path.read_text().replace("name: ok", "name: my study"))
    line = one_error_line(run_cli("study.run", str(bad), "--budget", "smoke", cwd=tmp_path))
    assert "'my study' is not allowed" in line


def _start(tmp_path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "study.run", str(tmp_path / "slow.yaml"), "--budget", "smoke",
           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


@pytest.mark.slow
def test_one_writer_per_folder_and_no_stale_lock_after_sigkill(tmp_path):
    write_spec(tmp_path, "slow", factors={"lr": {"grid": [0.003, 0.004]}},
               budgets={"smoke": {"epochs": 150, "n_train": 1024}})
    first = _start(tmp_path, "--max-concurrent", "1")
    lock = tmp_path / "results" / "slow" / "study.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    for extra in ((), ("--resume",), ("--overwrite",)):
        line = one_error_line(_study(tmp_path, *extra, name="slow"))
        assert "in use by another study run" in line and f"pid {first.pid}" in line, line
        assert "on host" in line and "running since" in line
    os.killpg(first.pid, signal.SIGKILL)  # the kernel drops the lock with the process
    first.wait(30)
    resumed = _study(tmp_path, "--resume", name="slow", timeout=400)
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.slow
def test_two_new_studies_can_share_a_new_mlflow_store(tmp_path):
    for name in ("one", "two"):
        write_spec(tmp_path, name)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "study.run", str(tmp_path / f"{name}.yaml"), "--budget", "smoke",
         "--tracking-uri", f"sqlite:///{tmp_path}/shared.db", "--quiet", "--num-cpus", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("one", "two")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/shared.db")
    for name in ("one", "two"):
        exp = client.get_experiment_by_name(name)
        assert len(client.search_runs([exp.experiment_id])) == 3  # parent + 2 trials


@pytest.mark.slow
def test_resume_of_a_changed_study_is_refused_and_names_the_change(tmp_path):
    spec = write_spec(tmp_path, "ok")
    assert _study(tmp_path).returncode == 0
    folder = tmp_path / "results" / "ok"
    before = _tree(folder)
    spec.write_text(spec.read_text().replace("epochs: 2", "epochs: 3"))
    line = one_error_line(_study(tmp_path, "--resume"))
    assert "changed since it started" in line and "epochs: 2 -> 3" in line
    assert "--results DIR" in line
    assert _tree(folder) == before  # nothing trained, nothing written
    spec.write_text(spec.read_text().replace("epochs: 3", "epochs: 2").replace(
        "- 0.01\n", "- 0.02\n"))
    line = one_error_line(_study(tmp_path, "--resume"))
    assert "configuration (lr=0.01) removed" in line and "(lr=0.02) added" in line
    # what only the report reads may change
    spec.write_text(spec.read_text().replace("- 0.02\n", "- 0.01\n") + "responses: [test_ll]\n")
    r = run_cli("study.run", str(spec), "--budget", "smoke", "--tracking-uri",
                f"sqlite:///{tmp_path}/mlflow.db", "--resume", cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr
    # the finished study's progress counts its recorded trials as done, none as waiting
    counts = re.findall(r"\] (\d+)/(\d+) done", r.stdout)
    assert counts and all(a == b for a, b in counts) and " 0 waiting" in r.stdout, r.stdout
