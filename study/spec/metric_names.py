"""The names of every number a trial produces, known from its configuration before it runs.

``study.spec.validate`` checks a study file's claims, responses, curves, references and gates
against these names, so a typo fails before anything runs; ``tests/test_metric_names.py``
checks that the evaluation produces exactly these names (the list cannot drift from the code).
No torch here: the kinds' layer names come from ``models.registry``.
"""

from __future__ import annotations

from models.registry import model_kind
from study.spec.config import TrialConfig

#: one value per epoch and seed (``epochs.parquet``, MLflow curves); ``train_kl_<layer>`` too
EPOCH_METRICS = ("train_loss", "train_bound", "val_bound", "val_elbo", "diverged")
#: ``trials.parquet`` columns of every seed row besides the metrics, factors and config
ROW_COLUMNS = ("trial_id", "seed", "trial_status", "seed_status", "epochs", "node_id", "device",
               "pack_members",
               "num_failures", "restored_from_epoch", "restore_note", "started_at", "ended_at",
               "last_val_bound", "last_val_elbo", "last_train_bound")


def layer_names(cfg: TrialConfig) -> list[str]:
    return model_kind(cfg.kind).layer_names(len(cfg.latents))


def learned_std(cfg: TrialConfig) -> bool:
    return cfg.architecture().likelihood == "gaussian" and cfg.variance == "learned"


def epoch_metrics(cfg: TrialConfig) -> set[str]:
    out = set(EPOCH_METRICS) | {f"train_kl_{name}" for name in layer_names(cfg)}
    if learned_std(cfg):
        out |= {"output_std_min", "output_std_mean"}
    return out


def ood_sets(cfg: TrialConfig) -> list[str]:
    if cfg.is_image:
        return (["heldout"] if cfg.exclude_label is not None else []) + \
            ([cfg.ood_dataset] if cfg.ood_dataset else [])
    return ([f"shifted_{d:g}" for d in cfg.ood_shifts] + [f"offset_{d:g}" for d in cfg.ood_offsets]
            + ["widened", "uniform"])


def ood_scores(cfg: TrialConfig) -> list[str]:
    kind = model_kind(cfg.kind)
    scores = ["neg_elbo", "neg_ll"]
    if kind.hierarchical:
        scores += [f"llr_{k}" for k in range(1, len(kind.layer_names(len(cfg.latents))))]
    if cfg.is_image:
        scores += list(MODEL_FREE_SCORES)
    return scores


#: scores computed from the data alone (complexity baselines of images) and the 2-D references
#: from the exact densities: the same for every model, whatever it learned
MODEL_FREE_SCORES = ("lit_pixels", "neg_ll_bernoulli")
MODEL_FREE_PREFIXES = ("np_auroc_", "exact_ll")  # exact_ll, exact_ll_auroc_S


def model_free(metric: str) -> bool:
    """Whether ``metric`` does not depend on the trained model (so no fitness gate applies to
    a claim about it): ``auroc_lit_pixels_S``, ``np_auroc_S``, ``exact_ll``, ..."""
    if metric.startswith(MODEL_FREE_PREFIXES):
        return True
    return any(metric.startswith(f"{key}_{score}_") for key in ("auroc", "auprc", "fpr80")
               for score in MODEL_FREE_SCORES)


def model_free_claim(metric: str, versus_metric: str | None) -> bool:
    """Whether a claim on ``metric`` (against ``versus_metric``, if any) reads no number a
    trained model enters, so no gate of the models' fit applies to it."""
    return model_free(metric) and (versus_metric is None or model_free(versus_metric))


def final_metrics(cfg: TrialConfig) -> set[str]:
    """Every key of ``Evaluation.members`` for a trial of ``cfg``."""
    layers = layer_names(cfg)
    kind = model_kind(cfg.kind)
    out = {"test_ll", "test_ll_lik", "test_ll_kl", "frac_low_iw1", "iw_gap", "active_units_burda",
           "pocket_mass", "divergence_jumps", "diverged", "diverged_epoch", "val_gain_tail"}
    for name in layers:
        out |= {f"kl_{name}", f"active_units_{name}", f"kl_from_{name}", f"class_acc_{name}"}
    if kind.hierarchical:
        out |= {f"kl_above_{k}" for k in range(1, len(layers))}
    if cfg.is_image:
        out.add("ll_over_bernoulli")
    else:
        out |= {"wrong_sample_frac", "curve_coverage"}
        if cfg.noise > 0:
            out |= {"exact_ll", "ll_gap"}
    for s in ood_sets(cfg):
        for score in ood_scores(cfg):
            out |= {f"{key}_{score}_{s}" for key in ("auroc", "auprc", "fpr80")}
        if not cfg.is_image:
            out |= {f"np_auroc_{s}", f"exact_ll_auroc_{s}"}
    if learned_std(cfg):
        out.add("min_output_std")
    if cfg.restarts > 1:
        out.add("restart")
    return out


def row_metrics(cfg: TrialConfig) -> set[str]:
    """Every column a claim, response or gate may read for a trial of ``cfg``."""
    return final_metrics(cfg) | set(ROW_COLUMNS) | {f"kl_units_{n}" for n in layer_names(cfg)}


