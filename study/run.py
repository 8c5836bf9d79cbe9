"""``python -m study.run NAME``: run a named study (search_spaces/NAME.yaml) end to end.

Ray Tune launches the trials (a local Ray with this machine's CPUs, or ``--address auto`` for
a running cluster), Optuna samples and prunes them, every trial lands in MLflow (a parent run
per invocation, a child run per trial) and in Parquet under ``results/NAME/``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from typing import TYPE_CHECKING

from study.core.errors import UserError
from study.engine.interrupt import Interruption
from study.spec.limits import MAX_GRID, MAX_SEEDS, MAX_TRIALS, MAX_WIDTH, Limits

if TYPE_CHECKING:
    from study.spec.resolved import ResolvedStudy


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("name", nargs="?", help="study name (a file in search_spaces/) or a YAML path")
    p.add_argument("--list", action="store_true", help="list the studies and their questions "
                   "(with -v: what each budget runs)")
    p.add_argument("-v", "--verbose", action="store_true", help="with --list: the budgets too")
    p.add_argument("--dry-run", action="store_true",
                   help="print every trial, the total epochs and an estimate of the time on this "
                        "machine; run and write nothing")
    p.add_argument("--budget", default="default", choices=["smoke", "default", "full"])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                   help="Ray cluster address ('auto' for a running one; default $RAY_ADDRESS, "
                        "else a new local Ray, never one that happens to run on this machine)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)")
    p.add_argument("--results", default=None,
                   help="results folder (default $HVAE_RESULTS_DIR/NAME, else results/NAME)")
    p.add_argument("--storage", default=None, metavar="URI",
                   help="shared storage for checkpoints and a copy of the results, e.g. "
                        "s3://bucket/hvae-study (default $HVAE_STORAGE; needed on a multi-node cluster)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results of this study")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as resources allow)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="GPU fraction per trial (overrides the spec)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    p.add_argument("--data-dir", default=None,
                   help="folder with mnist/ and fashion_mnist/ (default $HVAE_DATA_DIR, else ./data)")
    p.add_argument("--mlflow-grace", type=float, default=300.0, metavar="SECONDS",
                   help="at the end, how long to wait for MLflow writes held back by an outage")
    _size_caps(p)
    p.add_argument("--new-parent", action="store_true",
                   help="with --resume: when the study's MLflow parent run cannot be found, "
                        "continue under a new one (the recorded trials are logged to it again)")
    p.add_argument("--confirmatory", action="store_true",
                   help="run the study file's confirmatory seeds (field confirmatory_seeds: "
                        "seeds no recipe was developed on); the report marks its verdicts "
                        "confirmatory, all others exploratory")
    p.add_argument("--until-decided", action="store_true",
                   help="after the study, add seeds in rounds to the configurations of claims "
                        "still inconclusive until each is decided or --max-seeds is reached "
                        "(a group-sequential design: docs/ARCHITECTURE.md)")
    p.add_argument("--max-seeds", type=int, default=None, metavar="N",
                   help="the most seeds a configuration may get: a study file asking for more "
                        f"is refused (default {MAX_SEEDS:,}); with --until-decided, required: "
                        "where adding seeds stops")
    p.add_argument("--seed-step", type=int, default=None, metavar="N",
                   help="with --until-decided: seeds added per round (default: the study's seeds)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--no-report", action="store_true", help="no report at the end (nor the "
                   "answer on the MLflow parent run); python -m study.report makes it later")
    p.add_argument("--no-plots", action="store_true", help="no per-trial figures (plots/ and "
                   "the child runs' images): about 2 s less per trial; the report's figures, "
                   "made from the Parquet tables, are unaffected")
    p.add_argument("--pack", choices=("on", "off"), default="off",
                   help="on: the trials of one shape train as one ensemble in a pack server per "
                   "trial's worth of CPUs (each trial keeps its own records); off: one trial per "
                   "process (default)")
    return p


def _size_caps(p: argparse.ArgumentParser) -> None:
    """The flags that raise the size caps checked before anything runs (study.spec.limits)."""
    p.add_argument("--max-grid", type=int, default=MAX_GRID, metavar="N",
                   help="refuse a grid of more than N configurations")
    p.add_argument("--max-trials", type=int, default=MAX_TRIALS, metavar="N",
                   help="refuse a budget of more than N trials")
    p.add_argument("--max-width", type=int, default=MAX_WIDTH, metavar="N",
                   help="refuse a hidden or latent layer of more than N units")
    p.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                   help="refuse a trial estimated to need more than GIB GiB (default: this "
                        "machine's memory)")


def list_studies(verbose: bool = False) -> str:
    from study.spec.plan import budgets_text
    from study.spec.spec_file import available, load_spec

    lines = []
    for name in available():
        try:
            spec = load_spec(name)
            question = " ".join(spec.question.split())
        except UserError as err:
            spec, question = None, f"(invalid: {err})"
        lines.append(f"{name:<20} {question}")
        if verbose and spec is not None:
            lines.append(budgets_text(spec))
    return "\n".join(lines)


def summary(results) -> str:
    """One line per trial, sorted by its factors: status, epochs and the mean over seeds of the
    test log-likelihood, its gap to the exact density and the last validation bound."""
    import pandas as pd

    from study.report.tables import metric_label, show
    from study.store.columns import factor_columns, factor_name
    from study.store.results import read_trials

    trials = read_trials(results)
    if not len(trials):
        return "no trials recorded"
    factors = factor_columns(trials)
    metrics = [c for c in ("test_ll", "ll_gap", "last_val_bound") if c in trials.columns]
    head = [factor_name(c) for c in factors] + ["status", "epochs"] + \
        [metric_label(m, trials) for m in metrics] + ["trial"]
    rows = []
    for tid, g in trials.groupby("trial_id", sort=False):
        means = []
        for m in metrics:
            v = pd.to_numeric(g[m], errors="coerce").dropna()
            means.append(f"{v.mean():.4f}" if len(v) else "-")
        rows.append([show(g[c].iloc[0]) for c in factors] +
                    [str(g["trial_status"].iloc[0]), str(g["epochs"].iloc[0])] + means + [tid])
    rows.sort(key=lambda r: [_sortable(v) for v in r[: len(factors)]])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _sortable(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def check_flags(args: argparse.Namespace) -> None:
    """Numeric flags out of range: one line naming the flag and its value."""
    limits = [("--max-concurrent", args.max_concurrent, 1), ("--num-cpus", args.num_cpus, 1),
              ("--gpus-per-trial", args.gpus_per_trial, 0), ("--mlflow-grace", args.mlflow_grace, 0),
              ("--max-grid", args.max_grid, 1), ("--max-seeds", args.max_seeds, 1),
              ("--seed-step", args.seed_step, 1), ("--max-trials", args.max_trials, 1),
              ("--max-width", args.max_width, 1), ("--max-memory", args.max_memory, 0.001)]
    if args.seed_step is not None and not args.until_decided:
        raise UserError("--seed-step: it goes with --until-decided")
    if args.new_parent and not args.resume:
        raise UserError("--new-parent: it goes with --resume (a new study always gets a new "
                        "parent run)")
    for flag, value, low in limits:
        if value is None:
            continue
        if not math.isfinite(value):
            raise UserError(f"{flag} {value}: must be a finite number")
        if value < low:
            raise UserError(f"{flag} {value}: must be at least {low}")


def _command(args: argparse.Namespace) -> str:
    """The command that continues this study (its ``study.json`` names the stores)."""
    return f"python -m study.run {args.name} --resume" + (
        f" --results {args.results}" if args.results else "") + (
        f" --budget {args.budget}" if args.budget != "default" else "")


def _again(argv: list[str] | None) -> str:
    """The command as it was given (passwords masked), for a study interrupted before it
    recorded anything: running it again starts the study."""
    import shlex

    from study.core.redact import redact

    return redact("python -m study.run " + shlex.join(sys.argv[1:] if argv is None else argv))


def limits(args: argparse.Namespace) -> Limits:
    """The size caps of this invocation (``study.spec.limits``)."""
    return Limits(grid=args.max_grid, trials=args.max_trials,
                  seeds=args.max_seeds if args.max_seeds is not None else MAX_SEEDS,
                  width=args.max_width, memory_gib=args.max_memory)


def _started(args: argparse.Namespace, spec) -> bool:
    """Whether the study recorded its state (so that ``--resume`` can continue it)."""
    from study.store.folder import StudyFolder
    from study.store.results import default_folder

    try:
        folder = StudyFolder(args.results or default_folder(spec.name), spec.name)
        state = folder.read_state()
    except UserError:
        return False
    return state is not None and state.resolved is not None


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C and SIGTERM are handled from the first moment (an interrupted start-up exits 130
    # or 143 with one line, like an interrupted study)
    with Interruption() as interruption:
        try:
            return _main(argv, interruption)
        finally:
            _stop_ray_quietly()
            interruption.ignore_to_the_end()  # the process exits next (exit_now)


def _stop_ray_quietly() -> None:
    """Shut Ray down before the interpreter's own exit does it, with SIGINT/SIGTERM ignored:
    a late signal must not interrupt the shutdown (a crash) once the study has ended."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        from study.engine.launch import stop_ray

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_ray()  # Ray's shutdown would put SIGTERM back to the default


