"""The study folder's rules, the fingerprint's diff, URI masking and the checkpoint fallback,
each on constructed cases with known answers (no Ray)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import pytest

from study.errors import UserError
from study.fingerprint import changes, resolved_study
from study.folder import LAYOUT, StudyFolder
from study.redact import RedactingFilter, redact
from studies import write_spec


def _hold_lock(path, ready, release) -> None:
    folder = StudyFolder(path, "held")
    folder.take(resume=False, overwrite=False)
    ready.set()
    release.wait(30)


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path / "f", ready, release))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(UserError, match=f"pid {holder.pid} on host .* running since"):
        StudyFolder(tmp_path / "f", "held").check(resume=False, overwrite=True)
    holder.kill()  # no clean-up of any kind: the kernel releases the lock
    holder.join()
    folder = StudyFolder(tmp_path / "f", "held")
    assert folder.take(resume=False, overwrite=False) == {}
    assert json.loads((tmp_path / "f" / "study.lock").read_text())["pid"] == os.getpid()
    folder.release()


def test_overwrite_removes_the_manifest_and_the_temporary_files_of_its_entries(tmp_path):
    folder = StudyFolder(tmp_path / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.write_state(budget="smoke")
    for name in ("trials.parquet", ".trials.parquet.abc123.tmp", "optuna.db-journal"):
        (tmp_path / "r" / name).write_text("x")
    (tmp_path / "r" / "plots" / "t1").mkdir(parents=True)
    for name in ("notes.txt", ".notes.txt.tmp", "trials.parquet.bak"):
        (tmp_path / "r" / name).write_text("the user's")
    removed = folder.remove_owned()
    assert sorted(removed) == sorted([".trials.parquet.abc123.tmp", "optuna.db-journal", "plots",
                                      "study.json", "trials.parquet"])
    left = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert left == [".notes.txt.tmp", "notes.txt", "study.lock", "trials.parquet.bak"]
    folder.release()


def test_a_refused_new_folder_is_removed_again(tmp_path):
    folder = StudyFolder(tmp_path / "new" / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.give_up()
    assert not (tmp_path / "new" / "r").exists()


def test_the_manifest_lists_every_entry_the_layout_has():
    assert {"study.json", "ray", "trials.parquet", "epochs.parquet", "scores.parquet", "plots",
            "optuna.db", "report", "mlflow_unsent.json", "study.lock"} <= set(LAYOUT)


def test_the_fingerprint_diff_names_field_old_and_new(tmp_path):
    from study.spec_file import load_spec

    spec = load_spec(str(write_spec(tmp_path, "a", factors={"lr": {"grid": [0.01, 0.02]}})))
    other = load_spec(str(write_spec(tmp_path, "a", factors={"lr": {"grid": [0.01, 0.02]}},
                                     fixed={"noise": 0.1})))
    old, new = resolved_study(spec, "smoke"), resolved_study(other, "smoke")
    assert changes(old, old) == []
    assert changes(old, new) == ["noise: 0.05 -> 0.1 (all 2 configurations)"]
    assert changes(old, resolved_study(spec, "default"))[0] == "budget: smoke -> default"


@pytest.mark.parametrize("text,masked", [
    ("http://me:pw@host:5000", "http://me:***@host:5000"),
    ("error at postgresql://u:p%40ss@db/x: refused", "error at postgresql://u:***@db/x: refused"),
    ("s3://bucket/x?secret_key=abc&region=1", "s3://bucket/x?secret_key=***&region=1"),
    ("http://host:5000 (no password)", "http://host:5000 (no password)"),
])
def test_passwords_in_uris_are_masked(text, masked):
    assert redact(text) == masked


def test_log_records_are_masked():
    record = logging.LogRecord("x", logging.WARNING, "f", 1, "cannot reach %s", ("http://a:b@h",),
                               None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "cannot reach http://a:***@h"


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    from contextlib import nullcontext

    from study.config import trial_config
    from study.data import load_data
    from study.trainer import Trainer
    from study.trial import restore_newest

    cfg = trial_config({"dataset": "moons", "n_train": 256, "n_val": 64, "n_test": 64,
                        "latents": [2], "hidden": [8], "seeds": [0], "epochs": 4})
    data = load_data(cfg.data_config())
    t = Trainer(cfg, data, device="cpu")
    t.fit(lambda m: m.epoch == 1)
    t.save(tmp_path / "old.pt")
    t.fit(lambda m: m.epoch == 3)
    t.save(tmp_path / "new.pt")
    (tmp_path / "new.pt").write_bytes((tmp_path / "new.pt").read_bytes()[:500])  # truncated
    candidates = [(name, lambda p=tmp_path / name: nullcontext(p)) for name in ("new.pt", "old.pt")]
    fresh = Trainer(cfg, data, device="cpu")
    restored = restore_newest(fresh, candidates)
    assert restored.epoch == fresh.state.epoch == 1
    assert "unreadable checkpoint new.pt" in restored.note and "resumed from old.pt" in restored.note
    (tmp_path / "old.pt").write_bytes(b"")
    restored = restore_newest(Trainer(cfg, data, device="cpu"), candidates)
    assert restored.epoch == 0 and "restarted from epoch 0" in restored.note
    assert restore_newest(Trainer(cfg, data, device="cpu"), []).note == ""


def test_a_trials_checkpoints_are_all_found_newest_first(tmp_path):
    """Newer ones than Ray's record too: a killed driver's record lags behind the folder."""
    from ray import tune

    from study.trainable import _trial_checkpoints

    trial = tmp_path / "run_study_trial_x"
    for i in (3, 1, 2, 7):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
    (trial / "error.txt").write_text("")
    found = _trial_checkpoints(tune.Checkpoint(str(trial / "checkpoint_000003")))
    assert [c.path.rsplit("/", 1)[1] for c in found] == [
        "checkpoint_000007", "checkpoint_000003", "checkpoint_000002", "checkpoint_000001"]


def test_files_the_study_writes_follow_the_umask(tmp_path):
    from study.io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "state.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o640  # group-readable
