"""The answer where researchers look: the report's first lines (one plain line per claim), the
verdicts as data (report/verdicts.json), the report as one HTML page with its figures inside,
and the study's MLflow parent run carrying the question, the answer and a tag and metrics per
claim (constructed Parquet tables with known answers, a real MLflow sqlite store)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from studies import write_spec

from study.core.io import write_parquet
from study.judge.verdicts import judge_all
from study.report.build import publish_report
from study.spec.claims import Claim, Gate
from study.spec.spec_file import load_spec
from study.store.tracking import DESCRIPTION_TAG, Tracker

SEEDS = 8
#: per-seed test_ll of lr 0.1; lr 0.2 is 0.5 nats better in every seed, give or take 0.05
BASE = np.linspace(-2.0, -1.3, SEEDS)
NOISE = np.array([0.03, -0.02, 0.04, -0.05, 0.01, 0.0, -0.01, 0.02])


def _rows(**columns_by_lr) -> pd.DataFrame:
    rows = []
    for lr, values in columns_by_lr["test_ll"].items():
        for seed in range(SEEDS):
            row = {"trial_id": f"t{lr}", "seed": seed, "factor.lr": lr, "epochs": 3,
                   "trial_status": "finished", "seed_status": "finished"}
            for name, by_lr in columns_by_lr.items():
                row[name] = float(by_lr[lr][seed])
            rows.append(row)
    return pd.DataFrame(rows)


TEST_LL = {0.1: BASE, 0.2: BASE + 0.5 + NOISE}


def test_a_decided_comparison_reads_as_one_line_with_its_effect_interval_and_seeds():
    rows = _rows(test_ll=TEST_LL)
    claim = Claim(statement="A larger step helps.", metric="test_ll", where={"lr": 0.2},
                  versus={"lr": 0.1}, expect="higher")
    v = judge_all([claim], rows)[0]
    line = v.headline("confirmatory")
    d = TEST_LL[0.2] - TEST_LL[0.1]
    assert v.verdict == "supported"
    assert line.startswith("A larger step helps: **supported**, difference +")
    assert f"+{d.mean():.3g} nats [+{v.result.low:.3g}, +{v.result.high:.3g}] (95% CI)" in line
    assert line.endswith(f"p (Holm) {v.p_holm:.3g}, 8 seeds (paired), confirmatory")


def test_a_threshold_claim_reads_as_the_value_against_its_threshold():
    kl = {0.1: np.full(SEEDS, 0.5), 0.2: np.array([1e-4, 2e-4, 3e-4, 1e-4, 5e-4, 2e-4, 1e-4,
                                                    4e-4])}
    rows = _rows(test_ll=TEST_LL, kl_z1=kl)
    claim = Claim(statement="z1 stays inactive", metric="kl_z1", where={"lr": 0.2},
                  expect="below", threshold=0.01)
    v = judge_all([claim], rows)[0]
    line = v.headline("exploratory")
    assert v.verdict == "supported"
    # the median of the values, then its distance to the threshold (what the sign test tests)
    distance = np.median(kl[0.2]) - 0.01
    assert f"median {np.median(kl[0.2]):.4g} nats, {distance:+.3g} [" in line
    assert "from 0.01, p (Holm)" in line and line.endswith("8 seeds, exploratory")


def test_an_untestable_claim_names_the_gate_and_how_many_seeds_pass():
    gap = {0.1: np.array([-0.1] * 2 + [-0.3] * 6), 0.2: np.full(SEEDS, -0.05)}
    rows = _rows(test_ll=TEST_LL, ll_gap=gap)
    claim = Claim(statement="A larger step helps", metric="test_ll", where={"lr": 0.2},
                  versus={"lr": 0.1}, expect="higher")
    v = judge_all([claim], rows, Gate(max_ll_gap=0.15))[0]
    assert v.verdict == "untestable"
    assert v.headline() == ("A larger step helps: **untestable**: lr=0.1 passes "
                            "ll_gap >= -0.15 in 2/8 seeds")


def test_an_equivalence_claim_reads_with_its_margin_and_equivalence_test():
    rows = _rows(test_ll={0.1: BASE, 0.2: BASE + NOISE})
    claim = Claim(statement="The step does not matter", metric="test_ll", where={"lr": 0.2},
                  versus={"lr": 0.1}, expect="equivalent", margin=0.2)
    v = judge_all([claim], rows)[0]
    assert v.verdict == "supported"
    line = v.headline("confirmatory")
    assert f"outside ±0.2: {v.p_holm:.3g}" in line  # the p that decided it, with the margin
    assert v.holm_text() in line and "TOST ±0.2: " in line and "p (Holm) 1," not in line


def _study_folder(tmp_path, budget: str = "default", first_seed: int | None = None):
    """A constructed results folder of a study with one claim, and its MLflow parent run in a
    sqlite store; (spec, results folder, tracker, parent run id). ``first_seed``: the study
    ran on its confirmatory seeds, from there."""
    claim = {"statement": "A larger step helps", "metric": "test_ll", "where": {"lr": 0.2},
             "versus": {"lr": 0.1}, "expect": "higher"}
    extra = {"confirmatory_seeds": first_seed} if first_seed is not None else {}
    spec = load_spec(str(write_spec(tmp_path, "ans", factors={"lr": {"grid": [0.1, 0.2]}},
                                    seeds=SEEDS, budgets={budget: {"epochs": 3}},
                                    responses=["test_ll"], claims=[claim],
                                    gates={"max_ll_gap": 0.5}, **extra)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "ans", spec.question)
    parent = tracker.client.create_run(tracker.experiment_id, tags={"study_id": "s1"}).info.run_id
    results = tmp_path / "results"
    results.mkdir()
    (results / "study.json").write_text(json.dumps(
        {"study": "ans", "budget": budget, "study_id": "s1", "parent_run_id": parent,
         "tracking_uri": uri, "confirmatory": first_seed is not None}))
    fit = {lr: np.full(SEEDS, -0.1) for lr in TEST_LL}
    rows = _rows(test_ll=TEST_LL, ll_gap=fit)
    rows["seed"] += first_seed or 0
    write_parquet(results / "trials.parquet", rows)
    return spec, results, tracker, parent


@pytest.fixture
def study_folder(tmp_path):
    return _study_folder(tmp_path)


def test_the_report_opens_with_one_line_per_claim_and_keeps_them_as_data(study_folder):
    spec, results, _, _ = study_folder
    path, _ = publish_report(spec, results, mlflow=False)
    lines = path.read_text().splitlines()
    answer = next(i for i, line in enumerate(lines) if line.startswith("**Answer: 1 claims: "
                                                                       "1 decided (1 supported)"))
    first = next(line for line in lines[answer + 1:] if line)
    assert first.startswith("1. A larger step helps: **supported**, difference +")
    records = json.loads((path.parent / "verdicts.json").read_text())
    d = TEST_LL[0.2] - TEST_LL[0.1]
    assert [r["verdict"] for r in records] == ["supported"]
    assert math.isclose(records[0]["effect"], d.mean()) and records[0]["low"] < d.mean()
    assert records[0]["headline"] == first[3:]


def test_the_html_report_holds_its_figures_and_wraps_its_tables(study_folder):
    spec, results, _, _ = study_folder
    path, _ = publish_report(spec, results, mlflow=False)
    html = path.with_suffix(".html").read_text()
    figures = [p.name for p in path.parent.glob("*.png")]
    assert figures, "the report has figures to embed"
    assert html.count('src="data:image/png;base64,') == path.read_text().count("![")
    assert not any(f'"{name}"' in html for name in figures)  # no file is linked, all inside
    assert "<table>" in html and "overflow-wrap: anywhere" in html


def test_the_parent_run_carries_the_question_the_answer_and_each_claims_numbers(study_folder):
    spec, results, tracker, parent = study_folder
    _, run_id = publish_report(spec, results)
    assert run_id == parent
    run = tracker.client.get_run(parent)
    description = run.data.tags[DESCRIPTION_TAG]
    assert description.startswith("**Answer: 1 claims: 1 decided (1 supported)")
    assert "\n1. A larger step helps: **supported**" in description
    assert "**Question.** test study ans" in description
    assert run.data.tags["claim_1.verdict"] == "supported"
    d = TEST_LL[0.2] - TEST_LL[0.1]
    m = run.data.metrics
    assert math.isclose(m["claim_1.effect"], d.mean(), rel_tol=1e-9)
    assert m["claim_1.ci_low"] < d.mean() < m["claim_1.ci_high"] and m["claim_1.p_holm"] < 0.05
    assert m["claims.decided"] == 1 and m["claims.untestable"] == 0
    assert math.isclose(m["configurations/test_ll/lr-0.2"], TEST_LL[0.2].mean(),
                        rel_tol=1e-9)
    artifacts = {a.path for a in tracker.client.list_artifacts(parent, "report")}
    assert {"report/report.md", "report/report.html", "report/verdicts.json"} <= artifacts


def test_a_smoke_runs_answer_says_it_is_no_finding_everywhere(tmp_path):
    spec, results, tracker, parent = _study_folder(tmp_path, budget="smoke")
    path, _ = publish_report(spec, results)
    records = json.loads((path.parent / "verdicts.json").read_text())
    assert records[0]["evidence"] == "smoke test" and records[0]["headline"].endswith(
        ", smoke test")
    run = tracker.client.get_run(parent)
    assert run.data.tags["claim_1.verdict"].endswith("(smoke test)")
    assert "(smoke test: nothing here is a finding)" in run.data.tags[DESCRIPTION_TAG]


def test_a_confirmatory_run_ends_with_its_report_and_answer(tmp_path, capsys):
    """study.run hands the report its confirmatory study (seeds from 1000): the report must
    not shift the seeds a second time (it did: every --confirmatory run ended with exit 1)."""
    from study.engine.launch import StudyOutcome
    from study.run import _report_end, parser

    spec, results, tracker, parent = _study_folder(tmp_path, first_seed=1000)
    out = StudyOutcome(results, parent, {"finished": 2}, 2, tracker.uri,
                       experiment_id=tracker.experiment_id)
    args = parser().parse_args([str(tmp_path / "ans.yaml"), "--results", str(results),
                                "--confirmatory"])
    assert spec.confirmatory().confirmatory().seeds == list(range(1000, 1000 + SEEDS))
    assert _report_end(args, spec.confirmatory(), out) == 0, capsys.readouterr().err
    text = (results / "report" / "report.md").read_text()
    assert "*confirmatory*: seeds 1000-1007" in text
    assert tracker.client.get_run(parent).data.tags["claim_1.verdict"] == "supported"
