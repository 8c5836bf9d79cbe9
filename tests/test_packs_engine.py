"""``--pack on`` end to end with the real parts (local Ray, Optuna, MLflow on sqlite, Parquet):
the trials of one shape train in one pack server, and every record is what ``--pack off``
writes, to float rounding."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import ray
from mlflow.tracking import MlflowClient
from studies import write_spec

from study.engine.launch import run_study
from study.spec.spec_file import load_spec
from study.store.results import read_epochs, read_trials

pytestmark = pytest.mark.slow  # whole studies through Ray

LRS = [0.003, 0.005, 0.01, 0.02]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_packed_study_records_what_an_unpacked_one_does(local_ray, tmp_path):
    """4 configurations x 2 seeds of one shape: with packs, on the node's two servers (one per
    CPU), balanced, two configurations each (4 members) where their trials overlap; without,
    one trial per process. The same statuses, epochs and final numbers in Parquet, one MLflow child run with
    its curves and one COMPLETE Optuna trial per configuration either way."""
    spec = load_spec(str(write_spec(tmp_path, "tiny_pack", factors={"lr": {"grid": LRS}},
                                    budgets={"smoke": {"epochs": 10}})))
    frames = {}
    for mode in ("on", "off"):
        uri = f"sqlite:///{tmp_path}/mlflow_{mode}.db"
        out = run_study(spec, "smoke", tmp_path / mode, tracking_uri=uri, quiet=True,
                        plots=False, pack=mode)
        assert out.counts == {"finished": 4, "diverged": 0, "pruned": 0, "failed": 0}
        trials = read_trials(out.results).sort_values(["factor.lr", "seed"])
        frames[mode] = trials
        assert len(read_epochs(out.results)) == 4 * 10 * 2
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("tiny_pack")
        children = [r for r in client.search_runs([exp.experiment_id])
                    if "mlflow.parentRunId" in r.data.tags]
        assert sorted(c.info.run_name for c in children) == sorted(f"lr={lr}" for lr in LRS)
        for c in children:
            steps = [m.step for m in client.get_metric_history(c.info.run_id, "curves/val_bound")]
            assert sorted(steps) == list(range(1, 11)) and c.info.status == "FINISHED"
        study = optuna.load_study(study_name="tiny_pack",
                                  storage=f"sqlite:///{out.results}/optuna.db")
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    on, off = frames["on"], frames["off"]
    # two configurations per server where their trials overlap (Ray's two prestarted workers
    # start the first two together), never more than the balance allows
    assert set(on["pack_members"]) <= {2, 4} and on["pack_members"].max() == 4
    assert (off["pack_members"] == 2).all()
    assert list(on["trial_status"]) == list(off["trial_status"]) == ["finished"] * 8
    assert (on["epochs"].to_numpy() == off["epochs"].to_numpy()).all()
    for col in ("test_ll", "last_val_bound", "kl_z", "ll_gap"):
        np.testing.assert_allclose(on[col], off[col], rtol=1e-6, err_msg=col)


def test_a_configuration_pruned_inside_a_pack_leaves_it_and_the_others_finish(local_ray,
                                                                              tmp_path):
    """A learning rate that cannot learn is pruned (threshold pruner) while it trains in a
    pack beside two good ones: it is recorded as pruned (Parquet, MLflow, Optuna), the others
    train every epoch and finish."""
    spec = load_spec(str(write_spec(
        tmp_path, "tiny_pack_prune", factors={"lr": {"grid": [0.01, 0.011, 1.0e-7]}},
        budgets={"smoke": {"epochs": 40, "n_train": 1024}},
        pruner={"name": "threshold", "args": {"lower": -2.6, "n_warmup_steps": 3}})))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    out = run_study(spec, "smoke", tmp_path / "res", tracking_uri=uri, quiet=True,
                    plots=False, pack="on", num_cpus=None)
    assert out.counts == {"finished": 2, "diverged": 0, "pruned": 1, "failed": 0}
    trials = read_trials(out.results).drop_duplicates("trial_id").set_index("factor.lr")
    assert trials.loc[1e-7, "trial_status"] == "pruned" and trials.loc[1e-7, "epochs"] < 40
    assert (trials.loc[[0.01, 0.011], "epochs"] == 40).all()
    study = optuna.load_study(study_name="tiny_pack_prune",
                              storage=f"sqlite:///{out.results}/optuna.db")
    states = {t.params["lr"]: t.state.name for t in study.trials}
    assert states == {0.01: "COMPLETE", 0.011: "COMPLETE", 1e-7: "PRUNED"}
