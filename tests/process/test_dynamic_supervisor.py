"""
The public DynamicSupervisor (Elixir's): children started from full specs and known by pid,
max_children, extra_arguments, parallel shutdown, starts that do not wait on each other, nesting.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    ChildCounts,
    ChildNotFoundError,
    ChildSpec,
    ChildType,
    DynamicSupervisor,
    ExitKind,
    MaxChildrenError,
    Restart,
    StartError,
    StartMode,
    Strategy,
)
from supervisor.testing import wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    crash_before_ready,
    decline,
    hold_cleanup_until_sigusr1,
    ready_on_sigusr1,
    report_then_sleep,
    sleep_with,
)
from tests.dynamic_children import report_args

from .helpers import assert_stop_signals_every_child_at_once, kill, refusing, settle, worker


class TestStartChild:
    def test_start_child_returns_the_pid_and_ids_read_none(self, start_dynamic, events: EventSink) -> None:
        """Children start from full specs (ids ignored, the same one twice is fine) and are known by pid."""
        handle = start_dynamic()
        assert (handle.which_children(), handle.count_children()) == ([], ChildCounts(0, 0, 0, 0))

        same_id = [ChildSpec("same", report_then_sleep, args=(events.path, key)) for key in "ab"]
        first, second = (handle.start_child(spec) for spec in same_id)

        assert events.expect_all("started", "ab") == {"a": first, "b": second}
        infos = handle.which_children()
        assert {i.pid for i in infos} == {first, second} and first != second
        assert {(i.id, i.type, i.restart, i.restarting) for i in infos} == {
            (None, ChildType.WORKER, Restart.PERMANENT, False)
        }
        assert handle.count_children() == ChildCounts(specs=2, active=2, supervisors=0, workers=2)

    def test_extra_arguments_are_prepended(self, start_dynamic, events: EventSink) -> None:
        """Each child is called with extra_arguments, then its spec's args."""
        handle = start_dynamic(extra_arguments=[events.path, "x1"])

        pid = handle.start_child(ChildSpec("c", report_args, args=("a1", 2), start_mode=StartMode.NOTIFY))

        assert events.next() == ("args", ("x1", "a1", 2), pid)

    def test_ignore_returns_none_and_stores_nothing(self, start_dynamic) -> None:
        """A child that ignores its start gives None and leaves nothing behind, whatever its restart type."""
        handle = start_dynamic()

        assert handle.start_child(ChildSpec("d", decline, start_mode=StartMode.NOTIFY)) is None

        assert handle.which_children() == []
        assert handle.count_children().specs == 0

    def test_start_error_is_raised_and_nothing_is_stored(self, start_dynamic) -> None:
        """A failed start raises StartError naming the spec's id, with the child's exception."""
        handle = start_dynamic()

        with pytest.raises(StartError) as info:
            handle.start_child(ChildSpec("bad", crash_before_ready, start_mode=StartMode.NOTIFY))

        assert info.value.child_id == "bad"
        assert isinstance(info.value.__cause__, RuntimeError)
        assert handle.which_children() == []

    def test_starts_do_not_block_each_other(self, start_dynamic, events: EventSink) -> None:
        """A start that hangs in its initialisation delays no other start_child."""
        handle = start_dynamic()
        slow_spec = ChildSpec(
            "slow", ready_on_sigusr1, args=(events.path, "slow"), start_mode=StartMode.NOTIFY
        )
        result: list[int | None] = []
        starter = threading.Thread(target=lambda: result.append(handle.start_child(slow_spec)))
        starter.start()
        slow = events.expect("started", "slow")
        try:
            fast = handle.start_child(worker(events, "fast"), timeout=HANG_TIMEOUT)

            assert events.expect("started", "fast") == fast
            assert {i.pid for i in handle.which_children()} == {slow, fast}
        finally:
            os.kill(slow, signal.SIGUSR1)
            starter.join(HANG_TIMEOUT)
        assert result == [slow]


