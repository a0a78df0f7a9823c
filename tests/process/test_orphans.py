"""
No orphans, no zombies: checked in the process table, never through the handle.

Each test learns the tree's pids from the children themselves (an :class:`EventSink`) and from
``which_children``, kills something with SIGKILL, then waits on pidfds (``wait_gone``) for the
processes that must go. ``HANG_TIMEOUT`` only guards against hangs; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import ChildSpec, Restart, Supervisor, SupervisorHandle
from supervisor.testing import ProcessEntry, descendants, process_table, wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    emit,
    fork_grandchild_then_sleep,
    report_grandchildren_death_signals,
    report_then_sleep,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def popen_grandchild_then_sleep(path: str, key: Any) -> None:
    """
    Start a sleeping Python with subprocess (fork + exec, no at-fork hooks), report it, then sleep.

    The grandchild has no parent-death signal: only the SIGKILL of the worker's process group, sent
    when the worker is reaped, can end it.
    """
    grandchild = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"])
    emit(path, "grandchild", (key, grandchild.pid))
    emit(path, "started", key)
    while True:
        time.sleep(3600)


def worker(events: EventSink, key: str) -> ChildSpec:
    return ChildSpec(key, report_then_sleep, args=(events.path, key))


def three_level_tree(events: EventSink) -> list[ChildSpec]:
    """root -> [w1, sub -> [w2, subsub -> [w3, w4]]]; every worker reports ``started``."""
    subsub = ChildSpec.supervisor("subsub", [worker(events, "w3"), worker(events, "w4")])
    sub = ChildSpec.supervisor("sub", [worker(events, "w2"), subsub])
    return [worker(events, "w1"), sub]


def collect(events: EventSink, wanted: list[tuple[str, Any]]) -> dict[tuple[str, Any], tuple[Any, int]]:
    """
    Block until a report of each ``(kind, key)`` in *wanted* came, in any order; map it to (key, pid).

    A key of None matches any key. Reports from different processes arrive in no set order.
    """
    found: dict[tuple[str, Any], tuple[Any, int]] = {}
    deadline = time.monotonic() + HANG_TIMEOUT
    while len(found) < len(wanted):
        kind, key, pid = events.next(max(0.001, deadline - time.monotonic()))
        for want in wanted:
            if want not in found and want[0] == kind and want[1] in (None, key):
                found[want] = (key, pid)
                break
    return found


def expect_started(events: EventSink, keys: list[str]) -> dict[str, int]:
    """Block until each of *keys* has reported ``started``, in any order; return their pids."""
    found = collect(events, [("started", key) for key in keys])
    return {key: found["started", key][1] for key in keys}


def child_pid(handle: SupervisorHandle, child_id: str) -> int:
    pid = next(c.pid for c in handle.which_children() if c.id == child_id)
    assert pid is not None, f"child {child_id!r} of {handle.path} is not running"
    return pid


def live_descendants(pid: int) -> set[int]:
    return {e.pid for e in descendants(pid) if e.state != "Z"}


def zombies(pids: set[int]) -> list[ProcessEntry]:
    """Zombies among this test process's descendants and among *pids*, read from ``/proc``."""
    table = process_table()
    mine = {e.pid for e in descendants(os.getpid(), table)}
    return [e for e in table.values() if e.state == "Z" and (e.pid in mine or e.pid in pids)]


def settle_zombies(handles: list[SupervisorHandle], pids: set[int]) -> list[ProcessEntry]:
    """
    Return the zombies left once the supervisors have had their turns; ideally none.

    A terminated orphan is reaped by the subreaper it was reparented to, in a later turn of that
    supervisor's loop. Each round blocks on a call to every supervisor, which makes each of them
    run a turn; the deadline only guards against a supervisor that never reaps.
    """
    deadline = time.monotonic() + HANG_TIMEOUT
    while True:
        found = zombies(pids)
        if not found or time.monotonic() >= deadline:
            return found
        for handle in handles:
            handle.which_children()


