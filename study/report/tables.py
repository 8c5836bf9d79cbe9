"""The tables of a study's report (markdown), from its Parquet rows. Values are the mean over
completed seeds with a 95% t-interval half-width; likelihoods name their importance samples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.judge.decide import DECIDED
from study.judge.stats import mean_interval
from study.judge.verdicts import Verdict
from study.spec.metric_names import importance_setting
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import StudySpec
from study.store.columns import (
    completed_seeds,
    config_column,
    factor_columns,
    factor_name,
    factor_values,
    select,
)

#: sampled (continuous) factors are shown in this many quantile bins in per-level tables
LEVEL_BINS = 4


def fmt_ci(mean: float, half: float, n: int = 2) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half):
        return f"{mean:.4g}"
    if half == 0:
        return f"{mean:.4g} (all {n} seeds equal)"
    return f"{mean:.4g} ± {half:.2g}"


def show(v) -> str:
    """A factor value for display: floats to 3 significant digits."""
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and v != int(v):
        return f"{v:.3g}"
    return str(v)


def metric_label(name: str, trials: pd.DataFrame) -> str:
    """The column header of a metric: a likelihood says how many importance samples it used."""
    def k(setting: str) -> str:
        col = config_column(setting)
        values = sorted(set(trials[col].dropna().astype(int))) if col in trials.columns else []
        return "K=" + "/".join(map(str, values)) if values else ""

    setting = importance_setting(name)
    if setting is None:
        return name
    label = k(setting)
    return f"{name} ({label})" if label else name


def markdown(frame: pd.DataFrame, empty: str = "_no completed trials_") -> str:
    if not len(frame):
        return empty + "\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _groups(frame: pd.DataFrame, by: list[str]):
    return frame.groupby(by, sort=True, dropna=False) if by else [((), frame)]


def config_table(trials: pd.DataFrame, responses: list[str]) -> pd.DataFrame:
    """One row per configuration (sorted by the factors): seeds, diverged seeds, then
    'mean ± CI' per response over its completed seeds."""
    done = trials[trials["trial_status"].isin(["finished", "diverged"])]
    factors = factor_columns(done)
    rows = []
    for keys, g in _groups(done, factors):
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = completed_seeds(g)
        row = {factor_name(f): show(k) for f, k in zip(factors, keys)}
        row["seeds"] = len(ok)
        row["diverged"] = int((g["seed_status"] == "diverged").sum())
        for r in responses:
            mean, half, n = mean_interval(ok[r]) if r in ok.columns else (math.nan, math.nan, 0)
            row[metric_label(r, trials)] = fmt_ci(mean, half, n)
        rows.append(row)
    return pd.DataFrame(rows)


def level_table(trials: pd.DataFrame, factor: str, responses: list[str],
                sampled: bool) -> pd.DataFrame:
    """Per level of one factor (all other factors pooled; a sampled factor in quantile bins).
    The seed stays the unit: each seed's value is its mean over the level's configurations,
    and the interval is over those per-seed values, never over configuration x seed cells."""
    done = completed_seeds(trials)
    key = done[factor]
    if sampled and pd.api.types.is_numeric_dtype(key) and key.nunique() > LEVEL_BINS:
        key = pd.qcut(key.astype(float), LEVEL_BINS, duplicates="drop")
    rows = []
    for level, g in done.groupby(key, sort=True, observed=True):
        configs = g["trial_id"].nunique() if "trial_id" in g.columns else 1
        row = {factor_name(factor): _bin(level), "seeds": g["seed"].nunique(),
               "configurations": configs}
        for r in responses:
            per_seed = pd.to_numeric(g[r], errors="coerce").groupby(g["seed"]).mean() \
                if r in g.columns else pd.Series(dtype=float)
            mean, half, n = mean_interval(per_seed.to_numpy()) if len(per_seed) \
                else (math.nan, math.nan, 0)
            row[metric_label(r, trials)] = fmt_ci(mean, half, n)
        rows.append(row)
    return pd.DataFrame(rows)


def _bin(level) -> str:
    if isinstance(level, pd.Interval):
        return f"{level.left:.3g} to {level.right:.3g}"
    return show(level)


#: what ``fit_table`` shows, and what each column means
FIT_COLUMNS = {
    "exact_ll": "the exact log-density of the test points (2-D data with noise)",
    "test_ll": "the test log-likelihood",
    "ll_gap": "test_ll - exact_ll (0 is a perfect fit)",
    "curve_coverage": "test points with a decoded prior sample within 3 noise std (at least "
                      "0.03): the gate of noise-free data",
    "wrong_sample_frac": "decoded prior samples off the curve",
    "val_gain_tail": "nats the validation bound gained over the last tenth of training, read off "
                     "its trend over the last fifth (near 0: converged)",
    "epochs": "epochs trained (early stopping may end a trial before its budget)",
}


def fit_legend(fit: pd.DataFrame) -> str:
    """What the metric columns of a ``fit_table`` mean: "`c`, meaning; ..." ("" if none)."""
    shown = [c for c in FIT_COLUMNS if any(h.split(" ")[0] == c for h in fit.columns)]
    return "; ".join(f"`{c}`, {FIT_COLUMNS[c]}" for c in shown)


def fit_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, how well its models learned the data (``FIT_COLUMNS``)."""
    done = completed_seeds(trials)
    factors = factor_columns(done)
    cols = [c for c in FIT_COLUMNS if c in done.columns and done[c].notna().any()]
    rows = []
    for keys, g in _groups(done, factors):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = {factor_name(f): show(k) for f, k in zip(factors, keys)}
        for c in cols:
            mean, half, n = mean_interval(pd.to_numeric(g[c], errors="coerce"))
            row[metric_label(c, trials)] = fmt_ci(mean, half, n)
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_table(verdicts: list[Verdict], smoke: bool, figure: str | None = None,
                  kind: str | None = None) -> pd.DataFrame:
    """One row per claim, numbered; ``figure``: the file of ``claims_figure``, linked from the
    row of every claim that has a panel in it; ``kind``: *confirmatory* or *exploratory*."""
    rows = []
    for i, v in enumerate(verdicts, 1):
        row = {"#": i} | v.row()
        if smoke:
            row["verdict"] += " (smoke test)"
        elif kind is not None and v.verdict != "untestable":
            row["verdict"] += f" ({kind})"
        if figure is not None:
            row["evidence"] = f"[panel {i}]({figure})" if len(v.values) else "-"
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_counts(verdicts: list[Verdict] | list[str]) -> str:
    """"N claims: a decided (b supported, ...), c inconclusive, d untestable" of verdicts (or
    of verdict words)."""
    from collections import Counter

    count = Counter(v if isinstance(v, str) else v.verdict for v in verdicts)
    decided = [f"{count[k]} {k}" for k in DECIDED if count[k]]
    n_decided = sum(count[k] for k in DECIDED)
    return (f"{len(verdicts)} claims: {n_decided} decided"
            + (f" ({', '.join(decided)})" if decided else "")
            + f", {count['inconclusive']} inconclusive, {count['untestable']} untestable")


