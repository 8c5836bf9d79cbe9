"""Datasets of the experiment log: Moons, Spirals (with exact densities), MNIST, Fashion-MNIST.

``load_data(DataConfig) -> DataBundle``: train / validation / test arrays, labels, OOD sets and,
for the 2-D datasets, the exact log-density. The data are the same for every seed of a trial
(``DataConfig.seed``); members differ in initialisation, data order and noise only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..errors import DatasetError
from . import ood
from .idx import data_dir, load_split
from .synthetic import CURVES, CurveDataset

DatasetName = Literal["moons", "spirals", "mnist", "fashion_mnist"]
IMAGE_DATASETS = ("mnist", "fashion_mnist")
#: the OOD set ``widened``: the curves with the noise std times this
OOD_WIDEN = 3.0


def x_dim(dataset: str) -> int:
    """Data dimensions D of a dataset (2 for the curves, 784 for 28x28 images)."""
    if dataset in CURVES:
        return 2
    if dataset in IMAGE_DATASETS:
        return 28 * 28
    raise DatasetError(f"unknown dataset {dataset!r}; known: {sorted(CURVES) + list(IMAGE_DATASETS)}")


@dataclass(frozen=True)
class DataConfig:
    """What data a trial trains and is evaluated on; derived from ``TrialConfig`` (which holds
    the defaults and the meaning of each setting).

    noise: std of the isotropic Gaussian noise of Moons/Spirals (original coordinates).
    n_train / n_val / n_test: sizes for the 2-D sets; for images n_val is taken from the 60,000
        training images and n_train / n_test cap the rest (0 = all).
    ood_shifts: distances d of the ``shifted_d`` OOD sets (2-D); ood_offsets: of ``offset_d``.
    binarize: images only: ``dynamic`` (a new Bernoulli draw every epoch), ``static`` (one draw,
        fixed) or ``none`` (grey levels; only with a Gaussian likelihood).
    exclude_label: images: train without this class; its test images become the OOD set
        ``heldout``.
    ood_dataset: images: another dataset's test set as OOD (e.g. mnist for fashion_mnist).
    """

    dataset: DatasetName
    noise: float
    n_train: int
    n_val: int
    n_test: int
    seed: int
    ood_shifts: tuple[float, ...]
    ood_offsets: tuple[float, ...]
    binarize: Literal["dynamic", "static", "none"]
    exclude_label: int | None
    ood_dataset: str | None
    data_dir: str | None
    ood_widen: float = OOD_WIDEN
    allow_download: bool = True


@dataclass
class DataBundle:
    """Arrays are float32 ``[N, D]`` and int64 labels ``[N]``; ``ood`` maps a name to ``[M, D]``.

    exact_log_density: 2-D only with noise > 0: x ``[N, 2]`` -> log p(x) ``[N]`` in nats.
    curve / noise: 2-D only, the generating curve and its noise std.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ood: dict[str, np.ndarray] = field(default_factory=dict)
    binarize: str = "none"
    curve: CurveDataset | None = None
    noise: float | None = None

    @property
    def x_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def exact_log_density(self) -> Callable[[np.ndarray], np.ndarray] | None:
        if self.curve is None or not self.noise:
            return None
        from .exact_density import exact_log_density  # torch, imported when needed

        curve, noise = self.curve, self.noise
        return lambda x: exact_log_density(x, curve, noise)


