"""Helpers shared by the process-level tests: child specs that report events, queue barriers, kills."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    ChildInfo,
    ChildNotFoundError,
    ChildSpec,
    ExitKind,
    SessionManagerHandle,
    StartMode,
    SupervisorHandle,
)
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, fail_if_marker, report_then_sleep

BARRIER_ID = "no-such-child-barrier"


def worker(events: EventSink, child_id: str, **fields: Any) -> ChildSpec:
    """A child that reports ``started`` then ``stopping``, ready only after ``started`` (in start order)."""
    return ChildSpec(
        child_id, report_then_sleep, args=(events.path, child_id), start_mode=StartMode.NOTIFY, **fields
    )


def refusing(events: EventSink, child_id: str, marker: Path, **fields: Any) -> ChildSpec:
    """A NOTIFY child that becomes ready and reports ``started``; while the file *marker* exists, each
    start fails instead, reporting ``refused``."""
    return ChildSpec(
        child_id,
        fail_if_marker,
        args=(str(marker), events.path, child_id),
        start_mode=StartMode.NOTIFY,
        **fields,
    )


def kill_into_a_restart_loop(events: EventSink, marker: Path, pid: int, child_id: str) -> None:
    """
    Create *marker*, so the :func:`refusing` child *child_id* cannot start again, and SIGKILL its
    process *pid*; return once a retry of its restart is under way: it is restarting from now on.
    """
    marker.touch()
    os.kill(pid, signal.SIGKILL)
    events.expect("refused", child_id)
    events.expect("refused", child_id)  # a second refusal: a retry is under way


def kill(pid: int | None) -> None:
    """SIGKILL the process *pid* and wait until it is gone."""
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_gone([pid], HANG_TIMEOUT) == []


def settle(handle: SupervisorHandle) -> None:
    """
    Return once the supervisor has handled every child exit it could see before this call.

    A ``terminate_child`` is queued behind the jobs already pending (exits, restarts), and the loop
    handles the deaths it sees in a turn before the requests; so its reply comes after them.
    """
    with pytest.raises(ChildNotFoundError):
        handle.terminate_child(BARRIER_ID)


def sofo_settle(handle: SupervisorHandle) -> None:
    """Return once a simple_one_for_one supervisor handled what it saw: a failing call in its one lane."""
    with pytest.raises(ChildNotFoundError):
        handle.terminate_child(os.getpid())  # a live pid that is not its child


def handled_deaths(sessions: SessionManagerHandle) -> None:
    """
    Return once the SessionManager has handled every session death it could see before this call.

    Its loop reaps the children whose pidfds fired in a turn (and updates the registry) before it
    reads the requests of that turn, so any reply comes after them.
    """
    sessions.supervisor.which_children()


def pids(handle: SupervisorHandle) -> dict[str, int | None]:
    """Each child's id and pid, in the order ``which_children`` gives."""
    return {info.id: info.pid for info in handle.which_children()}


def log_config(path: Any) -> dict[str, Any]:
    """A ``logging_config`` that writes every supervisor record to the file *path*."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "plain"},
        },
        "loggers": {"supervisor": {"level": "DEBUG", "handlers": ["file"], "propagate": False}},
    }


def otp_fields(info: ChildInfo) -> tuple[Any, ...]:
    """What OTP's ``which_children`` says of a child (and its start info), without the per-process
    fields (state, restarts, last exit, start and retry times) a hand-built ChildInfo cannot know."""
    return (info.id, info.pid, info.type, info.restart, info.restarting, info.start_info)


def info_of(handle: SupervisorHandle, child_id: str) -> ChildInfo:
    """The ``which_children`` entry of the child *child_id*."""
    return next(info for info in handle.which_children() if info.id == child_id)


def assert_stop_signals_every_child_at_once(
    handle: SupervisorHandle, events: EventSink, children: dict[Any, int | None]
) -> None:
    """
    Stop *handle* in a thread and check that every child in *children* (key to pid, each a
    :func:`tests.children.hold_cleanup_until_sigusr1`) reports ``stopping`` before any has exited;
    then let them exit, and check that the stop returned with reason shutdown.
    """
    stopper = threading.Thread(target=handle.stop)

    stopper.start()
    try:
        # A stop one child at a time would wait for the first to exit before signalling the next:
        # here no child can exit until it gets SIGUSR1, and every one reports it is stopping.
        assert events.expect_all("stopping", children) == children
    finally:
        for pid in children.values():
            assert pid is not None
            os.kill(pid, signal.SIGUSR1)
        stopper.join(HANG_TIMEOUT)
    assert not stopper.is_alive()
    assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN
