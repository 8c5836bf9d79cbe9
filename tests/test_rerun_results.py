"""``benchmarks/rerun_results.py --index``: docs/results/README.md is made from the published
pages alone (each study's ``summary.md`` and ``verdicts.json``), so a study re-run on its own
keeps every other study's entry and count in the index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _page(docs: Path, name: str, verdicts: list[str] | None, summary: bool = True) -> None:
    folder = docs / name
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(f"# {name}\n")
    if verdicts is not None:
        (folder / "verdicts.json").write_text(json.dumps(
            [{"number": i, "verdict": v} for i, v in enumerate(verdicts, 1)]))
    if summary:
        (folder / "summary.md").write_text(f"## [{name}]({name}/README.md)\n\nentry of {name}\n\n")


def _index(docs: Path, work: Path) -> str:
    done = subprocess.run([sys.executable, "benchmarks/rerun_results.py", "--index", "--docs",
                           str(docs), "--work", str(work)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
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
    (docs / "alpha" / "summary.md").write_text("## [alpha](alpha/README.md)\n\nalpha again\n\n")
    after = _index(docs, work)
    assert "3 claims: 3 decided (3 supported), 0 inconclusive, 0 untestable" in after
    assert "alpha again" in after and "entry of alpha" not in after
    assert "entry of beta" in after
