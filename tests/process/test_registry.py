"""
The session registry under trouble: a registry server that is stopped (SIGSTOP), and clients left over
from a registry server that was restarted.

Nothing waits on a stopped registry beyond a bound: the SessionManager keeps serving, readers raise
``RegistryUnavailableError`` at their ``registry_timeout``, ``terminate_session`` and
``Application.stop()`` return. Every test that stops a process continues it in a ``finally``.
``HANG_TIMEOUT`` only guards against hangs; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import multiprocess

from supervisor import Application, RegistryUnavailableError, SessionManagerHandle
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT

_fork = multiprocess.get_context("fork")


def child_pid(app: Application, child_id: str) -> int:
    pid = {info.id: info.pid for info in app.supervisor.which_children()}[child_id]
    assert pid is not None
    return pid


def session_ids(sessions: SessionManagerHandle) -> set[str]:
    return {info.session_id for info in sessions.list_sessions()}


def _is_stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """SIGSTOP *pid* for the block (once it is stopped), and SIGCONT it afterwards, pass or fail."""
    os.kill(pid, signal.SIGSTOP)
    try:
        # A stop has no event to wait on for a process that is not our child: read its state.
        deadline = time.monotonic() + HANG_TIMEOUT
        while not _is_stopped(pid):
            assert time.monotonic() < deadline, f"process {pid} did not stop"
            time.sleep(0.001)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile: nothing to continue
            os.kill(pid, signal.SIGCONT)


def in_thread(function: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run *function* in a daemon thread; its return value or exception lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def finished(function: Any, bound: float = HANG_TIMEOUT) -> dict[str, Any]:
    """Run *function* in a thread; assert it ended within *bound* seconds; its outcome."""
    thread, outcome = in_thread(function)
    thread.join(bound)
    assert not thread.is_alive(), f"{function} did not return within {bound} s"
    return outcome


# ---------------------------------------------------------------------- a stopped registry server


class TestStoppedRegistry:
    def test_session_manager_serves_while_the_registry_is_stopped(self) -> None:
        """create_session and which_children return while the registry is stopped."""
        with Application(registry_timeout=HANG_TIMEOUT * 4) as app:
            sessions = app.session_manager
            first = sessions.create_session()
            with stopped(child_pid(app, "registry")):
                created = finished(sessions.create_session)
                listed = finished(lambda: sessions.supervisor.which_children(timeout=HANG_TIMEOUT))
                again = finished(lambda: sessions.supervisor.which_children(timeout=HANG_TIMEOUT))

            assert "error" not in created, created
            assert {first, created["value"]} == {info.id for info in listed["value"]}
            assert {first, created["value"]} == {info.id for info in again["value"]}

    def test_readers_raise_registry_unavailable_at_their_bound(self) -> None:
        """list_sessions and get_session_info raise RegistryUnavailableError, by default and with timeout=."""
        with Application(registry_timeout=0.5) as app:
            sessions = app.session_manager
            session_id = sessions.create_session()
            with stopped(child_pid(app, "registry")):
                outcomes = [
                    finished(sessions.list_sessions),
                    finished(lambda: sessions.get_session_info(session_id)),
                    finished(lambda: sessions.list_sessions(timeout=0.2)),
                    finished(lambda: sessions.get_session_pid(session_id, timeout=0.2)),
                ]
            for outcome in outcomes:
                assert isinstance(outcome.get("error"), RegistryUnavailableError), outcome
                assert "did not answer" in str(outcome["error"])

    def test_terminate_session_does_not_wait_on_a_stopped_registry(self) -> None:
        """terminate_session returns while the registry is stopped, long before the readers' bound."""
        with Application(registry_timeout=HANG_TIMEOUT * 4) as app:
            sessions = app.session_manager
            keep, gone = sessions.create_session(), sessions.create_session()
            with stopped(child_pid(app, "registry")):
                outcome = finished(lambda: sessions.terminate_session(gone))
                children = sessions.supervisor.which_children(timeout=HANG_TIMEOUT)

            assert "error" not in outcome, outcome
            assert [keep] == [info.id for info in children]

    def test_application_stop_is_bounded_while_the_registry_is_stopped(self) -> None:
        """stop() ends the whole tree, the stopped registry server included, without a SIGCONT."""
        app = Application().start()
        try:
            sessions = app.session_manager
            sessions.create_session()
            registry_pid = child_pid(app, "registry")
            manager_pid = child_pid(app, "session_manager")
            with stopped(registry_pid):
                finished(sessions.create_session)  # a write the registry cannot acknowledge
                outcome = finished(app.stop)
                assert "error" not in outcome, outcome
                assert wait_gone([registry_pid, manager_pid], HANG_TIMEOUT) == []
        finally:
            app.stop(timeout=HANG_TIMEOUT)


# ---------------------------------------------------------------------- clients of a restarted server


def _read_then_wait(sessions: SessionManagerHandle, read_w: int, gate_r: int) -> None:
    """A client process: read the registry, say so, wait for the gate to open, then exit normally."""
    sessions.list_sessions()
    os.write(read_w, b"r")
    os.read(gate_r, 1)


class TestRestartedRegistry:
    def test_clients_of_a_previous_registry_server_do_not_break_reads(self, app: Application) -> None:
        """Clients that read before a registry restart and exit after it leave reads and writes working."""
        sessions = app.session_manager
        ids = {sessions.create_session() for _ in range(2)}
        read_r, read_w = os.pipe()
        gate_r, gate_w = os.pipe()
        clients = [_fork.Process(target=_read_then_wait, args=(sessions, read_w, gate_r)) for _ in range(3)]
        try:
            for client in clients:
                client.start()
            for _ in clients:
                assert os.read(read_r, 1) == b"r"
            registry_pid = child_pid(app, "registry")
            os.kill(registry_pid, signal.SIGKILL)
            assert wait_gone([registry_pid], HANG_TIMEOUT) == []
            assert ids == session_ids(sessions)  # connected to the new server, republished

            os.write(gate_w, b"x" * len(clients))  # the clients exit, their registry clients with them
            for client in clients:
                client.join(HANG_TIMEOUT)
                assert client.exitcode == 0

            assert ids == session_ids(sessions)
            added = sessions.create_session()
            assert ids | {added} == session_ids(sessions)
        finally:
            for client in clients:
                if client.is_alive():
                    client.kill()
                    client.join(HANG_TIMEOUT)
            for fd in (read_r, read_w, gate_r, gate_w):
                os.close(fd)
