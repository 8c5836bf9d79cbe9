"""Input limits are checked before anything is written: bounded YAML, a capped grid, finite and
non-negative numbers, pruner arguments, resources that exist; and passwords never printed."""

from __future__ import annotations

import time

import pytest
from cli import one_error_line, run_cli
from studies import write_spec

LAUGHS = """name: laughs
question: billion laughs
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
fixed: {ood_shifts: *i}
"""


def _refused(tmp_path, *args: str) -> str:
    line = one_error_line(run_cli("study.run", *args, "--budget", "smoke", cwd=tmp_path))
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
    return line


def test_a_billion_laughs_file_is_refused_in_seconds(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    start = time.monotonic()
    line = _refused(tmp_path, str(path))
    assert str(path) in line and "expand to more than" in line
    assert time.monotonic() - start < 30  # the interpreter's start and imports included


def test_a_self_referring_yaml_file_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: loop\nquestion: q\nfixed: &x {a: *x}\n")
    assert "refers to the node that contains it" in _refused(tmp_path, str(path))


def test_a_grid_above_the_cap_is_refused_with_its_size(tmp_path):
    factors = {"lr": {"grid": [1e-3 * (i + 1) for i in range(100)]},
               "batch_size": {"grid": list(range(16, 216))}}
    path = write_spec(tmp_path, "huge", factors=factors)
    line = _refused(tmp_path, str(path))
    assert "20,000 configurations (100 x 200)" in line and "--max-grid 20000" in line
    line = _refused(tmp_path, str(path), "--max-grid", "100")
    assert "above the limit of 100" in line


@pytest.mark.parametrize("fields,expected", [
    ({"seeds": [0, -1]}, "seeds must be a count >= 1 or a non-empty list of integers >= 0"),
    ({"fixed": {"ood_shifts": [0.5, -0.25]}}, "field 'ood_shifts[1]' = -0.25"),
    ({"fixed": {"noise": float("nan")}}, "field 'noise' = nan: Input should be a finite number"),
    ({"fixed": {"output_std": float("inf")}}, "field 'output_std' = inf"),
    ({"fixed": {"free_bits": -0.5}}, "field 'free_bits' = -0.5"),
    ({"fixed": {"grad_clip": -1.0}}, "field 'grad_clip' = -1.0"),
    ({"fixed": {"data_seed": -3}}, "field 'data_seed' = -3"),
    ({"resources": {"cpus": float("nan")}}, "field 'resources.cpus' = nan"),
    ({"resources": {"gpus": -1}}, "field 'resources.gpus' = -1"),
    ({"factors": {"lr": {"uniform": [float("nan"), 0.1]}}}, "Input should be a finite number"),
    ({"pruner": {"name": "median", "args": {"n_warmup": 3}}},
     "MedianPruner has no argument 'n_warmup'; it takes n_startup_trials, n_warmup_steps"),
    ({"pruner": {"name": "percentile", "args": {"percentile": 150.0}}}, "PercentilePruner("),
])
def test_meaningless_numbers_and_pruner_arguments_are_refused(tmp_path, fields, expected):
    path = write_spec(tmp_path, "bad", **fields)
    line = _refused(tmp_path, str(path))
    assert str(path) in line and expected in line, line


def test_resources_no_node_offers_are_refused(tmp_path):
    path = write_spec(tmp_path, "greedy", resources={"cpus": 64})
    line = _refused(tmp_path, str(path), "--num-cpus", "2")
    assert f"{path}: field 'resources.cpus' = 64" in line and "Ray has 2" in line
    path = write_spec(tmp_path, "gpu", resources={"gpus": 1})
    r = run_cli("study.run", str(path), "--budget", "smoke", cwd=tmp_path,
                env={"CUDA_VISIBLE_DEVICES": ""})
    line = one_error_line(r)
    assert f"{path}: field 'resources.gpus'" in line and "this machine has 0" in line


def test_a_password_in_a_tracking_uri_is_never_printed(tmp_path):
    path = write_spec(tmp_path, "ok")
    r = run_cli("study.run", str(path), "--budget", "smoke", "--tracking-uri",
                "http://alice:s3cr3t-pw@127.0.0.1:9", cwd=tmp_path)
    line = one_error_line(r)
    assert "http://alice:***@127.0.0.1:9" in line
    assert "s3cr3t" not in r.stdout + r.stderr


@pytest.mark.parametrize("fields,flags,expected,raise_with", [
    ({"factors": {"lr": {"loguniform": [1e-4, 1e-2]}}, "search": {"num_samples": 10**9}}, [],
     "field 'search.num_samples': budget 'smoke' has 1,000,000,000 trials, above the limit of "
     "10,000; raise it with --max-trials 1000000000", "--max-trials"),
    ({"seeds": 10**7}, [], "field 'seeds' = 10000000: 10,000,000 seeds per configuration, above "
     "the limit of 1,000; raise it with --max-seeds 10000000", "--max-seeds"),
    ({"budgets": {"smoke": {"epochs": 2}, "full": {"seeds": 5000}}}, [],
     "field 'budgets.full.seeds' = 5000: 5,000 seeds", "--max-seeds"),
    ({"fixed": {"hidden": [100000, 100000]}}, [],
     "field 'hidden' = [[100000, 100000]]: a layer of 100,000 units, above the limit of 16,384; "
     "raise it with --max-width 100000", "--max-width"),
    ({"fixed": {"hidden": [100000, 100000]}}, ["--max-width", "100000"],
     "a trial needs about", "--max-memory"),
])
def test_sizes_above_their_caps_are_refused_in_seconds_with_the_flag_to_raise(
        tmp_path, fields, flags, expected, raise_with):
    """Issue 22: no cap let 10^9 trials, 10^7 seeds or a [100000, 100000] network through (the
    dry run promised 19 million minutes, ran 300 s at 2.4 GB, or crashed allocating 80 GB)."""
    path = write_spec(tmp_path, "big", **fields)
    for extra in ([], ["--dry-run"]):
        start = time.monotonic()
        line = _refused(tmp_path, str(path), *flags, *extra)
        assert str(path) in line and expected in line and raise_with in line, line
        assert time.monotonic() - start < 60  # the interpreter's start and imports included


def test_a_memory_estimate_counts_parameters_members_and_activations():
    from models.size import parameter_count, training_memory
    from study.spec.config import trial_config
    from study.spec.limits import GIB, estimated_memory

    small = trial_config({"dataset": "moons", "latents": [2], "hidden": [64, 64], "seeds": 3})
    wide = trial_config({"dataset": "moons", "latents": [2], "hidden": [100000, 100000],
                         "seeds": 1})
    arch = wide.architecture()
    # the weights, gradients and Adam's moments of 10^10 parameters are 160 GB by themselves
    assert parameter_count(arch) > 10**10
    assert training_memory(arch, 1, 128) > 4 * 4 * 10**10
    assert estimated_memory(wide) / GIB > 150 > 1 > estimated_memory(small) / GIB
    # linear in the members (seeds x restarts) for the training state
    assert training_memory(small.architecture(), 6, 128) == \
        2 * training_memory(small.architecture(), 3, 128)


@pytest.mark.parametrize("spec", [
    dict(kind="vae", latents=[2], hidden=[64, 64, 32, 32]),
    dict(kind="hvae", latents=[2, 2, 2, 2], hidden=[[64, 64, 64]] * 4),
    dict(kind="avae", latents=[2], hidden=[32, 32], aux_latents=3),
    dict(kind="vae", latents=[64], hidden=[512, 512], likelihood="bernoulli", x_dim=784),
])
@pytest.mark.parametrize("n_samples", [1, 10])
def test_the_start_up_memory_bound_is_never_below_the_estimate(spec, n_samples):
    """start-up clears a configuration by ``training_memory_bound`` (no forward pass) and asks
    ``training_memory`` only when the bound is above the limit: the bound must never be below,
    and it stays within a small factor (a bound 100x too high would send every study to the
    slow path)."""
    from configs import model_config

    from models.size import training_memory, training_memory_bound

    spec = dict(spec)
    config = model_config(x_dim=spec.pop("x_dim", 2), **spec)
    exact = training_memory(config, 5, 128, n_samples)
    bound = training_memory_bound(config, 5, 128, n_samples)
    assert exact <= bound <= 12 * exact, (exact, bound)


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_tracking_store_is_refused(tmp_path, uri):
    path = write_spec(tmp_path, "ok")
    line = _refused(tmp_path, str(path), "--tracking-uri", uri)
    assert f"MLflow tracking URI '{uri}' is in memory: nothing would be kept" in line
    assert not (tmp_path / "results").exists()
