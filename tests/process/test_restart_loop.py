"""
A restart that keeps failing: the supervisor stays responsive, and group retries follow OTP.

The child ``x`` fails to start while a marker file exists. Each test creates the marker once ``x``
runs, then SIGKILLs a child, so the automatic restart fails and is retried behind everything already
queued (OTP's ``hanging_restart_loop`` tests). A second ``refused`` report means a retry is under
way, so the child is marked restarting from then on.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import attrs
import pytest

from supervisor import (
    ChildRestartingError,
    ChildSpec,
    DuplicateChildError,
    ExitKind,
    StartMode,
    Strategy,
    SupervisorHandle,
)
from supervisor.testing import wait_gone
from tests.children import HANG_TIMEOUT, EventSink, fail_if_marker

from .conftest import LogFile
from .helpers import pids, settle, worker

NEVER = 10**9
"""A max_restarts a restart loop never reaches: the loop itself is under test, not the intensity."""


@attrs.frozen
class Loop:
    handle: SupervisorHandle
    started: dict[str, int]
    marker: Path
    spec: ChildSpec


def start_looping(
    start_tree,
    events: EventSink,
    log_file: LogFile,
    tmp_path: Path,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = NEVER,
    victim: str = "x",
) -> Loop:
    """Start a, x, c; make x unable to start; SIGKILL *victim*; return once a retry of x is under way."""
    marker = tmp_path / "refuse"
    spec = ChildSpec("x", fail_if_marker, args=(str(marker), events.path, "x"), start_mode=StartMode.NOTIFY)
    handle = start_tree(
        [worker(events, "a"), spec, worker(events, "c")],
        strategy,
        max_restarts=max_restarts,
        max_seconds=60,
        logging_config=log_file.config,
    )
    started = events.expect_all("started", {"a", "x", "c"})
    marker.touch()
    os.kill(started[victim], signal.SIGKILL)
    return Loop(handle, started, marker, spec)


def expect_retry(events: EventSink) -> None:
    events.expect("refused", "x")
    events.expect("refused", "x")


def started_after_kill(events: EventSink, key: str, first_pid: int) -> list[int]:
    """Pids of the ``started`` reports of *key* seen so far, after the one with *first_pid*."""
    mine = [pid for kind, k, pid in events.seen if kind == "started" and k == key]
    return mine[mine.index(first_pid) + 1 :]


class TestHangingRestartLoop:
    def test_supervisor_keeps_answering_and_reports_the_child_restarting(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """During the loop ``which_children`` shows x restarting with no pid, and it is not active."""
        loop = start_looping(start_tree, events, log_file, tmp_path)
        expect_retry(events)

        infos = {info.id: info for info in loop.handle.which_children()}
        counts = loop.handle.count_children()

        assert (infos["x"].restarting, infos["x"].pid) == (True, None)
        assert (infos["a"].pid, infos["c"].pid) == (loop.started["a"], loop.started["c"])
        assert (counts.specs, counts.active) == (3, 2)
        assert "start_error: child 'x'" in log_file.read()

    def test_restart_delete_and_start_child_refuse_a_restarting_child(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """``restart_child`` and ``delete_child`` raise ChildRestartingError; ``start_child`` a duplicate."""
        loop = start_looping(start_tree, events, log_file, tmp_path)
        expect_retry(events)

        with pytest.raises(ChildRestartingError):
            loop.handle.restart_child("x")
        with pytest.raises(ChildRestartingError):
            loop.handle.delete_child("x")
        with pytest.raises(DuplicateChildError) as info:
            loop.handle.start_child(loop.spec)

        assert info.value.pid is None
        assert list(pids(loop.handle)) == ["a", "x", "c"]

    def test_terminate_child_ends_the_loop(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """``terminate_child`` stops the retries: x stays stopped and can be restarted by hand later."""
        loop = start_looping(start_tree, events, log_file, tmp_path)
        expect_retry(events)

        loop.handle.terminate_child("x")
        settle(loop.handle)

        infos = {info.id: info for info in loop.handle.which_children()}
        assert (infos["x"].restarting, infos["x"].pid) == (False, None)
        loop.marker.unlink()
        assert loop.handle.restart_child("x") == events.expect("started", "x")

    def test_stop_works_during_the_loop(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """``stop`` gets through a restart loop and stops the others in reverse order."""
        loop = start_looping(start_tree, events, log_file, tmp_path)
        expect_retry(events)

        loop.handle.stop(timeout=HANG_TIMEOUT)

        assert loop.handle.exit_reason.kind is ExitKind.SHUTDOWN
        assert events.expect("stopping", "c") == loop.started["c"]
        assert events.expect("stopping", "a") == loop.started["a"]

    def test_one_for_one_escalation_failing_restarts_count_toward_intensity(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """Each retry counts: with max_restarts=3 the supervisor gives up and exits shutdown."""
        loop = start_looping(start_tree, events, log_file, tmp_path, max_restarts=3)

        assert events.expect("stopping", "c") == loop.started["c"]
        assert events.expect("stopping", "a") == loop.started["a"]
        assert wait_gone([loop.handle.pid], HANG_TIMEOUT) == []
        assert loop.handle.exit_reason.kind is ExitKind.SHUTDOWN
        assert "reached_max_restart_intensity" in log_file.read()

    def test_rest_for_one_loop_keeps_later_children_down_until_it_ends(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """Under rest_for_one, c stays down during x's loop and after ``terminate_child`` ends it."""
        loop = start_looping(start_tree, events, log_file, tmp_path, Strategy.REST_FOR_ONE)
        expect_retry(events)

        assert pids(loop.handle) == {"a": loop.started["a"], "x": None, "c": None}
        loop.handle.terminate_child("x")
        settle(loop.handle)

        assert pids(loop.handle) == {"a": loop.started["a"], "x": None, "c": None}
        assert [info.restarting for info in loop.handle.which_children()] == [False, False, False]


