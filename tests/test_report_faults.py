"""The report of an interrupted or partly failed study says what is missing and claims no
pruning savings it did not make (constructed Parquet tables, no Ray)."""

from __future__ import annotations

import pandas as pd
from studies import write_spec

from study.core.io import write_parquet
from study.report.build import build_report
from study.spec.spec_file import load_spec


def _trials(results, statuses: dict[float, tuple[str, int]]) -> None:
    rows = []
    for lr, (status, epochs) in statuses.items():
        for seed in (0, 1):
            rows.append({"trial_id": f"t{lr}", "seed": seed,
                         "trial_status": status, "seed_status": status, "epochs": epochs,
                         "factor.lr": lr, "test_ll": -1.0 if status == "finished" else None})
    write_parquet(results / "trials.parquet", pd.DataFrame(rows))


def test_missing_trials_are_counted_and_failed_trials_save_nothing(tmp_path):
    spec = load_spec(str(write_spec(tmp_path, "rep", factors={"lr": {"grid": [0.1, 0.2, 0.3]}},
                                    budgets={"smoke": {"epochs": 10}})))
    results = tmp_path / "res"
    results.mkdir()
    (results / "study.json").write_text('{"study": "rep", "budget": "smoke"}')
    _trials(results, {0.1: ("finished", 10)})
    text = build_report(spec, results).read_text()
    assert "- trials: 1 of 3 (1 finished, 0 diverged, 0 pruned, 0 failed)" in text
    assert "**2 of the study's 3 trials are missing**" in text
    assert "saved by pruning" not in text

    _trials(results, {0.1: ("failed", 0), 0.2: ("failed", 0), 0.3: ("failed", 0)})
    text = build_report(spec, results).read_text()
    assert "3 failed" in text and "missing" not in text and "saved by pruning" not in text

    _trials(results, {0.1: ("finished", 10), 0.2: ("pruned", 4), 0.3: ("failed", 1)})
    text = build_report(spec, results).read_text()
    assert "14 of the 20 they would have run unpruned (30% saved by pruning)" in text


def _ready(tmp_path, where):
    """A constructed results folder of study "rep" at ``where`` (two finished trials with
    learning curves) and the study's spec."""
    spec = load_spec(str(write_spec(tmp_path, "rep", factors={"lr": {"grid": [0.1, 0.2]}},
                                    budgets={"smoke": {"epochs": 3}})))
    where.mkdir(parents=True, exist_ok=True)
    (where / "study.json").write_text('{"study": "rep", "budget": "smoke"}')
    _trials(where, {0.1: ("finished", 3), 0.2: ("finished", 3)})
    curves = [{"trial_id": f"t{lr}", "epoch": e, "seed": s, "val_bound": -2.0 + 0.1 * e}
              for lr in (0.1, 0.2) for e in (1, 2, 3) for s in (0, 1)]
    (where / "epochs.parquet").mkdir(exist_ok=True)
    for lr in (0.1, 0.2):
        write_parquet(where / "epochs.parquet" / f"t{lr}.parquet",
                      pd.DataFrame([c for c in curves if c["trial_id"] == f"t{lr}"]))
    return spec


def test_a_report_belongs_to_its_folder(tmp_path):
    """Issue 22: ``study.report other.yaml --results <ok's folder>`` wrote other's question into
    ok's report/ and logged it to ok's MLflow parent run, exit 0."""
    from cli import one_error_line, run_cli

    _ready(tmp_path, tmp_path / "res")
    write_spec(tmp_path, "other")
    before = sorted(p.name for p in (tmp_path / "res").iterdir())
    line = one_error_line(run_cli("study.report", str(tmp_path / "other.yaml"), "--results",
                                  str(tmp_path / "res"), cwd=tmp_path))
    assert "holds the results of study 'rep', not 'other'" in line
    assert "python -m study.report rep --results" in line
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == before  # no report/ written
    (tmp_path / "res" / "study.json").write_text('{"study": "rep", "bud')  # truncated
    line = one_error_line(run_cli("study.report", str(tmp_path / "rep.yaml"), "--results",
                                  str(tmp_path / "res"), "--no-mlflow", cwd=tmp_path))
    assert "study.json: not a readable study state" in line


def test_a_full_disk_leaves_the_previous_report_whole(tmp_path):
    """Issue 22: a report written on a full disk left a 0-byte PNG and a traceback. Every file
    is written under a temporary name and renamed, so the previous report stays whole."""
    import subprocess

    from cli import one_error_line, run_cli

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    try:
        _ready(tmp_path, disk / "res")
        args = ("study.report", str(tmp_path / "rep.yaml"), "--results", str(disk / "res"),
                "--no-mlflow")
        first = run_cli(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        report = disk / "res" / "report"
        before = {p.name: p.read_bytes() for p in report.iterdir()}
        assert {"report.md", "learning_curves.png"} <= set(before)
        with open(disk / "filler", "wb") as f:  # fill the disk to its last block
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        (report / "learning_curves.png").unlink()  # this one must be written again, and cannot
        line = one_error_line(run_cli(*args, cwd=tmp_path), status=1)
        assert line.startswith("error: the report could not be written") and \
            "the previous report, if any, is as it was" in line
        after = {p.name: p.read_bytes() for p in report.iterdir()}
        assert all(after[name] == data for name, data in after.items() if name in before)
        assert all(len(data) > 0 for data in after.values())  # no empty file
        assert not [p for p in report.iterdir() if "hvae-tmp" in p.name]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_run_whose_report_cannot_be_made_says_so_and_keeps_its_results(tmp_path, capsys):
    """``study.run`` ends by writing the report; when that fails (here ``report`` is a file,
    so its folder cannot be made) every trial is still recorded: one ``error:`` line says so
    and gives the command that makes the report, exit 1, and the results are untouched."""
    from study.engine.launch import StudyOutcome
    from study.run import _report_end, parser

    results = tmp_path / "res"
    spec = _ready(tmp_path, results)
    (results / "report").write_text("not a folder")
    before = (results / "trials.parquet").read_bytes()
    out = StudyOutcome(results, "run-id", {"finished": 2}, 2, f"sqlite:///{tmp_path}/m.db")
    args = parser().parse_args([str(tmp_path / "rep.yaml"), "--results", str(results)])
    assert _report_end(args, spec, out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: every trial is recorded, but the report "
                                               "could not be made (")
    # the study as the user named it: a study file's path here
    assert err[0].endswith(f"make it with: python -m study.report {tmp_path / 'rep.yaml'} "
                           f"--results {results}")
    assert (results / "trials.parquet").read_bytes() == before
    assert (results / "report").read_text() == "not a folder"
