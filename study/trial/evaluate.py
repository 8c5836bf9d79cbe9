"""Final metrics of a trained ensemble, per member (likelihoods in nats per data point), and
per-sample OOD scores. Each member is evaluated on its own seed's data (2-D data is drawn per
seed; images are shared). What each metric means, and why, is in docs/ARCHITECTURE.md.

Metric names (``Evaluation.members`` keys; ``L`` a layer name such as z1, ``S`` an OOD set,
``F`` a score, ``K`` = ``eval_importance``):

- ``test_ll``: mean test log p(x), K importance samples (sampled weights);
  ``test_ll_lik`` / ``test_ll_kl``: the q-averaged terms of the ELBO, E_q log p(x|z) and
  E_q [log q - log p] (the experiment log's "(likelihood, KL)"; their sum is the ELBO, not
  ``test_ll``); ``kl_L``: that KL per layer.
- ``frac_low_iw1``: fraction of test points whose IW=1 estimate is below -100 while the K=100
  one is not; ``iw_gap``: mean (K=100 estimate - IW=1 estimate).
- ``exact_ll``, ``ll_gap`` (= test_ll - exact_ll, same points): 2-D data with noise > 0.
- ``ll_over_bernoulli`` (images): test_ll minus the mean test log-likelihood of the
  pixel-independent Bernoulli model of the training set (the OOD baseline ``neg_ll_bernoulli``)
  on the same points, nats: > 0 when the model learned more than each pixel's frequency.
- Latent usage, in information: ``active_units_L`` (units whose data-averaged KL exceeds
  ``metrics.ACTIVE_UNIT_KL`` nats), ``kl_from_L`` (KL of L and every layer above it: all the
  information a sample of L can carry), ``class_acc_L`` (held-out k-NN accuracy of the label
  from posterior *samples* of L), ``active_units_burda`` (Burda et al.'s variance criterion, top
  layer only). ``Evaluation.units[L]``: the KL of each unit (``[E, d_L]``, nats).
- ``pocket_mass`` (top layer), ``wrong_sample_frac`` and ``curve_coverage`` (2-D: the
  precision and the recall of ``N_GENERATED`` decoded prior samples); see ``study.trial.metrics``.
- ``divergence_jumps``, ``min_output_std`` (learned variance), ``diverged``, ``diverged_epoch``.
- ``val_gain_tail``: how much the validation bound rose over the last tenth of the epochs, from
  its least-squares trend over the last fifth (nats; about 0 once training has converged, large
  while the model is still learning; ``metrics.tail_gain``).
- OOD, per set S, scores F (higher = more anomalous): ``neg_elbo`` (IW=1), ``neg_ll`` (-log p(x)
  with K_ood = ``ood_importance`` samples: a K-sample estimate, not "the" likelihood), ``llr_k``
  (LLR>k = L - L>k of a hierarchical model, k = 1..L-1, both bounds K_ood-sample importance
  estimates with sampled weights, L the very estimate of ``neg_ll``; with ``kl_above_k``, the
  KL of the layers above k it relies on); images also ``lit_pixels`` and ``neg_ll_bernoulli``
  (complexity baselines: the number of lit pixels and a pixel-independent Bernoulli fitted on
  the training set).
  ``auroc_F_S``, ``auprc_F_S``, ``fpr80_F_S``.
- OOD references (2-D): ``np_auroc_S``, the Neyman-Pearson detector's AUROC (score log p_out -
  log p_in: the best any detector can reach) and ``exact_ll_auroc_S``, the exact -log p_in's
  (the best a likelihood detector can reach), on up to ``REFERENCE_POINTS`` points of each set;
  1 for noise-free data, whose curve has no density (a point on it is never OOD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from models import (
    LatentVariableModel,
    estimate_log_likelihood,
    iw_bound,
    likelihood_ratio,
)
from study.data import DataBundle
from study.spec.config import TrialConfig
from study.spec.evaluation_counts import (
    EMBED_POINTS,
    EMBED_SAMPLES,
    N_GENERATED,
    REFERENCE_POINTS,
)
from study.trial import metrics
from study.trial.records import TrainState

LOW_LL = -100.0
#: Evaluation draws its Monte Carlo samples from this seed, not from the training RNG state,
#: so the metrics are a function of the weights alone: a trial evaluated again after a restore
#: (its driver was killed after training) gets the numbers it got the first time. Each member
#: draws from its own stream seeded by (its seed, EVAL_SEED) (``MemberNoise.forked``), so its
#: draws do not depend on the other members either.
EVAL_SEED = 20_240_601


@dataclass
class Evaluation:
    """``members[name]``: one value per member; ``mean[name]``: over members not diverged;
    ``units[layer]``: per member the KL of each latent unit (nats); ``scores``: a long table
    (equal-length columns seed, set, score, index, value)."""

    members: dict[str, list[float]]
    mean: dict[str, float]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)
    units: dict[str, list[list[float]]] = field(default_factory=dict)


def _member(a: np.ndarray, e: int, shared_ndim: int) -> np.ndarray:
    """Member ``e``'s array when ``a`` has one per member, else ``a`` (shared)."""
    return a[e] if a.ndim > shared_ndim else a


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Apply ``fn`` (points ``[..., b, D]`` -> ``[E, b]``) over ``x``'s points in batches."""
    n = x.shape[-2]
    return torch.cat([fn(x[..., i : i + batch, :]) for i in range(0, n, batch)], dim=1).cpu().numpy()


