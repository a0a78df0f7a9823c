"""
A nested supervisor whose backoff clock a test can move: the injectable clock of the backoff tests.

:func:`run_supervisor_with_clock` is the start (an entry point, called with its tree context) of a
nested supervisor that measures its children's run times with a :class:`FileClock`, so a test makes
a child seem to have run an hour by writing ``3600`` into a file, without waiting an hour. Only this
supervisor process is affected: the seam (``supervisor._backoff.clock``) is replaced in it alone.
"""

from __future__ import annotations

import os
import time

from supervisor import SupervisorSpec, _backoff
from supervisor._addresses import TreeContext
from supervisor._engine.entry import run_nested_supervisor


class FileClock:
    """``time.monotonic()`` plus the seconds written in the file *path* (0 while it is missing)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> float:
        try:
            with open(self.path) as file:
                offset = float(file.read() or 0)
        except FileNotFoundError:
            offset = 0.0
        return time.monotonic() + offset


def advance(path: str, seconds: float) -> None:
    """Move the :class:`FileClock` of *path* to *seconds* ahead of ``time.monotonic()`` (atomically)."""
    with open(f"{path}.new", "w") as file:
        file.write(repr(seconds))
    os.replace(f"{path}.new", path)


def run_supervisor_with_clock(tree: TreeContext, spec: SupervisorSpec, clock_path: str) -> None:
    """A nested supervisor at *tree* whose backoff clock is ``FileClock(clock_path)``; never returns."""
    _backoff.clock = FileClock(clock_path)
    run_nested_supervisor(tree, spec)
