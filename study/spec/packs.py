"""Packs: the configurations of a study that share every shape, trained as one ensemble.

A trial trains the seeds of one configuration as one ensemble (``study.trial.trainer``); a
*pack* trains several configurations that way: its members are (configuration, seed) pairs,
each with its own weights, Adam moments, data order, noise and per-member settings. Which
configurations may share a pack is decided here, from their ``TrialConfig`` alone (no PyTorch):

- settings a member carries on its own (``PER_MEMBER``): learning rate and its schedule, the
  number of epochs, KL warm-up, free bits, gradient clipping, early stopping, the fixed output
  std and the floor of a learned one;
- settings read only after training, when each configuration is evaluated on its own
  (``EVALUATION_ONLY``);
- for 2-D data, which is drawn per seed anyway (``[E, N, 2]``), the data itself
  (``PER_MEMBER_2D_DATA``): the curve, its noise and the data seed; the sizes of the training
  and validation sets stay shared, they are shapes;
- every other setting (model kind, latents, widths, likelihood and whether the output variance
  is learned, importance samples, KL estimator, batch size, restarts, image data) is the pack's
  *shape*
  (``shape_key``): configurations of one pack have equal values.

``plan_packs`` groups configurations of equal shape, in the order given, into packs of at most
``max_members`` members, and into at least ``min_packs`` packs where there are enough
configurations, so that every worker has one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from study.spec.config import TrialConfig

#: settings each member of a pack carries on its own (the trainer reads them per member)
PER_MEMBER = frozenset({"lr", "lr_schedule", "epochs", "warmup_epochs", "free_bits",
                        "grad_clip", "patience", "min_improvement", "seeds", "output_std",
                        "min_output_std"})
#: settings only the evaluation reads (each configuration of a pack is evaluated on its own)
EVALUATION_ONLY = frozenset({"eval_importance", "ood_importance", "eval_points", "n_test",
                             "ood_shifts", "ood_offsets", "ood_dataset"})
#: data settings of 2-D data, drawn per seed: each member trains on its own configuration's draw
PER_MEMBER_2D_DATA = frozenset({"dataset", "noise", "data_seed", "data_dir"})
#: members per pack where throughput stops rising on one CPU core: 22,100-23,000 samples/s from
#: 5 to 80 members, 13,500 at 320 (docs/benchmarks.md "Packs on one core",
#: ``python benchmarks/pack_throughput.py``)
KNEE_MEMBERS = 80
#: trials a pack server holds at once (``--pack on``): each asks for this share of a trial's
#: CPUs, so this many fill one trial's worth (study.engine.pack_server)
TRIALS_PER_SERVER = 8


def fusible(cfg: TrialConfig) -> frozenset[str]:
    """The settings of ``cfg`` that may differ between the configurations of its pack."""
    return PER_MEMBER | EVALUATION_ONLY | (frozenset() if cfg.is_image else PER_MEMBER_2D_DATA)


def shape_key(cfg: TrialConfig) -> str:
    """Every setting of ``cfg`` that a pack's configurations share, as one JSON text:
    configurations with equal keys may train in one pack."""
    shared = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in fusible(cfg)}
    return json.dumps(shared, sort_keys=True)


def plan_packs(configs: Sequence[TrialConfig], max_members: int = KNEE_MEMBERS,
               min_packs: int = 1, max_configs: int | None = None) -> list[list[int]]:
    """The packs of ``configs``: lists of indices into ``configs``, each of one shape
    (``shape_key``), in first-come order. A pack holds at most ``max_members`` members (seeds
    summed over its configurations; a configuration with more seeds is a pack of its own),
    and the configurations are spread over at least ``min_packs`` packs where there are that
    many (one per free worker: a pack is a trial, and a trial runs on one worker), with at
    most ``max_configs`` configurations each."""
    if max_members < 1 or min_packs < 1:
        raise ValueError(f"need max_members >= 1 and min_packs >= 1, got {max_members}, "
                         f"{min_packs}")
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(configs):
        groups.setdefault(shape_key(cfg), []).append(i)
    total = sum(len(c.seeds) for c in configs)
    # spread the members over at least min_packs packs when there are enough configurations
    cap = max_members if len(configs) < min_packs else \
        max(1, min(max_members, math.ceil(total / min_packs)))
    packs: list[list[int]] = []
    for members in groups.values():
        pack: list[int] = []
        size = 0
        for i in members:
            n = len(configs[i].seeds)
            if pack and (size + n > cap or len(pack) == (max_configs or len(configs))):
                packs.append(pack)
                pack, size = [], 0
            pack.append(i)
            size += n
        packs.append(pack)
    return packs
