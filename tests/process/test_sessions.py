"""
The session layer through its public API: Application → SessionManager → SessionSupervisor → workers.

Pids come from the children themselves (an :class:`EventSink`) and from the registry; what must be
gone is checked in the process table (``process_table``, ``wait_gone`` on pidfds). A death the
SessionManager must notice is made definite by waiting on the dead process's pidfd and then making
one call through the SessionManager: its loop handles the deaths it sees in a turn before the
requests, so the call returns after the registry was updated. ``HANG_TIMEOUT`` only guards against
hangs; nothing here measures speed.
"""

from __future__ import annotations

import datetime
import os
import pickle
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from supervisor import (
    Application,
    ChildRunningError,
    ChildSpec,
    ChildSummary,
    ChildType,
    RegistryUnavailableError,
    Restart,
    SessionInfo,
    SessionManagerHandle,
    SessionNotFoundError,
    SessionStatus,
    Shutdown,
    StartError,
    StartMode,
    Strategy,
)
from supervisor.sessions.registry_writer import RegistryWriter
from supervisor.testing import descendants, process_table, wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    crash_before_ready,
    hold_cleanup_until_sigusr1,
    notify_then_sleep,
    report_then_sleep,
    return_at_once,
)
from tests.session_children import (
    allocate_beyond_limit,
    client_round,
    create_and_terminate,
    open_gate,
    report_isolation,
    report_parent_then_crash,
    stop_at_gate,
    use_sessions,
    wait_for_gate,
)

from .helpers import handled_deaths

_fork = multiprocess.get_context("fork")


def worker(events: EventSink, key: str) -> ChildSpec:
    """A NOTIFY child that reports ``started`` (then ready) and ``stopping`` when stopped."""
    return ChildSpec(key, report_then_sleep, args=(events.path, key), start_mode=StartMode.NOTIFY)


def quiet_worker(child_id: str = "worker") -> ChildSpec:
    return ChildSpec(child_id, notify_then_sleep, start_mode=StartMode.NOTIFY)


def child_pid(app: Application, child_id: str) -> int:
    pid = {info.id: info.pid for info in app.supervisor.which_children()}[child_id]
    assert pid is not None
    return pid


def restarted(sessions: SessionManagerHandle, session_id: str) -> None:
    """
    Return once the session's pending restart (queued before this call) has finished.

    A request about the session is queued behind the session's own jobs; ``restart_child`` on a running
    session refuses with ChildRunningError, which is all this needs.
    """
    with pytest.raises(ChildRunningError):
        sessions.supervisor.restart_child(session_id)


def session_ids(sessions: SessionManagerHandle) -> set[str]:
    return {info.session_id for info in sessions.list_sessions()}


def manager_children(sessions: SessionManagerHandle) -> set[str]:
    return {info.id for info in sessions.supervisor.which_children()}


def alive(pids: list[int]) -> list[int]:
    table = process_table()
    return [pid for pid in pids if pid in table and table[pid].state != "Z"]


# ---------------------------------------------------------------------- the tree


