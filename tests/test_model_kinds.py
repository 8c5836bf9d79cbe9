"""A model kind with a setting of its own is two files: the model's and its registry entry.

A fresh interpreter registers the toy kind ``wide`` (tests/kinds/wide_vae.py) in
``models.registry.KINDS`` before anything else is imported, as a line in the registry would,
and then uses it through the project's own entry points: the trial settings, the
``python -m study.train`` command line, a trained and evaluated trial, its metric names."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

REGISTER = """
import sys
sys.path.insert(0, {kinds!r})
from models.registry import KINDS, KindSetting, ModelKind
KINDS["wide"] = ModelKind("wide_vae:WideVAE", max_layers=1, hierarchical=True,
                          single_layer_name="z", settings={{"width_factor": KindSetting(
                              int, 1, "hidden widths times this", bounds={{"ge": 1}})}})
"""

USE = """
import json
from models.size import parameter_count
from study.core.errors import SpecError
from study.spec.config import TrialConfig, trial_config
from study.spec.metric_names import final_metrics
from study.train import main, parser

base = {{"kind": "wide", "latents": [2], "hidden": [8], "dataset": "moons"}}
one, three = trial_config(base), trial_config(base | {{"width_factor": 3}})
refused = []
for bad in ({{"width_factor": 0}},
            {{"kind": "hvae", "latents": [2, 2], "hidden": [[8], [8]], "width_factor": 2}}):
    try:
        trial_config(base | bad)
    except SpecError as err:
        refused.append(str(err))
flags = parser().format_help()
code = main(["--kind", "wide", "--width-factor", "2", "--latents", "2", "--hidden", "8",
             "--dataset", "moons", "--seeds", "2", "--epochs", "2", "--n-train", "200",
             "--n-val", "50", "--n-test", "60", "--eval-importance", "10",
             "--ood-importance", "5", "--threads", "1", "--out", {out!r}])
print(json.dumps({{
    "params": [parameter_count(one.architecture()), parameter_count(three.architecture())],
    "flat": three.flat()["width_factor"], "refused": refused, "code": code,
    "flag": "--width-factor" in flags, "names": sorted(final_metrics(three)),
}}))
"""


def test_a_toy_kind_with_its_own_setting_works_through_the_registry_alone(tmp_path):
    script = REGISTER.format(kinds=str(REPO / "tests" / "kinds")) + USE.format(
        out=str(tmp_path / "trial"))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    small, wide = got["params"]
    assert wide > 2.5 * small  # the setting reached the model: hidden layers 3x as wide
    assert got["flat"] == 3  # a trial setting like any other (MLflow params, Parquet columns)
    assert "width_factor" in got["refused"][0] and "greater than or equal to 1" in \
        got["refused"][0]
    assert "width_factor is a setting of model kind wide, not hvae" in got["refused"][1]
    assert got["flag"] and got["code"] == 0
    metrics = json.loads((tmp_path / "trial" / "metrics.json").read_text())
    assert "kl_z" in metrics["mean"] and len(metrics["members"]["test_ll"]) == 2
    assert "kl_z" in got["names"]