def ood_scores(model: LatentVariableModel, x: torch.Tensor, ood_importance: int) -> dict[str, np.ndarray]:
    """Per-sample anomaly scores ``[E, N]`` (higher = more OOD), nats: -ELBO (IW=1), -log p(x)
    with K = ``ood_importance`` importance samples and, for each k of a hierarchical model,
    LLR>k = L - L>k with both bounds K-sample estimates (L: the -log p(x) score's own)."""
    with torch.no_grad():
        neg_elbo = -_batched(lambda b: iw_bound(model, b, 1, "analytic"), x)
        log_px = estimate_log_likelihood(model, x, ood_importance).log_px
        out = {"neg_elbo": neg_elbo, "neg_ll": -log_px.cpu().numpy()}
        if model.hierarchical:
            for k in range(1, len(model.layer_names)):
                llr = likelihood_ratio(model, x, k, ood_importance, log_px=log_px)
                out[f"llr_{k}"] = llr.cpu().numpy()
    return out


def evaluate(model: LatentVariableModel, data: DataBundle, cfg: TrialConfig,
             state: TrainState) -> Evaluation:
    """Every final metric of the module docstring, per member, and the per-sample scores.
    Leaves the global RNG state as it found it."""
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), model.noise.forked(EVAL_SEED):
        torch.manual_seed(EVAL_SEED)
        return _evaluate(model, data, cfg, state)


@torch.no_grad()
def _evaluate(model: LatentVariableModel, data: DataBundle, cfg: TrialConfig,
              state: TrainState) -> Evaluation:
    model.eval()
    E, names = model.n_members, list(model.layer_names)
    x_np, y_np = data.x_test, data.y_test
    if cfg.eval_points:
        x_np, y_np = x_np[..., : cfg.eval_points, :], y_np[..., : cfg.eval_points]
    x = torch.from_numpy(x_np).to(model.device)
    m: dict[str, np.ndarray] = {}
    units: dict[str, np.ndarray] = {}
    _likelihood(model, x, cfg, m)
    exact = data.exact_log_density
    if exact is not None:
        exact_test = np.stack([exact(_member(x_np, e, 2)) for e in range(E)])
        m["exact_ll"] = exact_test.mean(1)
        m["ll_gap"] = m["test_ll"] - m["exact_ll"]
    if not data.per_member and data.curve is None:  # images: against the pixel frequencies
        probs = metrics.bernoulli_fit(data.x_train, data.binarize)
        baseline = metrics.bernoulli_neg_ll(x_np, probs).mean()
        m["ll_over_bernoulli"] = m["test_ll"] + baseline
    _latents(model, x[..., :EMBED_POINTS, :], y_np[..., :EMBED_POINTS], names, out=m, units=units)
    if data.curve is not None:
        gen = model.sample(N_GENERATED).x_mean.cpu().numpy()
        sigma = data.noise or 0.0
        m["wrong_sample_frac"] = np.array(
            [metrics.wrong_sample_fraction(gen[e], data.curve, sigma) for e in range(E)])
        m["curve_coverage"] = np.array(
            [metrics.curve_coverage(gen[e], _member(x_np, e, 2), sigma) for e in range(E)])
    scores = _ood(model, data, cfg, x_np, m)
    _stability(state, E, m)

    members = {k: [float(v) for v in vals] for k, vals in m.items()}
    alive = ~m["diverged"].astype(bool)
    mean = {}
    for k, vals in m.items():
        vals = np.asarray(vals, float)
        use = vals[alive] if k not in ("diverged", "diverged_epoch") else vals
        use = use[np.isfinite(use)]
        mean[k] = float(use.mean()) if use.size else float("nan")
    return Evaluation(members, mean, _long_scores(scores, list(cfg.seeds)), names,
                      {k: v.tolist() for k, v in units.items()})


