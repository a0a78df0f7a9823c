"""
Event streams through the public API: ``SupervisorHandle.events()`` and ``SessionManagerHandle.events()``.

Every wait is on the stream itself (``next_event`` with ``HANG_TIMEOUT``, which is only reached when
something is broken), never on time. Pids are checked against what the supervisor reports; descriptor
counts are read from ``/proc/<pid>/fd``. A supervisor handles a stream's end of file before the
requests of the same turn, and a client's close reaches it before any later request, so one call
after a close is enough to see the descriptor gone.
"""

from __future__ import annotations

import datetime
import os
import select
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from supervisor import (
    Application,
    ChildSpec,
    Event,
    EventStream,
    ExitKind,
    HandleClosedError,
    Restart,
    SessionEvent,
    SupervisorGoneError,
    SupervisorHandle,
)
from supervisor.messaging.events import MAX_BUFFER
from tests.children import HANG_TIMEOUT, exit_with, sleep_forever


def next_event(stream: Any) -> Any:
    """The stream's next event; fails the test if none comes within ``HANG_TIMEOUT``."""
    event = stream.next_event(HANG_TIMEOUT)
    assert event is not None, f"no event within {HANG_TIMEOUT} s"
    return event


def kinds_and_paths(events: list[Event]) -> list[tuple[str, str]]:
    return [(event.kind, event.path) for event in events]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pid_of(handle: SupervisorHandle, child_id: str) -> int:
    pid = handle.which_child(child_id).pid
    assert pid is not None
    return pid


@pytest.fixture
def app() -> Iterator[Application]:
    with Application() as application:
        yield application


class TestSubscription:
    def test_a_child_started_right_after_events_returns_is_seen(self, start_tree: Any) -> None:
        """The stream is subscribed when events() returns: the very next start is in it."""
        tree = start_tree([])
        with tree.events() as stream:
            pid = tree.start_child(ChildSpec("a", sleep_forever))

            event = next_event(stream)

        assert (event.kind, event.path, event.pid, event.reason) == ("started", "root/a", pid, None)
        assert event.at.tzinfo is datetime.timezone.utc
        assert event.count == 0

    def test_the_descriptor_is_readable_once_an_event_is_there(self, start_tree: Any) -> None:
        """fileno() composes with select: readable when an event waits, and next_event(0) takes it."""
        tree = start_tree([])
        with tree.events() as stream:
            assert stream.next_event(0) is None
            pid = tree.start_child(ChildSpec("a", sleep_forever))

            readable, _, _ = select.select([stream], [], [], HANG_TIMEOUT)

            assert readable == [stream]
            event = stream.next_event(0)
            assert event is not None and (event.kind, event.pid) == ("started", pid)

    def test_next_event_returns_none_at_its_timeout(self, start_tree: Any) -> None:
        """A quiet supervisor: next_event(timeout) returns None, and the stream has not ended."""
        tree = start_tree([ChildSpec("a", sleep_forever)])
        with tree.events() as stream:
            assert stream.next_event(0.05) is None
            assert not stream.ended
            assert repr(stream) == "<EventStream: following root>"
        assert repr(stream) == "<EventStream: closed>"

    def test_events_of_one_supervisor_arrive_in_order(self, start_tree: Any) -> None:
        """Starts, a terminate and a restart_child come in the order the supervisor did them."""
        tree = start_tree([])
        with tree.events() as stream:
            for child_id in ("a", "b", "c"):
                tree.start_child(ChildSpec(child_id, sleep_forever))
            tree.terminate_child("b")
            tree.restart_child("b")

            events = [next_event(stream) for _ in range(5)]

        assert kinds_and_paths(events) == [
            ("started", "root/a"),
            ("started", "root/b"),
            ("started", "root/c"),
            ("exited", "root/b"),
            ("started", "root/b"),
        ]
        assert events[3].reason is not None and events[3].reason.kind is ExitKind.SHUTDOWN

    def test_bad_arguments_raise_before_anything_is_sent(self, start_tree: Any) -> None:
        """buffer must be an int from 1 to MAX_BUFFER; timeout seconds or None."""
        tree = start_tree([])
        with pytest.raises(ValueError, match="'buffer'"):
            tree.events(buffer=0)
        with pytest.raises(ValueError, match="'buffer'"):
            tree.events(buffer=MAX_BUFFER + 1)
        with pytest.raises(TypeError, match="'buffer'"):
            tree.events(buffer=1.5)
        with pytest.raises(ValueError, match="'timeout'"):
            tree.events(timeout=-1)

    def test_a_closed_stream_stops_iterating_and_refuses_next_event(self, start_tree: Any) -> None:
        """After close(): iteration stops at once, next_event raises HandleClosedError."""
        tree = start_tree([])
        stream = tree.events()
        stream.close()
        stream.close()

        assert stream.closed
        assert list(stream) == []
        with pytest.raises(HandleClosedError):
            stream.next_event(0)

    def test_a_stopped_handle_cannot_subscribe(self, start_tree: Any) -> None:
        tree = start_tree([])
        tree.stop()
        with pytest.raises(HandleClosedError):
            tree.events()

    def test_a_supervisor_that_is_gone_cannot_be_subscribed_to(self, start_tree: Any) -> None:
        """A handle of a nested supervisor that is not running: SupervisorGoneError."""
        tree = start_tree([ChildSpec.supervisor("sub", [ChildSpec("x", sleep_forever)])])
        sub = tree.child_supervisor("sub")
        tree.terminate_child("sub")
        with pytest.raises(SupervisorGoneError):
            sub.events()


