"""Restart types against the ways a child can end: which exits restart it, and which forget it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from supervisor import ChildNotFoundError, ChildSpec, Restart, StartMode
from supervisor.testing import wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    Tracked,
    end_on_sigusr1,
    exit_once,
    grandchild_leaves_start,
    sleep_with,
)

from .conftest import LogFile
from .helpers import pids, settle, worker

CRASHES = [
    # (how the child ends, ExitReason.describe() of it, abnormal?)
    ("return", "normal", False),
    ("sys_exit_0", "normal", False),
    ("sys_exit_3", "exit code 3", True),
    ("exception", "exception builtins.ValueError: boom", True),
    ("sigkill", "killed (SIGKILL)", True),
    ("sigsegv", "signal SIGSEGV", True),
    ("sigterm", "shutdown", False),
    ("shutdown_exit", "shutdown('bye')", False),
    # A term that does not pickle travels as its repr; the reason is still shutdown.
    ("shutdown_exit_unpicklable", "shutdown('Unpicklable()')", False),
]


def once(events: EventSink, tmp_path: Path, how: str, restart: Restart) -> ChildSpec:
    """The child ``x`` that ends as *how* says the first time, and runs when restarted."""
    marker = str(tmp_path / "x.ended")
    return ChildSpec("x", exit_once, args=(how, marker, events.path, "x"), restart=restart)


@pytest.mark.parametrize("restart", list(Restart), ids=lambda r: r.value)
@pytest.mark.parametrize(("how", "description", "abnormal"), CRASHES, ids=[c[0] for c in CRASHES])
def test_exit_restarts_the_child_as_its_restart_type_says(
    start_tree,
    events: EventSink,
    log_file: LogFile,
    tmp_path: Path,
    restart: Restart,
    how: str,
    description: str,
    abnormal: bool,
) -> None:
    """Permanent always restarts, transient only after an abnormal exit, temporary never (forgotten)."""
    handle = start_tree(
        [worker(events, "a"), once(events, tmp_path, how, restart), worker(events, "c")],
        logging_config=log_file.config,
    )
    first = events.expect("started", "x")
    before = pids(handle)

    assert wait_gone([first], HANG_TIMEOUT) == []
    settle(handle)

    after = pids(handle)
    restarted = restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and abnormal)
    if restarted:
        second = events.expect("started", "x")
        assert second != first
        assert after["x"] == second
    elif restart is Restart.TEMPORARY:
        assert "x" not in after
    else:
        assert after["x"] is None
    assert (after["a"], after["c"]) == (before["a"], before["c"])
    report = f"child_terminated: child 'x' ({restart.value}, worker) reason={description}"
    if restarted or abnormal:
        assert report in log_file.read()
    else:
        assert "child_terminated" not in log_file.read()


class TestTemporary:
    def test_exited_temporary_child_is_forgotten(self, start_tree, events: EventSink, tmp_path: Path) -> None:
        """A temporary child that exited is unknown, and ``start_child`` with its spec works again."""
        spec = once(events, tmp_path, "exception", Restart.TEMPORARY)
        handle = start_tree([spec])
        first = events.expect("started", "x")
        assert wait_gone([first], HANG_TIMEOUT) == []
        settle(handle)

        with pytest.raises(ChildNotFoundError):
            handle.restart_child("x")
        with pytest.raises(ChildNotFoundError):
            handle.delete_child("x")
        pid = handle.start_child(spec)

        assert pid == events.expect("started", "x")
        assert pids(handle) == {"x": pid}

    def test_do_not_save_start_parameters_for_temporary_children(self, start_tree, events: EventSink) -> None:
        """The supervisor drops a running temporary child's args and kwargs (OTP never stores them)."""
        handle = start_tree([])
        spec = ChildSpec(
            "t",
            sleep_with,
            args=(Tracked(events.path, "args"),),
            kwargs={"extra": Tracked(events.path, "kwargs")},
            restart=Restart.TEMPORARY,
        )

        handle.start_child(spec)

        freed = set()
        while freed != {"args", "kwargs"}:
            kind, key, pid = events.next()
            if kind == "freed" and pid == handle.pid:
                freed.add(key)
        assert list(pids(handle)) == ["t"]

    def test_do_not_save_child_specs_for_temporary_children(self, start_tree, events: EventSink) -> None:
        """
        A temporary child's spec goes when it exits normally, with shutdown, abnormally, or is terminated
        through the API: not listed, not counted, unknown to restart_child, and its id free to start again.
        """
        handle = start_tree([worker(events, "a")])
        a = events.expect("started", "a")

        for how in ("return", "shutdown_exit", "exception", None):
            spec = ChildSpec(
                "t",
                end_on_sigusr1,
                args=(events.path, "t", how or "return"),
                restart=Restart.TEMPORARY,
                start_mode=StartMode.NOTIFY,
            )
            pid = handle.start_child(spec)
            assert pid is not None and pids(handle) == {"a": a, "t": pid}
            if how is None:
                handle.terminate_child("t")
            else:
                os.kill(pid, signal.SIGUSR1)
            assert wait_gone([pid], HANG_TIMEOUT) == []
            settle(handle)

            assert pids(handle) == {"a": a}, how
            assert handle.count_children().specs == 1
            for call in (handle.restart_child, handle.delete_child, handle.get_childspec):
                with pytest.raises(ChildNotFoundError):
                    call("t")

    def test_terminated_temporary_child_is_forgotten(self, start_tree, events: EventSink) -> None:
        """``terminate_child`` on a temporary child removes its spec."""
        handle = start_tree([worker(events, "a"), worker(events, "t", restart=Restart.TEMPORARY)])
        events.expect_all("started", {"a", "t"})

        handle.terminate_child("t")

        assert list(pids(handle)) == ["a"]
        assert handle.count_children().specs == 1


