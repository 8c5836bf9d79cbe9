"""What a study will run: its trials, and how long they take on this machine.

``describe`` is the first line a study prints; ``dry_run`` is ``--dry-run``: every trial
(configuration, seeds, epochs, data sizes), the total epochs and an estimate of the time,
measured by timing a few training steps of each distinct model on this machine and
extrapolating (evaluation is counted as forward passes, a third of a training step's cost each).
Nothing is written.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from study.spec.config import TrialConfig
from study.spec.study_spec import StudySpec

#: a trial's own fixed cost besides its training and likelihoods (measured on the smoke budgets:
#: starting it in a worker, the latent metrics, the exact-density references, plots)
TRIAL_OVERHEAD_S = 2.0


@dataclass
class PlannedTrial:
    label: str
    cfg: TrialConfig
    count: int  # trials of this grid cell (sampled factors: num_samples)

    @property
    def train_samples(self) -> int:
        n_train = self.cfg.n_train or 60_000
        return n_train * self.cfg.member_epochs * len(self.cfg.seeds) * self.cfg.iw_samples

    @property
    def eval_passes(self) -> int:
        """Forward sample-passes of the validation and the final evaluation."""
        cfg = self.cfg
        n_test = cfg.eval_points or cfg.n_test or 10_000
        val = cfg.n_val * cfg.member_epochs * (1 + (cfg.iw_samples if cfg.iw_samples > 1 else 0))
        final = n_test * (max(cfg.eval_importance, 100) + 6 * cfg.ood_importance + 20)
        return (val + final) * len(cfg.seeds)


def planned_trials(spec: StudySpec, budget: str) -> list[PlannedTrial]:
    per_cell = int(spec.budget(budget).get("num_samples", spec.search.num_samples)) \
        if spec.sampled_factors else 1
    out = []
    for cell in spec.grid_cells():
        label = ", ".join(f"{k}={v}" for k, v in cell.items()) or "the configuration"
        if spec.sampled_factors:
            label += " (" + ", ".join(f"{k} ~ {f.kind}{list(getattr(f, f.kind))}"
                                      for k, f in spec.sampled_factors.items()) + ")"
        out.append(PlannedTrial(label, spec.trial_config(cell, budget), per_cell))
    return out


def slots(spec: StudySpec, num_cpus: int | None, max_concurrent: int | None) -> int:
    cpus = num_cpus or os.cpu_count() or 1
    n = max(1, int(cpus // max(spec.resources.cpus, 1e-9)))
    return min(n, max_concurrent) if max_concurrent else n


def describe(spec: StudySpec, budget: str, num_cpus: int | None = None,
             max_concurrent: int | None = None) -> str:
    """The one line a study prints when it starts."""
    plan = planned_trials(spec, budget)
    trials = sum(p.count for p in plan)
    seeds = sorted({len(p.cfg.seeds) for p in plan})
    epochs = sorted({p.cfg.epochs for p in plan})
    res = f"{spec.resources.cpus:g} CPU" + (f", {spec.resources.gpus:g} GPU" if spec.resources.gpus else "")
    return (f"study {spec.name} ({budget}): {trials} trials ({len(plan)} configurations"
            + (f" x {plan[0].count} sampled" if plan and plan[0].count > 1 else "")
            + f"), {'/'.join(map(str, seeds))} seeds each, {'/'.join(map(str, epochs))} epochs; "
            f"{res} per trial, up to {slots(spec, num_cpus, max_concurrent)} at a time")


def _seconds_per_sample(cfg: TrialConfig, cache: dict) -> float:
    """Seconds of one training sample (one point, one seed, one importance sample) of this
    model on this machine, from a few timed steps on random data."""
    key = (cfg.architecture(), len(cfg.seeds), cfg.iw_samples, cfg.batch_size, cfg.kl)
    if key not in cache:
        import torch

        from models import build_model, training_objective

        torch.set_num_threads(1)
        model = build_model(cfg.architecture(), cfg.seeds)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        x = torch.rand(len(cfg.seeds), cfg.batch_size, cfg.architecture().x_dim)
        if cfg.is_image:
            x = torch.bernoulli(x)
        steps, start = 0, 0.0
        while steps < 3 or time.perf_counter() - start < 0.3:
            if steps == 2:
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            training_objective(model, x, cfg.iw_samples, cfg.kl).loss.backward()
            opt.step()
            steps += 1
        per_step = (time.perf_counter() - start) / (steps - 2)
        cache[key] = per_step / (len(cfg.seeds) * cfg.batch_size * cfg.iw_samples)
    return cache[key]


def dry_run(spec: StudySpec, budget: str, num_cpus: int | None = None,
            max_concurrent: int | None = None) -> str:
    """Every trial, the total epochs and the estimated time (see the module docstring)."""
    plan = planned_trials(spec, budget)
    cache: dict = {}
    lines = [describe(spec, budget, num_cpus, max_concurrent), "",
             f"{'trials':>6}{'seeds':>6}{'epochs':>7}{'train':>8}{'val':>6}{'test':>6}{'IW':>4}"
             f"{'est. min':>9}  configuration"]
    total_s, total_epochs, longest = 0.0, 0, 0.0
    for p in plan:
        per_sample = _seconds_per_sample(p.cfg, cache)
        seconds = per_sample * (p.train_samples + p.eval_passes / 3) + TRIAL_OVERHEAD_S
        total_s += seconds * p.count
        longest = max(longest, seconds)
        total_epochs += p.cfg.epochs * p.count
        cfg = p.cfg
        lines.append(f"{p.count:>6}{len(cfg.seeds):>6}{cfg.epochs:>7}{cfg.n_train or 'all':>8}"
                     f"{cfg.n_val:>6}{cfg.n_test or 'all':>6}{cfg.iw_samples:>4}"
                     f"{seconds / 60:>9.1f}  {p.label}")
    n_slots = slots(spec, num_cpus, max_concurrent)
    wall = max(total_s / n_slots, longest) + 15  # start-up: Ray, MLflow, imports
    trials = sum(p.count for p in plan)
    stops_early = spec.pruner.name != "none" or any(p.cfg.patience for p in plan)
    lines += ["", f"{trials} trials, {total_epochs:,} epochs in all; estimated "
                  f"{wall / 60:.1f} minutes on this machine ({n_slots} at a time; trial time "
                  f"measured from a few training steps of each model, so +-30%"
                  + ("; an upper bound: pruning and early stopping end trials sooner"
                     if stops_early else "") + ")",
              "nothing was run or written (--dry-run)"]
    return "\n".join(lines)


def budgets_text(spec: StudySpec) -> str:
    """What each budget of a study means (``--list -v``)."""
    from study.spec.study_spec import BUDGETS

    rows = []
    for budget in BUDGETS:
        plan = planned_trials(spec, budget)
        cfg = plan[0].cfg
        rows.append(f"    {budget:<8} {sum(p.count for p in plan):>4} trials, "
                    f"{len(cfg.seeds)} seeds, {cfg.epochs} epochs, {cfg.n_train or 'all'} "
                    f"training points, K={cfg.eval_importance}")
    return "\n".join(rows)

