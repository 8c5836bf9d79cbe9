"""A study's recorded trials sent to MLflow again, from Parquet (the source of truth).

``--new-parent`` continues a study whose MLflow parent run is lost (deleted, or its store gone)
under a new parent run; ``replay_trials`` gives that run a child run for every trial already in
``trials.parquet``, as the recorder made it: the factors and settings as params, the learning
curves (means as ``curves/<metric>``, each seed's as ``seeds/<metric>/seed_<s>``), the final
means as ``final/<metric>``, the per-seed table, the status tags and the plots kept in
``plots/TRIAL``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from study.engine.outbox import MlflowOutbox
from study.engine.outcome import final_metric_columns
from study.engine.recorder import PER_SEED_TO_MLFLOW, mlflow_status, run_name
from study.spec.resolved import ResolvedStudy
from study.store.columns import CONFIG, FACTOR, completed_seeds, factor_values
from study.store.folder import PLOTS
from study.store.results import read_epochs, read_trials
from study.store.tracking import curve_key, final_key, seed_curve_key
from study.trial.records import tracked_metrics


def _finite(values: pd.Series) -> float | None:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def replay_trials(results: Path, study: ResolvedStudy, outbox: MlflowOutbox,
                  parent_run_id: str) -> int:
    """Queue every recorded trial of ``results`` for the parent run ``parent_run_id``; returns
    how many."""
    trials, epochs = read_trials(results), read_epochs(results)
    if not len(trials):
        return 0
    default_seeds = list(study.first.seeds)
    metrics = final_metric_columns(trials)
    curves = [c for c in epochs.columns if c not in ("trial_id", "epoch", "seed")] \
        if len(epochs) else []
    for tid, rows in trials.groupby("trial_id", sort=False):
        rows = rows.sort_values("seed")
        first = rows.iloc[0]
        seeds = [int(s) for s in rows["seed"]]
        params = {c: first[c] for c in rows.columns if c.startswith((FACTOR, CONFIG))
                  and not (isinstance(first[c], float) and math.isnan(first[c]))}
        outbox.child_run(tid, parent_run_id,
                         run_name(factor_values(first), seeds if seeds != default_seeds else None),
                         params)
        alive = completed_seeds(rows)["seed"].tolist()
        curve = epochs[epochs["trial_id"] == tid] if len(epochs) else epochs
        for epoch, g in (curve.groupby("epoch") if len(curve) else []):
            live = g[g["seed"].isin(alive)] if alive else g
            values = {c: _finite(live[c]) for c in curves}
            values = {k: v for k, v in values.items() if v is not None and k != "diverged"}
            values = tracked_metrics(values, float((pd.to_numeric(g["diverged"]) > 0).sum())
                                     if "diverged" in g.columns else None)  # as the recorder logs it
            values = {curve_key(k): v for k, v in values.items()}
            for name in PER_SEED_TO_MLFLOW:
                if name in g.columns:
                    values |= {seed_curve_key(name, int(s)): float(v)
                               for s, v in zip(g["seed"], g[name]) if math.isfinite(float(v))}
            outbox.log_epoch(tid, int(epoch), values)
        status = str(first["trial_status"])
        final, per_seed = {}, None
        if status in ("finished", "diverged"):
            done = rows[rows["seed"].isin(alive)]
            final = {final_key(m): v for m in metrics if (v := _finite(done[m])) is not None}
            per_seed = {"seed": seeds} | {m: rows[m].tolist() for m in metrics}
        tags = {"status": status, "num_failures": str(int(first.get("num_failures", 0))),
                "restored_from_epoch": str(int(first.get("restored_from_epoch", 0)))}
        diverged = pd.to_numeric(rows.get("diverged_epoch", pd.Series(dtype=float)),
                                 errors="coerce").dropna()
        if len(diverged):
            tags["diverged_epoch"] = str(int(diverged.min()))
        if first.get("restore_note"):
            tags["restore_note"] = str(first["restore_note"])[:5000]
        plots = results / PLOTS / tid
        trained = int(pd.to_numeric(rows["epochs"], errors="coerce").max())  # its last seed
        outbox.finish(tid, mlflow_status(status), tags, final, trained,
                      plots if plots.is_dir() else None, per_seed)
    return trials["trial_id"].nunique()