def _synthetic(cfg: DataConfig) -> DataBundle:
    curve = CURVES[cfg.dataset]
    if cfg.noise < 0:
        raise DatasetError(f"noise must be >= 0, got {cfg.noise}")
    # separate, fixed streams for each split and OOD set, derived from the data seed
    rngs = [np.random.default_rng([cfg.seed, i]) for i in range(4)]
    x_tr, y_tr = curve.sample(cfg.n_train, cfg.noise, rngs[0])
    x_va, y_va = curve.sample(cfg.n_val, cfg.noise, rngs[1])
    x_te, y_te = curve.sample(cfg.n_test, cfg.noise, rngs[2])
    n_ood, rng = cfg.n_test, rngs[3]
    sets = {f"shifted_{d:g}": ood.shifted(curve, n_ood, cfg.noise, d, rng) for d in cfg.ood_shifts}
    sets |= {f"offset_{d:g}": ood.offset(curve, n_ood, cfg.noise, d, rng) for d in cfg.ood_offsets}
    if cfg.ood_widen:
        sets["widened"] = ood.widened(curve, n_ood, cfg.noise, cfg.ood_widen, rng)
    sets["uniform"] = ood.uniform_box(x_tr, n_ood, rng)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    return DataBundle(cfg.dataset, f32(x_tr), y_tr, f32(x_va), y_va, f32(x_te), y_te,
                      {k: f32(v) for k, v in sets.items()}, "none", curve, cfg.noise)


def _images(cfg: DataConfig) -> DataBundle:
    root = data_dir(cfg.data_dir)
    x_all, y_all = load_split(cfg.dataset, "train", root, cfg.allow_download)
    x_te, y_te = load_split(cfg.dataset, "test", root, cfg.allow_download)
    sets: dict[str, np.ndarray] = {}
    if cfg.exclude_label is not None:
        if not 0 <= cfg.exclude_label <= 9:
            raise DatasetError(f"exclude_label must be 0..9, got {cfg.exclude_label}")
        keep = y_all != cfg.exclude_label
        x_all, y_all = x_all[keep], y_all[keep]
        sets["heldout"] = x_te[y_te == cfg.exclude_label]  # same name whatever the label
        x_te, y_te = x_te[y_te != cfg.exclude_label], y_te[y_te != cfg.exclude_label]
    if cfg.ood_dataset:
        if cfg.ood_dataset == cfg.dataset or cfg.ood_dataset not in IMAGE_DATASETS:
            raise DatasetError(f"ood_dataset must be another image dataset, got {cfg.ood_dataset!r}")
        sets[cfg.ood_dataset] = load_split(cfg.ood_dataset, "test", root, cfg.allow_download)[0]
    perm = np.random.default_rng([cfg.seed, 0]).permutation(len(x_all))
    val, train = perm[: cfg.n_val], perm[cfg.n_val :]
    if cfg.n_train:
        train = train[: cfg.n_train]
    if cfg.n_test:
        x_te, y_te = x_te[: cfg.n_test], y_te[: cfg.n_test]
        sets = {k: v[: cfg.n_test] for k, v in sets.items()}
    bundle = DataBundle(cfg.dataset, x_all[train], y_all[train], x_all[val], y_all[val],
                        x_te, y_te, sets, cfg.binarize)
    if cfg.binarize != "none":
        # evaluation sets get one fixed Bernoulli draw (seeded), so every member and epoch is
        # scored on the same binary images; static binarisation also fixes the training set.
        rng = np.random.default_rng([cfg.seed, 1])
        draw = lambda a: (rng.random(a.shape, dtype=np.float32) < a).astype(np.float32)  # noqa: E731
        bundle.x_val, bundle.x_test = draw(bundle.x_val), draw(bundle.x_test)
        bundle.ood = {k: draw(v) for k, v in bundle.ood.items()}
        if cfg.binarize == "static":
            bundle.x_train = draw(bundle.x_train)
    return bundle


def load_data(cfg: DataConfig) -> DataBundle:
    """Build or load the dataset ``cfg`` names (see ``DataConfig``)."""
    if cfg.dataset in CURVES:
        return _synthetic(cfg)
    if cfg.dataset in IMAGE_DATASETS:
        return _images(cfg)
    raise DatasetError(f"unknown dataset {cfg.dataset!r}; known: {sorted(CURVES) + list(IMAGE_DATASETS)}")


__all__ = ["CURVES", "DataBundle", "DataConfig", "DatasetError", "load_data", "x_dim"]
