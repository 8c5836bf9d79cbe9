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

import contextlib
import importlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.core.errors import UserError
from study.core.io import write_json
from study.core.redact import MASK, redact
from study.engine.interrupt import Interruption
from study.engine.options import RunOptions
from study.engine.outcome import STATUSES
from study.engine.preflight import (
    check_datasets,
    check_local_resources,
    check_resources,
    check_resumable,
)
from study.engine.until_decided import sequential_design
from study.spec.fingerprint import changes, fingerprint, settings_record
from study.spec.limits import Limits, check_memory
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import StudySpec
from study.store.folder import (
    MIRRORED,
    RAY_DIR,
    STATE,
    UNSENT,
    StudyFolder,
    StudyState,
    new_study_id,
)
from study.store.results import default_folder, read_trials
from study.store.storage import Mirror, find_study, open_storage, study_uri
from study.store.tracking import (
    FOLDER_TAG,
    GENERATION_TAG,
    STUDY_ID_TAG,
    Tracker,
    absolute_uri,
    check_usable,
    curve_key,
    git_commit,
    recorded_uri,
)


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
    experiment_id: str = ""  # the study's MLflow experiment

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
    study's test cluster) if one runs; "local" always starts this study's own, without the
    workers Ray prestarts for a first driver (one per CPU): a Tune trial's actor gets a worker
    of its own, so those stayed idle through a whole study while their start took CPU time from
    the start-up (docs/benchmarks.md, "Cost of the study engine"). Call it from the main thread:
    Ray's local processes are killed when the thread that started them ends."""
    import logging

    import ray
    import ray._private.utils as ray_utils

    from study.engine.interrupt import kept_dispositions

    # Ctrl-C and SIGTERM keep reaching this process's own handlers while Ray starts: ray.init
    # sets a Python SIGTERM handler that calls sys.exit(15) wherever the main thread is, and
    # its core worker a C++ one that aborts the process (kept_dispositions)
    own = ray_utils.set_sigterm_handler
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        with kept_dispositions():
            own_ray = {} if address else {"_system_config": {"prestart_worker_first_driver": False}}
            ray.init(address=address or "local", num_cpus=None if address else num_cpus,
                     include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False,
                     **own_ray)
    finally:
        ray_utils.set_sigterm_handler = own


def stop_ray() -> None:
    """``ray.shutdown()`` with SIGINT's and SIGTERM's dispositions kept as they are: Ray's
    shutdown resets SIGTERM to the default at the C level (measured: during and after it), and
    a SIGTERM then killed the driver outright (exit -15; found by the chaos harness on a loaded
    machine, where the shutdown takes seconds)."""
    import ray

    from study.engine.interrupt import kept_dispositions

    with kept_dispositions():
        end_autoscaler_monitor()
        ray.shutdown()


def end_autoscaler_monitor() -> bool:
    """Kill the autoscaler monitor of the local Ray this process started (SIGKILL); whether
    one was ended. ``ray.shutdown`` stops the GCS before it, then sends it SIGTERM, whose
    handler tries to report "the autoscaler failed" through the stopped GCS until the shutdown
    kills it a second later: every study's end waited that second (docs/benchmarks.md, "Cost
    of the study engine"). A local study's cluster has nothing for it to tear down. A driver that
    joined a cluster (``--address``) owns no monitor, and Ray's private layout changing
    only brings the second back."""
    try:
        import ray._private.ray_constants as constants
        import ray._private.worker as ray_worker

        node = ray_worker._global_node
        if node is None or not node.head:
            return False
        ended = False
        for info in node.all_processes.get(constants.PROCESS_TYPE_MONITOR, []):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=5)
                ended = True
        return ended
    except Exception:  # noqa: BLE001 - ray.shutdown ends it anyway, a second later
        return False


