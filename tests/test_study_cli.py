"""`python -m study.run` / `study.report` on bad input: one clear line, exit 2, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from cli import one_error_line as _one_error_line
from cli import run_cli as _run
from conftest import REPO
from studies import write_spec

from models import build_model
from models.ensemble import EnsembleLinear
from study.core.errors import SpecError
from study.spec import cost
from study.spec.spec_file import load_spec


def test_list_shows_every_study_with_its_question(tmp_path):
    r = _run("study.run", "--list", cwd=REPO)
    assert r.returncode == 0
    assert "spirals_depth" in r.stdout and "Do extra stochastic layers" in r.stdout
    assert "(invalid" not in r.stdout


def test_dry_run_lists_every_trial_and_its_time_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path, "dry", factors={"lr": {"grid": [0.003, 0.01]},
                                                "batch_size": {"grid": [64, 128]}},
                      budgets={"smoke": {"epochs": 7}}, fixed={"patience": 3})
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _run("study.run", str(spec), "--budget", "smoke", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if "lr=" in line]
    assert len(rows) == 4 and sum("batch_size=64" in line for line in rows) == 2
    # trials, seeds, epochs: early stopping (patience 3) is expected to end at 0.96 x 7 epochs
    assert all(line.split()[:3] == ["1", "2", f"~{cost.EARLY_STOP_FRACTION * 7:.0f}"]
               for line in rows)
    assert "4 trials, 28 epochs planned; estimated" in r.stdout
    assert "early stopping's expected epochs" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no results, no mlflow.db


def test_dry_run_with_packs_shows_each_pack_and_its_members(tmp_path):
    """``--dry-run --pack on``: the configurations grouped by shape (batch size is a shape,
    the learning rate is not), each pack with its configurations and members."""
    spec = write_spec(tmp_path, "dry", factors={"lr": {"grid": [0.003, 0.01]},
                                                "batch_size": {"grid": [64, 128]}})
    r = _run("study.run", str(spec), "--budget", "smoke", "--dry-run", "--pack", "on",
             "--num-cpus", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    packs = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("pack ")]
    assert packs == [  # in the order of the grid's cells
        "pack 1 (2 configurations, 4 members): lr=0.003, batch_size=64; lr=0.01, batch_size=64",
        "pack 2 (2 configurations, 4 members): lr=0.003, batch_size=128; lr=0.01, batch_size=128",
    ]
    assert "packs (--pack on): 2 packs" in r.stdout and "1 pack server (one per 1 CPU)" in r.stdout


@pytest.mark.parametrize("pruner", ["median", "successive_halving"])
def test_dry_run_with_packs_of_sampled_configurations_says_what_it_cannot_know(tmp_path, pruner):
    """Sampled configurations: a sampled width is a shape (the packs are a bound), a sampled
    learning rate is not; a pruner that reads completed trials only is warned about the
    concurrency of packs, successive halving (which reads running trials too) is not."""
    spec = write_spec(tmp_path, "dry", factors={"width": {"int": [8, 32]},
                                                "lr": {"loguniform": [0.001, 0.01]}},
                      budgets={"smoke": {"epochs": 2, "num_samples": 4}}, pruner={"name": pruner})
    r = _run("study.run", str(spec), "--budget", "smoke", "--dry-run", "--pack", "on",
             "--num-cpus", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sampled factors that change a shape (width):" in r.stdout
    assert "pack 1 (4 configurations, 8 members): 4 sampled configurations of" in r.stdout
    pruning = [line for line in r.stdout.splitlines() if "pruning:" in line]
    assert pruning == ([] if pruner == "successive_halving" else [
        "  pruning: up to 8 trials run at once with --pack on (1 with --pack off), and the "
        "median pruner compares a trial with completed trials only, so it prunes later and "
        "fewer trials than with --pack off"])
    lr_only = write_spec(tmp_path, "dry2", factors={"lr": {"loguniform": [0.001, 0.01]}},
                         budgets={"smoke": {"epochs": 2, "num_samples": 4}})
    r = _run("study.run", str(lr_only), "--budget", "smoke", "--dry-run", "--pack", "on",
             "--num-cpus", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "change a shape" not in r.stdout and "pruning:" not in r.stdout


def test_unknown_study(tmp_path):
    line = _one_error_line(_run("study.run", "no_such_study", cwd=tmp_path))
    assert "unknown study 'no_such_study'" in line and "spirals_depth" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("edit,expected", [
    ("name: x\nquestion: [unclosed\n", "malformed YAML"),
    ("- a list, not a mapping\n", "must be a mapping"),
])
def test_malformed_yaml(tmp_path, edit, expected):
    path = tmp_path / "x.yaml"
    path.write_text(edit)
    line = _one_error_line(_run("study.run", str(path), cwd=tmp_path))
    assert str(path) in line and expected in line


@pytest.mark.parametrize("fields,expected", [
    ({"seeds": "three"}, "field 'seeds' = 'three'"),
    ({"fixed": {"noise": -1}}, "field 'noise' = -1"),
    ({"fixed": {"restarts": 0}}, "field 'restarts' = 0: Input should be greater than or equal to 1"),
    ({"fixed": {"epochs": "many"}}, "field 'epochs' = 'many'"),
    ({"factors": {"lr": {"grid": []}}}, "grid must list at least one value"),
    ({"factors": {"colour": {"grid": [1, 2]}}}, "unknown setting 'colour'"),
    ({"factors": {"lr": {"loguniform": [0.1, 0.01]}}}, "low < high"),
    ({"factors": {"kind": {"grid": ["vae", "gan"]}}}, "field 'kind' = 'gan'"),
    ({"search": {"metric": "test_ll"}}, "not reported every epoch"),
    ({"pruner": {"name": "magic"}}, "field 'pruner.name' = 'magic'"),
    ({"match_compute": "training_flops", "factors": {"width": {"int": [16, 64]}}},
     "field 'match_compute' = 'training_flops': Value error, match_compute needs every factor "
     "on a grid (the compute of a sampled value is not known before it is drawn): width is "
     "sampled"),
    ({"match_compute": "training_flops", "factors": {"n_train": {"grid": [0, 500]}}},
     "match_compute: budget 'smoke' trains some configurations on all points (n_train 0) and "
     "others on fewer"),
    ({"claims": [{"statement": "s", "metric": "test_ll", "expect": "above", "threshold": 0.0,
                  "about": "mean"}]},
     "a claim against a threshold is about the median (in most seeds), tested by signs"),
    ({"claims": [{"statement": "s", "metric": "test_ll", "expect": "above", "threshold": 0.0,
                  "about": "mode"}]}, "Input should be 'mean' or 'median'"),
    ({"claims": [{"statement": "fits", "metric": "test_ll", "expect": "above",
                  "threshold": 0.0}]},
     "field 'claims[0]' ('fits'): a claim on 2-D models is judged only on models that fit; "
     "set gates.max_ll_gap"),
    ({"protocol": [{"date": "yesterday", "change": "c", "reason": "r"}]},
     "field 'protocol[0].date' = 'yesterday'"),
])
def test_malformed_spec_names_file_field_and_value(tmp_path, fields, expected):
    path = write_spec(tmp_path, "bad", **fields)
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", cwd=tmp_path))
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "results").exists()


DEPTH = {"factors": {"depth": {"grid": [1, 2]}},
         "fixed": {"kind": "hvae", "latent_dim": 2, "hidden_block": [8]}}


@pytest.mark.parametrize("fields,expected", [
    (DEPTH | {"claims": [{"statement": "s", "metric": "test_ll", "where": {"depth": 3},
                          "versus": {"depth": 1}, "expect": "higher"}]},
     "field 'claims[0].where.depth' = 3: not a level of factor 'depth' (levels: 1, 2)"),
    (DEPTH | {"claims": [{"statement": "s", "metric": "test_ll", "where": {"depht": 2},
                          "versus": {"depth": 1}, "expect": "higher"}]},
     "field 'claims[0].where.depht' = 2: no factor or setting 'depht'; did you mean 'depth'?"),
    (DEPTH | {"claims": [{"statement": "s", "metric": "kl_z3", "where": {"depth": 2},
                          "expect": "below", "threshold": 0.1}]},
     "field 'claims[0].metric' = 'kl_z3': no selected configuration produces this metric; "
     "did you mean 'kl_z2'?"),
    (DEPTH | {"responses": ["test_ll", "test_lll"]},
     "field 'responses[1]' = 'test_lll': no selected configuration produces this metric; "
     "did you mean 'test_ll'?"),
    ({"responses": ["auroc_neg_ll_shifted_2"]},
     "field 'responses[0]' = 'auroc_neg_ll_shifted_2': no selected configuration produces this "
     "metric; did you mean 'auroc_neg_ll_shifted_1'?"),
    ({"curves": [{"title": "t", "metric": "auroc_neg_ll_shifted_{x}", "x": [1.0, 3.0]}]},
     "field 'curves[0].metric' = 'auroc_neg_ll_shifted_3'"),
    ({"gates": {"min_kl": {"z9": 0.1}}}, "field 'gates' = 'kl_z9'"),
    ({"search": {"metric": "val_bond"}},
     "field 'search.metric' = 'val_bond': not reported every epoch; did you mean 'val_bound'?"),
])
def test_names_in_a_study_file_are_checked_before_anything_runs(tmp_path, fields, expected):
    path = write_spec(tmp_path, "typo", **fields)
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", cwd=tmp_path))
    assert str(path) in line and expected in line, line
    assert not (tmp_path / "results").exists()


def test_unknown_study_gets_a_suggestion(tmp_path):
    line = _one_error_line(_run("study.run", "spirals_dpth", cwd=tmp_path))
    assert "did you mean 'spirals_depth'?" in line


def test_unreachable_tracking_server(tmp_path):
    path = write_spec(tmp_path, "ok")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--tracking-uri",
                                "http://127.0.0.1:9", cwd=tmp_path))
    assert "http://127.0.0.1:9" in line and "not usable" in line
    assert not (tmp_path / "results").exists()


def test_resume_of_a_study_that_never_ran(tmp_path):
    path = write_spec(tmp_path, "never")
    line = _one_error_line(_run("study.run", str(path), "--resume", "--budget", "smoke", cwd=tmp_path))
    assert "no study to resume" in line


def test_results_folder_that_cannot_be_written(tmp_path):
    path = write_spec(tmp_path, "ok")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--results",
                                str(blocker / "res"), cwd=tmp_path))
    assert "not writable" in line and str(blocker / "res") in line and "not a directory" in line


def test_report_before_the_study_ran(tmp_path):
    line = _one_error_line(_run("study.report", "spirals_depth", "--results", str(tmp_path / "r"),
                                cwd=REPO))
    assert "run the study first" in line


@pytest.mark.parametrize("flag,value", [("--max-concurrent", "0"), ("--num-cpus", "-2"),
                                        ("--gpus-per-trial", "-0.5"), ("--mlflow-grace", "-1")])
def test_flag_out_of_range(tmp_path, flag, value):
    path = write_spec(tmp_path, "ok")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", flag, value, cwd=tmp_path))
    assert f"{flag} {float(value) if '.' in value else int(value)}" in line
    assert not (tmp_path / "results").exists()


def test_packs_on_gpus_are_refused(tmp_path):
    """Pack servers train on CPUs only so far: asking for both is one line, nothing written."""
    path = write_spec(tmp_path, "ok")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--pack", "on",
                                "--gpus-per-trial", "0.5", cwd=tmp_path))
    assert "--pack on" in line and "0.5 GPU" in line and "--pack off" in line
    assert not (tmp_path / "results").exists()


def _mnist_spec(tmp_path):
    return write_spec(tmp_path, "tiny_mnist", fixed={"dataset": "mnist", "n_train": 256})


def test_missing_dataset_file(tmp_path):
    env = {"HVAE_MNIST_MIRROR": "http://127.0.0.1:9/"}  # nothing listens: the download fails
    data = tmp_path / "data"
    line = _one_error_line(_run("study.run", str(_mnist_spec(tmp_path)), "--budget", "smoke",
                                "--data-dir", str(data), cwd=tmp_path, env=env))
    assert str(data / "mnist" / "train-images-idx3-ubyte.gz") in line and "missing" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()
    assert not any(p.is_file() for p in data.rglob("*"))  # no half-downloaded file left


def test_corrupt_dataset_file(tmp_path, shared_data):
    data = tmp_path / "data"
    shutil.copytree(shared_data / "mnist", data / "mnist")
    bad = data / "mnist" / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-100])  # truncated
    line = _one_error_line(_run("study.run", str(_mnist_spec(tmp_path)), "--budget", "smoke",
                                "--data-dir", str(data), cwd=tmp_path))
    assert str(bad) in line and "md5" in line and "does not match" in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


def test_tracking_uri_that_is_not_an_mlflow_server(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "0"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = server.stdout.readline().split(" port ")[1].split()[0]
        path = write_spec(tmp_path, "ok")
        uri = f"http://127.0.0.1:{port}"
        line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--tracking-uri",
                                    uri, cwd=tmp_path))
        assert uri in line and "not usable" in line
        assert not (tmp_path / "results").exists()
    finally:
        server.kill()


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}/a-file/mlflow.db", "nosuch://host/x"])
def test_wrong_tracking_uri(tmp_path, uri):
    (tmp_path / "a-file").write_text("a file, not a folder")
    uri = uri.format(tmp=tmp_path)
    path = write_spec(tmp_path, "ok")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--tracking-uri", uri,
                                cwd=tmp_path))
    assert uri in line and "not usable" in line
    assert not (tmp_path / "results").exists()


def test_storage_that_cannot_be_opened(tmp_path):
    path = write_spec(tmp_path, "ok")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--storage",
                                "nosuch://bucket/x", cwd=tmp_path))
    assert "--storage 'nosuch://bucket/x'" in line
    assert not (tmp_path / "results").exists()


def test_results_of_an_earlier_run_are_not_replaced_silently(tmp_path):
    path = write_spec(tmp_path, "ok")
    earlier = tmp_path / "results" / "ok"
    earlier.mkdir(parents=True)
    (earlier / "study.json").write_text('{"study": "ok"}')
    (earlier / "trials.parquet").write_bytes(b"earlier results")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", cwd=tmp_path))
    assert str(earlier) in line and "--resume" in line and "--overwrite" in line
    assert (earlier / "trials.parquet").read_bytes() == b"earlier results"


CLAIM = {"statement": "s", "metric": "test_ll", "where": {"lr": 0.01}, "versus": {"lr": 0.003},
         "expect": "higher"}
FIT = {"gates": {"max_ll_gap": 1.0}}


@pytest.mark.parametrize("fields,flags,expected", [
    ({}, ["--until-decided", "--max-seeds", "10"], "--until-decided: study 'ok' has no claims to decide"),
    ({"claims": [CLAIM], "factors": {"lr": {"grid": [0.003, 0.01]}, "width": {"int": [4, 8]}},
      **FIT},
     ["--until-decided", "--max-seeds", "10"], "samples factors with Optuna"),
    ({"claims": [CLAIM], **FIT}, ["--until-decided"], "--until-decided needs --max-seeds N: the most seeds a configuration may get"),
    ({"claims": [CLAIM], **FIT}, ["--until-decided", "--max-seeds", "2"], "--max-seeds = 2: give the most"),
    ({"claims": [CLAIM], "seeds": [3, 7], **FIT}, ["--until-decided", "--max-seeds", "10"],
     "field 'seeds' = [3, 7]: --until-decided adds seeds 8, 9, ...: give seeds as a count"),
    ({"claims": [CLAIM]}, ["--seed-step", "2"], "--seed-step: it goes with --until-decided"),
    ({"claims": [CLAIM]}, ["--new-parent"], "--new-parent: it goes with --resume"),
])
def test_until_decided_needs_claims_a_grid_and_a_cap(tmp_path, fields, flags, expected):
    path = write_spec(tmp_path, "ok", **fields)
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", *flags, cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_shorthand_in_another_level_of_the_same_factor_is_no_clash(tmp_path):
    """Level a sets hidden, level b uses width: no trial has both, so nothing is replaced."""
    path = write_spec(tmp_path, "fine", factors={"model": {"levels": {
        "a": {"hidden": [[64, 64]]}, "b": {"width": 32}}}})
    spec = load_spec(str(path))
    shapes = {c["model"]: spec.trial_config(c, "smoke").hidden for c in spec.grid_cells()}
    assert shapes == {"a": ((64, 64),), "b": ((32, 32),)}


def _readme_study(tmp_path):
    """README.md's "Writing a study" file, as written, loaded."""
    text = (REPO / "README.md").read_text()
    block = text[text.index("## Writing a study"):].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_study.yaml").write_text(block)
    return load_spec(str(tmp_path / "my_study.yaml"))


