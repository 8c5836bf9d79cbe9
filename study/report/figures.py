"""The figures of a study's report (matplotlib, PNG; no torch). Every figure has a title naming
the study and what it shows, labelled axes with units, and a legend; one figure per response
family keeps the page short."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from study.core.figures import curve_marker, epoch_axis, save_figure
from study.judge.stats import mean_interval
from study.report.tables import metric_label, show
from study.spec.metric_names import human_name
from study.spec.metric_names import unit as unit_of
from study.spec.study_spec import StudySpec
from study.store.columns import completed_seeds, factor_columns, factor_name


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def responses_figure(spec: StudySpec, trials: pd.DataFrame, responses: list[str],
                     folder: Path) -> Path | None:
    """Small multiples: per response, mean and 95% interval over seeds against the first
    factor, one line per setting of the others."""
    done = completed_seeds(trials)
    factors = factor_columns(done)
    responses = [r for r in responses if r in done.columns and done[r].notna().any()]
    if not factors or not len(done) or not responses:
        return None
    x, others = factors[0], factors[1:]
    cols = min(3, len(responses))
    rows = math.ceil(len(responses) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False,
                             layout="constrained")
    for ax, r in zip(axes.flat, responses):
        groups = done.groupby(others, sort=True) if others else [((), done)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            levels = sorted(g[x].unique(), key=_sort_key)
            stats_ = [mean_interval(pd.to_numeric(g[g[x] == lv][r], errors="coerce"))
                      for lv in levels]
            label = ", ".join(f"{factor_name(o)}={show(k)}" for o, k in zip(others, key)) or None
            ax.errorbar([show(lv) for lv in levels], [s[0] for s in stats_],
                        yerr=[0 if not math.isfinite(s[1]) else s[1] for s in stats_],
                        marker="o", capsize=3, label=label)
        ax.set_xlabel(factor_name(x))
        unit = unit_of(r)
        ax.set_ylabel(metric_label(r, trials) + (f" [{unit}]" if unit and unit not in r else ""))
        ax.set_title(human_name(r), fontsize=9)
        _reference_lines(ax, r, spec)
        if ax.get_legend_handles_labels()[0]:  # settings of other factors, reference lines
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(responses):]:
        ax.set_axis_off()
    fig.suptitle(f"{spec.name}: responses, mean and 95% interval over seeds")
    return save_figure(fig, folder / "responses.png", dpi=90)


def _reference_lines(ax, metric: str, spec: StudySpec) -> None:
    """The lines a response is read against: chance (0.5) for an AUROC; the exact density (0)
    and the study's gate for the gap to it."""
    if unit_of(metric) == "AUROC":
        ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance")
    elif metric == "ll_gap":
        ax.axhline(0.0, color="grey", ls=":", lw=1, label="exact density")
        if spec.gates.max_ll_gap is not None:
            ax.axhline(-spec.gates.max_ll_gap, color="tab:red", ls="--", lw=1,
                       label=f"gate (-{spec.gates.max_ll_gap:g})")


def learning_curves_figure(spec: StudySpec, epochs: pd.DataFrame, trials: pd.DataFrame,
                           folder: Path) -> Path | None:
    """The search metric per epoch (mean over seeds), one line per trial, labelled by its
    configuration; pruned trials dotted."""
    metric = spec.search.metric
    if not len(epochs) or metric not in epochs.columns:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    per_trial = trials.drop_duplicates("trial_id").set_index("trial_id")
    factors = factor_columns(per_trial)
    def order(tid):  # the legend in the configurations' order (depth=1 first), not Ray's
        row = per_trial.loc[tid] if tid in per_trial.index else None
        return tuple(_sort_key(row[f]) for f in factors) if row is not None else ((2, 0, tid),)

    groups = dict(list(epochs.groupby("trial_id")))
    for tid in sorted(groups, key=order):
        curve = groups[tid].groupby("epoch")[metric].mean()
        row = per_trial.loc[tid] if tid in per_trial.index else None
        label = ", ".join(f"{factor_name(f)}={show(row[f])}" for f in factors) if row is not None else tid
        pruned = row is not None and row["trial_status"] == "pruned"
        ax.plot(curve.index, curve.values, ":" if pruned else "-", lw=1,
                marker=curve_marker(len(curve)), ms=3,
                label=(label + " (pruned)") if pruned else label)
    finite = epochs[metric][np.isfinite(epochs[metric].astype(float))]
    if len(finite):  # the worst 5% (first epochs, a diverging seed) may leave the frame
        low, high = np.percentile(finite, 5), finite.max()
        pad = 0.05 * (high - low) or 0.1
        ax.set_ylim(low - pad, high + pad)
    epoch_axis(ax, int(epochs["epoch"].max()))
    ax.set_ylabel(f"{metric} [nats], mean over seeds")
    ax.set_title(f"{spec.name}: {human_name(metric)} per epoch")
    if epochs["trial_id"].nunique() <= 24:
        ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, folder / "learning_curves.png", dpi=90)