@pytest.fixture
def tree(events: EventSink, start_tree: Any) -> Iterator[dict[str, Any]]:
    """A running three-level tree: its handles and every pid, supervisors included."""
    root = start_tree(three_level_tree(events))
    pids = expect_started(events, ["w1", "w2", "w3", "w4"])
    sub = root.child_supervisor("sub")
    subsub = sub.child_supervisor("subsub")
    assert root.pid is not None
    pids["root"] = root.pid
    pids["sub"] = child_pid(root, "sub")
    pids["subsub"] = child_pid(sub, "subsub")
    yield {"root": root, "sub": sub, "subsub": subsub, "pids": pids}


# What terminates with each supervisor of the three-level tree.
DOOMED = {
    "root": ["root", "w1", "sub", "w2", "subsub", "w3", "w4"],
    "sub": ["sub", "w2", "subsub", "w3", "w4"],
    "subsub": ["subsub", "w3", "w4"],
}


class TestSupervisorKilled:
    """SIGKILL of a supervisor at each depth: everything below it terminates, and a parent restarts it."""

    def test_root_killed_takes_the_whole_tree(self, tree: dict[str, Any]) -> None:
        """Every process of the tree terminates after the root is SIGKILLed."""
        pids = tree["pids"]
        os.kill(pids["root"], signal.SIGKILL)
        assert wait_gone([pids[name] for name in DOOMED["root"]], HANG_TIMEOUT) == []

    @pytest.mark.parametrize("depth", ["sub", "subsub"])
    def test_nested_supervisor_killed_takes_its_subtree_and_is_restarted(
        self, tree: dict[str, Any], events: EventSink, depth: str
    ) -> None:
        """The subtree below a SIGKILLed nested supervisor terminates; its parent restarts all of it."""
        pids = tree["pids"]
        doomed = DOOMED[depth]
        os.kill(pids[depth], signal.SIGKILL)
        assert wait_gone([pids[name] for name in doomed], HANG_TIMEOUT) == []

        new = expect_started(events, [name for name in doomed if name.startswith("w")])
        # A handle's open connection to a killed supervisor fails once; take fresh handles.
        root = tree["root"]
        sub = root.child_supervisor("sub")
        subsub = sub.child_supervisor("subsub")
        new["sub"] = child_pid(root, "sub")
        new["subsub"] = child_pid(sub, "subsub")
        for name in doomed:
            assert pids[name] != new[name], f"{name} was not restarted"
        current = {**pids, **{name: new[name] for name in doomed}}

        assert settle_zombies([root, sub, subsub], set(pids.values())) == []
        # Consistent: the handles and the process table agree, and nothing else lives in the tree.
        assert current["w1"] == child_pid(root, "w1")
        assert current["w2"] == child_pid(sub, "w2")
        assert [current["w3"], current["w4"]] == [c.pid for c in subsub.which_children()]
        expected = {pid for name, pid in current.items() if name != "root"}
        assert expected == live_descendants(current["root"])

    def test_no_zombie_after_nested_supervisor_killed(self, tree: dict[str, Any], events: EventSink) -> None:
        """Once the killed subtree is gone and restarted, no process of the tree or the test is a zombie."""
        pids = tree["pids"]
        doomed = DOOMED["sub"]
        os.kill(pids["sub"], signal.SIGKILL)
        assert wait_gone([pids[name] for name in doomed], HANG_TIMEOUT) == []
        expect_started(events, ["w2", "w3", "w4"])
        root = tree["root"]
        sub = root.child_supervisor("sub")
        assert settle_zombies([root, sub, sub.child_supervisor("subsub")], set(pids.values())) == []
        assert [e for e in descendants(pids["root"]) if e.state == "Z"] == []