class TestChildEvents:
    def test_a_killed_child_is_exited_with_reason_killed_then_restarted(self, start_tree: Any) -> None:
        """SIGKILL: 'exited' carries the reaped pid and reason killed; 'restarted' the new pid."""
        tree = start_tree([ChildSpec("a", sleep_forever)])
        old = pid_of(tree, "a")
        with tree.events() as stream:
            os.kill(old, signal.SIGKILL)

            exited, restarted = next_event(stream), next_event(stream)

        assert (exited.kind, exited.path, exited.pid) == ("exited", "root/a", old)
        assert exited.reason is not None and exited.reason.kind is ExitKind.KILLED
        assert (restarted.kind, restarted.path, restarted.reason) == ("restarted", "root/a", None)
        assert restarted.pid == pid_of(tree, "a") != old

    def test_a_crash_is_exited_with_the_exit_code(self, start_tree: Any) -> None:
        """A temporary child that exits with status 3: 'started', then 'exited' with that reason."""
        tree = start_tree([])
        with tree.events() as stream:
            tree.start_child(ChildSpec("once", exit_with, args=(3,), restart=Restart.TEMPORARY))

            started, exited = next_event(stream), next_event(stream)

        assert kinds_and_paths([started, exited]) == [("started", "root/once"), ("exited", "root/once")]
        assert exited.reason is not None and (exited.reason.kind, exited.reason.code) == (
            ExitKind.EXIT_CODE,
            3,
        )

    def test_reaching_the_restart_intensity_is_an_event_and_the_stream_then_ends(
        self, start_tree: Any
    ) -> None:
        """Three kills with max_restarts=2: intensity_reached on the supervisor's path, then the end."""
        tree = start_tree([ChildSpec("a", sleep_forever)], max_restarts=2, max_seconds=3600)
        root = tree.pid
        with tree.events() as stream:
            for _ in range(2):
                os.kill(pid_of(tree, "a"), signal.SIGKILL)
                assert [next_event(stream).kind, next_event(stream).kind] == ["exited", "restarted"]
            last = pid_of(tree, "a")
            os.kill(last, signal.SIGKILL)

            rest = list(stream)

            assert stream.ended
        assert kinds_and_paths(rest) == [("exited", "root/a"), ("intensity_reached", "root")]
        assert rest[0].pid == last
        assert rest[1].pid == root
        assert rest[1].reason is not None and rest[1].reason.kind is ExitKind.KILLED
        reason = tree.wait(HANG_TIMEOUT)
        assert reason is not None and reason.kind is ExitKind.SHUTDOWN

    def test_the_stream_ends_after_the_stop_with_every_child_exited(self, start_tree: Any) -> None:
        """stop(): each child's 'exited' (reason shutdown), in reverse start order, then the end."""
        tree = start_tree([ChildSpec("a", sleep_forever), ChildSpec("b", sleep_forever)])
        stream = tree.events()
        try:
            tree.stop()
            events = list(stream)
        finally:
            stream.close()

        assert kinds_and_paths(events) == [("exited", "root/b"), ("exited", "root/a")]
        assert all(e.reason is not None and e.reason.kind is ExitKind.SHUTDOWN for e in events)


