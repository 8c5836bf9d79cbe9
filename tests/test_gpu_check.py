"""benchmarks/gpu_check.py on a machine without a GPU: it runs its CPU half, says that no GPU
was found, writes its table and exits 0 (its GPU half ran on an H100: docs/benchmarks.md)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO, SHARED_DATA


@pytest.mark.skipif(torch.cuda.is_available(), reason="this is the no-GPU behaviour")
def test_without_a_gpu_the_cpu_half_runs_and_says_so(tmp_path):
    out = tmp_path / "gpu_check.md"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--data-dir", str(SHARED_DATA),
                           "--out", str(out), "--cpu-steps", "3"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No CUDA GPU was found: only the CPU half ran" in done.stdout
    table = out.read_text()
    rate = re.search(r"\| training \| cpu \| ([\d,]+) \| ([\d.]+) \|", table)
    assert rate and int(rate.group(1).replace(",", "")) > 0 and float(rate.group(2)) > 0
    assert "CUDA no" in table and "| training | cuda |" not in table
