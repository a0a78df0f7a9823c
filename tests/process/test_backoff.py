"""
Restart backoff through the public API, with real processes.

Delays that must not pass during a test are an hour (``LONG``): a test that waited one out would hit
its timeout, so every assertion about such a wait is about state (BACKOFF, ``retry_at``), and the
calls that cut through it (``terminate_child``, ``restart_child``, ``stop``) are shown to return.
Delays that must pass are short (``SHORT``), and the test waits for the event that follows, never
for a duration. ``reset_after`` is tested with an injectable clock (``tests.backoff_children``).
"""

from __future__ import annotations

import datetime
import os
import signal
from pathlib import Path

import pytest

from supervisor import (
    Application,
    Backoff,
    ChildNotRunningError,
    ChildSpec,
    ChildState,
    ChildType,
    DuplicateChildError,
    ExitKind,
    Restart,
    SessionStatus,
    StartMode,
    Strategy,
    SupervisorHandle,
    SupervisorSpec,
)
from supervisor._entrypoint import EntryPoint
from supervisor.testing import wait_gone
from tests.backoff_children import advance
from tests.children import HANG_TIMEOUT, EventSink, report_then_sleep

from .conftest import LogFile
from .helpers import info_of, kill, refusing, settle, sofo_settle, worker

LONG = Backoff(initial=0.0, base=3600.0, factor=2.0, max=7200.0, jitter=0.0)
"""The second consecutive restart waits an hour: never reached in a test."""
SHORT = Backoff(initial=0.0, base=0.2, factor=1.0, max=0.2, jitter=0.0)
"""The second consecutive restart waits 0.2 s: passed while the test waits for the restart's event."""


def crash_twice(handle: SupervisorHandle, events: EventSink, child_id: str, first: int) -> int:
    """Kill *child_id* (pid *first*); wait for its immediate restart; kill that; return its pid."""
    kill(first)
    second = events.expect("started", child_id)
    settle(handle)
    kill(second)
    settle(handle)
    return second


