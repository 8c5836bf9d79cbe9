"""Run or resume a study: StudySpec -> checks -> Ray Tune (grid / OptunaSearch + the Optuna
pruning scheduler) -> Parquet and MLflow, and a clean end whatever happens.

Order: everything that can be checked without writing (the study folder's ownership and lock,
a resumed study's fingerprint and files, the datasets, the tracking server) is checked first;
then the MLflow store opens while Ray starts; then the folder is taken (created, locked) and the
trials run. The end is always orderly: an interruption (Ctrl-C, SIGTERM), a full disk or a
crash leaves MLflow's unfinished runs KILLED (never RUNNING), Optuna's unfinished trials
WAITING, and a study that ``--resume`` continues.
"""

from __future__ import annotations

import importlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .fingerprint import changes, fingerprint, resolved_study
from .folder import MIRRORED, RAY_DIR, STATE, UNSENT, StudyFolder
from .interrupt import Interruption
from .outcome import STATUSES
from .io import write_json
from .until_decided import sequential_design
from .preflight import (check_datasets, check_local_resources, check_resources,
                        check_resumable)
from .redact import redact
from .results import default_folder, read_trials
from .spec import StudySpec
from .storage import Mirror, open_storage, study_uri
from .tracking import Tracker, check_reachable, git_commit


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (the ``study.run`` flags)."""

    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    overwrite: bool = False
    max_concurrent: int | None = None
    gpus_per_trial: float | None = None
    num_cpus: int | None = None
    quiet: bool = False
    plots: bool = True
    mlflow_grace_s: float = 300.0
    until_decided: bool = False
    max_seeds: int | None = None
    seed_step: int | None = None


@dataclass
class StudyOutcome:
    """How a run ended. ``counts``: recorded trials by status; ``missing``: trials of the study
    not recorded; ``interrupted``: the signal that stopped it; ``error``: why it stopped early."""

    results: Path
    parent_run_id: str
    counts: dict[str, int]
    total: int
    tracking_uri: str
    mlflow_losses: list[dict[str, Any]] = field(default_factory=list)
    interrupted: int | None = None
    exit_status: int = 0
    error: str | None = None

    @property
    def recorded(self) -> int:
        return sum(self.counts.values())

    @property
    def missing(self) -> int:
        return max(0, self.total - self.recorded)


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` or start a new local Ray: no dashboard UI, and Ray's default token
    authentication left on (``RAY_AUTH_MODE`` is never set to ``disabled`` here). Without an
    address, ``ray.init`` would join the Ray last started on this machine (``ray start``, another
    study's test cluster) if one runs; "local" always starts this study's own. Call it from the
    main thread: Ray's local processes are killed when the thread that started them ends."""
    import logging

    import ray

    ray.init(address=address or "local", num_cpus=None if address else num_cpus,
             include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)


def run_study(spec: StudySpec, budget: str = "default", results: str | Path | None = None, *,
              interruption: Interruption | None = None, **options: Any) -> StudyOutcome:
    """Run (or resume) ``spec`` at ``budget`` into ``results`` (default
    ``$HVAE_RESULTS_DIR/NAME`` or ``results/NAME``); ``options`` are :class:`RunOptions`.
    ``interruption``: the caller's active signal handlers (else installed around the trials)."""
    opts = RunOptions(**options)
    folder = StudyFolder(Path(results) if results else default_folder(spec.name), spec.name)
    storage = opts.storage or os.environ.get("HVAE_STORAGE") or None
    if opts.resume and not storage and (folder / STATE).exists():
        storage = folder.state().get("storage")  # resumed where it was started
    if storage:
        open_storage(storage)  # an unusable URI fails here, named as given
    mirror = Mirror(study_uri(storage, spec.name), folder.path) if storage else None
    resolved = resolved_study(spec, budget)
    # a resume on a machine without the folder (a lost head node): it comes from the storage
    pull = opts.resume and mirror is not None and not (folder / STATE).exists() \
        and mirror.exists(STATE)
    state: dict[str, Any] = {}
    if not pull:
        state = folder.check(opts.resume, opts.overwrite)
        _check_continuation(folder, state, resolved, budget=budget, spec=spec,
                            resume=opts.resume, mirror=mirror, overwrite=opts.overwrite)
    design = sequential_design(spec, budget, opts, state)  # bad flags fail before Ray starts
    gpus = spec.resources.gpus if opts.gpus_per_trial is None else opts.gpus_per_trial
    if opts.address is None:
        check_local_resources(spec, gpus, opts.num_cpus)
    check_datasets(spec, budget)
    check_reachable(opts.tracking_uri)

    import ray

    started_ray = not ray.is_initialized()
    # Ray starts in this thread (its processes die with the thread that started them), while
    # helper threads open MLflow's store (seconds when new) and import Ray Tune, Optuna and,
    # for a grid's cost order (study.search.estimated_cost), PyTorch
    modules = [".tuner"] + (["models.size"] if not spec.sampled_factors else [])
    with ThreadPoolExecutor(2) as pool:
        pending = pool.submit(Tracker, opts.tracking_uri, spec.name, spec.question.strip())
        imported = pool.submit(lambda: [importlib.import_module(m, __package__) for m in modules])
        try:
            if started_ray:
                start_ray(opts.address, opts.num_cpus)
                if interruption is not None:
                    interruption.reinstall()
            imported.result()
            tracker = pending.result()
        except BaseException:
            if started_ray:
                ray.shutdown()
            raise
    try:
        check_resources(spec.resources.cpus, gpus, local=opts.address is None)
        if pull:
            folder.take(resume=False, overwrite=False)
            mirror.pull()
            state = folder.state()
            _check_continuation(folder, state, resolved, budget=budget, spec=spec, resume=True,
                                mirror=mirror)
        else:
            state = folder.take(opts.resume, opts.overwrite)
            if opts.overwrite and not opts.resume and mirror is not None:
                mirror.clear()
    except BaseException:
        folder.give_up()
        if started_ray:
            ray.shutdown()
        raise
    try:
        return _run(spec, budget, opts, folder, state=state, resolved=resolved, tracker=tracker,
                    mirror=mirror, gpus=gpus, storage=storage, interruption=interruption,
                    design=design or sequential_design(spec, budget, opts, state))
    finally:
        folder.release()


