"""
A real SIMPLE_ONE_FOR_ONE supervisor against an in-memory model of its children.

Each example starts a tree whose template has a drawn restart type, then starts children with extra
arguments (a tag each), terminates them by pid, SIGKILLs them, and calls what simple_one_for_one
refuses. After every step ``which_children`` and ``count_children`` must agree with the model: the
set of running pids, ids all None, one spec. Children report ``("started", tag, pid)`` to an
:class:`EventSink`, so the machine waits for automatic restarts on that event, never on time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from supervisor import (
    ChildNotFoundError,
    ChildSpec,
    Restart,
    SimpleOneForOneError,
    StartMode,
    Strategy,
    Supervisor,
)

from ..children import HANG_TIMEOUT, EventSink, report_then_sleep
from .machines import (
    PROCESS_MACHINE_SETTINGS,
    expect_started,
    kill_and_wait,
    raises,
    wait_running,
    wait_unlisted,
)


class SimpleOneForOneMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="sup-sofo-machine-")
        self.sink = EventSink(os.path.join(self.directory, "events.sock"))
        self.model: dict[int, int] = {}  # tag -> pid of its running child
        self.gone: list[int] = []  # pids of children that have exited and been reaped
        self.next_tag = 0
        self.restart = Restart.PERMANENT
        self.handle: Any = None

    @initialize(restart=st.sampled_from(Restart))
    def start_tree(self, restart: Restart) -> None:
        self.restart = restart
        template = ChildSpec(
            "template",
            report_then_sleep,
            args=(self.sink.path,),
            restart=restart,
            start_mode=StartMode.NOTIFY,
        )
        self.handle = Supervisor.start(
            [template], Strategy.SIMPLE_ONE_FOR_ONE, max_restarts=1000, max_seconds=1
        )

    def teardown(self) -> None:
        try:
            if self.handle is not None:
                self.handle.stop(timeout=HANG_TIMEOUT)
        finally:
            self.sink.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    @rule()
    def start_child(self) -> None:
        tag, self.next_tag = self.next_tag, self.next_tag + 1
        pid = self.handle.start_child(tag)
        assert isinstance(pid, int)
        expect_started(self.sink, tag, pid=pid)
        self.model[tag] = pid

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        """terminate_child(pid) stops a child and forgets it, whatever its restart type."""
        tag = data.draw(st.sampled_from(sorted(self.model)), label="tag")
        pid = self.model.pop(tag)
        self.handle.terminate_child(pid)
        self.gone.append(pid)

    @precondition(lambda self: bool(self.gone))
    @rule(data=st.data())
    def terminate_a_gone_child(self, data: st.DataObject) -> None:
        """A pid that was a child and has exited: terminate_child is ok (OTP), nothing changes."""
        pid = data.draw(st.sampled_from(self.gone), label="pid")
        if os.path.exists(f"/proc/{pid}"):
            return  # reused by another process since: not this rule's case
        self.handle.terminate_child(pid)

    @rule()
    def terminate_a_live_pid_that_is_no_child(self) -> None:
        raises(ChildNotFoundError, self.handle.terminate_child, os.getpid())

    @rule(child_id=st.sampled_from(["template", "x"]))
    def terminate_by_id_is_refused(self, child_id: str) -> None:
        raises(SimpleOneForOneError, self.handle.terminate_child, child_id)

    @rule(child_id=st.sampled_from(["template", "x"]))
    def restart_and_delete_are_refused(self, child_id: str) -> None:
        raises(SimpleOneForOneError, self.handle.restart_child, child_id)
        raises(SimpleOneForOneError, self.handle.delete_child, child_id)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def kill_child(self, data: st.DataObject) -> None:
        """SIGKILL (abnormal): permanent and transient children restart; temporary ones are dropped."""
        tag = data.draw(st.sampled_from(sorted(self.model)), label="tag")
        pid = self.model[tag]
        kill_and_wait(pid)
        self.gone.append(pid)
        if self.restart is Restart.TEMPORARY:
            del self.model[tag]
            wait_unlisted(self.handle, lambda info: info.pid == pid, f"temporary child {pid}")
        else:
            self.model[tag] = expect_started(self.sink, tag, not_pid=pid)
            wait_running(self.handle, self.model[tag])

    # ------------------------------------------------------------------ invariants

    @invariant()
    def children_match_the_model(self) -> None:
        if self.handle is None:
            return
        infos = self.handle.which_children()
        assert sorted(info.pid for info in infos) == sorted(self.model.values())
        assert all(info.id is None and info.restart is self.restart for info in infos)

    @invariant()
    def counts_match_the_model(self) -> None:
        if self.handle is None:
            return
        counts = self.handle.count_children()
        assert (counts.specs, counts.active, counts.workers, counts.supervisors) == (
            1,
            len(self.model),
            len(self.model),
            0,
        )


def test_simple_one_for_one_tree_matches_its_model() -> None:
    """Any sequence of starts, terminations by pid, kills and refused calls leaves the model's children."""
    run_state_machine_as_test(SimpleOneForOneMachine, settings=PROCESS_MACHINE_SETTINGS)
