"""``TrialConfig``: one flat, validated description of a trial (data, model, training, evaluation).

Flat on purpose: a study's factors, Ray Tune's param space, MLflow params and Parquet columns
all use these field names. ``latents`` / ``hidden`` use the experiment log's notation
(``hidden`` nested per layer, or flat where unambiguous, see ``models.config``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models import ModelConfig
from models.config import normalize_hidden

from .data import IMAGE_DATASETS, DataConfig
from .errors import SpecError


class TrialConfig(BaseModel):
    """Every setting of one trial. Unknown fields are an error (a typo is never ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # data
    dataset: Literal["moons", "spirals", "mnist", "fashion_mnist"] = "spirals"
    noise: float = Field(0.05, ge=0.0, le=1.0)
    n_train: int = Field(10_000, ge=0)
    n_val: int = Field(2_000, ge=1)
    n_test: int = Field(5_000, ge=0)
    data_seed: int = 0
    ood_shifts: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    ood_offsets: tuple[float, ...] = ()
    binarize: Literal["dynamic", "static", "none"] = "dynamic"
    exclude_label: int | None = Field(None, ge=0, le=9)
    ood_dataset: Literal["mnist", "fashion_mnist"] | None = None
    data_dir: str | None = None

    # model
    kind: Literal["vae", "hvae", "avae"] = "hvae"
    latents: tuple[int, ...] = (2, 2)
    hidden: tuple = ((64, 64), (32, 32))
    likelihood: Literal["gaussian", "bernoulli", "auto"] = "auto"
    variance: Literal["learned", "fixed"] = "learned"
    output_std: float = Field(1.0, gt=0)
    min_output_std: float = Field(1e-3, ge=0)
    aux_latents: int | None = Field(None, ge=1)
    activation: Literal["relu", "silu", "tanh", "elu", "gelu", "leaky_relu"] = "silu"

    # training
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0, le=1.0)
    warmup_epochs: float = Field(0.0, ge=0)
    free_bits: float = Field(0.0, ge=0)
    iw_samples: int = Field(1, ge=1)
    kl: Literal["analytic", "sampled"] = "analytic"
    grad_clip: float | None = Field(None, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"

    # evaluation
    eval_importance: int = Field(1000, ge=1)
    ood_importance: int = Field(100, ge=1)
    eval_points: int = Field(0, ge=0)

    @field_validator("latents", mode="before")
    @classmethod
    def _latents(cls, v: Any) -> Any:
        return (v,) if isinstance(v, int) else v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int):  # "seeds: 3" means seeds 0, 1, 2
            return tuple(range(v))
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        object.__setattr__(self, "hidden", normalize_hidden(self.latents, self.hidden))
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.kind in ("vae", "avae") and len(self.latents) != 1:
            raise ValueError(f"a {self.kind} has one stochastic layer, got latents={self.latents}")
        if self.free_bits > 0 and self.iw_samples > 1:
            raise ValueError("free_bits needs iw_samples = 1")
        images = self.dataset in IMAGE_DATASETS
        if self.likelihood == "bernoulli" and (not images or self.binarize == "none"):
            raise ValueError("a bernoulli likelihood needs binarized image data")
        return self

    @property
    def is_image(self) -> bool:
        return self.dataset in IMAGE_DATASETS

    def model_config_for(self, x_dim: int) -> ModelConfig:
        lik = self.likelihood
        if lik == "auto":
            lik = "bernoulli" if self.is_image and self.binarize != "none" else "gaussian"
        return ModelConfig(
            x_dim=x_dim, latents=self.latents, hidden=self.hidden, kind=self.kind,
            likelihood=lik, variance=self.variance, output_std=self.output_std,
            min_output_std=self.min_output_std, aux_latents=self.aux_latents,
            activation=self.activation,
        )

    def data_config(self) -> DataConfig:
        return DataConfig(
            dataset=self.dataset, noise=self.noise, n_train=self.n_train, n_val=self.n_val,
            n_test=self.n_test, seed=self.data_seed, ood_shifts=self.ood_shifts,
            ood_offsets=self.ood_offsets, binarize=self.binarize,
            exclude_label=self.exclude_label, ood_dataset=self.ood_dataset,
            data_dir=self.data_dir,
        )

    def flat(self) -> dict[str, Any]:
        """Scalar-valued params (lists as their repr), e.g. for MLflow and Parquet columns."""
        def listify(v: Any) -> Any:
            return [listify(i) for i in v] if isinstance(v, (tuple, list)) else v

        return {k: str(listify(v)) if isinstance(v, (tuple, list)) else v
                for k, v in self.model_dump().items()}


def trial_config(values: dict[str, Any], where: str = "trial config") -> TrialConfig:
    """Validate ``values``; a failure is one ``SpecError`` line naming field and value."""
    try:
        return TrialConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(config)"
        value = first.get("input")
        raise SpecError(f"{where}: field {field!r} = {value!r}: {first['msg']}") from None
