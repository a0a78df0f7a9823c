"""
The session layer's endpoints: only Unix sockets in a private directory, and only for the authkey.

A client with a wrong key is refused by the SessionManager's control socket and by the registry
server, and the Application goes on as if it had never called: same processes, same registry.
"""

from __future__ import annotations

import os
import pickle
import socket
import stat
from typing import Any

import pytest

from supervisor import Application, AuthenticationError, ChildSpec, SessionManagerHandle, StartMode
from supervisor._addresses import socket_path
from supervisor._transport import connect
from supervisor.sessions.registry import RegistryClient
from supervisor.testing import descendants, wait_gone
from tests.children import HANG_TIMEOUT, notify_then_sleep

WRONG_KEY = b"\x00" * 32


def handle_parts(sessions: SessionManagerHandle) -> tuple[str, str, bytes, float]:
    """The Application's address, tree path, authkey and registry bound: what the handle pickles as."""
    _, args = sessions.__reduce__()
    address, path, authkey, timeout, *_ = args
    return address, path, authkey, timeout


def endpoints(sessions: SessionManagerHandle) -> dict[str, str]:
    """The SessionManager's control socket and the registry server's socket."""
    address, path, _, _ = handle_parts(sessions)
    directory = os.path.dirname(address)
    return {
        "manager": socket_path(directory, f"{path}/session_manager"),
        "registry": socket_path(directory, f"{path}/registry"),
    }


def state(app: Application) -> tuple[Any, ...]:
    """What a refused client must not change: the root's children, the sessions, the processes."""
    sessions = app.session_manager
    return (
        app.supervisor.which_children(),
        sessions.list_sessions(),
        sessions.supervisor.which_children(),
        {entry.pid for entry in descendants(os.getpid())},
    )


def one_session(app: Application) -> str:
    return app.session_manager.create_session(
        children=[ChildSpec("worker", notify_then_sleep, start_mode=StartMode.NOTIFY)]
    )


class TestWrongAuthkey:
    def test_session_manager_refuses_a_handle_with_a_wrong_key(self, app: Application) -> None:
        """Every call through the control socket fails with ConnectionError; nothing changes."""
        one_session(app)
        before = state(app)
        address, path, _, _ = handle_parts(app.session_manager)
        intruder = SessionManagerHandle(address, path, WRONG_KEY, 0.5)

        with pytest.raises(ConnectionError):
            intruder.create_session()
        with pytest.raises(ConnectionError):
            intruder.supervisor.which_children()

        assert state(app) == before

    def test_registry_refuses_a_client_with_a_wrong_key(self, app: Application) -> None:
        """Reads with a wrong key fail at once with ConnectionError; the registry server lives on."""
        session_id = one_session(app)
        before = state(app)
        registry = RegistryClient(endpoints(app.session_manager)["registry"], WRONG_KEY, timeout=HANG_TIMEOUT)

        with pytest.raises(AuthenticationError, match="refused this client's authkey"):
            registry.snapshot()
        with pytest.raises(AuthenticationError, match="refused this client's authkey"):
            registry.get(session_id)

        assert state(app) == before

    @pytest.mark.parametrize("endpoint", ["manager", "registry"])
    def test_raw_connection_with_a_wrong_key_is_refused(self, app: Application, endpoint: str) -> None:
        """The authentication handshake itself fails for a wrong key, on either endpoint."""
        one_session(app)
        before = state(app)

        with pytest.raises((ConnectionError, EOFError)):
            connection = connect(endpoints(app.session_manager)[endpoint], WRONG_KEY)
            connection.send("anything")
            connection.recv()

        assert state(app) == before

    def test_garbage_instead_of_a_handshake_harms_nothing(self, app: Application) -> None:
        """
        Bytes that are not an authentication answer get the refusal, then the connection closes; the
        manager keeps serving.
        """
        one_session(app)
        before = state(app)

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(HANG_TIMEOUT)
            sock.connect(endpoints(app.session_manager)["manager"])
            sock.recv(32)
            sock.sendall(b"\xff" * 64)
            answer = b""
            while chunk := sock.recv(64):
                answer += chunk
            assert answer == bytes(32)  # the refusal, then end of file

        assert state(app) == before
        assert one_session(app) in {info.session_id for info in app.session_manager.list_sessions()}

    def test_the_right_key_still_works_after_refusals(self, app: Application) -> None:
        """After refused clients, the real handle creates, lists and terminates sessions."""
        address, path, _, _ = handle_parts(app.session_manager)
        with pytest.raises(ConnectionError):
            SessionManagerHandle(address, path, WRONG_KEY, 0.5).create_session()
        sessions = app.session_manager

        session_id = one_session(app)

        assert [session_id] == [info.session_id for info in sessions.list_sessions()]
        sessions.terminate_session(session_id)
        assert sessions.list_sessions() == []


class TestPrivateEndpoints:
    def test_private_directory_is_0700_and_sockets_0600(self, app: Application) -> None:
        """The directory holds only sockets, all this user's, none readable by anyone else."""
        one_session(app)
        sockets = endpoints(app.session_manager)
        directory = os.path.dirname(sockets["manager"])

        info = os.stat(directory)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()
        assert os.path.dirname(sockets["registry"]) == directory
        names = os.listdir(directory)
        assert {os.path.basename(path) for path in sockets.values()} <= set(names)
        for name in names:
            entry = os.stat(os.path.join(directory, name))
            assert stat.S_ISSOCK(entry.st_mode), name
            assert stat.S_IMODE(entry.st_mode) == 0o600, name
            assert entry.st_uid == os.getuid()

    def test_restarted_registry_socket_is_0600_at_the_same_address(self, app: Application) -> None:
        """A registry server restarted after a crash listens on the same path, again 0600."""
        sessions = app.session_manager
        address = endpoints(sessions)["registry"]
        registry_pid = {c.id: c.pid for c in app.supervisor.which_children()}["registry"]
        assert registry_pid is not None

        os.kill(registry_pid, 9)

        assert wait_gone([registry_pid], HANG_TIMEOUT) == []
        session_id = one_session(app)
        assert [session_id] == [info.session_id for info in sessions.list_sessions()]
        assert stat.S_IMODE(os.stat(address).st_mode) == 0o600

    def test_each_application_has_its_own_random_authkey(self) -> None:
        """Two Applications have different 32-byte keys; one's key is refused by the other."""
        with Application() as first, Application() as second:
            first_parts = handle_parts(first.session_manager)
            second_parts = handle_parts(second.session_manager)
            assert len(first_parts[2]) == 32
            assert first_parts[2] != second_parts[2]
            crossed = SessionManagerHandle(second_parts[0], second_parts[1], first_parts[2], 0.5)
            with pytest.raises(ConnectionError):
                crossed.supervisor.which_children()

    def test_the_handle_pickles_with_the_key_and_nothing_else(self, app: Application) -> None:
        """An unpickled handle works (it carries the key), and it carries no live connection."""
        sessions = app.session_manager
        session_id = one_session(app)
        copy = pickle.loads(pickle.dumps(sessions))

        assert handle_parts(copy) == handle_parts(sessions)
        assert copy.get_session_info(session_id) == sessions.get_session_info(session_id)
