"""The study folder's rules, the fingerprint's diff, URI masking and the checkpoint fallback,
each on constructed cases with known answers (no Ray)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

import pytest
from studies import write_spec

from study.core.errors import UserError
from study.core.redact import RedactingFilter, redact
from study.spec.fingerprint import changes, settings_record
from study.spec.resolved import ResolvedStudy
from study.store.folder import LAYOUT, StudyFolder


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
    assert folder.take(resume=False, overwrite=False) is None
    assert json.loads((tmp_path / "f" / "study.lock").read_text())["pid"] == os.getpid()
    folder.release()


def test_overwrite_removes_the_manifest_and_the_temporary_files_of_its_entries(tmp_path):
    folder = StudyFolder(tmp_path / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.begin("abc", budget="smoke")
    for name in ("trials.parquet", ".trials.parquet.hvae-tmp-abc_123.tmp", "optuna.db-journal"):
        (tmp_path / "r" / name).write_text("x")
    (tmp_path / "r" / "plots" / "t1").mkdir(parents=True)
    for name in ("notes.txt", ".notes.txt.tmp", "trials.parquet.bak"):
        (tmp_path / "r" / name).write_text("the user's")
    folder.release()
    again = StudyFolder(tmp_path / "r", "s")
    assert again.take(resume=False, overwrite=True) is None
    left = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert left == [".notes.txt.tmp", "notes.txt", "study.lock", "trials.parquet.bak"]
    again.release()


def test_overwrite_never_takes_a_users_look_alike_hidden_files_for_its_own(tmp_path):
    """Issue 22: ``.plots.backup/``, ``.report.draft.md``, ``.study.json.orig`` and
    ``.trials.parquet.bak`` are a user's, though they start like the study's temporary names."""
    folder = StudyFolder(tmp_path / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.begin("abc")
    folder.release()
    mine = {".report.draft.md": "draft", ".study.json.orig": "{}", ".trials.parquet.bak": "rows",
            ".trials.parquet.hvae-tmp-x.tmp.mine": "not a temporary name", "notes.txt": "n"}
    for name, text in mine.items():
        (tmp_path / "r" / name).write_text(text)
    (tmp_path / "r" / ".plots.backup").mkdir()
    (tmp_path / "r" / ".plots.backup" / "a.png").write_bytes(b"png")
    again = StudyFolder(tmp_path / "r", "s")
    again.take(resume=False, overwrite=True)
    again.release()
    for name, text in mine.items():
        assert (tmp_path / "r" / name).read_text() == text
    assert (tmp_path / "r" / ".plots.backup" / "a.png").read_bytes() == b"png"
    assert not (tmp_path / "r" / "study.json").exists()


def test_a_symlinked_lock_or_state_is_never_written_through(tmp_path):
    users = tmp_path / "users_file.txt"
    users.write_text("precious")
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "study.lock").symlink_to(users)
    with pytest.raises(UserError, match="study.lock is a symbolic link"):
        StudyFolder(folder, "s").take(resume=False, overwrite=False)
    assert users.read_text() == "precious"
    (folder / "study.lock").unlink()
    (folder / "study.json").symlink_to(users)
    with pytest.raises(UserError, match="study.json is a symbolic link"):
        StudyFolder(folder, "s").take(resume=False, overwrite=True)
    assert users.read_text() == "precious" and (folder / "study.json").is_symlink()


@pytest.mark.parametrize("where", ["trials.parquet", "plots", "plots/t1/a.png"])
def test_a_link_inside_the_study_entries_is_refused(tmp_path, where):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    folder = StudyFolder(tmp_path / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.begin("abc")
    folder.release()
    link = tmp_path / "r" / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    with pytest.raises(UserError, match="symbolic link"):
        StudyFolder(tmp_path / "r", "s").take(resume=False, overwrite=True)
    assert (outside / "keep.txt").read_text() == "keep" and link.is_symlink()


def test_a_symlink_loop_as_the_results_folder_is_one_error(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(UserError, match="points back at itself"):
        StudyFolder(tmp_path / "a", "s")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(UserError, match="which does not exist"):
        StudyFolder(tmp_path / "dangling", "s")


def test_an_unreadable_state_refuses_resume_and_overwrite_removes_only_study_names(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "study.json").write_text('{"study": "s", "manif')  # truncated
    for name in ("trials.parquet", "notes.txt"):
        (folder / name).write_text("x")
    (folder / "ray").mkdir()
    with pytest.raises(UserError, match="not a readable study state.*cannot be resumed.*--overwrite"):
        StudyFolder(folder, "s").check(resume=True, overwrite=False)
    with pytest.raises(UserError, match="not a readable study state.*add --overwrite"):
        StudyFolder(folder, "s").check(resume=False, overwrite=False)
    taken = StudyFolder(folder, "s")
    taken.take(resume=False, overwrite=True)
    assert taken.unreadable
    taken.release()
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "study.lock"]


def test_a_state_without_identity_or_resolved_study_is_not_resumed(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"study": "s", "budget": "smoke"}))
    with pytest.raises(UserError, match="older hvae-study"):
        StudyFolder(folder, "s").check(resume=True, overwrite=False)
    (folder / "study.json").write_text(json.dumps({"study": "s", "study_id": "x"}))
    with pytest.raises(UserError, match="records no resolved study"):
        StudyFolder(folder, "s").check(resume=True, overwrite=False)


def test_a_moved_folder_is_resumed_and_a_copy_whose_original_is_there_is_refused(tmp_path):
    import shutil

    first = StudyFolder(tmp_path / "a", "s")
    first.take(resume=False, overwrite=False)
    first.begin("id1", resolved={"trials": 1})
    first.release()
    shutil.copytree(tmp_path / "a", tmp_path / "copy", symlinks=True)
    with pytest.raises(UserError, match=f"is a copy of {tmp_path / 'a'}.*id id1.*still there"):
        StudyFolder(tmp_path / "copy", "s").check(resume=True, overwrite=False)
    copy = StudyFolder(tmp_path / "copy", "s")
    copy.check(resume=False, overwrite=True)  # a copy may start anew ...
    assert copy.replaced is not None and not copy.replaced_home  # ... leaving the original's storage
    (tmp_path / "a").rename(tmp_path / "moved")
    moved = StudyFolder(tmp_path / "moved", "s")
    state = moved.take(resume=True, overwrite=False)
    assert state.study_id == "id1" and moved.moved_from == tmp_path / "a"
    assert moved.resume_as(state).path == str(tmp_path / "moved")
    assert json.loads((tmp_path / "moved" / "study.json").read_text())["generation"] == 2
    moved.release()


def test_a_refused_new_folder_is_removed_again(tmp_path):
    folder = StudyFolder(tmp_path / "new" / "r", "s")
    folder.take(resume=False, overwrite=False)
    folder.give_up()
    assert not (tmp_path / "new" / "r").exists()


def test_the_manifest_lists_every_entry_the_layout_has():
    assert {"study.json", "ray", "trials.parquet", "epochs.parquet", "scores.parquet", "plots",
            "optuna.db", "report", "mlflow_unsent.json", "study.lock"} <= set(LAYOUT)


def test_the_fingerprint_diff_names_field_old_and_new(tmp_path):
    from study.spec.spec_file import load_spec

    spec = load_spec(str(write_spec(tmp_path, "a", factors={"lr": {"grid": [0.01, 0.02]}})))
    other = load_spec(str(write_spec(tmp_path, "a", factors={"lr": {"grid": [0.01, 0.02]}},
                                     fixed={"noise": 0.1})))
    old = settings_record(ResolvedStudy(spec, "smoke"))
    new = settings_record(ResolvedStudy(other, "smoke"))
    assert changes(old, old) == []
    assert changes(old, new) == ["noise: 0.05 -> 0.1 (all 2 configurations)"]
    assert changes(old, settings_record(ResolvedStudy(spec, "default")))[0] == \
        "budget: smoke -> default"


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

    from study.data import load_data
    from study.spec.config import trial_config
    from study.trial.run_trial import restore_newest
    from study.trial.trainer import Trainer

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

    from study.engine.tune_checkpoints import trial_checkpoints

    trial = tmp_path / "run_study_trial_x"
    for i in (3, 1, 2, 7):
        (trial / f"checkpoint_{i:06d}").mkdir(parents=True)
    (trial / "error.txt").write_text("")
    found = trial_checkpoints(tune.Checkpoint(str(trial / "checkpoint_000003")))
    assert [c.path.rsplit("/", 1)[1] for c in found] == [
        "checkpoint_000007", "checkpoint_000003", "checkpoint_000002", "checkpoint_000001"]


def test_files_the_study_writes_follow_the_umask(tmp_path):
    from study.core.io import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "state.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o640  # group-readable


def test_a_cut_short_ray_experiment_state_is_restored_from_the_kept_copy(tmp_path):
    """Ray Tune copies its experiment files into place non-atomically: a disk that filled
    during the copy left a JSON state, once a searcher pickle, cut short and the study could not
    be resumed (the full-disk fault test saw both). A copy kept after each recorded trial
    replaces them."""
    import pickle

    from study.core.errors import UserError
    from study.engine import ray_state
    from study.engine.preflight import _check_ray_state

    exp = tmp_path / "ray"
    exp.mkdir()
    tuner = exp / "tuner.pkl"
    tuner.write_bytes(pickle.dumps({"trainable": "x"}))
    state = exp / "experiment_state-2026-12-03_10-00-00.json"
    searcher = exp / "searcher-state-2026-12-03_10-00-00.pkl"
    searcher.write_bytes(pickle.dumps({"trials": list(range(100))}))
    state.write_text(json.dumps({"trial_data": [["t1", "m1"]]}))
    _check_ray_state(str(exp))
    with pytest.raises(UserError, match="searcher-state.*unreadable"):
        searcher.write_bytes(pickle.dumps({"trials": list(range(100))})[:-7])  # no copy yet
        _check_ray_state(str(exp))
    searcher.write_bytes(pickle.dumps({"trials": list(range(100))}))
    ray_state.keep(exp)
    good = {p.name: p.read_bytes() for p in (tuner, state, searcher)}
    newer = exp / "experiment_state-2026-12-03_10-05-00.json"
    newer.write_text('{"trial_data": [["t1", "m1"], ["t2"')  # the disk filled mid-copy
    searcher.write_bytes(good[searcher.name][:40])
    ray_state.keep(exp)  # a cut-short state never replaces the kept copy
    _check_ray_state(str(exp))  # resumable: the copy will be put back
    assert ray_state.restore(exp)
    assert not newer.exists()  # Ray would take the newest by name
    assert {p.name: p.read_bytes() for p in (tuner, state, searcher)} == good
    assert not ray_state.restore(exp)  # whole now: nothing to do
    (exp / ray_state.KEPT_STATE).write_text("{")  # a damaged copy is no copy
    searcher.write_bytes(b"")
    with pytest.raises(UserError, match="unreadable"):
        _check_ray_state(str(exp))
    assert not ray_state.restore(exp)


def test_only_whole_files_count_as_whole():
    import pickle

    from study.engine.ray_state import is_whole

    data = pickle.dumps({"a": [1.5] * 50, "b": "text"})
    assert is_whole("x.pkl", data)
    assert not any(is_whole("x.pkl", data[:n]) for n in range(len(data)))
    assert is_whole("x.json", b'{"a": 1}') and not is_whole("x.json", b'{"a": ')
    assert not is_whole("x.json", b"")
    assert is_whole("basic-variant-state-1.json", data)  # Ray pickles into a .json name
    assert not is_whole("basic-variant-state-1.json", data[:-1])


def test_a_ray_state_that_names_code_this_version_lacks_is_refused(tmp_path):
    """Ray Tune pickles the scheduler and callbacks by module path; a study started by a
    version whose modules have since moved (study.pruning -> study.engine.pruning) would fail
    deep inside Tuner.restore. The pickles' references are read without unpickling and checked
    first."""
    import pickle

    from study.core.errors import UserError
    from study.engine import ray_state
    from study.engine.preflight import _check_ray_state

    both = pickle.dumps([ray_state.is_whole, ray_state.keep])  # one module, memoised
    assert ray_state.missing_code(both) == []
    moved = both.replace(b"study.engine.ray_state", b"study.engine.ray_stat_")
    assert ray_state.missing_code(moved) == ["study.engine.ray_stat_.is_whole",
                                                      "study.engine.ray_stat_.keep"]
    old = b"cstudy.pruning\nOptunaPruningScheduler\n."  # protocol 0, the old layout's name
    assert ray_state.missing_code(old) == ["study.pruning.OptunaPruningScheduler"]
    assert ray_state.missing_code(pickle.dumps(json.dumps)) == []  # not ours: not checked
    exp = tmp_path / "ray"
    exp.mkdir()
    (exp / "experiment_state-2026-12-03_10-00-00.json").write_text("{}")
    (exp / "tuner.pkl").write_bytes(both)
    _check_ray_state(str(exp))
    (exp / "tuner.pkl").write_bytes(old)
    with pytest.raises(UserError, match=r"tuner.pkl: Ray Tune's saved state refers to "
                                        r"study.pruning.OptunaPruningScheduler, which this version"):
        _check_ray_state(str(exp))