def test_the_readme_example_study_file_is_valid_and_small_at_smoke(tmp_path):
    """README.md's "Writing a study" file, as written (benchmarks/smoke_times.py times it)."""
    spec = _readme_study(tmp_path)
    assert spec.num_trials("smoke") == 12
    smoke = spec.trial_config(spec.grid_cells()[0], "smoke")
    assert smoke.n_test <= 500 and smoke.eval_importance <= 50  # K=1000 on 10,000 points is not a smoke test


def test_the_readme_example_trains_the_widths_its_width_factor_gives(tmp_path):
    spec = _readme_study(tmp_path)
    seen = set()
    for cell in spec.grid_cells():
        factors = cell | {"lr": 1e-3}
        cfg = spec.trial_config(factors, "smoke")
        model = build_model(cfg.architecture(), cfg.seeds[:1])
        w = int(cell["width"])
        depth = 2 if cell["model"] == "hvae" else 1
        assert [list(b) for b in cfg.hidden] == [[w, w]] * depth
        hidden_outs = {m.out_features for m in model.modules() if isinstance(m, EnsembleLinear)
                       and m.out_features > 4}  # the hidden layers (outputs and latents are 2-4)
        assert hidden_outs == {w}, (cell, hidden_outs)
        seen.add((cell["model"], w))
    assert seen == {(m, w) for m in ("vae", "hvae") for w in (16, 32, 64)}


