"""
Significant children and auto_shutdown (OTP 24), named after supervisor_SUITE's scenarios.

A significant child here is :func:`tests.children.end_on_sigusr1`: it reports ``started`` and ends,
as the crash table's *how* says, when the test sends it SIGUSR1. The test then waits on the ended
child's pidfd and either waits for the root to exit (``handle.wait``) or makes one call that is
queued behind the exit's handling (``settle``): a supervisor that wrongly shut itself down makes
that call fail with ``SupervisorGoneError``. ``HANG_TIMEOUT`` only guards against hangs.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisor import (
    Application,
    AutoShutdown,
    Backoff,
    BadCombinationError,
    ChildRunningError,
    ChildSpec,
    ChildState,
    DynamicSupervisor,
    ExitKind,
    Restart,
    SessionNotFoundError,
    SessionStatus,
    StartMode,
    Strategy,
    Supervisor,
    SupervisorHandle,
)
from supervisor.testing import descendants, wait_gone
from tests.children import (
    HANG_TIMEOUT,
    EventSink,
    end_on_sigusr1,
    exit_once,
    init_significant,
    report_then_sleep,
)

from .conftest import LogFile
from .helpers import handled_deaths, kill_into_a_restart_loop, pids, refusing, settle, worker

MODES = [AutoShutdown.ANY_SIGNIFICANT, AutoShutdown.ALL_SIGNIFICANT]
NORMAL_ENDS = ["return", "sigterm", "shutdown_exit"]
"""Ends that are normal for a transient child: *normal*, *shutdown*, ``ShutdownExit(term)``."""
ABNORMAL_ENDS = ["exception", "sys_exit_3", "sigkill"]
NEVER = 10**9
"""A max_restarts a restart loop never reaches."""


def ender(
    events: EventSink, child_id: str, restart: Restart, how: str = "return", **fields: Any
) -> ChildSpec:
    """A significant child (unless ``significant=False`` is given) that ends as *how* on SIGUSR1."""
    fields.setdefault("significant", True)
    return ChildSpec(
        child_id,
        end_on_sigusr1,
        args=(events.path, child_id, how),
        restart=restart,
        start_mode=StartMode.NOTIFY,
        **fields,
    )


def end(pid: int) -> None:
    """Make the child *pid* (an :func:`ender`) end, and wait until it has."""
    os.kill(pid, signal.SIGUSR1)
    assert wait_gone([pid], HANG_TIMEOUT) == []


def assert_shut_down(handle: SupervisorHandle, pids_below: list[int]) -> None:
    """The root exited on its own with reason *shutdown*, and nothing of the tree is left."""
    reason = handle.wait(HANG_TIMEOUT)
    assert reason is not None
    assert reason.kind is ExitKind.SHUTDOWN
    assert wait_gone(pids_below, HANG_TIMEOUT) == []


def modes(*only: AutoShutdown) -> Any:
    return pytest.mark.parametrize("mode", only or MODES, ids=lambda m: m.value)


# ---------------------------------------------------------------------- not significant


def end_nonsignificant(
    start_tree: Any, events: EventSink, mode: AutoShutdown, restart: Restart, how: str
) -> tuple[SupervisorHandle, dict[str, int]]:
    """Start a, then t (*restart*, not significant) under *mode*; end t as *how*; return once handled."""
    specs = [worker(events, "a"), ender(events, "t", restart, how, significant=False)]
    handle = start_tree(specs, auto_shutdown=mode)
    started = events.expect_all("started", {"a", "t"})

    end(started["t"])
    settle(handle)
    return handle, started


class TestNonsignificant:
    @modes()
    @pytest.mark.parametrize("how", NORMAL_ENDS + ABNORMAL_ENDS)
    def test_nonsignificant_temporary(
        self, start_tree: Any, events: EventSink, mode: AutoShutdown, how: str
    ) -> None:
        """A temporary child that is not significant ends: it is forgotten, the supervisor stays."""
        handle, started = end_nonsignificant(start_tree, events, mode, Restart.TEMPORARY, how)

        assert not handle.stopped
        assert pids(handle) == {"a": started["a"]}

    @modes()
    @pytest.mark.parametrize("how", NORMAL_ENDS)
    def test_nonsignificant_transient(
        self, start_tree: Any, events: EventSink, mode: AutoShutdown, how: str
    ) -> None:
        """A transient child that is not significant ends normally: kept, not running; nothing stops"""
        handle, started = end_nonsignificant(start_tree, events, mode, Restart.TRANSIENT, how)

        assert not handle.stopped
        assert pids(handle) == {"a": started["a"], "t": None}


# ---------------------------------------------------------------------- significant temporary


class TestSignificantTemporary:
    @pytest.mark.parametrize("how", NORMAL_ENDS + ABNORMAL_ENDS)
    def test_significant_temporary_any(self, start_tree: Any, events: EventSink, how: str) -> None:
        """ANY_SIGNIFICANT: a significant temporary child ending in any way stops the supervisor."""
        specs = [worker(events, "a"), ender(events, "s", Restart.TEMPORARY, how), worker(events, "c")]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect_all("started", {"a", "s", "c"})

        end(started["s"])

        assert_shut_down(handle, list(started.values()))
        assert [e[:2] for e in events.pending() if e[0] == "stopping"] == [
            ("stopping", "c"),
            ("stopping", "a"),
        ]

    @pytest.mark.parametrize(("first", "last"), [("exception", "return"), ("return", "sigkill")])
    def test_significant_temporary_all(
        self, start_tree: Any, events: EventSink, first: str, last: str
    ) -> None:
        """ALL_SIGNIFICANT: the supervisor stays while a significant child runs, and stops after the last."""
        specs = [
            worker(events, "a"),
            ender(events, "s1", Restart.TEMPORARY, first),
            ender(events, "s2", Restart.TEMPORARY, last),
        ]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)
        started = events.expect_all("started", {"a", "s1", "s2"})

        end(started["s1"])
        settle(handle)
        assert not handle.stopped
        assert pids(handle) == {"a": started["a"], "s2": started["s2"]}

        end(started["s2"])

        assert_shut_down(handle, list(started.values()))


# ---------------------------------------------------------------------- significant transient


class TestSignificantTransient:
    @pytest.mark.parametrize("how", NORMAL_ENDS)
    def test_significant_transient_any(self, start_tree: Any, events: EventSink, how: str) -> None:
        """ANY_SIGNIFICANT: a significant transient child ending normally (or shutdown) stops it all."""
        specs = [worker(events, "a"), ender(events, "s", Restart.TRANSIENT, how)]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect_all("started", {"a", "s"})

        end(started["s"])

        assert_shut_down(handle, list(started.values()))

    @modes()
    @pytest.mark.parametrize("how", ABNORMAL_ENDS)
    def test_significant_transient_abnormal_exit_restarts(
        self, start_tree: Any, events: EventSink, mode: AutoShutdown, how: str
    ) -> None:
        """A significant transient child's abnormal end is restarted, and does not stop the supervisor."""
        handle = start_tree([ender(events, "s", Restart.TRANSIENT, how)], auto_shutdown=mode)
        first = events.expect("started", "s")

        end(first)
        second = events.expect("started", "s")
        settle(handle)

        assert not handle.stopped
        assert second != first
        assert pids(handle) == {"s": second}

    def test_significant_transient_all(self, start_tree: Any, events: EventSink) -> None:
        """ALL_SIGNIFICANT: the first transient's normal end leaves it stopped; the last one's stops all."""
        specs = [
            ender(events, "s1", Restart.TRANSIENT, "return"),
            worker(events, "a"),
            ender(events, "s2", Restart.TRANSIENT, "shutdown_exit"),
        ]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)
        started = events.expect_all("started", {"s1", "a", "s2"})

        end(started["s1"])
        settle(handle)
        assert not handle.stopped
        assert pids(handle) == {"s1": None, "a": started["a"], "s2": started["s2"]}

        end(started["s2"])

        assert_shut_down(handle, list(started.values()))

    def test_significant_transient_all_counts_a_restarting_child(
        self, start_tree: Any, events: EventSink, tmp_path: Path
    ) -> None:
        """ALL_SIGNIFICANT: a significant child whose restart is being retried still has a process."""
        marker = tmp_path / "refuse"
        looping = refusing(events, "x", marker, restart=Restart.TRANSIENT, significant=True)
        specs = [looping, ender(events, "s", Restart.TEMPORARY, "return")]
        handle = start_tree(
            specs, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT, max_restarts=NEVER, max_seconds=60
        )
        started = events.expect_all("started", {"x", "s"})
        kill_into_a_restart_loop(events, marker, started["x"], "x")

        end(started["s"])
        settle(handle)

        assert not handle.stopped
        [info] = handle.which_children()
        assert (info.id, info.restarting) == ("x", True)

        marker.unlink()
        restarted = events.expect("started", "x")
        os.kill(restarted, signal.SIGTERM)  # reason shutdown: normal for a transient child

        assert_shut_down(handle, [*started.values(), restarted])

    def test_significant_transient_all_counts_a_child_in_backoff(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """ALL_SIGNIFICANT: a significant child waiting out its restart's backoff still has a process."""
        waiting = ender(
            events, "x", Restart.TRANSIENT, "exception", backoff=Backoff(initial=3600.0, jitter=0.0)
        )
        specs = [waiting, ender(events, "s", Restart.TEMPORARY, "return")]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)
        started = events.expect_all("started", {"x", "s"})
        end(started["x"])  # crashes: its restart waits an hour

        end(started["s"])
        settle(handle)

        assert not handle.stopped
        [info] = handle.which_children()
        assert (info.id, info.state) == ("x", ChildState.BACKOFF)

        restarted = handle.restart_child("x")  # cuts through the wait
        assert restarted == events.expect("started", "x")
        os.kill(restarted, signal.SIGTERM)  # reason shutdown: normal for a transient child

        assert_shut_down(handle, [*started.values(), restarted])


