"""Mirror: copies of the results folder on a pyarrow filesystem (here ``file://``)."""

from __future__ import annotations

import os

import pytest

from study.core.errors import UserError
from study.store.storage import Mirror, open_storage


def test_push_copies_new_and_changed_files_only_and_pull_restores(tmp_path):
    local, bucket = tmp_path / "res", tmp_path / "bucket"
    (local / "plots" / "t1").mkdir(parents=True)
    (local / "plots" / "t1" / "a.png").write_bytes(b"a" * 10)
    (local / "plots" / "t1" / "b.png").write_bytes(b"b" * 10)
    (local / "trials.parquet").write_bytes(b"rows")
    mirror = Mirror(f"file://{bucket}/study", local)
    mirror.check_writable()
    assert mirror.push("trials.parquet", "plots", "missing.json")
    remote = bucket / "study"
    assert (remote / "plots" / "t1" / "a.png").read_bytes() == b"a" * 10
    before = (remote / "plots" / "t1" / "a.png").stat().st_mtime_ns

    (local / "plots" / "t1" / "b.png").write_bytes(b"B" * 10)  # same size, newer
    os.utime(local / "plots" / "t1" / "b.png", ns=(before + 10**9, before + 10**9))
    assert mirror.push("plots")
    assert (remote / "plots" / "t1" / "b.png").read_bytes() == b"B" * 10
    assert (remote / "plots" / "t1" / "a.png").stat().st_mtime_ns == before  # not re-sent

    elsewhere = Mirror(f"file://{bucket}/study", tmp_path / "new-head")
    (remote / "ray").mkdir()
    (remote / "ray" / "state.json").write_text("{}")
    elsewhere.pull()
    got = sorted(p.relative_to(tmp_path / "new-head").as_posix()
                 for p in (tmp_path / "new-head").rglob("*") if p.is_file())
    assert got == ["plots/t1/a.png", "plots/t1/b.png", "trials.parquet"]  # Ray's folder stays


def test_unusable_storage_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot be opened"):
        open_storage("nosuch://bucket")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        Mirror(f"file://{blocker}/study", tmp_path / "res").check_writable()


def test_a_lost_head_node_finds_its_study_among_several_on_the_storage(tmp_path):
    """Each study's prefix is URI/NAME/ID: the one to pull is the only one, or the one whose
    results folder had this path; anything else names the candidates."""
    import json

    from study.store.storage import find_study

    bucket = tmp_path / "bucket"
    storage = f"file://{bucket}"
    with pytest.raises(UserError, match="holds no study to resume"):
        find_study(storage, "s", tmp_path / "res")
    for sid, path in (("aaa", tmp_path / "res"), ("bbb", tmp_path / "other")):
        (bucket / "s" / sid).mkdir(parents=True)
        (bucket / "s" / sid / "study.json").write_text(json.dumps(
            {"study": "s", "study_id": sid, "path": str(path), "budget": "smoke"}))
    (bucket / "s" / "junk").mkdir()  # not a study's prefix
    prefix, state = find_study(storage, "s", tmp_path / "res")
    assert prefix == f"{storage}/s/aaa" and state.study_id == "aaa"
    with pytest.raises(UserError, match="holds 2 studies named 's' \\(id aaa from .*id bbb from"):
        find_study(storage, "s", tmp_path / "elsewhere")
    mirror = Mirror(prefix, tmp_path / "res")
    mirror.clear()  # --overwrite of aaa: its prefix goes, bbb's stays
    assert sorted(p.name for p in (bucket / "s").iterdir()) == ["bbb", "junk"]