class TestGroupEscalation:
    """
    OTP's one_for_all_escalation and rest_for_one_escalation: a sibling's death restarts the group, x
    cannot start, every retry counts, and the supervisor gives up (reason shutdown, x the offender),
    taking down every child it had started, the restarted ones included.
    """

    def escalate(self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path, strategy: Strategy):
        loop = start_looping(start_tree, events, log_file, tmp_path, strategy, max_restarts=3, victim="a")

        assert wait_gone([loop.handle.pid], HANG_TIMEOUT) == []

        assert loop.handle.exit_reason.kind is ExitKind.SHUTDOWN
        every_child = {pid for kind, _, pid in events.seen + events.pending() if kind == "started"}
        assert len(every_child) >= 4  # a, x, c, and a restarted a
        assert wait_gone(sorted(every_child), HANG_TIMEOUT) == []
        text = log_file.read()
        assert "shutdown: child 'x' (permanent, worker) reason=reached_max_restart_intensity" in text
        assert text.count("start_error: child 'x'") == 3
        return loop

    def test_one_for_all_escalation(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """Each retry restarts the whole group again: a is started once per count before giving up."""
        loop = self.escalate(start_tree, events, log_file, tmp_path, Strategy.ONE_FOR_ALL)

        assert len(started_after_kill(events, "a", loop.started["a"])) == 3

    def test_rest_for_one_escalation(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """Each retry starts from x: a is started again only once, by the first group restart."""
        loop = self.escalate(start_tree, events, log_file, tmp_path, Strategy.REST_FOR_ONE)

        assert len(started_after_kill(events, "a", loop.started["a"])) == 1


class TestGroupRetry:
    def test_one_for_all_other_child_fails_restart_retry_restarts_the_whole_group(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """When x fails in a one_for_all group restart, the retry restarts a again, then all come up."""
        loop = start_looping(start_tree, events, log_file, tmp_path, Strategy.ONE_FOR_ALL, victim="a")
        expect_retry(events)
        events.expect("started", "a")

        loop.marker.unlink()
        up = events.expect_all("started", {"x", "c"})
        settle(loop.handle)

        a_pids = started_after_kill(events, "a", loop.started["a"])
        assert len(a_pids) >= 2
        assert pids(loop.handle) == {"a": a_pids[-1], "x": up["x"], "c": up["c"]}
        assert wait_gone(a_pids[:-1], HANG_TIMEOUT) == []

    def test_rest_for_one_other_child_fails_restart_retry_starts_from_it(
        self, start_tree, events: EventSink, log_file: LogFile, tmp_path: Path
    ) -> None:
        """When x fails in a rest_for_one group restart, the retry starts x and c only; a keeps its pid."""
        loop = start_looping(start_tree, events, log_file, tmp_path, Strategy.REST_FOR_ONE, victim="a")
        expect_retry(events)

        loop.marker.unlink()
        up = events.expect_all("started", {"x", "c"})
        settle(loop.handle)

        a_pids = started_after_kill(events, "a", loop.started["a"])
        assert len(a_pids) == 1
        assert pids(loop.handle) == {"a": a_pids[0], "x": up["x"], "c": up["c"]}