class TestTransient:
    def test_transient_child_after_a_normal_exit_can_be_restarted_by_hand(
        self, start_tree, events: EventSink, tmp_path: Path
    ) -> None:
        """A transient child that exited normally is kept, not running; ``restart_child`` starts it."""
        handle = start_tree([once(events, tmp_path, "return", Restart.TRANSIENT)])
        first = events.expect("started", "x")
        assert wait_gone([first], HANG_TIMEOUT) == []
        settle(handle)
        assert handle.count_children().active == 0

        pid = handle.restart_child("x")

        assert pid == events.expect("started", "x")
        assert pids(handle) == {"x": pid}


@pytest.mark.parametrize("how", ["return", "raise"])
def test_a_grandchild_leaving_the_start_function_cannot_report_its_parents_exit(
    start_tree, events: EventSink, log_file: LogFile, how: str
) -> None:
    """A worker's forked grandchild that returns or raises out of the start function sends no report."""
    spec = ChildSpec("w", grandchild_leaves_start, args=(events.path, "w", how), restart=Restart.TRANSIENT)
    handle = start_tree([spec], logging_config=log_file.config)
    first = events.expect("started", "w")

    os.kill(first, signal.SIGKILL)
    assert wait_gone([first], HANG_TIMEOUT) == []
    settle(handle)

    assert pids(handle)["w"] not in (None, first)
    assert events.expect("started", "w") != first
    text = log_file.read()
    assert "child_terminated: child 'w' (transient, worker) reason=killed (SIGKILL)" in text
    assert "ValueError" not in text


# --------------------------------------------------- supervisor_SUITE's permanent_*, transient_*, temporary_*
# Each scenario of section 1 of the reference, by name: the child ``x`` between two siblings ends once
# as OTP's reason would (normal: returns or exits 0; shutdown: SIGTERM from outside or ShutdownExit, OTP's
# ``shutdown`` and ``{shutdown, Term}``; abnormal: a raise or SIGKILL), and the test checks the outcome.