class TestSubtree:
    def test_a_nested_supervisors_child_is_seen(self, start_tree: Any) -> None:
        """subtree=True follows the nested supervisors running when events() is called."""
        tree = start_tree(
            [ChildSpec.supervisor("sub", [ChildSpec.supervisor("deep", [ChildSpec("x", sleep_forever)])])]
        )
        deep = tree.child_supervisor("sub").child_supervisor("deep")
        old = pid_of(deep, "x")
        with tree.events(subtree=True) as stream:
            os.kill(old, signal.SIGKILL)

            exited, restarted = next_event(stream), next_event(stream)

        assert kinds_and_paths([exited, restarted]) == [
            ("exited", "root/sub/deep/x"),
            ("restarted", "root/sub/deep/x"),
        ]
        assert exited.pid == old
        assert restarted.pid == pid_of(deep, "x")

    def test_without_subtree_a_nested_supervisors_children_are_not_seen(self, start_tree: Any) -> None:
        tree = start_tree(
            [ChildSpec.supervisor("sub", [ChildSpec("x", sleep_forever)]), ChildSpec("a", sleep_forever)]
        )
        sub = tree.child_supervisor("sub")
        with tree.events() as stream:
            os.kill(pid_of(sub, "x"), signal.SIGKILL)
            sub.terminate_child("x")  # queued behind x's exit and restart: all done when it returns
            os.kill(pid_of(tree, "a"), signal.SIGKILL)

            events = [next_event(stream), next_event(stream)]

        assert kinds_and_paths(events) == [("exited", "root/a"), ("restarted", "root/a")]

    def test_a_nested_supervisor_started_later_is_followed(self, start_tree: Any) -> None:
        """A nested supervisor started after events(): followed once its 'started' is read."""
        tree = start_tree([])
        with tree.events(subtree=True) as stream:
            tree.start_child(ChildSpec.supervisor("late", [ChildSpec("y", sleep_forever)]))
            started = next_event(stream)
            assert (started.kind, started.path) == ("started", "root/late")
            late = tree.child_supervisor("late")
            old = pid_of(late, "y")

            os.kill(old, signal.SIGKILL)

            events = [next_event(stream), next_event(stream)]
        assert kinds_and_paths(events) == [("exited", "root/late/y"), ("restarted", "root/late/y")]
        assert events[0].pid == old

    def test_a_restarted_nested_supervisor_is_followed_again(self, start_tree: Any) -> None:
        """Kill the nested supervisor: its restart is followed, and its new children's events seen."""
        tree = start_tree([ChildSpec.supervisor("sub", [ChildSpec("x", sleep_forever)])])
        sub = tree.child_supervisor("sub")
        with tree.events(subtree=True) as stream:
            os.kill(pid_of(tree, "sub"), signal.SIGKILL)
            events = [next_event(stream), next_event(stream)]
            assert kinds_and_paths(events) == [("exited", "root/sub"), ("restarted", "root/sub")]
            old = pid_of(sub, "x")

            os.kill(old, signal.SIGKILL)

            events = [next_event(stream), next_event(stream)]
        assert kinds_and_paths(events) == [("exited", "root/sub/x"), ("restarted", "root/sub/x")]
        assert events[0].pid == old

    def test_an_applications_subtree_reaches_into_sessions(self, app: Application) -> None:
        """The tree key's subtree stream follows session supervisors (their own keys, derived from it)."""
        sessions = app.session_manager
        before = sessions.create_session(children=[ChildSpec("ctx", sleep_forever)])
        with app.supervisor.events(subtree=True) as stream:
            later = sessions.create_session(children=[ChildSpec("ctx", sleep_forever)])
            started = next_event(stream)
            assert (started.kind, started.path) == ("started", f"root/session_manager/{later}")
            for session_id in (before, later):
                worker = sessions.get_session_info(session_id).children[0].pid
                os.kill(worker, signal.SIGKILL)

                events = [next_event(stream), next_event(stream)]

                path = f"root/session_manager/{session_id}/ctx"
                assert kinds_and_paths(events) == [("exited", path), ("restarted", path)]
                assert events[0].pid == worker


