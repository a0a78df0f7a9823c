"""
The session layer against a model: create, terminate, kill and list, in any order.

The model is a dict ``session_id → (SessionSupervisor pid, worker pid, metadata)``. After every step
the registry, the SessionManager's children and the process table must agree with it. Each step waits
until its effect is definite: handle calls return when done, and a kill waits on the killed
processes' pidfds and then makes one call through the SessionManager, whose loop handles the deaths
it sees before the requests.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from supervisor import (
    Application,
    ChildSpec,
    SessionNotFoundError,
    SessionStatus,
    StartMode,
)
from supervisor.testing import process_table, wait_gone
from tests.children import HANG_TIMEOUT, notify_then_sleep

WORKER = ChildSpec("worker", notify_then_sleep, start_mode=StartMode.NOTIFY)


class SessionMachine(RuleBasedStateMachine):
    """One Application per example; the model holds the sessions that must be live."""

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.app = Application().start()
        self.handle = self.app.session_manager
        self.model: dict[str, tuple[int, int, Any]] = {}
        self.gone: set[str] = set()

    def teardown(self) -> None:
        self.app.stop()

    @rule(target=sessions, metadata=st.none() | st.integers() | st.text(max_size=5))
    def create(self, metadata: Any) -> str:
        session_id = self.handle.create_session(children=[WORKER], metadata=metadata)
        assert session_id not in self.model and session_id not in self.gone
        info = self.handle.get_session_info(session_id)
        assert info.pid is not None
        (summary,) = info.children
        assert summary.pid is not None
        self.model[session_id] = (info.pid, summary.pid, metadata)
        return session_id

    @rule(session_id=consumes(sessions))
    def terminate(self, session_id: str) -> None:
        pids = self.model.pop(session_id)[:2]
        self.handle.terminate_session(session_id)
        self.gone.add(session_id)
        table = process_table()
        assert not [pid for pid in pids if pid in table]

    @rule(session_id=consumes(sessions))
    def kill(self, session_id: str) -> None:
        session_pid, worker_pid, _ = self.model.pop(session_id)
        os.kill(session_pid, signal.SIGKILL)
        assert wait_gone([session_pid, worker_pid], HANG_TIMEOUT) == []
        self.handle.supervisor.which_children()  # returns after the deaths it saw were handled
        self.gone.add(session_id)

    @rule()
    def list_sessions(self) -> None:
        listed = self.handle.list_sessions()
        # Oldest first: the model keeps creation order, and creates here run one after another.
        assert [info.session_id for info in listed] == list(self.model)

    @rule(data=st.data())
    def look_up_a_gone_session(self, data: st.DataObject) -> None:
        if not self.gone:
            return
        session_id = data.draw(st.sampled_from(sorted(self.gone)))
        try:
            self.handle.get_session_pid(session_id)
        except SessionNotFoundError as error:
            assert error.session_id == session_id
        else:
            raise AssertionError(f"session {session_id} is gone but still found")

    @invariant()
    def registry_matches_the_model(self) -> None:
        entries = {info.session_id: info for info in self.handle.list_sessions()}
        assert set(entries) == set(self.model)
        for session_id, (session_pid, worker_pid, metadata) in self.model.items():
            info = entries[session_id]
            assert info.pid == session_pid
            assert [(c.id, c.pid) for c in info.children] == [("worker", worker_pid)]
            assert info.status is SessionStatus.ACTIVE
            assert info.metadata == metadata
            assert info.restarts == 0

    @invariant()
    def session_manager_children_match_the_model(self) -> None:
        children = {c.id: c.pid for c in self.handle.supervisor.which_children()}
        assert children == {sid: pids[0] for sid, pids in self.model.items()}

    @invariant()
    def live_sessions_run_and_gone_ones_do_not(self) -> None:
        table = process_table()
        for session_pid, worker_pid, _ in self.model.values():
            assert session_pid in table and table[session_pid].state != "Z"
            assert worker_pid in table and table[worker_pid].ppid == session_pid


SessionMachine.TestCase.settings = settings(max_examples=5, stateful_step_count=10, deadline=None)
TestSessionMachine = SessionMachine.TestCase
