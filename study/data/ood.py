"""Out-of-distribution sets for the 2-D datasets, at a controllable distance from the data.

- ``shifted_d``: the training distribution translated by distance d along a fixed direction
  (unit vector at ``angle`` radians, 45 degrees by default); d=0 is in-distribution.
- ``offset_d``: points on the curve moved by exactly d along the curve's normal (random side),
  plus the training noise: every point is d from where it was generated.
- ``widened``: the curves with the noise std multiplied by ``WIDEN``.
- ``uniform``: uniform on the data's bounding box widened by ``margin`` on every side.

Each set's exact density is known (``log_density``), so the Neyman-Pearson detector, the best
any detector can be, scores log p_out(x) - log p_in(x) (``study.trial.evaluate``).
"""

from __future__ import annotations

import math

import numpy as np

from study.data.synthetic import CurveDataset


def shifted(curve: CurveDataset, n: int, sigma: float, d: float, rng: np.random.Generator,
            angle: float = math.pi / 4) -> np.ndarray:
    """``[n, 2]``: the data distribution translated by ``d`` along ``(cos angle, sin angle)``."""
    x, _ = curve.sample(n, sigma, rng)
    return x + d * np.array([math.cos(angle), math.sin(angle)])


def offset(curve: CurveDataset, n: int, sigma: float, d: float,
           rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]``: curve points moved ``d`` along the normal (random side), plus noise ``sigma``."""
    arm = rng.integers(0, 2, size=n)
    t = rng.uniform(curve.t_min, curve.t_max, size=n)
    side = rng.choice([-1.0, 1.0], size=(n, 1))
    x = curve.points(t, arm) + side * d * curve.normals(t, arm)
    return x + sigma * rng.standard_normal((n, 2))


#: the OOD set ``widened``: the curves with the noise std times this (0.05 times it, noise-free)
WIDEN = 3.0


def widened(curve: CurveDataset, n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]``: the curves with noise std ``WIDEN * sigma`` (``WIDEN * 0.05`` if sigma=0)."""
    x, _ = curve.sample(n, WIDEN * (sigma if sigma > 0 else 0.05), rng)
    return x


def box_of(x_train: np.ndarray, margin: float = 0.5) -> np.ndarray:
    """``[2, 2]``: (low, high) corners of the bounding box of ``x_train`` widened by ``margin``."""
    return np.stack([x_train.min(0) - margin, x_train.max(0) + margin])


def uniform_box(box: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 2]``: uniform on ``box`` (``box_of``)."""
    return rng.uniform(box[0], box[1], size=(n, 2))


def log_density(name: str, x: np.ndarray, curve: CurveDataset, sigma: float, box: np.ndarray,
                angle: float = math.pi / 4) -> np.ndarray:
    """The exact log-density ``[N]`` (nats) of the OOD set ``name`` (``shifted_d``,
    ``offset_d``, ``widened``, ``uniform``) at ``x`` ``[N, 2]``; the curves need ``sigma > 0``."""
    from study.data.exact_density import exact_log_density

    x = np.asarray(x, dtype=np.float64)
    if name == "uniform":
        inside = np.all((x >= box[0]) & (x <= box[1]), axis=1)
        return np.where(inside, -np.log(np.prod(box[1] - box[0])), -np.inf)
    if name == "widened":
        return exact_log_density(x, curve, WIDEN * (sigma if sigma > 0 else 0.05))
    kind, d = name.rsplit("_", 1)
    d = float(d)
    if kind == "shifted":
        return exact_log_density(x - d * np.array([math.cos(angle), math.sin(angle)]), curve, sigma)
    if kind == "offset":
        return exact_log_density(x, curve, sigma, offset=d)
    raise ValueError(f"no density for OOD set {name!r}")
