"""
simple_one_for_one, named after OTP's supervisor_SUITE scenarios: one template, children started with
extra args and known by pid, parallel shutdown under one timer, and the counts and errors OTP gives.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    ChildCounts,
    ChildInfo,
    ChildNotFoundError,
    ChildSpec,
    ChildType,
    ExitKind,
    Restart,
    Shutdown,
    SimpleOneForOneError,
    StartError,
    StartMode,
    Strategy,
    SupervisorHandle,
)
from supervisor.testing import wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    Tracked,
    crash_before_ready,
    decline,
    decline_after_first,
    fail_if_marker,
    hold_cleanup_until_sigusr1,
    report_then_sleep,
    sleep_with,
)
from tests.dynamic_children import behave, report_args

from .conftest import LogFile
from .helpers import assert_stop_signals_every_child_at_once, kill, otp_fields, sofo_settle

SOFO = Strategy.SIMPLE_ONE_FOR_ONE


def counts(handle: SupervisorHandle) -> list[int]:
    """``count_children`` as OTP's test writes it: [specs, active, supervisors, workers]."""
    c = handle.count_children()
    return [c.specs, c.active, c.supervisors, c.workers]


def template(events: EventSink, **fields: Any) -> ChildSpec:
    """A template whose children report ``started``/``stopping`` under the key given to start_child."""
    fields.setdefault("start_mode", StartMode.NOTIFY)
    return ChildSpec("w", report_then_sleep, args=(events.path,), **fields)


def refusing_template(events: EventSink, marker: Path, **fields: Any) -> ChildSpec:
    """A template whose children report ``started``, and fail to start (``refused``) while *marker* exists."""
    return ChildSpec(
        "w", fail_if_marker, args=(str(marker), events.path), start_mode=StartMode.NOTIFY, **fields
    )


def start_restart_loop_tree(start_tree, events: EventSink, tmp_path: Path) -> tuple[SupervisorHandle, Path]:
    """A supervisor of :func:`refusing_template` children, intensity too high to reach; and its marker."""
    marker = tmp_path / "fail"
    template = refusing_template(events, marker, shutdown=Shutdown.BRUTAL_KILL)
    return start_tree([template], SOFO, max_restarts=1_000_000, max_seconds=3600), marker


def fail_restart(handle: SupervisorHandle, events: EventSink, marker: Path, pid: int, key: str) -> None:
    """Create *marker* and SIGKILL the child *key* (pid *pid*); return once its restart has failed."""
    marker.touch()
    os.kill(pid, signal.SIGKILL)
    events.expect("refused", key)
    sofo_settle(handle)  # behind the restart that failed: the child is restarting from now on


