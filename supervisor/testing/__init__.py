"""
Test helpers for supervision trees: what the OS says about processes, and waits for events, not time.

- Processes, read from ``/proc`` rather than from a handle: :func:`process_table`,
  :func:`descendants`, :func:`wait_gone` and :func:`assert_no_leftovers` (a new descendant or a
  zombie fails it).
- Waits that block on the event a test needs (a pidfd, a supervisor's answer), never on a sleep:
  :func:`wait_restarted` (a child runs again), :func:`wait_session_down` (a session ended and was
  handled), :func:`wait_exited` (any process ended).
- :mod:`supervisor.testing.plugin`, the pytest plugin (loaded by pytest through the package's
  ``pytest11`` entry point): the ``supervisor_tree`` and ``application`` fixtures and the
  ``no_leftovers`` check.
- :mod:`supervisor.testing.strategies`: Hypothesis strategies for valid child specs and trees,
  whose start functions are in :mod:`supervisor.testing.children`.

Importing this package imports neither pytest nor Hypothesis (optional dependencies: ``pip install
otp-supervisor[testing]``); only the plugin and the strategies modules do. Client code: nothing here
imports the engine.
"""

from __future__ import annotations

from .processes import ProcessEntry, assert_no_leftovers, descendants, process_table, wait_gone
from .waits import HANG_TIMEOUT, wait_exited, wait_restarted, wait_session_down

__all__ = [
    "HANG_TIMEOUT",
    "ProcessEntry",
    "assert_no_leftovers",
    "descendants",
    "process_table",
    "wait_exited",
    "wait_gone",
    "wait_restarted",
    "wait_session_down",
]
