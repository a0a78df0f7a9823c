"""
Waits for what a test is waiting for, a child's restart or a session's end, woken by the event itself.

A test that kills a worker and then sleeps "long enough" for the restart is slow when the machine is
idle and flaky when it is loaded. These helpers block on the event instead. :func:`wait_restarted`
subscribes to the supervisor's event stream (:meth:`SupervisorHandle.events
<supervisor.SupervisorHandle.events>`) before it reads the child's state, so no event between the
read and the wait is missed, and the supervisor's push wakes it. :func:`wait_session_down` and
:func:`wait_exited` wait on a pidfd, which the kernel wakes when the process exits. Each takes a
*timeout* that only guards against a hang: tens of seconds are fine, since the event ends the wait
at once. A timeout raises ``TimeoutError`` (or :class:`~supervisor.CallTimeout`, a ``TimeoutError``
too, from a request under way). Client code only: this module imports handles and values, never
the engine.
"""

from __future__ import annotations

import os
import select

from ..errors import ChildNotRunningError, SessionNotFoundError, SupervisorGoneError
from ..handle import SupervisorHandle, deadline_from, remaining
from ..info import ChildInfo, ChildState
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
        TypeError, ValueError: a bad argument, named.
        TimeoutError: *pid* still runs after *timeout* seconds.
    """
    _check_pid(pid, "pid")
    if not _exited(pid, _deadline(timeout)):
        raise TimeoutError(f"wait_exited: process {pid} still runs after {timeout} s")


def wait_restarted(
    handle: SupervisorHandle, child_id: str, old_pid: int, timeout: float = HANG_TIMEOUT
) -> int:
    """
    Wait until the child *child_id* of *handle*'s supervisor runs again in a new process; return its pid.

    For a child whose process *old_pid* was killed, crashed or exited, or is about to, and that is
    to be restarted (a permanent child; a transient one after an abnormal exit; a bystander of a
    one_for_all or rest_for_one restart): returns once the child is ready in a process other than
    *old_pid* (its ``started`` or ``restarted`` event, or ``which_child`` reporting it RUNNING), so
    it can be called, signalled or killed again at once. A restart delayed by a
    :class:`~supervisor.Backoff`, or retried after failed starts, is waited for too. Blocks until
    then, at most *timeout* seconds, on the supervisor's event stream (no polling).

    For a child of a static supervisor (known by id); not for a simple_one_for_one supervisor's or
    a DynamicSupervisor's children, which are known by pid.

    Raises:
        TypeError, ValueError: a bad argument, named.
        TimeoutError: the child does not run again within *timeout* seconds.
        ChildNotRunningError: the child is stopped and will not run again (its restart type does
            not restart it after this exit, or it was terminated).
        ChildNotFoundError: no child has the id *child_id* (a temporary child is forgotten when it ends).
        SupervisorGoneError: the supervisor is gone, or gives up (it reached its restart intensity).
    """
    if not isinstance(child_id, str):
        raise TypeError(f"'child_id' must be a str (got {child_id!r} that is a {type(child_id).__name__})")
    _check_pid(old_pid, "old_pid")
    deadline = _deadline(timeout)
    path = f"{handle.path}/{child_id}"
    # Subscribed first, then the state read: an event between the two is in the stream.
    with handle.events(timeout=remaining(deadline)) as stream:
        info: ChildInfo | None = handle.which_child(child_id, timeout=remaining(deadline))
        while True:
            if info is not None:
                if info.state is ChildState.RUNNING and info.pid is not None and info.pid != old_pid:
                    return info.pid
                if info.state is ChildState.STOPPED:
                    raise ChildNotRunningError(
                        f"wait_restarted: child {child_id!r} of supervisor {handle.path} is stopped and "
                        f"will not run again (its last exit: {info.last_exit!r})",
                        child_id,
                    )
                info = None
            event = stream.next_event(remaining(deadline))
            if event is None:
                if stream.ended:
                    raise SupervisorGoneError(
                        f"wait_restarted: supervisor {handle.path} exited before child {child_id!r} ran again"
                    )
                raise TimeoutError(
                    f"wait_restarted: child {child_id!r} of supervisor {handle.path} did not run again "
                    f"within {timeout} s"
                )
            if event.kind == "intensity_reached":
                raise SupervisorGoneError(
                    f"wait_restarted: supervisor {handle.path} reached its restart intensity and gives "
                    f"up; child {child_id!r} will not run again (last exit: {event.reason!r})"
                )
            if event.kind == "lost" or (event.path == path and event.kind == "exited"):
                # Its exit may leave it stopped for good (a transient child's normal exit, say).
                info = handle.which_child(child_id, timeout=remaining(deadline))
            elif event.path == path and event.kind in ("started", "restarted") and event.pid != old_pid:
                assert event.pid is not None
                return event.pid


def wait_session_down(
    sessions: SessionManagerHandle,
    session_id: str,
    timeout: float = HANG_TIMEOUT,
    *,
    pid: int | None = None,
) -> None:
    """
    Wait until the session *session_id* is down: its SessionSupervisor process has exited and the
    SessionManager has handled that. Returns at once if no live session has this id.

    *pid* is the session's process to wait for, as ``get_session_pid`` gave it before: pass it for a
    restartable session, which may already run again in a new process; by default the session's
    current process. Afterwards a session that is not restarted (a TEMPORARY one, the default, or
    a TRANSIENT one that ended normally) is gone: ``get_session_info`` raises
    :class:`~supervisor.SessionNotFoundError` and ``list_sessions`` omits it; a restartable one is
    being restarted, or runs again. Blocks on the process's pidfd, then for one request to the
    SessionManager, which handles a death it can see before any request and writes the registry
    before it replies; at most *timeout* seconds in all.

    Raises:
        TypeError, ValueError: a bad argument, named.
        TimeoutError: the session still runs after *timeout* seconds.
        SupervisorGoneError: the SessionManager is gone.
        RegistryUnavailableError: the registry did not answer (see ``registry_timeout``).
    """
    if not isinstance(session_id, str):
        raise TypeError(
            f"'session_id' must be a str (got {session_id!r} that is a {type(session_id).__name__})"
        )
    if pid is not None:
        _check_pid(pid, "pid")
    deadline = _deadline(timeout)
    if pid is None:
        try:
            pid = sessions.get_session_pid(session_id, timeout=remaining(deadline))
        except SessionNotFoundError:
            return
    if not _exited(pid, deadline):
        raise TimeoutError(
            f"wait_session_down: session {session_id!r} (pid {pid}) still runs after {timeout} s"
        )
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


def _exited(pid: int, deadline: float) -> bool:
    """Block until *pid* has exited (True; at once if there is no such process) or *deadline* passes."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll((remaining(deadline) or 0.0) * 1000))
    finally:
        os.close(fd)
