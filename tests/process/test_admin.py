"""The admin API: start, terminate, restart and delete children, the queries, and every error."""

from __future__ import annotations

import os
import pickle
import signal
from pathlib import Path

import pytest

from supervisor import (
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRunningError,
    ChildSpec,
    DuplicateChildError,
    ExitKind,
    Restart,
    StartError,
    StartMode,
    Supervisor,
    SupervisorGoneError,
)
from supervisor._entrypoint import EntryPoint
from supervisor.testing import descendants, wait_gone
from tests.children import HANG_TIMEOUT, EventSink, crash, decline, fail_if_marker, query_handle

from .conftest import LogFile
from .helpers import pids, settle, worker


@pytest.fixture
def abc(start_tree, events: EventSink):
    """A one_for_one tree of three reporting workers, and their pids."""
    handle = start_tree([worker(events, i) for i in "abc"])
    return handle, events.expect_all("started", "abc")


class TestStartChild:
    def test_start_child_appends_and_returns_the_pid(self, abc, events: EventSink) -> None:
        """``start_child`` starts the child last and returns its pid once it is ready."""
        handle, _ = abc

        pid = handle.start_child(worker(events, "d"))

        assert pid == events.expect("started", "d")
        assert list(pids(handle)) == ["a", "b", "c", "d"]
        assert pids(handle)["d"] == pid

    def test_duplicate_of_a_running_child_names_its_pid(self, abc, events: EventSink) -> None:
        """``start_child`` with a running id raises DuplicateChildError with that pid; nothing changes."""
        handle, old = abc

        with pytest.raises(DuplicateChildError) as info:
            handle.start_child(worker(events, "b"))

        assert (info.value.child_id, info.value.pid) == ("b", old["b"])
        assert pids(handle) == old

    def test_already_started_outside_supervisor(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """
        OTP passes a start's ``{error, {already_started, Pid}}`` (a name registered by a process outside
        the supervisor) back as is and stores nothing. Processes here have no registered names, so no
        start can report that; the one already_started is an id already running. Its ``start_child``
        raises DuplicateChildError with that pid, unwrapped (not a StartError): no process is forked,
        nothing is stored or logged, and the supervisor still stops with reason shutdown.
        """
        handle = start_tree([worker(events, "a"), worker(events, "b")], logging_config=log_file.config)
        old = events.expect_all("started", "ab")
        before = {entry.pid for entry in descendants(handle.pid)}

        with pytest.raises(DuplicateChildError) as info:
            handle.start_child(worker(events, "b", restart=Restart.TRANSIENT))

        assert not isinstance(info.value, StartError)
        assert (info.value.child_id, info.value.pid) == ("b", old["b"])
        settle(handle)
        assert {entry.pid for entry in descendants(handle.pid)} == before == set(old.values())
        assert [e for e in events.pending() if e[0] == "started"] == []
        assert pids(handle) == old
        assert handle.get_childspec("b").restart is Restart.PERMANENT
        assert "start_error" not in log_file.read()
        handle.stop()
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_duplicate_of_a_stopped_child_has_pid_none(self, abc, events: EventSink) -> None:
        """``start_child`` with a stopped child's id raises DuplicateChildError with pid None."""
        handle, _ = abc
        handle.terminate_child("b")

        with pytest.raises(DuplicateChildError) as info:
            handle.start_child(worker(events, "b"))

        assert (info.value.child_id, info.value.pid) == ("b", None)
        assert pids(handle)["b"] is None

    def test_failed_start_child_stores_nothing_and_the_supervisor_stays_usable(
        self, abc, events: EventSink
    ) -> None:
        """A start_child that fails raises StartError with the child's exception and keeps no spec."""
        handle, old = abc

        with pytest.raises(StartError) as info:
            handle.start_child(ChildSpec("bad", crash, start_mode=StartMode.NOTIFY))

        assert info.value.child_id == "bad"
        assert isinstance(info.value.__cause__, ValueError)
        assert pids(handle) == old
        assert handle.start_child(worker(events, "d")) == events.expect("started", "d")

    def test_start_of_an_unresolvable_entry_point_fails_only_that_start(self, abc, events: EventSink) -> None:
        """A named start function that does not import is a StartError; the supervisor goes on."""
        handle, old = abc
        missing = EntryPoint("tests.no_such_module", "run")

        with pytest.raises(StartError) as info:
            handle.start_child(ChildSpec("unresolved", missing))

        assert isinstance(info.value.__cause__, ImportError)
        assert pids(handle) == old
        assert handle.start_child(worker(events, "d")) == events.expect("started", "d")

    def test_ignored_start_child_keeps_the_spec_not_running(self, abc) -> None:
        """A child that declines in ``start_child`` returns None and is kept, not running."""
        handle, _ = abc

        assert handle.start_child(ChildSpec("lazy", decline, start_mode=StartMode.NOTIFY)) is None

        assert pids(handle)["lazy"] is None
        assert handle.count_children().specs == 4


class TestTerminateChild:
    def test_terminate_child_stops_it_keeps_the_spec_and_does_not_restart(
        self, abc, events: EventSink
    ) -> None:
        """``terminate_child`` stops a permanent child for good: kept with pid None, no restart."""
        handle, old = abc

        handle.terminate_child("b")
        settle(handle)

        assert events.expect("stopping", "b") == old["b"]
        assert pids(handle) == {"a": old["a"], "b": None, "c": old["c"]}
        counts = handle.count_children()
        assert (counts.specs, counts.active) == (3, 2)

    def test_terminate_child_is_idempotent(self, abc) -> None:
        """Terminating a stopped child again is fine and changes nothing."""
        handle, old = abc
        handle.terminate_child("b")

        handle.terminate_child("b")

        assert pids(handle) == {"a": old["a"], "b": None, "c": old["c"]}

    def test_unknown_id_raises_child_not_found_naming_it(self, abc) -> None:
        """Each call on an unknown id raises ChildNotFoundError naming the id and the known ones."""
        handle, old = abc
        for call in (
            handle.terminate_child,
            handle.restart_child,
            handle.delete_child,
            handle.child_supervisor,
        ):
            with pytest.raises(ChildNotFoundError) as info:
                call("zz")
            assert info.value.child_id == "zz"
            assert "'zz'" in str(info.value)
        assert pids(handle) == old


class TestRestartChild:
    def test_restart_child_starts_a_stopped_child(self, abc, events: EventSink) -> None:
        """``restart_child`` on a terminated child starts it in its place and returns the new pid."""
        handle, old = abc
        handle.terminate_child("b")

        pid = handle.restart_child("b")

        assert pid == events.expect("started", "b")
        assert pids(handle) == {"a": old["a"], "b": pid, "c": old["c"]}

    def test_restart_child_of_a_running_child_raises(self, abc) -> None:
        """``restart_child`` on a running child raises ChildRunningError; nothing changes."""
        handle, old = abc

        with pytest.raises(ChildRunningError) as info:
            handle.restart_child("a")

        assert info.value.child_id == "a"
        assert pids(handle) == old

    def test_sup_start_restart_child_returns_error_leaves_the_spec_stopped(
        self, start_tree, events: EventSink, tmp_path: Path
    ) -> None:
        """A failing ``restart_child`` raises StartError; the spec stays, not running, and can be retried."""
        marker = tmp_path / "fail"
        spec = ChildSpec(
            "x", fail_if_marker, args=(str(marker), events.path, "x"), start_mode=StartMode.NOTIFY
        )
        handle = start_tree([spec])
        events.expect("started", "x")
        handle.terminate_child("x")
        marker.touch()

        with pytest.raises(StartError) as info:
            handle.restart_child("x")

        assert isinstance(info.value.__cause__, RuntimeError)
        assert pids(handle) == {"x": None}
        marker.unlink()
        assert handle.restart_child("x") == events.expect("started", "x")


class TestDeleteChild:
    def test_delete_child_forgets_a_stopped_child(self, abc, events: EventSink) -> None:
        """``delete_child`` removes a stopped child's spec; its id can then be started anew."""
        handle, old = abc
        handle.terminate_child("b")

        handle.delete_child("b")

        assert pids(handle) == {"a": old["a"], "c": old["c"]}
        assert handle.start_child(worker(events, "b")) == events.expect("started", "b")
        assert list(pids(handle)) == ["a", "c", "b"]

    def test_delete_child_of_a_running_child_raises(self, abc) -> None:
        """``delete_child`` on a running child raises ChildRunningError; nothing changes."""
        handle, old = abc

        with pytest.raises(ChildRunningError):
            handle.delete_child("c")

        assert pids(handle) == old


class TestNestedHandle:
    def test_child_supervisor_handle_administers_the_nested_supervisor(
        self, start_tree, events: EventSink
    ) -> None:
        """The nested handle lists and starts the inner children; the outer tree is untouched."""
        handle = start_tree([worker(events, "a"), ChildSpec.supervisor("inner", [worker(events, "w")])])
        events.expect_all("started", {"a", "w"})

        inner = handle.child_supervisor("inner")
        pid = inner.start_child(worker(events, "v"))

        assert inner.path == "root/inner"
        assert pid == events.expect("started", "v")
        assert list(pids(inner)) == ["w", "v"]
        assert list(pids(handle)) == ["a", "inner"]

    def test_child_supervisor_handle_works_in_another_process(self, start_tree, events: EventSink) -> None:
        """A pickled nested handle reconnects in the process that unpickles it."""
        handle = start_tree([ChildSpec.supervisor("inner", [worker(events, "w1"), worker(events, "w2")])])
        events.expect_all("started", {"w1", "w2"})
        inner = handle.child_supervisor("inner")

        handle.start_child(ChildSpec("q", query_handle, args=(inner, events.path, "q")))

        assert events.expect("children", ("q", ("w1", "w2"))) == pids(handle)["q"]
        assert list(pids(pickle.loads(pickle.dumps(inner)))) == ["w1", "w2"]

    def test_child_supervisor_errors(self, start_tree, events: EventSink) -> None:
        """A worker id raises ChildNotFoundError; a stopped nested supervisor ChildNotRunningError."""
        handle = start_tree([worker(events, "a"), ChildSpec.supervisor("inner", [worker(events, "w")])])
        events.expect_all("started", {"a", "w"})

        with pytest.raises(ChildNotFoundError):
            handle.child_supervisor("a")
        handle.terminate_child("inner")
        with pytest.raises(ChildNotRunningError) as info:
            handle.child_supervisor("inner")

        assert info.value.child_id == "inner"


class TestBadArguments:
    @pytest.mark.parametrize(
        ("call", "argument"),
        [
            (lambda h: h.start_child("a"), "'spec'"),
            (lambda h: h.terminate_child(1.5), "'child_id'"),
            (lambda h: h.restart_child(None), "'child_id'"),
            (lambda h: h.delete_child(b"a"), "'child_id'"),
            (lambda h: h.child_supervisor(["a"]), "'child_id'"),
        ],
    )
    def test_wrong_type_raises_type_error_naming_the_argument(self, abc, call, argument: str) -> None:
        """A wrong type raises TypeError naming the argument, and the tree is unchanged."""
        handle, old = abc

        with pytest.raises(TypeError, match=argument):
            call(handle)

        assert pids(handle) == old

    def test_negative_stop_timeout_raises_value_error_and_keeps_the_handle(self, abc) -> None:
        """``stop(timeout=-1)`` raises ValueError naming 'timeout' and stops nothing."""
        handle, old = abc

        with pytest.raises(ValueError, match="'timeout'"):
            handle.stop(timeout=-1)

        assert pids(handle) == old

    @pytest.mark.parametrize(
        ("kwargs", "error", "argument"),
        [
            ({"children": "abc"}, TypeError, "'children'"),
            ({"children": [1]}, TypeError, "'children'"),
            ({"strategy": "one_for_all"}, TypeError, "'strategy'"),
            ({"max_restarts": -1}, ValueError, "'max_restarts'"),
            ({"max_seconds": 0}, ValueError, "'max_seconds'"),
            ({"logging_config": "debug"}, TypeError, "'logging_config'"),
        ],
    )
    def test_bad_start_arguments_raise_and_start_nothing(self, kwargs, error, argument: str) -> None:
        """``Supervisor.start`` validates its arguments before it starts any process."""
        arguments = {"children": [ChildSpec("a", decline)], **kwargs}

        with pytest.raises(error, match=argument):
            Supervisor.start(**arguments)

    def test_duplicate_ids_at_start_raise_value_error(self) -> None:
        """Two children with one id raise ValueError naming the id."""
        with pytest.raises(ValueError, match="'a'"):
            Supervisor.start([ChildSpec("a", decline), ChildSpec("a", decline)])


def test_calls_to_a_dead_supervisor_raise_supervisor_gone(start_tree, events: EventSink) -> None:
    """After the root is SIGKILLed, calls raise SupervisorGoneError with its exit reason; stop still works."""
    handle = start_tree([worker(events, "a")])
    pid = events.expect("started", "a")

    os.kill(handle.pid, signal.SIGKILL)
    assert wait_gone([handle.pid, pid], HANG_TIMEOUT) == []

    with pytest.raises(SupervisorGoneError) as info:
        handle.which_children()
    assert info.value.reason is not None
    assert info.value.reason.kind is ExitKind.KILLED
    handle.stop()
    assert handle.stopped
