"""Signal handling of a study's driver: the first signal stops, a second aborts, and once the
trials have stopped the closing of the records is not cut short by another one."""

from __future__ import annotations

import os
import signal
import time

import pytest

from study.interrupt import Interruption


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary of the main thread


def test_a_signal_while_the_records_close_is_noted_not_obeyed():
    with Interruption() as interruption:
        with interruption.closing():
            _deliver(signal.SIGINT)  # would raise KeyboardInterrupt outside closing()
            _deliver(signal.SIGTERM)
            closed = True
        assert closed and interruption.signal == signal.SIGINT  # the first one counts
        assert interruption.exit_status == 130
        with pytest.raises(KeyboardInterrupt):  # after closing, a signal aborts again
            _deliver(signal.SIGINT)


def test_the_handlers_found_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with Interruption() as interruption:
        with interruption.closing():
            pass
        assert signal.getsignal(signal.SIGINT) != before[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
