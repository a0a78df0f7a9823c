"""Restart types against the ways a child can end: which exits restart it, and which forget it."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from supervisor import ChildNotFoundError, ChildSpec, Restart, StartMode, SupervisorHandle
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


@attrs.frozen
class Ended:
    """The tree a, x, c once x ended as *how* and the supervisor handled it; *old* has the pids before."""

    handle: SupervisorHandle
    events: EventSink
    log_file: LogFile
    old: dict[str, int]
    restart: Restart
    how: str


def end_x_once(start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, restart: Restart, how: str):
    """Start a, x, c; let x end as *how*; return once the supervisor has handled it."""
    handle = start_tree(
        [worker(events, "a"), once(events, tmp_path, how, restart), worker(events, "c")],
        logging_config=log_file.config,
    )
    old = events.expect_all("started", "axc")
    assert wait_gone([old["x"]], HANG_TIMEOUT) == []
    settle(handle)
    return Ended(handle, events, log_file, old, restart, how)


def restarted(ended: Ended) -> None:
    """x runs again under a new pid, its siblings untouched, and its exit was logged as child_terminated."""
    new = ended.events.expect("started", "x")
    assert pids(ended.handle) == {"a": ended.old["a"], "x": new, "c": ended.old["c"]}
    assert new != ended.old["x"]
    assert (
        f"child_terminated: child 'x' ({ended.restart.value}, worker) reason={DESCRIPTIONS[ended.how]}"
        in ended.log_file.read()
    )


def forgotten(ended: Ended) -> None:
    """No restart, nothing logged, x's spec forgotten."""
    assert pids(ended.handle) == {"a": ended.old["a"], "c": ended.old["c"]}
    assert "child_terminated" not in ended.log_file.read()


def kept(ended: Ended) -> None:
    """No restart, nothing logged, x kept with pid None."""
    assert pids(ended.handle) == {"a": ended.old["a"], "x": None, "c": ended.old["c"]}
    assert ended.handle.count_children().specs == 3
    assert "child_terminated" not in ended.log_file.read()


def logged_and_forgotten(ended: Ended) -> None:
    """Logged as child_terminated with its reason; no restart, x's spec forgotten."""
    assert pids(ended.handle) == {"a": ended.old["a"], "c": ended.old["c"]}
    assert (
        f"child_terminated: child 'x' (temporary, worker) reason={DESCRIPTIONS[ended.how]}"
        in ended.log_file.read()
    )
    with pytest.raises(ChildNotFoundError):
        ended.handle.restart_child("x")


SCENARIOS = [
    # (OTP's scenario, x's restart type, the ways x ends, what must follow)
    # A permanent child is restarted after a normal exit too, logged as child_terminated.
    ("permanent_normal", Restart.PERMANENT, NORMAL, restarted),
    # A temporary child's normal exit: no restart, nothing logged, its spec forgotten.
    ("temporary_normal", Restart.TEMPORARY, NORMAL, forgotten),
    # A permanent child is restarted after a shutdown exit too, logged as child_terminated.
    ("permanent_shutdown", Restart.PERMANENT, SHUTDOWN, restarted),
    # A transient child's shutdown exit is normal for it: no restart, nothing logged, kept with pid None.
    ("transient_shutdown", Restart.TRANSIENT, SHUTDOWN, kept),
    # A temporary child's shutdown exit: no restart, nothing logged, its spec forgotten.
    ("temporary_shutdown", Restart.TEMPORARY, SHUTDOWN, forgotten),
    # A permanent child's crash: logged as child_terminated with its reason, then restarted.
    ("permanent_abnormal", Restart.PERMANENT, ABNORMAL, restarted),
    # A transient child's crash: logged as child_terminated with its reason, then restarted.
    ("transient_abnormal", Restart.TRANSIENT, ABNORMAL, restarted),
    # A temporary child's crash is logged as child_terminated with its reason; no restart, spec forgotten.
    ("temporary_abnormal", Restart.TEMPORARY, ABNORMAL, logged_and_forgotten),
]


@pytest.mark.parametrize(
    ("restart", "how", "outcome"),
    [
        pytest.param(restart, how, outcome, id=f"{scenario}-{how}")
        for scenario, restart, hows, outcome in SCENARIOS
        for how in hows
    ],
)
def test_restart_type_scenario(
    start_tree,
    events: EventSink,
    log_file: LogFile,
    tmp_path: Path,
    restart: Restart,
    how: str,
    outcome: Callable[[Ended], None],
) -> None:
    """x ends once as *how*; what follows is what the OTP scenario named in the test id checks."""
    ended = end_x_once(start_tree, events, log_file, tmp_path, restart, how)

    outcome(ended)
