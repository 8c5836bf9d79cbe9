"""The Optuna record of a Ray trial is written whole or not at all.

A write cut short between creating an Optuna trial and naming its Ray trial (a full disk, a
killed driver) used to leave a RUNNING trial without ``ray_trial_id``: a resume could not find
it, created a second one, and the first was later told FAIL as an orphan, so the study held two
records of one trial. The failure is made real with a SQLite trigger that makes the write of
the trial's user attributes fail with an OperationalError, as a full disk does.
"""

from __future__ import annotations

import sqlite3

import optuna
import pytest
from optuna.distributions import IntDistribution
from ray.tune.experiment import Trial

from study.engine.pruning import RAY_ID, SEEDS, OptunaPruningScheduler
from study.spec.study_spec import ROUND_SEEDS

#: the write of a user attribute fails as a full disk fails it: an OperationalError (a
#: constraint-style ``RAISE(ABORT)`` would be an IntegrityError, which Optuna ignores here)
FAIL_ATTRS = ("CREATE TABLE gone (x); CREATE TRIGGER full_disk BEFORE INSERT ON "
              "trial_user_attributes BEGIN INSERT INTO gone VALUES (1); END; DROP TABLE gone;")


def _scheduler(db) -> OptunaPruningScheduler:
    return OptunaPruningScheduler(f"sqlite:///{db}", "s", optuna.pruners.MedianPruner(),
                                  "val_bound", "max", {"depth": IntDistribution(1, 4)})


def test_a_trial_whose_ray_id_cannot_be_written_leaves_no_optuna_trial(tmp_path):
    db = tmp_path / "optuna.db"
    trial = Trial("noop", config={"depth": 3, ROUND_SEEDS: "5-9"}, trial_id="t_00001", stub=True)
    _scheduler(db).study  # the schema, then the fault
    with sqlite3.connect(db) as con:
        con.executescript(FAIL_ATTRS)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        _scheduler(db).on_trial_add(None, trial)
    assert optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials == []

    with sqlite3.connect(db) as con:  # space freed; the resumed driver adds the trial again
        con.execute("DROP TRIGGER full_disk")
    _scheduler(db).on_trial_add(None, trial)
    [t] = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").trials
    assert (t.state, t.params, t.user_attrs[RAY_ID]) == (
        optuna.trial.TrialState.RUNNING, {"depth": 3}, "t_00001")
    assert t.user_attrs.get(SEEDS) == "5-9"


def test_a_resumed_scheduler_finds_the_trial_instead_of_adding_a_second(tmp_path):
    db = tmp_path / "optuna.db"
    trial = Trial("noop", config={"depth": 2}, trial_id="t_00002", stub=True)
    _scheduler(db).on_trial_add(None, trial)
    again = _scheduler(db)  # a new driver: the scheduler restored from Tune's pickle
    again.on_trial_add(None, trial)
    ids = [t.user_attrs[RAY_ID] for t in optuna.load_study(
        study_name="s", storage=f"sqlite:///{db}").trials]
    assert ids == ["t_00002"]