DESCRIPTIONS = {how: description for how, description, _ in CRASHES}
NORMAL = ["return", "sys_exit_0"]
SHUTDOWN = ["sigterm", "shutdown_exit"]
ABNORMAL = ["exception", "sigkill"]


def end_x_once(start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, restart: Restart, how: str):
    """Start a, x, c; let x end as *how*; return once the supervisor has handled it: (handle, old pids)."""
    handle = start_tree(
        [worker(events, "a"), once(events, tmp_path, how, restart), worker(events, "c")],
        logging_config=log_file.config,
    )
    old = events.expect_all("started", "axc")
    assert wait_gone([old["x"]], HANG_TIMEOUT) == []
    settle(handle)
    return handle, old


def assert_restarted(
    handle, events: EventSink, log_file: LogFile, old: dict[str, int], restart: Restart, how: str
):
    """x runs again under a new pid, its siblings untouched, and its exit was logged as child_terminated."""
    new = events.expect("started", "x")
    assert pids(handle) == {"a": old["a"], "x": new, "c": old["c"]}
    assert new != old["x"]
    assert (
        f"child_terminated: child 'x' ({restart.value}, worker) reason={DESCRIPTIONS[how]}" in log_file.read()
    )


@pytest.mark.parametrize("how", NORMAL)
def test_permanent_normal(start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str) -> None:
    """A permanent child is restarted after a normal exit too, logged as child_terminated."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.PERMANENT, how)

    assert_restarted(handle, events, log_file, old, Restart.PERMANENT, how)


@pytest.mark.parametrize("how", NORMAL)
def test_temporary_normal(start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str) -> None:
    """A temporary child's normal exit: no restart, nothing logged, its spec forgotten."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.TEMPORARY, how)

    assert pids(handle) == {"a": old["a"], "c": old["c"]}
    assert "child_terminated" not in log_file.read()


@pytest.mark.parametrize("how", SHUTDOWN)
def test_permanent_shutdown(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A permanent child is restarted after a shutdown exit too, logged as child_terminated."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.PERMANENT, how)

    assert_restarted(handle, events, log_file, old, Restart.PERMANENT, how)


@pytest.mark.parametrize("how", SHUTDOWN)
def test_transient_shutdown(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A transient child's shutdown exit is normal for it: no restart, nothing logged, kept with pid None."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.TRANSIENT, how)

    assert pids(handle) == {"a": old["a"], "x": None, "c": old["c"]}
    assert handle.count_children().specs == 3
    assert "child_terminated" not in log_file.read()


@pytest.mark.parametrize("how", SHUTDOWN)
def test_temporary_shutdown(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A temporary child's shutdown exit: no restart, nothing logged, its spec forgotten."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.TEMPORARY, how)

    assert pids(handle) == {"a": old["a"], "c": old["c"]}
    assert "child_terminated" not in log_file.read()


@pytest.mark.parametrize("how", ABNORMAL)
def test_permanent_abnormal(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A permanent child's crash: logged as child_terminated with its reason, then restarted."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.PERMANENT, how)

    assert_restarted(handle, events, log_file, old, Restart.PERMANENT, how)


@pytest.mark.parametrize("how", ABNORMAL)
def test_transient_abnormal(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A transient child's crash: logged as child_terminated with its reason, then restarted."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.TRANSIENT, how)

    assert_restarted(handle, events, log_file, old, Restart.TRANSIENT, how)


@pytest.mark.parametrize("how", ABNORMAL)
def test_temporary_abnormal(
    start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, how: str
) -> None:
    """A temporary child's crash is logged as child_terminated with its reason; no restart, spec forgotten."""
    handle, old = end_x_once(start_tree, events, log_file, tmp_path, Restart.TEMPORARY, how)

    assert pids(handle) == {"a": old["a"], "c": old["c"]}
    assert f"child_terminated: child 'x' (temporary, worker) reason={DESCRIPTIONS[how]}" in log_file.read()
    with pytest.raises(ChildNotFoundError):
        handle.restart_child("x")
