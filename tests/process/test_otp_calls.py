"""
OTP's remaining calls, named after supervisor_SUITE's scenarios: init functions (``start_from``,
``supervisor_from``, ``IGNORE``), start info (``extra_return``), ``which_child`` and ``get_childspec``.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from supervisor import (
    IGNORE,
    ChildInfo,
    ChildNotFoundError,
    ChildSpec,
    ChildType,
    ExitKind,
    Restart,
    Shutdown,
    StartError,
    StartMode,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from supervisor.testing import wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    Unpicklable,
    init_bad_return,
    init_children,
    init_children_from_file,
    init_ignore,
    init_raises,
    init_starts_thread,
    notify_then_sleep,
    notify_with_info,
    notify_with_info_only_this_process_loads,
    notify_with_unpicklable_info,
    sleep_with,
)

from .helpers import otp_fields, pids, settle, worker


def info_child(events: EventSink, child_id: str, info: object, **fields: object) -> ChildSpec:
    """A NOTIFY child that reports ``started`` and passes *info* to ``notify_ready``."""
    return ChildSpec(
        child_id,
        notify_with_info,
        args=(events.path, child_id, info),
        start_mode=StartMode.NOTIFY,
        **fields,  # type: ignore[arg-type]
    )


class TestSupStart:
    """``Supervisor.start_from``: the root's children come from an init function run in the root."""

    def test_sup_start_normal(self, events: EventSink) -> None:
        """The init runs in the root's own process; its children start in order; the stop is shutdown."""
        handle = Supervisor.start_from(init_children, events.path, "root-init", ["a", "b"])
        assert handle is not None
        try:
            init_pid = events.expect("init", "root-init")
            started = [events.next() for _ in range(2)]

            assert handle.pid == init_pid
            assert [(kind, key) for kind, key, _ in started] == [("started", "a"), ("started", "b")]
            assert pids(handle) == {key: pid for _, key, pid in started}
            assert handle.get_childspec("a").start_mode is StartMode.NOTIFY
        finally:
            handle.stop(timeout=30)
        assert handle.exit_reason is not None
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_sup_start_ignore_init(self, events: EventSink) -> None:
        """An init returning IGNORE makes ``start_from`` return None, and its root has exited."""
        result = Supervisor.start_from(init_ignore, events.path, "root-init")

        root_pid = events.expect("init", "root-init")
        assert result is None
        assert wait_gone([root_pid], HANG_TIMEOUT) == []
        assert events.pending() == []  # no child was started

    def test_sup_start_error_return(self) -> None:
        """An init returning something else than a SupervisorSpec or IGNORE is a bad_return start error."""
        with pytest.raises(StartError) as info:
            Supervisor.start_from(init_bad_return, ("ok", "not a spec"))

        assert "bad_return" in str(info.value)
        assert info.value.child_id == "root"
        cause = info.value.__cause__
        assert isinstance(cause, TypeError)
        assert "bad_return" in str(cause)
        assert "('ok', 'not a spec')" in str(cause)
        assert "init_bad_return" in str(cause)

    def test_sup_start_fail(self) -> None:
        """An init that raises is a start error whose cause is its exception, traceback from the root."""
        with pytest.raises(StartError) as info:
            Supervisor.start_from(init_raises, "no configuration")

        cause = info.value.__cause__
        assert isinstance(cause, ValueError)
        assert str(cause) == "no configuration"
        assert info.value.reason.kind is ExitKind.EXCEPTION
        assert "init_raises" in (info.value.reason.traceback_text or "")

    def test_init_that_leaves_a_thread_running_is_a_start_error(self) -> None:
        """A supervisor's process forks its children: an init that leaves a thread is refused."""
        with pytest.raises(StartError) as info:
            Supervisor.start_from(init_starts_thread)

        assert isinstance(info.value.__cause__, RuntimeError)
        assert "thread" in str(info.value.__cause__)


