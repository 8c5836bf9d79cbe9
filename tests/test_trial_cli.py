"""The single-trial command line, end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
from conftest import REPO


def _run(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "study.train", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=300,
                          env=None if env is None else os.environ | env)


def test_single_trial_writes_metrics_scores_and_plots(tmp_path):
    out = tmp_path / "trial"
    r = _run("--dataset", "spirals", "--noise", "0.05", "--latents", "2", "2", "--hidden", "16",
             "16", "--seeds", "2", "--epochs", "3", "--n-train", "500", "--n-test", "300",
             "--eval-importance", "50", "--threads", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "test_ll" in r.stdout and "seed 1" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [0, 1]
    for key in ("test_ll", "ll_gap", "kl_z1", "kl_z2", "active_units_z2", "class_acc_z1",
                "pocket_mass", "wrong_sample_frac", "auroc_llr_1_uniform", "np_auroc_uniform",
                "frac_low_iw1", "divergence_jumps", "min_output_std"):
        assert len(metrics["members"][key]) == 2, key
        assert key in metrics["mean"], key
    assert metrics["mean"]["test_ll"] < metrics["mean"]["exact_ll"]  # no model beats the truth
    # the Neyman-Pearson detector beats every other score on the same points (noise aside)
    for s in ("uniform", "widened", "shifted_1"):
        best = metrics["members"][f"np_auroc_{s}"]
        for key, values in metrics["members"].items():
            if key.startswith("auroc_") and key.endswith(f"_{s}") or key == f"exact_ll_auroc_{s}":
                assert all(v <= b + 0.03 for v, b in zip(values, best)), (key, values, best)
    assert [len(u) for u in metrics["units"]["z1"]] == [2, 2]  # per seed, the KL of each unit
    epochs = pq.read_table(out / "epochs.parquet").to_pandas()
    assert sorted(epochs["epoch"].unique()) == [1, 2, 3] and len(epochs) == 3 * 2  # x seeds
    scores = pq.read_table(out / "scores.parquet").to_pandas()
    assert set(scores["score"]) == {"neg_elbo", "neg_ll", "llr_1"}
    assert {"test", "uniform", "widened", "shifted_1"} <= set(scores["set"])
    assert len(scores[(scores.set == "test") & (scores.score == "neg_ll")]) == 2 * 300
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["elbo_histogram.png", "learning_curves.png", "posterior_means.png",
                    "roc.png", "samples.png"]
    assert all((out / "plots" / p).stat().st_size > 5000 for p in pngs)


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path):
    r = _run("--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--latents", "4",
             "--hidden", "8", "--epochs", "1", "--out", str(tmp_path / "o"), cwd=tmp_path,
             env={"HVAE_MNIST_MIRROR": "http://127.0.0.1:9/"})  # a closed port: no download
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte.gz" in lines[0], r.stderr
    assert not (tmp_path / "o").exists() and not list((tmp_path / "nowhere").rglob("*.gz"))
    r = _run("--noise", "-0.5", "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "field 'noise' = -0.5" in r.stderr
    assert not (tmp_path / "o2").exists()