class TestMaxChildren:
    def test_a_full_supervisor_refuses_with_max_children_error(
        self, start_dynamic, events: EventSink
    ) -> None:
        """At max_children, start_child raises MaxChildrenError, starting nothing; terminate frees room."""
        handle = start_dynamic(max_children=2)
        first = handle.start_child(worker(events, "a"))
        handle.start_child(worker(events, "b"))

        with pytest.raises(MaxChildrenError) as info:
            handle.start_child(worker(events, "c"))

        assert info.value.max_children == 2
        assert handle.count_children().specs == 2
        assert [e for e in events.pending() if e[1] == "c"] == []
        handle.terminate_child(first)
        assert handle.start_child(worker(events, "c")) == events.expect("started", "c")

    def test_restarting_children_count(self, start_dynamic, events: EventSink, tmp_path: Path) -> None:
        """A child whose restart keeps failing still takes its place under max_children."""
        marker = tmp_path / "fail"
        handle = start_dynamic(max_children=1, max_restarts=1_000_000, max_seconds=3600)
        pid = handle.start_child(refusing(events, "f", marker))
        marker.touch()
        kill(pid)
        events.expect("refused", "f")

        with pytest.raises(MaxChildrenError):
            handle.start_child(worker(events, "other"))

        handle.terminate_child(pid)  # its old pid ends the restart loop and frees the place
        assert handle.which_children() == []
        assert handle.start_child(worker(events, "other")) is not None


class TestTerminateChild:
    def test_terminate_child_by_pid_and_not_found(self, start_dynamic, events: EventSink) -> None:
        """terminate_child takes a pid; any pid that is not a child (dead or alive) or an id is not found."""
        handle = start_dynamic()
        pid = handle.start_child(worker(events, "a"))
        other = handle.start_child(worker(events, "b"))
        assert pid is not None

        handle.terminate_child(pid)

        assert events.expect("stopping", "a") == pid
        assert [i.pid for i in handle.which_children()] == [other]
        for unknown in (pid, os.getpid(), "b"):
            with pytest.raises(ChildNotFoundError) as info:
                handle.terminate_child(unknown)
            assert info.value.child_id == unknown
        for call in (handle.restart_child, handle.delete_child):
            with pytest.raises(ChildNotFoundError):
                call("b")
        assert [i.pid for i in handle.which_children()] == [other]

    def test_restart_and_drop(self, start_dynamic, events: EventSink) -> None:
        """A permanent child is restarted with a new pid; a transient one exiting normally is dropped."""
        handle = start_dynamic()
        permanent = handle.start_child(worker(events, "p"))
        transient = handle.start_child(worker(events, "t", restart=Restart.TRANSIENT))
        events.expect_all("started", {"p", "t"})

        kill(permanent)
        again = events.expect("started", "p")
        assert transient is not None
        os.kill(transient, signal.SIGTERM)
        events.expect("stopping", "t")
        assert wait_gone([transient], HANG_TIMEOUT) == []

        # The drop is handled in the turn that reaps it; which_children is answered after it.
        with pytest.raises(ChildNotFoundError):
            handle.terminate_child(transient)
        assert [i.pid for i in handle.which_children()] == [again]
        assert again != permanent


class TestShutdown:
    def test_parallel_shutdown(self, start_dynamic, events: EventSink) -> None:
        """The stop signals every child at once: all are stopping before any has exited."""
        handle = start_dynamic()
        pids = {}
        for key, shutdown in (("a", HANG_TIMEOUT), ("b", HANG_TIMEOUT), ("c", HANG_TIMEOUT + 1)):
            spec = ChildSpec(key, hold_cleanup_until_sigusr1, args=(events.path, key), shutdown=shutdown)
            pids[key] = handle.start_child(spec)
        events.expect_all("started", pids)

        assert_stop_signals_every_child_at_once(handle, events, pids)

    def test_gives_up_after_max_restarts(self, start_dynamic, events: EventSink) -> None:
        """More than max_restarts restarts within max_seconds stop the supervisor with reason shutdown."""
        handle = start_dynamic(max_restarts=1, max_seconds=3600)
        pid = handle.start_child(worker(events, "a"))
        sibling = handle.start_child(worker(events, "b"))
        events.expect_all("started", {"a", "b"})
        kill(pid)
        pid = events.expect("started", "a")

        kill(pid)

        assert wait_gone([handle.pid, sibling], HANG_TIMEOUT) == []
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN


