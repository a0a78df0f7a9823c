"""
Start functions for generated child specs: module-level, so every process of a tree can import them.

:mod:`supervisor.testing.strategies` draws the ``start`` of its specs from these. A supervisor that
unpickles such a spec imports this module (and :mod:`supervisor.testing`), never Hypothesis. Every
function calls :func:`supervisor.notify_ready` first, so it is ready under either
:class:`~supervisor.StartMode`; the ``wait_forever`` kind then runs until its supervisor stops it (its
SIGTERM is a :class:`~supervisor.ShutdownExit`, an exit with reason *shutdown*), the others end at
once. None of them polls: they wait in :func:`signal.pause`.
"""

from __future__ import annotations

import os
import signal

from .._child import notify_ready

__all__ = ["ENDING_STARTS", "STABLE_STARTS", "crash", "exit_normally", "wait_forever", "wait_with_grandchild"]


def _pause_forever() -> None:
    while True:
        signal.pause()


def wait_forever() -> None:
    """Become ready, then wait until stopped. Never returns (a SIGTERM from the supervisor ends it)."""
    notify_ready()
    _pause_forever()


def wait_with_grandchild() -> None:
    """
    Fork a grandchild that waits too, become ready, then wait until stopped.

    The grandchild stays in the worker's process group, so the supervisor's SIGKILL of the group
    when it reaps the worker ends it as well: a tree of these checks that nothing below a worker is
    left behind. Never returns.
    """
    if os.fork() == 0:
        try:
            _pause_forever()
        finally:
            os._exit(0)
    notify_ready()
    _pause_forever()


def exit_normally() -> None:
    """Become ready, then return at once: a *normal* exit (restarted only if the child is permanent)."""
    notify_ready()


def crash() -> None:
    """
    Become ready, then raise ``RuntimeError``: an abnormal exit (restarted unless temporary).

    Raises:
        RuntimeError: always, as the crash.
    """
    notify_ready()
    raise RuntimeError("supervisor.testing.children.crash: a deliberate crash")


STABLE_STARTS = (wait_forever, wait_with_grandchild)
"""The start functions whose children run until stopped: a tree of them stays up."""

ENDING_STARTS = (exit_normally, crash)
"""The start functions whose children end at once, normally or not: restarts, intensity, auto_shutdown."""
