"""Pack servers: Ray actors that train the trials of a node in packs (``--pack on``).

With packs, every configuration is still one Ray Tune trial, with its own Optuna trial, MLflow
child run, Parquet rows, checkpoints and resume: nothing the driver records changes. What
changes is where a trial's epochs are computed. The trial's worker is a thin client
(``study.engine.pack_client.run_packed_trial``, no PyTorch): it hands its configuration and its
checkpoints to a pack server on its node and relays what the server sends back (epoch results,
checkpoints, the final result and files) to Ray Tune. The server trains every configuration it
holds in a ``study.trial.pack.PackLoop``: configurations of one shape train as one ensemble.

Resources: the driver starts ``servers_per_node`` servers on each node (named
``hvae-pack-<study id>-<node>-<k>``, owned by the driver, so they end with it), each taking no
Ray resources of its own; each trial asks for ``1 / CLIENTS_PER_SERVER`` of a trial's CPUs, so
the trials that fill a node's CPUs lend them to its servers (one server per trial's worth of
CPUs, ``spec.resources.cpus`` threads each). A client joins the server that server 0 of its
node assigns it (``assign``: the servers balanced by members, trials of one shape together); a
node without servers (one that joined the cluster later) trains its trials alone.

Faults: a client whose trial is stopped (pruned, the study interrupted) leaves its server when
its next report returns; a client that joins with a key the server already holds (its trial
retried after its worker died) replaces the old member. A server that dies fails its clients'
trials, which Ray Tune retries from their checkpoints on a restarted server (``max_restarts``).
An error inside a pack fails every trial of that pack the same way.
"""

from __future__ import annotations

import tempfile
import threading
import time
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from study.engine.pack_client import server_name
from study.engine.trainable import TuneIO, cached_data
from study.spec.packs import TRIALS_PER_SERVER
from study.spec.resolved import ResolvedStudy

if TYPE_CHECKING:
    from study.trial.run_trial import Candidate, WriteFiles
    from study.trial.trainer import Trainer

#: clients (trials) per server: a server's trials together ask for one trial's CPUs
CLIENTS_PER_SERVER = TRIALS_PER_SERVER
#: a message to a client: ("report", result, files or None) or ("error", text, None)
Message = tuple[str, Any, dict[str, bytes] | None]


