"""Where a trial's tensors live: the device a trial is given, the matmul precision of its
training (TF32 on a GPU where ``TrialConfig.gpu_tf32`` allows it), and how its process's C heap
treats freed tensors on a CPU."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

import torch

#: glibc's ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD and M_MMAP_THRESHOLD
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: CPU tensors below this many bytes come from the C heap, not from a fresh ``mmap``: glibc's
#: own ceiling for this threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX, which some
#: glibc versions enforce in ``mallopt``), twice the evaluation's largest chunk (2^22 floats)
HOST_MMAP_THRESHOLD = 32 * 2**20
#: the C heap hands freed memory back to the system only beyond this many free bytes at its top
HOST_TRIM_THRESHOLD = 256 * 2**20


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """``torch.set_float32_matmul_precision(precision)`` inside the block only."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def reuse_host_memory() -> bool:
    """Let this process reuse the memory of freed CPU tensors instead of mapping it afresh.

    PyTorch allocates CPU tensors with ``malloc``. glibc serves blocks of more than 128 KiB-32 MiB
    (a threshold it moves at run time) with a fresh ``mmap`` and returns more than twice that of
    free memory at the top of its heap to the system, so an evaluation that allocates and frees
    chunks of 4-16 MiB in a loop faults every page of every chunk in again: 0.4-7 million minor
    page faults and a third or more of the time of the K=1000 likelihood of 10,000 2-D points
    (E=5), at a cost per fault that depends on the (virtual) machine. Fixed thresholds of
    ``HOST_MMAP_THRESHOLD`` and ``HOST_TRIM_THRESHOLD`` keep those chunks in the heap for
    reuse; the process's peak memory is unchanged (``benchmarks/models_throughput.py``).
    PyTorch's CPU tuning guide recommends a caching allocator (jemalloc, tcmalloc) for the same
    reason; this needs none.

    Process-wide and lasting; a no-op returning False where the C library has no ``mallopt``
    (macOS, Windows). True when both thresholds were set.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, HOST_MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, HOST_TRIM_THRESHOLD))
