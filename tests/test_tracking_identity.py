"""The MLflow side of a study's identity (a real sqlite store, no Ray): a resumed study finds its
parent run by id in the store its study.json names, and refuses one that is lost, belongs to
another study, or was continued by another folder of the same study (a stale copy)."""

from __future__ import annotations

import pytest

from study.store.folder import StudyState
from study.store.tracking import (
    GENERATION_TAG,
    STUDY_ID_TAG,
    Tracker,
    TrackingError,
    absolute_uri,
    check_usable,
    recorded_uri,
)


@pytest.fixture
def tracker(tmp_path):
    return Tracker(f"sqlite:///{tmp_path}/mlflow.db", "s", "a question")


def _parent(tracker: Tracker, study_id: str, generation: int) -> str:
    return tracker.start_parent(None, {STUDY_ID_TAG: study_id, GENERATION_TAG: str(generation)},
                                "s smoke")


def test_a_resumed_study_finds_its_own_parent_run(tracker):
    run = _parent(tracker, "id1", 1)
    state = StudyState(study="s", study_id="id1", generation=1, parent_run_id=run)
    assert tracker.find_parent(state) == run
    # stopped before the parent's id reached study.json: found by the study's id, not made twice
    assert tracker.find_parent(state.model_copy(update={"parent_run_id": None})) == run
    other = StudyState(study="s", study_id="id2", generation=1)
    assert tracker.find_parent(other) is None


def test_a_lost_or_foreign_parent_run_is_refused_unless_a_new_one_is_asked_for(tracker):
    run = _parent(tracker, "id1", 1)
    foreign = StudyState(study="s", study_id="id2", generation=1, parent_run_id=run)
    with pytest.raises(TrackingError, match="belongs to another study \\(id id1\\)"):
        tracker.find_parent(foreign)
    tracker.client.delete_run(run)
    mine = StudyState(study="s", study_id="id1", generation=1, parent_run_id=run)
    with pytest.raises(TrackingError, match=f"parent run {run} of this study is not in .*"
                                            "--tracking-uri.*--new-parent"):
        tracker.find_parent(mine)
    assert tracker.find_parent(mine, new_parent=True) is None  # a new one will be made


def test_a_stale_copy_is_refused_once_another_folder_continued_the_study(tracker):
    run = _parent(tracker, "id1", 3)  # the study was continued up to generation 3 elsewhere
    stale = StudyState(study="s", study_id="id1", generation=2, parent_run_id=run)
    with pytest.raises(TrackingError, match="continued by another folder of this study"):
        tracker.find_parent(stale)
    with pytest.raises(TrackingError, match="stale copy"):
        tracker.find_parent(stale, new_parent=True)  # a new parent would not make it whole
    assert tracker.find_parent(stale.model_copy(update={"generation": 3})) == run


def test_stores_that_keep_nothing_or_are_gone_are_refused(tmp_path, monkeypatch):
    for uri in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(TrackingError, match="is in memory"):
            check_usable(uri)
    gone = f"sqlite:///{tmp_path}/moved-away/mlflow.db"
    check_usable(gone)  # a new study makes its store
    with pytest.raises(TrackingError, match="does not exist, and this study's parent run is in it"):
        check_usable(gone, resuming=True)
    assert not (tmp_path / "moved-away").exists()
    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_uri("http://host:5000") == "http://host:5000"
    assert recorded_uri("http://u:***@host") is None and recorded_uri("sqlite:////x.db") == "sqlite:////x.db"
