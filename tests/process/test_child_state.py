"""
Child state as ``which_children`` shows it: STARTING, RUNNING, STOPPING, RESTARTING, STOPPED (BACKOFF is
in ``test_backoff.py``), with ``restarts``, ``last_exit`` and ``started_at``; and ``count_children().active``
counting RUNNING children only.

A slow start or stop is held by the child itself until the test sends it SIGUSR1, so each state is
observed while it certainly holds; the blocking call runs in a thread meanwhile.
"""

from __future__ import annotations

import datetime
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor import (
    ChildSpec,
    ChildState,
    ExitKind,
    StartMode,
    Strategy,
)
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    exit_once,
    hold_cleanup_until_sigusr1,
    ready_on_sigusr1,
)

from .conftest import LogFile
from .helpers import info_of, kill, kill_into_a_restart_loop, refusing, settle, worker


class Call:
    """A blocking handle call run in a thread; :meth:`result` joins it and returns or re-raises."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(function, *args))
        self.thread.start()

    def _run(self, function: Callable[..., Any], *args: Any) -> None:
        try:
            self.value = function(*args)
        except BaseException as error:  # handed to the test thread by result()
            self.error = error

    def result(self) -> Any:
        self.thread.join(HANG_TIMEOUT)
        assert not self.thread.is_alive(), "the call did not return"
        if self.error is not None:
            raise self.error
        return self.value


def slow_ready(events: EventSink, child_id: str) -> ChildSpec:
    """A NOTIFY child that reports ``started`` and becomes ready only on SIGUSR1."""
    return ChildSpec(child_id, ready_on_sigusr1, args=(events.path, child_id), start_mode=StartMode.NOTIFY)


class TestStarting:
    def test_a_notify_child_slow_to_become_ready_is_starting_and_not_active(
        self, start_tree, events: EventSink
    ) -> None:
        """Until it is ready the child is STARTING, shows its pid and start time, and is not active."""
        handle = start_tree([worker(events, "a")], Strategy.ONE_FOR_ONE)
        call = Call(handle.start_child, slow_ready(events, "slow"))
        pid = events.expect("started", "slow")

        starting = info_of(handle, "slow")
        counts = handle.count_children()
        os.kill(pid, signal.SIGUSR1)
        returned = call.result()
        running = info_of(handle, "slow")

        assert (starting.state, starting.pid, starting.restarting) == (ChildState.STARTING, pid, False)
        assert starting.started_at is not None
        assert (counts.specs, counts.active) == (2, 1)
        assert returned == pid
        assert (running.state, running.pid) == (ChildState.RUNNING, pid)
        assert handle.count_children().active == 2

    def test_a_restarted_child_is_starting_until_its_new_process_is_ready(
        self, start_tree, events: EventSink
    ) -> None:
        """After a crash the new process is STARTING and not active until ready; then RUNNING, counted."""
        handle = start_tree([], Strategy.ONE_FOR_ONE)
        call = Call(handle.start_child, slow_ready(events, "slow"))
        first = events.expect("started", "slow")
        os.kill(first, signal.SIGUSR1)
        call.result()

        kill(first)
        second = events.expect("started", "slow")
        starting = info_of(handle, "slow")
        active_while_starting = handle.count_children().active
        os.kill(second, signal.SIGUSR1)
        settle(handle)
        running = info_of(handle, "slow")

        assert (starting.state, starting.pid, starting.restarting) == (ChildState.STARTING, second, False)
        assert active_while_starting == 0
        assert (running.state, running.pid, running.restarts) == (ChildState.RUNNING, second, 1)
        assert running.last_exit is not None and running.last_exit.kind is ExitKind.KILLED
        assert handle.count_children().active == 1


class TestRunningAndStopped:
    def test_a_running_child_shows_its_start_time_in_utc_and_no_exit_yet(
        self, start_tree, events: EventSink
    ) -> None:
        """A RUNNING child has started_at (UTC, around its start), no restarts, no last exit, no retry_at."""
        before = datetime.datetime.now(datetime.timezone.utc)
        handle = start_tree([worker(events, "a")], Strategy.ONE_FOR_ONE)
        after = datetime.datetime.now(datetime.timezone.utc)

        info = info_of(handle, "a")

        assert info.state is ChildState.RUNNING
        assert info.started_at is not None and info.started_at.tzinfo is datetime.timezone.utc
        assert (
            before - datetime.timedelta(seconds=1) <= info.started_at <= after + datetime.timedelta(seconds=1)
        )
        assert (info.restarts, info.last_exit, info.retry_at) == (0, None, None)

    def test_a_terminated_child_is_stopped_with_its_last_exit(self, start_tree, events: EventSink) -> None:
        """After terminate_child: STOPPED, no pid or start time, last_exit shutdown, not restarted."""
        handle = start_tree([worker(events, "a"), worker(events, "b")], Strategy.ONE_FOR_ONE)

        handle.terminate_child("a")
        info = info_of(handle, "a")

        assert (info.state, info.pid, info.started_at, info.restarts) == (ChildState.STOPPED, None, None, 0)
        assert info.last_exit is not None and info.last_exit.kind is ExitKind.SHUTDOWN
        assert handle.count_children().active == 1

    def test_a_crash_counts_a_restart_and_keeps_its_exit_reason(
        self, start_tree, events: EventSink, tmp_path: Path
    ) -> None:
        """A child that raised is restarted: restarts 1, last_exit the exception, RUNNING again."""
        spec = ChildSpec("w", exit_once, args=("exception", str(tmp_path / "once"), events.path, "w"))
        handle = start_tree([spec], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")
        second = events.expect("started", "w")
        settle(handle)

        info = info_of(handle, "w")

        assert first != second
        assert (info.state, info.pid, info.restarts) == (ChildState.RUNNING, second, 1)
        assert info.last_exit is not None and info.last_exit.kind is ExitKind.EXCEPTION
        assert info.last_exit.type_name == "builtins.ValueError"


class TestStopping:
    def test_a_child_being_stopped_is_stopping_and_not_active(self, start_tree, events: EventSink) -> None:
        """While its cleanup runs the child is STOPPING with its pid; then STOPPED."""
        spec = ChildSpec(
            "slow", hold_cleanup_until_sigusr1, args=(events.path, "slow"), start_mode=StartMode.NOTIFY
        )
        handle = start_tree([spec, worker(events, "b")], Strategy.ONE_FOR_ONE)
        pid = events.expect("started", "slow")
        call = Call(handle.terminate_child, "slow")
        events.expect("stopping", "slow")

        stopping = info_of(handle, "slow")
        active = handle.count_children().active
        os.kill(pid, signal.SIGUSR1)
        call.result()

        assert (stopping.state, stopping.pid) == (ChildState.STOPPING, pid)
        assert active == 1
        assert info_of(handle, "slow").state is ChildState.STOPPED


def start_restart_loop(start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, strategy: Strategy):
    """a, x, c; x cannot start again once the marker exists; x is killed; returns once x is retried."""
    marker = tmp_path / "refuse"
    handle = start_tree(
        [worker(events, "a"), refusing(events, "x", marker), worker(events, "c")],
        strategy,
        max_restarts=10**9,
        max_seconds=60,
        logging_config=log_file.config,
    )
    started = events.expect_all("started", {"a", "x", "c"})
    kill_into_a_restart_loop(events, marker, started["x"], "x")
    return handle, marker


class TestRestarting:
    def test_count_restarting_children(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """OTP's count_restarting_children: a child in a failing restart loop is RESTARTING, not active."""
        handle, _ = start_restart_loop(start_tree, events, log_file, tmp_path, Strategy.ONE_FOR_ONE)

        states = {
            info.id: (info.state, info.restarting, info.pid is None) for info in handle.which_children()
        }
        counts = handle.count_children()

        assert states == {
            "a": (ChildState.RUNNING, False, False),
            "x": (ChildState.RESTARTING, True, True),
            "c": (ChildState.RUNNING, False, False),
        }
        assert (counts.specs, counts.active, counts.workers) == (3, 2, 3)

    def test_hanging_restart_loop_ends_stopped_by_terminate_child(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """OTP's hanging_restart_loop: terminate_child makes RESTARTING STOPPED; restart_child runs it."""
        handle, marker = start_restart_loop(start_tree, events, log_file, tmp_path, Strategy.ONE_FOR_ONE)

        handle.terminate_child("x")
        settle(handle)
        stopped = info_of(handle, "x")
        marker.unlink()
        pid = handle.restart_child("x")

        assert (stopped.state, stopped.restarting, stopped.restarts) == (ChildState.STOPPED, False, 1)
        assert stopped.last_exit is not None and stopped.last_exit.kind is ExitKind.EXCEPTION
        assert info_of(handle, "x").state is ChildState.RUNNING
        assert pid == events.expect("started", "x")

    def test_hanging_restart_loop_rest_for_one_leaves_the_later_child_stopped(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """Under rest_for_one, c waits in x's restart (RESTARTING, not OTP's restarting), then is STOPPED."""
        handle, _ = start_restart_loop(start_tree, events, log_file, tmp_path, Strategy.REST_FOR_ONE)

        during = {info.id: (info.state, info.restarting) for info in handle.which_children()}
        handle.terminate_child("x")
        settle(handle)
        after = {info.id: info.state for info in handle.which_children()}

        assert during == {
            "a": (ChildState.RUNNING, False),
            "x": (ChildState.RESTARTING, True),
            "c": (ChildState.RESTARTING, False),
        }
        assert after == {"a": ChildState.RUNNING, "x": ChildState.STOPPED, "c": ChildState.STOPPED}
        assert handle.count_children().active == 1
