"""Study specifications: ``search_spaces/NAME.yaml`` -> a validated ``StudySpec``.

A study file states the question it answers, the fixed settings, the factors, the seeds, the
metric that search and pruning use, the pruner, the budgets and the resources of a trial:

    name: spirals_depth                    # must equal the file name
    question: Do extra stochastic layers help on Spirals?
    fixed: {dataset: spirals, noise: 0.05} # any TrialConfig field (see study/config.py)
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

import builtins
import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from .config import TrialConfig
from .errors import SpecError
from .folder import NAME_PATTERN

SHORTHANDS = {"depth", "latent_dim", "hidden_block", "width", "hidden_layers"}
BUDGETS = ("smoke", "default", "full")
#: grids larger than this are refused unless ``--max-grid`` raises it
MAX_GRID = 10_000
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "wilcoxon": "WilcoxonPruner",
    "threshold": "ThresholdPruner",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Factor(_Strict):
    """One factor: exactly one of grid, levels, uniform, loguniform, int, categorical."""

    grid: list[Any] | None = None
    levels: dict[str, dict[str, Any]] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int: tuple[builtins.int, builtins.int] | None = None  # noqa: A003 - the YAML key
    step: float | None = None
    log: bool = False
    categorical: list[Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Factor:
        kinds = [k for k in ("grid", "levels", "uniform", "loguniform", "int", "categorical")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a factor needs exactly one of grid, levels, uniform, loguniform, "
                             f"int, categorical; got {kinds or 'none'}")
        if self.grid is not None and not self.grid:
            raise ValueError("grid must list at least one value")
        if self.levels is not None and not self.levels:
            raise ValueError("levels must define at least one level")
        if self.categorical is not None and not self.categorical:
            raise ValueError("categorical must list at least one value")
        for rng in (self.uniform, self.loguniform, self.int):
            if rng is not None and not rng[0] < rng[1]:
                raise ValueError(f"range must have low < high, got {list(rng)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.loguniform[0]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("grid", "levels", "uniform", "loguniform", "int", "categorical")
                    if getattr(self, k) is not None)

    @property
    def is_grid(self) -> bool:
        return self.kind in ("grid", "levels")

    @property
    def values(self) -> list[Any]:
        """The grid values as Ray and Optuna see them (level names for ``levels``). List
        values (e.g. widths) travel as their JSON text: Ray reads lists in a config as nested
        parameters, Optuna stores only scalars; ``decode`` turns them back."""
        if self.levels is not None:
            return list(self.levels)
        return [json.dumps(v) if isinstance(v, (list, dict)) else v for v in self.grid or []]

    def decode(self, value: Any) -> Any:
        """The setting a grid value stands for (inverse of the JSON encoding in ``values``)."""
        if isinstance(value, str) and self.grid is not None and \
                any(isinstance(v, (list, dict)) for v in self.grid):
            return json.loads(value)
        return value

    def optuna_distribution(self):
        import optuna.distributions as d

        if self.kind == "uniform":
            return d.FloatDistribution(*self.uniform, step=self.step)
        if self.kind == "loguniform":
            return d.FloatDistribution(*self.loguniform, log=True)
        if self.kind == "int":
            return d.IntDistribution(*self.int, step=int(self.step or 1), log=self.log)
        if self.kind == "categorical":
            return d.CategoricalDistribution(self.categorical)
        return d.CategoricalDistribution(self.values)

    def corners(self) -> list[Any]:
        """Values that exercise the factor's range (for validating a spec before running)."""
        if self.is_grid:
            return self.values
        if self.kind == "categorical":
            return list(self.categorical)
        lo, hi = getattr(self, self.kind)
        return [lo, hi]


class Search(_Strict):
    metric: str = "val_bound"
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(8, ge=1)
    sampler_seed: int = Field(0, ge=0)


class Pruner(_Strict):
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


class Resources(_Strict):
    cpus: float = Field(1.0, gt=0, le=1024)
    gpus: float = Field(0.0, ge=0, le=64)


