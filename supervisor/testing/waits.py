"""
Waits for what a test is waiting for, a child's restart or a session's end, woken by the event itself.

A test that kills a worker and then sleeps "long enough" for the restart is slow when the machine is
idle and flaky when it is loaded. These helpers block on the event instead: the old process's pidfd
(the kernel wakes the wait when it exits), then one request to the supervisor, which answers only
once it has handled that death (a supervisor handles deaths before requests). Each takes a
*timeout* that only guards against a hang: tens of seconds are fine, since an event ends the wait at
once. A timeout raises ``TimeoutError`` (or :class:`~supervisor.CallTimeout`, a ``TimeoutError``
too). Client code only: this module imports handles and values, never the engine.
"""

from __future__ import annotations

import os
import select
import time

from ..errors import ChildNotFoundError, ChildNotRunningError, SessionNotFoundError
from ..handle import SupervisorHandle, deadline_from, remaining
from ..info import ChildState
from ..sessions.client import SessionManagerHandle

__all__ = ["HANG_TIMEOUT", "wait_exited", "wait_restarted", "wait_session_down"]

HANG_TIMEOUT = 30.0
"""The default *timeout* of the waits, in seconds: reached only when what was awaited never happens."""


def wait_exited(pid: int, timeout: float = HANG_TIMEOUT) -> None:
    """
    Wait until the process *pid* has exited; return at once if there is no such process.

    Waits on a pidfd, so *pid* need not be a child of this process. An exited process counts even
    if it is not reaped yet (a zombie). Blocks until then, at most *timeout* seconds.

    Raises:
        TypeError, ValueError: *timeout* is not seconds >= 0.
        TimeoutError: *pid* still runs after *timeout* seconds.
    """
    deadline = _deadline(timeout)
    _wait_pid(pid, deadline, f"process {pid} still runs after {timeout} s")


def wait_restarted(
    handle: SupervisorHandle, child_id: str, old_pid: int, timeout: float = HANG_TIMEOUT
) -> int:
    """
    Wait until the child *child_id* of *handle*'s supervisor runs again in a new process; return its pid.

    For a child whose process *old_pid* was killed, crashed or exited, and is to be restarted (a
    permanent child; a transient one after an abnormal exit; a bystander of a one_for_all or
    rest_for_one restart): returns once the restarted child is ready, as ``which_child`` reports it
    RUNNING, so it can be called, signalled or killed again at once. Also returns once *old_pid*
    has exited if the child already runs again. Blocks until then, at most *timeout* seconds: on
    *old_pid*'s pidfd, then on requests the supervisor answers once the restart is done (its
    ``terminate_child`` of *old_pid*, which changes nothing: it waits behind the child's restart and
    finds no child with that pid). A restart delayed by a :class:`~supervisor.Backoff` is waited for
    until its ``retry_at``.

    For a child of a static supervisor (known by id); not for a simple_one_for_one supervisor's or
    a DynamicSupervisor's children, which are known by pid.

    Raises:
        TypeError, ValueError: a bad argument, named.
        TimeoutError: the child does not run again within *timeout* seconds (a
            :class:`~supervisor.CallTimeout` if a request was under way).
        ChildNotRunningError: the child is stopped and will not run again (its restart type does
            not restart it after this exit, or its restart failed for good).
        ChildNotFoundError: no child has the id *child_id* (a temporary child is forgotten when it ends).
        SupervisorGoneError: the supervisor is gone (it gave up after too many restarts, say).
    """
    if not isinstance(child_id, str):
        raise TypeError(f"'child_id' must be a str (got {child_id!r} that is a {type(child_id).__name__})")
    _check_pid(old_pid, "old_pid")
    deadline = _deadline(timeout)
    _wait_pid(old_pid, deadline, f"wait_restarted: process {old_pid} of child {child_id!r} still runs")
    while True:
        info = handle.which_child(child_id, timeout=remaining(deadline))
        if info.state is ChildState.RUNNING and info.pid is not None and info.pid != old_pid:
            return info.pid
        if info.state is ChildState.STOPPED:
            raise ChildNotRunningError(
                f"wait_restarted: child {child_id!r} of supervisor {handle.path} is stopped and will not "
                f"run again (its last exit: {info.last_exit!r})",
                child_id,
            )
        if info.state is ChildState.BACKOFF and info.retry_at is not None:
            # The restart is queued on a timer: no request waits for it. Wait for its due time
            # (wall clock, as the supervisor reports it), then ask again.
            delay = info.retry_at.timestamp() - time.time()
            _wait_pid(-1, min(deadline, time.monotonic() + max(0.0, delay)), None)
        else:
            _behind_restart(handle, old_pid, deadline)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"wait_restarted: child {child_id!r} of supervisor {handle.path} did not run again "
                f"within {timeout} s (last seen {info.state.name})"
            )


