"""Study specifications: ``search_spaces/NAME.yaml`` -> a validated ``StudySpec``.

A study file states the question it answers, the fixed settings, the factors, the seeds, the
metric that search and pruning use, the pruner, the budgets and the resources of a trial:

    name: spirals_depth                    # must equal the file name
    question: Do extra stochastic layers help on Spirals?
    fixed: {dataset: spirals, noise: 0.05} # any TrialConfig field (see study/spec/config.py)
    factors:
      depth: {grid: [1, 2, 3, 4]}          # grid: every value is tried
      model:                               # levels: each level sets several fields
        levels:
          vae:  {kind: vae, latents: [2], hidden: [64, 64]}
          hvae: {kind: hvae, latents: [2, 2], hidden: [[64, 64], [32, 32]]}
      lr: {loguniform: [1.0e-4, 1.0e-2]}   # sampled by Optuna TPE: uniform, loguniform,
      width: {int: [16, 128], step: 16}    #   int (step, log), categorical
    seeds: 3                               # 3 = seeds 0, 1, 2 (or an explicit list)
    search: {metric: val_elbo, mode: max, num_samples: 8, sampler_seed: 0}
    pruner: {name: median, args: {n_warmup_steps: 10}}
    budgets:                               # overrides of fixed settings (+ num_samples, seeds)
      smoke: {epochs: 3, n_train: 500}
      default: {epochs: 100}
      full: {epochs: 1000}
    resources: {cpus: 1, gpus: 0}

Besides TrialConfig fields, factors and fixed settings may use the shorthands ``depth`` and
``latent_dim`` (latents = [latent_dim] * depth), ``hidden_block`` (the same hidden widths for
every stochastic layer) and ``width`` and ``hidden_layers`` (hidden = one block of
``hidden_layers`` layers of ``width`` units per stochastic layer). A flat ``hidden`` keeps the
log's meaning (split evenly over the layers, see models/config.py).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from study.core.errors import SpecError
from study.core.strict import Strict
from study.spec.claims import Claim, Curve, Gate, Reference
from study.spec.config import TrialConfig
from study.spec.factors import Factor, resolve_shorthands
from study.spec.seed_range import SeedRange
from study.store.folder import NAME_PATTERN

BUDGETS = ("smoke", "default", "full")
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "wilcoxon": "WilcoxonPruner",
    "threshold": "ThresholdPruner",
}


#: the key of a Ray trial's config that gives a round of --until-decided its seeds, "FIRST-LAST"
#: (a string: Ray Tune would read a list in its search space as nested parameters)
ROUND_SEEDS = "round_seeds"

class Search(Strict):
    metric: str = "val_bound"
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(8, ge=1)
    sampler_seed: int = Field(0, ge=0)


class Pruner(Strict):
    name: Literal[tuple(PRUNERS)] = "median"  # type: ignore[valid-type]
    args: dict[str, Any] = Field(default_factory=dict)

    def build(self):
        import optuna

        return getattr(optuna.pruners, PRUNERS[self.name])(**self.args)

    @model_validator(mode="after")
    def _args_fit_the_pruner(self) -> Pruner:
        import inspect

        import optuna

        cls = getattr(optuna.pruners, PRUNERS[self.name])
        params = [p for p in inspect.signature(cls).parameters if p != "self"]
        unknown = [k for k in self.args if k not in params]
        if unknown:
            raise ValueError(f"{cls.__name__} has no argument {unknown[0]!r}; it takes "
                             f"{', '.join(params) or 'none'}")
        try:
            self.build()
        except (TypeError, ValueError) as err:
            raise ValueError(f"{cls.__name__}({self.args}): {err}") from None
        return self


class Resources(Strict):
    cpus: float = Field(1.0, gt=0, le=1024)
    gpus: float = Field(0.0, ge=0, le=64)


class ProtocolEntry(Strict):
    """A change of a gate, recipe or seed count, recorded when it was made: the report prints
    them (its "protocol" section), so a verdict's reader sees what was chosen after looking."""

    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    change: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    #: whether the change was made after looking at verdicts or gate outcomes of this study
    after_looking: bool = True


