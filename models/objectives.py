"""Objectives and estimators; every value is per ensemble member and in nats.

- ``iw_bound``: the importance-weighted bound with k samples (k=1 is the ELBO),
  log (1/k) sum_s w_s with log w_s = log p(x|z_s) - KL_s.
- ``training_objective``: the loss to minimise, with beta warm-up and free bits.
- ``estimate_log_likelihood``: log p(x) with K importance samples (K=1000 by default) in
  memory-bounded chunks, with the experiment log's "(likelihood, KL)" decomposition; with
  ``prior_layers=k``, the same K-sample estimator of Havtorn et al.'s L>k.
- ``hierarchical_bound`` / ``likelihood_ratio``: L>k and LLR>k = L - L>k of Havtorn et al.
  (2021), per data point, both bounds K-sample importance-sampled estimates (sampled weights,
  log-mean-exp over the K samples), as in their reference implementation's evaluation.

About the KL estimator: with ``sampled`` KL, log w_s is exactly log p(x, z_s) - log q(z_s | x),
so the k-sample bound is a true lower bound that tightens with k. With ``analytic`` KL each
sample's weight uses the closed-form KL of the layer given the sample above; for k=1 that is the
usual lower-variance ELBO, for k>1 it is NOT a bound on log p(x) (it is what the experiment log
calls "broken KL", and it reads too high). Evaluation therefore always uses sampled weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .base import KLEstimator, LatentVariableModel
from .distributions import log_mean_exp

#: Default bound on E x (samples x points) x widest activation per evaluation chunk: small on
#: a CPU (chunks that stay in cache), large on a GPU (few, big kernels; 2^28 float32 = 1 GiB).
DEFAULT_MAX_ELEMENTS = 2**22
DEFAULT_MAX_ELEMENTS_CUDA = 2**28


def iw_bound(
    model: LatentVariableModel, x: Tensor, k: int = 1, kl: KLEstimator = "sampled"
) -> Tensor:
    """``[E, B]`` importance-weighted bound with ``k`` samples (k=1: the ELBO)."""
    fp = model(x, n_samples=k, kl=kl)
    return log_mean_exp(fp.log_weight, dim=1)


def elbo(model: LatentVariableModel, x: Tensor, kl: KLEstimator = "analytic") -> Tensor:
    """``[E, B]`` single-sample ELBO."""
    return iw_bound(model, x, 1, kl)


def beta_schedule(epoch: float, warmup_epochs: float, beta_max: float = 1.0) -> float:
    """Linear KL warm-up: beta = beta_max * min(1, epoch / warmup_epochs); 0 epochs: beta_max.

    ``epoch`` may be fractional (epochs done so far), so beta can rise within an epoch.
    """
    if warmup_epochs <= 0:
        return beta_max
    return beta_max * min(1.0, max(0.0, epoch) / warmup_epochs)


@dataclass
class TrainingTerms:
    """One minibatch's objective. ``loss`` (scalar) is the sum over members of each member's
    mean loss, so each member's gradient is exactly that of its own loss.

    loss_per_member ``[E]`` (differentiable; mask members out of it before summing); bound ``[E]`` the batch-mean k-sample bound at beta=1 (no free
    bits); log_px_z ``[E]``; kl_layers ``[E, L]`` batch-mean KL per layer.
    """

    loss: Tensor
    loss_per_member: Tensor
    bound: Tensor
    log_px_z: Tensor
    kl_layers: Tensor
    layer_names: list[str]


def training_objective(
    model: LatentVariableModel,
    x: Tensor,
    n_samples: int = 1,
    kl: KLEstimator = "analytic",
    beta: float | Tensor = 1.0,
    free_bits: float | Tensor = 0.0,
) -> TrainingTerms:
    """Negative bound to minimise for a batch ``x`` (``[B, D]`` or ``[E, B, D]``).

    beta: weight on the KL terms (warm-up), one for every member or one per member (``[E]``).
        With n_samples = k > 1 the loss is the negative k-sample bound with weights
        log p(x|z) - beta * KL.
    free_bits: lambda >= 0 nats per layer (Kingma et al. 2016), one for every member or one per
        member (``[E]``): each layer's batch-mean KL enters the loss as max(KL_l, lambda). Only
        defined for n_samples = 1.
    """
    per_member_fb = torch.is_tensor(free_bits)
    if n_samples > 1 and (bool((free_bits > 0).any()) if per_member_fb else free_bits > 0):
        raise ValueError("free bits are defined for the single-sample ELBO only (n_samples=1)")
    fp = model(x, n_samples=n_samples, kl=kl)
    kl_stack = torch.stack(fp.kl, dim=-1)  # [E, S, B, L]
    kl_layers = kl_stack.mean(dim=(1, 2))  # [E, L]
    if torch.is_tensor(beta):
        beta = beta.to(kl_layers.dtype)
    if n_samples == 1:
        if per_member_fb:
            penalty = torch.maximum(kl_layers, free_bits.to(kl_layers.dtype)[:, None])
        else:
            penalty = kl_layers.clamp(min=free_bits) if free_bits > 0 else kl_layers
        loss_per_member = -(fp.log_px_z.mean(dim=(1, 2)) - beta * penalty.sum(-1))
    else:
        b = beta.view(-1, 1, 1) if torch.is_tensor(beta) else beta
        log_w = fp.log_px_z - b * kl_stack.sum(-1)
        loss_per_member = -log_mean_exp(log_w, dim=1).mean(-1)
    with torch.no_grad():
        bound = log_mean_exp(fp.log_weight, dim=1).mean(-1)
    return TrainingTerms(
        loss=loss_per_member.sum(),
        loss_per_member=loss_per_member,
        bound=bound,
        log_px_z=fp.log_px_z.detach().mean(dim=(1, 2)),
        kl_layers=kl_layers.detach(),
        layer_names=fp.layer_names,
    )


@dataclass
class LikelihoodEstimate:
    """The log's "ELBO (IW=K), (likelihood, KL)" per member and data point.

    log_px ``[E, B]``: log (1/K) sum_k w_k, the K-sample estimate of log p(x) (of L>k when
    ``prior_layers`` = k > 0).
    fewer ``{k: [E, B]}``: the same estimate from the first k of those K samples (for each k
    asked for): an independent-sample estimate with k samples, at no extra cost.
    log_px_z ``[E, B]``: mean over the K samples of log p(x | z_k).
    kl ``[E, B]``: mean over the K samples of log q(z_k|x) - log p(z_k); kl_layers ``[E, L, B]``
    (zero for the ``prior_layers`` lowest layers).
    """

    log_px: Tensor
    log_px_z: Tensor
    kl: Tensor
    kl_layers: Tensor
    n_importance: int
    fewer: dict[int, Tensor] = field(default_factory=dict)
    prior_layers: int = 0


def chunk_sizes(n_members: int, n_points: int, n_samples: int, widest: int,
                max_elements: int) -> tuple[int, int]:
    """(points, samples) per chunk so that E * points * samples * widest <= max_elements
    (at least one of each)."""
    per = n_members * widest
    samples = min(n_samples, max(1, max_elements // per))
    points = min(n_points, max(1, max_elements // (per * samples)))
    return points, samples


@torch.no_grad()
def estimate_log_likelihood(
    model: LatentVariableModel,
    x: Tensor,
    n_importance: int = 1000,
    max_elements: int | None = None,
    fewer: tuple[int, ...] = (),
    prior_layers: int = 0,
) -> LikelihoodEstimate:
    """log p(x) with K = ``n_importance`` importance samples from q (sampled log weights).

    ``x`` is ``[B, D]`` (shared by all members) or ``[E, B, D]``. Points and samples are
    processed in chunks of at most ``max_elements`` activations (default by device, see
    ``DEFAULT_MAX_ELEMENTS``), so peak memory is bounded whatever K and B are; the log-sum-exp
    over samples accumulates across chunks. ``fewer``: also the estimates from the first k
    samples, for each k (e.g. (1, 100): the IW=1 and K=100 estimates of the same pass).
    ``prior_layers`` = k > 0: the same estimator of L>k instead (``hierarchical_bound``).
    """
    _check_prior_layers(model, prior_layers)
    x = model.ensemble_input(x)
    E, B = x.shape[:2]
    L = len(model.layer_names)
    if max_elements is None:
        max_elements = DEFAULT_MAX_ELEMENTS_CUDA if x.is_cuda else DEFAULT_MAX_ELEMENTS
    n_points, n_samples = chunk_sizes(E, B, n_importance, model.widest, max_elements)
    # Outputs are allocated once, before the chunk loop: small long-lived tensors allocated
    # between the large per-chunk ones fragment the CPU heap and RSS then grows with B.
    fewer = tuple(k for k in fewer if 0 < k <= n_importance)
    log_px = x.new_empty(E, B)
    log_px_z = x.new_zeros(E, B)
    kl_layers = x.new_zeros(E, L, B)
    partial = {k: x.new_empty(E, B) for k in fewer}
    for start in range(0, B, n_points):
        stop = min(B, start + n_points)
        xb = x[:, start:stop]
        lse = x.new_full((E, stop - start), -math.inf)
        lse_k = {k: x.new_full((E, stop - start), -math.inf) for k in fewer}
        done = 0
        while done < n_importance:
            s = min(n_samples, n_importance - done)
            fp = model(xb, n_samples=s, kl="sampled", prior_layers=prior_layers)
            log_w = fp.log_weight
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, dim=1))
            for k in fewer:
                if done < k:
                    lse_k[k] = torch.logaddexp(lse_k[k], torch.logsumexp(log_w[:, : k - done], 1))
            log_px_z[:, start:stop] += fp.log_px_z.sum(1)
            kl_layers[:, :, start:stop] += torch.stack(fp.kl, dim=1).sum(2)
            done += s
            del fp, log_w
        log_px[:, start:stop] = lse - math.log(n_importance)
        for k in fewer:
            partial[k][:, start:stop] = lse_k[k] - math.log(k)
    log_px_z /= n_importance
    kl_layers /= n_importance
    return LikelihoodEstimate(log_px=log_px, log_px_z=log_px_z, kl=kl_layers.sum(1),
                              kl_layers=kl_layers, n_importance=n_importance, fewer=partial,
                              prior_layers=prior_layers)


def _check_prior_layers(model: LatentVariableModel, k: int) -> None:
    """L>k is defined for 0 <= k < L stochastic layers of a hierarchical model (k = 0: any)."""
    n_layers = len(model.layer_names)
    if k != 0 and (not model.hierarchical or not 0 <= k < n_layers):
        raise ValueError(
            f"L>k needs a hierarchical model and 0 <= k < {n_layers} layers, got k={k} "
            f"for {type(model).__name__}"
        )


def hierarchical_bound(
    model: LatentVariableModel,
    x: Tensor,
    k: int,
    n_importance: int,
    max_elements: int | None = None,
) -> Tensor:
    """``[E, B]`` L>k (Havtorn et al. 2021), nats: ``estimate_log_likelihood(prior_layers=k)``,
    the K = ``n_importance``-sample importance estimate (same chunks, no gradients) with z_{>k}
    from the posterior, the k lowest layers at the mean of their conditional prior
    p(z_l | z_{l+1}), and log weights log p(x | z) - sum over the layers above k of
    (log q - log p). As K grows it tends to the log-likelihood of x under the generative model
    whose k lowest layers are those means (deterministic given z_{k+1}). k = 0 is the K-sample
    log p(x) estimate; k must be below the number of stochastic layers of a hierarchical
    model."""
    return estimate_log_likelihood(model, x, n_importance, max_elements, prior_layers=k).log_px


def likelihood_ratio(
    model: LatentVariableModel,
    x: Tensor,
    k: int,
    n_importance: int,
    max_elements: int | None = None,
    log_px: Tensor | None = None,
) -> Tensor:
    """``[E, B]`` LLR>k = L - L>k (Havtorn et al. 2021), nats, both bounds K =
    ``n_importance``-sample importance estimates with sampled weights (independent samples; no
    gradients).

    log_px: ``[E, B]`` an estimate of L = log p(x) at these points already computed with the
        same K (e.g. the ``neg_ll`` OOD score's), used instead of a second one; None: estimated
        here.
    """
    if k < 1:
        raise ValueError(f"LLR>k needs k >= 1, got k={k}")
    if log_px is None:
        log_px = hierarchical_bound(model, x, 0, n_importance, max_elements)
    return log_px - hierarchical_bound(model, x, k, n_importance, max_elements)
