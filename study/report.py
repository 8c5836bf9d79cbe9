"""``python -m study.report NAME``: answer a study's question from its Parquet tables.

Writes ``results/NAME/report/report.md`` and PNG plots, and logs them to the study's MLflow
parent run. Contents: the question; per configuration and response, the mean over seeds with a
95% confidence interval (Student t, n-1 degrees of freedom; diverged seeds excluded and
counted); the same per level of each factor (all seeds of all configurations at that level);
the best configurations by the search metric; pruning statistics; learning curves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import stats

from .errors import UserError
from .figures import save_figure
from .folder import REPORT_DIR, STATE
from .io import write_text
from .results import default_folder, read_epochs, read_trials
from .spec import StudySpec, load_spec
from .verdicts import judge, select


def mean_ci(values: pd.Series | np.ndarray) -> tuple[float, float, int]:
    """(mean, 95% CI half-width, n) of the finite values; half-width NaN for n < 2."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
    return float(v.mean()), float(half), n


def fmt_ci(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {half:.2g}"


def _factor_cols(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith("factor.")]


def _responses(spec: StudySpec, trials: pd.DataFrame) -> list[str]:
    return [r for r in spec.responses if r in trials.columns and trials[r].notna().any()]


def config_table(trials: pd.DataFrame, responses: list[str]) -> pd.DataFrame:
    """One row per configuration (completed trials): factors, seeds, then 'mean ± CI' per
    response (seeds that diverged are excluded and counted)."""
    done = trials[trials["trial_status"].isin(["finished", "diverged"])]
    factors = _factor_cols(done)
    rows = []
    for keys, g in done.groupby(factors, sort=True, dropna=False) if factors else [((), done)]:
        keys = keys if isinstance(keys, tuple) else (keys,)
        ok = g[g["status"] != "diverged"]
        row = {f[7:]: k for f, k in zip(factors, keys)}
        row["seeds"] = len(ok)
        row["diverged"] = int((g["status"] == "diverged").sum())
        for r in responses:
            row[r] = fmt_ci(*mean_ci(ok[r])[:2])
        rows.append(row)
    return pd.DataFrame(rows)


def level_table(trials: pd.DataFrame, factor: str, responses: list[str]) -> pd.DataFrame:
    done = trials[trials["trial_status"].isin(["finished", "diverged"]) & (trials["status"] != "diverged")]
    rows = []
    for level, g in done.groupby(factor, sort=True):
        row = {factor[7:]: level, "n": len(g)}
        for r in responses:
            row[r] = fmt_ci(*mean_ci(g[r])[:2])
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    if not len(frame):
        return "_no completed trials_\n"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def pruning_stats(trials: pd.DataFrame, spec: StudySpec, budget: str) -> str:
    per_trial = trials.drop_duplicates("trial_id")
    counts = per_trial["trial_status"].value_counts().to_dict()
    pruned = per_trial[per_trial["trial_status"] == "pruned"]
    expected = spec.num_trials(budget)
    lines = [f"- trials: {len(per_trial)} of {expected} "
             + "(" + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("finished", "diverged", "pruned", "failed")) + ")"]
    if len(per_trial) < expected:
        lines.append(f"- **{expected - len(per_trial)} of the study's {expected} trials are missing** "
                     "(an interrupted or stopped study): `python -m study.run "
                     f"{spec.name} --resume` runs them")
    if len(pruned):
        e = pruned["epochs"].astype(float)
        lines.append(f"- pruned after {e.min():.0f} to {e.max():.0f} epochs (median {e.median():.0f})")
        ran = per_trial[per_trial["trial_status"] != "failed"]
        trained = ran["epochs"].astype(float).sum()
        full = sum(spec.trial_config(_factor_values(r), budget).epochs for _, r in ran.iterrows())
        if full:
            lines.append(f"- epochs trained by the trials that did not fail: {trained:.0f} of the "
                         f"{full} they would have run unpruned ({100 * (1 - trained / full):.0f}% "
                         "saved by pruning)")
    return "\n".join(lines) + "\n"


def _factor_values(row: pd.Series) -> dict:
    out = {}
    for c, v in row.items():
        if c.startswith("factor.") and v is not None and not (isinstance(v, float) and math.isnan(v)):
            out[c[7:]] = _native(v)
    return out


def _native(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, str):
        try:
            return json.loads(v)
        except (json.JSONDecodeError, ValueError):
            return v
    return v


