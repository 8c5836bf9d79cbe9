"""Optuna pruning inside Ray Tune: a Tune scheduler that owns an Optuna study.

Ray's ``OptunaSearch`` samples but hard-codes ``NopPruner`` and nothing in Ray calls
``should_prune``. ``OptunaPruningScheduler`` fills the gap for any ``optuna.pruners.*`` and for
grid and sampled factors alike: every Ray trial gets an Optuna trial (its factor values as
params) in a persistent study (``sqlite:///<results>/optuna.db``, so ``optuna-dashboard`` can
open it); each epoch result's metric is ``report``-ed at its epoch and ``should_prune`` decides
STOP or CONTINUE. Trials are told to Optuna as COMPLETE (with the final metric), PRUNED (stopped
early) or FAIL (an error, or a seed diverged: the final result's metric is then NaN, so Ray's
``OptunaSearch`` tells its sampler FAIL too); a diverged trial carries the user attributes
``diverged_seeds`` and ``diverged_epoch`` (the first).

The scheduler is pickled into Ray's experiment state (for ``Tuner.restore``); it keeps only
the storage URL and the Ray-trial -> Optuna-trial numbers, and reopens the study lazily.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import optuna
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


class OptunaPruningScheduler(FIFOScheduler):
    """Ray Tune scheduler: STOP the trials that an Optuna pruner prunes.

    storage: Optuna storage URL. study_name: the study in it (created if missing).
    pruner: any ``optuna.pruners.BasePruner``. metric/mode: the per-epoch result key to report
    and its direction. distributions: factor name -> Optuna distribution (recorded as params).
    epoch_key / phase_key: results without ``phase_key == "epoch"`` are not reported to the
    pruner (e.g. the final evaluation result).
    """

    def __init__(self, storage: str, study_name: str, pruner: optuna.pruners.BasePruner,
                 metric: str, mode: str, distributions: dict[str, Any],
                 epoch_key: str = "epoch", phase_key: str = "phase") -> None:
        super().__init__()
        self.storage = storage
        self.study_name = study_name
        self.pruner = pruner
        self._metric_name = metric
        self.mode = mode
        self.distributions = distributions
        self.epoch_key = epoch_key
        self.phase_key = phase_key
        self.trial_ids: dict[str, int] = {}  # Ray trial id -> Optuna storage trial id
        self.pruned: set[str] = set()
        self.told: set[str] = set()
        self._study: optuna.Study | None = None

    # pickling (Tuner.restore): no database handles
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_study"] = None
        return state

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = optuna.create_study(
                storage=self.storage, study_name=self.study_name, load_if_exists=True,
                direction="maximize" if self.mode == "max" else "minimize", pruner=self.pruner,
            )
        return self._study

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if trial.trial_id in self.trial_ids:
            return
        params = {k: v for k, v in trial.config.items() if k in self.distributions}
        if params:  # enqueue, then ask: the Optuna trial gets exactly these params
            self.study.enqueue_trial(params)
        ot = self.study.ask(fixed_distributions={k: self.distributions[k] for k in params})
        ot.set_user_attr("ray_trial_id", trial.trial_id)
        self.trial_ids[trial.trial_id] = ot._trial_id

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if result.get(self.phase_key) != "epoch" or trial.trial_id not in self.trial_ids:
            return TrialScheduler.CONTINUE
        value = result.get(self._metric_name)
        if value is None or not math.isfinite(value):
            return TrialScheduler.CONTINUE  # a NaN is divergence, recorded as such, not pruning
        if isinstance(self.pruner, optuna.pruners.NopPruner):
            return TrialScheduler.CONTINUE
        ot = optuna.trial.Trial(self.study, self.trial_ids[trial.trial_id])
        with warnings.catch_warnings():  # a step re-reported after a retry is ignored
            warnings.simplefilter("ignore")
            for item in result.get("history", [result]):
                v = item.get(self._metric_name)
                if v is not None and math.isfinite(v):
                    ot.report(float(v), int(item[self.epoch_key]))
        if ot.should_prune():
            self.pruned.add(trial.trial_id)
            self._tell(trial, optuna.trial.TrialState.PRUNED)
            logger.info("pruned trial %s at epoch %s (%s=%.4g)", trial, result[self.epoch_key],
                        self._metric_name, value)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def _tell(self, trial: Trial, state: optuna.trial.TrialState, value: float | None = None,
              attrs: dict[str, Any] | None = None) -> None:
        if trial.trial_id not in self.trial_ids or trial.trial_id in self.told:
            return
        self.told.add(trial.trial_id)
        ot = optuna.trial.Trial(self.study, self.trial_ids[trial.trial_id])
        for k, v in (attrs or {}).items():
            ot.set_user_attr(k, v)
        self.study.tell(ot, value if state == optuna.trial.TrialState.COMPLETE else None,
                        state=state, skip_if_finished=True)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        result = result or {}
        value = result.get(self._metric_name)
        finite = value is not None and math.isfinite(value)
        if result.get(self.phase_key) != "final":
            self._tell(trial, optuna.trial.TrialState.PRUNED)  # stopped before the end
        elif result.get("n_diverged"):
            attrs = {"diverged_seeds": int(result["n_diverged"]),
                     "diverged_epoch": int(result.get("diverged_epoch") or 0)}
            self._tell(trial, optuna.trial.TrialState.FAIL, attrs=attrs)
        elif finite:
            self._tell(trial, optuna.trial.TrialState.COMPLETE, float(value))
        else:
            self._tell(trial, optuna.trial.TrialState.FAIL)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        if not trial.should_recover():  # a trial Ray will retry is not finished yet
            self._tell(trial, optuna.trial.TrialState.FAIL)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._tell(trial, optuna.trial.TrialState.PRUNED)

    def debug_string(self) -> str:
        return f"OptunaPruningScheduler({type(self.pruner).__name__}): {len(self.pruned)} pruned"