# ---------------------------------------------------------------------- reading a name
#: the names of likelihoods and bounds, in nats per data point, besides the ``kl_*`` family
NATS = ("test_ll", "ll_gap", "exact_ll", "test_ll_lik", "test_ll_kl", "iw_gap", "val_bound",
        "val_elbo", "train_bound")
DETECTION_KEYS = ("auroc", "auprc", "fpr80")


def latent_layers(columns: list[str]) -> list[str]:
    """The latent layers whose KL columns (``kl_L``) are among ``columns``, bottom first."""
    names = [c[3:] for c in columns if c.startswith("kl_")
             and not c.startswith(("kl_from_", "kl_above_", "kl_units_"))]
    return sorted(names, key=lambda n: (len(n), n))


def is_kl(metric: str) -> bool:
    """A layer's KL term (``kl_z1``, ``kl_from_z2``, ``kl_above_1``), in nats."""
    return metric.startswith("kl_")


#: the metrics that measure how well a 2-D model fits (the fit gates' own metrics)
FIT_METRICS = ("ll_gap", "curve_coverage", "wrong_sample_frac")


def layers_used(metric: str, layers: list[str]) -> list[str]:
    """The latent layers (of ``layers``, bottom first) a claim about ``metric`` relies on
    carrying information: the layer of ``class_acc_L`` (an inactive layer holds no class at
    all), every layer above k of an LLR>k score (``auroc_llr_k_S`` ...: the posteriors the
    ratio uses). A claim about a layer's activity itself (``kl_L``, ``active_units_L``) relies
    on none: it is about whether the layer is active."""
    if metric.startswith("class_acc_") and metric[len("class_acc_"):] in layers:
        return [metric[len("class_acc_"):]]
    key = detection_key(metric)
    rest = metric[len(key) + 1:] if key else ""
    if rest.startswith("llr_"):
        k = rest[len("llr_"):].split("_", 1)[0]
        if k.isdigit():
            return layers[int(k):]
    return []


def detection_key(metric: str) -> str | None:
    """``auroc``, ``auprc`` or ``fpr80`` for a detection metric of a model's OOD score
    (``auroc_SCORE_SET``); None for anything else (the model-free ``np_auroc_SET`` too)."""
    return next((k for k in DETECTION_KEYS if metric.startswith(k + "_")), None)


def split_detection(metric: str, scores: list[str]) -> tuple[str, str] | None:
    """(score, OOD set) of ``KEY_SCORE_SET`` given the score names that exist (the longest
    that fits: ``neg_ll_bernoulli`` before ``neg_ll``); None when none fits."""
    key = detection_key(metric)
    if key is None:
        return None
    rest = metric[len(key) + 1:]
    for score in sorted(scores, key=len, reverse=True):
        if rest.startswith(score + "_"):
            return score, rest[len(score) + 1:]
    return None


def unit(metric: str) -> str:
    """``nats``, ``AUROC`` or ``AUPRC`` (empty for counts, fractions and the rest)."""
    if metric in NATS or is_kl(metric):
        return "nats"
    if metric.startswith(("auroc_", "np_auroc_", "exact_ll_auroc_", "auprc_")):
        return "AUROC" if "auroc" in metric else "AUPRC"
    return ""


#: plain words for a metric's name, by its whole name or its prefix (the rest, e.g. a layer or
#: an OOD set, follows); ``human_name`` uses the longest that fits
HUMAN = {
    "test_ll": "test log-likelihood", "ll_gap": "gap to the exact density",
    "exact_ll": "exact log-density", "iw_gap": "IW bound minus ELBO",
    "curve_coverage": "curve covered by samples", "wrong_sample_frac": "samples off the curve",
    "val_bound": "validation bound", "val_elbo": "validation ELBO",
    "val_gain_tail": "late gain of the validation bound", "kl_from_": "KL from layer",
    "kl_above_": "KL above layer", "kl_": "KL of", "active_units_": "active units of",
    "class_acc_": "class accuracy from", "np_auroc_": "AUROC of the exact density,",
    "auroc_neg_elbo_": "AUROC of -ELBO,", "auroc_neg_ll_": "AUROC of -log p,",
    "auroc_llr_": "AUROC of LLR>", "auprc_": "AUPRC of", "fpr80_": "FPR at 80% TPR of",
    "auroc_": "AUROC of", "output_std_min": "smallest output std",
}


def human_name(metric: str) -> str:
    """``metric`` in plain words, for a figure's title: ``kl_z3`` -> "KL of z3",
    ``auroc_neg_ll_shifted_0.5`` -> "AUROC of -log p, shifted 0.5"; the name itself where no
    words are known."""
    if metric in HUMAN:
        return HUMAN[metric]
    prefix = max((k for k in HUMAN if k.endswith("_") and metric.startswith(k)), key=len,
                 default=None)
    if prefix is None:
        return metric
    return f"{HUMAN[prefix]} {metric[len(prefix):].replace('_', ' ')}"


def importance_setting(metric: str) -> str | None:
    """The TrialConfig setting holding the importance samples K behind ``metric``:
    ``eval_importance`` for the test log-likelihood and its parts, ``ood_importance`` for the
    OOD likelihood scores, None where K plays no part."""
    if metric in ("test_ll", "ll_gap") or metric.startswith("test_ll_"):
        return "eval_importance"
    if "_neg_ll_" in metric and "bernoulli" not in metric:
        return "ood_importance"
    return None