def best_configs(trials: pd.DataFrame, epochs: pd.DataFrame, spec: StudySpec, k: int = 5) -> pd.DataFrame:
    metric, mode = spec.search.metric, spec.search.mode
    done = trials[trials["trial_status"].isin(["finished", "diverged"])]
    if not len(done) or not len(epochs) or metric not in epochs.columns:
        return pd.DataFrame()
    last = epochs.sort_values("epoch").groupby(["trial_id", "seed"]).tail(1)
    score = last.groupby("trial_id")[metric].mean()
    rows = []
    for tid, g in done.groupby("trial_id"):
        row = {f[7:]: g[f].iloc[0] for f in _factor_cols(done)}
        row[f"final {metric}"] = score.get(tid, math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values(f"final {metric}", ascending=(mode == "min"))
    frame[f"final {metric}"] = frame[f"final {metric}"].map(lambda v: f"{v:.4f}")
    return frame.head(k)


def plot_responses(trials: pd.DataFrame, responses: list[str], folder: Path) -> list[Path]:
    """Per response: mean and 95% CI against the first factor, one line per other setting."""
    done = trials[trials["trial_status"].isin(["finished", "diverged"]) & (trials["status"] != "diverged")]
    factors = _factor_cols(done)
    paths = []
    if not factors or not len(done):
        return paths
    x, others = factors[0], factors[1:]
    for r in responses:
        fig, ax = plt.subplots(figsize=(6, 4))
        groups = done.groupby(others, sort=True) if others else [((), done)]
        for key, g in groups:
            levels = sorted(g[x].unique(), key=_sort_key)
            stats_ = [mean_ci(g[g[x] == lv][r]) for lv in levels]
            label = ", ".join(f"{o[7:]}={k}" for o, k in zip(others, key if isinstance(key, tuple) else (key,)))
            ax.errorbar([str(lv) for lv in levels], [s[0] for s in stats_],
                        yerr=[0 if not math.isfinite(s[1]) else s[1] for s in stats_],
                        marker="o", capsize=3, label=label or None)
        ax.set_xlabel(x[7:])
        ax.set_ylabel(r)
        ax.set_title(f"{r}: mean and 95% CI over seeds")
        if others:
            ax.legend(fontsize=7)
        paths.append(save_figure(fig, folder / f"{r}.png", dpi=100))
    return paths


def _sort_key(v):
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def plot_learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str, folder: Path) -> Path | None:
    if not len(epochs) or metric not in epochs.columns:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    status = trials.drop_duplicates("trial_id").set_index("trial_id")["trial_status"]
    for tid, g in epochs.groupby("trial_id"):
        curve = g.groupby("epoch")[metric].mean()
        style = ":" if status.get(tid) == "pruned" else "-"
        ax.plot(curve.index, curve.values, style, lw=1)
    finite = epochs[metric][np.isfinite(epochs[metric].astype(float))]
    if len(finite):
        ax.set_ylim(np.percentile(finite, 5), finite.max() + 0.1 * abs(finite.max()) + 0.1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (mean over seeds)")
    ax.set_title("learning curves (dotted: pruned)")
    return save_figure(fig, folder / "learning_curves.png", dpi=100)


def plot_curves(trials: pd.DataFrame, spec: StudySpec, folder: Path) -> list[Path]:
    """The study's ``curves``: a metric family against x, one line per configuration."""
    done = trials[trials["trial_status"].isin(["finished", "diverged"]) & (trials["status"] != "diverged")]
    factors = _factor_cols(done)
    paths = []
    for i, curve in enumerate(spec.curves):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        groups = done.groupby(factors, sort=True) if factors else [((), done)]
        for j, (key, g) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{f[7:]}={k}" for f, k in zip(factors, key)) or "all"
            cols = [curve.metric.format(x=_fmt_x(x)) for x in curve.x]
            stats_ = [mean_ci(g[c]) if c in g.columns else (math.nan, math.nan, 0) for c in cols]
            line = ax.errorbar(curve.x, [m for m, _, _ in stats_],
                               yerr=[0 if not math.isfinite(h) else h for _, h, _ in stats_],
                               marker="o", capsize=3, label=label)
            if curve.reference:
                refs = [curve.reference.format(x=_fmt_x(x)) for x in curve.x]
                ref = [g[c].astype(float).mean() if c in g.columns else math.nan for c in refs]
                ax.plot(curve.x, ref, "--", color=line[0].get_color(), lw=1)
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel(curve.metric.replace("{x}", "·"))
        ax.set_title(curve.title + (" (dashed: reference)" if curve.reference else ""))
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, folder / f"curve_{i}.png", dpi=100))
    return paths