class TestTree:
    def test_application_is_usable_as_a_child_spec(self, start_tree: Any) -> None:
        """An Application nested in a user's own tree serves sessions through session_manager_in."""
        tree = start_tree([quiet_worker("mine"), Application.child_spec("app")])
        assert [info.id for info in tree.which_children()] == ["mine", "app"]
        sessions = Application.session_manager_in(tree, "app")
        session_id = sessions.create_session(children=[quiet_worker()], metadata={"in": "user tree"})
        info = sessions.get_session_info(session_id)
        assert (info.status, info.metadata) == (SessionStatus.ACTIVE, {"in": "user tree"})
        assert info.pid is not None
        nested = tree.child_supervisor("app")
        assert [c.id for c in nested.which_children()] == ["registry", "session_manager"]
        sessions.terminate_session(session_id)
        assert sessions.list_sessions() == []
        assert alive([info.pid]) == []

    def test_session_manager_starts_with_its_registry(self, app: Application) -> None:
        """The root's children are the registry server, then the SessionManager, both running."""
        children = app.supervisor.which_children()

        assert [info.id for info in children] == ["registry", "session_manager"]
        assert all(info.pid is not None for info in children)
        assert [info.type for info in children] == [ChildType.WORKER, ChildType.SUPERVISOR]

    def test_session_manager_is_in_the_applications_tree(self, app: Application) -> None:
        """The SessionManager and the registry are child processes of the Application's root supervisor."""
        table = process_table()

        for child_id in ("registry", "session_manager"):
            assert app.supervisor.pid == table[child_pid(app, child_id)].ppid

    def test_a_new_application_has_no_sessions(self, app: Application) -> None:
        """The registry starts published and empty."""
        assert app.session_manager.list_sessions() == []
        assert set() == manager_children(app.session_manager)

    def test_session_supervisor_is_a_child_of_the_session_manager(
        self, events: EventSink, app: Application
    ) -> None:
        """SessionManager → SessionSupervisor → worker, as real parent links in the process table."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[worker(events, "w")])
        worker_pid = events.expect("started", "w")
        table = process_table()

        session_pid = sessions.get_session_pid(session_id)
        assert child_pid(app, "session_manager") == table[session_pid].ppid
        assert session_pid == table[worker_pid].ppid


# ---------------------------------------------------------------------- create_session


BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"bogus": 1}, TypeError, "bogus"),
    ({"children": "worker"}, TypeError, "children"),
    ({"children": ["worker"]}, TypeError, "children"),
    ({"children": [quiet_worker("a"), quiet_worker("a")]}, ValueError, "children"),
    ({"strategy": "one_for_one"}, TypeError, "strategy"),
    ({"max_restarts": -1}, ValueError, "max_restarts"),
    ({"max_seconds": 0}, ValueError, "max_seconds"),
    ({"metadata": threading.Lock()}, TypeError, "metadata"),
    ({"restart": "permanent"}, TypeError, "restart"),
    ({"cwd": 3}, TypeError, "cwd"),
    ({"cwd": "/no/such/directory"}, ValueError, "cwd"),
    ({"env": {"A": 1}}, TypeError, "env"),
    ({"env": ["A=1"]}, TypeError, "env"),
    ({"max_memory_bytes": 0}, ValueError, "max_memory_bytes"),
    ({"max_cpu_seconds": True}, TypeError, "max_cpu_seconds"),
    ({"max_open_files": -5}, ValueError, "max_open_files"),
    ({"max_open_files": "many"}, TypeError, "max_open_files"),
]


class TestCreateSession:
    def test_ids_are_unique_uuid4_strings(self, app: Application) -> None:
        """Each session gets a new UUID4, in its canonical string form."""
        sessions = app.session_manager

        ids = [sessions.create_session() for _ in range(5)]

        assert len(set(ids)) == 5
        for session_id in ids:
            assert uuid.UUID(session_id).version == 4
            assert str(uuid.UUID(session_id)) == session_id

    def test_a_created_session_is_in_the_registry(self, events: EventSink, app: Application) -> None:
        """Once create_session returns, the entry is ACTIVE with metadata, children summary and UTC time."""
        sessions = app.session_manager
        before = datetime.datetime.now(datetime.timezone.utc)

        session_id = sessions.create_session(
            children=[worker(events, "a"), worker(events, "b")], metadata={"task": "refactor"}
        )

        after = datetime.datetime.now(datetime.timezone.utc)
        pids = {key: events.expect("started", key) for key in ("a", "b")}
        info = sessions.get_session_info(session_id)
        assert session_id == info.session_id
        assert SessionStatus.ACTIVE is info.status
        assert info.metadata == {"task": "refactor"}
        assert (ChildSummary("a", pids["a"]), ChildSummary("b", pids["b"])) == info.children
        assert info.restarts == 0
        assert datetime.timezone.utc == info.created_at.tzinfo
        assert before <= info.created_at <= after
        assert info.pid is not None and [info.pid] == alive([info.pid])
        assert {session_id} == manager_children(sessions)

    def test_session_supervisor_uses_the_given_flags(self, events: EventSink, app: Application) -> None:
        """strategy reaches the SessionSupervisor: one_for_all restarts the bystander too."""
        sessions = app.session_manager
        session_id = sessions.create_session(
            children=[worker(events, "a"), worker(events, "b")], strategy=Strategy.ONE_FOR_ALL
        )
        first = {key: events.expect("started", key) for key in ("a", "b")}

        os.kill(first["a"], signal.SIGKILL)

        again = events.expect_all("started", ["a", "b"])
        assert not set(again.values()) & set(first.values())
        assert session_id in session_ids(sessions)

    @pytest.mark.parametrize(("options", "error", "name"), BAD_OPTIONS)
    def test_bad_option_raises_naming_it_and_creates_nothing(
        self, app: Application, options: dict[str, Any], error: type[Exception], name: str
    ) -> None:
        """An unknown or invalid option raises TypeError/ValueError naming it; no entry, no process."""
        sessions = app.session_manager
        existing = sessions.create_session(children=[quiet_worker()])
        registry_before = sessions.list_sessions()
        processes_before = {entry.pid for entry in descendants(os.getpid())}

        with pytest.raises(error, match=name):
            sessions.create_session(**options)

        assert registry_before == sessions.list_sessions()
        assert {existing} == manager_children(sessions)
        assert processes_before == {entry.pid for entry in descendants(os.getpid())}

    def test_child_start_failure_raises_with_remote_traceback_and_leaves_nothing(
        self, events: EventSink, app: Application
    ) -> None:
        """A child that fails to start makes create_session raise StartError ending in its exception."""
        sessions = app.session_manager
        processes_before = {entry.pid for entry in descendants(os.getpid())}
        failing = ChildSpec("bad", crash_before_ready, args=("no luck today",), start_mode=StartMode.NOTIFY)

        with pytest.raises(StartError) as raised:
            sessions.create_session(children=[worker(events, "good"), failing])

        good_pid = events.expect("started", "good")
        chain: list[BaseException] = []
        cause: BaseException | None = raised.value
        while cause is not None:
            chain.append(cause)
            cause = cause.__cause__
        assert isinstance(chain[-1], RuntimeError)
        assert "no luck today" in str(chain[-1])
        remote_frames = [frame.name for frame in _traceback_frames(chain[-1])]
        assert "crash_before_ready" in remote_frames
        assert alive([good_pid]) == []
        assert sessions.list_sessions() == []
        assert set() == manager_children(sessions)
        assert processes_before == {entry.pid for entry in descendants(os.getpid())}

    def test_a_session_of_children_that_all_exit_at_once_is_still_created(self, app: Application) -> None:
        """A temporary child that returns at once does not fail the session's start."""
        sessions = app.session_manager
        done = ChildSpec("once", return_at_once, restart=Restart.TEMPORARY)

        session_id = sessions.create_session(children=[done])

        assert session_id in session_ids(sessions)


