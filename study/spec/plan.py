"""What a study will run: its trials, and how long they take on this machine.

``describe`` is the first line a study prints; ``dry_run`` is ``--dry-run``: every trial
(configuration, seeds, epochs, data sizes) and the estimated time, from the cost model
(``study.spec.cost``: steps of each training phase, sample-passes of validation and evaluation,
early stopping's expected epochs) at rates measured here by timing a few training steps of
each distinct model at each ensemble width and one no-grad likelihood pass. Each rate is timed
once per process (``RATES``): configurations that share a model's shapes, and later dry runs in
the same process, reuse it. Nothing is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property

from study.spec import cost
from study.spec.config import TrialConfig
from study.spec.resolved import ResolvedStudy
from study.spec.study_spec import StudySpec


@dataclass
class PlannedTrial:
    label: str
    cfg: TrialConfig
    count: int  # trials of this grid cell (sampled factors: num_samples)

    @cached_property
    def work(self) -> cost.TrialWork:
        return cost.trial_work(self.cfg)


def planned_trials(study: ResolvedStudy) -> list[PlannedTrial]:
    spec, per_cell = study.spec, study.samples_per_cell
    out = []
    for cell in study.cells:
        label = ", ".join(f"{k}={v}" for k, v in cell.items()) or "the configuration"
        if spec.sampled_factors:
            label += " (" + ", ".join(f"{k} ~ {f.kind}{list(getattr(f, f.kind))}"
                                      for k, f in spec.sampled_factors.items()) + ")"
        out.append(PlannedTrial(label, study.config(cell), per_cell))
    return out


def slots(spec: StudySpec, num_cpus: int | None, max_concurrent: int | None) -> int:
    cpus = num_cpus or os.cpu_count() or 1
    n = max(1, int(cpus // max(spec.resources.cpus, 1e-9)))
    return min(n, max_concurrent) if max_concurrent else n


def describe(study: ResolvedStudy, num_cpus: int | None = None,
             max_concurrent: int | None = None) -> str:
    """The one line a study prints when it starts."""
    spec, plan = study.spec, planned_trials(study)
    trials = sum(p.count for p in plan)
    seeds = sorted({len(p.cfg.seeds) for p in plan})
    epochs = sorted({p.cfg.epochs for p in plan})
    res = f"{spec.resources.cpus:g} CPU" + (f", {spec.resources.gpus:g} GPU" if spec.resources.gpus else "")
    return (f"study {spec.name} ({study.budget}): {trials} trials ({len(plan)} configurations"
            + (f" x {plan[0].count} sampled" if plan and plan[0].count > 1 else "")
            + f"), {'/'.join(map(str, seeds))} seeds each, {'/'.join(map(str, epochs))} epochs; "
            f"{res} per trial, up to {slots(spec, num_cpus, max_concurrent)} at a time")


#: a call of at least this many seconds is timed in 2 blocks after one untimed call: its
#: noise is a small part of it (an MNIST study's likelihood pass takes 2-3 s here, and 7 calls
#: of it were 19 of a 26 s dry run)
LONG_CALL_S = 0.5


def _timed(fn, blocks: int = 5, least_s: float = 0.06) -> float:
    """Seconds of one call of ``fn``: after two untimed calls, the fastest of ``blocks`` blocks
    of calls of at least ``least_s`` each (the least disturbed by the rest of the machine, as
    ``timeit`` advises); after one untimed call, the faster of 2, when that call took
    ``LONG_CALL_S`` or more."""
    start = time.perf_counter()
    fn()
    if time.perf_counter() - start >= LONG_CALL_S:
        blocks = min(blocks, 2)
    else:
        fn()
    best = float("inf")
    for _ in range(blocks):
        calls, start = 0, time.perf_counter()
        while calls < 1 or time.perf_counter() - start < least_s:
            fn()
            calls += 1
        best = min(best, (time.perf_counter() - start) / calls)
    return best


#: every rate this process has timed, by what it depends on (model shapes, ensemble width, batch,
#: importance samples, KL; a curve and its noise): timed once, reused by every later dry run here
RATES: dict = {}


def measured_rates(cfg: TrialConfig, cache: dict) -> cost.Rates:
    """``cfg``'s rates on this machine (one thread, as a trial has): a training step timed at
    each ensemble width its phases use, a forward sample-pass timed in a no-grad likelihood
    pass, one point's exact density of a noisy curve; the fixed costs are the cost model's."""
    import torch

    from models import build_model, estimate_log_likelihood, training_objective

    torch.set_num_threads(1)
    arch = cfg.architecture()

    def step_s(members: int) -> float:
        key = ("step", arch, members, cfg.batch_size, cfg.iw_samples, cfg.kl)
        if key not in cache:
            model = build_model(arch, range(members))
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
            x = torch.rand(members, cfg.batch_size, arch.x_dim)
            x = torch.bernoulli(x) if cfg.is_image else x

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                training_objective(model, x, cfg.iw_samples, cfg.kl).loss.backward()
                opt.step()

            cache[key] = _timed(step)
        return cache[key]

    key = ("pass", arch, len(cfg.seeds))
    if key not in cache:
        E, points, k = len(cfg.seeds), 200, 20
        model = build_model(arch, cfg.seeds)
        x = torch.rand(E, points, arch.x_dim)
        with torch.no_grad():
            cache[key] = _timed(lambda: estimate_log_likelihood(model, x, k)) / (E * points * k)
    return cost.Rates(step_s, cache[key], cost.TRIAL_S, cost.STUDY_S,
                      _reference_s(cfg, cache) if cost.reference_points(cfg) else cost.REFERENCE_S)


def _reference_s(cfg: TrialConfig, cache: dict, points: int = 256) -> float:
    """Seconds of one point's exact density of ``cfg``'s noisy curve (fresh points each call:
    the densities are cached by their points)."""
    import numpy as np

    from study.data import CURVES
    from study.data.exact_density import exact_log_density

    key = ("reference", cfg.dataset, cfg.noise)
    if key not in cache:
        curve, rng = CURVES[cfg.dataset], np.random.default_rng(0)
        cache[key] = _timed(lambda: exact_log_density(
            curve.sample(points, cfg.noise, rng)[0], curve, cfg.noise)) / points
    return cache[key]


def dry_run(study: ResolvedStudy, num_cpus: int | None = None,
            max_concurrent: int | None = None, shared_cpus: bool = True) -> str:
    """Every trial and the estimated time (see the module docstring); ``shared_cpus``: the
    trials share this machine's CPUs (a local CPU run), so each runs ``SHARED_SLOWDOWN`` slower
    beside the others than timed alone."""
    spec, plan = study.spec, planned_trials(study)
    lines = [describe(study, num_cpus, max_concurrent), "",
             f"{'trials':>6}{'seeds':>6}{'epochs':>7}{'train':>8}{'val':>6}{'test':>6}{'IW':>4}"
             f"{'est. min':>9}  configuration"]
    each: list[float] = []
    for p in plan:
        work = p.work
        seconds = cost.seconds(work, measured_rates(p.cfg, RATES))
        each += [seconds] * p.count
        cfg = p.cfg
        lines.append(f"{p.count:>6}{len(cfg.seeds):>6}{work.epochs_text:>7}"
                     f"{cfg.n_train or 'all':>8}"
                     f"{cfg.n_val:>6}{cfg.n_test or 'all':>6}{cfg.iw_samples:>4}"
                     f"{seconds / 60:>9.1f}  {p.label}")
    n_slots = slots(spec, num_cpus, max_concurrent)
    shared = cost.SHARED_SLOWDOWN if shared_cpus else 1.0
    wall = cost.makespan(each, n_slots, cost.STUDY_S, shared)
    trials = sum(p.count for p in plan)
    planned = sum(p.cfg.epochs * p.count for p in plan)
    notes = ["trial time from the cost model at rates timed here (study.spec.cost), +-25%"]
    if n_slots > 1 and shared_cpus:
        notes.append(f"trials {cost.SHARED_SLOWDOWN:.2f}x slower beside each other than alone")
    if any(p.work.expected for p in plan):
        notes.append(f"~: early stopping's expected epochs ({cost.EARLY_STOP_FRACTION:.0%} of "
                     f"the budget's until a trial's last seed stops, {cost.SEED_STOP_FRACTION:.0%}"
                     " per seed, as in the published runs)")
    if spec.pruner.name != "none":
        notes.append("an upper bound: pruning ends trials sooner")
    lines += ["", f"{trials} trials, {planned:,} epochs planned; estimated {wall / 60:.1f} "
                  f"minutes on this machine ({n_slots} at a time; " + "; ".join(notes) + ")",
              "nothing was run or written (--dry-run)"]
    return "\n".join(lines)


def packs_text(study: ResolvedStudy, num_cpus: int | None = None) -> str:
    """``--dry-run --pack on``: the packs the trials would form (``study.spec.packs``): the
    configurations of one shape, at most ``TRIALS_PER_SERVER`` of them and ``KNEE_MEMBERS``
    members per pack, over one pack server per trial's worth of CPUs. Sampled configurations
    are known only when Optuna samples them: each joins a pack of its shape then."""
    from study.spec.packs import KNEE_MEMBERS, TRIALS_PER_SERVER, plan_packs

    spec, plan = study.spec, planned_trials(study)
    cfgs = [p.cfg for p in plan for _ in range(p.count)]
    labels = [p.label for p in plan for _ in range(p.count)]
    servers = slots(spec, num_cpus, None)
    packs = plan_packs(cfgs, KNEE_MEMBERS, min_packs=servers, max_configs=TRIALS_PER_SERVER)
    lines = [f"packs (--pack on): {len(packs)} packs of configurations that share every shape "
             f"(at most {TRIALS_PER_SERVER} configurations and {KNEE_MEMBERS} members each), "
             f"trained by {servers} pack server{'s' if servers > 1 else ''} (one per "
             f"{spec.resources.cpus:g} CPU); each configuration keeps its own trial, records "
             "and checkpoints; the time estimate above is for --pack off"]
    lines += [f"  {note}" for note in pack_notes(study, num_cpus)]
    for i, pack in enumerate(packs, 1):
        members = sum(len(cfgs[j].seeds) for j in pack)
        names = [labels[j] for j in pack]
        lines.append(f"  pack {i} ({len(pack)} configurations, {members} members): "
                     + (f"{len(pack)} sampled configurations of {names[0]}"
                        if spec.sampled_factors and len(set(names)) == 1 and len(pack) > 1
                        else "; ".join(names)))
    return "\n".join(lines)


def pack_notes(study: ResolvedStudy, num_cpus: int | None = None) -> list[str]:
    """What ``--pack on`` changes beyond the time, one line each (the dry run lists them with
    the packs, a packed study prints them when it starts): packs of sampled configurations
    that cannot be known in advance, and a pruner that prunes less at the packs' concurrency."""
    from study.spec.packs import TRIALS_PER_SERVER

    spec, notes = study.spec, []
    shaping = shape_factors(study)
    if shaping:
        notes.append(f"sampled factors that change a shape ({', '.join(shaping)}): a sampled "
                     "configuration packs only with others of the same sampled values, known "
                     "when Optuna samples them, so the packs a dry run lists assume equal shapes "
                     "(a bound: from a continuous range most packs hold one configuration)")
    if spec.pruner.name in COMPLETED_ONLY_PRUNERS:
        alone = slots(spec, num_cpus, None)  # one pack server per trial slot
        notes.append(f"pruning: up to {alone * TRIALS_PER_SERVER} trials run at once with "
                     f"--pack on ({alone} with --pack off), and the {spec.pruner.name} pruner "
                     "compares a trial with completed trials only, so it prunes later and fewer "
                     "trials than with --pack off")
    return notes


