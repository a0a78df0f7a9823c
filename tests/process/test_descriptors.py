"""
Descriptors in the process table: who holds what, and that nothing leaks.

Counts and identities come from ``/proc/<pid>/fd`` (a pipe or socket by its inode, a pidfd by the
``Pid:`` its ``fdinfo`` names), never from the handle. A forked child keeps only its own descriptors,
so a process's count does not depend on how many siblings or sessions exist and no session holds
another's pipes or pidfds. The leak tests are in the style of trio's ``test_for_leaking_fds``: each
long-lived process's count after many operations equals its count before.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import time
from typing import Any

import pytest

from supervisor import (
    Application,
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    Restart,
    SessionManagerHandle,
    StartError,
    StartMode,
    SupervisorHandle,
)
from supervisor._addresses import SESSION_MANAGER_ID
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, crash_before_ready, report_then_sleep, sleep_forever
from tests.descriptor_children import log_then_sleep, report_parent

from .helpers import log_config, settle

_O_CLOEXEC = 0o2000000


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _fd_numbers(pid: int) -> list[int]:
    return sorted(int(name) for name in os.listdir(f"/proc/{pid}/fd"))


def identities(pid: int) -> set[str]:
    """What *pid* holds above stderr: ``pipe:[inode]``, ``socket:[inode]``, ``pidfd:<target pid>``."""
    found: set[str] = set()
    for fd in _fd_numbers(pid):
        if fd < 3:
            continue
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
        if link == "anon_inode:[pidfd]":
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                target = next(line.split()[1] for line in info if line.startswith("Pid:"))
            found.add(f"pidfd:{target}")
        elif link.startswith(("pipe:", "socket:")):
            found.add(link)
    return found


def not_close_on_exec(pid: int) -> list[tuple[int, str]]:
    """The descriptors of *pid* above stderr that an exec would keep."""
    found = []
    for fd in _fd_numbers(pid):
        if fd < 3:
            continue
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            flags = next(int(line.split()[1], 8) for line in info if line.startswith("flags:"))
        if not flags & _O_CLOEXEC:
            found.append((fd, os.readlink(f"/proc/{pid}/fd/{fd}")))
    return found


def quiet_worker(key: str = "w") -> ChildSpec:
    return ChildSpec(key, sleep_forever)


def session_pids(sessions: SessionManagerHandle, session_id: str) -> list[int]:
    """The session's SessionSupervisor pid, then its workers' pids."""
    info = sessions.get_session_info(session_id)
    assert info.pid is not None
    return [info.pid, *(child.pid for child in info.children)]


def application_pids(app: Application) -> dict[str, int]:
    """The pids of the Application's long-lived processes: root, registry server, SessionManager."""
    pids = {info.id: info.pid for info in app.supervisor.which_children()}
    root = app.supervisor.pid
    assert root is not None and all(pid is not None for pid in pids.values())
    return {"root": root, **{key: pid for key, pid in pids.items() if pid is not None}}


def fresh(handle: SupervisorHandle) -> SupervisorHandle:
    """A copy of *handle* with no connection yet, as another process would have."""
    copy: SupervisorHandle = pickle.loads(pickle.dumps(handle))
    return copy


