"""The catalogue of metric names is exactly what a trial produces (so the validation of study
files, which reads the catalogue, can never drift from the evaluation)."""

from __future__ import annotations

import pytest

from study.spec.config import trial_config
from study.spec.metric_names import epoch_metrics, final_metrics
from study.trial.run_trial import NoCheckpoints, run_trial

SMALL = {"n_train": 64, "n_val": 32, "n_test": 48, "epochs": 1, "seeds": [0, 1],
         "eval_importance": 5, "ood_importance": 2, "batch_size": 32}


@pytest.mark.parametrize("settings", [
    {"dataset": "spirals", "kind": "hvae", "latents": [2, 2, 2], "hidden": [[8], [8], [8]],
     "ood_shifts": [0.5], "ood_offsets": [0.1]},
    {"dataset": "moons", "kind": "vae", "latents": [2], "hidden": [8], "noise": 0.0,
     "variance": "fixed", "output_std": 0.01, "ood_shifts": [1.0]},
    {"dataset": "moons", "kind": "avae", "latents": [2], "hidden": [8], "ood_shifts": [],
     "restarts": 2, "restart_epochs": 1},
    {"dataset": "mnist", "kind": "hvae", "latents": [4, 2], "hidden": [[16], [8]],
     "exclude_label": 3, "ood_dataset": "fashion_mnist"},
], ids=["hvae-3-layers", "vae-noise-free-fixed-std", "avae-restarts", "mnist-hvae"])
def test_the_catalogue_names_exactly_what_a_trial_produces(settings, shared_data):
    cfg = trial_config(SMALL | settings | {"data_dir": str(shared_data)})
    result = run_trial(cfg, NoCheckpoints(), plots=False, threads=1)
    assert set(result.evaluation.members) == final_metrics(cfg)
    assert set(result.trainer.state.history[-1].members) == epoch_metrics(cfg)


def test_ll_over_bernoulli_is_the_gain_over_the_pixel_frequencies(shared_data):
    """An image model's test_ll minus the pixel-independent Bernoulli model's (fitted to the
    dynamically binarised training images: mean grey levels), computed here with SciPy: an untrained VAE (784 pixels at about p = 1/2) is far below the pixel frequencies."""
    import numpy as np
    from scipy.stats import bernoulli

    from study.data import load_data

    cfg = trial_config(SMALL | {"dataset": "mnist", "kind": "vae", "latents": [4],
                                "hidden": [16], "lr": 1e-9, "data_dir": str(shared_data)})
    result = run_trial(cfg, NoCheckpoints(), plots=False, threads=1)
    data = load_data(cfg.data_config())
    assert data.binarize == "dynamic"  # each pixel is on with its mean grey level
    p = (data.x_train.sum(0) + 1.0) / (len(data.x_train) + 2.0)
    baseline = bernoulli.logpmf(data.x_test > 0.5, p).sum(1).mean()
    gain = np.array(result.evaluation.members["ll_over_bernoulli"])
    assert np.allclose(gain, np.array(result.evaluation.members["test_ll"]) - baseline)
    assert (gain < -100).all()  # ~ -543 nats of p = 1/2 against ~ -200 of the frequencies


def test_figures_title_metrics_in_plain_words():
    from study.spec.metric_names import human_name

    assert human_name("test_ll") == "test log-likelihood"
    assert human_name("kl_z3") == "KL of z3"
    assert human_name("kl_from_z2") == "KL from layer z2"  # the longest prefix wins
    assert human_name("auroc_neg_ll_shifted_0.5") == "AUROC of -log p, shifted 0.5"
    assert human_name("np_auroc_uniform") == "AUROC of the exact density, uniform"
    assert human_name("no_such_metric") == "no_such_metric"
