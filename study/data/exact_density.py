"""Exact log-densities of noisy curves by quadrature along the curve, in nats: Moons and
Spirals, and the 2-D OOD sets made from them.

A noisy curve set is a mixture of branches: branch j (weight w_j) draws t ~ U[t_min, t_max]
and adds isotropic Gaussian noise of std sigma to the point c_j(t), so

    log p(x) = log sum_j w_j / (t_max - t_min) * integral N(x; c_j(t), sigma^2 I) dt.

Moons and Spirals are two arms of weight 1/2; the OOD set ``offset_d`` is four branches (each
arm moved by +d or -d along its normal); ``shifted_d`` and ``widened`` are the same curves
translated or with a larger sigma. The integral is computed on a grid fine enough that
neighbouring curve points are at most sigma/8 apart. Between two grid points the log-integrand
is taken as linear and exp of it integrated exactly ("exponential trapezoid"): as accurate as
the trapezoid rule where the integrand is a resolved Gaussian bump, and still exact where it is
a steep exponential, which is what a point far off the curve sees at the end of an arm. Only
segments within ``CUTOFF`` nats of a point's largest log-integrand are integrated (the rest add
less than e^-CUTOFF relative), which makes small sigmas cheap. All in float64 with
log-sum-exp; tests/test_data.py checks it against adaptive quadrature (within 0.01 nats) and
DESIGN.md's reference means. Defined for sigma > 0; a noise-free curve has no density in 2-D.

The densities are model-free: every configuration of a study evaluates them at the same
per-seed test and OOD points (common random numbers), so a process keeps the last
``CACHE_SIZE`` results keyed by the points' bytes and the curve, sigma and offset, and a
worker that runs many configurations computes each seed's references once (in
``latent_pockets`` they were most of a trial's evaluation).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from study.data.synthetic import CurveDataset

POINTS_PER_SIGMA = 8
MIN_GRID = 2000
#: segments whose log-integrand is this far below a point's largest one are left out
CUTOFF = 50.0
#: densities a process keeps (each ``[N]`` float64, N <= a few thousand: a few MB in all)
CACHE_SIZE = 256

_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

Branch = Callable[[np.ndarray], np.ndarray]  # t [G] -> points [G, 2]


def exact_log_density(x: np.ndarray, curve: CurveDataset, sigma: float, offset: float = 0.0,
                      chunk: int = 1024) -> np.ndarray:
    """log p(x) ``[N]`` (nats, original coordinates) at ``x`` ``[N, 2]`` of ``curve`` with
    noise ``sigma``; with ``offset`` d > 0, of the curve's arms moved by +d or -d along their
    normals (four branches of weight 1/4: the OOD set ``offset_d``)."""
    if sigma <= 0:
        raise ValueError(f"the exact density needs noise sigma > 0, got {sigma}")
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, 2)
    key = (hashlib.blake2b(x.tobytes(), digest_size=16).digest(), len(x), curve, float(sigma),
           float(offset))
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key].copy()
    out = _log_density(x, curve, float(sigma), float(offset), chunk)
    _cache[key] = out.copy()
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return out


def _log_density(x: np.ndarray, curve: CurveDataset, sigma: float, offset: float,
                 chunk: int) -> np.ndarray:
    """``exact_log_density`` computed (no cache)."""
    grid, seg_const = _quadrature(curve, sigma, offset)
    n_branches = seg_const.shape[0]
    xt = torch.as_tensor(x)
    out = torch.empty(len(xt), dtype=torch.float64)
    seg_const = seg_const.reshape(-1)
    for start in range(0, len(xt), chunk):
        xs = xt[start : start + chunk]
        d2 = torch.cdist(xs, grid, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        log_f = (-0.5 / sigma**2 * d2).view(len(xs), n_branches, -1)  # [c, J, G]
        # a segment joins grid points k and k+1 of one branch: [c, J*(G-1)]
        a, b = log_f[:, :, :-1].reshape(len(xs), -1), log_f[:, :, 1:].reshape(len(xs), -1)
        top = torch.maximum(a, b)
        rowmax = top.max(dim=1, keepdim=True).values
        rows, segs = torch.nonzero(top > rowmax - CUTOFF, as_tuple=True)
        aa, bb = a[rows, segs], b[rows, segs]
        delta = (bb - aa).abs().clamp(min=1e-12)
        seg = torch.maximum(aa, bb) + torch.log(-torch.expm1(-delta) / delta) + seg_const[segs]
        shift = rowmax[rows, 0]
        total = torch.zeros(len(xs), dtype=torch.float64).index_add_(0, rows, torch.exp(seg - shift))
        out[start : start + chunk] = torch.log(total) + rowmax[:, 0]
    return out.numpy()


def _branches(curve: CurveDataset, offset: float) -> tuple[list[Branch], list[float], float]:
    """(branch curves, weights, speed bound) of ``curve``, or of its offset arms."""
    if offset == 0:
        return list(curve.arms), [0.5, 0.5], curve.max_speed

    def moved(arm: int, side: float) -> Branch:
        return lambda t: curve.points(t, np.full(len(t), arm)) + \
            side * offset * curve.normals(t, np.full(len(t), arm))

    branches = [moved(a, s) for a in (0, 1) for s in (-1.0, 1.0)]
    # an offset arm moves at most (1 + offset * curvature) times as fast; curvature <= 2 here
    return branches, [0.25] * 4, curve.max_speed * (1 + 2 * offset)


@functools.lru_cache(maxsize=32)
def _quadrature(curve: CurveDataset, sigma: float, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid points ``[J*G, 2]``, branch by branch; per segment the log of w_j h / length and
    of the Gaussian normaliser ``[J, G-1]``), built once per (curve, sigma, offset) in a
    process (a few MB)."""
    branches, weights, max_speed = _branches(curve, offset)
    length = curve.t_max - curve.t_min
    n_grid = max(MIN_GRID, int(math.ceil(max_speed * length * POINTS_PER_SIGMA / sigma)) + 1)
    t = np.linspace(curve.t_min, curve.t_max, n_grid)
    h = t[1] - t[0]
    grid = torch.cat([torch.from_numpy(b(t)) for b in branches])
    seg_const = torch.stack([torch.full((n_grid - 1,), math.log(w * h / length), dtype=torch.float64)
                             for w in weights]) - math.log(2 * math.pi * sigma**2)
    return grid, seg_const
