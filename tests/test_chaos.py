"""The chaos harness (``tests/chaos.py``) on a short fixed-seed sequence: copies, moves,
damaged records, interrupts at random moments, a second folder of the study on the same storage
and MLflow store, resumes, overwrites and reports, with every invariant checked after each step.
``benchmarks/chaos.py`` runs longer sequences (docs/faults.md has its figures)."""

from __future__ import annotations

import pytest
from chaos import Chaos

pytestmark = pytest.mark.slow  # whole studies through Ray


#: the kinds of the CI sequence (each where it is possible; the folders and moments drawn)
KINDS = ["start", "copy", "resume", "move", "resume", "damage", "resume", "start", "overwrite"]


def test_a_fixed_sequence_of_faults_breaks_no_invariant(tmp_path):
    chaos = Chaos(tmp_path / "work", seed=7, epochs=30, max_interrupt_s=20.0)
    report = chaos.run(len(KINDS), kinds=KINDS)
    print(report.summary())
    assert report.broken == [], "\n".join(report.broken)
    assert sum(report.operations.values()) == len(KINDS) == report.checks
    assert len(report.operations) >= 4  # the sequence mixes kinds of operations
