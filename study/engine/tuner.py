"""The Ray Tune ``Tuner`` of a study, new or restored, and the Optuna bookkeeping at its end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.engine import ray_state
from study.engine.outbox import MlflowOutbox
from study.engine.progress import Progress
from study.engine.recorder import StudyRecorder
from study.spec.config import TrialConfig
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import ROUND_SEEDS, StudySpec
from study.store.folder import RAY_DIR, ROUNDS_DIR, StudyFolder
from study.store.storage import Mirror

if TYPE_CHECKING:
    from ray import tune

    from study.engine.options import RunOptions
    from study.judge.sequential import Round


#: the pack servers this driver started (they live as long as a handle does)
_SERVERS: list[Any] = []


def stop_pack_servers() -> None:
    """End the pack servers this driver started (at the end of a run)."""
    import ray

    while _SERVERS:
        try:
            ray.kill(_SERVERS.pop())
        except Exception:  # noqa: BLE001 - already gone with its node
            pass


def study_progress(study: ResolvedStudy, round_: Round | None = None) -> Progress:
    """The progress line of the study's trials (or a round's), its ETA from the cost model at
    this machine kind's reference rates (a trial's estimate from its factors and round
    seeds); a grid's trials start costliest first (``search.costliest_first``)."""
    from study.spec import cost

    cache: dict[TrialConfig, cost.Estimate] = {}

    def estimate(config: dict[str, Any]) -> cost.Estimate:
        cfg = study.config(config)
        if cfg not in cache:
            cache[cfg] = cost.estimate(cfg)
        return cache[cfg]

    spec = study.spec
    points = study.cells if round_ is None else _round_points(round_)
    total = study.num_trials if round_ is None else len(points)
    return Progress(total, spec.search.metric, spec.search.mode, list(spec.factors), estimate,
                    [estimate(c) for c in points], grid=not spec.sampled_factors)


def build_tuner(study: ResolvedStudy, opts: RunOptions, folder: StudyFolder, *,
                parent_run_id: str, outbox: MlflowOutbox, mirror: Mirror | None,
                gpus: float, round_: Round | None = None,
                restore: bool = False) -> tuple[tune.Tuner, StudyRecorder]:
    """The ``Tuner`` of the study (``round_`` None) or of one round of ``--until-decided``
    (its cells with their new seeds), new or, with ``restore``, restored from its experiment
    folder; with this invocation's recorder as its callback either way."""
    from ray import tune

    from study.engine.pruning import OptunaPruningScheduler
    from study.engine.search import build_search
    spec = study.spec
    progress = None if opts.quiet else study_progress(study, round_)
    ray_root = mirror.uri if mirror is not None else str(folder.path)  # Ray's storage_path
    if round_ is not None:
        ray_root, name = f"{ray_root}/{ROUNDS_DIR}", f"round_{round_.index}"
    else:
        name = RAY_DIR
    recorder = StudyRecorder(study, folder.path, parent_run_id=parent_run_id,
                             outbox=outbox, mirror=mirror, progress=progress,
                             experiment=None if mirror is not None else Path(ray_root) / name)
    trainable = _trainable(study, opts, folder, gpus)
    if restore:
        return _restored(f"{ray_root}/{name}", trainable, recorder, folder, local=mirror is None), \
            recorder
    if round_ is None:
        param_space, searcher, num_samples = build_search(study, opts.max_concurrent)
    else:
        param_space, searcher, num_samples = round_search(study, round_, opts.max_concurrent)
    distributions = {n: f.optuna_distribution() for n, f in spec.factors.items()}
    scheduler = OptunaPruningScheduler(
        storage=folder.optuna_url, study_name=spec.name, pruner=spec.pruner.build(),
        metric=spec.search.metric, mode=spec.search.mode, distributions=distributions,
        study_id=folder.state.study_id)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.search.metric, mode=spec.search.mode, search_alg=searcher,
            scheduler=scheduler, num_samples=num_samples,
            max_concurrent_trials=opts.max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=ray_root, callbacks=[recorder], verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )
    return tuner, recorder


def _trainable(study: ResolvedStudy, opts: RunOptions, folder: StudyFolder, gpus: float) -> Any:
    """The Ray trainable with its parameters and resources: a trial per configuration, or with
    ``--pack on`` a thin client of the pack servers started here (engine/pack_server)."""
    from ray import tune

    from study.engine.trainable import run_study_trial

    spec = study.spec
    plain_trial_workers()
    params = dict(study=study, metric=spec.search.metric, plots=opts.plots)
    if opts.pack != "on":
        return tune.with_resources(tune.with_parameters(run_study_trial, **params),
                                   {"cpu": spec.resources.cpus, "gpu": gpus})
    from study.engine.pack_server import CLIENTS_PER_SERVER, start_servers

    _SERVERS.extend(start_servers(study, folder.state.study_id, spec.search.metric, opts.plots))
    return tune.with_resources(
        tune.with_parameters(run_study_trial, pack=folder.state.study_id, **params),
        {"cpu": spec.resources.cpus / CLIENTS_PER_SERVER, "gpu": 0})


