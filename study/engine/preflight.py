"""Checks made before a study starts, so that bad input fails in one line and nothing runs:
the datasets a study reads, a resumed study's files, and the resources a trial asks for."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path

from study.core.errors import UserError
from study.engine import ray_state
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import StudySpec
from study.store.folder import EPOCHS, OPTUNA_DB, SCORES, StudyFolder
from study.store.results import read_trials

logger = logging.getLogger(__name__)


def check_datasets(study: ResolvedStudy) -> None:
    """Every image dataset the study reads is present and md5-correct (downloaded here, once,
    if missing and allowed): a missing or corrupt file is one clear error before anything
    starts, not a failure in every trial."""
    from study.data import IMAGE_DATASETS
    from study.data.idx import FILES, data_dir, ensure_file

    seen: set[tuple[str, str]] = set()
    for cell in study.cells:
        d = study.config(cell).data_config()
        for name in {d.dataset, d.ood_dataset} & set(IMAGE_DATASETS):
            root = data_dir(d.data_dir)
            if (name, str(root)) not in seen:
                seen.add((name, str(root)))
                for file in FILES[name]:
                    ensure_file(name, file, root, d.allow_download)


def check_resumable(folder: StudyFolder, ray_dir: str, study_name: str,
                    study_id: str | None = None) -> None:
    """The files a ``--resume`` reads are readable and this study's: the Optuna database (its
    study's ``study_id``), the Parquet tables and Ray Tune's experiment state (``ray_dir``,
    local or on shared storage; a study stopped before Ray saved anything has none, and starts
    its trials anew). Each failure is one line naming the file and what to do."""
    db = folder / OPTUNA_DB
    if db.exists():
        _check_optuna(db, study_name, study_id)
    recorded = read_trials(folder.path)  # a clear error if unreadable
    import pyarrow as pa
    import pyarrow.parquet as pq

    for sub in (EPOCHS, SCORES):
        for path in sorted((folder / sub).glob("*.parquet")):
            try:
                pq.read_metadata(path)
            except (OSError, pa.ArrowException) as err:
                raise UserError(f"{path}: not a readable Parquet file ({str(err)[:120]}); delete "
                                "it and its trial's row is written again when the trial is "
                                "re-recorded, or start the study anew with --overwrite") from None
    _check_ray_state(ray_dir, started=len(recorded) > 0)


def _check_optuna(db: Path, study_name: str, study_id: str | None) -> None:
    way_out = ("restore it from a copy (e.g. the --storage mirror) or start the study anew with "
               "--overwrite")
    try:
        if _hot_journal(db):
            # a writer killed inside a transaction left its rollback journal: SQLite undoes
            # that transaction on the next read-write open (what Optuna's own open would do);
            # a read-only connection cannot: "attempt to write a readonly database"
            with contextlib.closing(sqlite3.connect(db)) as con:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            names = [r[0] for r in con.execute("SELECT study_name FROM studies")]
            owner = con.execute(
                "SELECT a.value_json FROM study_user_attributes a JOIN studies s "
                "ON a.study_id = s.study_id WHERE s.study_name = ? AND a.key = 'study_id'",
                (study_name,)).fetchone() if ok and study_name in names else None
    except sqlite3.DatabaseError as err:
        ok, names, owner = False, [str(err)], None
    if not ok or study_name not in names:
        raise UserError(f"{db}: not a readable Optuna database of study {study_name!r} "
                        f"({'; '.join(map(str, names))[:200] or 'no study'}); {way_out}")
    owner = json.loads(owner[0]) if owner else None
    if study_id is not None and owner not in (None, study_id):
        raise UserError(f"{db}: the Optuna study belongs to another study (id {owner}, not "
                        f"{study_id}); {way_out}")


def _hot_journal(db: Path) -> bool:
    """A rollback journal beside ``db`` with content: a transaction a killed writer left."""
    journal = db.with_name(db.name + "-journal")
    try:
        return journal.stat().st_size > 0
    except OSError:
        return False


def _check_ray_state(ray_dir: str, started: bool = True) -> None:
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(ray_dir) if "://" in ray_dir else \
        (pafs.LocalFileSystem(), ray_dir)
    if not started and fs.get_file_info(root).type == pafs.FileType.NotFound:
        return  # stopped before Ray Tune saved anything: the trials start anew
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    names = {Path(i.path).name: i for i in infos if i.type == pafs.FileType.File}
    states = sorted(n for n in names if n.startswith("experiment_state") and n.endswith(".json"))
    if "tuner.pkl" not in names or not states:
        raise UserError(f"--resume: {ray_dir} holds no Ray Tune experiment to resume (no "
                        "tuner.pkl or experiment state); start the study anew with --overwrite")

    def read(name: str) -> bytes | None:
        try:
            with fs.open_input_stream(f"{root}/{name}") as f:
                return f.read()
        except OSError:
            return None

    saved = {n: read(n) or b"" for n in sorted(names)
             if n.endswith((".json", ".pkl")) and n != ray_state.KEPT_STATE}  # each read once
    broken = [n for n, data in saved.items() if not ray_state.is_whole(n, data)]
    if broken and (fs.type_name != "local" or ray_state.kept(read(ray_state.KEPT_STATE)) is None):
        raise UserError(f"{root}/{broken[0]}: Ray Tune's experiment state is unreadable (cut short "
                        "or damaged); the study cannot be resumed from it: restore the folder from "
                        "a copy or start the study anew with --overwrite")
    for name, data in saved.items():
        gone = [] if name in broken else ray_state.missing_code(data)
        if gone:
            raise UserError(f"{root}/{name}: Ray Tune's saved state refers to {gone[0]}, which this "
                            "version of hvae-study does not have (the code changed since the study "
                            "started); resume it with the version that started it (its MLflow "
                            "parent run's git_commit tag), or start the study anew with --overwrite")


def local_resources(num_cpus: int | None) -> tuple[float, float]:
    """(CPUs, GPUs) a local Ray on this machine offers, without starting it or importing
    PyTorch: GPUs are ``CUDA_VISIBLE_DEVICES`` where set, else the NVIDIA device files."""
    import os
    import re

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    else:
        try:
            gpus = sum(bool(re.fullmatch(r"nvidia\d+", name)) for name in os.listdir("/dev"))
        except OSError:
            gpus = 0
    return float(num_cpus or os.cpu_count() or 1), float(gpus)


def check_local_resources(spec: StudySpec, gpus: float, num_cpus: int | None) -> None:
    """Before anything starts: a trial's resources fit this machine's local Ray."""
    have_cpu, have_gpu = local_resources(num_cpus)
    cpus = spec.resources.cpus
    if cpus > have_cpu:
        raise UserError(f"{spec.source}: field 'resources.cpus' = {cpus:g}: a trial asks for "
                        f"{cpus:g} CPUs, but this machine's Ray has {have_cpu:g}; lower it, raise "
                        "--num-cpus, or run on a cluster (--address)")
    if gpus > have_gpu:
        raise UserError(f"{spec.source}: field 'resources.gpus' (or --gpus-per-trial) = {gpus:g}: "
                        f"a trial asks for {gpus:g} GPUs, but this machine has {have_gpu:g}; lower "
                        "it, or run on a cluster with GPUs (--address)")


def check_resources(cpus: float, gpus: float, local: bool) -> None:
    """A trial's resources fit on one node of the running Ray: on this machine an error, on a
    cluster (whose autoscaler may add nodes) one warning line."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes)
    if fits:
        return
    most_cpu = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpu = max((r.get("GPU", 0) for r in nodes), default=0)
    what = (f"a trial asks for {cpus:g} CPUs and {gpus:g} GPUs (resources in the study file, "
            f"--gpus-per-trial), but no node has that much (at most {most_cpu:g} CPUs, "
            f"{most_gpu:g} GPUs)")
    if local:
        raise UserError(f"{what}; lower them, or raise --num-cpus, or run on a cluster")
    logger.warning("%s; the study waits until the cluster's autoscaler adds such a node", what)