def _traceback_frames(error: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(error.__traceback__))


# ---------------------------------------------------------------------- terminate, list, look up


class TestTerminateSession:
    def test_terminate_stops_the_sessions_processes_and_removes_its_entry(
        self, events: EventSink, app: Application
    ) -> None:
        """Its workers are stopped by their shutdown spec; every process is gone when it returns."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[worker(events, "a"), worker(events, "b")])
        pids = [events.expect("started", key) for key in ("a", "b")]
        pids.append(sessions.get_session_pid(session_id))

        sessions.terminate_session(session_id)

        assert alive(pids) == []
        events.expect_all("stopping", ["a", "b"])
        assert set() == session_ids(sessions)
        assert set() == manager_children(sessions)
        with pytest.raises(SessionNotFoundError):
            sessions.get_session_info(session_id)

    def test_terminate_leaves_other_sessions_alone(self, events: EventSink, app: Application) -> None:
        """Only the terminated session's processes stop."""
        sessions = app.session_manager
        doomed = sessions.create_session(children=[worker(events, "doomed")])
        kept = sessions.create_session(children=[worker(events, "kept")])
        kept_pids = [events.expect("started", "kept"), sessions.get_session_pid(kept)]

        sessions.terminate_session(doomed)

        assert kept_pids == alive(kept_pids)
        assert {kept} == session_ids(sessions)
        assert SessionStatus.ACTIVE is sessions.get_session_info(kept).status

    @pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.PERMANENT])
    def test_terminate_forgets_a_restartable_session(self, app: Application, restart: Restart) -> None:
        """A TRANSIENT or PERMANENT session is forgotten too: its id is unknown afterwards."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[quiet_worker()], restart=restart)

        sessions.terminate_session(session_id)

        assert set() == manager_children(sessions)
        with pytest.raises(SessionNotFoundError):
            sessions.terminate_session(session_id)

    def test_status_is_terminating_while_the_session_stops(
        self, events: EventSink, app: Application, tmp_path: Path
    ) -> None:
        """While its children stop, the entry says TERMINATING; once terminate returns, it is gone."""
        sessions = app.session_manager
        gate = str(tmp_path / "gate.sock")
        holder = ChildSpec(
            "holder",
            stop_at_gate,
            args=(events.path, "holder", gate),
            start_mode=StartMode.NOTIFY,
            shutdown=Shutdown.INFINITY,
        )
        session_id = sessions.create_session(children=[holder])
        holder_pid = events.expect("started", "holder")
        terminator = threading.Thread(target=sessions.terminate_session, args=(session_id,))
        terminator.start()
        try:
            events.expect("stopping", "holder")

            assert SessionStatus.TERMINATING is sessions.get_session_info(session_id).status
            assert terminator.is_alive()
        finally:
            open_gate(gate)
            terminator.join(HANG_TIMEOUT)
        assert not terminator.is_alive()
        assert alive([holder_pid]) == []
        assert set() == session_ids(sessions)

    def test_terminating_a_session_still_starting_stops_it_without_waiting_for_its_start(
        self, events: EventSink, app: Application, tmp_path: Path
    ) -> None:
        """terminate_session on an INITIALIZING session stops it; its create_session raises StartError."""
        sessions = app.session_manager
        gate = str(tmp_path / "gate.sock")
        never_ready = ChildSpec(
            "never", wait_for_gate, args=(events.path, "never", gate), start_mode=StartMode.NOTIFY
        )
        outcome: list[BaseException | str] = []

        def create() -> None:
            try:
                outcome.append(sessions.create_session(children=[worker(events, "first"), never_ready]))
            except BaseException as error:
                outcome.append(error)

        creator = threading.Thread(target=create)
        creator.start()
        first_pid = events.expect("started", "first")
        never_pid = events.expect("waiting", "never")
        (starting,) = sessions.list_sessions()
        assert SessionStatus.INITIALIZING is starting.status

        sessions.terminate_session(starting.session_id)

        creator.join(HANG_TIMEOUT)
        assert not creator.is_alive()
        assert alive([first_pid, never_pid, starting.pid or 0]) == []
        events.expect("stopping", "first")
        assert len(outcome) == 1 and isinstance(outcome[0], StartError)
        assert sessions.list_sessions() == []
        assert set() == manager_children(sessions)
        with pytest.raises(SessionNotFoundError):
            sessions.terminate_session(starting.session_id)


LOOKUPS = ["terminate_session", "get_session_pid", "get_session_info"]


class TestLookup:
    def test_list_sessions_returns_every_live_session(self, app: Application) -> None:
        """list_sessions has each live session exactly once, oldest first."""
        sessions = app.session_manager
        ids = [sessions.create_session(metadata=n) for n in range(4)]

        listed = sessions.list_sessions()

        assert ids == [info.session_id for info in listed]
        assert [info.metadata for info in listed] == [0, 1, 2, 3]
        assert all(isinstance(info, SessionInfo) for info in listed)
        sessions.terminate_session(ids[1])
        assert [ids[0], ids[2], ids[3]] == [info.session_id for info in sessions.list_sessions()]

    def test_get_session_pid_and_info_find_a_session_by_id(self, app: Application) -> None:
        """Each id leads to its own entry and SessionSupervisor pid."""
        sessions = app.session_manager
        ids = [sessions.create_session(metadata=n) for n in range(3)]
        manager_pid = child_pid(app, "session_manager")
        table = process_table()

        for n, session_id in enumerate(ids):
            info = sessions.get_session_info(session_id)
            assert session_id == info.session_id
            assert n == info.metadata
            assert info.pid == sessions.get_session_pid(session_id)
            assert manager_pid == table[info.pid].ppid
        assert len({sessions.get_session_pid(session_id) for session_id in ids}) == 3

    @pytest.mark.parametrize("call", LOOKUPS)
    def test_unknown_id_raises_session_not_found_naming_it(self, app: Application, call: str) -> None:
        """An id that never existed raises SessionNotFoundError, a LookupError, with the id."""
        sessions = app.session_manager
        sessions.create_session()
        unknown = str(uuid.uuid4())

        with pytest.raises(SessionNotFoundError) as raised:
            getattr(sessions, call)(unknown)

        assert isinstance(raised.value, LookupError)
        assert unknown == raised.value.session_id
        assert unknown in str(raised.value)

    @pytest.mark.parametrize("call", LOOKUPS)
    def test_terminated_id_raises_session_not_found(self, app: Application, call: str) -> None:
        """Once terminated, a session's id is unknown to every call."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[quiet_worker()])
        sessions.terminate_session(session_id)

        with pytest.raises(SessionNotFoundError) as raised:
            getattr(sessions, call)(session_id)

        assert session_id == raised.value.session_id

    @pytest.mark.parametrize("call", LOOKUPS)
    def test_non_string_id_raises_type_error(self, app: Application, call: str) -> None:
        """A session id must be a str."""
        with pytest.raises(TypeError, match="session_id"):
            getattr(app.session_manager, call)(42)