# ---------------------------------------------------------------------- bystanders and the API


class TestNotTriggers:
    @pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE], ids=lambda s: s.value)
    def test_significant_bystander(self, start_tree: Any, events: EventSink, strategy: Strategy) -> None:
        """Significant siblings stopped by a group restart do not stop the supervisor (ANY_SIGNIFICANT)."""
        specs = [
            worker(events, "p"),
            ender(events, "ts", Restart.TRANSIENT),
            ender(events, "tt", Restart.TEMPORARY),
        ]
        handle = start_tree(specs, strategy, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        first = events.expect_all("started", {"p", "ts", "tt"})

        os.kill(first["p"], signal.SIGKILL)
        again = events.expect_all("started", {"p", "ts"})
        settle(handle)

        assert not handle.stopped
        assert wait_gone([first["tt"], first["ts"]], HANG_TIMEOUT) == []
        assert pids(handle) == again  # the temporary bystander is forgotten, the transient one restarted

    @pytest.mark.parametrize("strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE], ids=lambda s: s.value)
    def test_significant_bystander_all(self, start_tree: Any, events: EventSink, strategy: Strategy) -> None:
        """ALL_SIGNIFICANT: the only significant child, forgotten as a bystander, does not stop it either."""
        specs = [worker(events, "p"), ender(events, "tt", Restart.TEMPORARY)]
        handle = start_tree(specs, strategy, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)
        first = events.expect_all("started", {"p", "tt"})

        os.kill(first["p"], signal.SIGKILL)
        again = events.expect("started", "p")
        settle(handle)

        assert not handle.stopped
        assert pids(handle) == {"p": again}

    @modes()
    @pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.TEMPORARY], ids=lambda r: r.value)
    def test_terminate_child_does_not_trigger(
        self, start_tree: Any, events: EventSink, mode: AutoShutdown, restart: Restart
    ) -> None:
        """``terminate_child`` of the only significant child leaves the supervisor running."""
        handle = start_tree([worker(events, "a"), ender(events, "s", restart)], auto_shutdown=mode)
        started = events.expect_all("started", {"a", "s"})

        handle.terminate_child("s")
        settle(handle)

        assert not handle.stopped
        expected = {"a": started["a"], "s": None} if restart is Restart.TRANSIENT else {"a": started["a"]}
        assert pids(handle) == expected
        assert wait_gone([started["s"]], HANG_TIMEOUT) == []

    def test_a_nested_supervisors_own_shutdown_does_not_trigger(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """A significant nested supervisor stopped by ``terminate_child`` stops its significant children
        without stopping itself or its parent by auto_shutdown; the parent stays."""
        inner = ChildSpec.supervisor(
            "inner",
            [ender(events, "s", Restart.TRANSIENT)],
            restart=Restart.TRANSIENT,
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
            significant=True,
        )
        handle = start_tree([worker(events, "a"), inner], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect_all("started", {"a", "s"})

        handle.terminate_child("inner")
        settle(handle)

        assert not handle.stopped
        assert pids(handle) == {"a": started["a"], "inner": None}
        assert wait_gone([started["s"]], HANG_TIMEOUT) == []
        assert handle.restart_child("inner") is not None  # it is kept, and starts again
        assert events.expect("started", "s") != started["s"]


# ---------------------------------------------------------------------- escalation


class TestEscalation:
    def test_significant_escalation(self, start_tree: Any, events: EventSink) -> None:
        """A significant worker's end stops its supervisor, whose end stops its own, up to the root."""
        inner = ChildSpec.supervisor(
            "inner",
            [worker(events, "b"), ender(events, "s", Restart.TRANSIENT)],
            restart=Restart.TRANSIENT,
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
            significant=True,
        )
        outer = ChildSpec.supervisor(
            "outer",
            [inner, worker(events, "c")],
            restart=Restart.TEMPORARY,
            auto_shutdown=AutoShutdown.ALL_SIGNIFICANT,
            significant=True,
        )
        handle = start_tree([worker(events, "a"), outer], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect_all("started", {"a", "b", "s", "c"})
        outer_pid = pids(handle)["outer"]
        inner_pid = pids(handle.child_supervisor("outer"))["inner"]
        assert outer_pid is not None and inner_pid is not None

        end(started["s"])

        assert_shut_down(handle, [*started.values(), outer_pid, inner_pid])
        stopping = [key for kind, key, _ in events.pending() if kind == "stopping"]
        assert stopping == ["b", "c", "a"]

    def test_significant_escalation_ends_at_a_non_significant_link(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """A nested supervisor that is not significant stops itself; its parent stays and keeps it stopped."""
        mid = ChildSpec.supervisor(
            "mid",
            [ender(events, "s", Restart.TRANSIENT)],
            restart=Restart.TRANSIENT,
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
        )
        specs = [worker(events, "a"), ender(events, "keep", Restart.TRANSIENT), mid]
        handle = start_tree(specs, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect_all("started", {"a", "keep", "s"})
        mid_pid = pids(handle)["mid"]
        assert mid_pid is not None

        end(started["s"])
        assert wait_gone([mid_pid], HANG_TIMEOUT) == []
        settle(handle)

        assert not handle.stopped
        assert pids(handle) == {"a": started["a"], "keep": started["keep"], "mid": None}

    def test_permanent_nested_supervisor_that_shut_itself_down_is_restarted(
        self, start_tree: Any, events: EventSink, log_file: LogFile
    ) -> None:
        """A permanent nested supervisor's auto_shutdown is an exit like any other: its parent restarts it."""
        mid = ChildSpec.supervisor(
            "mid", [ender(events, "s", Restart.TRANSIENT)], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT
        )
        handle = start_tree([mid], logging_config=log_file.config)
        first = events.expect("started", "s")
        first_mid = pids(handle)["mid"]
        assert first_mid is not None

        end(first)
        second = events.expect("started", "s")
        assert wait_gone([first_mid], HANG_TIMEOUT) == []
        settle(handle)

        assert not handle.stopped
        assert pids(handle)["mid"] not in (None, first_mid)
        assert pids(handle.child_supervisor("mid")) == {"s": second}
        assert "child_terminated: child 'mid' (permanent, supervisor) reason=shutdown" in log_file.read()


# ---------------------------------------------------------------------- validation


class TestValidation:
    def test_a_permanent_significant_child_is_refused_by_name(self) -> None:
        """``significant=True`` with ``Restart.PERMANENT`` is a bad combination, named, for both kinds."""
        with pytest.raises(
            BadCombinationError, match=r"restart=Restart.PERMANENT with significant=True"
        ) as info:
            ChildSpec("w", end_on_sigusr1, significant=True)
        assert info.value.combination == (("restart", Restart.PERMANENT), ("significant", True))
        assert info.value.child_id == "w"
        assert isinstance(info.value, ValueError)

        with pytest.raises(BadCombinationError, match=r"child 'sub'.*restart=Restart.PERMANENT"):
            ChildSpec.supervisor("sub", [], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT, significant=True)

    @pytest.mark.parametrize("value", [1, "yes", None])
    def test_significant_must_be_a_bool(self, value: object) -> None:
        """A non-bool ``significant`` is a TypeError naming the field and the value."""
        with pytest.raises(TypeError, match=r"'significant' must be a bool \(got"):
            ChildSpec("w", end_on_sigusr1, restart=Restart.TEMPORARY, significant=value)  # type: ignore[arg-type]

    @pytest.mark.parametrize("value", ["any_significant", None, True])
    def test_auto_shutdown_must_be_an_auto_shutdown(self, value: object) -> None:
        """A bad ``auto_shutdown`` is a TypeError naming it, before anything starts."""
        before = {e.pid for e in descendants(os.getpid())}
        with pytest.raises(TypeError, match=r"'auto_shutdown' must be one of AutoShutdown.NEVER"):
            Supervisor.start([], auto_shutdown=value)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"'auto_shutdown'"):
            ChildSpec.supervisor("sub", [], auto_shutdown=value)  # type: ignore[arg-type]
        assert {e.pid for e in descendants(os.getpid())} == before

    def test_supervisor_start_refuses_a_significant_child_under_never(self, events: EventSink) -> None:
        """``Supervisor.start`` names the child and the combination, and starts nothing."""
        before = {e.pid for e in descendants(os.getpid())}
        specs = [worker(events, "a"), ender(events, "s", Restart.TEMPORARY)]

        with pytest.raises(BadCombinationError, match=r"child 's'.*auto_shutdown=AutoShutdown.NEVER") as info:
            Supervisor.start(specs)

        assert info.value.combination == (("auto_shutdown", AutoShutdown.NEVER), ("significant", True))
        assert info.value.child_id == "s"
        assert {e.pid for e in descendants(os.getpid())} == before
        assert events.pending() == []

    def test_a_nested_spec_refuses_a_significant_child_under_never(self, events: EventSink) -> None:
        """``ChildSpec.supervisor`` checks its own children against its own auto_shutdown."""
        with pytest.raises(BadCombinationError, match=r"child 's'.*auto_shutdown=AutoShutdown.NEVER"):
            ChildSpec.supervisor("sub", [ender(events, "s", Restart.TRANSIENT)])

    def test_start_child_refuses_a_significant_child_under_never(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """``start_child`` of a significant child on a NEVER supervisor is refused; nothing is started."""
        handle = start_tree([worker(events, "a")])
        started = events.expect("started", "a")
        before = {e.pid for e in descendants(os.getpid())}

        with pytest.raises(BadCombinationError, match=r"child 's'.*auto_shutdown=AutoShutdown.NEVER") as info:
            handle.start_child(ender(events, "s", Restart.TEMPORARY))

        assert info.value.child_id == "s"
        assert pids(handle) == {"a": started}
        assert {e.pid for e in descendants(os.getpid())} == before
        assert events.pending() == []

    def test_start_child_adds_a_significant_child_under_auto_shutdown(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """A significant child added by ``start_child`` counts as one given at the start."""
        handle = start_tree([worker(events, "a")], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT)
        started = events.expect("started", "a")

        pid = handle.start_child(ender(events, "s", Restart.TEMPORARY))
        assert pid == events.expect("started", "s")
        end(pid)

        assert_shut_down(handle, [started, pid])

    def test_significant_simple(self, events: EventSink) -> None:
        """simple_one_for_one takes no auto_shutdown but NEVER and no significant template; nothing starts."""
        before = {e.pid for e in descendants(os.getpid())}
        template = ChildSpec("w", report_then_sleep, args=(events.path, "w"), restart=Restart.TEMPORARY)

        with pytest.raises(BadCombinationError, match=r"SIMPLE_ONE_FOR_ONE with auto_shutdown") as info:
            Supervisor.start(
                [template], Strategy.SIMPLE_ONE_FOR_ONE, auto_shutdown=AutoShutdown.ANY_SIGNIFICANT
            )
        assert info.value.combination == (
            ("strategy", Strategy.SIMPLE_ONE_FOR_ONE),
            ("auto_shutdown", AutoShutdown.ANY_SIGNIFICANT),
        )
        assert info.value.child_id is None
        with pytest.raises(BadCombinationError, match=r"SIMPLE_ONE_FOR_ONE with auto_shutdown"):
            ChildSpec.supervisor(
                "sofo", [template], Strategy.SIMPLE_ONE_FOR_ONE, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT
            )
        significant = ender(events, "s", Restart.TEMPORARY)
        with pytest.raises(BadCombinationError, match=r"child 's'.*simple_one_for_one supervisor takes no"):
            Supervisor.start([significant], Strategy.SIMPLE_ONE_FOR_ONE)

        assert {e.pid for e in descendants(os.getpid())} == before
        assert events.pending() == []

    def test_dynamic_supervisor_refuses_a_significant_child(self, events: EventSink) -> None:
        """A DynamicSupervisor (only NEVER, as Elixir's) refuses a significant spec; nothing is stored."""
        with DynamicSupervisor.start() as handle:
            before = {e.pid for e in descendants(os.getpid())}

            with pytest.raises(BadCombinationError, match=r"child 's'.*DynamicSupervisor takes no"):
                handle.start_child(ender(events, "s", Restart.TEMPORARY))

            assert handle.which_children() == []
            assert {e.pid for e in descendants(os.getpid())} == before
        assert events.pending() == []


class TestInitFunction:
    @modes()
    def test_an_init_function_gives_auto_shutdown(self, events: EventSink, mode: AutoShutdown) -> None:
        """A SupervisorSpec from ``start_from``'s init function carries auto_shutdown like any other."""
        handle = Supervisor.start_from(init_significant, events.path, mode.name)
        assert handle is not None
        try:
            started = events.expect_all("started", {"a", "s"})

            end(started["s"])

            assert_shut_down(handle, list(started.values()))
            assert events.expect("stopping", "a") == started["a"]
        finally:
            handle.stop(timeout=30)


class TestLogging:
    def test_auto_shutdown_is_an_info_report_not_an_error(
        self, start_tree: Any, events: EventSink, log_file: LogFile
    ) -> None:
        """The supervisor logs the significant child's end and its auto_shutdown at info level only."""
        handle = start_tree(
            [ender(events, "s", Restart.TRANSIENT)],
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
            logging_config=log_file.config,
        )
        pid = events.expect("started", "s")

        end(pid)
        assert_shut_down(handle, [pid])

        text = log_file.read()
        assert (
            "INFO supervisor root: auto_shutdown: child 's' (transient, worker) reason=normal; "
            "significant, auto_shutdown=any_significant: stopping with reason shutdown"
        ) in text
        assert "ERROR" not in text


class TestWait:
    def test_wait_returns_none_at_its_timeout_and_refuses_other_handles(
        self, start_tree: Any, events: EventSink
    ) -> None:
        """``wait`` on a running tree returns None at its timeout; only the starter's handle can wait."""
        inner = ChildSpec.supervisor("inner", [worker(events, "a")])
        handle = start_tree([inner])
        events.expect("started", "a")

        assert handle.wait(0) is None
        with pytest.raises(RuntimeError, match=r"only the handle returned by Supervisor\.start"):
            handle.child_supervisor("inner").wait(0)
        with pytest.raises(ValueError, match="'timeout'"):
            handle.wait(-1)
        assert not handle.stopped


# ---------------------------------------------------------------------- sessions


class TestSessions:
    @pytest.mark.parametrize("restart", [Restart.TEMPORARY, Restart.TRANSIENT], ids=lambda r: r.value)
    def test_session_whose_significant_worker_ends_leaves_the_registry(
        self, app: Application, events: EventSink, restart: Restart
    ) -> None:
        """The session ends itself when its main worker is done, is not restarted, and leaves the registry."""
        sessions = app.session_manager
        sid = sessions.create_session(
            children=[worker(events, "helper"), ender(events, "main", Restart.TRANSIENT)],
            auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
            restart=restart,
        )
        started = events.expect_all("started", {"helper", "main"})
        info = sessions.get_session_info(sid)
        assert info.status is SessionStatus.ACTIVE
        assert info.pid is not None

        end(started["main"])

        assert wait_gone([info.pid, *started.values()], HANG_TIMEOUT) == []
        handled_deaths(sessions)
        assert events.expect("stopping", "helper") == started["helper"]
        assert sessions.list_sessions() == []
        with pytest.raises(SessionNotFoundError):
            sessions.get_session_info(sid)
        assert sessions.supervisor.count_children().active == 0  # not restarted
        # Forgotten, as a DynamicSupervisor forgets a child it does not restart.
        assert sessions.supervisor.which_children() == []
        with pytest.raises(SessionNotFoundError):
            sessions.terminate_session(sid)

    def test_permanent_session_that_shut_itself_down_is_restarted(
        self, app: Application, events: EventSink, tmp_path: Path
    ) -> None:
        """A PERMANENT session's auto_shutdown is an exit like any other: the SessionManager restarts it."""
        sessions = app.session_manager
        once = ChildSpec(
            "main",
            exit_once,
            args=("return", str(tmp_path / "main.ended"), events.path, "main"),
            restart=Restart.TRANSIENT,
            significant=True,
        )
        sid = sessions.create_session(
            children=[once], auto_shutdown=AutoShutdown.ANY_SIGNIFICANT, restart=Restart.PERMANENT
        )
        first = events.expect("started", "main")
        second = events.expect("started", "main")
        assert wait_gone([first], HANG_TIMEOUT) == []

        with pytest.raises(ChildRunningError):
            sessions.supervisor.restart_child(sid)  # queued behind the session's restart
        info = sessions.get_session_info(sid)

        assert info.status is SessionStatus.ACTIVE
        assert info.restarts == 1
        assert [(c.id, c.pid) for c in info.children] == [("main", second)]

    def test_create_session_refuses_a_significant_child_without_auto_shutdown(
        self, app: Application, events: EventSink
    ) -> None:
        """A significant child needs ``auto_shutdown``: refused by name in the caller, nothing created."""
        sessions = app.session_manager

        with pytest.raises(BadCombinationError, match=r"child 'main'.*auto_shutdown=AutoShutdown.NEVER"):
            sessions.create_session(children=[ender(events, "main", Restart.TRANSIENT)])
        with pytest.raises(TypeError, match=r"'auto_shutdown' must be an AutoShutdown"):
            sessions.create_session(children=[], auto_shutdown="any_significant")

        assert sessions.list_sessions() == []
        assert sessions.supervisor.which_children() == []
        assert events.pending() == []
