"""Running the command-line tools as a user does, and reading their one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, cwd, env: dict[str, str] | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m ARGS...`` in ``cwd``; its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=os.environ | (env or {}))


def one_error_line(r: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single ``error:`` line a refusal prints (and its exit status is checked)."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]
