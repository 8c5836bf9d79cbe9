"""Every study of search_spaces/ at its smoke budget through the real engine, and its report."""

from __future__ import annotations

import os

import pytest
import ray

from study.engine.launch import run_study
from study.report.build import build_report
from study.spec.spec_file import available, load_spec
from study.store.results import read_trials

pytestmark = pytest.mark.slow  # whole studies through Ray


@pytest.fixture(scope="module")
def local_ray(shared_data_dir):
    os.environ["HVAE_DATA_DIR"] = str(shared_data_dir)  # inherited by the local Ray workers
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def shared_data_dir():
    from conftest import SHARED_DATA

    return SHARED_DATA


@pytest.mark.parametrize("name", available())
def test_study_runs_at_smoke_budget_and_reports(local_ray, tmp_path, name):
    spec = load_spec(name)
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=f"sqlite:///{tmp_path}/m.db",
                    quiet=True, plots=False)
    trials = read_trials(out.results)
    assert trials["trial_id"].nunique() == spec.num_trials("smoke")
    assert set(trials["trial_status"]) <= {"finished", "diverged", "pruned"}
    for response in spec.responses:
        if response.startswith(("kl_z", "active_units_z", "class_acc_z", "kl_from_z", "kl_above",
                                "auroc_llr_2")):
            continue  # layers / ks that exist only in some configurations
        assert response in trials.columns, response
    report = build_report(spec, out.results).read_text()
    for section in ("**Question.**", "## Responses per configuration", "## Best configurations",
                    "## Pruning", "## Figures", "**Smoke test.**"):
        assert section in report, section
    if spec.claims:
        assert "## Verdicts" in report
        words = ("supported", "not supported", "equivalent", "inconclusive", "untestable")
        assert sum(report.count(f"**{w}** (smoke test)") for w in words) == len(spec.claims)
    if spec.references:
        assert "## Compared with reference numbers" in report
    if spec.match_compute:  # each configuration trained the epochs that match its compute
        assert "**Compute matched.**" in report
        per_trial = trials.drop_duplicates("trial_id")
        assert per_trial["epochs"].nunique() > 1
        for _, row in per_trial.iterrows():
            cell = {f: row[f"factor.{f}"] for f in spec.grid_factors}
            assert row["epochs"] == spec.trial_config(cell, "smoke").epochs
    for i in range(len(spec.curves)):
        assert (out.results / "report" / f"curve_{i}.png").exists()
