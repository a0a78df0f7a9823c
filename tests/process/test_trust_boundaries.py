"""
Trust boundaries, read from the processes themselves: which keys and which environment each holds.

A worker holds no key it was not given, a session's supervisor holds its own key and no other, and
a session's handle opens only that session. Keys are looked for as bytes in each process's memory
(``/proc/<pid>/mem``), so a key left in a module global, a freed buffer or an inherited object counts.
With ``env=``, every process of the tree has exactly that environment, in ``/proc/<pid>/environ``
and in ``os.environ``, and nothing of the caller's reaches its memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from typing import Any

import pytest

from supervisor import (
    Application,
    AuthenticationError,
    ChildSpec,
    SessionManagerHandle,
    StartMode,
    Supervisor,
    SupervisorHandle,
)
from supervisor.sessions.registry import RegistryClient
from supervisor.testing import descendants
from tests.children import EventSink, notify_then_sleep, sleep_forever
from tests.session_children import report_isolation, use_the_given_handle

from .memory import holds


def key_of(handle: SupervisorHandle) -> bytes:
    """The bytes of the key *handle* holds (the tree's key, for a tree's handle)."""
    key: Any = handle._authkey
    return bytes(getattr(key, "material", key))


def session_key(tree_key: bytes, sessions: SessionManagerHandle, session_id: str) -> bytes:
    """What a session's own key must be: HMAC-SHA256(tree key, the session's id path)."""
    path = f"{sessions.supervisor.path}/{session_id}"
    return hmac.new(tree_key, path.encode(), hashlib.sha256).digest()


def one_worker_session(sessions: SessionManagerHandle) -> str:
    return sessions.create_session(children=[ChildSpec("w", notify_then_sleep, start_mode=StartMode.NOTIFY)])


def worker_pid(sessions: SessionManagerHandle, session_id: str, child_id: str = "w") -> int:
    pid = {child.id: child.pid for child in sessions.session_supervisor(session_id).which_children()}[
        child_id
    ]
    assert pid is not None
    return pid


class TestKeysInMemory:
    def test_no_worker_holds_the_tree_key(self, start_tree: Any) -> None:
        """Workers, at the root and below a nested supervisor, hold no trace of the tree key; supervisors
        do."""
        handle = start_tree(
            [ChildSpec("a", sleep_forever), ChildSpec.supervisor("sub", [ChildSpec("b", sleep_forever)])]
        )
        tree_key = key_of(handle)
        pids = {child.id: child.pid for child in handle.which_children()}
        nested = handle.child_supervisor("sub").which_children()[0].pid
        assert pids["a"] is not None and pids["sub"] is not None and nested is not None

        # The scan finds the key where it must be: in the supervisors that serve with it.
        assert holds(handle.pid, tree_key)
        assert holds(pids["sub"], tree_key)
        assert not holds(pids["a"], tree_key)
        assert not holds(nested, tree_key)

    def test_a_session_holds_only_its_own_key(self, app: Application) -> None:
        """A SessionSupervisor holds its own key, not the tree's or another session's; its worker holds
        none."""
        sessions = app.session_manager
        first, second = one_worker_session(sessions), one_worker_session(sessions)
        tree_key = key_of(app.supervisor)
        first_key = session_key(tree_key, sessions, first)
        second_key = session_key(tree_key, sessions, second)
        supervisor = sessions.get_session_pid(first)
        worker = worker_pid(sessions, first)

        assert holds(supervisor, first_key)
        assert not holds(supervisor, tree_key)
        assert not holds(supervisor, second_key)
        for secret in (tree_key, first_key, second_key):
            assert not holds(worker, secret)

    def test_a_session_handle_opens_only_its_own_session(self, app: Application) -> None:
        """session_supervisor(id) holds only that session's key: the SessionManager, the root, the
        registry and another session refuse it, and the tree's key does not open the session."""
        sessions = app.session_manager
        first, second = one_worker_session(sessions), one_worker_session(sessions)
        own = sessions.session_supervisor(first)
        other = sessions.session_supervisor(second)

        assert [child.id for child in own.which_children()] == ["w"]
        assert key_of(own) == session_key(key_of(app.supervisor), sessions, first)
        for target in (other, sessions.supervisor, app.supervisor):
            with pytest.raises(AuthenticationError):
                SupervisorHandle(target._address, own._authkey, target.path).which_children()
        with pytest.raises(AuthenticationError):
            RegistryClient(sessions._registry.address, own._authkey, 0.5).snapshot()
        with pytest.raises(AuthenticationError):
            SupervisorHandle(own._address, app.supervisor._authkey, own.path).which_children()
        assert [child.id for child in other.which_children()] == ["w"]

    def test_a_session_handle_works_in_an_application_nested_in_a_tree(self, start_tree: Any) -> None:
        """In an Application nested in a tree, a session's handle holds the key of that session's
        path in the tree and opens it; the tree's key does not open the session."""
        handle = start_tree([Application.child_spec("app")])
        sessions = Application.session_manager_in(handle, "app")
        session_id = one_worker_session(sessions)
        own = sessions.session_supervisor(session_id)

        assert sessions.supervisor.path == "root/app/session_manager"
        assert key_of(own) == session_key(key_of(handle), sessions, session_id)
        assert [child.id for child in own.which_children()] == ["w"]
        with pytest.raises(AuthenticationError):
            SupervisorHandle(own._address, handle._authkey, own.path).which_children()
        assert not holds(worker_pid(sessions, session_id), key_of(handle))

    def test_a_worker_uses_only_the_handle_it_is_given(self, app: Application, events: EventSink) -> None:
        """A worker given its session's handle uses it, cannot open the SessionManager with it, and
        holds that key alone; a sibling started after it, given nothing, holds no key."""
        sessions = app.session_manager
        session_id = one_worker_session(sessions)
        own = sessions.session_supervisor(session_id)
        user = ChildSpec(
            "user",
            use_the_given_handle,
            args=(own, sessions.supervisor._address, events.path, "user"),
            start_mode=StartMode.NOTIFY,
        )
        user_pid = own.start_child(user)
        bystander_pid = own.start_child(ChildSpec("bystander", sleep_forever))
        tree_key, own_key = key_of(app.supervisor), key_of(own)

        # The worker listed its session (itself still starting) through the handle it was given.
        assert events.next() == ("children", ("w", "user"), user_pid)
        assert events.next() == ("elsewhere", "AuthenticationError", user_pid)
        assert holds(user_pid, own_key)
        assert not holds(user_pid, tree_key)
        for secret in (tree_key, own_key):
            assert not holds(bystander_pid, secret)