def run_options(args: argparse.Namespace, caps: Limits) -> dict:
    """The ``study.engine.options.RunOptions`` fields the flags give."""
    return dict(address=args.address, tracking_uri=args.tracking_uri, resume=args.resume,
                overwrite=args.overwrite, max_concurrent=args.max_concurrent,
                gpus_per_trial=args.gpus_per_trial, num_cpus=args.num_cpus, quiet=args.quiet,
                mlflow_grace_s=args.mlflow_grace, storage=args.storage,
                until_decided=args.until_decided, max_seeds=args.max_seeds,
                seed_step=args.seed_step, new_parent=args.new_parent,
                max_memory_gib=caps.memory, plots=not args.no_plots, pack=args.pack)


def _dry_run(args: argparse.Namespace, caps: Limits, study: ResolvedStudy) -> int:
    """``--dry-run``: every trial and its estimated time, then each claim's test and the seeds
    it needs (a claim the budget's seeds cannot decide is refused after the table)."""
    from study.engine.options import RunOptions
    from study.engine.until_decided import sequential_design
    from study.judge.decidable import check_decidable, decidability_text
    from study.spec.limits import check_memory
    from study.spec.plan import dry_run, packs_text

    check_memory(study, caps)  # before any model is built to time it
    design = sequential_design(study, RunOptions(**run_options(args, caps)), None)
    local_cpus = args.address is None and not (args.gpus_per_trial or study.spec.resources.gpus)
    print(dry_run(study, args.num_cpus, args.max_concurrent, shared_cpus=local_cpus))
    if args.pack == "on":
        print(packs_text(study, args.num_cpus))
    claims = decidability_text(study, design)
    if claims:
        print(claims)
    check_decidable(study, design)
    return 0