class TestSupervisorFrom:
    """``ChildSpec.supervisor_from``: a nested supervisor whose init runs in its own process."""

    def test_nested_init_runs_in_the_nested_supervisor(self, start_tree, events: EventSink) -> None:
        """The nested supervisor's init runs in its own process and its children are served there."""
        handle = start_tree(
            [ChildSpec.supervisor_from("sub", init_children, events.path, "sub-init", ["x", "y"])]
        )

        init_pid = events.expect("init", "sub-init")
        assert handle.which_child("sub").pid == init_pid
        assert list(pids(handle.child_supervisor("sub"))) == ["x", "y"]
        spec = handle.get_childspec("sub")
        assert (spec.type, spec.shutdown, spec.restart) == (
            ChildType.SUPERVISOR,
            Shutdown.INFINITY,
            Restart.PERMANENT,
        )
        assert spec.args == (init_children, events.path, "sub-init", ["x", "y"])

    def test_nested_supervisor_restarted_reruns_init(
        self, start_tree, events: EventSink, tmp_path: Path
    ) -> None:
        """A restarted nested supervisor runs its init again, so it re-reads its children."""
        ids_file = tmp_path / "ids"
        ids_file.write_text("a\n")
        handle = start_tree(
            [ChildSpec.supervisor_from("sub", init_children_from_file, events.path, "sub", str(ids_file))]
        )
        first = events.expect("init", "sub")
        events.expect("started", "a")
        ids_file.write_text("a\nb\n")

        os.kill(first, signal.SIGKILL)

        second = events.expect("init", "sub")
        events.expect("started", "b")
        settle(handle)
        assert second != first
        assert handle.which_child("sub").pid == second
        assert list(pids(handle.child_supervisor("sub"))) == ["a", "b"]

    def test_nested_init_ignore_makes_the_child_ignored(self, start_tree, events: EventSink) -> None:
        """A nested init returning IGNORE: the child is kept with pid None, as a child's ignore."""
        handle = start_tree(
            [
                ChildSpec.supervisor_from("sub", init_ignore, events.path, "sub"),
                worker(events, "after"),
            ]
        )

        events.expect("init", "sub")
        assert otp_fields(handle.which_child("sub")) == otp_fields(
            ChildInfo("sub", None, ChildType.SUPERVISOR, Restart.PERMANENT)
        )
        assert handle.which_child("after").pid == events.expect("started", "after")
        assert handle.restart_child("sub") is None
        assert handle.count_children().specs == 2

    def test_nested_init_failure_is_a_start_error(self, start_tree, events: EventSink) -> None:
        """``start_child`` of a supervisor_from whose init fails: StartError with its cause; none stored."""
        handle = start_tree([worker(events, "a")])

        with pytest.raises(StartError) as info:
            handle.start_child(ChildSpec.supervisor_from("sub", init_raises, "nested init failed"))
        with pytest.raises(StartError) as bad:
            handle.start_child(ChildSpec.supervisor_from("sub", init_bad_return, 42))

        assert isinstance(info.value.__cause__, ValueError)
        assert str(info.value.__cause__) == "nested init failed"
        assert info.value.child_id == "sub"
        assert isinstance(bad.value.__cause__, TypeError)
        assert "bad_return" in str(bad.value.__cause__)
        assert list(pids(handle)) == ["a"]

    def test_temporary_nested_ignore_is_forgotten(self, start_tree, events: EventSink) -> None:
        """A temporary supervisor_from whose init returns IGNORE is not kept (a temporary ignore)."""
        handle = start_tree([])

        assert (
            handle.start_child(
                ChildSpec.supervisor_from("sub", init_ignore, events.path, "sub", restart=Restart.TEMPORARY)
            )
            is None
        )

        events.expect("init", "sub")
        with pytest.raises(ChildNotFoundError):
            handle.which_child("sub")