@pytest.mark.parametrize("fields, named", [
    ({"factors": {"width": {"grid": [16, 32]},
                  "model": {"levels": {"a": {"hidden": [[64, 64]]}, "b": {"latents": [2]}}}}},
     ("factors.width", "factors.model.levels.a.hidden")),
    ({"fixed": {"width": 32}, "factors": {"model": {"levels": {"a": {"hidden": [[8, 8]]}}}}},
     ("fixed.width", "factors.model.levels.a.hidden")),
    ({"factors": {"depth": {"grid": [1, 2]},
                  "model": {"levels": {"a": {"latents": [2, 2]}}}}},
     ("factors.depth", "factors.model.levels.a.latents")),
    ({"factors": {"model": {"levels": {"a": {"hidden": [[64, 64]]}}},  # another factor's level
                  "size": {"levels": {"s": {"width": 16}}}}},
     ("factors.size.levels.s.width", "factors.model.levels.a.hidden")),
])
def test_a_shorthand_that_would_replace_a_levels_shape_is_refused_naming_both(
        tmp_path, fields, named):
    path = write_spec(tmp_path, "clash", **fields)
    with pytest.raises(SpecError) as err:
        load_spec(str(path))
    line = str(err.value)
    assert "\n" not in line and str(path) in line
    assert all(f"'{n}'" in line for n in named), line


