"""What a supervisor reports about its children: frozen values returned by the handle."""

from __future__ import annotations

import datetime
import enum
from typing import Any

import attrs

from .reasons import ExitReason
from .specs import ChildType, Restart

__all__ = ["ChildCounts", "ChildInfo", "ChildState", "Identity"]


class ChildState(enum.Enum):
    """Where a child is in its life, as ``which_children()`` reports it."""

    STARTING = "starting"
    """Its process was forked and has not reported ready yet (any start: initial, API, automatic)."""
    RUNNING = "running"
    """Its process is ready and not being stopped. The only state ``count_children().active`` counts."""
    BACKOFF = "backoff"
    """No process: an automatic restart waits for its backoff delay (``ChildInfo.retry_at``)."""
    STOPPING = "stopping"
    """Its process is being stopped by its shutdown spec (terminate, group restart, supervisor stop)."""
    RESTARTING = "restarting"
    """An automatic restart of it is under way and it has no ready process: its exit was seen and its
    new start not yet forked, it waits its turn in a group restart, or a failed restart of it is
    being retried (OTP's ``restarting``, when ``ChildInfo.restarting`` is True too)."""
    STOPPED = "stopped"
    """No process and none coming: terminated, declined (``ignore``), or a transient normal exit."""


def _default_state(info: ChildInfo) -> ChildState:
    if info.restarting:
        return ChildState.RESTARTING
    return ChildState.STOPPED if info.pid is None else ChildState.RUNNING


@attrs.frozen
class ChildInfo:
    """
    One child as ``which_children()`` reports it.

    ``pid`` is None while the child has no process to show: not running, or RESTARTING (a retry's
    process is not shown until it is ready, as OTP shows ``restarting``); a STARTING or STOPPING
    child shows its process's pid. ``restarting`` is OTP's: True between a failed automatic restart
    of this child and its successful retry (its ``state`` is then RESTARTING; a child waiting its turn
    in another child's restart is RESTARTING too, with ``restarting`` False, as OTP shows it
    ``undefined``).
    ``restarts`` counts the child's automatic restarts (one per exit that led to a restart, or per
    group restart it was part of; the retries of a failed restart are part of the same restart);
    ``last_exit`` is the exit reason of its last process (a start declined with ``ignore_start()`` is
    not an exit), or None; ``started_at`` is when the shown
    process was forked (UTC, for display; None without one); ``retry_at`` is when a child in BACKOFF
    is due to be started again (UTC, for display), else None. ``start_info`` is what the running
    process passed to :func:`supervisor.notify_ready` (OTP's ``{ok, Pid, Info}``), kept while that
    process runs; None when it passed nothing, is not running, or is a nested supervisor. ``id`` is
    None for the children of a simple_one_for_one supervisor or a DynamicSupervisor (OTP's
    ``undefined``): they are known by pid.
    """

    id: str | None
    pid: int | None
    type: ChildType
    restart: Restart
    restarting: bool = False
    start_info: Any = None
    state: ChildState = attrs.field(default=attrs.Factory(_default_state, takes_self=True))
    restarts: int = 0
    last_exit: ExitReason | None = None
    started_at: datetime.datetime | None = None
    retry_at: datetime.datetime | None = None


@attrs.frozen
class ChildCounts:
    """
    ``count_children()``: all specs, RUNNING children (``active``), and specs by type (alive or not).

    STARTING, STOPPING, RESTARTING, BACKOFF and STOPPED children are not active.
    """

    specs: int
    active: int
    supervisors: int
    workers: int


@attrs.frozen
class Identity:
    """
    Who the calling process is in its tree (see :func:`supervisor.whoami`): its id path (``root/...``)
    and, in a session, the session's id (None outside sessions).
    """

    path: str
    session_id: str | None
