"""Seeds until decided through the real engine: a claim decided at the first look gets no more
seeds, an open one gets a round of its own trials (Parquet, MLflow, Optuna), the report judges
look by look, and a driver killed in the middle of a round resumes without losses or doubles."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import optuna
import pytest
import ray
from conftest import REPO
from faults import checkpoints_made, finish, wait_for
from mlflow.tracking import MlflowClient
from studies import write_spec

from study.engine.launch import run_study
from study.report.build import build_report
from study.spec.spec_file import load_spec
from study.store.folder import ROUNDS_DIR
from study.store.results import read_trials

pytestmark = pytest.mark.slow  # whole studies through Ray

#: these claims are about learning at all, not about models that fit: no fit gate, on purpose
NO_FIT = {"gate": {"max_ll_gap": None}}
CLAIMS = [
    # decided at the first look: a learning rate of 1e-7 learns nothing in these epochs
    {"statement": "lr 0.01 beats 1e-7", "metric": "test_ll", "where": {"lr": 0.01},
     "versus": {"lr": 1.0e-7}, "expect": "higher"} | NO_FIT,
    # a threshold (the median, by signs: 4 seeds cannot decide it): open after the first look
    {"statement": "lr 0.0101 reaches -1.94", "metric": "test_ll", "where": {"lr": 0.0101},
     "expect": "above", "threshold": -1.94} | NO_FIT,
]


def _spec(tmp_path, epochs: int = 20, threshold: float = -1.94, **fields):
    """``threshold``: about the mean test_ll of lr 0.0101's first 4 seeds after ``epochs``."""
    claims = [CLAIMS[0], CLAIMS[1] | {"threshold": threshold}]
    return write_spec(tmp_path, "decide", factors={"lr": {"grid": [0.01, 0.0101, 1.0e-7]}},
                      seeds=4, claims=claims, budgets={"smoke": {"epochs": epochs, "n_train": 512}},
                      **fields)


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _check_complete(results, uri: str) -> None:
    trials = read_trials(results)
    assert not trials.duplicated(["trial_id", "seed"]).any()
    assert not trials.duplicated(["factor.lr", "seed"]).any()  # no seed of a configuration twice
    seeds = trials.groupby("factor.lr")["seed"].apply(sorted).to_dict()
    assert seeds == {1e-7: [0, 1, 2, 3], 0.01: [0, 1, 2, 3], 0.0101: list(range(8))}
    assert trials["trial_id"].nunique() == 4 and set(trials["trial_status"]) == {"finished"}
    study = optuna.load_study(study_name="decide", storage=f"sqlite:///{results}/optuna.db")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert sorted(t.user_attrs.get("seeds", "") for t in study.trials
                  if t.state == optuna.trial.TrialState.COMPLETE) == ["", "", "", "4-7"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("decide")
    children = [r for r in client.search_runs([exp.experiment_id])
                if "mlflow.parentRunId" in r.data.tags]
    assert sorted(c.data.tags["ray_trial_id"] for c in children) == \
        sorted(trials["trial_id"].unique())
    assert sum("seeds 4-7" in c.info.run_name for c in children) == 1


@pytest.mark.parametrize("pack", ["off", "on"])
def test_open_claims_get_a_round_of_seeds_and_decided_ones_do_not(local_ray, tmp_path, pack):
    """``--pack on``: the rounds' trials train in pack servers, and everything else is alike."""
    spec = load_spec(str(_spec(tmp_path)))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, quiet=True,
                    until_decided=True, max_seeds=8, pack=pack)
    assert out.exit_status == 0 and out.total == 4 and out.counts["finished"] == 4
    _check_complete(out.results, uri)
    trials = read_trials(out.results)
    packed = trials["pack_members"] > trials.groupby("trial_id")["seed"].transform("count")
    assert packed.any() == (pack == "on")  # with packs, some trial trained beside another
    report = build_report(spec, out.results).read_text()
    assert "Seeds were added until decided" in report and "4 to 8 seeds per configuration" in report
    rows = [line for line in report.splitlines() if line.startswith("| 1 | lr 0.01") or
            line.startswith("| 2 | lr 0.01")]
    assert "[panel 1](claims.png)" in rows[0] and (out.results / "report" / "claims.png").exists()
    assert "look 1: 4 seeds" in rows[0] and "**supported**" in rows[0]
    assert "look 2: 8 seeds" in rows[1]

    # a resumed finished study runs nothing new and asks for the design it started with
    again = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, quiet=True, resume=True)
    assert again.total == 4 and again.counts["finished"] == 4
    _check_complete(out.results, uri)


def test_a_driver_killed_during_a_round_is_resumed_without_losses_or_doubles(tmp_path):
    spec = _spec(tmp_path, epochs=120, threshold=-1.614, checkpoint_every=10)
    res, uri = tmp_path / "res", f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [sys.executable, "-m", "study.run", str(spec), "--budget", "smoke", "--results",
           str(res), "--tracking-uri", uri, "--quiet", "--max-concurrent", "1",
           "--until-decided", "--max-seeds", "8"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    round_dir = res / ROUNDS_DIR / "round_1"
    wait_for(lambda: any(checkpoints_made(p) >= 4 for p in round_dir.glob("run_study_trial_*")),
             proc, what="a trial of round 1 checkpointed four times")
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray and every worker
    proc.wait(30)
    assert read_trials(res)["trial_id"].nunique() < 4

    # resumed without the flags: the design comes from study.json
    finish(subprocess.Popen(cmd[:-3] + ["--resume"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True))
    _check_complete(res, uri)
    restored = read_trials(res).drop_duplicates("trial_id")["restored_from_epoch"]
    assert (restored > 0).any()  # the killed round's trial went on from its checkpoint