class Gate(_Strict):
    """What a claim's configurations must have reached before the claim can be judged; each
    bound is checked on the mean over seeds of every configuration the claim selects, and a
    claim whose configurations miss it is *untestable* (never supported or not supported).

    max_ll_gap: nats; exact_ll - test_ll at most this (2-D data with noise > 0).
    max_wrong_samples: fraction; wrong_sample_frac at most this (2-D data, any noise: the gate
        of noise-free data, which has no density).
    min_kl: layer -> nats; the KL of each named layer (``kl_L``) at least this.
    min_epochs: epochs trained at least this.
    at_least / at_most: metric -> bound, for any other metric.
    """

    max_ll_gap: float | None = Field(None, gt=0)
    max_wrong_samples: float | None = Field(None, ge=0, le=1)
    min_kl: dict[str, float] = Field(default_factory=dict)
    min_epochs: int | None = Field(None, ge=1)
    at_least: dict[str, float] = Field(default_factory=dict)
    at_most: dict[str, float] = Field(default_factory=dict)

    def merged(self, override: Gate | None) -> Gate:
        """This gate with ``override``'s fields (those it sets) taking precedence."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))

    def bounds(self) -> list[tuple[str, str, float]]:
        """(metric, ">=" or "<=", bound) of every check."""
        out: list[tuple[str, str, float]] = []
        if self.max_ll_gap is not None:
            out.append(("ll_gap", ">=", -self.max_ll_gap))
        if self.max_wrong_samples is not None:
            out.append(("wrong_sample_frac", "<=", self.max_wrong_samples))
        out += [(f"kl_{layer}", ">=", v) for layer, v in self.min_kl.items()]
        if self.min_epochs is not None:
            out.append(("epochs", ">=", float(self.min_epochs)))
        out += [(m, ">=", v) for m, v in self.at_least.items()]
        out += [(m, "<=", v) for m, v in self.at_most.items()]
        return out


class Claim(_Strict):
    """A statement of the experiment log, tested on the study's seeds.

    ``where`` selects trials (factor or config values). With ``versus`` the claim compares two
    selections seed by seed (``expect: higher`` or ``lower``: ``metric`` under ``where`` minus
    under ``versus``); with ``versus_metric``, two metrics of the same seeds; without either,
    the metric against ``threshold`` (``expect: below`` or ``above``). ``expect: equivalent``
    claims "no difference" (of the comparison, or from the threshold) within ``margin``, an
    equivalence test; a directional claim with a ``margin`` is also tested for equivalence when
    it is not decided. ``gate`` adds to (or overrides) the study's ``gates``.
    """

    statement: str
    metric: str
    where: dict[str, Any] = Field(default_factory=dict)
    versus: dict[str, Any] | None = None
    versus_metric: str | None = None
    expect: Literal["higher", "lower", "below", "above", "equivalent"]
    threshold: float | None = None
    margin: float | None = Field(None, gt=0)
    gate: Gate | None = None

    @model_validator(mode="after")
    def _shape(self) -> Claim:
        compares = self.versus is not None or self.versus_metric is not None
        if self.versus is not None and self.versus_metric is not None:
            raise ValueError("a claim compares with another selection or another metric, not both")
        if self.expect == "equivalent":
            if self.margin is None:
                raise ValueError("a claim that expects equivalent needs a margin")
            if not compares and self.threshold is None:
                raise ValueError("an equivalence claim needs versus, versus_metric or a threshold")
        elif compares and self.expect not in ("higher", "lower"):
            raise ValueError("a claim with versus / versus_metric expects higher or lower")
        elif not compares and (self.expect not in ("below", "above") or self.threshold is None):
            raise ValueError("a claim without versus needs expect below/above and a threshold")
        return self

    @property
    def sign(self) -> float:
        """+1 when the claim expects a positive effect, -1 a negative one, 0 no effect."""
        return {"higher": 1.0, "above": 1.0, "lower": -1.0, "below": -1.0}.get(self.expect, 0.0)


class Reference(_Strict):
    """A published or logged number to show beside the study's own (e.g. the log's table)."""

    where: dict[str, Any] = Field(default_factory=dict)
    metric: str
    value: float
    source: str


class Curve(_Strict):
    """A report plot of a metric family against x, e.g. AUROC against the OOD shift distance:
    ``metric: auroc_neg_ll_shifted_{x}`` with ``x: [0.1, 0.5, 1]``, one line per configuration,
    and optionally a ``reference`` family drawn dashed (e.g. ``bayes_auroc_shifted_{x}``)."""

    title: str
    metric: str
    x: list[float | int | str]
    xlabel: str = "x"
    reference: str | None = None


class StudySpec(_Strict):
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

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> int | list[int]:
        ok_int = isinstance(v, int) and not isinstance(v, bool) and v >= 1
        ok_list = isinstance(v, list) and v and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v)
        if not (ok_int or ok_list):
            raise ValueError("seeds must be a count >= 1 or a non-empty list of integers >= 0")
        return v

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
        per_cell = int(self.budget(budget).get("num_samples", self.search.num_samples))
        return len(self.grid_cells()) * (per_cell if self.sampled_factors else 1)

    def base_values(self, budget: str) -> dict[str, Any]:
        """Fixed settings with the budget's overrides and the seeds (factors not applied)."""
        values = dict(self.fixed) | {"seeds": self.seeds}
        overrides = self.budget(budget)
        overrides.pop("num_samples", None)
        return values | overrides

    def trial_values(self, factors: dict[str, Any], budget: str) -> dict[str, Any]:
        """TrialConfig fields of the trial with these factor values (shorthands resolved)."""
        values = self.base_values(budget)
        for name, value in factors.items():
            f = self.factors.get(name)
            if f is not None and f.levels is not None:
                values |= f.levels[str(value)]
            else:
                values[name] = f.decode(value) if f is not None else value
        return resolve_shorthands(values)

    def trial_config(self, factors: dict[str, Any], budget: str, where: str = "") -> TrialConfig:
        from .config import trial_config

        return trial_config(self.trial_values(factors, budget), where or f"study {self.name}")


def resolve_shorthands(values: dict[str, Any]) -> dict[str, Any]:
    """Expand the shorthands into TrialConfig fields; other fields pass through.

    depth, latent_dim -> latents = [latent_dim] * depth
    hidden_block      -> hidden = [hidden_block] * (number of stochastic layers)
    width, hidden_layers -> hidden = [[width] * hidden_layers] * (number of stochastic layers)
    """
    values = dict(values)
    depth = values.pop("depth", None)
    latent_dim = values.pop("latent_dim", None)
    block = values.pop("hidden_block", None)
    width = values.pop("width", None)
    hidden_layers = values.pop("hidden_layers", None)
    if depth is not None or latent_dim is not None:
        current = list(values.get("latents", [2]))
        d = int(depth) if depth is not None else len(current)
        z = int(latent_dim) if latent_dim is not None else int(current[0])
        values["latents"] = [z] * d
    n_layers = len(values.get("latents", [2]))
    if width is not None or hidden_layers is not None:
        block = [int(width if width is not None else 64)] * int(hidden_layers or 2)
    if block is not None:
        values["hidden"] = [list(block)] * n_layers
    return values
