"""
A real GenServer under a supervisor, called, cast to, timed out, crashed and SIGKILLed, against a model.

The server (``tests.servers.Echo``) counts the calls it executes and keeps the casts it received
since it started. The model keeps the same: every call sent once ran once (at-most-once: nothing is
retried or re-sent), casts from one caller arrive in send order, a reply is always the reply to its
own request (a late reply to a timed-out call never surfaces), and every call ends in a reply or one
of the named errors, never a hang (each step is bounded by HANG_TIMEOUT).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from supervisor import CallTimeout, NoProc, ServerDown, ServerRef, Supervisor, call, cast
from supervisor.testing import wait_gone

from ..children import HANG_TIMEOUT
from ..servers import Echo

NAME = "svc"
values = st.builds(
    lambda value: ("value", value),  # tagged: a value is never one of the test server's commands
    st.one_of(st.integers(), st.text(max_size=20), st.tuples(st.integers(), st.booleans())),
)


class MessagingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = Supervisor.start([Echo.child_spec("echo", name=NAME)], max_restarts=1000, max_seconds=1)
        self.ref = self._current()
        self.stale: list[ServerRef] = []
        self.executions = 0  # calls the current incarnation ran, as the model counts them
        self.casts: list[Any] = []

    def teardown(self) -> None:
        self.tree.stop(timeout=HANG_TIMEOUT)

    def _current(self) -> ServerRef:
        ref = self.tree.whereis(NAME)
        assert ref is not None
        return ref  # type: ignore[no-any-return]

    def _restarted(self) -> None:
        """After the server died: the next incarnation, found by a call by name that waits for it."""
        old = self.ref
        pid = self.tree.call(NAME, "pid", timeout=HANG_TIMEOUT)
        self.ref = self._current()
        assert self.ref.pid == pid != old.pid and self.ref.incarnation != old.incarnation
        self.stale.append(old)
        self.executions, self.casts = 1, []

    # ------------------------------------------------------------------ rules

    @rule(value=values)
    def call_by_ref(self, value: Any) -> None:
        assert call(self.ref, value, timeout=HANG_TIMEOUT) == ("echo", value)
        self.executions += 1

    @rule(value=values)
    def call_by_name(self, value: Any) -> None:
        assert self.tree.call(NAME, value, timeout=HANG_TIMEOUT) == ("echo", value)
        self.executions += 1

    @rule(value=values)
    def cast_by_ref(self, value: Any) -> None:
        cast(self.ref, value, timeout=HANG_TIMEOUT)
        self.casts.append(value)

    @rule()
    def casts_arrive_in_send_order(self) -> None:
        assert call(self.ref, "casts", timeout=HANG_TIMEOUT) == self.casts
        self.executions += 1

    @rule(value=values)
    def timed_out_call_still_runs_once_and_its_reply_never_surfaces(self, value: Any) -> None:
        try:
            call(self.ref, ("sleep", 0.2), timeout=0.01)
        except CallTimeout:
            pass
        else:
            raise AssertionError("a 0.2 s handler answered a 0.01 s call")
        self.executions += 1
        assert call(self.ref, value, timeout=HANG_TIMEOUT) == ("echo", value)  # not "slept"
        self.executions += 1

    @rule(message=st.text(min_size=1, max_size=10))
    def crash_in_handler(self, message: str) -> None:
        try:
            call(self.ref, ("crash", message), timeout=HANG_TIMEOUT)
        except ServerDown as down:
            assert down.reason is not None and down.reason.message == message
        else:
            raise AssertionError("a crashing handler replied")
        self._restarted()

    @rule()
    def sigkill(self) -> None:
        os.kill(self.ref.pid, signal.SIGKILL)
        assert wait_gone([self.ref.pid], HANG_TIMEOUT) == []  # a call before that may reach it dying
        self._restarted()

    @precondition(lambda self: bool(self.stale))
    @rule(data=st.data())
    def a_stale_ref_never_reaches_the_new_process(self, data: st.DataObject) -> None:
        old = data.draw(st.sampled_from(self.stale))
        try:
            call(old, "pid", timeout=HANG_TIMEOUT)
        except (NoProc, ServerDown):
            pass
        else:
            raise AssertionError(f"a ref of incarnation {old.incarnation} was answered")
        cast(old, "lost")  # a cast to a process that is gone does nothing

    @rule()
    def whereis_finds_the_current_incarnation(self) -> None:
        assert self.tree.whereis(NAME) == self.ref

    @invariant()
    def each_call_ran_exactly_once(self) -> None:
        assert call(self.ref, "executions", timeout=HANG_TIMEOUT) == self.executions + 1
        self.executions += 1


def test_calls_casts_and_deaths_match_the_model() -> None:
    """Any sequence of calls, casts, timeouts, crashes and kills keeps at-most-once, FIFO and late replies."""
    run_state_machine_as_test(
        MessagingMachine,
        settings=settings(
            max_examples=6,
            stateful_step_count=15,
            deadline=None,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
