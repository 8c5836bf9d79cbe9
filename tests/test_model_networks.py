"""``models.networks``: each built-in kind's networks as plain shapes, which its model is built
from and ``models.size`` counts. The shapes must be the model's own (read here off a forward
pass on the ``meta`` device, independently of ``models.size``), and sizing a study's trials
(the driver's memory check and cost order) must not import PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
import torch
from conftest import REPO
from studies import write_spec

from models import ModelConfig, build_model
from models.ensemble import EnsembleLinear
from models.networks import plan
from models.registry import KINDS
from models.size import layer_widths, linear_shapes, parameter_count

CONFIGS = [
    ModelConfig(2, "vae", (2,), ((64, 64, 32),), "gaussian", "learned", 1.0, 1e-3, "silu"),
    ModelConfig(2, "hvae", (2, 2, 2), ((64, 64), (32,), (16, 8)), "gaussian", "fixed", 0.01,
                0.0, "silu"),
    ModelConfig(784, "hvae", (64, 32), ((512, 256), (128,)), "bernoulli", "learned", 1.0, 1e-3,
                "relu"),
    ModelConfig(2, "hvae", (2, 3), ((), (8,)), "gaussian", "learned", 1.0, 1e-3, "silu"),
    ModelConfig(2, "avae", (2,), ((64, 32),), "gaussian", "learned", 1.0, 1e-3, "silu",
                options=(("aux_latents", 5),)),
    ModelConfig(784, "avae", (16,), ((128,),), "bernoulli", "fixed", 1.0, 1e-3, "silu"),
]


def _read_off_the_model(config: ModelConfig, points: int, samples: int):
    """(widths in registration order, parameters, (rows, in, out) of every layer applied) of
    the model itself, on ``meta``."""
    shapes = []
    with torch.device("meta"):
        model = build_model(config, [0])
        linears = [m for m in model.modules() if isinstance(m, EnsembleLinear)]
        hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(
            (i[0].numel() // m.in_features, m.in_features, m.out_features))) for m in linears]
        model(torch.empty(points, config.x_dim), n_samples=samples, kl="sampled")
    for h in hooks:
        h.remove()
    return ([(m.in_features, m.out_features) for m in linears],
            sum(p.numel() for p in model.parameters()), shapes)


def test_every_builtin_kind_registers_its_networks():
    assert {kind for kind, info in KINDS.items() if info.networks is None} == set()
    assert {c.kind for c in CONFIGS} == set(KINDS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-{len(c.latents)}")
def test_the_networks_are_the_models_own(config: ModelConfig):
    widths, params, applied = _read_off_the_model(config, points=5, samples=3)
    assert plan(config) is not None
    assert layer_widths(config) == widths  # the order the weights are initialised in
    assert parameter_count(config) == params
    # every layer, with the rows it sees: once per point before the sampling, per sample after
    assert Counter(linear_shapes(config, 5, 3)) == Counter(applied)
    assert any(rows == 15 for rows, _, _ in applied) and any(rows == 5 for rows, _, _ in applied)


#: layer widths in registration order, and the sum and sum of squares of every weight of a
#: 2-member ensemble of seeds [3, 7], as the models built them before ``models.networks``
#: existed (commit 2059d55): the networks must be the same models, initialised the same way
PINNED = {
    1: ([(2, 64), (64, 64), (64, 32), (32, 16), (16, 8), (64, 4), (32, 4), (8, 4), (2, 32),
         (32, 4), (2, 8), (8, 16), (16, 4), (2, 64), (64, 64), (64, 2)],
        24940, -17.412012003, 321.088520351),
    4: ([(2, 64), (64, 32), (32, 10), (7, 64), (64, 32), (32, 4), (4, 64), (64, 32), (32, 10),
         (2, 32), (32, 64), (64, 4)], 21048, -7.65366598674, 326.5360231),
}


@pytest.mark.parametrize("which", sorted(PINNED), ids=lambda i: CONFIGS[i].kind)
def test_the_models_are_the_ones_built_before_the_networks_existed(which: int):
    widths, n, total, squares = PINNED[which]
    config = CONFIGS[which]
    assert layer_widths(config) == widths
    model = build_model(config, [3, 7])
    flat = torch.cat([t.double().flatten() for t in model.state_dict().values()])
    assert flat.numel() == n
    assert flat.sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9)
    assert (flat ** 2).sum().item() == pytest.approx(squares, rel=1e-9)


SIZE_EVERY_STUDY = """
import json, sys
from study.spec import cost
from study.spec.limits import estimated_memory
from study.spec.resolved import ResolvedStudy
from study.spec.spec_file import available, load_spec

sized = 0
for name in available():
    spec = load_spec(name)
    for budget in spec.budgets:
        study = ResolvedStudy(spec, budget)
        for cell in study.cells[:4]:
            cfg = study.config(cell)
            estimated_memory(cfg, bound=True), estimated_memory(cfg)
            cost.reference_rates(cfg), cost.training_flops_per_epoch(cfg), cost.flops(cfg)
            sized += 1
print(json.dumps({"sized": sized, "torch": "torch" in sys.modules}))
"""


def test_sizing_every_studys_trials_does_not_import_pytorch():
    done = subprocess.run([sys.executable, "-c", SIZE_EVERY_STUDY], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["sized"] > 50 and out["torch"] is False


RUN_AND_LOOK = """
import json, sys
from study.run import main
code = main([{spec!r}, "--budget", "smoke", "--results", {results!r}, "--tracking-uri",
             {uri!r}, "--quiet", "--no-report", "--no-plots"])
print(json.dumps({{"code": code, "torch": "torch" in sys.modules}}))
"""


@pytest.mark.slow  # a whole study through Ray
def test_a_studys_driver_runs_without_pytorch(tmp_path):
    """The driver (memory check, cost order, ETA, Tune, Optuna, MLflow, Parquet) never imports
    PyTorch: only the trial workers do (its import and the first ``meta`` forward pass were
    2-4 s of every start-up on 2 cores)."""
    spec = write_spec(tmp_path, "driver_only", factors={"lr": {"grid": [0.003]}}, seeds=1)
    script = RUN_AND_LOOK.format(spec=str(spec), results=str(tmp_path / "results"),
                                 uri=f"sqlite:///{tmp_path}/mlflow.db")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 0, "torch": False}
