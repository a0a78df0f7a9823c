"""Stopping a tree: reverse start order, each child by its shutdown spec, and the handle after a stop."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

from supervisor import (
    ChildSpec,
    ExitKind,
    HandleClosedError,
    Restart,
    Shutdown,
    StartMode,
    Supervisor,
    SupervisorGoneError,
)
from supervisor.testing import wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    cleanup_in_finally,
    close_fds_then_sleep,
    end_on_sigusr1,
    hold_cleanup_until_sigusr1,
    ignore_sigterm,
    miss_first_sigterm,
    report_never_ready,
    return_at_once,
    sleep_in_try_finally,
    slow_to_stop,
)

from .conftest import LogFile
from .helpers import pids, settle, worker


def stubborn(events: EventSink, child_id: str, shutdown: float | Shutdown) -> ChildSpec:
    """A child that ignores SIGTERM, reporting ``started`` once it does."""
    return ChildSpec(child_id, ignore_sigterm, args=(events.path, child_id), shutdown=shutdown)


class TestStopOrder:
    def test_children_stop_in_reverse_start_order(self, start_tree, events: EventSink) -> None:
        """``stop`` signals the children one at a time, last started first."""
        handle = start_tree([worker(events, "a"), worker(events, "b"), worker(events, "c")])
        events.expect_all("started", {"a", "b", "c"})

        handle.stop()

        assert [events.next()[1] for _ in range(3)] == ["c", "b", "a"]
        assert ExitKind.SHUTDOWN is handle.exit_reason.kind

    def test_nested_supervisor_stops_its_children_in_its_turn(self, start_tree, events: EventSink) -> None:
        """A nested supervisor stops its own children, in reverse, when its turn comes."""
        inner = ChildSpec.supervisor("inner", [worker(events, "w1"), worker(events, "w2")])
        handle = start_tree([worker(events, "a"), inner, worker(events, "c")])
        events.expect_all("started", {"a", "w1", "w2", "c"})

        handle.stop()

        assert [events.next()[1] for _ in range(4)] == ["c", "w2", "w1", "a"]


class TestShutdownSpecs:
    def test_sigterm_ignoring_child_is_killed_after_its_shutdown_time(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """A child ignoring SIGTERM is SIGKILLed after its shutdown seconds, logged as a shutdown_error."""
        handle = start_tree(
            [worker(events, "a"), stubborn(events, "stubborn", 0.5)], logging_config=log_file.config
        )
        pid = events.expect("started", "stubborn")

        handle.stop(timeout=HANG_TIMEOUT)

        assert wait_gone([pid], HANG_TIMEOUT) == []
        assert events.next()[:2] == ("stopping", "a")
        text = log_file.read()
        assert "shutdown_error: child 'stubborn'" in text
        assert "reason=killed (SIGKILL)" in text
        assert "shutdown_error: child 'a'" not in text

    def test_brutal_kill_kills_without_sigterm(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """A ``BRUTAL_KILL`` child gets SIGKILL at once: its shutdown path never runs; nothing is logged."""
        specs = [worker(events, "a"), worker(events, "k", shutdown=Shutdown.BRUTAL_KILL), worker(events, "c")]
        handle = start_tree(specs, logging_config=log_file.config)
        events.expect_all("started", {"a", "k", "c"})

        handle.stop()

        assert [events.next()[1] for _ in range(2)] == ["c", "a"]
        assert "shutdown_error" not in log_file.read()

    def test_sup_stop_infinity_waits_for_a_slow_child(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """An ``INFINITY`` child is never killed: its slow cleanup completes before the supervisor exits."""
        spec = ChildSpec(
            "slow",
            slow_to_stop,
            args=(events.path, "slow", 1.0),
            start_mode=StartMode.NOTIFY,
            shutdown=Shutdown.INFINITY,
        )
        handle = start_tree([spec], logging_config=log_file.config)
        events.expect("started", "slow")

        handle.stop()

        assert [events.next()[:2] for _ in range(2)] == [("stopping", "slow"), ("cleaned", "slow")]
        assert "shutdown_error" not in log_file.read()
        assert ExitKind.SHUTDOWN is handle.exit_reason.kind

    def test_numeric_shutdown_kills_a_slow_child_at_its_deadline(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """The same slow child under a short numeric shutdown is killed before its cleanup ends."""
        spec = ChildSpec(
            "slow", slow_to_stop, args=(events.path, "slow", 60.0), start_mode=StartMode.NOTIFY, shutdown=0.2
        )
        handle = start_tree([spec], logging_config=log_file.config)
        events.expect("started", "slow")

        handle.stop()

        assert events.next()[:2] == ("stopping", "slow")
        assert "reason=killed (SIGKILL)" in log_file.read()

    def test_child_that_closed_its_pipes_cannot_hang_terminate_child(
        self, start_tree, events: EventSink
    ) -> None:
        """A child that closed its report pipe is still stopped through its pidfd (OTP's child_unlink)."""
        spec = ChildSpec("cut", close_fds_then_sleep, args=(events.path, "cut"))
        handle = start_tree([worker(events, "a"), spec])
        pid = events.expect("started", "cut")

        handle.terminate_child("cut")

        assert wait_gone([pid], HANG_TIMEOUT) == []
        assert pids(handle)["cut"] is None


RACE_EXITS = {
    # how a child ends on its own during the stop: its reason as logged, expected of a non-permanent child?
    "return": ("normal", True),
    "sigterm": ("shutdown", True),
    "shutdown_exit": ("shutdown('bye')", True),
    "exception": ("exception builtins.ValueError: boom", False),
}


def race_the_stop(start_tree, events: EventSink, log_file: LogFile) -> tuple[Any, dict[str, Any]]:
    """
    OTP's sup_stop_race: a temporary ``a``, one child per restart type and way of ending (RACE_EXITS),
    and ``z`` last, whose cleanup holds the stop. While ``z`` is stopping, every racer ends on its own;
    once they are gone ``z`` finishes. Return the handle (stopped) and the racers: id to (restart, how).
    """
    racers = {f"{restart.value}-{how}": (restart, how) for restart in Restart for how in RACE_EXITS}
    specs = [worker(events, "a", restart=Restart.TEMPORARY)]
    specs += [
        ChildSpec(
            key,
            end_on_sigusr1,
            args=(events.path, key, how),
            restart=restart,
            start_mode=StartMode.NOTIFY,
            shutdown=HANG_TIMEOUT,
        )
        for key, (restart, how) in racers.items()
    ]
    specs.append(ChildSpec("z", hold_cleanup_until_sigusr1, args=(events.path, "z"), shutdown=HANG_TIMEOUT))
    handle = start_tree(specs, max_restarts=100, logging_config=log_file.config)
    started = events.expect_all("started", ["a", *racers, "z"])
    stopper = threading.Thread(target=handle.stop)

    stopper.start()
    try:
        events.expect("stopping", "z")
        for key in racers:
            os.kill(started[key], signal.SIGUSR1)
        assert wait_gone([started[key] for key in racers], HANG_TIMEOUT) == []
    finally:
        os.kill(started["z"], signal.SIGUSR1)
        stopper.join(HANG_TIMEOUT)

    assert not stopper.is_alive()
    assert events.expect("stopping", "a") == started["a"]
    return handle, racers


def test_sup_stop_race(start_tree, events: EventSink, log_file: LogFile) -> None:
    """
    Children of each restart type ending on their own (normal, shutdown, shutdown with a term, a crash)
    while the stop waits on a later child do not disturb it: none is restarted or reported as a
    child_terminated, the first child is stopped in its turn, and the supervisor exits shutdown.
    """
    handle, _ = race_the_stop(start_tree, events, log_file)

    assert handle.exit_reason.kind is ExitKind.SHUTDOWN
    assert [e for e in events.pending() if e[0] == "started"] == []
    text = log_file.read()
    assert "child_terminated" not in text
    assert "shutdown_error: child 'a'" not in text and "shutdown_error: child 'z'" not in text


def test_sup_stop_race_unexpected_reasons_are_shutdown_errors(
    start_tree, events: EventSink, log_file: LogFile
) -> None:
    """
    The racers keep their reasons: each unexpected one (a crash; for a permanent child, normal and
    shutdown with a term too) is a shutdown_error naming it, as when OTP's shutdown finds the child
    already dead; the expected ones are not reported.
    """
    _, racers = race_the_stop(start_tree, events, log_file)

    errors = [line for line in log_file.read().splitlines() if "shutdown_error" in line]
    unexpected = {
        key
        for key, (restart, how) in racers.items()
        if not RACE_EXITS[how][1] or (restart is Restart.PERMANENT and how != "sigterm")
    }
    for key in unexpected:
        restart, how = racers[key]
        line = f"shutdown_error: child '{key}' ({restart.value}, worker) reason={RACE_EXITS[how][0]}"
        assert any(line in error for error in errors), line
    assert {key for key in racers if any(f"child '{key}'" in line for line in errors)} == unexpected


class TestSigterm:
    def test_a_stop_does_not_cut_short_the_cleanup_a_terminate_child_began(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """``stop`` during a child's ``terminate_child`` cleanup lets the cleanup finish (no new SIGTERM)."""
        spec = ChildSpec(
            "slow",
            cleanup_in_finally,
            args=(events.path, "slow", 2.0),
            start_mode=StartMode.NOTIFY,
            shutdown=HANG_TIMEOUT,
        )
        handle = start_tree([spec], logging_config=log_file.config)
        events.expect("started", "slow")
        outcome: list[BaseException] = []

        def terminate() -> None:
            try:
                handle.terminate_child("slow")
            except BaseException as error:
                outcome.append(error)

        caller = threading.Thread(target=terminate)
        caller.start()
        events.expect("stopping", "slow")
        handle.stop(timeout=HANG_TIMEOUT)
        caller.join(HANG_TIMEOUT)

        assert events.next()[:2] == ("cleaned", "slow")
        assert len(outcome) == 1 and isinstance(outcome[0], SupervisorGoneError)
        assert "shutdown_error" not in log_file.read()

    def test_a_lost_sigterm_is_sent_again_until_the_child_stops(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """A child whose first SIGTERM was never handled gets another, and its ``finally`` runs."""
        spec = ChildSpec("deaf", miss_first_sigterm, args=(events.path, "deaf"), shutdown=10.0)
        handle = start_tree([spec], logging_config=log_file.config)
        events.expect("started", "deaf")

        handle.terminate_child("deaf")

        assert [events.next()[:2] for _ in range(2)] == [("missed", "deaf"), ("cleaned", "deaf")]
        assert "shutdown_error" not in log_file.read()

    def test_immediate_children_terminated_at_once_are_never_killed(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """Start then terminate at once, many times: each child stops on SIGTERM, its ``finally`` run."""
        handle = start_tree([], logging_config=log_file.config)

        for cycle in range(50):
            spec = ChildSpec(
                f"c{cycle}", sleep_in_try_finally, args=(events.path, cycle), restart=Restart.TEMPORARY
            )
            handle.start_child(spec)
            handle.terminate_child(spec.id)
            # The child has exited: what it reported is queued. A SIGTERM may come before its ``try``.
            kinds = {kind for kind, _, _ in events.pending()}
            assert kinds in (set(), {"cleaned"}, {"entered", "cleaned"})

        assert "shutdown_error" not in log_file.read()


class TestProgressLog:
    def test_external_start_no_progress_log_api_starts_log_only_at_debug(
        self, start_tree, events: EventSink, log_file: LogFile
    ) -> None:
        """Starts at init and automatic restarts are logged at INFO; ``start_child`` starts only at DEBUG."""
        handle = start_tree([worker(events, "a")], logging_config=log_file.config)
        handle.start_child(worker(events, "b"))
        old = events.expect_all("started", {"a", "b"})
        os.kill(old["b"], signal.SIGKILL)
        events.expect("started", "b")
        settle(handle)

        lines = log_file.read().splitlines()
        assert any(line.startswith("INFO") and "started child 'a'" in line for line in lines)
        starts_of_b = [line.split()[0] for line in lines if "started child 'b'" in line]
        assert starts_of_b == ["DEBUG", "INFO"]


class TestHandleAfterStop:
    def test_stop_is_idempotent_and_closes_the_handle(self, start_tree, events: EventSink) -> None:
        """A second ``stop`` returns; ``stopped`` is True and every other call raises HandleClosedError."""
        handle = start_tree([worker(events, "a")])
        pid = events.expect("started", "a")

        handle.stop()
        handle.stop()

        assert handle.stopped
        assert ExitKind.SHUTDOWN is handle.exit_reason.kind
        assert wait_gone([pid], HANG_TIMEOUT) == []
        for call in (
            handle.which_children,
            handle.count_children,
            lambda: handle.terminate_child("a"),
            lambda: handle.restart_child("a"),
            lambda: handle.delete_child("a"),
            lambda: handle.start_child(worker(events, "b")),
            lambda: handle.child_supervisor("a"),
        ):
            with pytest.raises(HandleClosedError):
                call()

    def test_stop_with_timeout_kills_a_hung_tree(self, start_tree, events: EventSink) -> None:
        """``stop(timeout)`` SIGKILLs a root whose child never stops; the child dies with it."""
        handle = start_tree([stubborn(events, "stubborn", Shutdown.INFINITY)])
        pid = events.expect("started", "stubborn")

        handle.stop(timeout=0.5)

        assert handle.stopped
        assert ExitKind.KILLED is handle.exit_reason.kind
        assert wait_gone([pid], HANG_TIMEOUT) == []

    def test_stop_after_the_supervisor_gave_up_just_reaps_it(self, start_tree) -> None:
        """``stop`` on a root that already exited returns, and the exit reason stays readable."""
        spec = ChildSpec("dies", return_at_once)
        handle = start_tree([spec], max_restarts=0)
        assert wait_gone([handle.pid], HANG_TIMEOUT) == []

        handle.stop()

        assert handle.stopped
        assert ExitKind.SHUTDOWN is handle.exit_reason.kind

    def test_stop_preempts_a_start_child_that_never_becomes_ready(
        self, start_tree, events: EventSink
    ) -> None:
        """A ``stop`` gets through while ``start_child`` waits on a child that never notifies."""
        handle = start_tree([worker(events, "a")])
        events.expect("started", "a")
        spec = ChildSpec("hang", report_never_ready, args=(events.path, "hang"), start_mode=StartMode.NOTIFY)
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                handle.start_child(spec)
            except BaseException as error:
                outcome.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        pid = events.expect("started", "hang")
        handle.stop(timeout=HANG_TIMEOUT)
        caller.join(HANG_TIMEOUT)

        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], SupervisorGoneError)
        assert wait_gone([pid], HANG_TIMEOUT) == []
        assert handle.exit_reason.kind is ExitKind.SHUTDOWN

    def test_context_manager_stops_the_tree(self, events: EventSink) -> None:
        """Leaving the ``with`` block stops the tree and its children."""
        with Supervisor.start([worker(events, "a"), worker(events, "b")]) as handle:
            started = events.expect_all("started", {"a", "b"})

        assert handle.stopped
        assert wait_gone(list(started.values()), HANG_TIMEOUT) == []
        assert [events.next()[1] for _ in range(2)] == ["b", "a"]


def test_sigterm_to_the_root_stops_the_tree_in_order(start_tree, events: EventSink) -> None:
    """SIGTERM to the root is an orderly stop with reason shutdown."""
    handle = start_tree([worker(events, "a"), worker(events, "b")])
    events.expect_all("started", {"a", "b"})

    os.kill(handle.pid, signal.SIGTERM)

    assert [events.next()[1] for _ in range(2)] == ["b", "a"]
    assert wait_gone([handle.pid], HANG_TIMEOUT) == []
    assert ExitKind.SHUTDOWN is handle.exit_reason.kind
