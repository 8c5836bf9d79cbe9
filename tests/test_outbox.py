"""MlflowOutbox against a real sqlite MLflow store: order, idempotence, refused writes."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from study.engine.outbox import MlflowOutbox


def _outbox(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("box")
    parent = client.create_run(exp).info.run_id
    return MlflowOutbox(uri, exp, "val_elbo", flush_every_s=0.0), client, exp, parent


def _child(client, exp, trial):
    runs = client.search_runs([exp], filter_string=f"tags.ray_trial_id = '{trial}'")
    assert len(runs) == 1
    return runs[0]


def test_re_reported_epochs_are_sent_once_and_a_second_driver_reuses_the_run(tmp_path):
    box, client, exp, parent = _outbox(tmp_path)
    box.child_run("t1", parent, "trial t1", {"lr": 0.1})
    for epoch in range(1, 6):
        box.log_epoch("t1", epoch, {"val_elbo": -float(epoch)})
    for epoch in range(3, 8):  # a retry from the checkpoint at epoch 2 re-reports 3..5
        box.log_epoch("t1", epoch, {"val_elbo": -float(epoch)})
    assert box.close(30) == []
    run = _child(client, exp, "t1")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_elbo")]
    assert sorted(steps) == list(range(1, 8))

    again = MlflowOutbox(box.uri, exp, "val_elbo", flush_every_s=0.0)
    again.child_run("t1", parent, "trial t1", {"lr": 0.1})  # a resumed driver
    for epoch in range(6, 10):
        again.log_epoch("t1", epoch, {"val_elbo": -float(epoch)})
    again.finish("t1", "FINISHED", {"status": "finished"}, {"final/test_ll": -1.5}, 9, None)
    assert again.close(30) == []
    run = _child(client, exp, "t1")  # still one run
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_elbo")]
    assert sorted(steps) == list(range(1, 10))
    assert run.data.tags["status"] == "finished" and run.info.status == "FINISHED"
    assert run.data.metrics["final/test_ll"] == -1.5


def test_a_refused_write_is_recorded_and_the_rest_still_arrive(tmp_path):
    box, client, exp, parent = _outbox(tmp_path)
    box.child_run("gone", parent, "trial gone", {})
    assert box.drain(30)
    client.delete_run(_child(client, exp, "gone").info.run_id)  # someone deletes it mid-study
    box.finish("gone", "FINISHED", {"status": "finished"}, {"final/x": 1.0}, 1, None)
    box.child_run("ok", parent, "trial ok", {"a": 1})
    box.finish("ok", "FINISHED", {"status": "finished"}, {"final/x": 2.0}, 1, None)
    losses = box.close(30)
    assert [(x["trial_id"], x["what"]) for x in losses] == [("gone", "finish")]
    assert losses[0]["attempts"] == 1  # refused for good: not retried
    assert _child(client, exp, "ok").data.metrics["final/x"] == 2.0


class _DropsBatches:
    """The real client, except that the ``log_batch`` calls numbered in ``fail`` raise as a
    dropped connection would: the fault of a server killed mid-request, made repeatable."""

    def __init__(self, client, fail: set[int]) -> None:
        self._client, self._fail, self.calls = client, fail, 0

    def log_batch(self, *args, **kwargs):
        self.calls += 1
        if self.calls in self._fail:
            raise ConnectionError("connection reset by peer")
        return self._client.log_batch(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def _epochs_through(tmp_path, transport: type, fail: set[int]):
    """An outbox whose child run "t1" exists, then whose client is ``transport(client, fail)``,
    given 150 epochs x 10 values (two batches) to send; (outbox, real client, experiment)."""
    box, client, exp, parent = _outbox(tmp_path)
    box.child_run("t1", parent, "trial t1", {"lr": 0.1})
    assert box.drain(30)
    box.client = transport(box.client, fail)
    box.flush_every_s = 1e9
    for epoch in range(1, 151):
        box.log_epoch("t1", epoch, {f"m{i}": float(epoch) for i in range(10)})
    return box, client, exp


def test_a_write_that_fails_half_way_is_resumed_not_repeated(tmp_path):
    # calls: epochs batch 1, batch 2 (fails), batch 2 again; final batch 1, batch 2 (fails), ...
    box, client, exp = _epochs_through(tmp_path, _DropsBatches, fail={2, 5})
    box.finish("t1", "FINISHED", {"status": "finished"},
               {f"final/x{i}": float(i) for i in range(1500)}, 150, None)  # two batches
    assert box.close(60) == []
    run = _child(client, exp, "t1")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "m3")]
    assert sorted(steps) == list(range(1, 151))  # every epoch once
    for name in ("final/x10", "final/x1400"):  # from the batch that went through, and the retried one
        assert len(client.get_metric_history(run.info.run_id, name)) == 1
    assert box.client.calls == 3 + 3 + 1 and box.outage_s > 0  # 2 batches + 1 retry, twice; tags


class _LosesReplies(_DropsBatches):
    """The ``log_batch`` calls numbered in ``fail`` reach the store, then raise: the fault of a
    server killed after it committed a write and before it replied."""

    def log_batch(self, *args, **kwargs):
        self.calls += 1
        self._client.log_batch(*args, **kwargs)
        if self.calls in self._fail:
            raise ConnectionError("connection reset by peer")


def test_a_write_stored_but_not_acknowledged_is_not_stored_twice(tmp_path):
    # the first batch is stored twice more before its reply arrives
    box, client, exp = _epochs_through(tmp_path, _LosesReplies, fail={1, 2})
    box.flush("t1")
    assert box.close(60) == []
    run = _child(client, exp, "t1")
    for name in ("m0", "m9"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert sorted(steps) == list(range(1, 151)), name  # every epoch once
    assert box.client.calls == 4 and box.outage_s > 0  # batch 1 three times, batch 2 once
