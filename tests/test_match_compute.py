"""``match_compute: training_flops``: every configuration of a study trains for the training
compute of the costliest one; the epochs are checked against FLOPs counted by hand. (A study
file that cannot be matched is refused: ``test_study_cli.py``.)"""

from __future__ import annotations

import json

from study.spec.cost import seed_epochs
from study.spec.spec_file import load_spec


def mlp_macs(widths: list[int]) -> int:
    """Multiply-accumulates of one pass of a point through dense layers of these widths."""
    return sum(a * b for a, b in zip(widths, widths[1:]))


def training_macs(hidden: list[int], iw: int, x: int = 784, z: int = 64) -> int:
    """A VAE's encoder once per point (x -> hidden -> mean and std of z), its decoder once per
    importance sample (z -> reversed hidden -> x); forward and backward scale both alike."""
    return mlp_macs([x, *hidden, 2 * z]) + iw * mlp_macs([z, *hidden[::-1], x])


def test_every_configuration_gets_the_costliest_ones_compute():
    spec = load_spec("kl_iw_mnist_matched")
    budget_epochs = spec.base_values("default")["epochs"]
    most = max(training_macs(json.loads(str(c["hidden"])), c["iw_samples"])
               for c in spec.grid_cells())
    seen = set()
    for cell in spec.grid_cells():
        cfg = spec.trial_config(cell, "default")
        macs = training_macs(json.loads(str(cell["hidden"])), cfg.iw_samples)
        assert cfg.epochs == round(budget_epochs * most / macs)
        # equal compute to within half an epoch of the configuration
        assert abs(cfg.epochs * macs - budget_epochs * most) <= macs / 2
        seen.add(cfg.epochs)
    # IW=10 [512, 512, 256, 256] is the costliest: it keeps the budget's epochs; IW=1 [512, 512]
    # costs 6.8 times less per epoch
    assert min(seen) == budget_epochs and max(seen) == round(budget_epochs * 6.776)
    # the fingerprint and the dry run read trial_config: both see the matched epochs
    assert spec.model_copy(update={"match_compute": None}).trial_config(
        spec.grid_cells()[0], "default").epochs == budget_epochs


def test_restart_candidates_count_as_compute(tmp_path):
    """Three initialisations per seed for the first 2 of 5 epochs cost 5 + 2 x 2 = 9 epochs of
    one member: the configuration without restarts trains 9 epochs."""
    from studies import write_spec

    spec = load_spec(str(write_spec(
        tmp_path, "matched_restarts", match_compute="training_flops",
        fixed={"restart_epochs": 2}, factors={"restarts": {"grid": [1, 3]}},
        budgets={"smoke": {"epochs": 5}})))
    cfgs = {c["restarts"]: spec.trial_config(c, "smoke") for c in spec.grid_cells()}
    assert cfgs[3].epochs == 5 and seed_epochs(cfgs[3]) == 9
    assert cfgs[1].epochs == 9 and seed_epochs(cfgs[1]) == 9
