"""Signal handling of a study's driver: the first signal stops, a second aborts, and once the
trials have stopped the closing of the records is not cut short by another one."""

from __future__ import annotations

import os
import signal
import time

import pytest

from study.engine.interrupt import Interruption


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


def test_a_c_level_handler_installed_while_ray_starts_is_put_back():
    """ray.init's core worker installs a C++ SIGTERM handler that aborts the process (exit -6,
    a stack dump) before Python's handler is back; ``kept_dispositions`` restores the C-level
    disposition within a millisecond, so SIGTERM reaches Python's handler."""
    import ctypes

    from study.engine.interrupt import kept_dispositions

    libc = ctypes.CDLL(None)

    def current() -> bytes:
        buf = ctypes.create_string_buffer(512)
        libc.sigaction(signal.SIGTERM, None, buf)
        return buf.raw[:ctypes.sizeof(ctypes.c_void_p)]

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: seen.append(s))
    try:
        python_handler = current()
        with kept_dispositions():
            libc.signal(signal.SIGTERM, ctypes.c_void_p(1))  # SIG_IGN, behind Python's back
            time.sleep(0.05)
            assert current() == python_handler  # put back
            _deliver(signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_swallowed_by_a_finaliser_is_noted_and_raised_at_the_next_phase():
    import gc
    import sys

    class Victim:
        def __del__(self):
            _deliver(signal.SIGINT)  # the handler's KeyboardInterrupt is raised in here

    printed = []
    with Interruption() as interruption:
        assert sys.unraisablehook == interruption._unraisable
        original, interruption._hook = interruption._hook, printed.append  # what would print
        try:
            Victim()
            gc.collect()
            assert interruption.signal == signal.SIGINT and printed == []  # noted, not printed
            with pytest.raises(KeyboardInterrupt):
                interruption.raise_if_signalled()
        finally:
            interruption._hook = original


def test_a_signal_after_the_command_has_ended_does_not_change_its_exit_status():
    """``study.run.main`` returns with SIGINT and SIGTERM ignored: between its end and the
    process's exit a late signal (a scheduler's SIGTERM) changes nothing. Before, the default
    handlers were restored there and such a SIGTERM killed the driver (exit -15 after a
    complete run; the chaos harness found it on a loaded machine)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import os, signal, study.run as r; s = r.main(['--list']); "
            "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGINT); "
            "print('alive', s, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("alive 0 True")


def test_ray_shutdown_leaves_sigterm_where_it_was():
    """Ray's shutdown resets SIGTERM to the default at the C level; the driver's shutdown
    (``study.run._stop_ray_quietly``, which ignores signals first) keeps it ignored, so a
    SIGTERM while or after Ray stops no longer kills the driver (exit -15 after a complete
    resume: the chaos harness on a loaded machine)."""
    import subprocess
    import sys

    from conftest import REPO

    code = ("import ctypes, os, signal\n"
            "from study.engine.launch import start_ray\n"
            "import study.run as r\n"
            "libc = ctypes.CDLL(None)\n"
            "def disp():\n"
            "    buf = ctypes.create_string_buffer(512)\n"
            "    libc.sigaction(signal.SIGTERM, None, buf)\n"
            "    return int.from_bytes(buf.raw[:8], 'little')\n"
            "start_ray(None, 1)\n"
            "r._stop_ray_quietly()\n"
            "print('after', disp())\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "print('alive')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["after", str(int(signal.SIG_IGN)), "alive"]
