"""How to run a study: the ``study.run`` flags as one frozen value, read by the launcher, the
tuner and the rounds of ``--until-decided`` (a module of its own, below all of them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunOptions:
    """How to run a study (the ``study.run`` flags)."""

    address: str | None = None
    tracking_uri: str | None = None
    storage: str | None = None
    resume: bool = False
    overwrite: bool = False
    max_concurrent: int | None = None
    gpus_per_trial: float | None = None
    num_cpus: int | None = None
    quiet: bool = False
    plots: bool = True
    #: "on": trials of one shape train as packs in pack servers (study.engine.pack_server)
    pack: str = "off"
    mlflow_grace_s: float = 300.0
    until_decided: bool = False
    max_seeds: int | None = None
    seed_step: int | None = None
    new_parent: bool = False
    #: refuse a trial estimated to need more (``study.spec.limits``); None: this machine's memory
    max_memory_gib: float | None = None
