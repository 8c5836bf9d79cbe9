"""The trial side of ``--pack on`` (``study.engine.pack_server``): a thin Ray Tune trainable.

The trial's worker imports no PyTorch: it finds the pack servers of its node by name, joins
the one server 0 assigns it (``PackServer.assign``: balanced, shapes kept together) with its
configuration and its checkpoints (as bytes, newest first),
and relays every message back to Ray Tune: epoch results, checkpoints and the final result
with the trial's files, each as ``TuneIO`` makes them. Ray Tune's STOP (pruning, an
interrupted study) ends the client at its next report; its ``finally`` takes the trial out of
the server's pack.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from study.engine.tune_checkpoints import trainer_file, trial_checkpoints
from study.spec.packs import shape_key
from study.spec.resolved import ResolvedStudy
from study.trial.records import is_final_result

_PREFIX = "hvae-pack"


def server_name(study_id: str, node: str, k: int) -> str:
    """The Ray name of pack server ``k`` of study ``study_id`` on ``node``."""
    return f"{_PREFIX}-{study_id}-{node}-{k}"


def servers_here(study_id: str) -> list[Any]:
    """The pack servers of this worker's node (none: the trial trains alone)."""
    node = ray.get_runtime_context().get_node_id()
    found = []
    for k in range(256):
        try:
            found.append(ray.get_actor(server_name(study_id, node, k)))
        except ValueError:
            break
    return found


class PackServerError(RuntimeError):
    """A pack server failed the trial (its traceback is the message)."""


def run_packed_trial(factors: dict[str, Any], study: ResolvedStudy, metric: str,
                     study_id: str) -> bool:
    """Train this trial in the pack server of its node that server 0 assigns it
    (``study.engine.pack_server``) and report what it sends, as ``TuneIO`` would have; False
    when the node has no pack server (a node that joined later: the trial trains alone)."""
    servers = servers_here(study_id)
    if not servers:
        return False
    key = tune.get_context().get_trial_id()
    cfg = study.config(factors)
    server = servers[ray.get(servers[0].assign.remote(key, shape_key(cfg), len(cfg.seeds),
                                                      len(servers)))]
    try:
        ray.get(server.join.remote(key, factors, _checkpoint_bytes(),
                                   ray.get_runtime_context().get_node_id()))
        while True:
            for kind, payload, files in ray.get(server.take.remote(key, 1.0)):
                if kind == "error":
                    raise PackServerError(payload)
                _relay(payload, files)
                if is_final_result(payload):
                    return True
    finally:
        server.leave.remote(key)
        servers[0].unassign.remote(key)


def _relay(result: dict[str, Any], files: dict[str, bytes] | None) -> None:
    """One result of the pack server to Ray Tune, its files as the result's checkpoint."""
    if files is None:
        tune.report(result)
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))


def _checkpoint_bytes() -> list[tuple[str, bytes]]:
    """This trial's checkpoints, newest first, as (label, the trainer file's bytes); one that
    cannot be read is sent empty (the server notes it and resumes from the next, as ``TuneIO``
    does)."""
    recorded = tune.get_checkpoint()
    if recorded is None:
        return []
    out = []
    for c in trial_checkpoints(recorded):
        try:
            with trainer_file(c) as path:
                out.append((Path(c.path).name, path.read_bytes()))
        except OSError:
            out.append((Path(c.path).name, b""))
    return out