def _likelihood(model: LatentVariableModel, x: torch.Tensor, cfg: TrialConfig,
                m: dict[str, np.ndarray]) -> None:
    # one pass: the IW=1 and K=100 estimates use the first 1 and 100 of the K samples
    est = estimate_log_likelihood(model, x, max(cfg.eval_importance, 100), fewer=(1, 100))
    full = est.log_px if cfg.eval_importance >= 100 else \
        estimate_log_likelihood(model, x, cfg.eval_importance).log_px
    m["test_ll"] = full.mean(1).cpu().numpy()
    m["test_ll_lik"] = est.log_px_z.mean(1).cpu().numpy()
    m["test_ll_kl"] = est.kl.mean(1).cpu().numpy()
    for j, name in enumerate(model.layer_names):
        m[f"kl_{name}"] = est.kl_layers[:, j].mean(1).cpu().numpy()
    ll1, ll100 = est.fewer[1].cpu().numpy(), est.fewer[100].cpu().numpy()
    m["frac_low_iw1"] = ((ll1 < LOW_LL) & (ll100 >= LOW_LL)).mean(1)
    m["iw_gap"] = (ll100 - ll1).mean(1)


def _latents(model: LatentVariableModel, xe: torch.Tensor, ye: np.ndarray, names: list[str], *,
             out: dict[str, np.ndarray], units: dict[str, np.ndarray],
             samples: int = EMBED_SAMPLES) -> None:
    """Latent usage in information (see the module docstring)."""
    E = model.n_members
    fp = model(xe, n_samples=samples, kl="sampled", units=True)
    unit_kl = [u.mean(dim=(1, 2)).cpu().numpy() for u in fp.kl_units]  # per layer [E, d]
    total = np.stack([u.sum(-1) for u in unit_kl], 1)  # [E, L]
    for j, name in enumerate(names):
        units[name] = unit_kl[j]
        out[f"active_units_{name}"] = np.array(
            [metrics.active_units_kl(unit_kl[j][e]) for e in range(E)], float)
        # a sample of layer j carries what j and the layers above it carry (hierarchies)
        out[f"kl_from_{name}"] = total[:, j:].sum(1) if model.hierarchical else total[:, j]
        z = fp.z[j][:, 0].cpu().numpy()  # one posterior sample per point [E, B, d]
        out[f"class_acc_{name}"] = np.array(
            [metrics.class_accuracy(z[e], _member(ye, e, 1)) for e in range(E)])
    top = model.top_posterior(xe)
    q_mean, q_std = top.mean.cpu().numpy(), top.std.cpu().numpy()
    out["active_units_burda"] = np.array([metrics.active_units(q_mean[e]) for e in range(E)], float)
    out["pocket_mass"] = np.array([metrics.pocket_mass(q_mean[e], q_std[e]) for e in range(E)])
    if model.hierarchical:
        for k in range(1, len(names)):
            out[f"kl_above_{k}"] = total[:, k:].sum(1)


