"""``TrialConfig``: the one description of a trial (data, model, training, evaluation).

Every trial setting is declared once, with its type, bounds, default and help text: here, or,
for a setting of one model kind, in its ``models.registry`` entry (added to ``TrialConfig`` as a
field of that name). The model's and the data's configurations are derived from it by field
name (``architecture`` / ``data_config``: a field of ``ModelConfig`` / ``DataConfig`` takes the
trial setting of the same name; nothing is mapped by hand), the ``python -m study.train``
command line is generated from its fields, and a study's factors, Ray Tune's param space,
MLflow params and Parquet ``config.*`` columns all use these names. ``latents`` / ``hidden``
use the experiment log's notation (``hidden`` nested per layer, or flat where unambiguous; see
``models.config``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from models import ModelConfig, check_config, kind_settings, model_kinds
from models.config import normalize_hidden
from study.core import codec
from study.core.errors import SpecError, field_path
from study.data import IMAGE_DATASETS, DataConfig, x_dim

ACTIVATIONS = ("relu", "silu", "tanh", "elu", "gelu", "leaky_relu")


def _setting(default: Any, help: str, **bounds: Any) -> Any:  # noqa: A002 - argparse's word
    return Field(default, description=help, **bounds)


class _TrialSettings(BaseModel):
    """Every setting of one trial but the model kinds' own (``TrialConfig`` adds those).
    Unknown fields are an error (a typo is never ignored); NaN and infinities are refused
    everywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # data
    dataset: Literal["moons", "spirals", "mnist", "fashion_mnist"] = _setting(
        "spirals", "the data: 2-D curves with an exact density, or binarised images")
    noise: float = _setting(0.05, "std of the Gaussian noise added to Moons/Spirals", ge=0, le=1)
    n_train: int = _setting(10_000, "training points (images: a cap, 0 = all)", ge=0)
    n_val: int = _setting(2_000, "validation points (images: taken from the training set)", ge=1)
    n_test: int = _setting(5_000, "test points (images: a cap, 0 = all)", ge=0)
    data_seed: int = _setting(
        0, "seed of the data draws: 2-D sets are drawn per seed from (data_seed, seed); images "
           "split once", ge=0)
    ood_shifts: tuple[NonNegativeFloat, ...] = _setting(
        (0.25, 0.5, 1.0, 2.0), "distances d of the OOD sets shifted_d (the data translated)")
    ood_offsets: tuple[NonNegativeFloat, ...] = _setting(
        (), "distances d of the OOD sets offset_d (curve points moved d along the normal)")
    binarize: Literal["dynamic", "static", "none"] = _setting(
        "dynamic", "images: a new Bernoulli draw every epoch, one fixed draw, or grey levels")
    exclude_label: int | None = _setting(
        None, "images: train without this class; its test images are the OOD set 'heldout'",
        ge=0, le=9)
    ood_dataset: Literal["mnist", "fashion_mnist"] | None = _setting(
        None, "images: another dataset's test set as an OOD set")
    data_dir: str | None = _setting(
        None, "folder with mnist/ and fashion_mnist/ (default $HVAE_DATA_DIR, else ./data)")

    # model
    kind: str | None = _setting(
        None, "model kind (vae, hvae, avae); unset: vae for one latent layer, hvae for more")
    latents: tuple[int, ...] = _setting((2, 2), "latent size per stochastic layer, bottom first")
    hidden: tuple = _setting(((64, 64), (32, 32)), "hidden widths per stochastic layer")
    likelihood: Literal["gaussian", "bernoulli", "auto"] = _setting(
        "auto", "output likelihood; auto: bernoulli for binarised images, else gaussian")
    variance: Literal["learned", "fixed"] = _setting(
        "learned", "Gaussian output std: learned by the decoder, or fixed at output_std")
    output_std: float = _setting(1.0, "the fixed Gaussian output std (data units)", gt=0)
    min_output_std: float = _setting(
        1e-3, "floor of a learned output std (data units); without one, noise-free data drive it "
              "to 0 and rare reconstructions to -inf (the log's divergence jumps)", ge=0)
    activation: Literal[ACTIVATIONS] = _setting("silu", "hidden-layer nonlinearity")  # type: ignore[valid-type]

    # training
    seeds: tuple[NonNegativeInt, ...] = _setting(
        (0, 1, 2), "one ensemble member per seed; a count N means seeds 0..N-1")
    epochs: int = _setting(100, "passes over the training set", ge=1)
    batch_size: int = _setting(128, "points per minibatch and member", ge=1)
    lr: float = _setting(1e-3, "Adam learning rate", gt=0, le=1)
    lr_schedule: Literal["constant", "cosine"] = _setting(
        "constant", "learning rate per epoch: constant, or cosine decay to lr/100")
    warmup_epochs: float = _setting(0.0, "linear KL warm-up (beta 0 -> 1) over this many epochs",
                                    ge=0)
    free_bits: float = _setting(0.0, "free bits per layer, nats (needs iw_samples = 1)", ge=0)
    iw_samples: int = _setting(1, "importance samples k of the training bound", ge=1)
    kl: Literal["analytic", "sampled"] = _setting(
        "analytic", "KL estimator in training: closed form per layer, or log q - log p")
    grad_clip: float | None = _setting(None, "clip each member's gradient norm to this", gt=0)
    gpu_tf32: bool = _setting(
        True, "on a GPU, training matmuls in TF32 (evaluation always in full float32)")
    patience: int = _setting(
        0, "early stopping: end training when the validation bound (mean over seeds) has not "
        "improved by min_improvement for this many epochs (0: train every epoch)", ge=0)
    min_improvement: float = _setting(
        0.01, "early stopping: the improvement of the validation bound that counts, nats", ge=0)
    restarts: int = _setting(
        1, "initialisations tried per seed: all train side by side for restart_epochs epochs, "
        "then each seed goes on with its one of the best validation bound (1: no restarts)", ge=1)
    restart_epochs: int = _setting(
        30, "restarts: epochs before each seed keeps its best initialisation (at most epochs)",
        ge=1)

    # evaluation
    eval_importance: int = _setting(1000, "importance samples K of the test log-likelihood",
                                    ge=1)
    ood_importance: int = _setting(100, "importance samples K of the OOD likelihood scores", ge=1)
    eval_points: int = _setting(0, "test points evaluated (0 = all)", ge=0)

    @field_validator("latents", mode="before")
    @classmethod
    def _latents(cls, v: Any) -> Any:
        return (v,) if isinstance(v, int) else v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):  # "seeds: 3" means seeds 0, 1, 2
            if v < 1:
                raise ValueError(f"a seed count must be at least 1, got {v}")
            return tuple(range(v))
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str | None) -> str | None:
        if v is not None and v not in model_kinds():
            raise ValueError(f"unknown model kind {v!r}; known: {', '.join(model_kinds())}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> _TrialSettings:
        object.__setattr__(self, "hidden", normalize_hidden(self.latents, self.hidden))
        if self.kind is None:
            object.__setattr__(self, "kind", "vae" if len(self.latents) == 1 else "hvae")
        if len(set(self.seeds)) != len(self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.free_bits > 0 and self.iw_samples > 1:
            raise ValueError("free_bits needs iw_samples = 1")
        if self.likelihood == "bernoulli" and (not self.is_image or self.binarize == "none"):
            raise ValueError("a bernoulli likelihood needs binarized image data")
        for name, (kind, setting) in kind_settings().items():
            if self.kind != kind and getattr(self, name) != setting.default:
                raise ValueError(f"{name} is a setting of model kind {kind}, not {self.kind}")
        check_config(self.architecture())
        return self

    @property
    def is_image(self) -> bool:
        return self.dataset in IMAGE_DATASETS

    @property
    def choice_epoch(self) -> int:
        """The epoch after which each seed keeps its best initialisation (0: no restarts)."""
        return min(self.restart_epochs, self.epochs) if self.restarts > 1 else 0

    def architecture(self) -> ModelConfig:
        """The model's configuration: each ``ModelConfig`` field from the setting of that name,
        but the data's dimensions, the likelihood ``auto`` resolves to and the kind's own
        settings (``options``)."""
        lik = self.likelihood
        if lik == "auto":
            lik = "bernoulli" if self.is_image and self.binarize != "none" else "gaussian"
        own = model_kinds_settings(self.kind)
        derived = {"x_dim": x_dim(self.dataset), "likelihood": lik,
                   "options": tuple((n, getattr(self, n)) for n in own)}
        return ModelConfig(**_by_name(self, ModelConfig, derived))

    def data_config(self) -> DataConfig:
        """The data: each ``DataConfig`` field from the setting of that name."""
        return DataConfig(**_by_name(self, DataConfig, {}))

    def label(self) -> str:
        """The configuration in one line for titles: the data and the model in the log's
        notation, then every other setting that differs from its default (seeds and the data
        folder left out), e.g. ``spirals noise 0.05, hvae z=[2, 2] h=[[64, 64], [32, 32]],
        iw_samples=10``."""
        arch = self.architecture()
        data = self.dataset + (f" noise {self.noise:g}" if not self.is_image else "")
        model = f"{arch.kind} z={list(arch.latents)} h={[list(b) for b in arch.hidden]}"
        shown = {"dataset", "noise", "kind", "latents", "hidden", "seeds", "data_dir"}
        rest = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in self.model_dump(exclude_defaults=True).items() if k not in shown]
        return ", ".join([data, model, *rest])

    def flat(self) -> dict[str, Any]:
        """Scalar-valued settings (lists as JSON text, ``study.core.codec``), for MLflow params
        and Parquet ``config.`` columns."""
        return {k: codec.encode(v) for k, v in self.model_dump().items()}


def model_kinds_settings(kind: str | None) -> list[str]:
    """The names of the settings of model kind ``kind`` (``models.registry``)."""
    return [n for n, (k, _) in kind_settings().items() if k == kind]


def _by_name(cfg: BaseModel, target: type, derived: dict[str, Any]) -> dict[str, Any]:
    """``target``'s fields (a dataclass): ``derived`` where given, else the setting of that
    name (a field with a default and no setting keeps its default)."""
    out = {}
    for f in dataclasses.fields(target):
        if f.name in derived:
            out[f.name] = derived[f.name]
        elif f.name in type(cfg).model_fields:
            out[f.name] = getattr(cfg, f.name)
    return out


def _kind_fields() -> dict[str, Any]:
    """Pydantic fields of every model kind's own settings (``models.registry``)."""
    fields: dict[str, Any] = {}
    for name, (kind, s) in kind_settings().items():
        if name in _TrialSettings.model_fields:
            raise ValueError(f"model kind {kind}'s setting {name!r} is already a trial setting")
        annotation: Any = s.type | None if s.optional else s.type
        fields[name] = (annotation, _setting(s.default, s.help, **s.bounds))
    return fields


#: every trial setting: ``_TrialSettings`` and the model kinds' own settings
TrialConfig = create_model("TrialConfig", __base__=_TrialSettings, __module__=__name__,
                           **_kind_fields())
TrialConfig.__doc__ = """Every setting of one trial, the model kinds' own included (see the
module docstring). Unknown fields are an error; NaN and infinities are refused everywhere."""


def trial_config(values: dict[str, Any], where: str = "trial config") -> TrialConfig:
    """Validate ``values``; a failure is one ``SpecError`` line naming field and value."""
    try:
        return TrialConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        field = field_path(first["loc"]) or "(config)"
        value = first.get("input")
        if first["loc"] == ():  # a whole-model check: name the fields it is about
            named = ("kind", "latents", "hidden", *kind_settings())
            value = {k: values.get(k) for k in named if k in values}
        raise SpecError(f"{where}: field {field!r} = {value!r}: {first['msg']}") from None
