"""The columns of ``trials.parquet``, owned here: how factor and config columns are named, and
which rows count as a completed seed. Every reader goes through these helpers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from study.core import codec

FACTOR, CONFIG = "factor.", "config."
#: a trial that ended with its evaluation (a diverged seed is still a row of it)
COMPLETED = ("finished", "diverged")


def factor_column(name: str) -> str:
    return FACTOR + name


def config_column(name: str) -> str:
    return CONFIG + name


def factor_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(FACTOR)]


def factor_name(column: str) -> str:
    """``factor.depth`` -> ``depth`` (any other column unchanged)."""
    return column[len(FACTOR):] if column.startswith(FACTOR) else column


def setting_column(frame: pd.DataFrame, name: str) -> str | None:
    """The column holding setting ``name``: its factor column, else its config column."""
    for col in (factor_column(name), config_column(name)):
        if col in frame.columns:
            return col
    return None


def completed_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows of seeds that finished training and evaluation: completed trials, diverged seeds
    left out."""
    if not len(trials):
        return trials
    return trials[trials["trial_status"].isin(COMPLETED) & (trials["seed_status"] != "diverged")]


def native(v: Any) -> Any:
    """A factor value as the study file wrote it (Parquet stores lists as JSON text)."""
    if isinstance(v, np.generic):
        return v.item()
    return codec.decode(v)


def factor_values(row: pd.Series) -> dict[str, Any]:
    """The factor values of a row (NaN: not set)."""
    out = {}
    for c, v in row.items():
        if c.startswith(FACTOR) and v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[factor_name(c)] = native(v)
    return out


def same_value(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(native(a)) == str(native(b)) or str(a) == str(b)


def select(rows: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose factor (or config) value equals ``where[K]`` for every K."""
    mask = pd.Series(True, index=rows.index)
    for key, value in where.items():
        col = setting_column(rows, key)
        if col is None:
            return rows.iloc[0:0]
        mask &= rows[col].map(lambda v: same_value(v, value))
    return rows[mask]
