"""A trial's CPU process reuses the memory of freed tensors (``reuse_host_memory``) instead of
faulting fresh pages in for every chunk of an evaluation. glibc's defaults move their
thresholds at run time, so whether they fault depends on the process's history (measured:
20,408 to 322,964 faults for the same 20 rounds): each child here starts from the worst case,
every chunk a fresh ``mmap``, and a trainer's process must undo it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import ctypes, resource, sys
import torch
from study.data import load_data
from study.spec.config import trial_config
from study.trial.device import _M_MMAP_THRESHOLD
from study.trial.trainer import Trainer

mallopt = ctypes.CDLL(None).mallopt
mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
assert mallopt(_M_MMAP_THRESHOLD, 128 * 1024)  # every chunk a fresh mmap
if sys.argv[1] == "trainer":
    cfg = trial_config({"dataset": "moons", "n_train": 64, "n_val": 32, "n_test": 32,
                        "latents": [2], "hidden": [8], "seeds": [0], "epochs": 1})
    Trainer(cfg, load_data(cfg.data_config()), device="cpu")

def round_trip():
    chunks = [torch.ones(2**22) for _ in range(4)]  # four 16 MiB chunks, every page written
    del chunks

round_trip()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    round_trip()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_a_cpu_trainer_keeps_freed_chunks_for_reuse():
    pages_per_round = 4 * 2**22 * 4 // 4096
    plain, trainer = _faults("plain"), _faults("trainer")
    assert plain > 18 * pages_per_round, (plain, trainer)  # the probe sees every round fault
    assert trainer < 2 * pages_per_round, (plain, trainer)  # at most a round or two fault in