def _main(argv: list[str] | None, interruption: Interruption) -> int:
    """Exit status: 0 every trial of the study is recorded (finished, pruned or diverged);
    1 a trial failed, trials are missing, or the study stopped on an error (a full disk);
    2 bad input (nothing was run or written); 130 / 143 interrupted by SIGINT / SIGTERM."""
    from study.core.redact import redact

    args = parser().parse_args(argv)
    try:
        from study.core.environment import configure_process

        configure_process()
        if args.list:
            print(list_studies(args.verbose))
            return 0
        if not args.name:
            parser().print_usage(sys.stderr)
            print("error: name a study (python -m study.run --list shows them)", file=sys.stderr)
            return 2
        check_flags(args)
        from study.engine.launch import run_study
        from study.spec.spec_file import load_spec

        caps = limits(args)
        spec = load_spec(args.name, caps)
        if args.confirmatory:
            spec = spec.confirmatory()
        if args.data_dir:  # local Ray workers inherit the driver's environment
            os.environ["HVAE_DATA_DIR"] = os.path.abspath(args.data_dir)
        from study.spec.plan import describe, pack_notes
        from study.spec.resolved import ResolvedStudy

        study = ResolvedStudy(spec, args.budget)
        if args.dry_run:
            return _dry_run(args, caps, study)
        interruption.abort_line = ("interrupted while the study started (this run recorded "
                                   f"nothing); run it again with: {_again(argv)}")
        print(describe(study, args.num_cpus, args.max_concurrent), flush=True)
        for note in pack_notes(study, args.num_cpus) if args.pack == "on" else []:
            print(f"packs: {note}", flush=True)
        print(f"question: {' '.join(spec.question.split())}", flush=True)
        out = run_study(spec, args.budget, args.results, interruption=interruption,
                        **run_options(args, caps))
    except UserError as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a signal outside the trials' loop (starting, or ending)
        if "spec" in locals() and _started(args, spec):
            print(f"interrupted: continue with: {_command(args)}", file=sys.stderr)
        else:
            print("interrupted before the study recorded anything; start it again with: "
                  f"{_again(argv)}", file=sys.stderr)
        return interruption.exit_status
    interruption.settle()  # the study's records are closed: its summary is printed whole
    return _report_end(args, spec, out)