class TestStartStop:
    def test_start_starts_no_child_and_bad_start_spec_is_refused(self, start_tree) -> None:
        """The template is not started; zero or two specs are OTP's bad_start_spec, named."""
        handle = start_tree([ChildSpec("w", sleep_with)], SOFO)

        assert handle.which_children() == []
        assert counts(handle) == [1, 0, 0, 0]
        for specs in ([], [ChildSpec("a", sleep_with), ChildSpec("b", sleep_with)]):
            with pytest.raises(ValueError, match=r"'children' must be exactly one ChildSpec.*bad_start_spec"):
                start_tree(specs, SOFO)

    def test_sup_stop_timeout_dynamic(self, start_tree, events: EventSink, log_file: LogFile) -> None:
        """At stop a compliant child exits shutdown; one ignoring SIGTERM is killed when the timer ends."""
        spec = ChildSpec("w", behave, args=(events.path,), shutdown=2.0)
        handle = start_tree([spec], SOFO, logging_config=log_file.config)
        good = handle.start_child("run", "good")
        stubborn = handle.start_child("ignore_sigterm", "stubborn")
        events.expect_all("started", {"good", "stubborn"})

        handle.stop()

        assert wait_gone([good, stubborn], HANG_TIMEOUT) == []
        assert events.expect("stopping", "good") == good
        errors = [line for line in log_file.read().splitlines() if "shutdown_error" in line]
        assert len(errors) == 1 and "reason=killed" in errors[0]
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_sup_stop_brutal_kill_dynamic(self, start_tree, events: EventSink, log_file: LogFile) -> None:
        """brutal_kill children are SIGKILLed at stop (no shutdown path runs); killed is expected."""
        handle = start_tree(
            [template(events, shutdown=Shutdown.BRUTAL_KILL)], SOFO, logging_config=log_file.config
        )
        pids = [handle.start_child(key) for key in range(10)]
        events.expect_all("started", range(10))

        handle.stop()

        assert wait_gone([p for p in pids if p is not None], HANG_TIMEOUT) == []
        assert [e for e in events.pending() if e[0] == "stopping"] == []
        assert "shutdown_error" not in log_file.read()

    def test_sup_stop_non_shutdown_exit_dynamic(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """A child exiting another way during the stop keeps its reason (shutdown_error); the stop ends."""
        spec = ChildSpec("w", behave, args=(events.path,), shutdown=HANG_TIMEOUT)
        handle = start_tree([spec], SOFO, logging_config=log_file.config)
        handle.start_child("run", "good")
        handle.start_child("crash_on_stop", "bad")
        events.expect_all("started", {"good", "bad"})

        handle.stop()

        events.expect_all("stopping", {"good", "bad"})
        errors = [line for line in log_file.read().splitlines() if "shutdown_error" in line]
        assert len(errors) == 1 and "ValueError: kaboom" in errors[0]
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN


class TestAdmin:
    def test_child_adm_simple(self, start_tree, events: EventSink) -> None:
        """The admin life cycle: starts by extra args, terminate by pid (idempotent), OTP's errors."""
        handle = start_tree([template(events)], SOFO)
        assert (handle.which_children(), counts(handle)) == ([], [1, 0, 0, 0])

        first = handle.start_child("c1")
        assert [otp_fields(c) for c in handle.which_children()] == [
            otp_fields(ChildInfo(None, first, ChildType.WORKER, Restart.PERMANENT))
        ]
        assert counts(handle) == [1, 1, 0, 1]
        second = handle.start_child("c2")
        assert {c.pid for c in handle.which_children()} == {first, second}
        assert counts(handle) == [1, 2, 0, 2]

        handle.terminate_child(first)
        assert events.expect("stopping", "c1") == first
        assert [c.pid for c in handle.which_children()] == [second]
        assert counts(handle) == [1, 1, 0, 1]
        handle.terminate_child(first)  # a dead pid: ok

        for call in (handle.restart_child, handle.delete_child, handle.terminate_child):
            with pytest.raises(SimpleOneForOneError) as info:
                call("w")
            assert info.value.call == call.__name__
        with pytest.raises(ChildNotFoundError) as not_found:
            handle.terminate_child(os.getpid())  # alive, not a child
        assert not_found.value.child_id == os.getpid()
        with pytest.raises(TypeError, match="'child_id'"):
            handle.terminate_child(1.5)
        assert [c.pid for c in handle.which_children()] == [second]

    def test_which_child_and_get_childspec_take_a_pid(self, start_tree, events: EventSink) -> None:
        """which_child and get_childspec find a child by pid (the template's id, args with the extras)."""
        handle = start_tree([template(events)], SOFO)
        pid = handle.start_child("c1")

        assert otp_fields(handle.which_child(pid)) == otp_fields(
            ChildInfo(None, pid, ChildType.WORKER, Restart.PERMANENT)
        )
        spec = handle.get_childspec(pid)
        assert (spec.id, spec.args) == ("w", (events.path, "c1"))
        for call in (handle.which_child, handle.get_childspec):
            with pytest.raises(SimpleOneForOneError):
                call("w")
            with pytest.raises(ChildNotFoundError):
                call(os.getpid())

    def test_sup_start_map_simple(self, start_tree) -> None:
        """
        A template given with only id, start and args: ``get_childspec`` of a child, by pid, has every
        default filled in (OTP's) and the template's args followed by the extra ones; its id is None.
        """
        handle = start_tree([ChildSpec("w", sleep_with, args=("t",))], SOFO)
        pid = handle.start_child("extra")
        assert pid is not None

        spec = handle.get_childspec(pid)

        assert spec == ChildSpec("w", sleep_with, args=("t", "extra"))
        assert (spec.restart, spec.shutdown, spec.type, spec.significant) == (
            Restart.PERMANENT,
            5.0,
            ChildType.WORKER,
            False,
        )
        assert (spec.start_mode, spec.start_timeout, spec.kwargs) == (StartMode.IMMEDIATE, None, {})
        assert handle.which_child(pid).id is None

    def test_a_pid_is_not_found_on_a_static_supervisor(self, start_tree) -> None:
        """terminate_child with a pid on a one_for_one supervisor is OTP's not_found, even its child's pid."""
        handle = start_tree([ChildSpec("a", sleep_with)])
        pid = handle.which_children()[0].pid
        assert pid is not None

        with pytest.raises(ChildNotFoundError) as info:
            handle.terminate_child(pid)

        assert info.value.child_id == pid
        assert handle.which_children()[0].pid == pid

    def test_which_children_simple_one_for_one(self, start_tree, events: EventSink) -> None:
        """which_children lists every child once, id None, in no defined order; terminated ones go."""
        handle = start_tree([template(events, restart=Restart.TRANSIENT)], SOFO)
        pids = {handle.start_child(key) for key in range(5)}

        infos = handle.which_children()

        assert {info.pid for info in infos} == pids and len(infos) == 5
        assert {(i.id, i.type, i.restart, i.restarting) for i in infos} == {
            (None, ChildType.WORKER, Restart.TRANSIENT, False)
        }
        gone = pids.pop()
        handle.terminate_child(gone)
        assert {info.pid for info in handle.which_children()} == pids

    def test_sup_start_child_returns_error_simple(self, start_tree) -> None:
        """A failed start raises StartError with the child's exception; nothing is stored."""
        handle = start_tree([ChildSpec("w", crash_before_ready, start_mode=StartMode.NOTIFY)], SOFO)

        with pytest.raises(StartError) as info:
            handle.start_child("cannot start here")

        assert info.value.child_id == "w"
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "cannot start here" in str(info.value.__cause__)
        assert (handle.which_children(), counts(handle)) == ([], [1, 0, 0, 0])

    @pytest.mark.parametrize("restart", [Restart.TEMPORARY, Restart.PERMANENT])
    def test_sup_start_ignore_child_start_child_simple(self, start_tree, restart: Restart) -> None:
        """
        sup_start_ignore_temporary_child_start_child_simple and
        sup_start_ignore_permanent_child_start_child_simple: ignore returns None, stores nothing,
        and the supervisor still stops with reason shutdown.
        """
        handle = start_tree([ChildSpec("w", decline, restart=restart, start_mode=StartMode.NOTIFY)], SOFO)

        assert handle.start_child() is None

        assert (handle.which_children(), counts(handle)) == ([], [1, 0, 0, 0])
        handle.stop()
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_nested_simple_one_for_one_and_its_handle(self, start_tree, events: EventSink) -> None:
        """ChildSpec.supervisor(..., SIMPLE_ONE_FOR_ONE) nests one; its handle starts children by extras."""
        nested = ChildSpec.supervisor("pool", [template(events)], SOFO)
        handle = start_tree([nested])
        pool = handle.child_supervisor("pool")

        pid = pool.start_child("n1")

        assert events.expect("started", "n1") == pid
        assert [(c.id, c.pid) for c in pool.which_children()] == [(None, pid)]
        assert counts(pool) == [1, 1, 0, 1]
        assert [c.id for c in handle.which_children()] == ["pool"]


class TestRestarts:
    def test_simple_one_for_one(self, start_tree, events: EventSink) -> None:
        """Only the dead child restarts, with a new pid; the (intensity+1)-th restart stops the supervisor."""
        handle = start_tree([template(events)], SOFO, max_restarts=2, max_seconds=3600)
        first, second = handle.start_child("c1"), handle.start_child("c2")
        assert events.expect_all("started", {"c1", "c2"}) == {"c1": first, "c2": second}
        assert first is not None and second is not None

        kill(first)
        again = events.expect("started", "c1")
        assert again != first
        assert {c.pid for c in handle.which_children()} == {again, second}
        kill(second)
        events.expect("started", "c2")
        sofo_settle(handle)
        assert not handle.stopped

        kill(again)

        assert wait_gone([handle.pid], HANG_TIMEOUT) == []
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_simple_one_for_one_extra(self, start_tree, events: EventSink) -> None:
        """A child gets the template's args then the extra args, and keeps them when restarted."""
        spec = ChildSpec("w", report_args, args=(events.path, "t1", "t2"), start_mode=StartMode.NOTIFY)
        handle = start_tree([spec], SOFO)

        pid = handle.start_child("e1", 2)

        assert events.next()[1:] == (("t1", "t2", "e1", 2), pid)
        kill(pid)
        kind, args, again = events.next()
        assert (kind, args) == ("args", ("t1", "t2", "e1", 2)) and again != pid

    def test_simple_one_for_one_escalation(self, start_tree, events: EventSink, tmp_path: Path) -> None:
        """A child whose restarts keep failing exhausts intensity: the supervisor dies, its children too."""
        marker = tmp_path / "fail"
        handle = start_tree([refusing_template(events, marker)], SOFO, max_restarts=4, max_seconds=3600)
        failing = handle.start_child("c1")
        sibling = handle.start_child("c2")
        assert failing is not None and sibling is not None
        marker.touch()

        os.kill(failing, signal.SIGKILL)

        assert wait_gone([handle.pid, sibling], HANG_TIMEOUT) == []
        assert handle.exit_reason is not None and handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_simple_one_for_one_restart_ignore(self, start_tree, events: EventSink, tmp_path: Path) -> None:
        """A restart that returns ignore drops the child."""
        spec = ChildSpec(
            "w", decline_after_first, args=(str(tmp_path / "ran"), events.path), start_mode=StartMode.NOTIFY
        )
        handle = start_tree([spec], SOFO)
        pid = handle.start_child("c1")
        assert events.expect("started", "c1") == pid
        assert pid is not None

        kill(pid)
        sofo_settle(handle)

        assert (handle.which_children(), counts(handle)) == ([], [1, 0, 0, 0])

    def test_simple_one_for_one_corruption(self, start_tree, events: EventSink) -> None:
        """A temporary child's args are not kept: the supervisor frees them once it has started."""
        spec = ChildSpec("w", sleep_with, restart=Restart.TEMPORARY)
        handle = start_tree([spec], SOFO)

        pid = handle.start_child(Tracked(events.path, "extra"))

        while True:
            kind, key, freed_by = events.next()
            if (kind, key, freed_by) == ("freed", "extra", handle.pid):
                break
        assert [c.pid for c in handle.which_children()] == [pid]
        handle.terminate_child(pid)
        assert handle.which_children() == []

    def test_temporary_and_transient_children_that_end_are_dropped(
        self, start_tree, events: EventSink
    ) -> None:
        """A child not restarted (transient exiting normally, temporary) is dropped (del_child)."""
        for restart in (Restart.TRANSIENT, Restart.TEMPORARY):
            handle = start_tree([template(events, restart=restart)], SOFO)
            pid = handle.start_child(restart.value)
            assert pid is not None
            os.kill(pid, signal.SIGTERM)  # exits with reason shutdown: a normal exit
            assert events.expect("stopping", restart.value) == pid
            assert wait_gone([pid], HANG_TIMEOUT) == []
            sofo_settle(handle)
            assert counts(handle) == [1, 0, 0, 0]


class TestCounts:
    def test_count_children(self, start_tree) -> None:
        """specs is 1 (the template); active and workers follow the children."""
        handle = start_tree([ChildSpec("w", sleep_with, restart=Restart.TEMPORARY)], SOFO)
        pids = [handle.start_child(n) for n in range(20)]
        assert counts(handle) == [1, 20, 0, 20]

        for pid in pids[:5]:
            handle.terminate_child(pid)

        assert counts(handle) == [1, 15, 0, 15]

    def test_count_children_supervisor(self, start_tree) -> None:
        """Children from a supervisor template count as supervisors."""
        sub = ChildSpec.supervisor("sub", [], Strategy.ONE_FOR_ONE, restart=Restart.TEMPORARY)
        handle = start_tree([sub], SOFO)
        pids = [handle.start_child() for _ in range(5)]

        assert counts(handle) == [1, 5, 5, 0]
        nested = handle.child_supervisor(pids[0])
        assert nested.which_children() == []
        handle.terminate_child(pids[0])
        assert counts(handle) == [1, 4, 4, 0]

    def test_count_restarting_children(self, start_tree, events: EventSink, tmp_path: Path) -> None:
        """A child whose restart keeps failing is counted, but not as active."""
        handle, marker = start_restart_loop_tree(start_tree, events, tmp_path)
        pids = [handle.start_child(key) for key in ("c1", "c2", "c3")]
        assert counts(handle) == [1, 3, 0, 3]

        fail_restart(handle, events, marker, pids[0], "c1")

        assert counts(handle) == [1, 2, 0, 3]
        handle.terminate_child(pids[0])  # its old pid ends the loop
        assert counts(handle) == [1, 2, 0, 2]

    def test_hanging_restart_loop_simple(self, start_tree, events: EventSink, tmp_path: Path) -> None:
        """While a restart is retried: restarting in which_children, OTP's errors; terminate_child ends it."""
        handle, marker = start_restart_loop_tree(start_tree, events, tmp_path)
        pid = handle.start_child("c1")
        assert pid is not None

        fail_restart(handle, events, marker, pid, "c1")

        with pytest.raises(SimpleOneForOneError):
            handle.restart_child("w")
        with pytest.raises(SimpleOneForOneError):
            handle.delete_child("w")
        assert [otp_fields(c) for c in handle.which_children()] == [
            otp_fields(ChildInfo(None, None, ChildType.WORKER, Restart.PERMANENT, restarting=True))
        ]
        assert counts(handle) == [1, 0, 0, 1]
        handle.terminate_child(pid)
        assert (handle.which_children(), counts(handle)) == ([], [1, 0, 0, 0])
        marker.unlink()
        assert handle.start_child("c2") is not None  # the supervisor is still serving


class TestShutdownAndScale:
    def test_simple_one_for_one_shutdown(self, start_tree, events: EventSink) -> None:
        """The stop signals every child at once: all are stopping before any has exited."""
        spec = ChildSpec("w", hold_cleanup_until_sigusr1, args=(events.path,), shutdown=HANG_TIMEOUT)
        handle = start_tree([spec], SOFO)
        pids = {key: handle.start_child(key) for key in range(3)}
        events.expect_all("started", range(3))

        assert_stop_signals_every_child_at_once(handle, events, pids)

    def test_simple_one_for_one_scale_many_temporary_children(self, start_tree) -> None:
        """Hundreds of temporary children start, are listed and counted, and stop with the supervisor."""
        handle = start_tree([ChildSpec("w", sleep_with, restart=Restart.TEMPORARY)], SOFO)

        pids = [handle.start_child(n) for n in range(300)]

        assert len(set(pids)) == 300 and None not in pids
        assert {c.pid for c in handle.which_children()} == set(pids)
        assert handle.count_children() == ChildCounts(specs=1, active=300, supervisors=0, workers=300)
        handle.stop()
        assert wait_gone([p for p in pids if p is not None], HANG_TIMEOUT) == []


@pytest.mark.parametrize("pid", [2**63, 0, -1])
def test_a_pid_no_process_can_have_is_a_dead_pid_and_the_supervisor_keeps_running(
    start_tree, pid: int
) -> None:
    """A pid no process can have is a dead pid (OTP: ok), not a crash of the loop (it was OverflowError)."""
    handle = start_tree([ChildSpec("w", sleep_with, restart=Restart.TEMPORARY)], SOFO)
    child = handle.start_child(1)
    assert handle.terminate_child(pid) is None
    assert [info.pid for info in handle.which_children()] == [child]
