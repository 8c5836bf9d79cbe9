"""The Ray Tune ``Tuner`` of a study, new or restored, and the Optuna bookkeeping at its end."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .folder import RAY_DIR, StudyFolder
from .outbox import MlflowOutbox
from .progress import Progress
from .recorder import StudyRecorder
from .spec import StudySpec
from .storage import Mirror

if TYPE_CHECKING:
    from ray import tune

    from .launch import RunOptions


def build_tuner(spec: StudySpec, budget: str, opts: RunOptions, folder: StudyFolder, *,
                parent_run_id: str, outbox: MlflowOutbox, mirror: Mirror | None,
                gpus: float) -> tuple[tune.Tuner, StudyRecorder]:
    """A new ``Tuner`` or, for ``--resume``, the restored one; with this invocation's recorder
    as its callback either way."""
    from ray import tune

    from .pruning import OptunaPruningScheduler
    from .search import build_search
    from .trainable import run_study_trial

    progress = None if opts.quiet else Progress(
        spec.num_trials(budget), max(spec.trial_config(c, budget).epochs for c in spec.grid_cells()),
        spec.search.metric, spec.search.mode, list(spec.factors))
    recorder = StudyRecorder(spec, budget, folder.path, parent_run_id=parent_run_id,
                             outbox=outbox, mirror=mirror, progress=progress)
    trainable = tune.with_resources(
        tune.with_parameters(run_study_trial, spec=spec, budget=budget,
                             metric=spec.search.metric, plots=opts.plots),
        {"cpu": spec.resources.cpus, "gpu": gpus},
    )
    ray_root = mirror.uri if mirror is not None else str(folder.path)  # Ray's storage_path
    if opts.resume:
        tuner = tune.Tuner.restore(f"{ray_root}/{RAY_DIR}", trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
        # Tune restores its callbacks from the pickle it made when the study started, and has
        # no public way to pass live ones (ray-project/ray#41364): give it this recorder.
        tuner._local_tuner.get_run_config().callbacks = [recorder]
        return tuner, recorder
    param_space, searcher, num_samples = build_search(spec, budget, opts.max_concurrent)
    distributions = {n: f.optuna_distribution() for n, f in spec.factors.items()}
    scheduler = OptunaPruningScheduler(
        storage=folder.optuna_url, study_name=spec.name, pruner=spec.pruner.build(),
        metric=spec.search.metric, mode=spec.search.mode, distributions=distributions)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.search.metric, mode=spec.search.mode, search_alg=searcher,
            scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=RAY_DIR, storage_path=ray_root, callbacks=[recorder], verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )
    return tuner, recorder


def finish_optuna(folder: StudyFolder, spec: StudySpec, recorder: StudyRecorder,
                  ended_early: bool) -> None:
    """An interrupted study's unfinished Optuna trials wait (WAITING) for ``--resume``; at the
    end of a complete one, an Optuna trial whose Ray trial was lost is told FAIL."""
    from .pruning import fail_orphans, suspend

    if not (folder / "optuna.db").exists():
        return
    try:
        if ended_early:
            suspend(folder.optuna_url, spec.name)
        else:
            fail_orphans(folder.optuna_url, spec.name, recorder.seen)
    except Exception:  # noqa: BLE001 - a full disk may refuse this too; resume repairs it
        import logging

        logging.getLogger(__name__).warning("could not update %s", folder / "optuna.db")
