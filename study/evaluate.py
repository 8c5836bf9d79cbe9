"""Final metrics of a trained ensemble, per member (all likelihoods in nats), and per-sample
OOD scores.

Metric names (``Evaluation.members`` keys; ``L`` = a layer name such as z1, ``S`` = an OOD set,
``F`` = a score):

- ``test_ll``: mean test log p(x) with K = ``eval_importance`` importance samples;
  ``test_ll_lik`` / ``test_ll_kl``: its "(likelihood, KL)" decomposition; ``kl_L``: KL per layer.
- ``frac_low_iw1``: fraction of test points whose single-sample (IW=1) log-likelihood is below
  -100 while the K=100 estimate is not; ``iw_gap``: mean (K=100 estimate - IW=1 estimate).
- ``exact_ll``, ``ll_gap`` (= test_ll - exact_ll, same points): Moons/Spirals with noise > 0.
- ``active_units_L``, ``class_sep_L`` (k-NN accuracy of the label from layer L's posterior means).
- ``pocket_mass`` (top layer), ``wrong_sample_frac`` (2-D); see ``study.metrics``.
- ``divergence_jumps``, ``min_output_std`` (learned variance), ``diverged``, ``diverged_epoch``.
- ``auroc_F_S``, ``auprc_F_S``, ``fpr80_F_S`` for scores F in ``neg_elbo``, ``neg_ll`` (IW with
  ``ood_importance`` samples) and, for an L-layer HVAE, ``llr_k`` (LLR>k, k = 1..L-1);
  ``bayes_auroc_S``: the AUROC of the exact density (2-D), the best any model can reach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from models import LatentVariableModel, estimate_log_likelihood, iw_bound, likelihood_ratio

from . import metrics
from .config import TrialConfig
from .data import DataBundle
from .records import TrainState

#: Points used for the embedding metrics (class separation, pockets) and for generated samples.
EMBED_POINTS = 2000
N_GENERATED = 2000
LOW_LL = -100.0


@dataclass
class Evaluation:
    """``members[name]``: one value per member; ``mean[name]``: over members not diverged.
    ``scores``: a long table (equal-length columns member, seed, set, score, index, value)."""

    members: dict[str, list[float]]
    mean: dict[str, float]
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Apply ``fn`` (``[b, D]`` -> ``[E, b]``) over ``x`` in batches; ``[E, N]`` numpy."""
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)], dim=1).cpu().numpy()


def ood_scores(model: LatentVariableModel, x: torch.Tensor, ood_importance: int) -> dict[str, np.ndarray]:
    """Per-sample anomaly scores ``[E, N]`` (higher = more OOD): -ELBO, -log p(x) with
    ``ood_importance`` samples, and LLR>k for each k of a hierarchical model."""
    with torch.no_grad():
        out = {
            "neg_elbo": -_batched(lambda b: iw_bound(model, b, 1, "analytic"), x),
            "neg_ll": -estimate_log_likelihood(model, x, ood_importance).log_px.cpu().numpy(),
        }
        if model.hierarchical:
            for k in range(1, len(model.layer_names)):
                out[f"llr_{k}"] = _batched(lambda b, k=k: likelihood_ratio(model, b, k), x)
    return out


#: Evaluation draws its Monte Carlo samples from this seed, not from the training RNG state,
#: so the metrics are a function of the weights alone: a trial evaluated again after a restore
#: (its driver was killed after training) gets the numbers it got the first time.
EVAL_SEED = 20_240_601


def evaluate(model: LatentVariableModel, data: DataBundle, cfg: TrialConfig,
             state: TrainState) -> Evaluation:
    """Every final metric of the module docstring, per member, and the per-sample scores.
    Leaves the global RNG state as it found it."""
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        return _evaluate(model, data, cfg, state)