def _behind_restart(handle: SupervisorHandle, old_pid: int, deadline: float) -> None:
    """
    Return once the restart of the child that ran as *old_pid* is done, or has given way to a retry.

    A ``terminate_child`` of an old pid is queued in that child's lane, behind its restart, and then
    finds no child running as *old_pid*: it changes nothing.
    """
    try:
        handle.terminate_child(old_pid, timeout=remaining(deadline))
    except ChildNotFoundError:
        pass


def wait_session_down(sessions: SessionManagerHandle, session_id: str, timeout: float = HANG_TIMEOUT) -> None:
    """
    Wait until the session *session_id* is down: its SessionSupervisor has exited and the
    SessionManager has handled it. Returns at once if no live session has this id.

    Afterwards a session that is not restarted (a TEMPORARY one, the default, or one that ended
    normally) is gone: ``get_session_info`` raises :class:`~supervisor.SessionNotFoundError` and
    ``list_sessions`` omits it; a restartable one is being restarted. Blocks on the session
    process's pidfd, then for one request to the SessionManager, which handles the death before it
    and writes the registry before it replies; at most *timeout* seconds in all.

    Raises:
        TypeError, ValueError: a bad argument, named.
        TimeoutError: the session still runs after *timeout* seconds.
        RegistryUnavailableError: the registry did not answer (see ``registry_timeout``).
    """
    if not isinstance(session_id, str):
        raise TypeError(
            f"'session_id' must be a str (got {session_id!r} that is a {type(session_id).__name__})"
        )
    deadline = _deadline(timeout)
    try:
        pid = sessions.get_session_pid(session_id, timeout=remaining(deadline))
    except SessionNotFoundError:
        return
    _wait_pid(pid, deadline, f"wait_session_down: session {session_id!r} (pid {pid}) still runs")
    sessions.supervisor.count_children(timeout=remaining(deadline))


def _deadline(timeout: object) -> float:
    deadline = deadline_from("timeout", timeout)
    if deadline is None:
        raise TypeError("'timeout' must be seconds >= 0 (got None: a test helper's wait must be bounded)")
    return deadline


def _check_pid(pid: object, name: str) -> None:
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise TypeError(f"'{name}' must be a pid, an int (got {pid!r} that is a {type(pid).__name__})")
    if pid <= 0:
        raise ValueError(f"'{name}' must be a pid > 0 (got {pid!r})")


def _wait_pid(pid: int, deadline: float, message: str | None) -> None:
    """
    Block until *pid* has exited or *deadline* passes (*pid* -1: only the deadline).

    Raises TimeoutError with *message* at the deadline, unless *message* is None.
    """
    fd = -1
    if pid > 0:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
    try:
        poller = select.poll()
        if fd >= 0:
            poller.register(fd, select.POLLIN)
        left = remaining(deadline)
        assert left is not None
        if poller.poll(left * 1000):
            return
    finally:
        if fd >= 0:
            os.close(fd)
    if message is not None:
        raise TimeoutError(message)