#: Optuna pruners that judge a trial against completed trials only (``PercentilePruner``,
#: which ``MedianPruner`` is, reads COMPLETE trials; ``WilcoxonPruner`` the best completed
#: one): the more trials run at once, the later and the fewer they prune. Successive halving
#: and Hyperband compare with every trial that reached a rung, running or not; the threshold
#: pruner with no other trial.
COMPLETED_ONLY_PRUNERS = frozenset({"median", "percentile", "wilcoxon"})


def shape_factors(study: ResolvedStudy) -> list[str]:
    """The sampled factors of ``study`` whose values change a pack's shape
    (``study.spec.packs.shape_key``): their range's ends, or categories (``Factor.corners``),
    give configurations of different shapes (e.g. a sampled width; a learning rate does not)."""
    from study.spec.packs import shape_key

    cell = study.cells[0]
    return [name for name, factor in study.spec.sampled_factors.items()
            if len({shape_key(study.config(cell | {name: v})) for v in factor.corners()}) > 1]


def budgets_text(spec: StudySpec) -> str:
    """What each budget of a study means (``--list -v``)."""
    from study.spec.study_spec import BUDGETS

    rows = []
    for budget in BUDGETS:
        plan = planned_trials(ResolvedStudy(spec, budget))
        cfg = plan[0].cfg
        rows.append(f"    {budget:<8} {sum(p.count for p in plan):>4} trials, "
                    f"{len(cfg.seeds)} seeds, {cfg.epochs} epochs, {cfg.n_train or 'all'} "
                    f"training points, K={cfg.eval_importance}")
    return "\n".join(rows)

