"""A Ray Tune trial's checkpoints, as its trainable finds them when it starts again."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ray import tune

from study.trial.files import CHECKPOINT


@contextmanager
def trainer_file(checkpoint: tune.Checkpoint):
    """The trainer file of ``checkpoint``, local for the block (fetched if it is remote)."""
    with checkpoint.as_directory() as folder:
        yield Path(folder) / CHECKPOINT


def trial_checkpoints(recorded: tune.Checkpoint) -> list[tune.Checkpoint]:
    """Every checkpoint in the trial's folder (``checkpoint_NNNNNN`` beside the one Ray
    ``recorded``), newest first: a driver killed just after a checkpoint leaves Ray's record
    behind the folder (``study.engine.tuner.stand_in_for_deleted_checkpoints``), and any checkpoint of
    the trial's own folder is a state of this trial, its history every epoch before it."""
    import pyarrow.fs as pafs

    fs, path = recorded.filesystem, recorded.path.rstrip("/")
    parent = path.rsplit("/", 1)[0]
    try:
        infos = fs.get_file_info(pafs.FileSelector(parent))
    except OSError:
        return [recorded]
    found = sorted((i.path for i in infos if i.type == pafs.FileType.Directory
                    and i.base_name.startswith("checkpoint_")), reverse=True)
    return [tune.Checkpoint(p, filesystem=fs) for p in found] or [recorded]