class StudySpec(Strict):
    _source: Path | None = PrivateAttr(default=None)
    name: str = Field(pattern=f"^{NAME_PATTERN.pattern}$")
    question: str = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)
    factors: dict[str, Factor] = Field(default_factory=dict)
    seeds: int | list[int] = 3
    search: Search = Field(default_factory=Search)
    pruner: Pruner = Field(default_factory=Pruner)
    budgets: dict[Literal["smoke", "default", "full"], dict[str, Any]] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    checkpoint_every: int = Field(10, ge=1)
    #: epoch results reach the driver (pruner, MLflow) in batches at least this far apart
    report_every_s: float = Field(1.0, ge=0)
    responses: list[str] = Field(default_factory=lambda: ["test_ll"])
    #: the fitness every claim's configurations need (a claim's own ``gate`` adds to it)
    gates: Gate = Field(default_factory=Gate)
    #: the level of the study's tests (Holm-adjusted across its claims)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    claims: list[Claim] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    curves: list[Curve] = Field(default_factory=list)
    #: ``training_flops``: every configuration trains for the training compute of the costliest
    #: one at the budget's epochs (``StudySpec.matched_epochs``); claims then compare
    #: configurations at equal compute, not at equal epochs
    match_compute: Literal["training_flops"] | None = None
    #: the first seed of the confirmatory range: ``--confirmatory`` runs seeds from here on
    #: (seed s's data draw, test set and initialisation are its own), seeds no recipe of this
    #: study was developed on; verdicts from any other seeds are *exploratory*
    confirmatory_seeds: int | None = Field(None, ge=1)
    #: every change of a gate, recipe or seed count, with its date and reason
    protocol: list[ProtocolEntry] = Field(default_factory=list)
    _matched: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)
    _on_confirmatory: bool = PrivateAttr(default=False)  # ``confirmatory()`` made it

    @field_validator("match_compute")
    @classmethod
    def _compute_can_be_matched(cls, v: str | None, info: ValidationInfo) -> str | None:
        sampled = [n for n, f in (info.data.get("factors") or {}).items() if not f.is_grid]
        if v is not None and sampled:
            raise ValueError(f"match_compute needs every factor on a grid (the compute of a "
                             f"sampled value is not known before it is drawn): "
                             f"{', '.join(sampled)} is sampled")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> int | list[int]:
        ok_int = isinstance(v, int) and not isinstance(v, bool) and v >= 1
        ok_list = isinstance(v, list) and v and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
        if not (ok_int or ok_list):
            raise ValueError("seeds must be a count >= 1 or a non-empty list of integers >= 0")
        return v

    def confirmatory(self) -> StudySpec:
        """This study on its confirmatory seeds: every seed count N (the study's and each
        budget's) becomes the seeds ``confirmatory_seeds`` .. + N - 1 (a study already on them
        is returned as it is)."""
        if self._on_confirmatory:
            return self
        if self.confirmatory_seeds is None:
            raise SpecError(f"{self.source}: --confirmatory needs field 'confirmatory_seeds' "
                            "(the first seed no recipe of this study was developed on, e.g. 1000)")

        def shifted(seeds: Any, where: str) -> list[int]:
            if not isinstance(seeds, int):
                raise SpecError(f"{self.source}: field '{where}' = {seeds!r}: --confirmatory "
                                "needs seeds as a count")
            return list(range(self.confirmatory_seeds, self.confirmatory_seeds + seeds))

        budgets = {name: dict(b) | ({"seeds": shifted(b["seeds"], f"budgets.{name}.seeds")}
                                    if "seeds" in b else {})
                   for name, b in self.budgets.items()}
        copy = self.model_copy(update={"seeds": shifted(self.seeds, "seeds"), "budgets": budgets})
        copy._source, copy._matched, copy._on_confirmatory = self._source, {}, True
        return copy

    def on_confirmatory_seeds(self, seeds: list[int] | tuple[int, ...]) -> bool:
        """Whether every one of ``seeds`` lies in the confirmatory range."""
        return self.confirmatory_seeds is not None and bool(seeds) and \
            min(seeds) >= self.confirmatory_seeds

    def file_sha256(self) -> str | None:
        """The SHA-256 of the study file as it is now (None for a spec not read from a file)."""
        import hashlib

        if self._source is None or not Path(self._source).is_file():
            return None
        return hashlib.sha256(Path(self._source).read_bytes()).hexdigest()

    # ------------------------------------------------------------------ derived
    @property
    def source(self) -> str:
        """The study file, as messages name it."""
        return str(self._source) if self._source is not None else f"study {self.name}"

    @property
    def grid_factors(self) -> dict[str, Factor]:
        return {k: f for k, f in self.factors.items() if f.is_grid}

    @property
    def sampled_factors(self) -> dict[str, Factor]:
        return {k: f for k, f in self.factors.items() if not f.is_grid}

    def grid_size(self) -> int:
        """The number of grid cells, computed without listing them."""
        return math.prod(len(f.values) for f in self.grid_factors.values())

    def grid_cells(self) -> list[dict[str, Any]]:
        """Every combination of grid-factor values (one empty cell when there are none)."""
        names = list(self.grid_factors)
        return [dict(zip(names, combo))
                for combo in itertools.product(*(self.factors[n].values for n in names))]

    def budget(self, name: str) -> dict[str, Any]:
        if name not in BUDGETS:
            raise SpecError(f"unknown budget {name!r}; known: {', '.join(BUDGETS)}")
        return dict(self.budgets.get(name, {}))

    def num_trials(self, budget: str) -> int:
        """Trials of ``budget``: grid cells (counted, not listed) x ``num_samples`` when
        factors are sampled."""
        per_cell = int(self.budget(budget).get("num_samples", self.search.num_samples))
        return self.grid_size() * (per_cell if self.sampled_factors else 1)

    def base_values(self, budget: str) -> dict[str, Any]:
        """Fixed settings with the budget's overrides and the seeds (factors not applied)."""
        values = dict(self.fixed) | {"seeds": self.seeds}
        overrides = self.budget(budget)
        overrides.pop("num_samples", None)
        return values | overrides

    def trial_values(self, factors: dict[str, Any], budget: str) -> dict[str, Any]:
        """TrialConfig fields of the trial with these factor values (shorthands resolved); a
        ``ROUND_SEEDS`` entry ("5-9", a round of ``--until-decided``) replaces the seeds."""
        values = self.base_values(budget)
        factors = dict(factors)
        if factors.get(ROUND_SEEDS):
            values["seeds"] = SeedRange.parse(factors.pop(ROUND_SEEDS)).seeds
        factors.pop(ROUND_SEEDS, None)
        for name, value in factors.items():
            f = self.factors.get(name)
            if f is not None and f.levels is not None:
                values |= f.levels[str(value)]
            else:
                values[name] = f.decode(value) if f is not None else value
        values = resolve_shorthands(values)
        if self.match_compute is not None:
            values["epochs"] = self.matched_epochs(budget)[self._cell_key(factors)]
        return values

    def _cell_key(self, factors: dict[str, Any]) -> str:
        return repr(sorted((n, str(factors[n])) for n in self.grid_factors if n in factors))

    def matched_epochs(self, budget: str) -> dict[str, int]:
        """With ``match_compute``: the epochs of each grid cell (keyed by ``_cell_key``) that
        give it the training compute of the costliest cell at the budget's epochs (rounded to the
        nearest epoch, at least 1).

        Training compute of a cell = its epochs x training points x the matmul FLOPs of one
        training step per point (``models.size.training_flops``: forward and backward, with the
        cell's ``iw_samples``; with restarts, their candidates' epochs counted too:
        ``study.spec.cost.seed_epochs``); the number of seeds is the same for every cell. On this
        2-core CPU the matched trainings of ``kl_iw_mnist_matched`` take 1.0-1.2x the costliest
        one's time (``benchmarks/matched_compute.py``, docs/benchmarks.md): equal FLOPs are
        about equal time."""
        if budget not in self._matched:
            from study.spec import cost
            from study.spec.config import trial_config

            plain = self.model_copy(update={"match_compute": None})
            cells = self.grid_cells()
            cfgs = [trial_config(plain.trial_values(c, budget), f"study {self.name}")
                    for c in cells]
            if len({c.n_train for c in cfgs}) > 1 and any(c.n_train == 0 for c in cfgs):
                raise SpecError(f"{self.source}: match_compute: budget {budget!r} trains some "
                                "configurations on all points (n_train 0) and others on fewer; "
                                "give every configuration a number of points")
            per_epoch = [cost.training_flops_per_epoch(c) for c in cfgs]
            most = max(f * cost.seed_epochs(c) for f, c in zip(per_epoch, cfgs))
            self._matched[budget] = {self._cell_key(cell): cost.epochs_costing(most / f, c)
                                     for cell, f, c in zip(cells, per_epoch, cfgs)}
        return self._matched[budget]

    def trial_config(self, factors: dict[str, Any], budget: str, where: str = "") -> TrialConfig:
        from study.spec.config import trial_config

        return trial_config(self.trial_values(factors, budget), where or f"study {self.name}")