def _check_continuation(folder: StudyFolder, state: dict[str, Any], resolved: dict[str, Any], *,
                        budget: str, spec: StudySpec, resume: bool, mirror: Mirror | None,
                        overwrite: bool = False) -> None:
    """A resumed study runs exactly what it started with, from files that can be read."""
    if not resume:
        if mirror is not None:
            if mirror.exists(STATE) and not overwrite:
                raise UserError(f"{mirror.uri} already holds this study's results; add --resume "
                                "to continue it, --overwrite to replace it, or another --storage")
            mirror.check_writable()
        return
    if budget != state.get("budget", budget):
        raise UserError(f"--resume: {folder.path} was started with --budget {state['budget']}, "
                        f"not {budget}")
    before = state.get("resolved")
    if before is not None and before != resolved:
        diff = changes(before, resolved)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise UserError(f"--resume: the study {spec.name!r} changed since it started ({shown}); "
                        "a resumed study runs the settings it started with: restore the study "
                        "file, or start a new study with --results DIR (or --overwrite)")
    ray_dir = f"{mirror.uri}/{RAY_DIR}" if mirror is not None else str(folder / RAY_DIR)
    check_resumable(folder, ray_dir, spec.name)


def _run(spec: StudySpec, budget: str, opts: RunOptions, folder: StudyFolder, *,
         state: dict[str, Any], resolved: dict[str, Any], tracker: Tracker,
         mirror: Mirror | None, gpus: float, storage: str | None,
         interruption: Interruption | None, design: Any) -> StudyOutcome:
    from .outbox import MlflowOutbox
    from .rounds import Rounds
    from .tuner import finish_optuna

    commit = git_commit()
    source = {"mlflow.source.name": f"python -m study.run {spec.name} --budget {budget}",
              "mlflow.source.type": "LOCAL", "mlflow.source.git.commit": commit}
    parent = tracker.start_parent(
        state.get("parent_run_id"),
        tags={"study": spec.name, "question": spec.question.strip()[:5000], "budget": budget,
              "git_commit": commit, "results": str(folder.path), **source},
        run_name=f"{spec.name} {budget} {time.strftime('%Y-%m-%d %H:%M')}",
    )
    folder.write_state(budget=budget, parent_run_id=parent, tracking_uri=redact(tracker.uri),
                       storage=redact(storage) if storage else None, resolved=resolved,
                       fingerprint=fingerprint(resolved),
                       sequential=design.to_state() if design else None)
    outbox = MlflowOutbox(tracker.uri, tracker.experiment_id, spec.search.metric, run_tags=source)
    rounds = Rounds(spec, budget, opts, folder, design, state if opts.resume else {})
    error, stopped, recorder = None, False, None
    own = interruption is None
    interruption = interruption or Interruption()
    if own:
        interruption.__enter__()
    try:
        try:
            while (next_round := rounds.next_tuner(parent, outbox, mirror, gpus)) is not None:
                tuner, recorder = next_round
                tuner.fit()
                stopped = interruption.after_tune()
                if stopped or sum(_counts(folder).values()) < rounds.handed_out:
                    break  # a round starts only when every trial before it is recorded
        except KeyboardInterrupt:  # a second signal: abort at once
            stopped = True
        except Exception as err:  # noqa: BLE001 - any crash: end orderly, report one line
            error = err
        with interruption.closing():
            total = rounds.total
            counts = _counts(folder)
            missing = total - sum(counts.values())
            ended_early = missing > 0 and (stopped or error is not None)
            if ended_early and recorder is not None:
                recorder.kill_unfinished()
            finish_optuna(folder, spec, rounds.seen(), ended_early)
            outbox.end_parent(parent, "KILLED" if ended_early else "FINISHED")
            losses = outbox.close(min(opts.mlflow_grace_s, 10.0) if ended_early
                                  else opts.mlflow_grace_s)
            if losses:
                write_json(folder / UNSENT, {"tracking_uri": redact(tracker.uri),
                                             "unsent": losses})
            else:
                (folder / UNSENT).unlink(missing_ok=True)
            if mirror is not None:
                mirror.push(*MIRRORED)
    finally:
        if own:
            interruption.__exit__(None, None, None)
    out = StudyOutcome(folder.path, parent, counts, total, tracker.uri, losses)
    if error is not None:
        out.error, out.exit_status = _describe(error), 1
    elif stopped and missing:
        out.interrupted = interruption.signal or signal.SIGINT
        out.exit_status = interruption.exit_status
    elif missing or counts["failed"]:
        out.exit_status = 1
    return out


def _counts(folder: StudyFolder) -> dict[str, int]:
    """Recorded trials by status."""
    done = read_trials(folder.path)
    per_trial = done.drop_duplicates("trial_id") if len(done) else done
    return {s: int((per_trial["trial_status"] == s).sum()) if len(per_trial) else 0
            for s in STATUSES}


def _describe(err: BaseException) -> str:
    """The cause, as the start of a line that ends with how to continue."""
    from .recorder import disk_full_detail, is_disk_full

    if is_disk_full(err):
        return f"the disk is full ({redact(disk_full_detail(err))[:300]}); free space, then"
    first = redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    return f"the study stopped: {type(err).__name__}: {first[:300]};"
