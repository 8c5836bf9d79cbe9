"""Ctrl-C and SIGTERM stop a study cleanly; a second one aborts at once.

While ``tuner.fit()`` runs, Ray Tune's own SIGINT handler turns the first Ctrl-C into a graceful
stop (running trials stopped, the experiment state saved) and then restores the handler it
found: ours, which makes the second Ctrl-C raise ``KeyboardInterrupt`` at once. SIGTERM (what
``kill``, a batch scheduler or ``ray job stop`` send) takes the same two steps: the first calls
whatever handles SIGINT at that moment (Tune's graceful stop), the second aborts. Either way the
study stays resumable; ``Interruption.signal`` says which signal arrived first, for the exit
status (128 + signal number: 130 for SIGINT, 143 for SIGTERM). Once the trials have stopped,
the study's records are closed under ``Interruption.closing``: bounded work (the MLflow grace)
that a further signal does not cut short.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Interruption:
    """Context manager installing the handlers (main thread only; elsewhere a no-op)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}
        self._hook: Any = None
        #: printed (stderr) when a second signal ends the process while it starts (``deferred``)
        self.abort_line = "interrupted"

    def raise_if_signalled(self) -> None:
        """Raise ``KeyboardInterrupt`` if a signal came: Python swallows an exception raised
        inside a finaliser or weakref callback (printing "Exception ignored"), so a handler's
        ``KeyboardInterrupt`` can be lost; the phases of a study check here before going on."""
        if self.signal is not None:
            raise KeyboardInterrupt

    def settle(self) -> None:
        """The study has ended and its records are closed: from here on a signal is noted,
        not obeyed (what is left is printing its summary)."""
        if self._previous:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._note)

    def _unraisable(self, unraisable: Any) -> None:
        """A handler's ``KeyboardInterrupt`` raised where Python cannot propagate it is noted
        (``raise_if_signalled``), not printed as a traceback."""
        if issubclass(unraisable.exc_type, KeyboardInterrupt) and self.signal is not None:
            return
        (self._hook or sys.__unraisablehook__)(unraisable)

    @property
    def exit_status(self) -> int:
        return 128 + (self.signal or signal.SIGINT)

    def _abort(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signum
        raise KeyboardInterrupt

    def _term(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signum
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler) and handler != self._abort:  # Ray Tune's graceful stop
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    def after_tune(self) -> bool:
        """Call when ``tuner.fit()`` returned: whether a signal stopped it. Tune leaves its
        SIGINT handler installed after a normal end, and puts ours back after a signal; either
        way ours handles SIGINT again from here on."""
        if not self._previous:
            return self.signal is not None
        stopped = self.signal is not None or signal.getsignal(signal.SIGINT) == self._abort
        signal.signal(signal.SIGINT, self._abort)
        if stopped and self.signal is None:
            self.signal = signal.SIGINT
        return stopped

    def ignore_to_the_end(self) -> None:
        """The command has ended and its process exits next: from here on, and after this
        context, SIGINT and SIGTERM are ignored (restoring the default handlers here left a
        window before the exit in which a late SIGTERM killed the process, exit -15 instead
        of the run's status; found by the chaos harness on a loaded machine)."""
        if not self._previous:
            return
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)
            self._previous[signum] = signal.SIG_IGN

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signum

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While several threads start a study (Ray, the MLflow store, imports of PyTorch and
        Ray Tune): the first signal is noted, and acted on by ``raise_if_signalled`` once they
        are done; a second one ends the process at once with ``abort_line`` (nothing is
        recorded yet). An exception raised in the main thread while other threads import can
        leave Python's import lock held and hang the process for good (found by the test of an
        early Ctrl-C: ``ThreadPoolExecutor.shutdown`` waited on a thread stuck in an import)."""
        if not self._previous:
            yield
            return

        def hold(signum: int, frame: FrameType | None) -> None:
            if self.signal is None:
                self.signal = signum
                return
            import os

            print(self.abort_line, file=sys.stderr, flush=True)
            os._exit(self.exit_status)

        before = {n: signal.signal(n, hold) for n in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    @contextmanager
    def closing(self) -> Iterator[None]:
        """While the study closes its records (trials marked killed, Optuna told, the MLflow
        parent ended, the outbox flushed within its grace): a signal is noted, not obeyed, so a
        second Ctrl-C that lands just after the trials stopped cannot leave them half-closed."""
        if not self._previous:
            yield
            return
        before = {n: signal.signal(n, self._note) for n in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in before.items():
                signal.signal(signum, handler)

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signal.SIGINT: signal.signal(signal.SIGINT, self._abort),
                              signal.SIGTERM: signal.signal(signal.SIGTERM, self._term)}
            self._hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._hook is not None:
            sys.unraisablehook, self._hook = self._hook, None


@contextmanager
def kept_dispositions(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
                      every_s: float = 0.001) -> Iterator[None]:
    """Keep the C-level handlers of ``signals`` as they are while the block runs (Linux).

    ``ray.init`` creates its core worker, which installs a C++ failure handler for SIGTERM that
    prints a stack dump and aborts the process (exit -6), near the end of ``ray.init``, and
    Python's handler is only put back when it returns: on a loaded machine a SIGTERM in between
    (a batch scheduler, ``kill``) aborted the driver (found by the chaos harness,
    tests/chaos.py). A guard thread puts each signal's disposition back within ``every_s``
    of a change, so the signal reaches Python's handler. Signal dispositions are process-wide,
    so a thread may restore them (``sigaction`` is thread-safe)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    import ctypes
    import time

    libc = ctypes.CDLL(None, use_errno=True)
    saved = {}
    for sig in signals:
        buf = ctypes.create_string_buffer(512)  # larger than any libc's struct sigaction
        if libc.sigaction(sig, None, buf) == 0:
            saved[sig] = buf
    done = threading.Event()

    def guard() -> None:
        now = ctypes.create_string_buffer(512)
        size = ctypes.sizeof(ctypes.c_void_p)
        while not done.is_set():
            for sig, buf in saved.items():
                if libc.sigaction(sig, None, now) == 0 and now.raw[:size] != buf.raw[:size]:
                    libc.sigaction(sig, buf, None)
            time.sleep(every_s)

    thread = threading.Thread(target=guard, name="signal-guard", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
