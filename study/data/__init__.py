"""Datasets of the experiment log: Moons, Spirals (with exact densities), MNIST, Fashion-MNIST.

``load_data(DataConfig) -> DataBundle``: train / validation / test arrays, labels, OOD sets and,
for the 2-D datasets, the exact log-density. The data are the same for every seed of a trial
(``DataConfig.data_seed``); members differ in initialisation, data order and noise only.

May import: ``study.core`` (NumPy arrays out; PyTorch only to compute the exact densities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from study.core.errors import DatasetError
from study.data import ood
from study.data.idx import data_dir, load_split
from study.data.synthetic import CURVES, CurveDataset

DatasetName = Literal["moons", "spirals", "mnist", "fashion_mnist"]
IMAGE_DATASETS = ("mnist", "fashion_mnist")



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

    seeds: the trial's seeds. Moons and Spirals are drawn once per seed: seed s gets the draw
    (data_seed, s) of every split and OOD set, the same in every configuration of a study, so
    configurations are compared seed by seed on common random numbers and seeds are independent
    replicates of the data as well as of the training. Images are one fixed dataset for all.
    """

    dataset: DatasetName
    noise: float
    n_train: int
    n_val: int
    n_test: int
    data_seed: int
    seeds: tuple[int, ...]
    ood_shifts: tuple[float, ...]
    ood_offsets: tuple[float, ...]
    binarize: Literal["dynamic", "static", "none"]
    exclude_label: int | None
    ood_dataset: str | None
    data_dir: str | None
    allow_download: bool = True


@dataclass
class DataBundle:
    """The arrays of a trial. Moons/Spirals: per seed, ``x_*`` ``[E, N, 2]`` float32 and
    ``y_*`` ``[E, N]`` int64, ``ood[name]`` ``[E, M, 2]``; images: shared by every seed,
    ``[N, D]`` / ``[N]`` / ``[M, D]``. ``member(e)`` gives one seed's view either way.

    curve / noise / boxes: 2-D only: the generating curve, its noise std and, per seed, the box
    of the OOD set ``uniform`` (``[E, 2, 2]``); ``exact_log_density`` and ``ood_log_density``
    are then defined (for noise > 0).
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
    boxes: np.ndarray | None = None

    @property
    def per_member(self) -> bool:
        return self.x_train.ndim == 3

    @property
    def x_dim(self) -> int:
        return self.x_train.shape[-1]

    def member(self, e: int) -> DataBundle:
        """Seed ``e``'s data (2-D arrays); images: the shared arrays."""
        return self._indexed(e, slice(e, e + 1))

    def members(self, idx: np.ndarray) -> DataBundle:
        """The data of an ensemble whose member m has seed ``idx[m]``'s data (2-D: every
        per-seed array indexed; images: the shared arrays)."""
        return self._indexed(idx, idx)

    def _indexed(self, idx: int | np.ndarray, box_idx: slice | np.ndarray) -> DataBundle:
        """Every per-seed array indexed by ``idx`` (the OOD boxes by ``box_idx``, which keeps
        their seed dimension); images: ``self``."""
        if not self.per_member:
            return self
        return DataBundle(self.name, self.x_train[idx], self.y_train[idx], self.x_val[idx],
                          self.y_val[idx], self.x_test[idx], self.y_test[idx],
                          {k: v[idx] for k, v in self.ood.items()}, self.binarize, self.curve,
                          self.noise, None if self.boxes is None else self.boxes[box_idx])

    @property
    def exact_log_density(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """x ``[N, 2]`` -> log p(x) ``[N]`` (nats) of the training distribution."""
        if self.curve is None or not self.noise:
            return None
        from study.data.exact_density import (
            exact_log_density,  # torch, imported when needed
        )

        curve, noise = self.curve, self.noise
        return lambda x: exact_log_density(x, curve, noise)

    def ood_log_density(self, name: str, x: np.ndarray, member: int = 0) -> np.ndarray:
        """log p(x) ``[N]`` (nats) of OOD set ``name`` of seed ``member``'s draw."""
        if self.curve is None or not self.noise:
            raise ValueError("OOD densities are defined for noisy 2-D data only")
        return ood.log_density(name, x, self.curve, self.noise, self.boxes[member])


def _draw(curve: CurveDataset, cfg: DataConfig, seed: int) -> tuple:
    """One seed's draw of every split and OOD set: separate, fixed streams per split."""
    rngs = [np.random.default_rng([cfg.data_seed, seed, i]) for i in range(4)]
    x_tr, y_tr = curve.sample(cfg.n_train, cfg.noise, rngs[0])
    x_va, y_va = curve.sample(cfg.n_val, cfg.noise, rngs[1])
    x_te, y_te = curve.sample(cfg.n_test, cfg.noise, rngs[2])
    n_ood, rng = cfg.n_test, rngs[3]
    sets = {f"shifted_{d:g}": ood.shifted(curve, n_ood, cfg.noise, d, rng) for d in cfg.ood_shifts}
    sets |= {f"offset_{d:g}": ood.offset(curve, n_ood, cfg.noise, d, rng) for d in cfg.ood_offsets}
    sets["widened"] = ood.widened(curve, n_ood, cfg.noise, rng)
    box = ood.box_of(x_tr)
    sets["uniform"] = ood.uniform_box(box, n_ood, rng)
    return x_tr, y_tr, x_va, y_va, x_te, y_te, sets, box


def _synthetic(cfg: DataConfig) -> DataBundle:
    curve = CURVES[cfg.dataset]
    if cfg.noise < 0:
        raise DatasetError(f"noise must be >= 0, got {cfg.noise}")
    draws = [_draw(curve, cfg, s) for s in cfg.seeds]
    stack = lambda i, dtype: np.stack([d[i] for d in draws]).astype(dtype)  # noqa: E731
    sets = {k: np.stack([d[6][k] for d in draws]).astype(np.float32) for k in draws[0][6]}
    return DataBundle(cfg.dataset, stack(0, np.float32), stack(1, np.int64),
                      stack(2, np.float32), stack(3, np.int64), stack(4, np.float32),
                      stack(5, np.int64), sets, "none", curve, cfg.noise, stack(7, np.float64))


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
    perm = np.random.default_rng([cfg.data_seed, 0]).permutation(len(x_all))
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
        rng = np.random.default_rng([cfg.data_seed, 1])
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
