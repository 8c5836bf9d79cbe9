"""How a trial ended, and its rows for ``trials.parquet``.

A trial's status is derived, not shared between the pruning scheduler and the recorder (Tune
pickles them separately, so a shared object would split in two on ``--resume``): it ended with
an error -> ``failed``; its last result is not the final evaluation -> ``pruned`` (pruning is
the only thing that stops a trial early); otherwise ``finished``, or ``diverged`` when a seed
diverged. Each seed also has its own ``status`` in ``trials.parquet``.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from study.spec.config import TrialConfig
from study.store.columns import config_column, factor_column
from study.trial.files import EPOCHS, METRICS
from study.trial.records import epochs_trained, is_final_result, reported

if TYPE_CHECKING:  # the driver imports this before Ray Tune (study.engine.launch)
    from ray.tune.experiment import Trial

STATUSES = ("finished", "diverged", "pruned", "failed")
#: the last epoch's values of these curves, per seed (``last_<name>``)
LAST_EPOCH = ("val_bound", "val_elbo", "train_bound")


def final_metric_columns(rows: pd.DataFrame) -> list[str]:
    """The columns of ``trials.parquet`` rows that hold a seed's final metrics (numbers; not
    the bookkeeping, factors, settings, last epochs or per-unit lists)."""
    from study.spec.metric_names import ROW_COLUMNS
    from study.store.columns import CONFIG, FACTOR

    out = []
    for c in rows.columns:
        if c in ROW_COLUMNS or c.startswith((FACTOR, CONFIG, "kl_units_")):
            continue
        if pd.api.types.is_numeric_dtype(rows[c]) or pd.api.types.is_bool_dtype(rows[c]):
            out.append(c)
    return out


@dataclass
class FinalFiles:
    """A finished trial's files, from its final checkpoint (a local copy in ``dir``)."""

    dir: Path
    members: dict[str, list[float]]
    mean: dict[str, float]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    units: dict[str, list[list[float]]] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory | None = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def final_files(trial: Trial) -> FinalFiles | None:
    """The final checkpoint's files, if the trial's newest checkpoint has them."""
    checkpoint = trial.checkpoint
    if checkpoint is None or not is_final_result(trial.last_result):
        return None
    tmp = tempfile.TemporaryDirectory(prefix="hvae-final-")
    folder = Path(checkpoint.to_directory(tmp.name))
    if not (folder / METRICS).exists():
        tmp.cleanup()
        return None
    data = json.loads((folder / METRICS).read_text())
    members = {k: [_number(v) for v in vals] for k, vals in data["members"].items()}
    mean = {k: _number(v) for k, v in data["mean"].items()}
    epochs: list[dict[str, Any]] = []
    if (folder / EPOCHS).exists():
        import pyarrow.parquet as pq

        epochs = pq.read_table(folder / EPOCHS).to_pylist()
        for row in epochs:
            row["trial_id"] = trial.trial_id
    units = {k: [[_number(v) for v in seed] for seed in vals]
             for k, vals in data.get("units", {}).items()}
    return FinalFiles(folder, members, mean, epochs, units, tmp)


def _number(v: Any) -> float:
    """JSON's null back to NaN and "inf"/"-inf" back to floats (see study.core.io.write_json)."""
    return math.nan if v is None else float(v)


def _timestamp(seconds: float | None):
    """A timestamp in UTC (Parquet's timestamp type, stored without a zone) from epoch
    seconds; NaT when unknown."""
    return pd.Timestamp(seconds, unit="s") if seconds is not None else pd.NaT


def trial_status(failed: bool, last: dict[str, Any], final: FinalFiles | None) -> str:
    if failed:
        return "failed"
    if final is None:
        return "pruned"
    return "diverged" if any(final.members.get("diverged", [])) else "finished"


def trial_rows(trial: Trial, cfg: TrialConfig, factors: dict[str, Any], *, status: str,
               last: dict[str, Any], final: FinalFiles | None, started_at: float | None,
               epoch_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per seed: identity, status, bookkeeping, factors, config, final metrics."""
    import time

    last_epoch: dict[tuple[str, int], float] = {}
    for row in epoch_rows:  # the last epoch's values, whatever the status
        for key in LAST_EPOCH:
            last_epoch[(key, row["seed"])] = row.get(key, math.nan)
    epochs, bookkeeping = epochs_trained(epoch_rows, last), reported(last)
    rows = []
    for e, seed in enumerate(cfg.seeds):
        row: dict[str, Any] = {
            "trial_id": trial.trial_id, "seed": seed, "trial_status": status,
            "epochs": epochs, "node_id": bookkeeping.node_id, "device": bookkeeping.device,
            "pack_members": bookkeeping.pack_members or len(cfg.seeds),
            "num_failures": int(trial.num_failures),
            "restored_from_epoch": bookkeeping.restored_from,
            "restore_note": bookkeeping.restore_note,
            "started_at": _timestamp(started_at), "ended_at": _timestamp(time.time())}
        row |= {factor_column(k): v for k, v in factors.items()}
        row |= {config_column(k): v for k, v in cfg.flat().items() if k != "seeds"}
        for key in LAST_EPOCH:
            row[f"last_{key}"] = last_epoch.get((key, seed), math.nan)
        if final is not None:
            row |= {k: vals[e] for k, vals in final.members.items()}
            row |= {f"kl_units_{layer}": vals[e] for layer, vals in final.units.items()}
            row["seed_status"] = "diverged" if row.get("diverged") else status
        else:
            row["seed_status"] = status
        rows.append(row)
    return rows
