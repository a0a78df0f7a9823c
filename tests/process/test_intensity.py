"""Restart intensity: giving up after too many restarts, and escalation through a nested tree."""

from __future__ import annotations

from supervisor import ChildSpec, ExitKind, Restart, StartMode
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, slow_start

from .conftest import LogFile
from .helpers import kill, pids, settle, worker


class TestGivingUp:
    def test_one_restart_too_many_stops_the_supervisor_with_reason_shutdown(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """Restart max_restarts+1 within max_seconds stops the rest in reverse; exit reason shutdown."""
        specs = [worker(events, "a"), worker(events, "b"), worker(events, "x")]
        handle = start_tree(specs, max_restarts=2, max_seconds=60, logging_config=log_file.config)
        pid = events.expect_all("started", {"a", "b", "x"})["x"]
        for _ in range(2):
            kill(pid)
            pid = events.expect("started", "x")
        settle(handle)
        assert not handle.stopped

        kill(pid)

        assert [events.next()[:2] for _ in range(2)] == [("stopping", "b"), ("stopping", "a")]
        assert wait_gone([handle.pid], HANG_TIMEOUT) == []
        assert handle.stopped
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN
        assert (
            "shutdown: child 'x' (permanent, worker) reason=reached_max_restart_intensity" in log_file.read()
        )

    def test_max_restarts_zero_gives_up_on_the_first_restart(self, start_tree, events: EventSink) -> None:
        """With max_restarts=0 the first exit to restart makes the supervisor give up."""
        handle = start_tree([worker(events, "a")], max_restarts=0, max_seconds=60)
        pid = events.expect("started", "a")

        kill(pid)

        assert wait_gone([handle.pid], HANG_TIMEOUT) == []
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_multiple_restarts_spaced_wider_than_max_seconds_never_trip(
        self, start_tree, events: EventSink
    ) -> None:
        """A child that takes longer than max_seconds to start again can die any number of times."""
        spec = ChildSpec("x", slow_start, args=(events.path, "x", 0.5), start_mode=StartMode.NOTIFY)
        handle = start_tree([spec], max_restarts=1, max_seconds=0.3)
        pid = events.expect("started", "x")

        for _ in range(3):
            kill(pid)
            pid = events.expect("started", "x")
        settle(handle)

        assert not handle.stopped
        assert pids(handle) == {"x": pid}


class TestEscalation:
    def test_permanent_nested_supervisor_that_gives_up_is_restarted_by_its_parent(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """An inner supervisor over its intensity exits shutdown; the parent restarts it and its children."""
        inner = ChildSpec.supervisor("inner", [worker(events, "w")], max_restarts=0, max_seconds=60)
        handle = start_tree([worker(events, "a"), inner], logging_config=log_file.config)
        old = events.expect_all("started", {"a", "w"})
        old_inner = pids(handle)["inner"]

        kill(old["w"])
        new_w = events.expect("started", "w")
        settle(handle)

        assert wait_gone([old_inner], HANG_TIMEOUT) == []
        new = pids(handle)
        assert new["a"] == old["a"]
        assert new["inner"] not in (None, old_inner)
        assert new_w != old["w"]
        text = log_file.read()
        assert "supervisor root/inner: shutdown: child 'w'" in text
        assert "child_terminated: child 'inner' (permanent, supervisor) reason=shutdown" in text

    def test_transient_nested_supervisor_that_gives_up_stays_down(
        self, start_tree, events: EventSink
    ) -> None:
        """A transient inner supervisor's give-up is a normal exit for its parent: not restarted."""
        inner = ChildSpec.supervisor(
            "inner", [worker(events, "w")], max_restarts=0, max_seconds=60, restart=Restart.TRANSIENT
        )
        handle = start_tree([worker(events, "a"), inner])
        old = events.expect_all("started", {"a", "w"})
        old_inner = pids(handle)["inner"]

        kill(old["w"])
        assert wait_gone([old_inner], HANG_TIMEOUT) == []
        settle(handle)

        assert pids(handle) == {"a": old["a"], "inner": None}
        assert not handle.stopped

    def test_escalation_counts_against_the_parent_intensity(self, start_tree, events: EventSink) -> None:
        """A parent with max_restarts=0 gives up when its permanent inner supervisor gives up."""
        inner = ChildSpec.supervisor("inner", [worker(events, "w")], max_restarts=0, max_seconds=60)
        handle = start_tree([worker(events, "a"), inner], max_restarts=0, max_seconds=60)
        old = events.expect_all("started", {"a", "w"})

        kill(old["w"])

        assert events.expect("stopping", "a") == old["a"]
        assert wait_gone([handle.pid], HANG_TIMEOUT) == []
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN
