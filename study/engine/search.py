"""The search space of a study: grid cells, Optuna TPE, or both (docs/ARCHITECTURE.md).

- Only grid factors (``grid``/``levels``): every cell once, most expensive first
  (longest-processing-time order keeps the last wave short).
- Only sampled factors: Ray's ``OptunaSearch`` with a seeded TPE sampler (constant liar: trials
  asked for while others run spread out).
- Both: a define-by-run space for ``OptunaSearch``: trial i takes grid cell i mod (cells) and TPE
  samples the rest, so every cell gets the same number of trials.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.search_generator import SearchGenerator

from study.spec import cost
from study.spec.resolved import ResolvedStudy


def build_search(study: ResolvedStudy, max_concurrent: int | None = None):
    """(param_space, search_alg, num_samples) for the study's factors. ``max_concurrent`` is
    given to the generators themselves: Ray Tune applies ``max_concurrent_trials`` only to a
    ``Searcher`` and ignores it (with a warning) for a generator passed in."""
    from ray import tune

    spec = study.spec
    if not spec.sampled_factors:
        # every grid cell once, most expensive first: with more trials than slots, the long
        # ones start early and the last wave is short (longest-processing-time scheduling)
        cells = costliest_first(study, study.cells)
        space = {name: tune.choice(f.values) for name, f in spec.grid_factors.items()}
        generator = grid_generator(cells, max_concurrent)
        return space, generator, len(cells)
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    per_cell = study.samples_per_cell
    cells = study.cells
    if spec.grid_factors:
        space: Any = GridCellsThenSample(cells, spec.sampled_factors)
    else:
        space = {name: f.optuna_distribution() for name, f in spec.sampled_factors.items()}
    searcher = OptunaSearch(
        space=space, metric=spec.search.metric, mode=spec.search.mode,
        sampler=tpe_sampler(spec.search.sampler_seed),
    )
    if max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
    return {}, SampledGenerator(searcher), len(cells) * per_cell


def costliest_first(study: ResolvedStudy, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A grid's points in the order its trials start: most expensive first by the cost model
    (longest-processing-time order keeps the last wave short; the progress line's ETA counts
    the trials still waiting as the cheapest)."""
    return sorted(points, key=lambda p: -cost.estimate(study.config(p)).seconds)


def tpe_sampler(seed: int | None):
    """Optuna's TPE, seeded, with the constant liar: a trial still running counts as the worst
    value seen, so trials asked for together (every slot at the start, a pack's worth of
    trials with ``--pack on``) spread over the space instead of crowding one good region
    (Optuna's default from 5.0, set here for the earlier versions the install allows)."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _moved(spec: dict[str, Any], place: tuple[Any, str, str]) -> None:
    """Point the storage of a saved experiment spec at the experiment's place now."""
    storage = spec.get("storage")
    if storage is not None:
        storage = copy.copy(storage)
        storage.storage_filesystem, storage.storage_fs_path, storage.experiment_dir_name = place
        spec["storage"] = storage


class _Relocatable:
    """A search algorithm whose trials created after a restore use the experiment's place now.

    Ray Tune restores its trials where the experiment is now (a moved results folder), but a
    search algorithm restores the experiment spec it saved, with the folder's path of then, and
    gives it to the trials it creates afterwards: in a moved folder their checkpoints go to the
    old path (they fail "Unable to set up cluster storage"), in a copy into the original.
    ``relocate`` names the place before ``Tuner.fit`` restores the saved state."""

    def relocate(self, experiment: str) -> None:
        """``experiment``: the experiment folder (local path or URI) the Tuner restores from."""
        from ray.train._internal.storage import get_fs_and_path

        parent, name = experiment.rstrip("/").rsplit("/", 1)
        fs, path = get_fs_and_path(parent, None)
        self._place = (fs, path, name)
        for spec in self._saved_specs():
            _moved(spec, self._place)

    def set_state(self, state: dict) -> None:
        place = getattr(self, "_place", None)
        super().set_state(state)  # type: ignore[misc]
        self._place = place
        if place is not None:
            for spec in self._saved_specs():
                _moved(spec, place)

    def get_state(self) -> dict:
        state = super().get_state()  # type: ignore[misc]
        state.pop("_place", None)  # a filesystem handle is this process's, never saved
        return state


class GridGenerator(_Relocatable, BasicVariantGenerator):
    """Ray's ``BasicVariantGenerator``, relocatable."""

    def _saved_specs(self) -> list[dict[str, Any]]:
        return [it.unresolved_spec for it in getattr(self, "_iterators", [])]


class SampledGenerator(_Relocatable, SearchGenerator):
    """Ray's ``SearchGenerator`` (what Tune wraps a ``Searcher`` in), relocatable."""

    def _saved_specs(self) -> list[dict[str, Any]]:
        experiment = getattr(self, "_experiment", None)
        return [experiment.spec] if experiment is not None else []


def grid_generator(points: list[dict[str, Any]], max_concurrent: int | None) -> GridGenerator:
    """A generator of ``points`` (each once), at most ``max_concurrent`` at a time."""
    return GridGenerator(points_to_evaluate=points, max_concurrent=max_concurrent or 0)


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