def silent_connection_closed(handle: SupervisorHandle) -> None:
    """Connect to *handle*'s supervisor and hang up without a word (a handshake never finished)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(handle._address)


def settle_twice(handle: SupervisorHandle) -> None:
    """
    Return once the supervisor has handled every hang-up it could see before this call.

    A connection closed before the first call is readable (EOF) in the turn that reads that call, or
    an earlier one; the second call is read in a later turn, after that turn has closed it.
    """
    settle(handle)
    settle(handle)


def count_once_down_to(pid: int, bound: int) -> int:
    """
    *pid*'s descriptor count once it is at most *bound*, or its count after ``HANG_TIMEOUT``.

    For the registry server only: its handler threads close a connection some time after the client
    hangs up, and nothing outside it can wait on that, so this polls, bounded.
    """
    deadline = time.monotonic() + HANG_TIMEOUT
    count = fd_count(pid)
    while count > bound and time.monotonic() < deadline:
        time.sleep(0.01)
        count = fd_count(pid)
    return count


# ---------------------------------------------------------------------- isolation


class TestSessionIsolation:
    def test_descriptor_counts_do_not_depend_on_the_number_of_sessions(self, app: Application) -> None:
        """A SessionSupervisor and a worker forked after ten sessions hold as many fds as the first ones."""
        sessions = app.session_manager
        first = session_pids(sessions, sessions.create_session(children=[quiet_worker()]))
        first_counts = [fd_count(pid) for pid in first]
        for _ in range(8):
            sessions.create_session(children=[quiet_worker()])

        last = session_pids(sessions, sessions.create_session(children=[quiet_worker()]))

        assert first_counts == [fd_count(pid) for pid in last]
        assert first_counts == [fd_count(pid) for pid in first]

    def test_no_process_holds_another_sessions_pipe_or_pidfd(self, app: Application) -> None:
        """Each pipe, socket and pidfd a session's processes hold is its own: no other session shares one."""
        sessions = app.session_manager
        members = {
            session_id: session_pids(sessions, session_id)
            for session_id in [
                sessions.create_session(children=[quiet_worker("a"), quiet_worker("b")]) for _ in range(3)
            ]
        }
        # A SessionSupervisor's parent sentinel is a pidfd of the SessionManager: its own, not a session's.
        sentinel = f"pidfd:{application_pids(app)[SESSION_MANAGER_ID]}"
        held = {
            session_id: set().union(*(identities(pid) for pid in pids)) - {sentinel}
            for session_id, pids in members.items()
        }

        for session_id, own in held.items():
            others = set().union(*(h for other, h in held.items() if other != session_id))
            assert set() == own & others
            own_pidfds = {f"pidfd:{pid}" for pid in members[session_id]}
            assert set() == {i for i in own if i.startswith("pidfd:")} - own_pidfds

    def test_a_worker_holds_only_its_own_descriptors(self, start_tree: Any) -> None:
        """A worker forked beside siblings holds stdio, its report pipe and multiprocess's parent pipe."""
        tree = start_tree([quiet_worker("a"), quiet_worker("b"), quiet_worker("c")])
        pids = [info.pid for info in tree.which_children()]

        for pid in pids:
            assert pid is not None
            assert {0, 1, 2} <= set(_fd_numbers(pid))
            assert fd_count(pid) == 5


class TestCloseOnExec:
    def test_every_process_of_the_tree_holds_only_close_on_exec_descriptors(self, app: Application) -> None:
        """Root, registry server, SessionManager, SessionSupervisor and worker: an exec keeps only stdio."""
        sessions = app.session_manager
        session_id = sessions.create_session(children=[quiet_worker()])
        pids = [*application_pids(app).values(), *session_pids(sessions, session_id)]

        for pid in pids:
            assert not_close_on_exec(pid) == []


class TestWhatAChildKeeps:
    def test_a_child_logs_through_the_handlers_its_supervisor_configured(
        self, events: EventSink, start_tree: Any, tmp_path: Any
    ) -> None:
        """The root's logging_config file handler still works in a worker and in a nested one's worker."""
        log_file = tmp_path / "tree.log"
        start_tree(
            [
                ChildSpec("top", log_then_sleep, args=(events.path, "top", "from the top worker")),
                ChildSpec.supervisor(
                    "sub",
                    [ChildSpec("deep", log_then_sleep, args=(events.path, "deep", "from the deep one"))],
                ),
            ],
            logging_config=log_config(log_file),
        )

        events.expect_all("logged", {"top", "deep"})

        text = log_file.read_text()
        assert "from the top worker" in text
        assert "from the deep one" in text

    def test_a_child_sees_its_supervisor_alive_through_multiprocess(
        self, events: EventSink, start_tree: Any
    ) -> None:
        """``multiprocess.parent_process()`` in a worker is its live supervisor (its sentinel was kept)."""
        tree = start_tree([ChildSpec("a", report_parent, args=(events.path, "a"))])

        _, (key, parent_pid, alive), _ = next(e for e in iter(events.next, None) if e[0] == "parent")

        assert ("a", tree.pid, True) == (key, parent_pid, alive)


# ---------------------------------------------------------------------- leaks


def _exercise(handle: SupervisorHandle) -> None:
    """Start, query, stop, restart, delete, fail to start, miss, and connect anew, through *handle*."""
    handle.start_child(quiet_worker("extra"))
    handle.which_children()
    handle.count_children()
    handle.terminate_child("extra")
    handle.restart_child("extra")
    handle.terminate_child("extra")
    handle.delete_child("extra")
    with pytest.raises(StartError):
        handle.start_child(ChildSpec("broken", crash_before_ready, start_mode=StartMode.NOTIFY))
    with pytest.raises(ChildNotFoundError):
        handle.terminate_child("nope")
    fresh(handle).which_children()
    silent_connection_closed(handle)