def reference_table(trials: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """Each reference number beside this study's mean ± 95% CI under the same selection."""
    ok = completed_seeds(trials)
    rows = []
    for ref in spec.references:
        chosen = select(ok, ref.where)
        mean, half, n = mean_interval(chosen[ref.metric]) if ref.metric in chosen.columns \
            else (math.nan, math.nan, 0)
        rows.append({"configuration": ", ".join(f"{k}={v}" for k, v in ref.where.items()) or "all",
                     "metric": metric_label(ref.metric, trials), "reference": f"{ref.value:g}",
                     "source": ref.source, "this study": fmt_ci(mean, half, n), "seeds": n,
                     "difference": f"{mean - ref.value:+.3g}" if math.isfinite(mean) else "-"})
    return pd.DataFrame(rows)


def best_configs(trials: pd.DataFrame, epochs: pd.DataFrame, spec: StudySpec,
                 k: int = 5) -> pd.DataFrame:
    """The k best configurations by the search metric's last epoch (mean over seeds)."""
    metric, mode = spec.search.metric, spec.search.mode
    done = trials[trials["trial_status"].isin(["finished", "diverged"])]
    if not len(done) or not len(epochs) or metric not in epochs.columns:
        return pd.DataFrame()
    last = epochs.sort_values("epoch").groupby(["trial_id", "seed"]).tail(1)
    score = last.groupby("trial_id")[metric].mean()
    rows = []
    for tid, g in done.groupby("trial_id"):
        row = {factor_name(f): show(g[f].iloc[0]) for f in factor_columns(done)}
        row[f"last {metric}"] = score.get(tid, math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values(f"last {metric}", ascending=(mode == "min"))
    frame[f"last {metric}"] = frame[f"last {metric}"].map(lambda v: f"{v:.4f}")
    return frame.head(k)


def pruning_stats(trials: pd.DataFrame, study: ResolvedStudy) -> str:
    spec = study.spec
    # a trial's row of its longest-training seed (each seed stops early on its own)
    per_trial = trials.sort_values("epochs", ascending=False, kind="stable") \
        .drop_duplicates("trial_id") if "epochs" in trials.columns else \
        trials.drop_duplicates("trial_id")
    counts = per_trial["trial_status"].value_counts().to_dict()
    pruned = per_trial[per_trial["trial_status"] == "pruned"]
    expected = study.num_trials
    lines = [f"- trials: {len(per_trial)} of {expected} ("
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("finished", "diverged", "pruned", "failed"))
             + ")"]
    if len(per_trial) < expected:
        lines.append(f"- **{expected - len(per_trial)} of the study's {expected} trials are missing** "
                     "(an interrupted or stopped study): `python -m study.run "
                     f"{spec.name} --resume` runs them")
    if len(pruned):
        e = pruned["epochs"].astype(float)
        lines.append(f"- pruned after {e.min():.0f} to {e.max():.0f} epochs (median {e.median():.0f})")
        ran = per_trial[per_trial["trial_status"] != "failed"]
        trained = ran["epochs"].astype(float).sum()
        full = sum(study.config(factor_values(r)).epochs for _, r in ran.iterrows())
        if full:
            lines.append(f"- epochs trained by the trials that did not fail: {trained:.0f} of the "
                         f"{full} they would have run unpruned ({100 * (1 - trained / full):.0f}% "
                         "saved by pruning)")
    return "\n".join(lines) + "\n"
