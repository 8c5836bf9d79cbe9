"""``benchmarks/rerun_results.py``: docs/results/README.md is made from the published pages
alone (each study's ``summary.md`` and ``verdicts.json``), so a study re-run on its own keeps
every other study's entry and count in the index; a run is published with its entry, and a run
that fails publishes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from study.report.tables import verdict_counts

REPO = Path(__file__).resolve().parents[1]


def _page(docs: Path, name: str, verdicts: list[str] | None, summary: bool = True) -> None:
    folder = docs / name
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(f"# {name}\n")
    if verdicts is not None:
        (folder / "verdicts.json").write_text(json.dumps(
            [{"number": i, "verdict": v} for i, v in enumerate(verdicts, 1)]))
    if summary:
        counts = f"**{verdict_counts(verdicts)}** (*confirmatory*)\n\n" if verdicts else ""
        (folder / "summary.md").write_text(f"## [{name}]({name}/README.md)\n\n{counts}"
                                           f"entry of {name}\n\n")


def _rerun(docs: Path, work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/rerun_results.py", *args, "--docs",
                           str(docs), "--work", str(work)], cwd=REPO, capture_output=True,
                          text=True, timeout=500)


def _index(docs: Path, work: Path) -> str:
    done = _rerun(docs, work, "--index")
    assert done.returncode == 0, done.stderr
    return (docs / "README.md").read_text()


def test_the_index_counts_and_lists_every_published_study(tmp_path: Path) -> None:
    docs, work = tmp_path / "docs", tmp_path / "work"
    _page(docs, "beta", ["inconclusive"])
    _page(docs, "alpha", ["supported", "untestable", "not supported"])
    _page(docs, "gamma", None)  # no claims: an entry, nothing counted
    _page(docs, "old", ["supported"], summary=False)  # an earlier page without an entry
    text = _index(docs, work)
    assert text.splitlines()[1] == ("# The experiment log's questions: 4 claims: 2 decided "
                                    "(1 supported, 1 not supported), 1 inconclusive, "
                                    "1 untestable")
    assert text.index("entry of alpha") < text.index("entry of beta") < text.index("entry of gamma")
    assert "entry of old" not in text
    assert "Not re-run with the rest" in text and ": old." in text
    # the pages themselves are read, never written
    assert (docs / "alpha" / "summary.md").read_text().startswith("## [alpha]")
    assert not work.exists() or not any(work.iterdir())


def test_a_study_published_again_replaces_its_own_entry_only(tmp_path: Path) -> None:
    docs, work = tmp_path / "docs", tmp_path / "work"
    _page(docs, "alpha", ["untestable"])
    _page(docs, "beta", ["supported", "supported"])
    before = _index(docs, work)
    assert "3 claims: 2 decided (2 supported), 0 inconclusive, 1 untestable" in before
    # alpha re-run alone: its page and entry are replaced, beta's stay as published
    (docs / "alpha" / "verdicts.json").write_text(json.dumps([{"verdict": "supported"}]))
    (docs / "alpha" / "summary.md").write_text(
        "## [alpha](alpha/README.md)\n\n**1 claims: 1 decided (1 supported), 0 inconclusive, "
        "0 untestable**\n\nalpha again\n\n")
    after = _index(docs, work)
    assert "3 claims: 3 decided (3 supported), 0 inconclusive, 0 untestable" in after
    assert "alpha again" in after and "entry of alpha" not in after
    assert "entry of beta" in after


def test_an_entry_that_disagrees_with_its_reports_verdicts_is_refused(tmp_path: Path) -> None:
    docs, work = tmp_path / "docs", tmp_path / "work"
    _page(docs, "alpha", ["supported"])
    (docs / "alpha" / "verdicts.json").write_text(json.dumps([{"verdict": "untestable"}]))
    before = "left as it was"
    (docs / "README.md").write_text(before)
    done = _rerun(docs, work, "--index")
    assert done.returncode != 0
    assert "alpha" in done.stderr and "disagree" in done.stderr
    assert (docs / "README.md").read_text() == before


@pytest.mark.slow  # a whole study through Ray
def test_a_study_is_run_published_and_indexed_and_a_failed_run_publishes_nothing(
        tmp_path: Path) -> None:
    """The whole path on a real study at ``smoke``: run, report, publish (page, entry), index;
    then a run that fails keeps the published pages and index entries as they were."""
    docs, work = tmp_path / "docs", tmp_path / "work"
    _page(docs, "older", ["supported"])  # published earlier: stays in the index
    done = _rerun(docs, work, "moons_depth", "--budget", "smoke")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["exit"] == 0 and "report_commit" not in record
    page = docs / "moons_depth"
    assert {"README.md", "summary.md", "verdicts.json"} <= {p.name for p in page.iterdir()}
    header = (page / "README.md").read_text().splitlines()[1]
    assert header.startswith("Command: `python -m study.run moons_depth --budget smoke")
    assert "report made again" not in header
    index = (docs / "README.md").read_text()
    words = [v["verdict"] for v in json.loads((page / "verdicts.json").read_text())]
    assert f"**{verdict_counts(words)}**" in (page / "summary.md").read_text()
    assert "entry of older" in index and "## [moons_depth](moons_depth/README.md)" in index
    published = {p.name: p.read_bytes() for p in page.iterdir()}
    # a run that fails (no such study): nothing published, the earlier pages and index kept
    failed = _rerun(docs, work, "no_such_study", "--budget", "smoke")
    assert failed.returncode == 0 and json.loads(failed.stdout.strip())["exit"] == 2
    assert not (docs / "no_such_study").exists() and not (work / "no_such_study.json").exists()
    assert {p.name: p.read_bytes() for p in page.iterdir()} == published
    assert (docs / "README.md").read_text() == index
