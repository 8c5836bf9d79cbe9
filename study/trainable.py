"""The Ray Tune trainable: one trial = one configuration with all of its seeds.

Runs in a Ray worker. Reports epoch results (``phase="epoch"``: the latest epoch's mean
metrics, which the search sees, and under ``history`` every epoch since the previous report
with per-seed values as ``name/seed_S``, which the pruner and the recorder read), a Ray checkpoint every
``checkpoint_every`` epochs, and a final result (``phase="final"``) whose checkpoint folder
also carries the evaluation: ``metrics.json``, ``scores.parquet`` and ``plots/``. The driver
reads those from the checkpoint, so the same code works on one machine and on a cluster with
shared storage.

Start-up is amortised: datasets are cached per worker process (actors are reused between
trials), so a trial pays only for its own training.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from .data import DataBundle, DataConfig, load_data
from .evaluate import evaluate
from .spec import StudySpec
from .train import EpochMetrics, Trainer
from .trial import write_evaluation

TRAINER_FILE = "trainer.pt"


@functools.lru_cache(maxsize=4)
def cached_data(cfg: DataConfig) -> DataBundle:
    return load_data(cfg)


def epoch_result(m: EpochMetrics, seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {"phase": "epoch", "epoch": m.epoch, "n_diverged": m.n_diverged}
    out |= {k: v for k, v in m.mean.items()}
    for name, values in m.members.items():
        for seed, v in zip(seeds, values):
            out[f"{name}/seed_{seed}"] = v
    return out


def run_study_trial(factors: dict[str, Any], spec: StudySpec, budget: str, metric: str,
                    plots: bool = True) -> None:
    """Ray Tune function trainable (see module docstring)."""
    cfg = spec.trial_config(factors, budget)
    seeds = list(cfg.seeds)
    cpus = max(1, int(spec.resources.cpus))
    # a GPU share from Ray -> CUDA (Ray sets CUDA_VISIBLE_DEVICES); logical GPUs on a machine
    # without CUDA (e.g. a test cluster) fall back to the CPU
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    data = cached_data(cfg.data_config())
    trainer = Trainer(cfg, data, device=device, threads=cpus)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry (dead worker or node) or a resumed study
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder) / TRAINER_FILE)
    restored_from = trainer.state.epoch

    def report(result: dict[str, Any], with_checkpoint: bool = False, files=None) -> None:
        if not with_checkpoint:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            trainer.save(Path(tmp) / TRAINER_FILE)
            if files is not None:
                files(Path(tmp))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))

    node = ray.get_runtime_context().get_node_id()
    # after a restore, the first report repeats the epochs before the checkpoint: the driver
    # may have lost them (a killed driver) and keys them by epoch, so nothing is counted twice
    pending: list[dict[str, Any]] = [epoch_result(m, seeds) for m in trainer.state.history]
    last_report = time.monotonic()

    def flush(with_checkpoint: bool = False) -> None:
        nonlocal last_report
        latest = pending[-1]
        # top level: the latest epoch's means only (Ray Tune keeps running statistics of every
        # numeric key of every trial in the driver); per-seed values travel in ``history``
        result = {k: v for k, v in latest.items() if "/seed_" not in k}
        result |= {"node_id": node, "restored_from": restored_from, "history": list(pending)}
        pending.clear()
        last_report = time.monotonic()
        report(result, with_checkpoint=with_checkpoint)

    def on_epoch(m: EpochMetrics) -> None:
        pending.append(epoch_result(m, seeds))
        checkpoint_due = m.epoch % spec.checkpoint_every == 0 and m.epoch < cfg.epochs
        # batches at least spec.report_every_s apart: tiny models run many epochs a second,
        # and every result costs the driver (Tune, Optuna, MLflow) CPU the trials share
        if checkpoint_due or time.monotonic() - last_report >= spec.report_every_s:
            flush(checkpoint_due)

    if trainer.state.epoch < cfg.epochs:
        trainer.fit(on_epoch)
    if pending:
        flush()
    ev = evaluate(trainer.model, data, cfg, trainer.state)
    last = trainer.state.history[-1]

    def files(folder: Path) -> None:
        write_evaluation(folder, cfg, trainer, data, ev, plots)

    # a configuration with a diverged seed has no score: NaN makes the searcher count it failed
    score = last.mean.get(metric) if not last.n_diverged else float("nan")
    final = {"phase": "final", "epoch": last.epoch, metric: score,
             "n_diverged": last.n_diverged, "device": device,
             "node_id": node, "restored_from": restored_from,
             "diverged_epoch": min((d for d in trainer.state.diverged_epoch if d), default=0)}
    # the final metrics travel in the checkpoint's metrics.json (see module docstring)
    report(final, with_checkpoint=True, files=files)