def run_study(spec: StudySpec, budget: str = "default", results: str | Path | None = None, *,
              interruption: Interruption | None = None, **options: Any) -> StudyOutcome:
    """Run (or resume) ``spec`` at ``budget`` into ``results`` (default
    ``$HVAE_RESULTS_DIR/NAME`` or ``results/NAME``); ``options`` are :class:`RunOptions`.
    ``interruption``: the caller's active signal handlers (else installed around the trials)."""
    opts = RunOptions(**options)
    study = ResolvedStudy(spec, budget)
    folder = StudyFolder(Path(results) if results else default_folder(spec.name), spec.name)
    ready = _check_before_starting(study, opts, folder)
    import ray

    started_ray = not ray.is_initialized()
    tracker, parent = _start(study, opts, ready, started_ray, interruption)
    try:
        if interruption is not None:
            interruption.raise_if_signalled()  # a signal whose exception was swallowed
        check_resources(spec.resources.cpus, ready.gpus, local=opts.address is None)
        if ready.pull:
            folder.take(resume=False, overwrite=False)
            ready.mirror.pull()
            ready.prior = folder.check(resume=True, overwrite=False)
            _check_continuation(folder, ready.prior, ready.resolved, study=study,
                                mirror=ready.mirror)
        else:
            folder.take(opts.resume, opts.overwrite)
            if opts.overwrite and not opts.resume:
                _clear_replaced_storage(folder)
    except BaseException:
        folder.give_up()
        if started_ray:
            stop_ray()
        raise
    if folder.moved_from is not None:
        print(f"note: this study's folder moved from {folder.moved_from} to {folder.path}; "
              "resumed where it is now", flush=True)
    try:
        return _run(study, opts, folder, prior=ready.prior, parent=parent,
                    resolved=ready.resolved, tracker=tracker, mirror=ready.mirror, gpus=ready.gpus,
                    storage=ready.storage, interruption=interruption, study_id=ready.study_id,
                    design=ready.design or sequential_design(study, opts, ready.prior))
    finally:
        folder.release()


@dataclass
class _Ready:
    """What the checks before starting found: the study's resolved settings, its previous
    state (``prior``, None for a new study), identity, storage and ``--until-decided`` design."""

    resolved: dict[str, Any]
    prior: StudyState | None
    study_id: str
    storage: str | None
    mirror: Mirror | None
    pull: bool  # a resume on a machine without the folder: it comes from the storage
    design: Any
    gpus: float
    tracking_uri: str | None


def _check_before_starting(study: ResolvedStudy, opts: RunOptions,
                           folder: StudyFolder) -> _Ready:
    """Everything checked before Ray starts, writing nothing: the folder (ownership, a resumed
    study's settings and files), the storage, the flags, resources, datasets and the MLflow
    store."""
    spec = study.spec
    resolved = settings_record(study)
    storage = opts.storage or os.environ.get("HVAE_STORAGE") or None
    if storage:
        open_storage(storage)  # an unusable URI fails here, named as given
    # a resume on a machine without the folder (a lost head node): it comes from the storage
    pull = opts.resume and storage is not None and not os.path.lexists(folder / STATE)
    if pull:
        prefix, prior = find_study(storage, spec.name, folder.path)
        folder.check(resume=False, overwrite=False)  # the local folder: new or empty
    else:
        prior = folder.check(opts.resume, opts.overwrite)
        if opts.resume and not storage:
            storage = prior.storage  # resumed where it was started
    study_id = prior.study_id if prior is not None else new_study_id()
    mirror = Mirror(study_uri(storage, spec.name, study_id), folder.path) if storage else None
    if opts.resume:
        _check_continuation(folder, prior, resolved, study=study, mirror=mirror, pulled=pull)
    elif mirror is not None:
        mirror.check_writable()
    design = sequential_design(study, opts, prior)  # bad flags fail before Ray starts
    if spec.claims and study.budget != "smoke":  # SciPy only where claims are judged
        from study.judge.decidable import check_decidable

        check_decidable(study, design)
    gpus = spec.resources.gpus if opts.gpus_per_trial is None else opts.gpus_per_trial
    if opts.pack == "on" and gpus > 0:
        raise UserError(f"--pack on: packs train on CPUs only so far, and this study's trials "
                        f"ask for {gpus:g} GPU each; use --pack off, or --gpus-per-trial 0")
    if opts.address is None:
        check_local_resources(spec, gpus, opts.num_cpus)
    check_datasets(study)
    tracking_uri = opts.tracking_uri or (recorded_uri(prior.tracking_uri) if prior else None)
    check_usable(tracking_uri, resuming=bool(prior and prior.parent_run_id and not opts.new_parent))
    return _Ready(resolved, prior, study_id, storage, mirror, pull, design, gpus, tracking_uri)


def _start(study: ResolvedStudy, opts: RunOptions, ready: _Ready, started_ray: bool,
           interruption: Interruption | None) -> tuple[Tracker, str | None]:
    """Ray started in this thread (its processes die with the thread that started them) while
    helper threads check the memory a trial needs (importing PyTorch, which a grid's cost order
    needs too: study.spec.cost.reference_rates), import Ray Tune and Optuna, and open
    MLflow's store (seconds when new) once the memory is known to fit (a refusal writes
    nothing), finding a resumed study's parent run; (the tracker, the parent run to resume)."""
    prior, spec = ready.prior, study.spec

    def tracking() -> tuple[Tracker, str | None]:
        import mlflow.tracking  # noqa: F401 - the slow part, before anything is known

        fits.result()
        tracker = Tracker(ready.tracking_uri, spec.name, spec.question.strip())
        return tracker, (tracker.find_parent(prior, opts.new_parent) if prior else None)

    # a signal is held while threads start (an exception in the main thread while another
    # imports can leave Python's import lock held), and acted on once they are done
    held = interruption.deferred() if interruption is not None else contextlib.nullcontext()
    with held, ThreadPoolExecutor(3) as pool:
        fits = pool.submit(check_memory, study, Limits(memory_gib=opts.max_memory_gib))
        pending = pool.submit(tracking)
        imported = pool.submit(importlib.import_module, ".tuner", __package__)
        try:
            if started_ray:
                start_ray(opts.address, opts.num_cpus)
            fits.result()
            imported.result()
            return pending.result()
        except BaseException:
            if started_ray:
                stop_ray()
            raise


