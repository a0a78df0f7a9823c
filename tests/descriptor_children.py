"""
Child start functions for the descriptor tests, at module level so every process can import them.

They report through an :class:`~tests.children.EventSink`, as the other test children do.
"""

from __future__ import annotations

import logging
from typing import Any

import multiprocess

from tests.children import emit, sleep_forever

LOGGER = "supervisor.tests.descriptors"
"""A logger under ``supervisor``, so it uses the handlers ``tests.process.helpers.log_config`` sets up."""


def log_then_sleep(path: str, key: Any, message: str) -> None:
    """Log *message* as a warning through the handlers inherited from the supervisor, report, and run."""
    logging.getLogger(LOGGER).warning(message)
    for handler in logging.getLogger("supervisor").handlers:
        handler.flush()
    emit(path, "logged", key)
    sleep_forever()


def report_parent(path: str, key: Any) -> None:
    """Report ``parent`` with multiprocess's view of this child's parent: ``(key, pid, is_alive())``."""
    parent = multiprocess.parent_process()
    emit(path, "parent", (key, parent.pid, parent.is_alive()))
    sleep_forever()