STARTER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from supervisor import ChildSpec, Supervisor
    from tests.children import emit, report_then_sleep

    path = {path!r}
    handle = Supervisor.start([
        ChildSpec("w1", report_then_sleep, args=(path, "w1")),
        ChildSpec.supervisor("sub", [ChildSpec("w2", report_then_sleep, args=(path, "w2"))]),
    ])
    sub = next(c.pid for c in handle.which_children() if c.id == "sub")
    emit(path, "tree", (handle.pid, sub))
    if {block!r}:
        sys.stdin.read()
    """
)


@contextlib.contextmanager
def starter_process(events: EventSink, block: bool) -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """
    A separate process that starts a tree and never stops it; yields it and the tree's pids.

    With *block*, the starter waits on its stdin until killed; otherwise it returns (exits normally)
    right after reporting. It is killed and reaped on the way out, whatever happened.
    """
    code = STARTER.format(repo=REPO, path=events.path, block=block)
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, cwd=REPO) as starter:
        try:
            found = collect(events, [("started", "w1"), ("started", "w2"), ("tree", None)])
            root, sub = found["tree", None][0]
            yield starter, [root, sub, found["started", "w1"][1], found["started", "w2"][1]]
        finally:
            starter.kill()
            starter.wait()


class TestStarterGone:
    """The tree never outlives the process that started it."""

    def test_starter_killed_takes_the_tree(self, events: EventSink) -> None:
        """SIGKILL of the starter: the root notices through its pidfd and the whole tree terminates."""
        with starter_process(events, block=True) as (starter, pids):
            starter.kill()
            starter.wait()
        assert wait_gone(pids, HANG_TIMEOUT) == []

    def test_starter_exiting_without_stop_takes_the_tree(self, events: EventSink) -> None:
        """A starter that returns without calling stop() exits normally, and the whole tree terminates."""
        with starter_process(events, block=False) as (starter, pids):
            assert starter.wait(HANG_TIMEOUT) == 0
        assert wait_gone(pids, HANG_TIMEOUT) == []


class TestGrandchildren:
    """A SIGKILLed worker is restarted at once, and what it forked does not outlive it."""

    @pytest.mark.parametrize(
        "start",
        [fork_grandchild_then_sleep, popen_grandchild_then_sleep],
        ids=["os.fork", "subprocess.Popen"],
    )
    def test_worker_killed_is_restarted_and_its_grandchild_dies(
        self, start_tree: Any, events: EventSink, start: Any
    ) -> None:
        """The worker's replacement reports ``started``; the grandchild terminates (process group kill)."""
        start_tree([ChildSpec("w", start, args=(events.path, "w"), restart=Restart.PERMANENT)])
        worker_pid, grandchild = worker_and_grandchild(events)

        os.kill(worker_pid, signal.SIGKILL)
        new_pid, new_grandchild = worker_and_grandchild(events)
        assert new_pid != worker_pid
        assert new_grandchild != grandchild
        assert wait_gone([worker_pid, grandchild], HANG_TIMEOUT) == []

    def test_only_grandchildren_forked_from_the_main_thread_get_the_parent_death_signal(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """A worker's fork from its main thread arms PR_SET_PDEATHSIG; a fork from another thread does not."""
        start_tree([ChildSpec("w", report_grandchildren_death_signals, args=(events.path, "w"))])

        found = dict(events.next()[1] for _ in range(2))

        assert found == {"thread": 0, "main": int(signal.SIGKILL)}


def worker_and_grandchild(events: EventSink) -> tuple[int, int]:
    """
    The pids in the next ``started`` and ``grandchild`` reports, which arrive in either order.

    fork_grandchild_then_sleep's grandchild reports itself; popen_grandchild_then_sleep's worker
    reports ``(key, grandchild pid)``.
    """
    found = collect(events, [("started", "w"), ("grandchild", None)])
    key, pid = found["grandchild", None]
    return found["started", "w"][1], int(key[1]) if isinstance(key, tuple) else pid


class TestNoHelpers:
    """The package starts no helper process (resource tracker, forkserver) that outlives the tree."""

    def test_only_the_root_is_a_new_child_and_nothing_is_left_after_stop(self, events: EventSink) -> None:
        """While the tree runs, the root is this process's only new child; after stop, nothing is new."""
        before = {e.pid for e in descendants(os.getpid())}
        handle = Supervisor.start([worker(events, "w1"), ChildSpec.supervisor("sub", [worker(events, "w2")])])
        try:
            pids = expect_started(events, ["w1", "w2"])
            table = process_table()
            new_children = {e.pid for e in table.values() if e.ppid == os.getpid() and e.pid not in before}
            assert {handle.pid} == new_children
            sub = child_pid(handle, "sub")
            assert {pids["w1"], sub, pids["w2"]} == {e.pid for e in descendants(handle.pid or 0, table)}
        finally:
            handle.stop(timeout=HANG_TIMEOUT)
        assert [e for e in descendants(os.getpid()) if e.pid not in before] == []
        assert wait_gone([*pids.values(), sub], HANG_TIMEOUT) == []