def _clear_replaced_storage(folder: StudyFolder) -> None:
    """``--overwrite``: the replaced study's prefix on shared storage goes too, if this folder
    was that study's home (a copy's original keeps its prefix) and its URI can be opened."""
    old = folder.replaced
    if old is None or not folder.replaced_home or not old.storage or not old.study_id \
            or MASK in old.storage:
        return
    try:
        Mirror(study_uri(old.storage, old.study, old.study_id), folder.path).clear()
    except Exception as err:  # noqa: BLE001 - the old prefix is not this run's business
        import logging

        logging.getLogger(__name__).warning("could not clear the replaced study's copy at %s: %s",
                                            redact(old.storage), redact(str(err))[:200])


def _check_continuation(folder: StudyFolder, state: StudyState, resolved: dict[str, Any], *,
                        study: ResolvedStudy, mirror: Mirror | None,
                        pulled: bool = False) -> None:
    """A resumed study runs exactly what it started with, from files that can be read."""
    spec, budget = study.spec, study.budget
    if budget != (state.budget or budget):
        raise UserError(f"--resume: {folder.path} was started with --budget {state.budget}, "
                        f"not {budget}")
    if state.resolved != resolved:
        diff = changes(state.resolved or {}, resolved)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise UserError(f"--resume: the study {spec.name!r} changed since it started ({shown}); "
                        "a resumed study runs the settings it started with: restore the study "
                        "file, or start a new study with --results DIR (or --overwrite)")
    if pulled:
        return  # its files are checked once they are here
    ray_dir = f"{mirror.uri}/{RAY_DIR}" if mirror is not None else str(folder / RAY_DIR)
    check_resumable(folder, ray_dir, spec.name, state.study_id)


def _run(study: ResolvedStudy, opts: RunOptions, folder: StudyFolder, *,
         prior: StudyState | None, parent: str | None, resolved: dict[str, Any],
         tracker: Tracker, mirror: Mirror | None, gpus: float, storage: str | None,
         interruption: Interruption | None, study_id: str, design: Any) -> StudyOutcome:
    from study.engine.rounds import Rounds

    parent, outbox = _open_records(study, folder, prior=prior, parent=parent,
                                   resolved=resolved, tracker=tracker, storage=storage,
                                   study_id=study_id, design=design)
    rounds = Rounds(study, opts, folder, design, prior)
    own = interruption is None
    interruption = interruption or Interruption()
    if own:
        interruption.__enter__()
    try:
        stopped, error, recorder = _run_rounds(rounds, folder, parent, outbox, mirror, gpus,
                                               interruption)
        with interruption.closing():
            counts, losses = _close_records(
                study.spec, opts, folder, rounds, recorder, parent, outbox, tracker, mirror,
                ended_early=stopped or error is not None)
    finally:
        _stop_pack_servers()
        if own:
            interruption.__exit__(None, None, None)
    missing = rounds.total - sum(counts.values())
    out = StudyOutcome(folder.path, parent, counts, rounds.total, tracker.uri, losses,
                       experiment_id=tracker.experiment_id)
    if error is not None:
        out.error, out.exit_status = _describe(error), 1
    elif stopped and missing:
        out.interrupted = interruption.signal or signal.SIGINT
        out.exit_status = interruption.exit_status
    elif missing or counts["failed"]:
        out.exit_status = 1
    return out


def _stop_pack_servers() -> None:
    import sys

    tuner = sys.modules.get("study.engine.tuner")  # imported while Ray started
    if tuner is not None:
        tuner.stop_pack_servers()


