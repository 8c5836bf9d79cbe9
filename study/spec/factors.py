"""A study's factors (grid, levels, or sampled by Optuna) and the shorthands of settings."""

from __future__ import annotations

import builtins
from typing import Any

from pydantic import model_validator

from study.core import codec
from study.core.strict import Strict

SHORTHANDS = {"depth", "latent_dim", "hidden_block", "width", "hidden_layers"}


class Factor(Strict):
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
        return [codec.encode(v) for v in self.grid or []]

    def decode(self, value: Any) -> Any:
        """The setting a grid value stands for (inverse of the JSON encoding in ``values``)."""
        if isinstance(value, str) and self.grid is not None and \
                any(isinstance(v, (list, dict)) for v in self.grid):
            return codec.decode(value)
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
