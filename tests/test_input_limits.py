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
