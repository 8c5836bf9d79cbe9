"""StudySpec -> ``ray.tune.Tuner`` (grid or OptunaSearch + Optuna pruning) -> run or resume.

Grid factors only (``grid``/``levels``): every cell once, most expensive first. Sampled
factors: Ray's ``OptunaSearch`` (TPE, seeded); with grid factors too, a define-by-run space
gives every grid cell the same number of trials and lets TPE sample the rest. Pruning is
``OptunaPruningScheduler`` in every case (docs/ARCHITECTURE.md has the reasons). The results folder holds the Ray experiment (``ray/``), the Optuna study
(``optuna.db``), the Parquet tables and ``study.json`` (budget, MLflow parent run).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import write_json
from .results import default_folder
from .spec import StudySpec
from .storage import Mirror, open_storage, study_uri
from .tracking import Tracker, check_reachable, close_study_outbox, git_commit, study_outbox

STATE = "study.json"
RAY_DIR = "ray"
UNSENT = "mlflow_unsent.json"
#: what the end of a study copies to shared storage (trials' own files are copied as they end)
MIRRORED = ("trials.parquet", "epochs.parquet", "scores.parquet", "plots", "optuna.db", STATE, UNSENT)


@dataclass
class StudyOutcome:
    results: Path
    parent_run_id: str
    counts: dict[str, int]
    tracking_uri: str
    mlflow_losses: list[dict[str, Any]]


def _check_results_folder(results: Path, resume: bool, overwrite: bool,
                          mirror: Mirror | None = None) -> dict[str, Any]:
    """The saved state of a previous invocation ({} for a new study). Checks, without writing
    anything, that the folder can be created and written. ``--resume`` on a machine without
    the folder (a lost head node) pulls it back from the storage ``mirror``."""
    state_file = results / STATE
    if resume:
        if not state_file.exists() and mirror is not None and mirror.exists(STATE):
            mirror.pull()
        ray_state = mirror.exists(RAY_DIR) if mirror is not None else (results / RAY_DIR).exists()
        if not state_file.exists() or not ray_state:
            raise UserError(f"--resume: {results} holds no study to resume (no {STATE}); "
                            "run it without --resume first")
        return json.loads(state_file.read_text())
    elsewhere = mirror is not None and mirror.exists(STATE)
    if (state_file.exists() or (results / RAY_DIR).exists() or elsewhere) and not overwrite:
        raise UserError(f"{results} already holds this study's results; add --resume to "
                        "continue it, --overwrite to replace it, or --results DIR")
    existing = results
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if not existing.is_dir() else "permission denied"
        raise UserError(f"results folder {results} is not writable: {existing} is {why}")
    if mirror is not None:
        mirror.check_writable()
    return {}


def _prepare_results_folder(results: Path, resume: bool, mirror: Mirror | None) -> None:
    if not resume and results.exists():
        shutil.rmtree(results)  # --overwrite (checked above)
    if not resume and mirror is not None:
        mirror.clear()
    results.mkdir(parents=True, exist_ok=True)


def _search(spec: StudySpec, budget: str, max_concurrent: int | None = None):
    """(param_space, search_alg, num_samples) for the study's factors. ``max_concurrent`` is
    given to the grid's generator itself: Ray Tune applies ``max_concurrent_trials`` only to a
    ``Searcher`` and ignores it (with a warning) for a generator passed in."""
    from ray import tune

    if not spec.sampled_factors:
        # every grid cell once, most expensive first: with more trials than slots, the long
        # ones start early and the last wave is short (longest-processing-time scheduling)
        from ray.tune.search.basic_variant import BasicVariantGenerator

        cells = sorted(spec.grid_cells(), key=lambda c: -estimated_cost(spec.trial_config(c, budget)))
        space = {name: tune.choice(f.values) for name, f in spec.grid_factors.items()}
        generator = BasicVariantGenerator(points_to_evaluate=cells, max_concurrent=max_concurrent or 0)
        return space, generator, len(cells)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    per_cell = int(spec.budget(budget).get("num_samples", spec.search.num_samples))
    cells = spec.grid_cells()
    if spec.grid_factors:
        space: Any = GridCellsThenSample(cells, spec.sampled_factors)
    else:
        space = {name: f.optuna_distribution() for name, f in spec.sampled_factors.items()}
    searcher = OptunaSearch(
        space=space, metric=spec.search.metric, mode=spec.search.mode,
        sampler=optuna.samplers.TPESampler(seed=spec.search.sampler_seed),
    )
    return {}, searcher, len(cells) * per_cell


def estimated_cost(cfg) -> float:
    """Relative training cost of a trial: parameters x seeds x epochs x training points."""
    from models import build_model

    from .data import IMAGE_DATASETS

    x_dim = 784 if cfg.dataset in IMAGE_DATASETS else 2
    n_params = sum(p.numel() for p in build_model(cfg.model_config_for(x_dim), [0]).parameters())
    n_train = cfg.n_train or 60_000
    return float(n_params * len(cfg.seeds) * cfg.epochs * n_train * cfg.iw_samples)


class GridCellsThenSample:
    """Define-by-run space for OptunaSearch when a study mixes grid and sampled factors: trial i
    gets grid cell i mod (number of cells), so every cell gets the same number of trials, and
    TPE samples the other factors (the grid values are recorded as user attributes)."""

    def __init__(self, cells: list[dict[str, Any]], sampled: dict[str, Any]) -> None:
        self.cells = cells
        self.sampled = sampled
        self.count = 0

    def __call__(self, trial) -> dict[str, Any]:
        cell = self.cells[self.count % len(self.cells)]
        self.count += 1
        for name, factor in self.sampled.items():
            dist = factor.optuna_distribution()
            _suggest(trial, name, dist)
        for name, value in cell.items():
            trial.set_user_attr(f"grid.{name}", value)
        return dict(cell)


def _suggest(trial, name: str, dist) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


def check_datasets(spec: StudySpec, budget: str) -> None:
    """Every image dataset the study reads is present and md5-correct (downloaded here, once,
    if missing and allowed): a missing or corrupt file is one clear error before anything
    starts, not a failure in every trial."""
    from .data import IMAGE_DATASETS
    from .data.idx import FILES, data_dir, ensure_file

    seen: set[tuple[str, str]] = set()
    for cell in spec.grid_cells():
        d = spec.trial_config(cell, budget).data_config()
        for name in {d.dataset, d.ood_dataset} & set(IMAGE_DATASETS):
            root = data_dir(d.data_dir)
            if (name, str(root)) not in seen:
                seen.add((name, str(root)))
                for file in FILES[name]:
                    ensure_file(name, file, root, d.allow_download)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` or start a local Ray: no dashboard (nothing listens beyond what
    Ray needs), and Ray's default token authentication left on (``RAY_AUTH_MODE`` is never
    set to ``disabled`` here)."""
    import ray

    ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
             logging_level=logging.ERROR, log_to_driver=False)