class TestExtraReturn:
    """Start info: what a child passes to ``notify_ready``, OTP's ``{ok, Pid, Info}``."""

    def test_extra_return(self, start_tree, events: EventSink) -> None:
        """``start_child`` returns the pid; the info is kept while that process runs, then cleared."""
        handle = start_tree([])
        info = {"port": 8080, "tags": ("a", "b")}

        pid = handle.start_child(info_child(events, "w", info))

        assert pid == events.expect("started", "w")
        assert handle.which_child("w").start_info == info
        assert handle.which_children()[0].start_info == info
        handle.terminate_child("w")
        assert handle.which_child("w").start_info is None
        assert handle.restart_child("w") == events.expect("started", "w")
        assert handle.which_child("w").start_info == info

    def test_start_info_is_cleared_when_the_process_dies(self, start_tree, events: EventSink) -> None:
        """A crashed child's info goes with its process; its restart brings the new process's."""
        handle = start_tree([info_child(events, "w", [1, 2, 3])])
        old = events.expect("started", "w")

        os.kill(old, signal.SIGKILL)

        new = events.expect("started", "w")
        settle(handle)
        assert new != old
        assert otp_fields(handle.which_child("w")) == otp_fields(
            ChildInfo("w", new, ChildType.WORKER, Restart.PERMANENT, start_info=[1, 2, 3])
        )

    def test_children_without_info_have_none(self, start_tree, events: EventSink) -> None:
        """An IMMEDIATE child, and a NOTIFY child that passes nothing, have no start info."""
        handle = start_tree(
            [
                ChildSpec("immediate", sleep_with),
                ChildSpec("notify", notify_then_sleep, start_mode=StartMode.NOTIFY),
            ]
        )

        assert [i.start_info for i in handle.which_children()] == [None, None]

    def test_unpicklable_start_info_is_a_start_error(self, start_tree, events: EventSink) -> None:
        """An info that cannot be pickled fails the start with a TypeError naming it; nothing is stored."""
        handle = start_tree([worker(events, "a")])
        before = pids(handle)

        with pytest.raises(StartError) as info:
            handle.start_child(ChildSpec("bad", notify_with_unpicklable_info, start_mode=StartMode.NOTIFY))

        cause = info.value.__cause__
        assert isinstance(cause, TypeError)
        assert "notify_ready: 'info' must be picklable" in str(cause)
        assert pids(handle) == before
        assert handle.start_child(info_child(events, "good", "ok")) is not None
        assert handle.which_child("good").start_info == "ok"

    def test_start_info_the_supervisor_cannot_load_fails_the_start(
        self, start_tree, events: EventSink
    ) -> None:
        """An info that loads in the child but not in its supervisor: the child is killed, the start
        fails with a reason saying why, and the supervisor goes on."""
        handle = start_tree([worker(events, "a")])
        before = pids(handle)

        with pytest.raises(StartError) as info:
            handle.start_child(
                ChildSpec("bad", notify_with_info_only_this_process_loads, start_mode=StartMode.NOTIFY)
            )

        cause = info.value.__cause__
        assert isinstance(cause, RuntimeError)
        assert "could not read a report" in str(cause)
        assert "loads only in pid" in str(cause)
        assert pids(handle) == before


class TestWhichChild:
    def test_which_children(self, start_tree, events: EventSink) -> None:
        """``which_child`` by id: the same entry as ``which_children``, also after terminate and delete."""
        handle = start_tree([worker(events, "a"), worker(events, "b", restart=Restart.TRANSIENT)])
        started = events.expect_all("started", "ab")

        assert handle.which_child("b") == handle.which_children()[1]
        assert otp_fields(handle.which_child("b")) == otp_fields(
            ChildInfo("b", started["b"], ChildType.WORKER, Restart.TRANSIENT)
        )
        handle.terminate_child("b")
        assert otp_fields(handle.which_child("b")) == otp_fields(
            ChildInfo("b", None, ChildType.WORKER, Restart.TRANSIENT)
        )
        handle.delete_child("b")
        with pytest.raises(ChildNotFoundError) as info:
            handle.which_child("b")
        assert info.value.child_id == "b"
        assert "which_child" in str(info.value)
        assert handle.which_child("a").pid == started["a"]

    def test_which_child_of_a_forgotten_temporary_child_is_not_found(
        self, start_tree, events: EventSink
    ) -> None:
        """A terminated temporary child is forgotten: ``which_child`` then raises ChildNotFoundError."""
        handle = start_tree([worker(events, "t", restart=Restart.TEMPORARY)])

        handle.terminate_child("t")

        with pytest.raises(ChildNotFoundError):
            handle.which_child("t")


