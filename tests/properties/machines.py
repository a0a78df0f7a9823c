"""
Helpers shared by the state machines that run real supervisors: their Hypothesis settings, and the
waits each step makes until its effect is definite (a child's ``started`` event, a killed process's
pidfd, a temporary child's removal).
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings

from supervisor import ChildInfo, ChildState, SupervisorHandle

from ..children import HANG_TIMEOUT, EventSink

PROCESS_MACHINE_SETTINGS = settings(
    # Examples are costly (each starts a root, ~0.5 s) and steps cheap: few of the one, more of
    # the other. No shrinking: each shrink attempt starts a real tree, so shrinking a failure
    # outlasts the test's hang timeout; the failing program is printed unshrunk (<= 15 steps).
    max_examples=8,
    stateful_step_count=15,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
"""The settings of the one_for_one and simple_one_for_one machines."""


def raises(error: type[Exception], call: Any, *args: Any) -> Exception:
    """Call *call* and return the *error* it raises; fail if it returns or raises something else."""
    try:
        call(*args)
    except error as raised:
        return raised
    raise AssertionError(f"{call.__name__}{args!r} did not raise {error.__name__}")


def wait_readable(fd: int) -> None:
    """Block until *fd* is readable (a pidfd: its process has exited); fail after HANG_TIMEOUT."""
    ready, _, _ = select.select([fd], [], [], HANG_TIMEOUT)
    assert ready, f"pidfd {fd} not readable within {HANG_TIMEOUT} s"


def kill_and_wait(pid: int) -> None:
    """SIGKILL the process *pid* through its pidfd, and block until it has exited."""
    pidfd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        wait_readable(pidfd)
    finally:
        os.close(pidfd)


def expect_started(sink: EventSink, key: Any, pid: int | None = None, not_pid: int | None = None) -> int:
    """Block until *key* reports ``started`` from *pid* (or from any pid but *not_pid*); return the pid."""
    deadline = time.monotonic() + HANG_TIMEOUT
    while True:
        kind, got, sender = sink.next(max(0.001, deadline - time.monotonic()))
        if kind == "started" and got == key and sender != not_pid and pid in (None, sender):
            return sender


def wait_unlisted(handle: SupervisorHandle, listed: Callable[[ChildInfo], bool], what: str) -> None:
    """
    Return once no child of ``which_children`` is *listed*; *what* names it in the failure.

    No process reports a temporary child's removal. The supervisor has seen the death (its pidfd
    fired with ours) but handles it in a later loop turn; each call is one round trip through the
    loop, so this ends within a few calls. The deadline only guards a hang.
    """
    deadline = time.monotonic() + HANG_TIMEOUT
    while any(listed(info) for info in handle.which_children()):
        assert time.monotonic() < deadline, f"{what} still listed after its death"


def wait_running(handle: SupervisorHandle, child: str | int) -> None:
    """
    Return once the child *child* (an id, or a pid) is RUNNING. A child reports ``started`` before
    the supervisor has read its ready report (both leave the child at once; the supervisor reads
    the report in a later loop turn), so a step that counts active children waits for this first:
    each call is one round trip through the loop. The deadline only guards a hang.
    """
    deadline = time.monotonic() + HANG_TIMEOUT
    while handle.which_child(child).state is not ChildState.RUNNING:
        assert time.monotonic() < deadline, f"child {child!r} not RUNNING after its start"
