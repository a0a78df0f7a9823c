"""
Child start functions for the session tests, at module level so every process can import them.

Like :mod:`tests.children`, they report to an :class:`~tests.children.EventSink` with
``emit(sink_path, kind, key)``; tests block on the events and never sleep.
"""

from __future__ import annotations

import os
import resource
import socket
from typing import Any

from supervisor import (
    SessionManagerHandle,
    SessionNotFoundError,
    SupervisorError,
    SupervisorHandle,
    notify_ready,
)

from .children import emit, sleep_forever


def report_parent_then_crash(path: str, key: Any) -> None:
    """Become ready, report ``started`` with the pid of the supervisor (the parent), then crash."""
    notify_ready()
    emit(path, "started", (key, os.getppid()))
    raise RuntimeError(f"{key} crashes after its start")


def wait_for_gate(path: str, key: Any, gate: str) -> None:
    """
    Bind the datagram socket *gate*, report ``waiting``, and become ready only once a datagram arrives.

    A slow-starting NOTIFY child whose start the test controls: it ends its start when the test
    sends anything to *gate*.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(gate)
        emit(path, "waiting", key)
        sock.recv(16)
    notify_ready()
    emit(path, "started", key)
    sleep_forever()


def open_gate(gate: str) -> None:
    """Release the child waiting in :func:`wait_for_gate` on *gate*."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"go", gate)


def report_isolation(path: str, key: Any, variable: str) -> None:
    """Report ``isolation`` with the cwd, the value of *variable*, the process group and rlimits."""
    limits = {
        name: resource.getrlimit(getattr(resource, name))[0]
        for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE")
    }
    state = {
        "cwd": os.getcwd(),
        "variable": os.environ.get(variable),
        "pgid": os.getpgid(0),
        "ppid": os.getppid(),
        "limits": limits,
    }
    emit(path, "isolation", (key, state))
    notify_ready()
    sleep_forever()


def allocate_beyond_limit(path: str, key: Any, size: int) -> None:
    """Become ready, report ``started`` with the parent's pid, then allocate *size* bytes at once."""
    notify_ready()
    emit(path, "started", (key, os.getppid()))
    try:
        block = bytearray(size)
    except MemoryError:
        emit(path, "memory_error", key)
        raise
    emit(path, "allocated", (key, len(block)))
    sleep_forever()


def use_sessions(sessions: SessionManagerHandle, path: str, key: Any) -> None:
    """
    From inside a session: create a session, list the sessions, terminate it, look it up again.

    Reports ``created`` (the new id), ``listed`` (the ids listed), ``terminated`` and ``not_found``
    (the id the SessionNotFoundError named), then runs until stopped.
    """
    notify_ready()
    session_id = sessions.create_session(metadata={"created_by": key})
    emit(path, "created", session_id)
    emit(path, "listed", tuple(info.session_id for info in sessions.list_sessions()))
    sessions.terminate_session(session_id)
    emit(path, "terminated", session_id)
    try:
        sessions.get_session_info(session_id)
    except SessionNotFoundError as error:
        emit(path, "not_found", error.session_id)
    sleep_forever()


def create_and_terminate(sessions: SessionManagerHandle, path: str, key: Any, count: int) -> None:
    """
    A client in its own process: create *count* sessions, terminate the first, report the ids.

    Reports ``done`` with ``(key, created, terminated)``, or ``failed`` with ``(key, repr(error))``.
    """
    try:
        created, terminated = client_round(sessions, count)
    except Exception as error:
        emit(path, "failed", (key, repr(error)))
        raise
    emit(path, "done", (key, created, terminated))


def client_round(sessions: SessionManagerHandle, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Create *count* sessions of one worker each, then terminate the first; return both id lists."""
    from supervisor import ChildSpec, StartMode

    from .children import notify_then_sleep

    spec = ChildSpec("worker", notify_then_sleep, start_mode=StartMode.NOTIFY)
    created = tuple(sessions.create_session(children=[spec]) for _ in range(count))
    sessions.terminate_session(created[0])
    return created, created[:1]


def stop_at_gate(path: str, key: Any, gate: str) -> None:
    """
    Run until stopped; on SIGTERM report ``stopping`` and finish stopping only once *gate* gets a datagram.

    A child whose shutdown the test holds open, to look at the session while it is TERMINATING.
    """
    from supervisor import ShutdownExit

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(gate)
        notify_ready()
        emit(path, "started", key)
        try:
            sleep_forever()
        except ShutdownExit:
            emit(path, "stopping", key)
            sock.recv(16)
            raise


def use_the_given_handle(handle: SupervisorHandle, elsewhere: str, path: str, key: Any) -> None:
    """
    Use the session handle this worker was given, then aim its key at the supervisor at *elsewhere*.

    Reports ``children`` (the ids ``handle.which_children()`` lists) and ``elsewhere`` (the name of
    the error that call raised there, or ``"opened"``), then becomes ready and runs until stopped.
    """
    emit(path, "children", tuple(child.id for child in handle.which_children()))
    probe = SupervisorHandle(elsewhere, handle._authkey, "elsewhere")
    try:
        probe.which_children()
        outcome = "opened"
    except SupervisorError as error:
        outcome = type(error).__name__
    emit(path, "elsewhere", outcome)
    notify_ready()
    sleep_forever()