class TestGetChildspec:
    def test_sup_start_map_get_childspec_defaults_filled_in(self, start_tree, events: EventSink) -> None:
        """``get_childspec`` returns every field, defaults filled in (a supervisor's shutdown: infinity)."""
        given = ChildSpec("w", sleep_with, args=(1, 2), kwargs={"k": "v"})
        nested = ChildSpec.supervisor("sub", [ChildSpec("inner", sleep_with)], Strategy.ONE_FOR_ALL)
        handle = start_tree([given, nested])

        spec = handle.get_childspec("w")

        assert spec == given
        assert (spec.restart, spec.shutdown, spec.type, spec.start_mode, spec.start_timeout) == (
            Restart.PERMANENT,
            5.0,
            ChildType.WORKER,
            StartMode.IMMEDIATE,
            None,
        )
        assert (spec.args, spec.kwargs) == ((1, 2), {"k": "v"})
        sub = handle.get_childspec("sub")
        assert sub.shutdown is Shutdown.INFINITY
        assert sub.nested == SupervisorSpec([ChildSpec("inner", sleep_with)], Strategy.ONE_FOR_ALL)

    def test_sup_start_map_faulty_specs(self, start_tree, events: EventSink) -> None:
        """
        OTP's ``missing_id`` and ``missing_start`` are TypeErrors naming the missing field, raised when the
        ChildSpec is built; a child that is not a ChildSpec (OTP's ``invalid_child_spec``) is a TypeError
        naming ``children`` at start (nothing starts) or ``spec`` in start_child (nothing changes). OTP
        ignores unknown keys of a spec map; keyword arguments cannot be ignored: a TypeError names one.
        """
        with pytest.raises(TypeError, match="'id'"):
            ChildSpec(start=sleep_with)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="'start'"):
            ChildSpec(id="x")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="'modules'"):
            ChildSpec("x", sleep_with, modules=["m"])  # type: ignore[call-arg]
        as_map = {"id": "x", "start": sleep_with}
        with pytest.raises(TypeError, match="'children' must be a list of ChildSpec"):
            Supervisor.start([worker(events, "a"), as_map])  # type: ignore[list-item]
        assert [e for e in events.pending() if e[0] == "started"] == []

        handle = start_tree([worker(events, "a")])
        before = pids(handle)
        with pytest.raises(TypeError, match="'spec' must be a ChildSpec"):
            handle.start_child(as_map)  # type: ignore[arg-type]

        assert pids(handle) == before
        assert handle.count_children().specs == 1

    def test_temporary_childs_spec_comes_back_without_args(self, start_tree) -> None:
        """A started temporary child's spec has empty args and kwargs: they are not stored."""
        handle = start_tree([])
        handle.start_child(
            ChildSpec("t", sleep_with, args=("big",), kwargs={"k": 1}, restart=Restart.TEMPORARY)
        )

        spec = handle.get_childspec("t")

        assert (spec.id, spec.start, spec.restart) == ("t", sleep_with, Restart.TEMPORARY)
        assert (spec.args, spec.kwargs) == ((), {})

    def test_get_childspec_of_an_unknown_id_is_not_found(self, start_tree, events: EventSink) -> None:
        """An unknown id raises ChildNotFoundError naming the call and the id."""
        handle = start_tree([worker(events, "a")])

        with pytest.raises(ChildNotFoundError) as info:
            handle.get_childspec("nope")

        assert info.value.child_id == "nope"
        assert "get_childspec" in str(info.value)


class TestBadArguments:
    """Bad arguments are refused at the caller, by name, before anything is sent or started."""

    def test_supervisor_from_refuses_a_non_callable_init(self) -> None:
        with pytest.raises(TypeError, match="'init' must be a callable"):
            ChildSpec.supervisor_from("sub", 42)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["start", "args", "kwargs", "type", "start_mode"])
    def test_supervisor_from_refuses_the_fields_it_sets(self, field: str) -> None:
        with pytest.raises(TypeError, match=f"'{field}' is set by supervisor_from"):
            ChildSpec.supervisor_from("sub", init_ignore, **{field: None})

    def test_supervisor_from_validates_its_spec_options(self) -> None:
        with pytest.raises(TypeError, match="'restart'"):
            ChildSpec.supervisor_from("sub", init_ignore, restart="permanent")
        with pytest.raises(ValueError, match="'id'"):
            ChildSpec.supervisor_from("a/b", init_ignore)

    def test_start_from_refuses_a_non_callable_init(self) -> None:
        with pytest.raises(TypeError, match="'init' must be a callable"):
            Supervisor.start_from("not a function")  # type: ignore[arg-type]

    def test_start_from_refuses_bad_options(self) -> None:
        with pytest.raises(TypeError, match="'logging_config'"):
            Supervisor.start_from(init_ignore, logging_config=5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'env'"):
            Supervisor.start_from(init_ignore, env=["A=1"])  # type: ignore[arg-type]

    def test_start_from_refuses_unpicklable_args(self) -> None:
        with pytest.raises(TypeError, match="start_from: cannot send the init function"):
            Supervisor.start_from(init_bad_return, Unpicklable())

    def test_which_child_and_get_childspec_refuse_a_non_str_id(self, start_tree) -> None:
        handle = start_tree([])
        with pytest.raises(TypeError, match="'child_id' must be a str"):
            handle.which_child(1.5)
        with pytest.raises(TypeError, match="'child_id' must be a str"):
            handle.get_childspec(None)
        with pytest.raises(ChildNotFoundError):  # a pid: OTP's not_found on a static supervisor
            handle.which_child(1)

    def test_ignore_is_a_single_exported_value(self) -> None:
        """``IGNORE`` is one value that survives a pickle round trip as itself."""
        import pickle

        assert pickle.loads(pickle.dumps(IGNORE)) is IGNORE
