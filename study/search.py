"""The search space of a study: grid cells, Optuna TPE, or both (docs/ARCHITECTURE.md).

- Only grid factors (``grid``/``levels``): every cell once, most expensive first
  (longest-processing-time order keeps the last wave short).
- Only sampled factors: Ray's ``OptunaSearch`` with a seeded TPE sampler.
- Both: a define-by-run space for ``OptunaSearch``: trial i takes grid cell i mod (cells) and TPE
  samples the rest, so every cell gets the same number of trials.
"""

from __future__ import annotations

from typing import Any

from .spec import StudySpec


def build_search(spec: StudySpec, budget: str, max_concurrent: int | None = None):
    """(param_space, search_alg, num_samples) for the study's factors. ``max_concurrent`` is
    given to the grid's generator itself: Ray Tune applies ``max_concurrent_trials`` only to a
    ``Searcher`` and ignores it (with a warning) for a generator passed in."""
    from ray import tune

    if not spec.sampled_factors:
        # every grid cell once, most expensive first: with more trials than slots, the long
        # ones start early and the last wave is short (longest-processing-time scheduling)
        from ray.tune.search.basic_variant import BasicVariantGenerator

        cells = sorted(spec.grid_cells(), key=lambda c: -estimated_cost(spec.trial_config(c, budget)))
        space = {name: tune.choice(f.values) for name, f in spec.grid_factors.items()}
        generator = BasicVariantGenerator(points_to_evaluate=cells, max_concurrent=max_concurrent or 0)
        return space, generator, len(cells)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    per_cell = int(spec.budget(budget).get("num_samples", spec.search.num_samples))
    cells = spec.grid_cells()
    if spec.grid_factors:
        space: Any = GridCellsThenSample(cells, spec.sampled_factors)
    else:
        space = {name: f.optuna_distribution() for name, f in spec.sampled_factors.items()}
    searcher = OptunaSearch(
        space=space, metric=spec.search.metric, mode=spec.search.mode,
        sampler=optuna.samplers.TPESampler(seed=spec.search.sampler_seed),
    )
    return {}, searcher, len(cells) * per_cell


def estimated_cost(cfg) -> float:
    """Relative training cost of a trial: parameters x seeds x epochs x training points."""
    from models.size import parameter_count  # PyTorch: imported while Ray starts (study.launch)

    n_params = parameter_count(cfg.architecture())
    n_train = cfg.n_train or 60_000
    return float(n_params * len(cfg.seeds) * cfg.epochs * n_train * cfg.iw_samples)


class GridCellsThenSample:
    """Define-by-run space for OptunaSearch when a study mixes grid and sampled factors: trial i
    gets grid cell i mod (number of cells), so every cell gets the same number of trials, and
    TPE samples the other factors (the grid values are recorded as user attributes)."""

    def __init__(self, cells: list[dict[str, Any]], sampled: dict[str, Any]) -> None:
        self.cells = cells
        self.sampled = sampled
        self.count = 0

    def __call__(self, trial) -> dict[str, Any]:
        cell = self.cells[self.count % len(self.cells)]
        self.count += 1
        for name, factor in self.sampled.items():
            dist = factor.optuna_distribution()
            _suggest(trial, name, dist)
        for name, value in cell.items():
            trial.set_user_attr(f"grid.{name}", value)
        return dict(cell)


def _suggest(trial, name: str, dist) -> Any:
    import optuna.distributions as d

    if isinstance(dist, d.FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)
