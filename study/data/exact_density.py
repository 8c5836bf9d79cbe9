"""The exact log-density of Moons and Spirals by quadrature along the curve, in nats.

log p(x) = log sum_arm 1/2 * 1/(t_max - t_min) * integral N(x; c_arm(t), sigma^2 I) dt

computed on a grid fine enough that neighbouring curve points are at most sigma/8 apart. Between
two grid points the log-integrand is taken as linear and exp of it integrated exactly
("exponential trapezoid"): as accurate as the trapezoid rule where the integrand is a resolved
Gaussian bump, and still exact where it is a steep exponential, which is what a point far off
the curve sees at the end of an arm. All in float64 with log-sum-exp; tests/test_data.py checks
it against adaptive quadrature (within 0.01 nats) and DESIGN.md's reference means. Defined for
sigma > 0; the noise-free curve has no density in 2-D.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .synthetic import CurveDataset

POINTS_PER_SIGMA = 8
MIN_GRID = 2000


def exact_log_density(x: np.ndarray, curve: CurveDataset, sigma: float,
                      chunk: int = 512) -> np.ndarray:
    """log p(x) ``[N]`` (nats, original coordinates) of ``curve`` with noise ``sigma`` at ``x``
    ``[N, 2]``."""
    if sigma <= 0:
        raise ValueError(f"the exact density needs noise sigma > 0, got {sigma}")
    length = curve.t_max - curve.t_min
    n_grid = max(MIN_GRID, int(math.ceil(curve.max_speed * length * POINTS_PER_SIGMA / sigma)) + 1)
    t = np.linspace(curve.t_min, curve.t_max, n_grid)
    arms = [torch.from_numpy(curve.arms[a](t)) for a in (0, 1)]  # [G, 2] each
    # 1/2 (arm) * 1/length (uniform t) * h (segment width) * N(x; c, sigma^2 I) normaliser
    log_const = math.log(0.5 / length * (t[1] - t[0])) - math.log(2 * math.pi * sigma**2)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64))
    out = torch.empty(len(xt), dtype=torch.float64)
    for start in range(0, len(xt), chunk):
        xs = xt[start : start + chunk]
        per_arm = []
        for centres in arms:
            d2 = torch.cdist(xs, centres, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
            per_arm.append(_log_segment_integrals(-0.5 * d2 / sigma**2))  # [c, G-1]
        out[start : start + chunk] = torch.logsumexp(torch.cat(per_arm, dim=1), dim=1) + log_const
    return out.numpy()


def _log_segment_integrals(log_f: torch.Tensor) -> torch.Tensor:
    """log of (1/h) integral over each grid segment of exp(log-linear interpolant): ``[c, G-1]``.

    For end values a, b: exp(max) * (1 - exp(-|b - a|)) / |b - a| (-> exp(a) as b -> a)."""
    a, b = log_f[:, :-1], log_f[:, 1:]
    delta = (b - a).abs().clamp(min=1e-12)
    return torch.maximum(a, b) + torch.log(-torch.expm1(-delta) / delta)
