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

    def reinstall(self) -> None:
        """Take SIGINT and SIGTERM back (``ray.init`` installs a SIGTERM handler of its own
        that shuts Ray down and exits at once)."""
        if self._previous:
            signal.signal(signal.SIGINT, self._abort)
            signal.signal(signal.SIGTERM, self._term)

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

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signum

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
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