def _ood(model: LatentVariableModel, data: DataBundle, cfg: TrialConfig, x_np: np.ndarray,
         m: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample scores of the test set and every OOD set, their AUROC/AUPRC/FPR80 and, for
    2-D data, the exact-density references."""
    E, dev = model.n_members, model.device
    sets = {"test": x_np} | data.ood
    scores = {name: ood_scores(model, torch.from_numpy(v).to(dev), cfg.ood_importance)
              for name, v in sets.items()}
    if not data.per_member and data.curve is None:  # images: complexity baselines
        probs = metrics.bernoulli_fit(data.x_train, data.binarize)
        for name, v in sets.items():
            scores[name]["lit_pixels"] = np.tile(metrics.lit_pixels(v), (E, 1))
            scores[name]["neg_ll_bernoulli"] = np.tile(metrics.bernoulli_neg_ll(v, probs), (E, 1))
    for set_name in data.ood:
        for score, values in scores[set_name].items():
            per = [metrics.ood_metrics(scores["test"][score][e], values[e]) for e in range(E)]
            for key in ("auroc", "auprc", "fpr80"):
                m[f"{key}_{score}_{set_name}"] = np.array([p[key] for p in per])
    if data.curve is not None:
        refs = [_references(data, e) for e in range(E)]
        for set_name in data.ood:
            m[f"np_auroc_{set_name}"] = np.array([r[set_name][0] for r in refs])
            m[f"exact_ll_auroc_{set_name}"] = np.array([r[set_name][1] for r in refs])
    return scores


def _references(data: DataBundle, e: int) -> dict[str, tuple[float, float]]:
    """Per OOD set of seed ``e``: (Neyman-Pearson AUROC, exact-likelihood AUROC)."""
    if not data.noise:
        return {name: (1.0, 1.0) for name in data.ood}
    seed_data = data.member(e)
    exact = data.exact_log_density
    inside = seed_data.x_test[:REFERENCE_POINTS].astype(np.float64)
    in_in = exact(inside)
    out = {}
    for name, points in seed_data.ood.items():
        outside = points[:REFERENCE_POINTS].astype(np.float64)
        out_in = exact(outside)
        in_out = data.ood_log_density(name, inside, e)
        out_out = data.ood_log_density(name, outside, e)
        out[name] = (metrics.ood_metrics(in_out - in_in, out_out - out_in)["auroc"],
                     metrics.ood_metrics(-in_in, -out_in)["auroc"])
    return out


def _stability(state: TrainState, E: int, m: dict[str, np.ndarray]) -> None:
    hist = state.history
    # each member's own curve, up to the epoch it stopped (a stopped member repeats its last
    # epoch's values after that: counting them would make every early stopper look converged)
    own = state.member_epochs() if hist else [0] * E
    loss = np.array([h.members["train_loss"] for h in hist]).T if hist else np.zeros((E, 0))
    m["divergence_jumps"] = np.array([metrics.divergence_jumps(loss[e][:own[e]])
                                      for e in range(E)], float)
    bound = np.array([h.members["val_bound"] for h in hist]).T if hist else np.zeros((E, 0))
    m["val_gain_tail"] = np.array([metrics.tail_gain(bound[e][:own[e]]) for e in range(E)])
    if hist and "output_std_min" in hist[0].members:
        stds = np.array([h.members["output_std_min"] for h in hist]).T
        m["min_output_std"] = np.array([np.nanmin(s[:n]) if np.isfinite(s[:n]).any() else np.nan
                                        for s, n in zip(stds, own)])
    diverged = np.array([d is not None for d in state.diverged_epoch])
    m["diverged"] = diverged.astype(float)
    m["diverged_epoch"] = np.array([np.nan if d is None else d for d in state.diverged_epoch], float)
    if state.restart:
        m["restart"] = np.array(state.restart, float)


def _long_scores(scores: dict[str, dict[str, np.ndarray]], seeds: list[int]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("seed", "set", "score", "index", "value")}
    for set_name, by_score in scores.items():
        for score, values in by_score.items():
            E, N = values.shape
            for e in range(E):
                cols["seed"].append(np.full(N, seeds[e]))
                cols["set"].append(np.full(N, set_name, dtype=object))
                cols["score"].append(np.full(N, score, dtype=object))
                cols["index"].append(np.arange(N))
                cols["value"].append(values[e].astype(np.float64))
    return {k: np.concatenate(v) for k, v in cols.items()}