SECRET_NAME = "SUPERVISOR_TEST_SECRET"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """A variable of the caller's environment that must not reach a tree started with ``env=``."""
    value = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_NAME, value)
    return value


def environ_of(pid: int) -> dict[str, str]:
    """The initial environment block of *pid*, as the kernel shows it."""
    with open(f"/proc/{pid}/environ", "rb") as block:
        entries = [entry.decode() for entry in block.read().split(b"\0") if entry]
    return dict(entry.split("=", 1) for entry in entries)


class TestEnvironment:
    def test_the_tree_inherits_the_callers_environment_by_default(self, start_tree: Any, secret: str) -> None:
        """With env=None (the default), the root and its workers start with the caller's environment."""
        handle = start_tree([ChildSpec("a", sleep_forever)], env=None)
        worker = handle.which_children()[0].pid
        assert worker is not None

        assert environ_of(handle.pid)[SECRET_NAME] == secret
        assert environ_of(worker)[SECRET_NAME] == secret

    def test_env_is_exactly_the_environment_of_every_process_of_an_application(
        self, secret: str, events: EventSink
    ) -> None:
        """Application(env=...): root, registry, SessionManager, SessionSupervisor and worker have exactly
        that environment block, and a worker's os.environ has nothing of the caller's."""
        env = {"ONLY": "this", "LANG": "C"}
        with Application(env=env) as app:
            sessions = app.session_manager
            probe = ChildSpec(
                "probe",
                report_isolation,
                args=(events.path, "probe", SECRET_NAME),
                start_mode=StartMode.NOTIFY,
            )
            session_id = sessions.create_session(children=[probe])
            kind, (_, state), _ = events.next()
            tree = {
                app.supervisor.pid,
                sessions.get_session_pid(session_id),
                worker_pid(sessions, session_id, "probe"),
                *(child.pid for child in app.supervisor.which_children() if child.pid is not None),
            }

            assert len(tree) == 5
            for pid in tree:
                assert environ_of(pid) == env
            assert (kind, state["variable"]) == ("isolation", None)

    def test_a_workers_os_environ_is_exactly_env(
        self, start_tree: Any, secret: str, events: EventSink
    ) -> None:
        """Supervisor.start(env=...): a worker's os.environ holds those variables and nothing else."""
        probe = ChildSpec(
            "probe", report_isolation, args=(events.path, "probe", SECRET_NAME), start_mode=StartMode.NOTIFY
        )
        start_tree([probe], env={"ONLY": "this"})
        kind, (key, state), _ = events.next()

        assert (kind, key, state["variable"]) == ("isolation", "probe", None)

    def test_nothing_of_the_callers_environment_reaches_the_trees_memory(
        self, start_tree: Any, secret: str
    ) -> None:
        """With env=..., the caller's secret is nowhere in the memory of the root or of a worker."""
        handle = start_tree([ChildSpec("a", sleep_forever)], env={"ONLY": "this"})
        worker = handle.which_children()[0].pid
        assert worker is not None

        assert not holds(handle.pid, secret.encode())
        assert not holds(worker, secret.encode())
        assert holds(os.getpid(), secret.encode())  # the scan finds it where it is

    @pytest.mark.parametrize(
        ("env", "error", "message"),
        [
            ({"A=B": "x"}, ValueError, "'env' names"),
            ({"A\0": "x"}, ValueError, "'env' names"),
            ({"": "x"}, ValueError, "'env' names"),
            ({"A": "x\0y"}, ValueError, "'env' values"),
            ({1: "x"}, TypeError, "'env' names"),
            ({"A": 1}, TypeError, "'env' values"),
            (["A=1"], TypeError, "'env' must be a mapping"),
        ],
    )
    def test_a_bad_env_is_rejected_by_name_and_nothing_starts(
        self, env: Any, error: type[Exception], message: str
    ) -> None:
        """Supervisor.start and Application reject a bad env at the caller, naming it; no process starts."""
        before = {entry.pid for entry in descendants(os.getpid())}
        with pytest.raises(error, match=message):
            Supervisor.start([ChildSpec("a", sleep_forever)], env=env)
        with pytest.raises(error, match=message):
            Application(env=env)
        assert {entry.pid for entry in descendants(os.getpid())} == before
