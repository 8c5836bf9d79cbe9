"""The ``--until-decided`` flags of a run, checked against the study before anything starts
(``study.judge.sequential`` holds the design itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.core.errors import UserError
from study.spec.resolved import ResolvedStudy

if TYPE_CHECKING:
    from study.engine.options import RunOptions
    from study.judge.sequential import Design
    from study.store.folder import StudyState


def sequential_design(study: ResolvedStudy, opts: RunOptions,
                      state: StudyState | None) -> Design | None:
    """The seeds-until-decided design of this run: from the flags, or the one a resumed study
    started with (``study.json``); None for a study of fixed seeds."""
    saved = state.sequential if state is not None else None
    if not opts.until_decided and not (opts.resume and saved):
        return None  # a study of fixed seeds: no need for SciPy in the driver before Ray starts
    from study.judge.sequential import Design

    stored = Design.from_state(saved) if opts.resume else None
    if not opts.until_decided:
        return stored
    where, spec = "--until-decided", study.spec
    if not spec.claims:
        raise UserError(f"{where}: study {spec.name!r} has no claims to decide")
    if spec.sampled_factors:
        raise UserError(f"{where}: study {spec.name!r} samples factors with Optuna; seeds are "
                        "added to fixed configurations, so it needs a grid-only study")
    seeds = list(study.first.seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise UserError(f"{spec.source}: field 'seeds' = {seeds}: --until-decided adds seeds "
                        f"{seeds[-1] + 1}, {seeds[-1] + 2}, ...: give seeds as a count")
    if opts.max_seeds is None:
        raise UserError(f"{where} needs --max-seeds N: the most seeds a configuration may get "
                        f"(more than the study's {len(seeds)})")
    if opts.max_seeds <= len(seeds):
        raise UserError(f"--max-seeds = {opts.max_seeds}: give the most seeds a configuration "
                        f"may get, more than the study's {len(seeds)}")
    design = Design(len(seeds), opts.seed_step or len(seeds), opts.max_seeds, spec.alpha,
                    start=seeds[0])
    if stored is not None and stored != design:
        raise UserError(f"--resume: the study was started with --until-decided --max-seeds "
                        f"{stored.max_seeds} --seed-step {stored.step}; resume it with those")
    return design
