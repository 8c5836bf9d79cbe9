"""``ResolvedStudy``: a study bound to one budget, the pair every part of a run needs.

A study file says what to vary; a budget says how much (epochs, points, seeds). Everything
from the dry run to the report works on the pair, so it is bound once, at the command line (or
``run_study``), and travels as one object: ``config(factors)`` is the one way to a trial's
``TrialConfig`` (from a grid cell, a Ray trial's config or a Parquet row's factors, with a
round's seeds where ``--until-decided`` gave them), computed once per distinct trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from study.spec.config import TrialConfig
from study.spec.study_spec import ROUND_SEEDS, StudySpec


@dataclass(frozen=True, eq=False)
class ResolvedStudy:
    """``spec`` at ``budget`` (checked: an unknown budget is a ``SpecError``)."""

    spec: StudySpec
    budget: str = "default"
    _configs: dict[str, TrialConfig] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.spec.budget(self.budget)  # raises for an unknown budget

    @property
    def name(self) -> str:
        return self.spec.name

    def config(self, values: Mapping[str, Any]) -> TrialConfig:
        """The trial configuration of ``values``: factor values (other keys, e.g. the rest of
        a Ray config, are ignored) and, for a round of ``--until-decided``, its seeds."""
        keys = (*self.spec.factors, ROUND_SEEDS)
        factors = {k: values[k] for k in keys if k in values}
        key = repr(sorted(factors.items()))
        if key not in self._configs:
            self._configs[key] = self.spec.trial_config(factors, self.budget)
        return self._configs[key]

    @cached_property
    def cells(self) -> list[dict[str, Any]]:
        """The grid cells (one empty cell when no factor is a grid)."""
        return self.spec.grid_cells()

    @cached_property
    def first(self) -> TrialConfig:
        """The first cell's configuration (the study's seeds and settings every cell shares)."""
        return self.config(self.cells[0])

    @property
    def num_trials(self) -> int:
        return self.spec.num_trials(self.budget)

    @property
    def samples_per_cell(self) -> int:
        """Trials per grid cell: ``num_samples`` when factors are sampled, else 1."""
        if not self.spec.sampled_factors:
            return 1
        return int(self.spec.budget(self.budget).get("num_samples", self.spec.search.num_samples))
