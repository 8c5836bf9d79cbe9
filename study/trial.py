"""One trial end to end, with no Ray/Optuna/MLflow: data -> training -> evaluation -> files.

``run_trial`` is what the single-trial command line and the study engine's trainable both call.
Files written to ``out_dir``: ``checkpoint.pt`` (resumable), ``epochs.json`` (learning
curves), ``metrics.json`` (final metrics per member and mean), ``scores.parquet`` (per-sample
OOD scores) and ``plots/*.png``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrialConfig
from .data import DataBundle, load_data
from .evaluate import Evaluation, evaluate
from .io import write_json, write_parquet
from .train import EpochMetrics, Trainer

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrialResult:
    trainer: Trainer
    evaluation: Evaluation | None
    stopped_early: bool
    plots: list[Path] = field(default_factory=list)


def run_trial(
    cfg: TrialConfig,
    out_dir: str | Path | None = None,
    callback: Callable[[EpochMetrics], bool | None] | None = None,
    resume: bool = True,
    checkpoint_every: int = 10,
    device: str = "auto",
    threads: int | None = None,
    data: DataBundle | None = None,
    plots: bool = True,
) -> TrialResult:
    """Train ``cfg`` (resuming from ``out_dir/checkpoint.pt`` if present and ``resume``), then
    evaluate it unless the callback stopped it early, and write the files."""
    data = data if data is not None else load_data(cfg.data_config())
    trainer = Trainer(cfg, data, device=device, threads=threads)
    out = Path(out_dir) if out_dir is not None else None
    save = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / CHECKPOINT).exists():
            trainer.load(out / CHECKPOINT)
        save = lambda t: t.save(out / CHECKPOINT)  # noqa: E731
    stopped = trainer.fit(callback, save, checkpoint_every)
    if out is not None:
        write_json(out / "epochs.json", [vars(h) for h in trainer.state.history])
    if stopped:
        return TrialResult(trainer, None, True)
    ev = evaluate(trainer.model, data, cfg, trainer.state)
    paths = write_evaluation(out, cfg, trainer, data, ev, plots) if out is not None else []
    return TrialResult(trainer, ev, False, paths)


def write_evaluation(folder: Path, cfg: TrialConfig, trainer: Trainer, data: DataBundle,
                     ev: Evaluation, plots: bool = True) -> list[Path]:
    """``metrics.json``, ``scores.parquet`` and (if ``plots``) ``plots/*.png`` of an evaluated
    trial into ``folder``; returns the plot paths."""
    write_json(folder / "metrics.json", {"config": cfg.model_dump(mode="json"),
                                         "seeds": list(cfg.seeds), "layers": ev.layer_names,
                                         "members": ev.members, "mean": ev.mean})
    write_parquet(folder / "scores.parquet", ev.scores)
    if not plots:
        return []
    from .plots import all_plots

    return all_plots(trainer.model, data, ev, trainer.state, folder / "plots")
