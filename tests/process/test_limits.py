"""
Extreme but valid values: durations beyond what one OS wait accepts never crash a tree or a call.

epoll_wait and poll take at most ~24.8 days; a shutdown or start timeout of months, or a call
timeout of years, is waited for in steps.
"""

from __future__ import annotations

from typing import Any

from supervisor import ChildSpec, StartMode
from tests.children import notify_then_sleep, sleep_forever

MONTHS = 90 * 86400.0
YEARS = 10 * 365 * 86400.0


def test_a_shutdown_time_beyond_epolls_maximum_works(start_tree: Any) -> None:
    """A child with shutdown=90 days starts, terminates (on SIGTERM) and stops with the tree."""
    handle = start_tree([])

    assert handle.start_child(ChildSpec("long", sleep_forever, shutdown=MONTHS)) is not None
    handle.terminate_child("long")
    assert handle.start_child(ChildSpec("again", sleep_forever, shutdown=MONTHS)) is not None

    assert [info.id for info in handle.which_children()] == ["long", "again"]
    assert handle.which_children()[0].pid is None


def test_a_start_timeout_beyond_epolls_maximum_works(start_tree: Any) -> None:
    """A NOTIFY child with start_timeout=90 days starts; the supervisor keeps serving."""
    handle = start_tree(
        [ChildSpec("slow", notify_then_sleep, start_mode=StartMode.NOTIFY, start_timeout=MONTHS)]
    )

    assert handle.which_children()[0].pid is not None


def test_call_and_stop_timeouts_of_years_work(start_tree: Any) -> None:
    """timeout= of ten years on a call and on stop() waits as needed and returns normally."""
    handle = start_tree([ChildSpec("a", sleep_forever)])

    assert [info.id for info in handle.which_children(timeout=YEARS)] == ["a"]
    handle.terminate_child("a", timeout=YEARS)
    handle.stop(timeout=YEARS)

    assert handle.stopped