def _open_records(study: ResolvedStudy, folder: StudyFolder, *,
                  prior: StudyState | None, parent: str | None, resolved: dict[str, Any],
                  tracker: Tracker, storage: str | None, study_id: str,
                  design: Any) -> tuple[str, Any]:
    """The study's state written (begun, or resumed as the next generation) and its MLflow
    parent run started (a replaced one gets the recorded trials replayed); (parent run id,
    the outbox every MLflow write goes through)."""
    from study.engine.outbox import MlflowOutbox

    spec, budget = study.spec, study.budget
    commit = git_commit()
    fields = dict(budget=budget, tracking_uri=redact(absolute_uri(tracker.uri)),
                  storage=redact(storage) if storage else None)
    if prior is not None:
        state = folder.resume_as(prior, **fields)
    else:
        state = folder.begin(study_id, resolved=resolved, fingerprint=fingerprint(resolved),
                             sequential=design.to_state() if design else None,
                             confirmatory=spec.on_confirmatory_seeds(study.first.seeds),
                             spec_sha256=spec.file_sha256(), **fields)
    source = {"mlflow.source.name": f"python -m study.run {spec.name} --budget {budget}",
              "mlflow.source.type": "LOCAL", "mlflow.source.git.commit": commit}
    parent = tracker.start_parent(
        parent,
        tags={"study": spec.name, "question": spec.question.strip()[:5000], "budget": budget,
              "git_commit": commit, FOLDER_TAG: str(folder.path), STUDY_ID_TAG: study_id,
              GENERATION_TAG: str(state.generation), **source},
        run_name=f"{spec.name} {budget} {time.strftime('%Y-%m-%d %H:%M')}",
    )
    outbox = MlflowOutbox(tracker.uri, tracker.experiment_id, curve_key(spec.search.metric),
                          run_tags=source)
    if parent != state.parent_run_id:
        if state.parent_run_id is not None:  # --new-parent: the recorded trials go there too
            from study.engine.replay import replay_trials

            replay_trials(folder.path, study, outbox, parent)
        folder.update(parent_run_id=parent)
    return parent, outbox


def _run_rounds(rounds: Any, folder: StudyFolder, parent: str, outbox: Any,
                mirror: Mirror | None, gpus: float,
                interruption: Interruption) -> tuple[bool, Exception | None, Any]:
    """Ray Tune's rounds until the study is done or stops; (stopped by a signal, the error that
    stopped it, the last round's recorder)."""
    error, stopped, recorder = None, False, None
    try:
        while (next_round := rounds.next_tuner(parent, outbox, mirror, gpus)) is not None:
            tuner, recorder = next_round
            interruption.raise_if_signalled()
            tuner.fit()
            stopped = interruption.after_tune()
            if stopped or sum(_counts(folder).values()) < rounds.handed_out:
                break  # a round starts only when every trial before it is recorded
    except KeyboardInterrupt:  # a second signal: abort at once
        stopped = True
    except Exception as err:  # noqa: BLE001 - any crash: end orderly, report one line
        error = err
    return stopped, error, recorder


def _close_records(spec: StudySpec, opts: RunOptions, folder: StudyFolder, rounds: Any,
                   recorder: Any, parent: str, outbox: Any, tracker: Tracker,
                   mirror: Mirror | None, *, ended_early: bool) -> tuple[dict[str, int], list]:
    """Every record closed: unfinished trials KILLED in MLflow and WAITING in Optuna when the
    study ended early, the parent run ended, MLflow's queue sent (or its losses listed) and the
    storage mirror pushed; (recorded trials by status, MLflow writes lost)."""
    from study.engine.tuner import finish_optuna

    counts = _counts(folder)
    ended_early = ended_early and rounds.total - sum(counts.values()) > 0
    if ended_early and recorder is not None:
        recorder.kill_unfinished()
    finish_optuna(folder, spec, rounds.seen(), ended_early)
    outbox.end_parent(parent, "KILLED" if ended_early else "FINISHED")
    losses = outbox.close(min(opts.mlflow_grace_s, 10.0) if ended_early else opts.mlflow_grace_s)
    if losses:
        write_json(folder / UNSENT, {"tracking_uri": redact(tracker.uri), "unsent": losses})
    else:
        (folder / UNSENT).unlink(missing_ok=True)
    if mirror is not None:
        mirror.push(*MIRRORED)
    return counts, losses


def _counts(folder: StudyFolder) -> dict[str, int]:
    """Recorded trials by status."""
    done = read_trials(folder.path)
    per_trial = done.drop_duplicates("trial_id") if len(done) else done
    return {s: int((per_trial["trial_status"] == s).sum()) if len(per_trial) else 0
            for s in STATUSES}


def _describe(err: BaseException) -> str:
    """The cause, as the start of a line that ends with how to continue."""
    from study.engine.recorder import disk_full_detail, is_disk_full

    if is_disk_full(err):
        return f"the disk is full ({redact(disk_full_detail(err))[:300]}); free space, then"
    first = redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
    return f"the study stopped: {type(err).__name__}: {first[:300]};"
