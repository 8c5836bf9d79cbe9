"""``python -m study.report NAME``: answer a study's question from its Parquet tables.

Writes ``results/NAME/report/report.md`` with its figures, and logs them to the study's MLflow
parent run. In order: the question; the verdict on each claim (``study.judge.verdicts``: paired
tests by seed, Holm across the claims, equivalence within declared margins, *untestable* when
the models miss the claim's fitness gate); how well the models learned the data; reference
numbers; the responses per configuration and per level of each factor; the best
configurations; pruning; the figures. Values are means over completed seeds with 95%
t-intervals; the results of a ``smoke`` budget are labelled as a smoke test, not findings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from study.core.errors import UserError
from study.core.io import write_json, write_text
from study.core.redact import MASK, redact
from study.judge.sequential import judge_study
from study.judge.verdicts import gate_counts
from study.report.answer import (
    SMOKE,
    VERDICTS_FILE,
    answer_tags_and_metrics,
    answer_text,
    configuration_means,
    verdict_records,
)
from study.report.figures import (
    claims_figure,
    curve_figures,
    learning_curves_figure,
    responses_figure,
)
from study.report.html import write_html
from study.report.tables import (
    best_configs,
    config_table,
    fit_legend,
    fit_table,
    level_table,
    markdown,
    pruning_stats,
    reference_table,
    verdict_counts,
    verdict_table,
)
from study.spec.resolved import ResolvedStudy
from study.spec.spec_file import load_spec
from study.spec.study_spec import StudySpec
from study.store.columns import factor_columns, factor_name
from study.store.folder import (
    REPORT_DIR,
    STATE,
    StudyState,
    read_state,
    resolve_results,
)
from study.store.results import default_folder, read_epochs, read_scores, read_trials

VERDICTS_EXPLAINED = (
    "Each statement of the experiment log, tested on this study's seeds. The seed is the unit: "
    "seed s of every configuration shares its data draw and initialisation (common random "
    "numbers), so configurations are compared seed by seed (paired). A comparison is about the "
    "mean of the per-seed differences (paired t test; its null, no effect, makes the "
    "difference symmetric, where t keeps its level whatever the shape); a claim against a "
    "threshold, or one marked \"median\", about the median: is the value on the expected side "
    "in most seeds (exact sign test, with its order-statistic interval; it needs at least 6 "
    "seeds to reach 0.05, more under Holm). Intervals are at the level the test ran at (the "
    "look's, under --until-decided). p-values are two-sided and Holm-adjusted across this "
    "study's claims (level {alpha}). *supported* / *not supported*: the adjusted test rejects "
    "no effect and the effect lies on the expected / the other side; *equivalent*: the effect "
    "is shown to lie within the claim's margin (TOST); *inconclusive*: neither; *untestable*: "
    "a model of the claim missed its gate in some seed (the fit to the data, every layer the "
    "claim relies on carrying information), so the models did not learn what the claim is "
    "about. *Confirmatory*: decided on the study file's confirmatory seeds, which no recipe "
    "was developed on; *exploratory*: on seeds that were.")


SEQUENTIAL_EXPLAINED = (
    "Seeds were added until decided (`--until-decided`): {first} seeds, then {step} more per "
    "round for the configurations of claims still inconclusive, up to {max}. Each look tests at "
    "its own level, alpha spent by a Pocock-type Lan-DeMets function (total {alpha}), so looking "
    "after every round does not inflate the error rate; a claim keeps its first decision, and "
    "its interval is at the level of the look that decided it (or of the last look). "
    "Looks: {looks}.\n")


COMPUTE_MATCHED = (
    "**Compute matched.** Every configuration trained for the same training compute: the "
    "matmul FLOPs of the forward and backward passes over its training points with its "
    "importance samples (`models.size.training_flops`), those of the costliest configuration "
    "at the budget's epochs; the cheaper ones train for more epochs (the `epochs` column of the "
    "fit table). The claims compare configurations at this compute, not at convergence, and "
    "say nothing about which would be better trained longer.\n")


def _responses(spec: StudySpec, trials: pd.DataFrame) -> list[str]:
    return [r for r in spec.responses if r in trials.columns and trials[r].notna().any()]


def _shared_settings(study: ResolvedStudy) -> str:
    """One line: the settings every configuration shares (the study file's ``fixed`` with the
    budget's overrides), so the page says how its models were trained."""
    spec = study.spec
    values = {k: v for k, v in spec.base_values(study.budget).items() if k != "seeds"}
    if spec.match_compute is not None and "epochs" in values:
        values["epochs"] = f"matched to the costliest configuration's {values['epochs']}"
    listed = ", ".join(f"{k} {v}" for k, v in values.items())
    return f"Every configuration: {listed}; the rest at the defaults of `study/spec/config.py`.\n"


def build_report(spec: StudySpec, results: Path) -> Path:
    """Write the report folder; returns the markdown file's path."""
    state = study_state(spec, results)
    if state.confirmatory and spec.confirmatory_seeds is not None:
        spec = spec.confirmatory()
    trials, epochs = read_trials(results), read_epochs(results)
    if not len(trials):
        raise UserError(f"{results}: no trials.parquet with rows; run the study first "
                        f"(python -m study.run {spec.name})")
    study = ResolvedStudy(spec, state.budget or "default")
    folder = results / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    responses = _responses(spec, trials)
    judged = judge_study(spec.claims, trials, state.sequential, spec.gates, spec.alpha,
                         read_scores(results)) if spec.claims else ([], None, [])
    parts = _head(study, trials, judged[0], state)
    figures = curve_figures(spec, trials, folder)
    if spec.claims:
        parts += _verdicts_section(study, trials, judged, folder)
        parts += [f"![{p.stem}]({p.name})\n" for p in figures]
        figures = []
    fit = fit_table(trials)
    if len(fit.columns) > len(factor_columns(trials)):
        parts += ["## How well the models learned the data\n",
                  f"Mean over seeds: {fit_legend(fit)}.\n", markdown(fit)]
    if spec.references:
        parts += ["## Compared with reference numbers\n", markdown(reference_table(trials, spec))]
    parts += [f"![{p.stem}]({p.name})\n" for p in figures]
    parts += ["## Responses per configuration\n", markdown(config_table(trials, responses))]
    factors = factor_columns(trials)
    for f in factors:
        if trials[f].nunique() > 1 and len(factors) > 1:
            sampled = factor_name(f) in spec.sampled_factors
            parts += [f"## Per level of {factor_name(f)} (all other factors pooled)\n",
                      markdown(level_table(trials, f, responses, sampled))]
    parts += ["## Best configurations\n", markdown(best_configs(trials, epochs, spec)),
              "## Pruning\n", pruning_stats(trials, study)]
    parts += _protocol_section(spec, state, trials)
    parts += ["## Figures\n"]
    for p in (responses_figure(spec, trials, responses, folder),
              learning_curves_figure(spec, epochs, trials, folder)):
        if p is not None:
            parts.append(f"![{p.stem}]({p.name})\n")
    path = folder / "report.md"
    write_text(path, "\n".join(parts))
    if spec.claims:
        write_json(folder / VERDICTS_FILE, verdict_records(judged[0], _evidence(study, trials)))
    else:
        (folder / VERDICTS_FILE).unlink(missing_ok=True)
    write_html(path, spec.name)
    return path


def evidence_kind(spec: StudySpec, trials: pd.DataFrame) -> str:
    """*confirmatory* when every seed of the study lies in its confirmatory range, else
    *exploratory* (seeds that recipes of this study may have been developed on)."""
    seeds = sorted(set(trials["seed"].astype(int))) if len(trials) else []
    return "confirmatory" if spec.on_confirmatory_seeds(seeds) else "exploratory"


def _evidence(study: ResolvedStudy, trials: pd.DataFrame) -> str:
    """What a verdict of this run is: *confirmatory*, *exploratory*, or a smoke test."""
    return SMOKE if study.budget == "smoke" else evidence_kind(study.spec, trials)


def _seeds_text(trials: pd.DataFrame) -> str:
    seeds = sorted(set(trials["seed"].astype(int))) if len(trials) else []
    if not seeds:
        return "no seeds"
    return f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else "seeds " + ", ".join(map(str, seeds))


def _head(study: ResolvedStudy, trials: pd.DataFrame, verdicts: list,
          state: StudyState) -> list[str]:
    """The report's first lines: the question, the verdicts counted (decided / inconclusive /
    untestable, confirmatory or exploratory), the budget and seeds, the shared settings and
    the notes a compute-matched or smoke study needs."""
    spec, budget = study.spec, study.budget
    per_config = trials.groupby(factor_columns(trials) or (lambda _: 0), dropna=False)["seed"] \
        .nunique()
    seeds = f"{per_config.min()}" if per_config.min() == per_config.max() else \
        f"{per_config.min()} to {per_config.max()}"
    parts = [f"# {spec.name}\n", f"**Question.** {' '.join(spec.question.split())}\n"]
    if verdicts:
        kind = evidence_kind(spec, trials)
        why = ("the study file's confirmatory range, which no recipe was developed on"
               if kind == "confirmatory" else
               "seeds that recipes may have been developed on; `--confirmatory` runs fresh ones"
               if spec.confirmatory_seeds is not None else
               "the study file declares no confirmatory seeds")
        smoke = " (smoke test: nothing below is a finding)" if budget == "smoke" else ""
        parts.append(f"**Answer: {verdict_counts(verdicts)}**{smoke}; *{kind}*: "
                     f"{_seeds_text(trials)}, {why}.\n")
        label = _evidence(study, trials)  # computed once for every line
        parts.append("\n".join(f"{i}. {v.headline(label)}"
                               for i, v in enumerate(verdicts, 1)) + "\n")
    parts += [f"Budget `{budget}`; {seeds} seeds per configuration; values are the mean over "
              "completed seeds ± the 95% t-interval half-width.\n",
              _shared_settings(study)]
    if spec.match_compute is not None:
        parts.append(COMPUTE_MATCHED)
    if budget == "smoke":
        parts.append("> **Smoke test.** The `smoke` budget checks that the study runs end to end; "
                     "its models are not trained, and nothing below is a finding.\n")
    return parts


def _verdicts_section(study: ResolvedStudy, trials: pd.DataFrame, judged: tuple,
                      folder: Path) -> list[str]:
    """The verdicts of the study's claims: the table, how many seeds pass each gate, the
    evidence figure and why a claim was untestable."""
    spec, budget = study.spec, study.budget
    verdicts, design, looks = judged
    sequential_note = ""
    if design is not None:
        sequential_note = SEQUENTIAL_EXPLAINED.format(
            first=design.first, step=design.step, max=design.max_seeds, alpha=design.alpha,
            looks=", ".join(f"{look.seeds} seeds at level {look.level:.3g}" for look in looks))
    evidence = claims_figure(spec, verdicts, folder)
    parts = ["## Verdicts\n", VERDICTS_EXPLAINED.format(alpha=spec.alpha) + "\n",
             sequential_note,
             markdown(verdict_table(verdicts, budget == "smoke",
                                    evidence.name if evidence else None,
                                    evidence_kind(spec, trials)))]
    if evidence is not None:
        parts.append(f"![claims]({evidence.name})\n")
    counts = gate_counts(spec.claims, spec.gates, trials)
    if len(counts):
        parts += ["Seeds of each configuration that pass each bound of the claims' gates (a "
                  "configuration passes only when every completed seed does):\n",
                  markdown(counts)]
    if any(v.layer_inactive for v in verdicts):
        parts.append(
            "**Untestable: a layer is inactive.** A claim about a layer (its class "
            "separation, the likelihood ratio above it) means something only if the layer "
            "carries information; in these models it does not (KL under the claim's gate), "
            "which longer training need not change and more seeds cannot.\n")
    if any(v.verdict == "untestable" and not v.layer_inactive for v in verdicts) \
            and budget != "full":
        full = ", ".join(f"{k} {'all' if k.startswith('n_') and v == 0 else v}"
                         for k, v in spec.budget("full").items()) or "as the study file says"
        parts.append(
            "**Untestable here.** The models of those claims missed a gate at the "
            f"`{budget}` budget: they have not learned what the claim is about, so no test "
            f"was run. The `full` budget ({full}) is meant to test them, on a GPU cluster "
            "(docs/cluster.md gives its GPU hours); `--until-decided` adds seeds, not "
            "epochs, so it cannot help a claim that misses its gate.\n")
    return parts


def _protocol_section(spec: StudySpec, state: StudyState, trials: pd.DataFrame) -> list[str]:
    """Every recorded change of a gate, recipe or seed count, and which study file the run
    used: the verdicts' reader sees what was chosen after looking."""
    lines = ["## Protocol\n"]
    now = spec.file_sha256()
    if state.spec_sha256:
        same = "unchanged since" if now == state.spec_sha256 else "**changed** since"
        declared = "none declared" if spec.confirmatory_seeds is None else \
            f"from seed {spec.confirmatory_seeds}"
        lines.append(f"Study file SHA-256 at the run: `{state.spec_sha256[:16]}`; {same} the "
                     f"run (now `{(now or '?')[:16]}`). Seeds: {_seeds_text(trials)}; "
                     f"confirmatory range: {declared}.\n")
    if spec.protocol:
        lines += ["| date | change | reason | after looking at results |", "|---|---|---|---|"]
        lines += [f"| {p.date} | {p.change} | {p.reason} | {'yes' if p.after_looking else 'no'} |"
                  for p in spec.protocol]
        lines.append("")
    else:
        lines.append("No change of a gate, recipe or seed count is recorded in the study "
                     "file.\n")
    return lines


def study_state(spec: StudySpec, results: Path) -> StudyState:
    """The state of the study whose results are in ``results``; a folder that holds no study,
    or another study than ``spec``, is refused (a report belongs to its folder)."""
    state = read_state(results / STATE)
    if state is None:
        if not results.is_dir():
            raise UserError(f"{results}: no such results folder; run the study first "
                            f"(python -m study.run {spec.name})")
        raise UserError(f"{results} holds no study's results (no {STATE}); run the study first "
                        f"(python -m study.run {spec.name}), or give its folder with --results")
    if state.study != spec.name:
        raise UserError(f"{results} holds the results of study {state.study!r}, not "
                        f"{spec.name!r}: report it with python -m study.report {state.study}"
                        f" --results {results}")
    return state


def copy_to_storage(results: Path, state: StudyState) -> None:
    """A study run with ``--storage`` gets its report copied there too."""
    if state.storage and state.study_id and MASK not in state.storage:
        from study.store.storage import Mirror, study_uri

        Mirror(study_uri(state.storage, state.study, state.study_id), results).push(REPORT_DIR)


def log_to_mlflow(spec: StudySpec, results: Path, state: StudyState,
                  tracking_uri: str | None) -> str | None:
    """Put the study's answer on its MLflow parent run: the question and one line per claim as
    the run's description, a tag and metrics per claim and the responses' means per
    configuration (``study.report.answer``), and the report folder (``report.html`` shows it
    whole, figures included); returns the run's id."""
    import json

    from mlflow.entities import Metric, RunTag

    from study.store.tracking import DESCRIPTION_TAG, STUDY_ID_TAG, Tracker, recorded_uri

    if state.parent_run_id is None:
        return None
    uri = tracking_uri or recorded_uri(state.tracking_uri) or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise UserError(f"{results / STATE}: the study's tracking URI is saved without its "
                        "password; pass --tracking-uri (or set MLFLOW_TRACKING_URI)")
    tracker = Tracker(uri, state.study)
    try:
        run = tracker.client.get_run(state.parent_run_id)
    except Exception:  # noqa: BLE001 - not in this store
        run = None
    owner = run.data.tags.get(STUDY_ID_TAG) if run is not None else None
    if run is None or owner not in (None, state.study_id):
        raise UserError(f"the MLflow parent run {state.parent_run_id} of {results} is not this "
                        f"study's in {redact(tracker.uri)}; give its store with --tracking-uri, "
                        "or add --no-mlflow")
    folder = results / REPORT_DIR
    verdicts = folder / VERDICTS_FILE
    records = json.loads(verdicts.read_text()) if verdicts.is_file() else []
    tags, metrics = answer_tags_and_metrics(records) if records else ({}, {})
    tags[DESCRIPTION_TAG] = (answer_text(spec.question, records) if records else
                             f"**Question.** {' '.join(spec.question.split())}")[:5000] + \
        "\n\nThe whole report, figures included: Artifacts, report/report.html."
    trials = read_trials(results)
    about = [m for c in spec.claims for m in (c.metric, c.versus_metric) if m] or \
        _responses(spec, trials)  # what the answer is about, else the study's responses
    metrics |= configuration_means(trials, [m for m in dict.fromkeys(about)
                                            if m in trials.columns])
    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
    run_id = state.parent_run_id
    tracker.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    for i in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
        tracker.client.log_batch(run_id, metrics=batch[i:i + 1000])
    tracker.client.log_artifacts(run_id, str(folder), REPORT_DIR)
    return run_id


def write_report(spec: StudySpec, results: Path) -> tuple[Path, StudyState]:
    """Write the report of the study in ``results`` and copy it to the study's storage; (the
    markdown file, the folder's state)."""
    state = study_state(spec, results)
    path = build_report(spec, results)
    copy_to_storage(results, state)
    return path, state


def publish_report(spec: StudySpec, results: Path, tracking_uri: str | None = None,
                   mlflow: bool = True) -> tuple[Path, str | None]:
    """``write_report``, then the answer put on the study's MLflow parent run (``mlflow``);
    (the markdown file, the parent run id). What ``python -m study.report`` does;
    ``python -m study.run`` takes the two steps apart at the end of a run (a report that
    could not be sent to MLflow is only a warning there)."""
    path, state = write_report(spec, results)
    run = log_to_mlflow(spec, results, state, tracking_uri) if mlflow else None
    return path, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.report", description=__doc__.split("\n")[0])
    p.add_argument("name", help="study name (search_spaces/NAME.yaml)")
    p.add_argument("--results", default=None,
                   help="results folder (default $HVAE_RESULTS_DIR/NAME, else results/NAME)")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: the study's own)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    from study.core.environment import configure_process

    configure_process()
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.name)
        results = resolve_results(args.results or default_folder(spec.name))
        path, run = publish_report(spec, results, args.tracking_uri, not args.no_mlflow)
    except UserError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a folder that became unwritable
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: the report could not be written{where}: {err.strerror or err}; the "
              "previous report, if any, is as it was", file=sys.stderr)
        return 1
    print(f"report: {path}" + (f"  (logged to MLflow parent run {run})" if run else ""))
    return 0

