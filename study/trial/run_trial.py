"""One trial end to end: data -> training -> evaluation -> files, for the CLI and for Ray alike.

``run_trial(cfg, io)`` is the only trial driver. What differs between ``python -m study.train``
(a folder on disk) and a study trial (inside a Ray Tune worker) is a :class:`TrialIO`: where the
checkpoints to resume from are, what happens after each epoch (progress lines, or batched Tune
results and Tune checkpoints), and where the finished trial's files go.

The files of a finished trial (``FILES``): ``metrics.json`` (final metrics per seed and mean,
and per seed ``epochs``, the epochs that seed trained: early stopping stops each seed on its own
validation bound, ``TrainState.member_epochs``), ``epochs.parquet`` (the learning curves, one
row per epoch and seed; a stopped seed's rows after its stop repeat its last trained epoch),
``scores.parquet`` (per-sample OOD scores) and ``plots/*.png``; beside them ``trainer.pt`` (the
checkpoint).

A checkpoint that cannot be read (truncated, corrupt) is not fatal: the next older one is tried,
and with none left the trial starts from epoch 0; ``Restored.note`` says which, and the trial's
records carry it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from study.core.io import write_json, write_parquet
from study.data import DataBundle, load_data
from study.spec.config import TrialConfig
from study.trial.evaluate import EVAL_SEED, Evaluation, evaluate
from study.trial.files import CHECKPOINT, EPOCHS, FILES, METRICS, PLOTS, SCORES
from study.trial.records import EpochMetrics, Restored
from study.trial.trainer import ConfigMismatch, Trainer, read_checkpoint

#: a checkpoint candidate: a label for messages and a context manager yielding its trainer file
Candidate = tuple[str, Callable[[], AbstractContextManager[Path]]]
WriteFiles = Callable[[Path], list[Path]]


class TrialIO(Protocol):
    """Where a trial resumes from, what it does after each epoch, and where it ends."""

    def checkpoints(self) -> Iterable[Candidate]:
        """Checkpoints to resume from, newest first (none: a fresh start)."""

    def begin(self, trainer: Trainer, restored: Restored) -> None:
        """Called once, after the restore and before the first epoch."""

    def on_epoch(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        """After each epoch; True stops the trial early (it is then not evaluated)."""

    def on_progress(self, epochs: int) -> None:
        """After each epoch that cannot be reported yet (a restart candidate's, before the
        choice): ``epochs`` trained."""

    def trained(self, trainer: Trainer) -> None:
        """Training has ended (not stopped early): the evaluation follows."""

    def end(self, trainer: Trainer, evaluation: Evaluation, write_files: WriteFiles) -> None:
        """After the evaluation; ``write_files(folder)`` writes ``FILES`` into a folder."""


@dataclass
class TrialResult:
    trainer: Trainer
    evaluation: Evaluation | None
    stopped_early: bool
    restored: Restored


def restore_newest(trainer: Trainer, candidates: Iterable[Candidate]) -> Restored:
    """Load the newest readable checkpoint into ``trainer`` (see the module docstring). A
    checkpoint of another configuration is an error (:class:`ConfigMismatch`), never skipped."""
    unreadable: list[str] = []
    for label, opener in candidates:
        try:
            with opener() as path:
                state = read_checkpoint(path, trainer.device)
        except Exception as err:  # noqa: BLE001 - torch/zip/pickle/OS errors: unreadable
            unreadable.append(f"{label} ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
                              if str(err).strip() else f"{label} ({type(err).__name__})")
            continue
        try:
            trainer.load_state_dict(state)
        except ConfigMismatch as err:
            raise ConfigMismatch(f"{label}: {err}") from None
        note = (f"unreadable checkpoint {'; '.join(unreadable)}; resumed from {label} "
                f"(epoch {trainer.state.epoch})") if unreadable else ""
        return Restored(trainer.state.epoch, note)
    if unreadable:
        return Restored(0, f"unreadable checkpoint {'; '.join(unreadable)}; restarted from "
                           "epoch 0")
    return Restored()


def run_trial(cfg: TrialConfig, io: TrialIO, *, data: DataBundle | None = None,
              device: str = "auto", threads: int | None = None,
              plots: bool = True) -> TrialResult:
    """Train ``cfg`` (resuming from ``io``'s newest readable checkpoint), evaluate it unless
    ``io`` stopped it early, and hand the result to ``io``."""
    data = data if data is not None else load_data(cfg.data_config())
    trainer = Trainer(cfg, data, device=device, threads=threads)
    restored = restore_newest(trainer, io.checkpoints())
    io.begin(trainer, restored)
    stopped = trainer.fit(lambda m: io.on_epoch(trainer, m), io.on_progress)
    if stopped:
        return TrialResult(trainer, None, True, restored)
    io.trained(trainer)
    ev = evaluate(trainer.model, data, cfg, trainer.state)

    def write_files(folder: Path) -> list[Path]:
        return write_trial_files(folder, cfg, trainer, data, ev, plots)

    io.end(trainer, ev, write_files)
    return TrialResult(trainer, ev, False, restored)


def write_trial_files(folder: Path, cfg: TrialConfig, trainer: Trainer, data: DataBundle,
                      ev: Evaluation, plots: bool = True) -> list[Path]:
    """``FILES`` of an evaluated trial into ``folder``; returns the plot paths. Beside the
    evaluation's metrics, ``metrics.json`` carries per seed ``epochs`` (the trials.parquet
    column of that name, per seed) and its mean."""
    seeds = list(cfg.seeds)
    epochs = [float(n) for n in trainer.state.member_epochs()]
    write_json(folder / METRICS, {"config": cfg.model_dump(mode="json"), "seeds": seeds,
                                  "layers": ev.layer_names,
                                  "members": ev.members | {"epochs": epochs},
                                  "mean": ev.mean | {"epochs": sum(epochs) / len(epochs)},
                                  "units": ev.units})
    rows = [row for m in trainer.state.history for row in m.rows(seeds)]
    write_parquet(folder / EPOCHS, _columns(rows))
    write_parquet(folder / SCORES, ev.scores)
    if not plots:
        return []
    from study.trial.plots import all_plots

    with trainer.model.noise.forked(EVAL_SEED):  # each member's draws a function of its weights
        return all_plots(trainer.model, data, ev, trainer.state, folder / PLOTS, cfg)


def _columns(rows: list[dict]) -> dict[str, list]:
    """Rows -> columns (a metric a row lacks is None)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in keys}


class NoCheckpoints:
    """A trial that neither resumes nor keeps anything (tests, benchmarks)."""

    def checkpoints(self) -> Iterable[Candidate]:
        return ()

    def begin(self, trainer: Trainer, restored: Restored) -> None:
        pass

    def on_epoch(self, trainer: Trainer, metrics: EpochMetrics) -> bool:
        return False

    def on_progress(self, epochs: int) -> None:
        pass

    def trained(self, trainer: Trainer) -> None:
        pass

    def end(self, trainer: Trainer, evaluation: Evaluation, write_files: WriteFiles) -> None:
        pass


__all__ = ["CHECKPOINT", "FILES", "ConfigMismatch", "NoCheckpoints", "TrialIO", "TrialResult",
           "restore_newest", "run_trial", "write_trial_files"]