def reference_table(trials: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """Each reference number beside this study's mean ± 95% CI under the same selection."""
    ok = trials[trials["trial_status"].isin(["finished", "diverged"]) & (trials["status"] != "diverged")]
    rows = []
    for ref in spec.references:
        chosen = select(ok, ref.where)
        mean, half, n = mean_ci(chosen[ref.metric]) if ref.metric in chosen.columns else (math.nan, math.nan, 0)
        rows.append({"configuration": ", ".join(f"{k}={v}" for k, v in ref.where.items()) or "all",
                     "metric": ref.metric, "reference": f"{ref.value:g}", "source": ref.source,
                     "this study": fmt_ci(mean, half), "seeds": n,
                     "difference": f"{mean - ref.value:+.3g}" if math.isfinite(mean) else "-"})
    return pd.DataFrame(rows)


def _fmt_x(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def build_report(spec: StudySpec, results: Path) -> Path:
    """Write the report folder; returns the markdown file's path."""
    trials, epochs = read_trials(results), read_epochs(results)
    if not len(trials):
        raise UserError(f"{results}: no trials.parquet with rows; run the study first "
                        f"(python -m study.run {spec.name})")
    state_file = results / STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    budget = state.get("budget", "default")
    folder = results / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    responses = _responses(spec, trials)
    plots = plot_responses(trials, responses, folder)
    curves = plot_learning_curves(epochs, trials, spec.search.metric, folder)

    parts = [f"# {spec.name}\n", f"**Question.** {' '.join(spec.question.split())}\n",
             f"Budget `{budget}`; seeds per configuration: {trials.groupby('trial_id').size().max()}; "
             "values are mean ± 95% CI half-width over seeds (Student t).\n",
             ]
    if spec.claims:
        verdicts = [judge(c, trials) for c in spec.claims]
        parts += ["## Verdicts\n",
                  "Each statement of the experiment log against this study's seeds: effect with "
                  "its 95% CI; *supported* when the whole interval lies on the expected side, "
                  "*not supported* when it lies on the other side, else *inconclusive*.\n",
                  markdown(pd.DataFrame([v.row() for v in verdicts]))]
    if spec.references:
        parts += ["## Compared with reference numbers\n",
                  markdown(reference_table(trials, spec))]
    curves_png = plot_curves(trials, spec, folder)
    parts += [f"![{p.stem}]({p.name})\n" for p in curves_png]
    parts += ["## Responses per configuration\n", markdown(config_table(trials, responses))]
    for f in _factor_cols(trials):
        if trials[f].nunique() > 1 and len(_factor_cols(trials)) > 1:
            parts += [f"## Per level of {f[7:]} (all other factors pooled)\n",
                      markdown(level_table(trials, f, responses))]
    parts += ["## Best configurations\n", markdown(best_configs(trials, epochs, spec)),
              "## Pruning\n", pruning_stats(trials, spec, budget), "## Plots\n"]
    parts += [f"![{p.stem}]({p.name})\n" for p in plots]
    if curves:
        parts.append(f"![learning curves]({curves.name})\n")
    path = folder / "report.md"
    write_text(path, "\n".join(parts))
    return path


def copy_to_storage(results: Path) -> None:
    """A study run with ``--storage`` gets its report copied there too."""
    state_file = results / STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if state.get("storage"):
        from .storage import Mirror, study_uri

        Mirror(study_uri(state["storage"], state["study"]), results).push(REPORT_DIR)


def log_to_mlflow(results: Path, tracking_uri: str | None) -> str | None:
    state_file = results / STATE
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    from .redact import MASK
    from .tracking import Tracker

    uri = tracking_uri or state.get("tracking_uri")
    if uri and MASK in uri:  # saved with its password masked: it must come from the user
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise UserError(f"{state_file}: the study's tracking URI is saved without its "
                            "password; pass --tracking-uri (or set MLFLOW_TRACKING_URI)")
    tracker = Tracker(uri, state["study"])
    tracker.client.log_artifacts(state["parent_run_id"], str(results / REPORT_DIR), REPORT_DIR)
    return state["parent_run_id"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.report", description=__doc__.split("\n")[0])
    p.add_argument("name", help="study name (search_spaces/NAME.yaml)")
    p.add_argument("--results", default=None,
                   help="results folder (default $HVAE_RESULTS_DIR/NAME, else results/NAME)")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: the study's own)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    from .environment import configure_process
    from .redact import redact

    configure_process()
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.name)
        results = Path(args.results).resolve() if args.results else default_folder(spec.name)
        path = build_report(spec, results)
        copy_to_storage(results)
        run = None if args.no_mlflow else log_to_mlflow(results, args.tracking_uri)
    except UserError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    print(f"report: {path}" + (f"  (logged to MLflow parent run {run})" if run else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
