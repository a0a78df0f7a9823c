"""Starting a tree: order, start failures and their error chain, ``ignore``, and the start timeout."""

from __future__ import annotations

import os
import signal
import traceback

import pytest

from supervisor import (
    ChildSpec,
    ChildType,
    ExitKind,
    Restart,
    StartError,
    StartMode,
    Supervisor,
)
from supervisor.testing import descendants, process_table, wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    crash,
    decline,
    decline_after_first,
    sleep_forever,
    sleep_with,
)

from .helpers import pids, settle, worker


class TestCleanStart:
    def test_children_start_in_spec_order_and_are_listed_in_it(self, start_tree, events: EventSink) -> None:
        """Each child is ready before the next starts, and ``which_children`` lists them in start order."""
        handle = start_tree([worker(events, "a"), worker(events, "b"), worker(events, "c")])

        started = [events.next() for _ in range(3)]

        assert [e[:2] for e in started] == [("started", "a"), ("started", "b"), ("started", "c")]
        infos = handle.which_children()
        assert [info.id for info in infos] == ["a", "b", "c"]
        assert [e[2] for e in started] == [info.pid for info in infos]
        assert all(info.type is ChildType.WORKER and not info.restarting for info in infos)

    def test_count_children_counts_specs_active_and_types(self, start_tree, events: EventSink) -> None:
        """A clean start counts every spec as active, by type."""
        inner = ChildSpec.supervisor("inner", [worker(events, "w")])
        handle = start_tree([worker(events, "a"), inner])
        events.expect_all("started", {"a", "w"})

        counts = handle.count_children()

        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (2, 2, 1, 1)


class TestStartFailure:
    def test_failing_child_raises_start_error_with_its_remote_traceback(self, events: EventSink) -> None:
        """``Supervisor.start`` raises StartError caused by the child's exception and remote traceback."""
        specs = [worker(events, "a"), ChildSpec("bad", crash, start_mode=StartMode.NOTIFY)]

        with pytest.raises(StartError) as info:
            Supervisor.start(specs)

        error = info.value
        assert error.child_id == "bad"
        assert ExitKind.EXCEPTION is error.reason.kind
        cause = error.__cause__
        assert isinstance(cause, ValueError)
        assert str(cause) == "boom"
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        assert "in crash" in text
        assert "children.py" in text
        assert isinstance(cause.__cause__, KeyError)

    def test_children_started_before_a_failure_are_stopped(self, events: EventSink) -> None:
        """The children started before the failing one are stopped, in reverse start order."""
        specs = [
            worker(events, "a"),
            worker(events, "b"),
            ChildSpec("bad", crash, start_mode=StartMode.NOTIFY),
        ]

        with pytest.raises(StartError):
            Supervisor.start(specs)

        started = events.expect_all("started", {"a", "b"})
        assert [events.next()[1], events.next()[1]] == ["b", "a"]
        assert wait_gone(list(started.values()), HANG_TIMEOUT) == []

    def test_nested_supervisor_start_failure_nests_the_error_chain(self, events: EventSink) -> None:
        """A failure two levels down: StartError caused by the inner StartError, caused by the exception."""
        inner = ChildSpec.supervisor(
            "inner", [worker(events, "w"), ChildSpec("bad", crash, start_mode=StartMode.NOTIFY)]
        )

        with pytest.raises(StartError) as info:
            Supervisor.start([worker(events, "a"), inner])

        assert info.value.child_id == "inner"
        nested = info.value.__cause__
        assert isinstance(nested, StartError)
        assert nested.child_id == "bad"
        assert isinstance(nested.__cause__, ValueError)
        assert isinstance(nested.__cause__.__cause__, KeyError)

    def test_start_timeout_kills_a_child_that_never_notifies(self) -> None:
        """A NOTIFY child silent past its ``start_timeout`` is killed; the start fails with reason killed."""
        spec = ChildSpec("slow", sleep_forever, start_mode=StartMode.NOTIFY, start_timeout=0.5)

        with pytest.raises(StartError) as info:
            Supervisor.start([spec])

        assert info.value.child_id == "slow"
        assert ExitKind.KILLED is info.value.reason.kind
        assert info.value.__cause__ is None

    def test_start_timeout_failure_says_it_was_the_start_timeout_with_its_seconds(self, start_tree) -> None:
        """The StartError of a start timeout says so, with the seconds, and that the child was killed."""
        handle = start_tree([])
        spec = ChildSpec("slow", sleep_forever, start_mode=StartMode.NOTIFY, start_timeout=0.5)

        with pytest.raises(StartError) as info:
            handle.start_child(spec)

        assert "start timeout (0.5 s) passed: killed (SIGKILL)" in str(info.value)
        assert ExitKind.KILLED is info.value.reason.kind
        assert "slow" not in pids(handle)

    def test_empty_tree_starts_and_takes_children_later(self, start_tree, events: EventSink) -> None:
        """A tree may start with no children; ``start_child`` adds them."""
        handle = start_tree([])
        assert handle.which_children() == []

        pid = handle.start_child(worker(events, "a"))

        assert pids(handle) == {"a": pid}


