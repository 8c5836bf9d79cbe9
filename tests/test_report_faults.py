"""The report of an interrupted or partly failed study says what is missing and claims no
pruning savings it did not make (constructed Parquet tables, no Ray)."""

from __future__ import annotations

import pandas as pd

from study.io import write_parquet
from study.report import build_report
from study.spec_file import load_spec
from studies import write_spec


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