def _fmt_x(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def curve_figures(spec: StudySpec, trials: pd.DataFrame, folder: Path) -> list[Path]:
    """The study's ``curves``: a metric family against x, one line per configuration, the
    reference family dashed in the same colour."""
    done = completed_seeds(trials)
    factors = factor_columns(done)
    paths = []
    for i, curve in enumerate(spec.curves):
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        groups = done.groupby(factors, sort=True) if factors else [((), done)]
        for key, g in groups:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{factor_name(f)}={show(k)}" for f, k in zip(factors, key)) or "all"
            cols = [curve.metric.format(x=_fmt_x(x)) for x in curve.x]
            stats_ = [mean_interval(g[c]) if c in g.columns else (math.nan, math.nan, 0) for c in cols]
            line = ax.errorbar(curve.x, [m for m, _, _ in stats_],
                               yerr=[0 if not math.isfinite(h) else h for _, h, _ in stats_],
                               marker="o", capsize=3, label=label)
            if curve.reference:
                refs = [curve.reference.format(x=_fmt_x(x)) for x in curve.x]
                ref = [g[c].astype(float).mean() if c in g.columns else math.nan for c in refs]
                ax.plot(curve.x, ref, "--", color=line[0].get_color(), lw=1,
                        label=f"{label}: {curve.reference.replace('_{x}', '')}")
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel(curve.metric.replace("_{x}", "").replace("{x}", ""))
        ax.set_title(f"{spec.name}: {curve.title}")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, folder / f"curve_{i}.png", dpi=90))
    return paths


def claims_figure(spec: StudySpec, verdicts: list, folder: Path) -> Path | None:
    """The evidence of every claim, one panel each (numbered as in the verdict table): the
    per-seed values the claim's test used (a difference between configurations or metrics, or
    the metric minus its threshold), their mean with its 95% interval, zero, and the
    equivalence margin where the claim has one; the title gives the verdict."""
    shown = [(i, v) for i, v in enumerate(verdicts, 1) if len(v.values)]
    if not shown:
        return None
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (i, v) in zip(axes.flat, shown):
        d = np.asarray(v.values, float)
        jitter = np.random.default_rng(i).uniform(-0.08, 0.08, len(d))
        ax.scatter(jitter, d, s=14, color="0.35", label=f"{len(d)} seeds")
        r = v.result
        if r is not None and math.isfinite(r.effect):
            low, high = (r.low, r.high) if r.has_interval else (r.effect, r.effect)
            ax.errorbar([0.3], [r.effect], yerr=[[r.effect - low], [high - r.effect]], fmt="o",
                        color="C0", capsize=4, label="mean, 95% interval" if r.has_interval
                        else "mean (no interval)")
        ax.axhline(0, color="k", lw=0.8)
        if v.claim.margin is not None:
            for m in (-v.claim.margin, v.claim.margin):
                ax.axhline(m, color="C2", ls="--", lw=0.8)
        ax.set_xlim(-0.5, 0.8)
        ax.set_xticks([])
        unit = unit_of(v.claim.metric)
        what = "difference" if v.claim.versus is not None or v.claim.versus_metric else \
            f"minus {v.claim.threshold:g}"
        ax.set_ylabel(f"{v.claim.metric} {what}" + (f" [{unit}]" if unit else ""), fontsize=8)
        title = v.claim.statement if len(v.claim.statement) <= 60 else v.claim.statement[:57] + "..."
        ax.set_title(f"{i}. {title}\n{v.verdict}", fontsize=8)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    fig.suptitle(f"{spec.name}: the per-seed evidence of each claim (0: no effect)")
    return save_figure(fig, folder / "claims.png", dpi=90)
