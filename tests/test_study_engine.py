"""The study engine end to end with the real parts: local Ray, Optuna, MLflow (sqlite), Parquet."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
import ray
from mlflow.tracking import MlflowClient
from studies import write_spec

from study.engine.launch import run_study
from study.engine.progress import Progress
from study.report.build import build_report
from study.spec.spec_file import load_spec
from study.store import results
from study.store.results import read_epochs, read_scores, read_trials


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _runs(uri: str, study: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(study)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_smoke_study_end_to_end(local_ray, tmp_path):
    spec = load_spec(str(write_spec(tmp_path, "tiny_grid")))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, quiet=True)
    assert out.counts == {"finished": 2, "diverged": 0, "pruned": 0, "failed": 0}

    trials = read_trials(out.results)
    assert len(trials) == 2 * 2  # trials x seeds
    assert sorted(trials["factor.lr"].unique()) == [0.003, 0.01]
    assert set(trials["seed_status"]) == {"finished"} and set(trials["seed"]) == {0, 1}
    assert trials["test_ll"].notna().all() and (trials["test_ll"] < trials["exact_ll"]).all()
    assert (trials["epochs"] == 2).all()
    epochs = read_epochs(out.results)
    assert len(epochs) == 2 * 2 * 2  # trials x epochs x seeds
    assert epochs["val_elbo"].notna().all()
    scores = read_scores(out.results)
    assert {"test", "shifted_1", "uniform"} <= set(scores["set"])
    assert len(scores[(scores.set == "test") & (scores.score == "neg_ll")]) == 2 * 2 * 128
    # the joined frames: every curve and score row knows its trial's factors and statuses
    curves, joined = results.curves(out.results), results.scores(out.results)
    assert len(curves) == len(epochs) and len(joined) == len(scores)
    for frame in (curves, joined):
        assert frame["factor.lr"].notna().all() and set(frame["seed_status"]) == {"finished"}
    lrs = curves.groupby("trial_id")["factor.lr"].first().to_dict()
    assert lrs == trials.groupby("trial_id")["factor.lr"].first().to_dict()
    assert list(results.seeds(out.results)["factor.lr"]) == [0.003, 0.003, 0.01, 0.01]

    client, parents, children = _runs(uri, "tiny_grid")
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.run_id == out.parent_run_id
    assert parent.info.run_name.startswith("tiny_grid smoke 20")  # budget and start time
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.note.content"] == "test study tiny_grid"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.data.tags["study"] == "tiny_grid" and parent.data.tags["budget"] == "smoke"
    assert parent.data.tags["question"] == "test study tiny_grid" and parent.data.tags["git_commit"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["status"] == "finished" and child.info.status == "FINISHED"
        assert child.data.params["factor.lr"] in ("0.003", "0.01")
        # named by its configuration, as the Optuna trial's user attribute "name" is
        assert child.info.run_name == f"lr={child.data.params['factor.lr']}"
        assert child.data.params["dataset"] == "moons"
        assert len(client.get_metric_history(child.info.run_id, "curves/val_elbo")) == 2
        assert "final/test_ll" in child.data.metrics
        # the curves lead the run's charts (sections alphabetical: curves, final, seeds)
        assert {"curves/val_bound", "curves/train_loss", "seeds/val_bound/seed_0",
                "seeds/val_bound/seed_1"} <= set(child.data.metrics)
        assert not [k for k in child.data.metrics if "/" not in k]  # no section after them
        assert not [k for k in child.data.metrics if "/seed_" in k and k.startswith("final/")]
        assert child.data.tags["mlflow.source.name"].startswith("python -m study.run")
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"roc.png", "samples.png", "learning_curves.png", "final_per_seed.csv"} <= artifacts
        per_seed = pd.read_csv(client.download_artifacts(child.info.run_id, "final_per_seed.csv",
                                                         str(tmp_path / child.info.run_id)))
        assert list(per_seed["seed"]) == [0, 1]
        assert per_seed["test_ll"].mean() == pytest.approx(child.data.metrics["final/test_ll"])

    study = optuna.load_study(study_name="tiny_grid", storage=f"sqlite:///{out.results}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.params["lr"] for t in study.trials) == [0.003, 0.01]
    assert sorted(t.user_attrs["name"] for t in study.trials) == \
        sorted(c.info.run_name for c in children)

    report = build_report(spec, out.results).read_text()
    assert "## Responses per configuration" in report and "0.003" in report and "±" in report


def test_a_bad_configuration_is_pruned_everywhere(local_ray, tmp_path):
    """Two good learning rates finish first (one trial at a time); a learning rate that cannot
    learn anything is then pruned by the median pruner, at the first epoch the pruner may prune
    (epochs reach it in batches every ``report_every_s``, each judged on its own)."""
    spec = load_spec(str(write_spec(
        tmp_path, "tiny_prune", factors={"lr": {"grid": [0.01, 0.011, 1.0e-7]}},
        budgets={"smoke": {"epochs": 40, "n_train": 1024}},  # long enough for STOP to arrive
        pruner={"name": "median", "args": {"n_startup_trials": 2, "n_warmup_steps": 2}})))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, max_concurrent=1, quiet=True)
    assert out.counts == {"finished": 2, "diverged": 0, "pruned": 1, "failed": 0}

    trials = read_trials(out.results).drop_duplicates("trial_id").set_index("factor.lr")
    assert trials.loc[1e-7, "trial_status"] == "pruned" and trials.loc[1e-7, "epochs"] < 40
    assert (trials.loc[[0.01, 0.011], "trial_status"] == "finished").all()
    assert pd.isna(trials.loc[1e-7, "test_ll"]) and pd.notna(trials.loc[1e-7, "last_val_elbo"])

    _, _, children = _runs(uri, "tiny_prune")
    by_lr = {c.data.params["factor.lr"]: c for c in children}
    assert by_lr["1e-07"].data.tags["status"] == "pruned" and by_lr["1e-07"].info.status == "KILLED"
    assert by_lr["0.01"].data.tags["status"] == "finished"

    study = optuna.load_study(study_name="tiny_prune", storage=f"sqlite:///{out.results}/optuna.db")
    states = {t.params["lr"]: t.state for t in study.trials}
    assert states == {0.01: optuna.trial.TrialState.COMPLETE, 0.011: optuna.trial.TrialState.COMPLETE,
                      1e-7: optuna.trial.TrialState.PRUNED}
    pruned = next(t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    assert pruned.user_attrs["pruned_at_epoch"] == 2  # the earliest step the pruner may prune
    assert 2 <= pruned.user_attrs["stopped_at_epoch"] <= trials.loc[1e-7, "epochs"] < 40
    assert "1 pruned" in build_report(spec, out.results).read_text()


def test_sampled_factors_go_to_optuna_tpe_and_grid_cells_are_covered(local_ray, tmp_path):
    spec = load_spec(str(write_spec(
        tmp_path, "tiny_tpe",
        factors={"noise": {"grid": [0.05, 0.1]}, "lr": {"loguniform": [1e-3, 1e-2]},
                 "width": {"int": [4, 16], "step": 4}},
        budgets={"smoke": {"epochs": 1, "num_samples": 2}})))
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=f"sqlite:///{tmp_path}/m.db",
                    quiet=True)
    trials = read_trials(out.results).drop_duplicates("trial_id")
    assert len(trials) == 4 and sorted(trials["factor.noise"]) == [0.05, 0.05, 0.1, 0.1]
    assert trials["factor.lr"].between(1e-3, 1e-2).all()
    assert set(trials["factor.width"]) <= {4, 8, 12, 16}
    assert (trials["config.hidden"] == trials["factor.width"].map(lambda w: f"[[{w}, {w}]]")).all()


def test_restarts_record_every_epoch_once_and_the_kept_initialisation(local_ray, tmp_path,
                                                                       monkeypatch):
    """Two initialisations per seed, the choice after epoch 3 of 4 (checkpoints every epoch):
    Parquet, MLflow and Optuna see each seed's kept candidate, every epoch exactly once; before
    the choice, Ray Tune takes progress results of the candidates' epochs (for the progress
    line), which no record counts as epochs."""
    spec = load_spec(str(write_spec(
        tmp_path, "tiny_restarts", fixed={"restarts": 2, "restart_epochs": 3, "iw_samples": 2},
        factors={"lr": {"grid": [0.003]}}, budgets={"smoke": {"epochs": 4}},
        checkpoint_every=1, report_every_s=0)))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    told: list[int] = []  # what the progress line is told, through the real recorder
    reported = Progress.trial_reported

    def listened(self, trial_id: str, epoch: int, restored_from: int = 0) -> None:
        told.append(epoch)
        reported(self, trial_id, epoch, restored_from)

    monkeypatch.setattr(Progress, "trial_reported", listened)
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri)
    assert out.counts == {"finished": 1, "diverged": 0, "pruned": 0, "failed": 0}
    # the candidates' epochs 1, 2 as progress results, then after the choice the epoch results
    # of epochs 1-3 (report_every_s 0: one result each) and 4
    assert told == [1, 2, 1, 2, 3, 4]
    trials = read_trials(out.results)
    assert set(trials["restart"]) <= {0.0, 1.0} and len(trials) == 2
    epochs = read_epochs(out.results)
    assert sorted(zip(epochs["epoch"], epochs["seed"])) == [(e, s) for e in (1, 2, 3, 4) for s in (0, 1)]
    _, _, children = _runs(uri, "tiny_restarts")
    history = MlflowClient(uri).get_metric_history(children[0].info.run_id, "curves/val_bound")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    study = optuna.load_study(study_name="tiny_restarts", storage=f"sqlite:///{out.results}/optuna.db")
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3, 4]
    report = build_report(spec, out.results).read_text()
    assert "restarts 2, restart_epochs 3" in report and "epochs 4" in report
