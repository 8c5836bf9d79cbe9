"""LLR>k = L - L>k with K importance samples (Havtorn et al. 2021): both bounds converge as K
grows, K = 1 is the old single-sample definition, L>0 is the log p(x) estimate, and the
memory-bounded chunks do not change the estimator. "Same draws" means the model's member noise
streams restarted from one seed (``model.noise.forked(seed)``)."""

from __future__ import annotations

import math

import pytest
import torch
from configs import model_config

from models import (
    HVAE,
    build_model,
    estimate_log_likelihood,
    hierarchical_bound,
    likelihood_ratio,
    training_objective,
)
from models.distributions import inverse_positive_std

REPEATS = 20


@pytest.fixture(scope="module")
def trained() -> tuple[HVAE, torch.Tensor]:
    """A 2-layer HVAE trained briefly (150 steps, about a second) on a correlated 2-D Gaussian,
    with a fixed output std of 0.3 so that z1 carries information (about 1.5 nats of KL;
    untrained, the importance weights are heavy-tailed and K = 1000 is far from converged), and
    6 points of that Gaussian."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = model_config(x_dim=2, latents=[2, 2], hidden=[[16], [16]], variance="fixed",
                           output_std=0.3)
        model = build_model(cfg, [0])
        target = torch.distributions.MultivariateNormal(
            torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.8], [0.8, 1.0]]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(150):
            opt.zero_grad()
            training_objective(model, target.sample((1, 64))).loss.backward()
            opt.step()
        model.eval()
        x = target.sample((6,))
    return model, x


def _repeated(model: HVAE, x: torch.Tensor, K: int, seed: int) -> torch.Tensor:
    """``[REPEATS, E, B]`` independent K-sample LLR>1 estimates."""
    with model.noise.forked(seed):
        return torch.stack([likelihood_ratio(model, x, 1, K) for _ in range(REPEATS)])


def test_llr_converges_as_k_grows(trained):
    model, x = trained
    est = {K: _repeated(model, x, K, seed=1) for K in (10, 100, 1000)}
    spread = {K: r.std(0) for K, r in est.items()}  # [E, B] per point
    # the spread of a K-sample estimate shrinks about as 1/sqrt(K) (0.1 over a factor 100)
    assert (spread[100] < spread[10]).all() and (spread[1000] < spread[100]).all()
    assert (spread[1000] / spread[10]).median() < 0.2, spread
    with model.noise.forked(2):
        reference = likelihood_ratio(model, x, 1, 20_000)
    # the LLR is not trivially 0 here: L>1 drops z1's posterior sample for its prior mean
    assert reference.abs().max() > 0.5
    # one K=1000 estimate against the reference: its own spread (the reference's is
    # sqrt(1000/20000) = 0.22 of it) and its bias, about spread^2 / 2, well inside 5 spreads
    err = (est[1000][0] - reference).abs()
    assert (err < 5 * spread[1000]).all(), (err, spread[1000])


def test_k1_is_the_single_sample_definition(trained):
    """K = 1: the old definition ELBO - L>k of one posterior sample each, exactly with sampled
    weights (same draws), and in expectation with the old default, the analytic KL."""
    model, x = trained
    with model.noise.forked(3):
        new = likelihood_ratio(model, x, 1, 1)
    with model.noise.forked(3), torch.no_grad():
        old = (model(x, kl="sampled").log_weight[:, 0]
               - model(x, kl="sampled", prior_layers=1).log_weight[:, 0])
    torch.testing.assert_close(new, old)

    n = 4000  # draws per point, as one batch of repeated points
    xr = x.repeat(n, 1)
    with model.noise.forked(4):
        new = likelihood_ratio(model, xr, 1, 1).view(1, n, -1)
    with model.noise.forked(5), torch.no_grad():
        old = (model(xr, kl="analytic").log_weight[:, 0]
               - model(xr, kl="analytic", prior_layers=1).log_weight[:, 0]).view(1, n, -1)
    se = (new.var(1) / n + old.var(1) / n).sqrt()
    assert ((new.mean(1) - old.mean(1)).abs() < 5 * se).all()


def test_l0_is_the_log_likelihood_estimate_and_the_l_side_can_be_shared(trained):
    model, x = trained
    with model.noise.forked(6):
        l0 = hierarchical_bound(model, x, 0, 100)
    with model.noise.forked(6):
        log_px = estimate_log_likelihood(model, x, 100).log_px
    torch.testing.assert_close(l0, log_px, rtol=0, atol=0)
    with model.noise.forked(7):
        alone = likelihood_ratio(model, x, 1, 100)
    with model.noise.forked(7):
        log_px = estimate_log_likelihood(model, x, 100).log_px
        shared = likelihood_ratio(model, x, 1, 100, log_px=log_px)
    torch.testing.assert_close(alone, shared, rtol=0, atol=0)
    est = estimate_log_likelihood(model, x, 100, prior_layers=1)
    assert est.prior_layers == 1 and (est.kl_layers[:, 0] == 0).all()


def test_chunks_accumulate_l_above_k_exactly():
    """A 2-layer HVAE whose L>1 weights are all one known value per point: q(z2|x) = p(z2) =
    N(0, I) and p(z1|z2) has a constant mean, so z1 is fixed and every log weight is
    log p(x | z1). Any chunking of points and samples must give that value."""
    model = build_model(model_config(x_dim=3, latents=[2, 2], hidden=[[8], [8]]), [0, 1])
    with torch.no_grad():
        q2 = model.q_heads[1].net[-1]
        q2.weight.zero_()
        q2.bias[..., :2] = 0.0
        q2.bias[..., 2:] = inverse_positive_std(1.0, model.config.latent_min_std)
        model.p_heads[0].net[-1].weight.zero_()  # the mean (and std) of z1 ignore z2
        x = torch.randn(2, 13, 3)
        z1 = model.p_heads[0](torch.zeros(2, 1, 2)).mean  # [E, 1, 2]
        exact = model.likelihood.log_prob(x, model.decoder(z1))  # [E, 13]
    for max_elements in (10, 1000, 10**7):  # 1 point x 1 sample per chunk ... one chunk
        est = estimate_log_likelihood(model, x, 50, max_elements=max_elements, prior_layers=1)
        torch.testing.assert_close(est.log_px, exact, atol=1e-4, rtol=1e-5)


def test_chunking_leaves_the_estimator_unchanged(trained):
    """Chunks draw the samples in another order, so the same seed gives other draws: a small
    max_elements (one point and 16 samples per chunk) and one chunk for all agree within the
    estimate's spread, for L and L>1."""
    model, x = trained
    spread = _repeated(model, x, 1000, seed=8).std(0)  # of LLR>1 = L - L>1
    for k in (0, 1):
        values = []
        for max_elements in (256, 10**8):
            with model.noise.forked(9):
                values.append(hierarchical_bound(model, x, k, 1000, max_elements=max_elements))
        # the spread of L and of L>1 is at most that of their difference (independent draws)
        assert ((values[0] - values[1]).abs() < 5 * math.sqrt(2) * spread).all(), (k, values)
