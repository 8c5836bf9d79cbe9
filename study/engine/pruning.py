"""Optuna pruning inside Ray Tune: a Tune scheduler that owns an Optuna study.

Ray's ``OptunaSearch`` samples but hard-codes ``NopPruner`` and nothing in Ray calls
``should_prune``. ``OptunaPruningScheduler`` fills the gap for any ``optuna.pruners.*`` and for
grid and sampled factors alike: every Ray trial has exactly one Optuna trial (its factor values
as params, its Ray id in the user attribute ``ray_trial_id``) in a persistent study
(``<results>/optuna.db``, which ``optuna-dashboard`` opens); every epoch's metric is
``report``-ed at its epoch and ``should_prune`` decides STOP or CONTINUE. Trials are told to
Optuna as COMPLETE (with the final metric), PRUNED (stopped early) or FAIL (an error, or a seed
diverged: the final result's metric is then NaN, so Ray's ``OptunaSearch`` tells its sampler
FAIL too); a diverged trial carries the user attributes ``diverged_seeds`` and
``diverged_epoch`` (the first).

The Optuna database, not the scheduler, is the record: Tune restores its scheduler from the
pickle it made when the study started (with the database's path of then: ``rebind`` points a
restored scheduler at the results folder where it is now, after checking that the pickle is
this study's by its ``study_id``), so on ``--resume`` the scheduler finds each trial's
Optuna trial by ``ray_trial_id`` instead of creating a second one. An interrupted study leaves
its unfinished Optuna trials WAITING (``suspend``), and its resume makes them RUNNING again;
an Optuna trial whose Ray trial was lost with a killed driver is adopted by the same
configuration's new Ray trial (grid studies), or told FAIL at the end (``fail_orphans``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from study.spec.study_spec import ROUND_SEEDS
from study.trial.records import history_of, is_epoch_result, is_final_result, reported

logger = logging.getLogger(__name__)
RAY_ID = "ray_trial_id"
UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
#: user attribute of a trial that a round of --until-decided gave its own seeds ("5-9")
SEEDS = "seeds"
#: user attribute of the Optuna study: the identity of the study it belongs to
STUDY_ID = "study_id"


def _seeds_attr(trial: Trial) -> str | None:
    return trial.config.get(ROUND_SEEDS)


def open_study(storage: str, study_name: str, metric: str, mode: str,
               pruner: optuna.pruners.BasePruner | None = None,
               study_id: str | None = None) -> optuna.Study:
    """The study's Optuna study (created if missing, with the user attribute ``study_id``), its
    objective named after ``metric``."""
    study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True,
                                direction="maximize" if mode == "max" else "minimize",
                                pruner=pruner)
    if study_id is not None and STUDY_ID not in study.user_attrs:
        study.set_user_attr(STUDY_ID, study_id)
    if study.metric_names != [metric]:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what the
            warnings.simplefilter("ignore")  # dashboard reads to name the objective
            study.set_metric_names([metric])
    return study


class OptunaPruningScheduler(FIFOScheduler):
    """Ray Tune scheduler: STOP the trials that an Optuna pruner prunes.

    storage: Optuna storage URL. study_name: the study in it (created if missing).
    pruner: any ``optuna.pruners.BasePruner``. metric/mode: the per-epoch result key to report
    and its direction. distributions: factor name -> Optuna distribution (recorded as params).
    study_id: the identity of the study (``study.store.folder``), saved with the scheduler.
    """

    def __init__(self, storage: str, study_name: str, pruner: optuna.pruners.BasePruner,
                 metric: str, mode: str, distributions: dict[str, Any],
                 study_id: str | None = None) -> None:
        super().__init__()
        self.storage = storage
        self.study_id = study_id
        self.study_name = study_name
        self.pruner = pruner
        self._metric_name = metric
        self.mode = mode
        self.distributions = distributions
        self._study: optuna.Study | None = None
        self._existing: dict[str, optuna.trial.FrozenTrial] = {}  # by Ray id, at open
        self._ids: dict[str, int] = {}  # Ray trial id -> Optuna storage trial id
        self._claimed: set[int] = set()
        self._told: set[str] = set()

    def __getstate__(self) -> dict:  # pickled by Tune: no database handles, no stale maps
        state = self.__dict__.copy()
        state["_study"], state["_existing"] = None, {}
        state["_ids"], state["_claimed"], state["_told"] = {}, set(), set()
        return state

    def rebind(self, storage: str, study_id: str) -> None:
        """Point a scheduler restored from Ray's saved state at the Optuna database of the
        results folder where it is now (the saved path may be a moved or copied folder's
        origin); a scheduler saved by another study is refused."""
        saved = getattr(self, "study_id", None)
        if saved is not None and saved != study_id:
            from study.core.errors import UserError

            raise UserError(f"Ray Tune's saved experiment belongs to another study (id {saved}, "
                            f"not {study_id}); restore the folder's own ray/ folder or start the "
                            "study anew with --overwrite")
        self.storage, self.study_id, self._study = storage, study_id, None

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = open_study(self.storage, self.study_name, self._metric_name,
                                     self.mode, self.pruner, getattr(self, "study_id", None))
            # a resumed study: its suspended (WAITING) trials run again. Optuna has no public
            # API for these state changes or for creating a RUNNING trial with its attributes
            # in one write; its storage's is the one ``tell`` and ``add_trial`` use.
            for t in self._study.get_trials(deepcopy=False):
                if RAY_ID not in t.user_attrs:
                    continue
                if t.state == TrialState.WAITING:
                    self._study._storage.set_trial_state_values(t._trial_id, TrialState.RUNNING)
                    t.state = TrialState.RUNNING
                self._existing[t.user_attrs[RAY_ID]] = t
        return self._study

    # ------------------------------------------------------------------ Tune hooks
    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if trial.trial_id in self._ids:
            return
        params = {k: v for k, v in trial.config.items() if k in self.distributions}
        seeds = _seeds_attr(trial)
        existing = self._existing if self.study is not None else {}
        found = existing.get(trial.trial_id) or self._orphan_like(existing, params, seeds)
        if found is not None:
            self._ids[trial.trial_id] = found._trial_id
            self._claimed.add(found._trial_id)
            if found.user_attrs.get(RAY_ID) != trial.trial_id:  # adopted from a lost Ray trial
                self.study._storage.set_trial_user_attr(found._trial_id, RAY_ID, trial.trial_id)
            if found.state.is_finished():
                self._told.add(trial.trial_id)
            elif trial.status in (Trial.TERMINATED, Trial.ERROR):  # ended, never told
                self._tell_ended(trial, trial.last_result or {}, trial.status == Trial.ERROR)
            return
        self._ids[trial.trial_id] = self._create(trial.trial_id, params, seeds,
                                                 self._name(trial, seeds))
        self._claimed.add(self._ids[trial.trial_id])

    def _name(self, trial: Trial, seeds: str | None) -> str:
        """The trial's name, as its MLflow child run has it (``recorder.run_name``)."""
        from study.engine.recorder import run_name
        from study.spec.seed_range import SeedRange

        factors = {k: trial.config.get(k) for k in self.distributions if k in trial.config}
        return run_name(factors, SeedRange.parse(seeds).seeds if seeds else None)

    def _create(self, ray_id: str, params: dict[str, Any], seeds: str | None,
                name: str) -> int:
        """A RUNNING Optuna trial with ``params``, its Ray id and its ``name`` (the MLflow
        child run's), written in one transaction: a write cut short (a full disk, a killed
        driver) leaves no trial without its Ray id, which a resume could neither find nor tell
        apart from a second record of the trial."""
        attrs = {RAY_ID: ray_id, "name": name} | ({SEEDS: seeds} if seeds is not None else {})
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=params, user_attrs=attrs,
            distributions={k: self.distributions[k] for k in params})
        return self.study._storage.create_new_trial(self.study._study_id, template_trial=template)

    def _orphan_like(self, existing: dict[str, optuna.trial.FrozenTrial],
                     params: dict[str, Any], seeds: str | None) -> optuna.trial.FrozenTrial | None:
        """An unfinished Optuna trial of a Ray trial that no longer exists, with these params
        (and seeds)."""
        for t in existing.values():
            if t.state in UNFINISHED and t._trial_id not in self._claimed and t.params == params \
                    and t.user_attrs.get(SEEDS) == seeds and t.user_attrs[RAY_ID] not in self._ids:
                return t
        return None

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if not is_epoch_result(result) or trial.trial_id not in self._ids:
            return TrialScheduler.CONTINUE
        ot = optuna.trial.Trial(self.study, self._ids[trial.trial_id])
        prunes = not isinstance(self.pruner, optuna.pruners.NopPruner)
        decided = None  # the first epoch of this batch at which the pruner says "prune"
        with warnings.catch_warnings():  # a step re-reported after a retry is ignored
            warnings.simplefilter("ignore")
            for m in history_of(result):
                v = m.mean.get(self._metric_name)
                if v is None or not math.isfinite(v):
                    continue  # a NaN is divergence, recorded as such, not pruning
                ot.report(float(v), int(m.epoch))
                # each epoch of a batch is judged as if it had arrived alone, so batching
                # delays the STOP but not the decision
                if prunes and decided is None and ot.should_prune():
                    decided = int(m.epoch)
        if decided is None:
            return TrialScheduler.CONTINUE
        stopped = reported(result).epoch or decided
        ot.set_user_attr("pruned_at_epoch", decided)
        ot.set_user_attr("stopped_at_epoch", stopped)
        self._tell(trial, TrialState.PRUNED)
        logger.info("pruned trial %s at epoch %s (reported up to epoch %s)", trial, decided,
                    stopped)
        return TrialScheduler.STOP

    def _tell(self, trial: Trial, state: TrialState, value: float | None = None,
              attrs: dict[str, Any] | None = None) -> None:
        if trial.trial_id not in self._ids or trial.trial_id in self._told:
            return
        self._told.add(trial.trial_id)
        ot = optuna.trial.Trial(self.study, self._ids[trial.trial_id])
        for k, v in (attrs or {}).items():
            ot.set_user_attr(k, v)
        self.study.tell(ot, value if state == TrialState.COMPLETE else None, state=state,
                        skip_if_finished=True)

    def _tell_ended(self, trial: Trial, result: dict, errored: bool) -> None:
        last = reported(result)
        value = last.value(self._metric_name)
        if errored:
            self._tell(trial, TrialState.FAIL)
        elif not is_final_result(result):
            self._tell(trial, TrialState.PRUNED)  # stopped before the end
        elif last.n_diverged:
            attrs = {"diverged_seeds": last.n_diverged, "diverged_epoch": last.diverged_epoch}
            self._tell(trial, TrialState.FAIL, attrs=attrs)
        elif value is not None and math.isfinite(value):
            self._tell(trial, TrialState.COMPLETE, float(value))
        else:
            self._tell(trial, TrialState.FAIL)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._tell_ended(trial, result or {}, errored=False)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        if not trial.should_recover():  # a trial Ray will retry is not finished yet
            self._tell(trial, TrialState.FAIL)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._tell(trial, TrialState.PRUNED)

    def debug_string(self) -> str:
        return f"OptunaPruningScheduler({type(self.pruner).__name__})"


# ---------------------------------------------------------------------- after a study
def suspend(storage: str, study_name: str) -> int:
    """RUNNING -> WAITING for every unfinished trial of an interrupted study (none stays
    RUNNING; ``--resume`` runs them again); returns how many."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if RAY_ID in t.user_attrs:
            study._storage.set_trial_state_values(t._trial_id, TrialState.WAITING)
            n += 1
    return n


def fail_orphans(storage: str, study_name: str, known: Iterable[str]) -> int:
    """FAIL (user attribute ``orphaned``) every unfinished Optuna trial whose Ray trial is not
    among ``known``: a trial lost with a killed driver that no new trial adopted."""
    known = set(known)
    study = optuna.load_study(study_name=study_name, storage=storage)
    n = 0
    for t in study.get_trials(deepcopy=False, states=UNFINISHED):
        if t.user_attrs.get(RAY_ID) not in known:
            study._storage.set_trial_user_attr(t._trial_id, "orphaned", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
    return n