def _report_end(args: argparse.Namespace, spec, out) -> int:
    """Print how a run ended (the summary table and where everything is, or why it stopped
    and the command that continues it); its exit status."""
    from study.core.redact import redact

    resume = _command(args)
    if out.interrupted:
        print(f"interrupted: {out.recorded} of {out.total} trials finished; continue with: "
              f"{resume}", file=sys.stderr)
        return out.exit_status
    print()
    print(summary(out.results))
    c = out.counts
    print(f"\n{c.get('finished', 0)} finished, {c.get('diverged', 0)} diverged, "
          f"{c.get('pruned', 0)} pruned, {c.get('failed', 0)} failed of {out.total} trials")
    report, failed = _publish(args, spec, out) if out.exit_status == 0 and not args.no_report \
        else (None, None)
    print(where_things_are(args, spec, out, report))
    if out.mlflow_losses:
        trials = len({x["trial_id"] for x in out.mlflow_losses if x["what"] != "end-parent"})
        print(f"warning: {len(out.mlflow_losses)} MLflow writes ({trials} trials) were not "
              f"recorded by {redact(out.tracking_uri)} (listed in {out.results}/mlflow_unsent.json); "
              "Parquet has every result", file=sys.stderr)
    if out.error:
        print(f"error: {out.error} continue with: {resume}", file=sys.stderr)
    elif out.missing:
        print(f"error: {out.missing} of {out.total} trials are not recorded; continue with: "
              f"{resume}", file=sys.stderr)
    elif c.get("failed"):
        print(f"error: {c['failed']} of {out.total} trials failed (status 'failed' in "
              "trials.parquet; their errors are in the Ray folder's error.txt files)",
              file=sys.stderr)
    elif failed:
        print(f"error: every trial is recorded, but {failed}; make it with: "
              f"{_report_command(args, spec, out)}", file=sys.stderr)
        return 1
    return out.exit_status


def _report_command(args: argparse.Namespace, spec, out) -> str:
    """The command that makes the report again: the study as it was named (a name or a
    study file's path), and the results folder when one was given."""
    return f"python -m study.report {args.name}" + (f" --results {out.results}"
                                                    if args.results else "")


def _publish(args: argparse.Namespace, spec, out) -> tuple[object, str | None]:
    """The report of a run that recorded every trial, written and its answer put on the
    MLflow parent run (``study.report.build``); (its path or None, why it could not be made or
    None). A report written but not sent to MLflow is a warning line, as any MLflow write an
    outage loses; every failure is one redacted line: the run's records are whole whatever
    happens here."""
    from study.core.redact import redact
    from study.report.build import log_to_mlflow, write_report

    path = None
    try:
        path, state = write_report(spec, out.results)
        log_to_mlflow(spec, out.results, state, out.tracking_uri)
        return path, None
    except KeyboardInterrupt:
        why = "interrupted"
    except OSError as err:
        why = f"{err.filename or ''} {err.strerror or err}".strip()
    except Exception as err:  # noqa: BLE001 - UserError, MLflow's, any: one line, no traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        why = redact(first)[:300]
    if path is not None:  # like any MLflow write an outage loses: a warning, the run is whole
        print(f"warning: the answer is not on the MLflow parent run ({why}); the report is "
              f"written; put it there later with: {_report_command(args, spec, out)}",
              file=sys.stderr)
        return path, None
    return None, f"the report could not be made ({why})"


def where_things_are(args: argparse.Namespace, spec, out, report=None) -> str:
    """The four lines that say where a finished run's results, MLflow runs, report and Optuna
    study are, each as a command that opens it (the report's file once it is written)."""
    from study.core.redact import redact
    from study.store.tracking import server_url

    tracking = redact(out.tracking_uri)
    if out.tracking_uri.startswith(("http://", "https://")):  # the server, without secrets
        ui, base = "", server_url(out.tracking_uri)
    elif out.tracking_uri == "sqlite:///mlflow.db":
        ui, base = "mlflow ui, then ", "http://127.0.0.1:5000"
    else:
        ui, base = f"mlflow ui --backend-store-uri {tracking}, then ", "http://127.0.0.1:5000"
    # the runs' own pages: a fresh browser's MLflow 3 opens an experiment on its GenAI view
    page = f"{base}/#/experiments/{out.experiment_id}/runs"
    mlflow = (f"{ui}{page}/{out.parent_run_id}  (the answer: Overview, Description; every "
              f"run of experiment '{spec.name}': {page})" if out.experiment_id else
              f"{ui}{base}  (experiment '{spec.name}', parent run {out.parent_run_id})")
    return "\n".join([
        f"results:  {out.results}  (trials.parquet, epochs.parquet/, scores.parquet/)",
        f"MLflow:   {mlflow}",
        (f"report:   {report}  (and on the MLflow parent run: its description, Artifacts "
         "report/report.html)" if report else f"report:   {_report_command(args, spec, out)}"),
        f"optuna:   optuna-dashboard sqlite:///{out.results}/optuna.db"])


def exit_now(status: int) -> None:
    """End the process with ``status`` once its output is flushed, without the interpreter's
    finalisation: Ray's C++ core worker, torn down at exit after an interrupted start,
    sometimes crashed it (SIGSEGV, exit 139 instead of 130; found by tests/chaos.py). Ray has
    been shut down and every record closed by then; its node processes die with this one."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