class TestNested:
    def test_nested_dynamic_supervisor(self, start_tree, events: EventSink) -> None:
        """ChildSpec.dynamic_supervisor nests one; its handle starts children; restarted, it is empty."""
        nested = ChildSpec.dynamic_supervisor("dyn", max_children=1, extra_arguments=(events.path,))
        handle = start_tree([nested])
        dyn = handle.child_supervisor("dyn")

        pid = dyn.start_child(ChildSpec("c", report_then_sleep, args=("c",), start_mode=StartMode.NOTIFY))

        assert events.expect("started", "c") == pid
        with pytest.raises(MaxChildrenError):
            dyn.start_child(ChildSpec("d", sleep_with))
        info = handle.which_children()[0]
        assert (info.id, info.type) == ("dyn", ChildType.SUPERVISOR)
        kill(info.pid)
        assert wait_gone([pid], HANG_TIMEOUT) == []  # its children die with it
        settle(handle)  # the restart is done
        assert handle.which_children()[0].pid not in (None, info.pid)
        assert dyn.which_children() == []  # the same handle reaches the new one: no child recreated

    def test_supervisor_child_of_a_dynamic_supervisor_by_pid(self, start_dynamic) -> None:
        """A nested supervisor started under a DynamicSupervisor is reached by its pid."""
        handle = start_dynamic()
        sub = ChildSpec.supervisor("sub", [ChildSpec("w", sleep_with)], Strategy.ONE_FOR_ONE)

        pid = handle.start_child(sub)

        assert pid is not None
        nested = handle.child_supervisor(pid)
        assert [i.id for i in nested.which_children()] == ["w"]
        assert handle.count_children() == ChildCounts(specs=1, active=1, supervisors=1, workers=0)


BAD_FLAGS = [
    ({"max_children": -1}, ValueError, "max_children"),
    ({"max_children": 1.5}, TypeError, "max_children"),
    ({"max_restarts": "3"}, TypeError, "max_restarts"),
    ({"max_seconds": 0}, ValueError, "max_seconds"),
    ({"extra_arguments": "ab"}, TypeError, "extra_arguments"),
]


class TestBadArguments:
    @pytest.mark.parametrize(
        ("options", "error", "name"),
        [
            *BAD_FLAGS,
            ({"logging_config": "x"}, TypeError, "logging_config"),
            ({"env": {"A": 1}}, TypeError, "env"),
        ],
    )
    def test_bad_arguments_are_refused_by_name(self, options: dict[str, Any], error: type, name: str) -> None:
        """A bad argument raises TypeError or ValueError naming it; nothing is started (no leftover)."""
        with pytest.raises(error, match=f"'{name}'"):
            DynamicSupervisor.start(**options)

    @pytest.mark.parametrize(("options", "error", "name"), BAD_FLAGS)
    def test_bad_nested_flags_are_refused_by_name(
        self, options: dict[str, Any], error: type, name: str
    ) -> None:
        """ChildSpec.dynamic_supervisor checks the same flags when the spec is built."""
        with pytest.raises(error, match=f"'{name}'"):
            ChildSpec.dynamic_supervisor("dyn", **options)

    def test_bad_start_child_arguments_are_refused_at_the_caller(self, start_dynamic) -> None:
        """start_child takes one ChildSpec; terminate_child an int or a str; nothing is sent otherwise."""
        handle = start_dynamic()

        with pytest.raises(TypeError, match="'spec'"):
            handle.start_child("not a spec")
        with pytest.raises(TypeError, match="'spec'"):
            handle.start_child(ChildSpec("a", sleep_with), ChildSpec("b", sleep_with))
        with pytest.raises(TypeError, match="'child_id'"):
            handle.terminate_child(None)
        with pytest.raises(TypeError, match="'start'"):
            ChildSpec.dynamic_supervisor("dyn", start=sleep_with)
        assert handle.which_children() == []
