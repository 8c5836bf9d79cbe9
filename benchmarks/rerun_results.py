"""Re-run studies at a budget and publish their reports under docs/results/ (never edited by hand).

Run: ``python benchmarks/rerun_results.py [NAME ...] [--budget default] [--confirmatory]
[--until-decided NAME:N ...]``
(all studies by default; up to 15 minutes each on 2 CPUs). For each study, in a fresh process
as the README says: ``python -m study.run NAME --budget B`` into ``--work DIR/NAME`` (kept, so
the Parquet tables can be read again), then ``python -m study.report NAME``; the report and its
figures are copied to ``docs/results/NAME/`` with a header giving the command, the date, the
wall time, the exit status and the code's commit. Each published
page also gets its entry of the index (``summary.md``: its question, its run, every claim's
verdict with its effect and interval, its gate values and what would change the answer, and how
well the models learned the data), and ``docs/results/README.md`` is rewritten at the end from
every published page's entry and ``verdicts.json`` (``--index`` alone rewrites only it), so a
study re-run alone keeps the others in the index.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOCS = REPO / "docs" / "results"
SUMMARY = "summary.md"  # a published study's entry in docs/results/README.md, beside its page


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True)
    # the reports this script publishes are not code: they do not make the tree dirty
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)docs/results"], cwd=REPO, capture_output=True,
                           text=True).stdout.split()[1::2]
    return out.stdout.strip() + (f" (with uncommitted changes to {', '.join(dirty)})"
                                 if dirty else "")


def code_text(record: dict) -> str:
    """The code a run used: its commit when it started, and the tree's when it ended if that
    differs (a Ray worker imports the code on disk when its trial starts)."""
    end = record.get("commit_at_end", record["commit"])
    return record["commit"] + ("" if end == record["commit"] else
                               f" (the tree changed while it ran: {end} at its end)")


def run_one(name: str, budget: str, work: Path, extra: list[str], env: dict[str, str]) -> dict:
    results = work / name
    if results.exists():
        shutil.rmtree(results)
    # a failed run leaves no record, so --report-again cannot publish it under an older one's
    (work / f"{name}.json").unlink(missing_ok=True)
    cmd = ["python", "-m", "study.run", name, "--budget", budget, *extra]
    code = commit()  # the code the run starts with (the tree may change while it runs)
    started = datetime.now(timezone.utc)
    start = time.perf_counter()
    # the report is made by its own step below (the run's wall time is the study's alone)
    done = subprocess.run([sys.executable, *cmd[1:], "--results", str(results), "--quiet",
                           "--no-report",
                           "--tracking-uri", f"sqlite:///{work}/mlflow.db"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (work / f"{name}.log").write_text(done.stdout + done.stderr)
    record = {"study": name, "command": " ".join(cmd) + f" && python -m study.report {name}",
              "date": started.strftime("%Y-%m-%d %H:%M UTC"), "wall_s": round(wall, 1),
              "exit": done.returncode, "commit": code, "commit_at_end": commit()}
    return report(work, record, env)


def report(work: Path, record: dict, env: dict[str, str], again: bool = False) -> dict:
    """Run ``study.report`` on the kept results of ``record``'s study and publish it;
    ``again`` (``--report-again``): the record also says at which commit the report was made."""
    name = record["study"]
    done = subprocess.run([sys.executable, "-m", "study.report", name, "--results",
                           str(work / name), "--no-mlflow"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    record = {k: v for k, v in record.items() if k != "report_commit"}
    record |= {"report_exit": done.returncode} | ({"report_commit": commit()} if again else {})
    if done.returncode == 0 and record["exit"] == 0:  # a stopped run's report is not an answer
        publish(work / name, record)
        (work / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


def publish(results: Path, record: dict) -> None:
    target = DOCS / record["study"]
    target.parent.mkdir(parents=True, exist_ok=True)
    entry = summary(results, record)  # before the old page goes: a failure leaves it whole
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(results / "report", target)
    body = (target / "report.md").read_text()
    (target / "report.md").unlink()
    minutes, seconds = divmod(int(record["wall_s"]), 60)
    header = ("<!-- generated by benchmarks/rerun_results.py and study.report; numbers "
              "unedited -->\n"
              f"Command: `{record['command']}` (run {record['date']} on this 2-core CPU machine, "
              f"{minutes} min {seconds} s wall for the study, exit {record['exit']}; code at "
              f"commit {code_text(record)}"
              + (f"; report made again from the kept results at commit {record['report_commit']}"
                 if record.get("report_commit", record["commit"]) != record["commit"] else "")
              + ").\n\n")
    (target / "README.md").write_text(header + body)
    (target / SUMMARY).write_text(entry)


def summary(results: Path, record: dict) -> str:
    """A published study's entry in the index (``SUMMARY`` in its page's folder), from its kept
    results: its question, run, counts, every claim's verdict with effect, gate values and what
    would change it, and how well its models fit."""
    from study.judge.sequential import judge_study
    from study.judge.verdicts import gate_checks
    from study.report.build import evidence_kind
    from study.report.tables import fit_legend, fit_table, markdown, verdict_counts
    from study.spec.spec_file import load_spec
    from study.store.folder import STATE, read_state
    from study.store.results import read_scores, read_trials

    name = record["study"]
    spec = load_spec(name)
    state = read_state(results / STATE)
    if state is not None and state.confirmatory and spec.confirmatory_seeds is not None:
        spec = spec.confirmatory()
    trials, scores = read_trials(results), read_scores(results)
    verdicts, _, _ = judge_study(spec.claims, trials, state.sequential if state else None,
                                 spec.gates, spec.alpha, scores)
    kind = evidence_kind(spec, trials)
    minutes, seconds = divmod(int(record["wall_s"]), 60)
    body = [f"## [{name}]({name}/README.md)", "",
            f"**Question.** {' '.join(spec.question.split())}", "",
            f"`{record['command']}`: {record['date']}, {minutes} min {seconds} s, exit "
            f"{record['exit']}, commit {code_text(record)}.", ""]
    if verdicts:
        body += [f"**{verdict_counts(verdicts)}** (*{kind}*)", "",
                 "| # | claim | test | verdict | effect [CI] | seeds | p (Holm) | gate "
                 "| would change it |", "|---:|---|---|---|---|---|---|---|---|"]
    for i, v in enumerate(verdicts, 1):
        row = v.row()
        checks = gate_checks(v.claim, spec.gates.merged(v.claim.gate), trials)
        gate = "; ".join(str(c) for c in checks) or "none declared"
        body.append(f"| {i} | {row['statement']} | {row['test']} | {row['verdict']} | "
                    f"{row['effect [CI]']} | {row['seeds']} | {row['p (Holm)']} | "
                    f"{gate} | {row['would change it']} |")
    fit = fit_table(trials)
    legend = fit_legend(fit)
    if legend:
        body += ["", "How well the models learned the data (mean over seeds ± 95% "
                 f"half-width; {legend}):", "", markdown(fit)]
    return "\n".join(body) + "\n\n"


def index(docs: Path) -> str:
    """docs/results/README.md from the published pages alone: the verdicts counted over every
    published study (its ``verdicts.json``), then each study's entry (``SUMMARY``), so that
    re-running one study keeps the others in the index."""
    from study.report.tables import verdict_counts

    every, body, unindexed = [], [], []
    for folder in sorted(d for d in docs.iterdir() if d.is_dir()):
        if not (folder / SUMMARY).exists():
            unindexed.append(folder.name)
            continue
        verdicts = folder / "verdicts.json"
        words = [v["verdict"] for v in json.loads(verdicts.read_text())] \
            if verdicts.exists() else []
        entry = (folder / SUMMARY).read_text()
        # the entry judges the kept results again: it must count what the report decided
        if (f"**{verdict_counts(words)}**" in entry) != bool(words):
            raise SystemExit(f"{folder}: {SUMMARY} and verdicts.json disagree (verdicts.json: "
                             f"{verdict_counts(words) if words else 'no claims'}); publish the "
                             "study again")
        every += words
        body.append(entry)
    head = ["<!-- generated by `python benchmarks/rerun_results.py`; numbers unedited -->",
            f"# The experiment log's questions: {verdict_counts(every)}", "",
            "Each study below was re-run from a clean results folder with the command shown, "
            "on this 2-core CPU machine; its full report (verdicts, gates seed by seed, fit "
            "tables, figures, protocol) is docs/results/STUDY/README.md. Per claim (the log's "
            "statement, as the study file words it): the verdict (*supported*, *not supported*, "
            "*equivalent*, *inconclusive*, or *untestable* when a model missed the claim's gate "
            "in some seed), marked *confirmatory* (seeds no recipe was developed on) or "
            "*exploratory*; the effect (a comparison: the mean per-seed difference; a threshold "
            "claim: the median seed's value minus the threshold) with its interval at the level "
            "the test ran at, and its p-value Holm-adjusted across the study's claims (the "
            "verdict uses the adjusted one); the gate, each bound with the seeds that pass it; "
            "and what would change the answer.", ""]
    if unindexed:
        head += [f"Not re-run with the rest (their pages show an earlier run, with the command, "
                 f"date and commit in each page's first line): {', '.join(unindexed)}.", ""]
    return "\n".join(head) + "\n" + "".join(body)


def main() -> None:
    global DOCS
    from study.spec.spec_file import available

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="studies (default: all)")
    p.add_argument("--budget", default="default")
    p.add_argument("--work", default="/tmp/hvae-results", help="where the runs' results stay")
    p.add_argument("--until-decided", action="append", default=[], metavar="NAME:MAX_SEEDS",
                   help="run NAME with --until-decided --max-seeds MAX_SEEDS")
    p.add_argument("--confirmatory", action="store_true",
                   help="run each study on its confirmatory seeds (study.run --confirmatory)")
    p.add_argument("--index", action="store_true",
                   help="only rewrite docs/results/README.md from the published pages")
    p.add_argument("--report-again", action="store_true",
                   help="only make the named studies' reports again from the kept results "
                        "(with today's report code) and publish them")
    p.add_argument("--docs", default=str(REPO / "docs" / "results"),
                   help="where the reports go (default docs/results)")
    args = p.parse_args()
    DOCS = Path(args.docs)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("HVAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    if args.report_again:
        for name in args.names or available():
            record = json.loads((work / f"{name}.json").read_text())
            print(json.dumps(report(work, record, env, again=True)), flush=True)
    elif not args.index:
        sequential = dict(s.split(":") for s in args.until_decided)
        for name in args.names or available():
            extra = ["--until-decided", "--max-seeds", sequential[name]] \
                if name in sequential else []
            extra += ["--confirmatory"] if args.confirmatory else []
            record = run_one(name, args.budget, work, extra, env)
            print(json.dumps(record), flush=True)
    (DOCS / "README.md").write_text(index(DOCS))


if __name__ == "__main__":
    main()