@torch.no_grad()
def _evaluate(model: LatentVariableModel, data: DataBundle, cfg: TrialConfig,
              state: TrainState) -> Evaluation:
    model.eval()
    dev = model.device
    E, names = model.n_members, list(model.layer_names)
    x_np, y_np = data.x_test, data.y_test
    if cfg.eval_points:
        x_np, y_np = x_np[: cfg.eval_points], y_np[: cfg.eval_points]
    x = torch.from_numpy(x_np).to(dev)
    m: dict[str, np.ndarray] = {}

    est = estimate_log_likelihood(model, x, cfg.eval_importance)
    m["test_ll"] = est.log_px.mean(1).cpu().numpy()
    m["test_ll_lik"] = est.log_px_z.mean(1).cpu().numpy()
    m["test_ll_kl"] = est.kl.mean(1).cpu().numpy()
    for j, name in enumerate(names):
        m[f"kl_{name}"] = est.kl_layers[:, j].mean(1).cpu().numpy()
    ll1 = estimate_log_likelihood(model, x, 1).log_px.cpu().numpy()
    ll100 = estimate_log_likelihood(model, x, 100).log_px.cpu().numpy()
    m["frac_low_iw1"] = ((ll1 < LOW_LL) & (ll100 >= LOW_LL)).mean(1)
    m["iw_gap"] = (ll100 - ll1).mean(1)

    exact = data.exact_log_density
    if exact is not None:
        exact_test = exact(x_np)
        m["exact_ll"] = np.full(E, exact_test.mean())
        m["ll_gap"] = m["test_ll"] - exact_test.mean()

    xe, ye = x[:EMBED_POINTS], y_np[:EMBED_POINTS]
    for name, means in zip(names, model.posterior_means(xe)):
        means = means.cpu().numpy()
        m[f"active_units_{name}"] = np.array([metrics.active_units(means[e]) for e in range(E)], float)
        m[f"class_sep_{name}"] = np.array([metrics.class_separation(means[e], ye) for e in range(E)])
    top = model.top_posterior(xe)
    q_mean, q_std = top.mean.cpu().numpy(), top.std.cpu().numpy()
    m["pocket_mass"] = np.array([metrics.pocket_mass(q_mean[e], q_std[e]) for e in range(E)])
    if data.curve is not None:
        gen = model.sample(N_GENERATED).x_mean.cpu().numpy()
        m["wrong_sample_frac"] = np.array(
            [metrics.wrong_sample_fraction(gen[e], data.curve, data.noise or 0.0) for e in range(E)])

    # OOD: per-sample scores for the test set and every OOD set
    sets = {"test": x_np} | data.ood
    scores = {name: ood_scores(model, torch.from_numpy(v).to(dev), cfg.ood_importance)
              for name, v in sets.items()}
    for set_name in data.ood:
        for score, values in scores[set_name].items():
            per = [metrics.ood_metrics(scores["test"][score][e], values[e]) for e in range(E)]
            for key in ("auroc", "auprc", "fpr80"):
                m[f"{key}_{score}_{set_name}"] = np.array([p[key] for p in per])
        if exact is not None:
            bayes = metrics.ood_metrics(-exact(x_np), -exact(data.ood[set_name]))["auroc"]
            m[f"bayes_auroc_{set_name}"] = np.full(E, bayes)

    # training stability, from the history
    hist = state.history
    loss = np.array([h.members["train_loss"] for h in hist]).T if hist else np.zeros((E, 0))
    m["divergence_jumps"] = np.array([metrics.divergence_jumps(loss[e]) for e in range(E)], float)
    if hist and "output_std_min" in hist[0].members:
        stds = np.array([h.members["output_std_min"] for h in hist]).T
        m["min_output_std"] = np.array([np.nanmin(s) if np.isfinite(s).any() else np.nan for s in stds])
    diverged = np.array([d is not None for d in state.diverged_epoch])
    m["diverged"] = diverged.astype(float)
    m["diverged_epoch"] = np.array([np.nan if d is None else d for d in state.diverged_epoch], float)

    members = {k: [float(v) for v in vals] for k, vals in m.items()}
    alive = ~diverged
    mean = {}
    for k, vals in m.items():
        vals = np.asarray(vals, float)
        use = vals[alive] if k not in ("diverged", "diverged_epoch") else vals
        use = use[np.isfinite(use)]
        mean[k] = float(use.mean()) if use.size else float("nan")
    return Evaluation(members, mean, _long_scores(scores, list(cfg.seeds)), names)


def _long_scores(scores: dict[str, dict[str, np.ndarray]], seeds: list[int]) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("member", "seed", "set", "score", "index", "value")}
    for set_name, by_score in scores.items():
        for score, values in by_score.items():
            E, N = values.shape
            for e in range(E):
                cols["member"].append(np.full(N, e))
                cols["seed"].append(np.full(N, seeds[e]))
                cols["set"].append(np.full(N, set_name, dtype=object))
                cols["score"].append(np.full(N, score, dtype=object))
                cols["index"].append(np.arange(N))
                cols["value"].append(values[e].astype(np.float64))
    return {k: np.concatenate(v) for k, v in cols.items()}
