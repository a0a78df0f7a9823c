"""
Child start functions for the simple_one_for_one and DynamicSupervisor tests, at module level so every
process can import them. They take the sink's path first (a template's or ``extra_arguments``' own
argument) and what the test passes when it starts each child last.
"""

from __future__ import annotations

from typing import Any

from supervisor import ShutdownExit, notify_ready

from .children import emit, ignore_sigterm, sleep_forever


def report_args(path: str, *args: Any) -> None:
    """Report ``args`` with every argument after the sink's path, become ready, run until stopped."""
    emit(path, "args", args)
    notify_ready()
    sleep_forever()


def behave(path: str, how: str, key: Any) -> None:
    """
    Run as *how* says, reporting under *key*: ``run`` (report ``started``, ``stopping`` when stopped),
    ``ignore_sigterm`` (report ``started``, then run through SIGTERM), or ``crash_on_stop`` (report
    ``started``; when stopped, report ``stopping`` and raise ``ValueError('kaboom')``).
    """
    # Each reports ``started`` inside its ``try``: the child is ready (IMMEDIATE) before it runs, so
    # the stop's SIGTERM may come as soon as the test has seen ``started``.
    if how == "run":
        try:
            emit(path, "started", key)
            sleep_forever()
        finally:
            emit(path, "stopping", key)
    elif how == "ignore_sigterm":
        ignore_sigterm(path, key)
    elif how == "crash_on_stop":
        try:
            emit(path, "started", key)
            sleep_forever()
        except ShutdownExit:
            emit(path, "stopping", key)
            raise ValueError("kaboom") from None
    else:
        raise ValueError(f"unknown behaviour {how!r}")
