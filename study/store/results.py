"""Parquet tables, the source of truth for reports (written by the driver only).

Under the study's results folder:

- ``trials.parquet``: one row per trial x seed: trial id, status (finished / pruned /
  diverged / failed), factor columns, the flat trial config, epochs trained and the final
  metrics of that seed (``study.trial.evaluate``), NaN where the trial never got there;
- ``epochs.parquet/``: learning curves, one row per trial x epoch x seed, one file per trial
  (so the driver never holds or rewrites the curves of finished trials);
- ``scores.parquet/``: a Parquet dataset folder with one file per trial (per-point OOD scores:
  trial_id, seed, set, score, index, value); read it with ``pandas.read_parquet``;
- ``plots/TRIAL_ID/``: the trial's plots (also uploaded to its MLflow run).

Every write replaces the file atomically and rows are keyed by trial id, so a retried or
resumed trial replaces its rows instead of adding a second copy. ``read_epochs`` and
``read_scores`` read the folders (and a single-file ``epochs.parquet`` of older results).

The frames a researcher analyses come joined (docs/columns.md lists every column):
``seeds(folder)`` (one row per trial x seed with its factors, statuses and final metrics),
``curves(folder)`` (learning curves with the factors and statuses of their trial and seed) and
``scores(folder)`` (per-point scores with the same), e.g.
``curves("results/spirals_depth").groupby(["factor.depth", "epoch"]).val_bound.mean()``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from study.core.errors import UserError
from study.core.io import write_parquet
from study.store.folder import EPOCHS, PLOTS, SCORES, TRIALS


def default_folder(study: str) -> Path:
    """Where a study's results go without ``--results``: ``$HVAE_RESULTS_DIR/NAME``, else
    ``results/NAME`` (absolute; links are resolved by ``study.store.folder.resolve_results``)."""
    return Path(os.path.abspath(Path(os.environ.get("HVAE_RESULTS_DIR", "results")) / study))


def _read(path: Path) -> pd.DataFrame:
    """A Parquet file as a frame ({} if missing); an unreadable one is a clear error."""
    if not path.exists():
        return pd.DataFrame()
    try:
        return pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0][:200]});"
                        " restore it from a copy (e.g. the --storage mirror) or start the study "
                        "anew with --overwrite") from None


class ResultsStore:
    """Append/replace rows per trial and rewrite the tables atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.trials = _read(self.folder / TRIALS)

    def known_trials(self) -> set[str]:
        return set(self.trials["trial_id"]) if len(self.trials) else set()

    def put_trial(self, trial_id: str, rows: list[dict[str, Any]],
                  epoch_rows: list[dict[str, Any]], scores_file: Path | None,
                  plots: Path | None = None) -> Path | None:
        """Replace everything recorded for ``trial_id`` by these rows, each file atomically and
        durably, the trial's ``trials.parquet`` rows last: a trial is in ``trials.parquet``
        only once its epochs, scores and plots are on disk. Returns the folder the trial's
        ``plots`` were copied to (None without plots)."""
        if epoch_rows:
            frame = pd.DataFrame(epoch_rows)
            frame["trial_id"] = trial_id
            frame = frame[["trial_id", *[c for c in frame.columns if c != "trial_id"]]]
            frame = frame.sort_values(["epoch", "seed"], ignore_index=True)
            write_parquet(self.folder / EPOCHS / f"{trial_id}.parquet", _table(frame))
        if scores_file is not None and scores_file.exists():
            scores = pq.read_table(scores_file)
            scores = scores.add_column(0, "trial_id", pa.array([trial_id] * len(scores)))
            write_parquet(self.folder / SCORES / f"{trial_id}.parquet", scores)
        kept = None
        if plots is not None and plots.is_dir():
            kept = self.folder / PLOTS / trial_id
            tmp = kept.with_name(f".{trial_id}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(plots, tmp)
            shutil.rmtree(kept, ignore_errors=True)
            tmp.rename(kept)
        trials = _replace(self.trials, trial_id, pd.DataFrame(rows))
        write_parquet(self.folder / TRIALS, _table(trials))
        self.trials = trials
        return kept


def _replace(frame: pd.DataFrame, trial_id: str, rows: pd.DataFrame) -> pd.DataFrame:
    if len(frame):
        frame = frame[frame["trial_id"] != trial_id]
    if not len(rows):
        return frame
    return pd.concat([frame, rows], ignore_index=True) if len(frame) else rows.reset_index(drop=True)


def _table(frame: pd.DataFrame) -> pa.Table:
    # mixed object columns (e.g. a factor that is sometimes a number) are stored as strings
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if kinds <= {list, np.ndarray} and kinds:  # per-unit values: a list column
                frame[col] = frame[col].map(lambda v: None if not isinstance(v, (list, np.ndarray))
                                            else [float(x) for x in v])
            elif len(kinds) > 1 or (kinds and not kinds <= {str}):
                frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    return pa.Table.from_pandas(frame, preserve_index=False)


def read_trials(folder: str | Path) -> pd.DataFrame:
    return _read(Path(folder) / TRIALS)


def read_epochs(folder: str | Path) -> pd.DataFrame:
    """All learning curves: the per-trial files concatenated (their columns may differ: a
    metric a model does not have is missing, NaN in the result)."""
    path = Path(folder) / EPOCHS
    if path.is_file():
        return _read(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else []
    if not files:
        return pd.DataFrame()
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def read_scores(folder: str | Path) -> pd.DataFrame:
    path = Path(folder) / SCORES
    return pq.read_table(path).to_pandas() if path.exists() and any(path.iterdir()) else pd.DataFrame()


#: what ``curves`` and ``scores`` carry over from a trial's seed row besides its factors
_JOINED = ("trial_status", "seed_status")


def seeds(folder: str | Path, completed: bool = False) -> pd.DataFrame:
    """One row per trial x seed: ids, statuses, ``factor.*``, ``config.*`` and final metrics,
    sorted by the factors then the seed; ``completed``: only seeds that finished evaluation
    (``study.store.columns.completed_seeds``)."""
    from study.store.columns import completed_seeds, factor_columns

    rows = read_trials(folder)
    if completed:
        rows = completed_seeds(rows)
    if not len(rows):
        return rows
    order = [c for c in factor_columns(rows) if rows[c].notna().any()] + ["seed", "trial_id"]
    return rows.sort_values(order, kind="stable", na_position="last").reset_index(drop=True)


def _with_trial(frame: pd.DataFrame, folder: str | Path) -> pd.DataFrame:
    """``frame`` (with trial_id, seed) joined to its seed row's factors and statuses."""
    from study.store.columns import factor_columns

    rows = read_trials(folder)
    if not len(frame) or not len(rows):
        return frame
    keep = ["trial_id", "seed", *_JOINED, *factor_columns(rows)]
    return frame.merge(rows[keep], on=["trial_id", "seed"], how="left", validate="many_to_one")


def curves(folder: str | Path) -> pd.DataFrame:
    """Learning curves (one row per trial x epoch x seed) with their trial's factors and
    statuses."""
    return _with_trial(read_epochs(folder), folder)


def scores(folder: str | Path) -> pd.DataFrame:
    """Per-point OOD scores (one row per trial x seed x set x score x point) with their
    trial's factors and statuses."""
    return _with_trial(read_scores(folder), folder)