class TestNoLeaks:
    def test_supervisors_hold_as_many_descriptors_after_many_operations_as_before(
        self, events: EventSink, start_tree: Any
    ) -> None:
        """Root and nested supervisor: same fd count before and after rounds of every operation."""
        leaf = ChildSpec("leaf", report_then_sleep, args=(events.path, "leaf"), start_mode=StartMode.NOTIFY)
        tree = start_tree([quiet_worker("keeper"), ChildSpec.supervisor("sub", [leaf])])
        sub = tree.child_supervisor("sub")
        leaf_pid = events.expect("started", "leaf")
        pids = {info.id: info.pid for info in tree.which_children()}
        watched = {"root": tree.pid, "sub": pids["sub"], "keeper": pids["keeper"], "leaf": leaf_pid}
        settle_twice(tree)
        settle_twice(sub)
        before = {name: fd_count(pid) for name, pid in watched.items()}

        for _ in range(3):
            _exercise(tree)
            _exercise(sub)
            tree.child_supervisor("sub").which_children()
            os.kill(watched["leaf"], signal.SIGKILL)
            watched["leaf"] = events.expect("started", "leaf")
        settle_twice(tree)
        settle_twice(sub)

        assert before == {name: fd_count(pid) for name, pid in watched.items()}
        late = {
            "keeper": tree.start_child(quiet_worker("late")),
            "leaf": sub.start_child(quiet_worker("late")),
        }
        assert {name: before[name] for name in late} == {
            name: fd_count(pid) for name, pid in late.items() if pid is not None
        }

    def test_session_processes_hold_as_many_descriptors_after_many_operations_as_before(
        self, events: EventSink, app: Application
    ) -> None:
        """Root, registry, SessionManager, a SessionSupervisor, a worker: same fd counts after rounds."""
        sessions = app.session_manager
        kept_worker = ChildSpec(
            "kept", report_then_sleep, args=(events.path, "kept"), start_mode=StartMode.NOTIFY
        )
        kept = sessions.create_session(children=[kept_worker])
        kept_supervisor = sessions.session_supervisor(kept)
        watched = {
            **application_pids(app),
            "session": sessions.get_session_pid(kept),
            "worker": events.expect("started", "kept"),
        }
        sessions.list_sessions()
        settle_twice(app.supervisor)
        settle_twice(sessions.supervisor)
        settle_twice(kept_supervisor)
        before = {name: fd_count(pid) for name, pid in watched.items()}

        for _ in range(2):
            session_id = sessions.create_session(children=[quiet_worker()])
            sessions.get_session_info(session_id)
            sessions.session_supervisor(session_id).which_children()
            sessions.terminate_session(session_id)
            with pytest.raises(StartError):
                sessions.create_session(
                    children=[ChildSpec("broken", crash_before_ready, start_mode=StartMode.NOTIFY)]
                )
            restartable = sessions.create_session(children=[quiet_worker()], restart=Restart.PERMANENT)
            victim = sessions.get_session_pid(restartable)
            os.kill(victim, signal.SIGKILL)
            assert wait_gone([victim], HANG_TIMEOUT) == []
            with pytest.raises(ChildRunningError):
                sessions.supervisor.restart_child(restartable)  # queued behind its restart
            sessions.terminate_session(restartable)
            pickle.loads(pickle.dumps(sessions)).list_sessions()
            _exercise(kept_supervisor)
            os.kill(watched["worker"], signal.SIGKILL)
            watched["worker"] = events.expect("started", "kept")
        sessions.list_sessions()  # the copy's decref closed this process's registry connection: reopen it
        settle_twice(app.supervisor)
        settle_twice(sessions.supervisor)
        settle_twice(kept_supervisor)

        registry = before.pop("registry")
        assert count_once_down_to(watched.pop("registry"), registry) <= registry  # a transient may have gone
        assert before == {name: fd_count(pid) for name, pid in watched.items()}
        late = session_pids(sessions, sessions.create_session(children=[quiet_worker()]))
        assert before["worker"] == fd_count(late[1])
