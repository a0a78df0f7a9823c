"""
The waits of ``supervisor.testing``: ``wait_restarted``, ``wait_session_down``, ``wait_exited``.

Each returns when its event happens and leaves the state settled (the child RUNNING, the session out
of the registry), or raises the error that says why the event will not come.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    Application,
    Backoff,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildSpec,
    ChildState,
    Restart,
    SessionNotFoundError,
    SessionStatus,
    StartMode,
    Strategy,
    SupervisorGoneError,
)
from supervisor.testing import wait_exited, wait_restarted, wait_session_down
from supervisor.testing.children import exit_normally, wait_forever

from ..children import fail_if_marker

HANG = 60.0
"""The waits' timeout: reached only if the awaited event never comes."""


def kill(pid: int | None) -> int:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def test_wait_restarted_returns_the_running_restarted_pid(start_tree: Any) -> None:
    """After a SIGKILL, the new pid is returned once the child is RUNNING again; again and again."""
    tree = start_tree([ChildSpec("w", wait_forever)], max_restarts=10)
    for _ in range(3):
        old = kill(tree.which_child("w").pid)
        new = wait_restarted(tree, "w", old, timeout=HANG)
        info = tree.which_child("w")
        assert (info.pid, info.state) == (new, ChildState.RUNNING)
        assert new != old
        assert wait_restarted(tree, "w", old, timeout=HANG) == new  # already restarted: at once


def test_wait_restarted_waits_for_a_bystander_and_for_a_backoff(start_tree: Any) -> None:
    """A one_for_all bystander's restart, and a restart delayed by its backoff, are waited for."""
    backoff = Backoff(initial=0.3, jitter=0.0)
    tree = start_tree(
        [ChildSpec("a", wait_forever, backoff=backoff), ChildSpec("b", wait_forever)], Strategy.ONE_FOR_ALL
    )
    old_b = tree.which_child("b").pid
    kill(tree.which_child("a").pid)

    new_b = wait_restarted(tree, "b", old_b, timeout=HANG)

    assert tree.which_child("b").pid == new_b != old_b
    assert tree.which_child("a").state is ChildState.RUNNING  # started before b, in order


def test_wait_restarted_raises_when_the_child_will_not_run_again(start_tree: Any) -> None:
    """A transient child's normal exit: ChildNotRunningError; a temporary child's: ChildNotFoundError."""
    tree = start_tree([])
    transient = tree.start_child(ChildSpec("t", exit_normally, restart=Restart.TRANSIENT))
    temporary = tree.start_child(ChildSpec("tmp", wait_forever, restart=Restart.TEMPORARY))

    with pytest.raises(ChildNotRunningError, match="'t' of supervisor root is stopped") as stopped:
        wait_restarted(tree, "t", transient, timeout=HANG)
    assert stopped.value.child_id == "t"
    kill(temporary)
    with pytest.raises(ChildNotFoundError):
        wait_restarted(tree, "tmp", temporary, timeout=HANG)


def test_wait_restarted_raises_when_the_supervisor_gives_up(start_tree: Any, tmp_path: Path) -> None:
    """Restarts whose starts keep failing reach the intensity: SupervisorGoneError, not a timeout."""
    marker = tmp_path / "refuse"
    failing = ChildSpec("w", fail_if_marker, args=(str(marker),), start_mode=StartMode.NOTIFY)
    tree = start_tree([failing], max_restarts=2, max_seconds=60)
    marker.touch()
    old = kill(tree.which_child("w").pid)

    with pytest.raises(SupervisorGoneError):
        wait_restarted(tree, "w", old, timeout=HANG)
    assert tree.wait(timeout=HANG) is not None


def test_wait_restarted_times_out_when_nothing_happens(start_tree: Any) -> None:
    """A child that is never killed is never restarted: TimeoutError at the timeout."""
    tree = start_tree([ChildSpec("w", wait_forever)])
    pid = tree.which_child("w").pid
    with pytest.raises(TimeoutError, match=r"did not run again within 0\.2 s"):
        wait_restarted(tree, "w", pid, timeout=0.2)
    assert tree.which_child("w").pid == pid


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((1, 10, 1.0), TypeError),  # child id
        (("w", "10", 1.0), TypeError),  # old pid
        (("w", 0, 1.0), ValueError),
        (("w", 10, None), TypeError),  # unbounded
        (("w", 10, -1.0), ValueError),
    ],
)
def test_wait_restarted_checks_its_arguments(args: tuple[Any, ...], error: type[Exception]) -> None:
    """A bad argument is refused before anything is asked of the supervisor."""
    with pytest.raises(error):
        wait_restarted(None, *args)  # type: ignore[arg-type]


@pytest.fixture
def sessions() -> Any:
    with Application() as app:
        yield app.session_manager


def test_wait_session_down_returns_once_the_registry_agrees(sessions: Any) -> None:
    """A SIGKILLed temporary session: once the wait returns, the registry no longer lists it."""
    sid = sessions.create_session(children=[ChildSpec("w", wait_forever)])
    keep = sessions.create_session(children=[ChildSpec("w", wait_forever)])
    kill(sessions.get_session_pid(sid))

    wait_session_down(sessions, sid, timeout=HANG)

    with pytest.raises(SessionNotFoundError):
        sessions.get_session_info(sid)
    assert [info.session_id for info in sessions.list_sessions()] == [keep]
    wait_session_down(sessions, sid, timeout=HANG)  # gone already: at once


def test_wait_session_down_of_a_restartable_session(sessions: Any) -> None:
    """A transient session's killed process, given as *pid*, is waited for; the session stays listed."""
    sid = sessions.create_session(children=[ChildSpec("w", wait_forever)], restart=Restart.TRANSIENT)
    old = kill(sessions.get_session_pid(sid))

    wait_session_down(sessions, sid, timeout=HANG, pid=old)

    info = sessions.get_session_info(sid)
    assert info.status in (SessionStatus.INITIALIZING, SessionStatus.ACTIVE)
    assert info.pid != old


def test_wait_session_down_times_out_while_the_session_runs(sessions: Any) -> None:
    """A session nobody stops: TimeoutError at the timeout, the session untouched."""
    sid = sessions.create_session()
    with pytest.raises(TimeoutError, match=r"still runs after 0\.2 s"):
        wait_session_down(sessions, sid, timeout=0.2)
    assert sessions.get_session_info(sid).status is SessionStatus.ACTIVE


def test_wait_exited_waits_on_any_process() -> None:
    """A process that ends is waited for; a live one times out; one that is gone returns at once."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with pytest.raises(TimeoutError, match=f"process {child.pid} still runs"):
            wait_exited(child.pid, timeout=0.1)
        assert child.stdin is not None
        child.stdin.close()
        wait_exited(child.pid, timeout=HANG)
        assert child.poll() is not None  # exited: reaped at once
        wait_exited(child.pid, timeout=HANG)
    finally:
        child.kill()
        child.wait()