def start_servers(study: ResolvedStudy, study_id: str, metric: str, plots: bool) -> list[Any]:
    """Start the pack servers of every alive node (``servers_per_node``); their handles (keep
    them: the servers live while the driver does)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cpus = study.spec.resources.cpus
    handles = []
    actor = ray.remote(PackServer)
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        n = servers_per_node(node.get("Resources", {}).get("CPU", 0), cpus)
        for k in range(n):
            handles.append(actor.options(
                name=server_name(study_id, node["NodeID"], k), get_if_exists=True,
                num_cpus=0, max_concurrency=4 * CLIENTS_PER_SERVER + 4, max_restarts=3,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(study, metric, plots, max(1, int(cpus))))
    return handles


def servers_per_node(node_cpus: float, trial_cpus: float) -> int:
    """One server per trial's worth of a node's CPUs (at least one)."""
    return max(1, int(node_cpus // max(trial_cpus, 1e-9)))


class PackServer:
    """A ``PackLoop`` in a Ray actor: ``join`` / ``take`` / ``leave`` from the clients, one
    thread training (see the module docstring)."""

    def __init__(self, study: ResolvedStudy, metric: str, plots: bool, threads: int) -> None:
        import matplotlib

        from study.trial.pack import PackLoop

        matplotlib.use("Agg")
        self.study, self.metric = study, metric
        self.loop = PackLoop(device="cpu", threads=threads, plots=plots)
        self.inbox: dict[str, list[Message]] = {}
        self.cond = threading.Condition()
        #: server 0 of a node assigns its trials to servers: key -> (server, members, shape)
        self.assigned: dict[str, tuple[int, int, str]] = {}
        self.assigning = threading.Lock()  # not ``cond``: that is held while a pack trains
        threading.Thread(target=self._train, daemon=True, name="pack-loop").start()

    # ------------------------------------------------------------------ the clients' calls
    def join(self, key: str, factors: dict[str, Any], checkpoints: list[tuple[str, bytes]],
             node: str) -> None:
        """Add trial ``key`` (its factors, its checkpoints newest first as bytes)."""
        cfg = self.study.config(factors)
        with self.cond:
            self.loop.leave(key)  # a retried trial replaces its old member
            self.inbox[key] = []
            io = RelayIO(self.study.spec, self.metric, node, checkpoints, self.inbox[key])
            self.loop.join(key, cfg, io, cached_data(cfg.data_config()))
            self.cond.notify_all()

    def take(self, key: str, timeout: float) -> list[Message]:
        """The messages for trial ``key`` (waits up to ``timeout`` seconds for one)."""
        with self.cond:
            box = self.inbox.get(key)
            if box is None:
                return [("error", f"trial {key} is not in this pack server", None)]
            if not box:
                self.cond.wait(timeout)
            out, box[:] = list(box), []
            return out

    def leave(self, key: str) -> None:
        with self.cond:
            self.loop.leave(key)
            self.inbox.pop(key, None)

    def assign(self, key: str, shape: str, members: int, servers: int) -> int:
        """(Server 0 of a node.) The server of trial ``key`` among ``servers``: the one with the
        fewest members, counting a server that holds trials of this ``shape`` as one
        configuration lighter (so trials of one shape share packs while the servers stay
        balanced); ties to the lowest index. One call decides, so trials that start together
        do not all pick the same idle server."""
        with self.assigning:
            self.assigned.pop(key, None)
            load = [0] * servers
            holds: list[set[str]] = [set() for _ in range(servers)]
            for k, m, s in self.assigned.values():
                if k < servers:
                    load[k] += m
                    holds[k].add(s)
            best = min(range(servers),
                       key=lambda k: (load[k] - (members if shape in holds[k] else 0), k))
            self.assigned[key] = (best, members, shape)
            return best

    def unassign(self, key: str) -> None:
        with self.assigning:
            self.assigned.pop(key, None)

    # ------------------------------------------------------------------ the training thread
    def _train(self) -> None:
        while True:
            with self.cond:
                try:
                    busy = self.loop.step()
                except Exception:  # noqa: BLE001 - every trial of the loop fails with it
                    text = traceback.format_exc()
                    for key in list(self.loop.members):
                        self.loop.leave(key)
                        self.inbox.get(key, []).append(("error", text, None))
                    busy = False
                self.cond.notify_all()
                if not busy:
                    self.cond.wait(0.5)
            # outside the lock: the clients' calls waiting for it get it between two epochs
            # (CPython's lock is not fair; taken again at once, it could starve them)
            time.sleep(0.001)


class RelayIO(TuneIO):
    """``TuneIO`` inside a pack server: the same results and checkpoints, put in the client's
    inbox (files as bytes) instead of reported to Ray Tune; checkpoints from the client's
    bytes."""

    def __init__(self, spec, metric: str, node: str, checkpoints: list[tuple[str, bytes]],
                 inbox: list[Message]) -> None:
        super().__init__(spec, metric, "cpu", node=node)
        self.blobs, self.inbox = checkpoints, inbox

    def checkpoints(self) -> Iterable[Candidate]:
        return [(label, _blob_file(data)) for label, data in self.blobs]

    def _report(self, result: dict[str, Any], trainer: Trainer | None = None,
                write_files: WriteFiles | None = None) -> None:
        if trainer is None:
            self.inbox.append(("report", result, None))
            return
        with tempfile.TemporaryDirectory() as tmp:
            self._write(Path(tmp), trainer, write_files)
            files = {str(p.relative_to(tmp)): p.read_bytes()
                     for p in Path(tmp).rglob("*") if p.is_file()}
        self.inbox.append(("report", result, files))


def _blob_file(data: bytes):
    """A checkpoint candidate's opener: the bytes in a temporary file."""
    from contextlib import contextmanager

    @contextmanager
    def opener():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trainer.pt"
            path.write_bytes(data)
            yield path

    return opener
