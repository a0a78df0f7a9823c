"""
A supervisor's state, as OTP's ``#state`` and ``#child`` records: the child records in start order,
the restart times, and the queries answered from them (``which_children``, ``count_children``).

Only the supervisor's one thread mutates it. This module holds data and the errors that describe it;
it forks nothing and waits on nothing.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import attrs

from .._strategy import should_restart
from ..errors import ChildNotFoundError, ChildRestartingError, ChildRunningError, DuplicateChildError
from ..info import ChildCounts, ChildInfo, ChildState
from ..reasons import ExitReason
from ..specs import (
    NESTED_SUPERVISOR_FROM,
    ChildSpec,
    ChildType,
    DynamicSupervisorSpec,
    Strategy,
    SupervisorSpec,
)
from .hooks import ChildEvent
from .processes import ChildProcess

__all__ = ["ChildRecord", "RestartGroup", "SupervisorState"]


@attrs.define(eq=False)
class RestartGroup:
    """
    One automatic restart in progress: the children it is to start, in start order.

    ``cause`` is the child whose exit, or failed start, the restart is for: terminating it abandons
    the restart (as OTP's ``terminate_child`` ends a restart loop), and the members left without a
    process stay stopped. ``timer`` (the reactor's) and ``retry_at`` (monotonic) are set while the
    restart waits out a backoff, ``retry_at_utc`` being the same moment for display; a group restart
    waits as one. A member leaves the group once started (or declined), terminated, restarted or
    deleted through the API.
    """

    members: list[ChildRecord]
    cause: ChildRecord
    timer: Any = None
    retry_at: float | None = None
    retry_at_utc: datetime.datetime | None = None


@attrs.define(eq=False)
class ChildRecord:
    """
    One child spec and, while it has one, its process.

    ``proc`` is None while the child is not running. ``exit_pending`` holds the reason of a child
    reaped by the loop whose exit the restart logic has not handled yet; clearing it (terminate,
    restart) cancels that handling. ``restarting`` is set between a failed automatic restart and its
    retry. ``busy`` is set while a job waits on the process itself, so the loop leaves its pidfd and
    report pipe to the job. ``shutdown_deadline`` is set from the start of a shutdown until the reap:
    the monotonic time of its SIGKILL (already passed for ``brutal_kill``), or ``math.inf`` for
    ``Shutdown.INFINITY``; a later shutdown of the same process (a stop after a ``terminate_child``)
    keeps it. ``nested`` says whether the child is a nested supervisor (``ChildSpec.nested``), kept
    here because a started temporary child's spec loses its arguments (:meth:`forget_start_arguments`).
    ``anonymous`` marks a child of a simple_one_for_one supervisor or a DynamicSupervisor: its spec's
    id is a key the supervisor made up (its lane and tree path), reported as None; it is known by
    pid. ``exit_pid`` is the pid of its last process to die outside a job, so that a
    ``terminate_child`` with that pid still finds it while its restart is being retried (OTP's
    ``{restarting, Pid}``). ``last_pid`` is the pid of its last process to be reaped, whatever reaped it.

    What ``which_children`` shows besides: ``starting`` is set from the fork until the process
    reports ready (or is reaped); ``group`` is the automatic restart the child is part of until it is
    started again (:class:`RestartGroup`, which holds a backoff's timer); ``restarts`` counts its
    automatic restarts; ``last_exit`` is its last process's exit reason; ``started_at`` is the UTC
    time of its current process's fork, None without one. For backoff, ``consecutive`` counts its
    consecutive automatic restarts and ``running_since`` is ``_backoff.clock()`` when its current
    process became ready (None before, and once its exit has been counted).
    """

    spec: ChildSpec
    proc: ChildProcess | None = None
    exit_pending: ExitReason | None = None
    restarting: bool = False
    busy: bool = False
    shutdown_deadline: float | None = None
    anonymous: bool = False
    exit_pid: int | None = None
    last_pid: int | None = None
    nested: bool = attrs.field(init=False)
    starting: bool = False
    group: RestartGroup | None = None
    restarts: int = 0
    last_exit: ExitReason | None = None
    started_at: datetime.datetime | None = None
    consecutive: int = 0
    running_since: float | None = None

    def __attrs_post_init__(self) -> None:
        self.nested = self.spec.nested is not None or self.spec.start == NESTED_SUPERVISOR_FROM

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def forget_start_arguments(self) -> None:
        """Drop the args and kwargs of a started temporary child, which never starts again (as OTP does)."""
        if self.spec.args or self.spec.kwargs:
            self.spec = attrs.evolve(self.spec, args=(), kwargs={})

    def state(self) -> ChildState:
        """Where the child is in its life (see :class:`ChildState`)."""
        if self.proc is not None:
            if self.shutdown_deadline is not None:
                return ChildState.STOPPING
            if self.restarting:
                return ChildState.RESTARTING
            return ChildState.STARTING if self.starting else ChildState.RUNNING
        group = self.group
        if group is not None and group.retry_at is not None:
            return ChildState.BACKOFF
        if self.restarting or group is not None:
            return ChildState.RESTARTING
        pending = self.exit_pending
        if pending is not None and should_restart(self.spec.restart, pending):
            return ChildState.RESTARTING  # reaped; the restart is queued
        return ChildState.STOPPED

    def info(self) -> ChildInfo:
        state = self.state()
        # A retry in progress has a process, but the child is not up until the retry succeeds.
        shown = state is not ChildState.RESTARTING and self.proc is not None
        group = self.group
        return ChildInfo(
            None if self.anonymous else self.id,
            self.pid if shown else None,
            self.spec.type,
            self.spec.restart,
            self.restarting,
            start_info=self.start_info(),
            state=state,
            restarts=self.restarts,
            last_exit=self.last_exit,
            started_at=self.started_at if shown else None,
            retry_at=group.retry_at_utc if state is ChildState.BACKOFF and group is not None else None,
        )

    def start_info(self) -> Any:
        """
        What the running process passed to ``notify_ready`` (OTP's ``{ok, Pid, Info}``), else None.

        None while the child is not running or is being restarted, and for a nested supervisor,
        whose ready report is the package's own (its address), not its user's.
        """
        if self.proc is None or self.restarting or self.nested:
            return None
        return self.proc.ready_info

    def event(self, automatic: bool = False) -> ChildEvent:
        """This child as the hooks see it: a frozen value, not this record (*automatic*: see ChildEvent)."""
        return ChildEvent(self.id, self.pid, self.spec, self.last_pid, automatic)


class SupervisorState:
    """The children of one supervisor, in start order and by id, and its restart times."""

    def __init__(self, spec: SupervisorSpec | DynamicSupervisorSpec, path: str) -> None:
        self.spec = spec
        self.path = path  # for error messages
        self.children: list[ChildRecord] = []
        self.by_id: dict[str, ChildRecord] = {}
        self.restart_times: tuple[float, ...] = ()

    def add(self, child: ChildRecord) -> None:
        self.children.append(child)
        self.by_id[child.id] = child

    def remove(self, child: ChildRecord) -> None:
        self.children.remove(child)
        del self.by_id[child.id]

    def find(self, child_id: str) -> ChildRecord | None:
        return self.by_id.get(child_id)

    def find_pid(self, pid: int, past: bool = False) -> ChildRecord | None:
        """
        The child whose process is *pid*, or whose restart loop (or backoff) began with the death of
        *pid*; with *past*, also a child whose last process to die was *pid*, whatever it is doing now.
        """
        # The live process first: a pid reused since another child's process died names this one.
        for child in self.children:
            if child.pid == pid:
                return child
        for child in self.children:
            pending = child.restarting or child.group is not None
            if child.exit_pid == pid and (past or pending):
                return child
        return None

    def running_pids(self) -> set[int]:
        return {c.proc.pid for c in self.children if c.proc is not None}

    def running_supervisors(self) -> list[tuple[str, int]]:
        """The id and pid of each nested supervisor child that is running and ready, in start order."""
        return [
            (c.id, c.proc.pid) for c in self.children if c.nested and c.proc is not None and not c.starting
        ]

    def which_children(self) -> list[ChildInfo]:
        return [c.info() for c in self.children]

    def which_child(self, child_id: str) -> ChildInfo:
        """The child *child_id* as ``which_children`` reports it (OTP 28's ``which_child``)."""
        child = self.find(child_id)
        if child is None:
            raise self.not_found("which_child", child_id)
        return child.info()

    def get_childspec(self, child_id: str) -> ChildSpec:
        """
        The spec of the child *child_id*, every field filled in; a started temporary child's without
        its args and kwargs, which are not kept (OTP's ``get_childspec``).
        """
        child = self.find(child_id)
        if child is None:
            raise self.not_found("get_childspec", child_id)
        return child.spec

    def count_children(self) -> ChildCounts:
        """
        OTP's counts: ``specs`` is the number of children, but 1 (the template) for simple_one_for_one;
        ``active`` counts RUNNING children (not starting, stopping, restarting or in backoff); the rest
        count children by type.
        """
        supervisors = sum(1 for c in self.children if c.spec.type is ChildType.SUPERVISOR)
        simple = self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE
        return ChildCounts(
            specs=1 if simple else len(self.children),
            active=sum(1 for c in self.children if c.state() is ChildState.RUNNING),
            supervisors=supervisors,
            workers=len(self.children) - supervisors,
        )

    # ------------------------------------------------------------------ lookups that raise

    def not_found(self, call: str, child_id: str) -> ChildNotFoundError:
        known = ", ".join(repr(c.id) for c in self.children) or "none"
        return ChildNotFoundError(
            f"{call}: no child with id {child_id!r} under supervisor {self.path} (pid {os.getpid()}) "
            f"(children: {known})",
            child_id,
        )

    def existing(self, call: str, child_id: str) -> ChildRecord:
        """The child *child_id*, which must be present, not running and not restarting."""
        child = self.find(child_id)
        if child is None:
            raise self.not_found(call, child_id)
        if child.restarting:
            raise ChildRestartingError(
                f"{call}: child {child_id!r} is restarting (a failed restart is being retried)", child_id
            )
        if child.proc is not None:
            raise ChildRunningError(f"{call}: child {child_id!r} is running (pid {child.pid})", child_id)
        return child

    def check_new(self, child_id: str) -> None:
        """Raise DuplicateChildError if a child *child_id* exists."""
        existing = self.find(child_id)
        if existing is not None:
            pid = existing.info().pid
            state = f"running (pid {pid})" if pid is not None else "present, not running"
            raise DuplicateChildError(
                f"start_child: a child with id {child_id!r} is already {state}", child_id, pid
            )