def run_study(
    spec: StudySpec,
    budget: str = "default",
    results: str | Path | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    max_concurrent: int | None = None,
    gpus_per_trial: float | None = None,
    num_cpus: int | None = None,
    quiet: bool = False,
    plots: bool = True,
    mlflow_grace_s: float = 300.0,
    storage: str | None = None,
) -> StudyOutcome:
    """Run (or resume) ``spec`` at ``budget``; see the module docstring.

    ``mlflow_grace_s``: how long the end of the study waits for MLflow writes held back by a
    tracking outage; what is still unsent then is listed in ``mlflow_unsent.json``.
    ``storage``: shared storage URI (default ``$HVAE_STORAGE``; see ``study.storage``)."""
    results = Path(results).resolve() if results else default_folder(spec.name)
    storage = storage or os.environ.get("HVAE_STORAGE") or None
    if resume and not storage and (results / STATE).exists():  # resumed where it was started
        storage = json.loads((results / STATE).read_text()).get("storage")
    if storage:
        open_storage(storage)  # an unusable URI fails here, named as given
    mirror = Mirror(study_uri(storage, spec.name), results) if storage else None
    state = _check_results_folder(results, resume, overwrite, mirror)
    if resume and budget != state.get("budget", budget):
        raise UserError(f"--resume: {results} was started with --budget {state['budget']}, "
                        f"not {budget}")
    check_datasets(spec, budget)
    import ray
    from ray import tune

    from .pruning import OptunaPruningScheduler
    from .recorder import StudyRecorder
    from .trainable import run_study_trial

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    check_reachable(tracking_uri)
    # MLflow's store (a fresh sqlite file migrates its schema: seconds) comes up while Ray starts
    with ThreadPoolExecutor(1) as pool:
        pending_tracker = pool.submit(Tracker, tracking_uri, spec.name)
        if not ray.is_initialized():
            start_ray(address, num_cpus)
        tracker = pending_tracker.result()  # an unusable tracking URI fails here
    _prepare_results_folder(results, resume, mirror)
    parent = tracker.start_parent(
        state.get("parent_run_id"),
        tags={"study": spec.name, "question": spec.question.strip()[:5000], "budget": budget,
              "git_commit": git_commit()},
        run_name=f"{spec.name} ({budget})",
    )
    write_json(results / STATE, {"study": spec.name, "budget": budget, "parent_run_id": parent,
                                 "tracking_uri": tracker.uri, "storage": storage})
    ray_root = mirror.uri if mirror is not None else str(results)  # Ray's storage_path

    gpus = spec.resources.gpus if gpus_per_trial is None else gpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(run_study_trial, spec=spec, budget=budget,
                             metric=spec.search.metric, plots=plots),
        {"cpu": spec.resources.cpus, "gpu": gpus},
    )
    outbox = study_outbox(tracker.uri, spec.name, spec.search.metric, tracker.experiment_id)
    recorder = StudyRecorder(spec, budget, results, tracker.uri, parent, quiet=quiet,
                             mirror_uri=mirror.uri if mirror is not None else None)
    if resume and tune.Tuner.can_restore(f"{ray_root}/{RAY_DIR}"):
        tuner = tune.Tuner.restore(f"{ray_root}/{RAY_DIR}", trainable=trainable,
                                   resume_unfinished=True, resume_errored=True)
    else:
        param_space, searcher, num_samples = _search(spec, budget, max_concurrent)
        distributions = {n: f.optuna_distribution() for n, f in spec.factors.items()}
        scheduler = OptunaPruningScheduler(
            storage=f"sqlite:///{results / 'optuna.db'}", study_name=spec.name,
            pruner=spec.pruner.build(), metric=spec.search.metric, mode=spec.search.mode,
            distributions=distributions,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=spec.search.metric, mode=spec.search.mode, search_alg=searcher,
                scheduler=scheduler, num_samples=num_samples,
                max_concurrent_trials=max_concurrent, reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=RAY_DIR, storage_path=ray_root, callbacks=[recorder], verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            ),
        )
    interrupted = True
    try:
        tuner.fit()
        outbox.end_parent(parent, "FINISHED")
        interrupted = False
    finally:  # also on Ctrl-C (briefly): send what can be sent, list what cannot
        losses = close_study_outbox(tracker.uri, spec.name,
                                    min(mlflow_grace_s, 10.0) if interrupted else mlflow_grace_s)
        if losses:
            write_json(results / UNSENT, {"tracking_uri": tracker.uri, "unsent": losses})
        else:
            (results / UNSENT).unlink(missing_ok=True)
        if mirror is not None:
            mirror.push(*MIRRORED)
    from .results import read_trials

    trials = read_trials(results)
    counts = {s: int((trials.drop_duplicates("trial_id")["trial_status"] == s).sum())
              for s in ("finished", "diverged", "pruned", "failed")} if len(trials) else {}
    return StudyOutcome(results, parent, counts, tracker.uri, losses)
