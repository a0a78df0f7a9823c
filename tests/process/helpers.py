"""Helpers shared by the process-level tests: child specs that report events, and a queue barrier."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor import ChildInfo, ChildNotFoundError, ChildSpec, StartMode, SupervisorHandle
from tests.children import EventSink, report_then_sleep

BARRIER_ID = "no-such-child-barrier"


def worker(events: EventSink, child_id: str, **fields: Any) -> ChildSpec:
    """A child that reports ``started`` then ``stopping``, ready only after ``started`` (in start order)."""
    return ChildSpec(
        child_id, report_then_sleep, args=(events.path, child_id), start_mode=StartMode.NOTIFY, **fields
    )


def settle(handle: SupervisorHandle) -> None:
    """
    Return once the supervisor has handled every child exit it could see before this call.

    A ``terminate_child`` is queued behind the jobs already pending (exits, restarts), and the loop
    handles the deaths it sees in a turn before the requests; so its reply comes after them.
    """
    with pytest.raises(ChildNotFoundError):
        handle.terminate_child(BARRIER_ID)


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