class TestSlowSubscriber:
    def test_a_slow_subscriber_gets_a_lost_count_and_never_slows_the_supervisor(
        self, start_tree: Any
    ) -> None:
        """
        A crash loop makes thousands of events while one stream is not read: the supervisor answers
        calls meanwhile, and that stream gets the events it buffered, a 'lost' item counting the
        dropped ones, then the rest: exactly the events of a stream that kept up.
        """
        tree = start_tree([], max_restarts=10**6, max_seconds=1)
        slow = tree.events(buffer=50)
        fast = tree.events(buffer=MAX_BUFFER)
        try:
            tree.start_child(ChildSpec("crasher", exit_with, args=(3,)))
            seen: list[Event] = []
            while len(seen) < 2000:
                seen.append(next_event(fast))
                if len(seen) % 500 == 0:
                    # Answered within the bound while the slow stream's buffer is full (a hang guard,
                    # not a speed measure: CallTimeout would fail the test).
                    assert tree.which_children(timeout=2.0)
            tree.terminate_child("crasher")
            tree.start_child(ChildSpec("marker", sleep_forever))
            while seen[-1].path != "root/marker":
                seen.append(next_event(fast))

            position, lost = 0, []
            while position < len(seen):
                event = next_event(slow)
                if event.kind == "lost":
                    assert (event.path, event.pid) == ("root", tree.pid)
                    lost.append(event.count)
                    position += event.count
                else:
                    assert event == seen[position]
                    position += 1
        finally:
            slow.close()
            fast.close()

        assert position == len(seen)
        assert lost and all(count > 0 for count in lost)


class TestDescriptors:
    def test_closing_a_stream_leaves_no_descriptor_in_the_supervisor(self, start_tree: Any) -> None:
        """The root's and a nested supervisor's fd counts are back to theirs before the subscription."""
        tree = start_tree([ChildSpec.supervisor("sub", [ChildSpec("x", sleep_forever)])])
        sub = tree.child_supervisor("sub")
        root, nested = tree.pid, pid_of(tree, "sub")
        sub.which_children()  # the handles' own connections exist before the counts
        before = (fd_count(root), fd_count(nested))

        stream = tree.events(subtree=True)
        assert (fd_count(root), fd_count(nested)) == (before[0] + 1, before[1] + 1)
        stream.close()
        tree.which_children()
        sub.which_children()

        assert (fd_count(root), fd_count(nested)) == before

    def test_many_streams_opened_and_closed_leave_none(self, start_tree: Any) -> None:
        tree = start_tree([ChildSpec("a", sleep_forever)])
        root = tree.pid
        tree.which_children()
        before = fd_count(root)
        for _ in range(20):
            with tree.events() as stream:
                assert isinstance(stream, EventStream)
        tree.which_children()

        assert fd_count(root) == before


class TestSessionEvents:
    def test_create_kill_and_terminate_are_seen(self, app: Application) -> None:
        """created/active for create_session; down (killed) then terminated for a SIGKILL; the same
        for terminate_session with reason shutdown."""
        sessions = app.session_manager
        with sessions.events() as stream:
            killed = sessions.create_session(children=[ChildSpec("w", sleep_forever)])
            pid = sessions.get_session_pid(killed)
            events = [next_event(stream), next_event(stream)]
            assert [(e.kind, e.session_id, e.pid) for e in events] == [
                ("created", killed, pid),
                ("active", killed, pid),
            ]

            os.kill(pid, signal.SIGKILL)
            events = [next_event(stream), next_event(stream)]
            assert [(e.kind, e.session_id) for e in events] == [("down", killed), ("terminated", killed)]
            assert events[0].pid == pid
            assert events[0].reason is not None and events[0].reason.kind is ExitKind.KILLED

            ended = sessions.create_session(children=[ChildSpec("w", sleep_forever)])
            second = sessions.get_session_pid(ended)
            sessions.terminate_session(ended)
            events = [next_event(stream) for _ in range(4)]

        assert [(e.kind, e.session_id) for e in events] == [
            ("created", ended),
            ("active", ended),
            ("down", ended),
            ("terminated", ended),
        ]
        assert all(isinstance(e, SessionEvent) for e in events)
        assert events[2].pid == second
        assert events[2].reason is not None and events[2].reason.kind is ExitKind.SHUTDOWN
        assert events[3].reason is None and events[3].at >= events[2].at