# ---------------------------------------------------------------------- cleanup by monitors


class TestCleanup:
    def test_killed_session_leaves_the_registry(self, events: EventSink, app: Application) -> None:
        """SIGKILL of a SessionSupervisor: its workers die too and its entry is removed."""
        sessions = app.session_manager
        victim = sessions.create_session(children=[worker(events, "victim")])
        other = sessions.create_session(children=[worker(events, "other")])
        victim_worker = events.expect("started", "victim")
        other_pids = [events.expect("started", "other"), sessions.get_session_pid(other)]
        victim_pid = sessions.get_session_pid(victim)

        os.kill(victim_pid, signal.SIGKILL)

        assert wait_gone([victim_pid, victim_worker], HANG_TIMEOUT) == []
        handled_deaths(sessions)
        assert {other} == session_ids(sessions)
        assert {other} == manager_children(sessions)
        assert other_pids == alive(other_pids)
        with pytest.raises(SessionNotFoundError):
            sessions.get_session_pid(victim)

    def test_session_that_gives_up_after_too_many_restarts_is_cleaned_up(
        self, events: EventSink, app: Application
    ) -> None:
        """A child that keeps crashing exceeds the session's intensity; the session leaves the registry."""
        sessions = app.session_manager
        crasher = ChildSpec("crasher", report_parent_then_crash, args=(events.path, "crasher"))

        session_id = sessions.create_session(children=[crasher], max_restarts=2, max_seconds=60)

        session_pid = _expect_parent(events, "crasher")
        for _ in range(2):
            assert session_pid == _expect_parent(events, "crasher")
        assert wait_gone([session_pid], HANG_TIMEOUT) == []
        handled_deaths(sessions)
        assert session_id not in session_ids(sessions)
        assert set() == manager_children(sessions)

    @pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.PERMANENT])
    def test_restartable_session_is_restarted_under_the_same_id(
        self, events: EventSink, app: Application, restart: Restart
    ) -> None:
        """A killed TRANSIENT/PERMANENT session comes back under its id, restarts counted, ACTIVE again."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[worker(events, "w")], restart=restart, metadata="kept")
        first_worker = events.expect("started", "w")
        first = sessions.get_session_info(session_id)
        assert first.pid is not None

        os.kill(first.pid, signal.SIGKILL)

        assert wait_gone([first.pid, first_worker], HANG_TIMEOUT) == []
        second_worker = events.expect("started", "w")
        restarted(sessions, session_id)
        second = sessions.get_session_info(session_id)
        assert SessionStatus.ACTIVE is second.status
        assert second.restarts == 1
        assert second.metadata == "kept"
        assert first.created_at == second.created_at
        assert second.pid is not None and second.pid != first.pid
        assert (ChildSummary("w", second_worker),) == second.children
        assert [session_id] == [info.session_id for info in sessions.list_sessions()]

    def test_a_session_whose_restart_a_stopping_manager_cancels_leaves_the_registry_at_once(
        self, events: EventSink
    ) -> None:
        """A SessionManager that gives up removes the entry of the session it will not restart."""
        with Application(max_restarts=0) as app:
            sessions = app.session_manager
            holder = ChildSpec(
                "holder",
                hold_cleanup_until_sigusr1,
                args=(events.path, "holder"),
                start_mode=StartMode.NOTIFY,
                shutdown=Shutdown.INFINITY,
            )
            sessions.create_session(children=[holder])
            victim = sessions.create_session(children=[quiet_worker()], restart=Restart.PERMANENT)
            events.expect("started", "holder")

            os.kill(sessions.get_session_pid(victim), signal.SIGKILL)
            # The manager gave up (intensity 0) and stops the holder, which waits for the test.
            holder_pid = events.expect("stopping", "holder")
            handled_deaths(sessions)  # a reply from the manager: its registry writes are applied
            listed = session_ids(sessions)
            os.kill(holder_pid, signal.SIGUSR1)

            assert victim not in listed


# ---------------------------------------------------------------------- concurrency


class TestConcurrency:
    def test_pipelined_registry_writes_never_deadlock(self, app: Application) -> None:
        """Thousands of pipelined writes with no read in between (as in a mass stop) all land."""
        registry = app.session_manager._registry  # for its address and key
        writer = RegistryWriter(registry.address, registry.authkey)  # the SessionManager's writer API
        writer.connect_now(HANG_TIMEOUT)
        big = "x" * 2000  # large requests fill the socket buffers sooner, as a real deadlock would
        try:
            for n in range(3000):
                writer.put_later(f"key-{n}", big)
            writer.flush(HANG_TIMEOUT)
            assert registry.get("key-2999") == big
            for n in range(3000):
                writer.delete_later(f"key-{n}")
            writer.flush(HANG_TIMEOUT)
            assert registry.get("key-0") is None
        finally:
            writer.close()

    def test_creates_and_terminates_from_four_processes_and_four_threads(
        self, events: EventSink, app: Application
    ) -> None:
        """Eight clients at once: every id unique, and the registry exactly the sessions left alive."""
        sessions = app.session_manager
        count = 3
        processes = [
            _fork.Process(
                target=create_and_terminate,
                args=(pickle.loads(pickle.dumps(sessions)), events.path, f"process-{n}", count),
            )
            for n in range(4)
        ]
        for process in processes:
            process.start()
        results: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        failures: list[BaseException] = []

        def thread_client(key: str) -> None:
            try:
                results[key] = client_round(sessions, count)
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=thread_client, args=(f"thread-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for _ in processes:
            kind, payload, _pid = events.next()
            assert kind == "done", payload
            key, created, terminated = payload
            results[key] = (created, terminated)
        for thread in threads:
            thread.join(HANG_TIMEOUT)
        for process in processes:
            process.join(HANG_TIMEOUT)

        assert failures == []
        assert [process.exitcode for process in processes] == [0] * 4
        created_ids = [sid for created, _ in results.values() for sid in created]
        terminated_ids = {sid for _, terminated in results.values() for sid in terminated}
        assert 8 * count == len(created_ids) == len(set(created_ids))
        live = set(created_ids) - terminated_ids
        assert live == session_ids(sessions)
        assert live == manager_children(sessions)
        assert all(info.status is SessionStatus.ACTIVE for info in sessions.list_sessions())

    def test_slow_starting_session_does_not_block_another_creation(
        self, events: EventSink, app: Application, tmp_path: Path
    ) -> None:
        """While one session waits in its start, another is created, listed ACTIVE, and terminated."""
        sessions = app.session_manager
        gate = str(tmp_path / "gate.sock")
        slow_spec = ChildSpec(
            "slow", wait_for_gate, args=(events.path, "slow", gate), start_mode=StartMode.NOTIFY
        )
        created: list[str] = []
        slow_thread = threading.Thread(
            target=lambda: created.append(sessions.create_session(children=[slow_spec]))
        )
        slow_thread.start()
        try:
            events.expect("waiting", "slow")

            fast = sessions.create_session(children=[worker(events, "fast")])

            assert slow_thread.is_alive()
            statuses = {info.session_id: info.status for info in sessions.list_sessions()}
            slow = next(sid for sid in statuses if sid != fast)
            assert {fast: SessionStatus.ACTIVE, slow: SessionStatus.INITIALIZING} == statuses
            sessions.terminate_session(fast)
            assert slow_thread.is_alive()
            assert {slow} == session_ids(sessions)
        finally:
            open_gate(gate)
            slow_thread.join(HANG_TIMEOUT)
        assert [slow] == created
        assert SessionStatus.ACTIVE is sessions.get_session_info(slow).status


# ---------------------------------------------------------------------- crashes of the session layer


class TestSessionLayerCrashes:
    def test_killed_session_manager_is_restarted_without_its_sessions(
        self, events: EventSink, app: Application
    ) -> None:
        """Its sessions die with it (no orphans) and the registry holds none of them once it is back."""
        sessions = app.session_manager
        ids = [sessions.create_session(children=[worker(events, key)]) for key in ("a", "b")]
        pids = [events.expect("started", key) for key in ("a", "b")]
        pids.extend(sessions.get_session_pid(session_id) for session_id in ids)
        manager_pid = child_pid(app, "session_manager")

        os.kill(manager_pid, signal.SIGKILL)

        assert wait_gone([manager_pid, *pids], HANG_TIMEOUT) == []
        _root_settled(app)
        assert child_pid(app, "session_manager") != manager_pid
        # A fresh handle: an old handle's cached connection to the dead incarnation fails its next call
        # once with SupervisorGoneError (reported against handle.py).
        sessions = app.session_manager
        assert sessions.list_sessions() == []
        assert set() == manager_children(sessions)
        for session_id in ids:
            with pytest.raises(SessionNotFoundError):
                sessions.get_session_info(session_id)
        again = sessions.create_session(children=[quiet_worker()])
        assert {again} == session_ids(sessions)

    def test_killed_registry_server_is_republished_with_the_same_sessions(
        self, events: EventSink, app: Application
    ) -> None:
        """The sessions survive with the same pids; list_sessions returns them all again."""
        sessions = app.session_manager
        ids = [
            sessions.create_session(children=[worker(events, key)], metadata=key) for key in ("a", "b", "c")
        ]
        worker_pids = [events.expect("started", key) for key in ("a", "b", "c")]
        before = {info.session_id: info for info in sessions.list_sessions()}
        registry_pid = child_pid(app, "registry")

        os.kill(registry_pid, signal.SIGKILL)

        assert wait_gone([registry_pid], HANG_TIMEOUT) == []
        after = {info.session_id: info for info in sessions.list_sessions()}
        assert before == after
        assert worker_pids == alive(worker_pids)
        assert child_pid(app, "registry") != registry_pid
        sessions.terminate_session(ids[0])
        added = sessions.create_session(metadata="d")
        assert {ids[1], ids[2], added} == session_ids(sessions)
        assert sessions.get_session_info(added).metadata == "d"

    def test_a_fresh_handle_reads_the_republished_registry(self, app: Application) -> None:
        """A handle made after the registry restarted (a new process's view) sees every session."""
        sessions = app.session_manager
        ids = {sessions.create_session() for _ in range(3)}
        registry_pid = child_pid(app, "registry")

        os.kill(registry_pid, signal.SIGKILL)

        assert wait_gone([registry_pid], HANG_TIMEOUT) == []
        fresh = pickle.loads(pickle.dumps(sessions))
        assert ids == session_ids(fresh)

    def test_readers_get_a_clear_error_while_the_registry_is_down(self) -> None:
        """With the registry server stopped, reads raise RegistryUnavailableError after their bound."""
        with Application(registry_timeout=0.5) as app:
            sessions = app.session_manager
            session_id = sessions.create_session(children=[quiet_worker()])
            app.supervisor.terminate_child("registry")

            with pytest.raises(RegistryUnavailableError):
                sessions.list_sessions()
            with pytest.raises(RegistryUnavailableError):
                sessions.get_session_info(session_id)

            app.supervisor.restart_child("registry")
            # The SessionManager retries on a growing pause while the server is away, so give this
            # read a bound longer than that pause.
            _, args = sessions.__reduce__()
            patient = SessionManagerHandle(*args[:3], HANG_TIMEOUT)
            assert {session_id} == session_ids(patient)


def _root_settled(app: Application) -> None:
    """Return once the root supervisor has handled the exits it could see before this call."""
    from supervisor import ChildNotFoundError

    with pytest.raises(ChildNotFoundError):
        app.supervisor.terminate_child("no-such-child-barrier")


# ---------------------------------------------------------------------- from inside a session


class TestHandleInsideSession:
    def test_a_session_worker_creates_lists_and_terminates_another_session(
        self, events: EventSink, app: Application
    ) -> None:
        """The pickled handle in a worker's args works from that worker's process."""
        sessions = app.session_manager
        inner_spec = ChildSpec("client", use_sessions, args=(sessions, events.path, "client"))

        outer = sessions.create_session(children=[inner_spec])

        kind, inner, client_pid = events.next()
        assert kind == "created"
        assert inner != outer
        assert sessions.get_session_pid(outer) == process_table()[client_pid].ppid
        assert ("listed", (outer, inner)) == events.next()[:2]
        assert ("terminated", inner) == events.next()[:2]
        assert ("not_found", inner) == events.next()[:2]
        assert {outer} == session_ids(sessions)


# ---------------------------------------------------------------------- isolation and limits


class TestIsolation:
    def test_session_over_its_memory_limit_dies_alone_and_is_cleaned_up(
        self, events: EventSink, app: Application
    ) -> None:
        """A worker allocating past max_memory_bytes fails; its session gives up; the others run on."""
        sessions = app.session_manager
        bystander = sessions.create_session(children=[worker(events, "bystander")])
        bystander_pids = [events.expect("started", "bystander"), sessions.get_session_pid(bystander)]
        limit = 1 << 30
        hog = ChildSpec("hog", allocate_beyond_limit, args=(events.path, "hog", 4 * limit))

        hog_session = sessions.create_session(children=[hog], max_memory_bytes=limit, max_restarts=0)

        hog_parent = _expect_parent(events, "hog")
        events.expect("memory_error", "hog")
        assert wait_gone([hog_parent], HANG_TIMEOUT) == []
        handled_deaths(sessions)
        assert {bystander} == session_ids(sessions)
        assert {bystander} == manager_children(sessions)
        assert bystander_pids == alive(bystander_pids)
        assert hog_session not in session_ids(sessions)

    def test_cwd_env_and_limits_reach_the_sessions_workers(
        self, events: EventSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """cwd and env replace the inherited ones; resource limits apply; a session without them inherits."""
        monkeypatch.setenv("SESSION_TEST_MARK", "inherited")
        with Application() as app:
            sessions = app.session_manager
            probe = ChildSpec(
                "probe",
                report_isolation,
                args=(events.path, "isolated", "SESSION_TEST_MARK"),
                start_mode=StartMode.NOTIFY,
            )
            sessions.create_session(
                children=[probe],
                cwd=str(tmp_path),
                env={"SESSION_TEST_MARK": "own", "PATH": os.environ.get("PATH", "")},
                max_open_files=64,
                max_cpu_seconds=1000,
                max_memory_bytes=4 << 30,
            )
            isolated = events.next()[1][1]
            plain_probe = ChildSpec(
                "probe",
                report_isolation,
                args=(events.path, "plain", "SESSION_TEST_MARK"),
                start_mode=StartMode.NOTIFY,
            )
            sessions.create_session(children=[plain_probe])
            plain = events.next()[1][1]

        assert str(tmp_path) == isolated["cwd"]
        assert isolated["variable"] == "own"
        assert isolated["limits"] == {"RLIMIT_AS": 4 << 30, "RLIMIT_CPU": 1000, "RLIMIT_NOFILE": 64}
        assert os.getcwd() == plain["cwd"]
        assert plain["variable"] == "inherited"
        assert plain["limits"]["RLIMIT_NOFILE"] != 64

    def test_each_sessions_processes_are_in_their_own_process_groups(
        self, events: EventSink, app: Application
    ) -> None:
        """A session's processes lead their own groups, apart from the manager's, the test's and others'."""
        sessions = app.session_manager
        groups: dict[str, set[int]] = {}
        for key in ("one", "two"):
            probe = ChildSpec(
                "probe", report_isolation, args=(events.path, key, "X"), start_mode=StartMode.NOTIFY
            )
            session_id = sessions.create_session(children=[probe])
            state = events.next()[1][1]
            session_pid = sessions.get_session_pid(session_id)
            assert session_pid == state["ppid"]
            assert session_pid == os.getpgid(session_pid)
            groups[key] = {os.getpgid(session_pid), state["pgid"]}
        outside = {os.getpgid(0), os.getpgid(child_pid(app, "session_manager"))}

        assert not groups["one"] & groups["two"]
        assert not (groups["one"] | groups["two"]) & outside


def _expect_parent(events: EventSink, key: str) -> int:
    """Wait for ``started`` from a child that reports ``(key, parent pid)``; return the parent pid."""
    while True:
        kind, payload, _pid = events.next()
        if kind == "started" and isinstance(payload, tuple) and payload[0] == key:
            parent: int = payload[1]
            return parent