class TestIgnore:
    def test_ignored_child_keeps_its_spec_without_a_process(self, start_tree, events: EventSink) -> None:
        """A child that calls ``ignore_start`` is kept with pid None and the next children still start."""
        specs = [
            worker(events, "a"),
            ChildSpec("lazy", decline, start_mode=StartMode.NOTIFY),
            worker(events, "c"),
        ]
        handle = start_tree(specs)
        events.expect_all("started", {"a", "c"})

        assert list(pids(handle)) == ["a", "lazy", "c"]
        assert pids(handle)["lazy"] is None
        counts = handle.count_children()
        assert (counts.specs, counts.active) == (3, 2)

    def test_ignored_temporary_child_is_dropped(self, start_tree, events: EventSink) -> None:
        """A temporary child that declines to start is not kept."""
        spec = ChildSpec("lazy", decline, start_mode=StartMode.NOTIFY, restart=Restart.TEMPORARY)
        handle = start_tree([worker(events, "a"), spec])

        assert list(pids(handle)) == ["a"]

    def test_ignore_on_an_automatic_restart_leaves_the_child_stopped(
        self, start_tree, events: EventSink, tmp_path
    ) -> None:
        """A child declining its automatic restart stays with pid None, with no retry and no give-up."""
        spec = ChildSpec(
            "x",
            decline_after_first,
            args=(str(tmp_path / "ran"), events.path, "x"),
            start_mode=StartMode.NOTIFY,
        )
        handle = start_tree([worker(events, "a"), spec], max_restarts=1, max_seconds=60)
        old = events.expect_all("started", {"a", "x"})

        os.kill(old["x"], signal.SIGKILL)
        assert wait_gone([old["x"]], HANG_TIMEOUT) == []
        settle(handle)

        assert pids(handle) == {"a": old["a"], "x": None}
        assert [info.restarting for info in handle.which_children()] == [False, False]
        assert not handle.stopped

    def test_restart_child_of_an_ignored_child_starts_it_again(self, start_tree, events: EventSink) -> None:
        """``restart_child`` on an ignored child runs its start again, which may decline again (pid None)."""
        handle = start_tree([ChildSpec("lazy", decline, start_mode=StartMode.NOTIFY)])

        assert handle.restart_child("lazy") is None
        assert pids(handle) == {"lazy": None}


def test_scale_start_stop_many_children(start_tree) -> None:
    """
    200 children started one by one with ``start_child`` all run: each a live process under the
    supervisor in the process table, all counted active; ``terminate_child`` on each stops them all,
    the specs staying. No timing is asserted (OTP's near-linear check is left to benchmarks).
    """
    handle = start_tree([])
    ids = [f"c{n}" for n in range(200)]

    started = [handle.start_child(ChildSpec(child_id, sleep_with)) for child_id in ids]

    assert None not in started and len(set(started)) == len(ids)
    table = process_table()
    assert all(pid in table and table[pid].ppid == handle.pid for pid in started if pid is not None)
    assert {entry.pid for entry in descendants(handle.pid, table)} == set(started)
    counts = handle.count_children()
    assert (counts.specs, counts.active, counts.workers) == (200, 200, 200)

    for child_id in ids:
        handle.terminate_child(child_id)

    assert wait_gone([pid for pid in started if pid is not None], HANG_TIMEOUT) == []
    assert descendants(handle.pid) == []
    counts = handle.count_children()
    assert (counts.specs, counts.active) == (200, 0)
