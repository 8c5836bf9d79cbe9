"""The Ray Tune trainable: one trial = one configuration with all of its seeds.

``run_study_trial`` runs ``study.trial.run_trial`` with a :class:`TuneIO`, so Ray supplies only
checkpoint I/O and result reporting (``study.trial.records`` defines the results):

- before the first epoch result of a trial with restarts, progress results (the candidates'
  epochs trained, for the progress line), at least ``spec.report_every_s`` apart;
- epoch results in batches at least ``spec.report_every_s`` apart (tiny models run many epochs
  a second, and every result costs the driver CPU that the trials share), each carrying every
  epoch since the previous one; a Tune checkpoint every ``spec.checkpoint_every`` epochs;
- after a restore, the first result repeats the epochs before the checkpoint (a killed driver
  may have lost them; the recorder keys epochs by number, so nothing is counted twice);
- the epochs not reported yet when training ends, before the evaluation (so the driver sees
  when the evaluation began);
- a final result whose checkpoint folder also holds the trial's files (``study.trial.files.FILES``),
  which the driver reads through Ray's checkpoint API, on one machine or a cluster alike.

A trial resumes from the newest readable checkpoint in its folder, which may be newer than the one
Ray recorded (a killed driver's record lags; ``study.engine.tuner.stand_in_for_deleted_checkpoints``);
one that cannot be read falls back to the one before (Tune keeps two) and then to epoch 0
(``study.trial.run_trial.restore_newest``). Datasets are cached per worker process (actors are
reused between trials), so a trial pays only for its own training.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from study.engine.tune_checkpoints import trainer_file, trial_checkpoints
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import StudySpec
from study.trial.files import CHECKPOINT
from study.trial.records import (
    EpochMetrics,
    Restored,
    epoch_result,
    final_result,
    progress_result,
)

if TYPE_CHECKING:  # the driver imports this module: PyTorch only inside the worker
    from study.data import DataBundle, DataConfig
    from study.trial.evaluate import Evaluation
    from study.trial.run_trial import Candidate, WriteFiles
    from study.trial.trainer import Trainer


@functools.lru_cache(maxsize=4)
def cached_data(cfg: DataConfig) -> DataBundle:
    from study.data import load_data

    return load_data(cfg)


class TuneIO:
    """A trial's checkpoints and results through Ray Tune (see the module docstring)."""

    def __init__(self, spec: StudySpec, metric: str, device: str,
                 node: str | None = None) -> None:
        self.spec, self.metric, self.device = spec, metric, device
        self.node = node or ray.get_runtime_context().get_node_id()
        self.pending: list[EpochMetrics] = []
        self.restored = Restored()
        self.last_report = time.monotonic()

    # ------------------------------------------------------------------ resuming
    def checkpoints(self) -> Iterable[Candidate]:
        recorded = tune.get_checkpoint()
        if recorded is None:
            return []
        return [(Path(c.path).name, functools.partial(trainer_file, c))
                for c in trial_checkpoints(recorded)]

    def begin(self, trainer: Trainer, restored: Restored) -> None:
        self.restored = restored
        self.pending = list(trainer.state.history)

    # ------------------------------------------------------------------ reporting
    def _report(self, result: dict[str, Any], trainer: Trainer | None = None,
                write_files: WriteFiles | None = None) -> None:
        if trainer is None:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            self._write(Path(tmp), trainer, write_files)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))

    @staticmethod
    def _write(folder: Path, trainer: Trainer, write_files: WriteFiles | None) -> None:
        """A checkpoint's files: the trainer's and, at the end, the trial's ``FILES``."""
        trainer.save(folder / CHECKPOINT)
        if write_files is not None:
            write_files(folder)

    def _flush(self, trainer: Trainer | None) -> None:
        result = epoch_result(self.pending, self.node, self.restored)
        self.pending = []
        self.last_report = time.monotonic()
        self._report(result, trainer)

    def on_epoch(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        self.pending.append(metrics)
        # a checkpoint holds the trainer as it is: only at the epoch it has reached (the epochs
        # before a choice of restarts are reported after it, all at once)
        due = (metrics.epoch % self.spec.checkpoint_every == 0 and metrics.epoch < trainer.cfg.epochs
               and metrics.epoch == trainer.state.epoch)
        if due or time.monotonic() - self.last_report >= self.spec.report_every_s:
            self._flush(trainer if due else None)
        return False  # Tune itself stops a trial the scheduler prunes

    def on_progress(self, epochs: int) -> None:
        """Epochs trained before any can be reported (restart candidates'), at most one result
        every ``report_every_s``: the progress line paces the trial by them."""
        if time.monotonic() - self.last_report >= self.spec.report_every_s:
            self.last_report = time.monotonic()
            self._report(progress_result(epochs, self.metric, self.node))

    def trained(self, trainer: Trainer) -> None:
        """The epochs not reported yet, before the evaluation: the progress line then sees
        when training ended and paces the evaluation apart."""
        if self.pending:
            self._flush(None)

    def end(self, trainer: Trainer, evaluation: Evaluation, write_files: WriteFiles) -> None:
        self.trained(trainer)  # nothing left to send where the caller told it already
        last = trainer.state.history[-1]
        # a configuration with a diverged seed has no score: NaN makes the searcher count it failed
        score = last.mean.get(self.metric, float("nan")) if not last.n_diverged else float("nan")
        diverged = min((d for d in trainer.state.diverged_epoch if d), default=0)
        self._report(final_result(last, self.metric, score, device=self.device,
                                  node=self.node, restored=self.restored,
                                  diverged_epoch=diverged, pack_members=trainer.pack_members),
                     trainer, write_files)


def run_study_trial(factors: dict[str, Any], study: ResolvedStudy, metric: str,
                    plots: bool = True, pack: str | None = None) -> None:
    """Ray Tune function trainable (see the module docstring); with ``pack`` (``--pack on``:
    the study's identity) a thin client of the pack servers of its node, if it has any
    (``study.engine.pack_client``)."""
    if pack is not None:
        from study.engine.pack_client import run_packed_trial

        if run_packed_trial(factors, study, metric, pack):
            return
    import matplotlib
    import torch

    from study.trial.run_trial import run_trial

    matplotlib.use("Agg")  # a worker has no display
    spec, cfg = study.spec, study.config(factors)
    # a GPU share from Ray -> CUDA (Ray sets CUDA_VISIBLE_DEVICES); logical GPUs on a machine
    # without CUDA (e.g. a test cluster) fall back to the CPU
    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    io = TuneIO(spec, metric, device)
    run_trial(cfg, io, data=cached_data(cfg.data_config()), device=device,
              threads=max(1, int(spec.resources.cpus)), plots=plots)