GATED = {"gates": {"max_ll_gap": 0.3}}
THRESHOLD = {"statement": "most seeds fit", "metric": "test_ll", "expect": "above",
             "threshold": -5.0}


def test_a_claim_that_cannot_be_decided_at_the_budgets_seeds_is_refused_before_it_runs(tmp_path):
    """A threshold claim is tested by signs: 3 seeds reach p = 0.25 at best, so a budget that
    judges claims refuses to run it, naming the seeds it needs; smoke judges nothing and runs,
    and its dry run lists what each claim needs."""
    path = write_spec(tmp_path, "undecidable", seeds=3, claims=[THRESHOLD], **GATED,
                      budgets={"smoke": {"epochs": 1}, "default": {"epochs": 1}})
    r = _run("study.run", str(path), "--budget", "default", cwd=tmp_path)
    line = _one_error_line(r)
    assert r.returncode == 2
    assert (f"{path}: field 'claims[0]' ('most seeds fit') cannot be decided at 3 seeds "
            "(budget 'default'): its sign test of the median reaches p = 0.25 at best, above "
            "its Holm level 0.05 (0.05 / 1 claims); it needs 6 seeds") in line, line
    assert not (tmp_path / "results").exists()
    dry = _run("study.run", str(path), "--budget", "default", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 2 and "claims[0] sign test of the median: needs 6 seeds, has 3 " \
        "(NOT decidable" in dry.stdout
    smoke = _run("study.run", str(path), "--budget", "smoke", "--dry-run", cwd=tmp_path)
    assert smoke.returncode == 0 and "smoke judges nothing" in smoke.stdout
    assert "needs 6 seeds, has 3" in smoke.stdout
    # with --until-decided the looks decide: 3 seeds then 3 per round up to 9 can
    seq = _run("study.run", str(path), "--budget", "default", "--dry-run", "--until-decided",
               "--max-seeds", "9", cwd=tmp_path)
    assert seq.returncode == 0 and "needs 8 seeds, has 9 (decidable" in seq.stdout, seq.stdout


def test_confirmatory_seeds_must_be_declared_to_run_on_them(tmp_path):
    path = write_spec(tmp_path, "noconfirm")
    line = _one_error_line(_run("study.run", str(path), "--budget", "smoke", "--confirmatory",
                                cwd=tmp_path))
    assert f"{path}: --confirmatory needs field 'confirmatory_seeds'" in line, line
    ok = write_spec(tmp_path, "confirm", confirmatory_seeds=1000)
    dry = _run("study.run", str(ok), "--budget", "smoke", "--confirmatory", "--dry-run",
               cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