class TestBackoffState:
    def test_the_second_consecutive_crash_waits_in_backoff_with_retry_at(
        self, start_tree, events: EventSink
    ) -> None:
        """The first restart is at once (initial 0); after the second crash: BACKOFF, no pid, retry_at set."""
        handle = start_tree([worker(events, "w", backoff=LONG), worker(events, "b")], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")
        events.expect("started", "b")
        before = datetime.datetime.now(datetime.timezone.utc)

        crash_twice(handle, events, "w", first)
        info = info_of(handle, "w")
        counts = handle.count_children()

        assert (info.state, info.pid, info.started_at, info.restarting) == (
            ChildState.BACKOFF,
            None,
            None,
            False,
        )
        assert info.retry_at is not None
        assert before + datetime.timedelta(minutes=30) < info.retry_at < before + datetime.timedelta(hours=2)
        assert info.restarts == 2
        assert info.last_exit is not None and info.last_exit.kind is ExitKind.KILLED
        assert (counts.specs, counts.active) == (2, 1)

    def test_a_short_backoff_passes_and_the_child_runs_again(self, start_tree, events: EventSink) -> None:
        """After the delay the loop's timer starts the child: RUNNING, no retry_at, restarts 2."""
        handle = start_tree([worker(events, "w", backoff=SHORT)], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")

        second = crash_twice(handle, events, "w", first)
        third = events.expect("started", "w")
        settle(handle)
        info = info_of(handle, "w")

        assert third not in (first, second)
        assert (info.state, info.pid, info.retry_at, info.restarts) == (ChildState.RUNNING, third, None, 2)

    def test_the_supervisor_keeps_serving_and_restarting_others_during_a_backoff(
        self, start_tree, events: EventSink
    ) -> None:
        """One child in a long backoff blocks nothing: a sibling crashes and is restarted at once."""
        handle = start_tree([worker(events, "w", backoff=LONG), worker(events, "b")], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")
        b_first = events.expect("started", "b")
        crash_twice(handle, events, "w", first)

        kill(b_first)
        b_second = events.expect("started", "b")
        settle(handle)

        assert info_of(handle, "b").pid == b_second
        assert info_of(handle, "w").state is ChildState.BACKOFF


class TestCuttingThrough:
    def test_terminate_child_during_backoff_stops_it_and_nothing_starts_it_later(
        self, start_tree, events: EventSink
    ) -> None:
        """
        terminate_child in BACKOFF: STOPPED at once, and its timer is cancelled: a witness child armed
        later with the same delay restarts, and by then w would have been started had it not been.
        """
        children = [worker(events, "w", backoff=SHORT), worker(events, "z", backoff=SHORT)]
        handle = start_tree(children, Strategy.ONE_FOR_ONE, max_restarts=10)
        w_first = events.expect("started", "w")
        z_first = events.expect("started", "z")
        crash_twice(handle, events, "w", w_first)

        handle.terminate_child("w")
        stopped = info_of(handle, "w")
        crash_twice(handle, events, "z", z_first)
        events.expect("started", "z")  # z's timer, armed after w's, has fired
        settle(handle)

        assert (stopped.state, stopped.retry_at, stopped.pid) == (ChildState.STOPPED, None, None)
        assert info_of(handle, "w").state is ChildState.STOPPED
        assert [key for kind, key, _ in events.seen if kind == "started"].count("w") == 2

    def test_restart_child_during_backoff_starts_it_now(self, start_tree, events: EventSink) -> None:
        """restart_child in BACKOFF starts the child at once: it returns the new, RUNNING pid."""
        handle = start_tree([worker(events, "w", backoff=LONG)], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")
        crash_twice(handle, events, "w", first)

        pid = handle.restart_child("w")
        info = info_of(handle, "w")

        assert pid == events.expect("started", "w")
        assert (info.state, info.pid, info.retry_at) == (ChildState.RUNNING, pid, None)

    @pytest.mark.timeout(60)
    def test_stop_during_an_hour_long_backoff_returns_promptly(self, start_tree, events: EventSink) -> None:
        """stop() does not wait out the backoff: the tree exits shutdown, not killed at the stop timeout."""
        handle = start_tree([worker(events, "w", backoff=LONG), worker(events, "b")], Strategy.ONE_FOR_ONE)
        first = events.expect("started", "w")
        b_pid = events.expect("started", "b")
        crash_twice(handle, events, "w", first)

        handle.stop(timeout=HANG_TIMEOUT)

        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN
        assert events.expect("stopping", "b") == b_pid
        assert wait_gone([b_pid], HANG_TIMEOUT) == []


class TestIntensity:
    def test_intensity_escalates_at_the_crash_not_after_the_backoff(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """With max_restarts=1 the second crash escalates at once, though its restart would wait an hour."""
        handle = start_tree(
            [worker(events, "w", backoff=LONG), worker(events, "b")],
            Strategy.ONE_FOR_ONE,
            max_restarts=1,
            max_seconds=3600,
            logging_config=log_file.config,
        )
        first = events.expect("started", "w")
        b_pid = events.expect("started", "b")
        kill(first)
        second = events.expect("started", "w")

        os.kill(second, signal.SIGKILL)

        assert events.expect("stopping", "b") == b_pid
        assert wait_gone([handle.pid], HANG_TIMEOUT) == []
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN
        assert "reached_max_restart_intensity" in log_file.read()

    def test_a_failed_restart_is_retried_after_the_backoff_not_in_a_tight_loop(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """try_again_restart follows the sequence: one refused start, then BACKOFF (not RESTARTING)."""
        marker = tmp_path / "refuse"
        spec = refusing(events, "x", marker, backoff=LONG)
        handle = start_tree([spec], Strategy.ONE_FOR_ONE, logging_config=log_file.config)
        first = events.expect("started", "x")
        marker.touch()

        kill(first)
        events.expect("refused", "x")
        settle(handle)
        info = info_of(handle, "x")
        marker.unlink()
        pid = handle.restart_child("x")

        assert (info.state, info.restarting, info.restarts) == (ChildState.BACKOFF, False, 1)
        assert info.last_exit is not None and info.last_exit.kind is ExitKind.EXCEPTION
        assert events.expect("started", "x") == pid
        assert [kind for kind, key, _ in events.seen if key == "x"] == ["started", "refused", "started"]
        assert info_of(handle, "x").pid == pid
        assert "start_error: child 'x'" in log_file.read()


def crash_x_once(
    start_tree, events: EventSink, strategy: Strategy, backoff: Backoff, group: set[str]
) -> SupervisorHandle:
    """Start a, x (with *backoff*), c; kill x; return once *group* has restarted (at once: initial 0)."""
    handle = start_tree(
        [worker(events, "a"), worker(events, "x", backoff=backoff), worker(events, "c")], strategy
    )
    started = events.expect_all("started", {"a", "x", "c"})
    kill(started["x"])
    events.expect_all("started", group)
    settle(handle)
    return handle


class TestGroupRestart:
    @pytest.mark.parametrize(
        ("strategy", "waiting"),
        [(Strategy.ONE_FOR_ALL, ("a", "x", "c")), (Strategy.REST_FOR_ONE, ("x", "c"))],
    )
    def test_a_group_restart_waits_as_one(
        self, start_tree, events: EventSink, strategy: Strategy, waiting: tuple[str, ...]
    ) -> None:
        """The group is stopped at once and waits with one retry_at; the children before it keep running."""
        handle = crash_x_once(start_tree, events, strategy, LONG, set(waiting))
        running = {info.id: info.pid for info in handle.which_children()}

        kill(running["x"])
        settle(handle)
        infos = {info.id: info for info in handle.which_children()}

        assert {i for i, info in infos.items() if info.state is ChildState.BACKOFF} == set(waiting)
        assert len({infos[i].retry_at for i in waiting}) == 1
        assert all(infos[i].pid is None for i in waiting)
        assert wait_gone([running[i] for i in waiting], HANG_TIMEOUT) == []
        if "a" not in waiting:
            assert (infos["a"].state, infos["a"].pid) == (ChildState.RUNNING, running["a"])
        assert handle.count_children().active == 3 - len(waiting)

    def test_a_group_backoff_passes_and_the_group_starts_in_order(
        self, start_tree, events: EventSink
    ) -> None:
        """After the one delay, the group starts in start order and every child is RUNNING again."""
        handle = crash_x_once(start_tree, events, Strategy.ONE_FOR_ALL, SHORT, {"a", "x", "c"})
        kill(next(info.pid for info in handle.which_children() if info.id == "x"))
        seen = len(events.seen)

        events.expect_all("started", {"a", "x", "c"})
        settle(handle)

        order = [key for kind, key, _ in events.seen[seen:] if kind == "started"]
        assert order == ["a", "x", "c"]
        assert {info.state for info in handle.which_children()} == {ChildState.RUNNING}

    def test_restart_child_of_the_cause_ends_the_wait_of_the_whole_group(
        self, start_tree, events: EventSink
    ) -> None:
        """restart_child of the child whose exit began the wait starts the group now, in start order."""
        handle = crash_x_once(start_tree, events, Strategy.ONE_FOR_ALL, LONG, {"a", "x", "c"})
        kill(info_of(handle, "x").pid)
        settle(handle)
        seen = len(events.seen)

        pid = handle.restart_child("x")
        restarted = events.expect_all("started", {"a", "x", "c"})
        handle.terminate_child("x")
        infos = {info.id: info for info in handle.which_children()}

        assert [key for kind, key, _ in events.seen[seen:] if kind == "started"] == ["a", "x", "c"]
        assert pid == restarted["x"]
        assert {i: (infos[i].state, infos[i].pid) for i in ("a", "c")} == {
            i: (ChildState.RUNNING, restarted[i]) for i in ("a", "c")
        }
        assert (infos["x"].state, infos["x"].retry_at) == (ChildState.STOPPED, None)


class TestReset:
    def test_a_child_that_ran_reset_after_seconds_starts_the_sequence_again(
        self, start_tree, events: EventSink, tmp_path: Path
    ) -> None:
        """
        With the supervisor's clock moved an hour on, the next crash is a first again (restarted at
        once); without the move, the crash after it is a second (BACKOFF).
        """
        clock = str(tmp_path / "clock")
        backoff = Backoff(initial=0.0, base=3600.0, jitter=0.0, reset_after=60.0)
        nested = SupervisorSpec([worker(events, "w", backoff=backoff)], Strategy.ONE_FOR_ONE)
        spec = ChildSpec(
            "sub",
            EntryPoint("tests.backoff_children", "run_supervisor_with_clock"),
            args=(nested, clock),
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
        )
        top = start_tree([spec], Strategy.ONE_FOR_ONE)
        sub = top.child_supervisor("sub")
        first = events.expect("started", "w")
        kill(first)
        second = events.expect("started", "w")
        settle(sub)

        advance(clock, 3600.0)  # w has now run an hour, as the supervisor measures it
        kill(second)
        third = events.expect("started", "w")
        settle(sub)
        after_reset = info_of(sub, "w")
        kill(third)
        settle(sub)

        assert (after_reset.state, after_reset.pid, after_reset.restarts) == (ChildState.RUNNING, third, 2)
        assert info_of(sub, "w").state is ChildState.BACKOFF


def session_settled(manager: SupervisorHandle, session_id: str) -> None:
    """
    Return once the SessionManager has handled what it saw of the session *session_id* (its restart
    included): a request in the session's own lane (the manager runs one per session) that fails.
    """
    with pytest.raises(DuplicateChildError):
        manager.start_child(ChildSpec(session_id, report_then_sleep))


class TestSessions:
    def test_a_restartable_session_waits_in_backoff_and_terminate_session_cuts_through(
        self, events: EventSink
    ) -> None:
        """A permanent session with a backoff: first restart at once, second waits; terminate ends it."""
        with Application(max_restarts=10, max_seconds=60) as app:
            sessions = app.session_manager
            sid = sessions.create_session(
                children=[
                    ChildSpec(
                        "ctx", report_then_sleep, args=(events.path, "ctx"), start_mode=StartMode.NOTIFY
                    )
                ],
                restart=Restart.PERMANENT,
                backoff=LONG,
            )
            events.expect("started", "ctx")
            first = sessions.get_session_pid(sid)
            kill(first)
            events.expect("started", "ctx")
            session_settled(sessions.supervisor, sid)
            second = sessions.get_session_pid(sid)

            kill(second)
            session_settled(sessions.supervisor, sid)
            info = info_of(sessions.supervisor, sid)
            entry = sessions.get_session_info(sid)
            with pytest.raises(ChildNotRunningError, match=f"session {sid!r} is not running now"):
                sessions.session_supervisor(sid)
            sessions.terminate_session(sid, timeout=HANG_TIMEOUT)

            assert second != first
            assert (info.state, info.pid, info.restarts) == (ChildState.BACKOFF, None, 2)
            assert info.retry_at is not None
            assert (entry.status, entry.pid, entry.restarts) == (SessionStatus.INITIALIZING, None, 2)
            assert sessions.list_sessions() == []
            assert sid not in [child.id for child in sessions.supervisor.which_children()]


class TestSimpleOneForOne:
    def test_a_child_in_backoff_is_found_and_terminated_by_the_pid_that_died(
        self, start_tree, events: EventSink
    ) -> None:
        """The template's backoff applies; which_child(old pid) shows BACKOFF; terminate_child drops it."""
        template = ChildSpec(
            "w", report_then_sleep, args=(events.path,), start_mode=StartMode.NOTIFY, backoff=LONG
        )
        handle = start_tree([template], Strategy.SIMPLE_ONE_FOR_ONE)
        first = handle.start_child("k")
        assert events.expect("started", "k") == first

        kill(first)
        second = events.expect("started", "k")
        sofo_settle(handle)
        kill(second)
        sofo_settle(handle)
        info = handle.which_child(second)
        handle.terminate_child(second)

        assert (info.id, info.pid, info.state, info.restarts) == (None, None, ChildState.BACKOFF, 2)
        assert handle.which_children() == []
        assert handle.count_children().active == 0