def plain_trial_workers() -> bool:
    """Give Ray Tune's trial actors no runtime environment of their own; whether Tune would
    have given them one. Tune gives every trial actor ``PL_DISABLE_FORK`` (for PyTorch
    Lightning, which this project does not use) and passes on some variables of the driver's
    environment, its AWS credentials among them (``ray/tune/execution/class_cache.py``):
    - Ray shipped those credentials with each actor to whichever node ran it, against the
      README's promise that nothing of the driver's environment leaves its machine (a cluster's
      workers use their instance role; local workers inherit the environment anyway);
    - Ray started every such actor in a new process through its runtime-environment setup (an
      extra Python start: 0.79-0.82 s against 0.48-0.53 s per actor, measured), never in a
      worker it had started already.
    Process-wide, in the study's driver. Ray changing its private layout brings both back, which
    ``tests/test_security.py`` would show."""
    try:
        from ray.tune.execution import class_cache

        had = bool(class_cache.DEFAULT_ENV_VARS) or any(
            k in os.environ for k in class_cache.ENV_VARS_TO_PROPAGATE)
        class_cache.DEFAULT_ENV_VARS.clear()
        class_cache.ENV_VARS_TO_PROPAGATE.clear()
        return had
    except Exception:  # noqa: BLE001 - Ray's layout changed: the actors start as before
        return False


def _restored(path: str, trainable: Any, recorder: StudyRecorder, folder: StudyFolder, *,
              local: bool) -> tune.Tuner:
    """The Tuner of the experiment at ``path``, restored with this invocation's recorder and
    this folder's Optuna database (a local experiment's cut-short state is put back first from
    the copy kept of it: study.engine.ray_state)."""
    from ray import tune

    if local and ray_state.restore(Path(path)):
        print("note: Ray Tune's saved experiment state was cut short (a full disk?); "
              "restored from the copy kept at the last recorded trial", flush=True)
    tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True,
                               resume_errored=True)
    stand_in_for_deleted_checkpoints(tuner)
    # Tune restores its callbacks and scheduler from the pickle it made when the study
    # started, and has no public way to pass live ones (ray-project/ray#41364): give it
    # this recorder, and point the saved scheduler at this folder's Optuna database (the
    # pickle holds the path the folder had then: a moved or copied folder's origin)
    internal = tuner._local_tuner
    internal.get_run_config().callbacks = [recorder]
    internal._tune_config.scheduler.rebind(folder.optuna_url, folder.state.study_id)
    internal._tune_config.search_alg.relocate(path)
    return tuner


def stand_in_for_deleted_checkpoints(tuner: tune.Tuner) -> list[str]:
    """An empty folder for each trial checkpoint that a restored experiment names and storage no
    longer has; returns their paths.

    Ray deletes all but a trial's last ``num_to_keep`` checkpoints as soon as it registers a new
    one, but saves the experiment state (its record of each trial's latest checkpoint) only every
    ~10 s: a driver killed in between leaves a record naming a deleted checkpoint, and Ray then
    fails the trial at every restore ("does not exist on storage anymore"). Only older ones are
    ever deleted, so the trial's folder holds newer ones: the trainable restores from the newest
    readable checkpoint in its folder (``study.engine.trainable.TuneIO.checkpoints``), not only the one
    Ray names, and the stand-in lets Ray get that far. Ray deletes the stand-in like any other
    checkpoint once the trial has made ``num_to_keep`` new ones."""
    import pyarrow.fs as pafs

    try:
        results = tuner.get_results()  # the restored experiment state, as Ray's public API
    except RuntimeError:  # no readable experiment state: Tune.restore will say so itself
        return []
    made = []
    for result in results:
        checkpoint = result.checkpoint
        if checkpoint is None:
            continue
        fs = checkpoint.filesystem
        if fs.get_file_info(checkpoint.path).type == pafs.FileType.NotFound:
            fs.create_dir(checkpoint.path)
            made.append(checkpoint.path)
    return made


def _round_points(round_: Round) -> list[dict[str, Any]]:
    """A round's cells, each with the round's seeds (``ROUND_SEEDS`` overrides the study's
    seeds: ``StudySpec.trial_values``)."""
    return [cell | {ROUND_SEEDS: round_.seeds_text} for cell in round_.cells]


def round_search(study: ResolvedStudy, round_: Round, max_concurrent: int | None):
    """(param_space, search_alg, num_samples) of a round: each of its cells once with the
    round's seeds, most expensive first (as ``build_search`` orders a grid)."""
    from ray import tune

    from study.engine.search import costliest_first, grid_generator

    spec = study.spec
    points = costliest_first(study, _round_points(round_))
    space = {name: tune.choice(f.values) for name, f in spec.grid_factors.items()}
    space[ROUND_SEEDS] = tune.choice([round_.seeds_text])
    return space, grid_generator(points, max_concurrent), len(points)


def finish_optuna(folder: StudyFolder, spec: StudySpec, seen: set[str],
                  ended_early: bool) -> None:
    """An interrupted study's unfinished Optuna trials wait (WAITING) for ``--resume``; at the
    end of a complete one, an Optuna trial whose Ray trial was lost is told FAIL."""
    from study.engine.pruning import fail_orphans, suspend

    if not (folder / "optuna.db").exists():
        return
    try:
        if ended_early:
            suspend(folder.optuna_url, spec.name)
        else:
            fail_orphans(folder.optuna_url, spec.name, seen)
    except Exception:  # noqa: BLE001 - a full disk may refuse this too; resume repairs it
        import logging

        logging.getLogger(__name__).warning("could not update %s", folder / "optuna.db")
