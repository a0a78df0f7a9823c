"""
A real ONE_FOR_ONE supervisor against an in-memory model of its children.

Each example starts a tree with no children and a restart intensity too high to reach, then runs
admin calls and SIGKILLs against it. After every step ``which_children`` and ``count_children`` must
agree with the model: ids in start order, which children run and with which pid. Children report
``("started", id, pid)`` to an :class:`EventSink`, so the machine waits for automatic restarts on
that event, never on time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from supervisor import (
    ChildNotFoundError,
    ChildRunningError,
    ChildSpec,
    ChildType,
    DuplicateChildError,
    Restart,
    StartMode,
    Strategy,
    Supervisor,
)

from ..children import HANG_TIMEOUT, EventSink, notify_then_sleep, report_then_sleep
from .machines import (
    PROCESS_MACHINE_SETTINGS,
    expect_started,
    kill_and_wait,
    raises,
    wait_running,
    wait_unlisted,
)

CHILD_IDS = ("a", "b", "c")


@attrs.define
class ModelChild:
    """What the model knows of one child: its restart type, and its pid (None while not running)."""

    restart: Restart
    pid: int | None


class OneForOneMachine(RuleBasedStateMachine):
    ids = Bundle("ids")
    started = Bundle("started")
    """The ids of children started so far (some may have been deleted or forgotten since)."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="sup-machine-")
        self.sink = EventSink(os.path.join(self.directory, "events.sock"))
        # Insertion order is start order: a restart keeps a child's place, a start appends it.
        self.model: dict[str, ModelChild] = {}
        try:
            self.handle = Supervisor.start([], Strategy.ONE_FOR_ONE, max_restarts=1000, max_seconds=1)
        except BaseException:
            self._remove_sink()
            raise

    def teardown(self) -> None:
        try:
            self.handle.stop(timeout=HANG_TIMEOUT)
        finally:
            self._remove_sink()

    def _remove_sink(self) -> None:
        self.sink.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _running(self) -> list[str]:
        return [child_id for child_id, child in self.model.items() if child.pid is not None]

    def _stopped(self) -> list[str]:
        return [child_id for child_id, child in self.model.items() if child.pid is None]

    # ------------------------------------------------------------------ rules

    @initialize(target=ids)
    def child_ids(self) -> Any:
        # A small fixed set of ids, so that calls often name a child that exists, and sometimes not.
        return multiple(*CHILD_IDS)

    @initialize(
        target=started, first=st.lists(st.tuples(st.sampled_from(Restart), st.booleans()), max_size=3)
    )
    def start_first_children(self, first: list[tuple[Restart, bool]]) -> Any:
        """Begin with up to three children, so every example has some to act on."""
        for child_id, (restart, notify) in zip(CHILD_IDS, first, strict=False):
            self._start(child_id, restart, notify)
        return multiple(*CHILD_IDS[: len(first)])

    @rule(target=started, child_id=ids, restart=st.sampled_from(Restart), notify=st.booleans())
    def start_child(self, child_id: str, restart: Restart, notify: bool) -> Any:
        if child_id in self.model:
            spec = self._spec(child_id, restart, notify)
            error = raises(DuplicateChildError, self.handle.start_child, spec)
            assert error.child_id == child_id  # type: ignore[attr-defined]
            assert error.pid == self.model[child_id].pid  # type: ignore[attr-defined]
            return multiple()
        self._start(child_id, restart, notify)
        return child_id

    def _spec(self, child_id: str, restart: Restart, notify: bool) -> ChildSpec:
        return ChildSpec(
            id=child_id,
            start=notify_then_sleep if notify else report_then_sleep,
            args=(self.sink.path, child_id),
            restart=restart,
            start_mode=StartMode.NOTIFY if notify else StartMode.IMMEDIATE,
        )

    def _start(self, child_id: str, restart: Restart, notify: bool) -> None:
        pid = self.handle.start_child(self._spec(child_id, restart, notify))
        assert isinstance(pid, int)
        expect_started(self.sink, child_id, pid=pid)
        self.model[child_id] = ModelChild(restart, pid)

    @rule(child_id=started | ids)
    def terminate_child(self, child_id: str) -> None:
        if child_id not in self.model:
            error = raises(ChildNotFoundError, self.handle.terminate_child, child_id)
            assert error.child_id == child_id  # type: ignore[attr-defined]
            return
        self.handle.terminate_child(child_id)
        if self.model[child_id].restart is Restart.TEMPORARY:
            del self.model[child_id]
        else:
            self.model[child_id].pid = None

    @precondition(lambda self: bool(self._running()))
    @rule(data=st.data())
    def kill_child(self, data: st.DataObject) -> None:
        """SIGKILL a running child: permanent and transient ones restart, temporary ones are forgotten."""
        child_id = data.draw(st.sampled_from(self._running()), label="child_id")
        child = self.model[child_id]
        assert child.pid is not None
        kill_and_wait(child.pid)
        if child.restart is Restart.TEMPORARY:
            wait_unlisted(self.handle, lambda info: info.id == child_id, f"temporary child {child_id!r}")
            del self.model[child_id]
        else:
            child.pid = expect_started(self.sink, child_id, not_pid=child.pid)
            wait_running(self.handle, child_id)

    @rule(child_id=started | ids)
    def restart_child(self, child_id: str) -> None:
        if child_id not in self.model:
            raises(ChildNotFoundError, self.handle.restart_child, child_id)
            return
        if self.model[child_id].pid is not None:
            raises(ChildRunningError, self.handle.restart_child, child_id)
            return
        pid = self.handle.restart_child(child_id)
        assert isinstance(pid, int)
        expect_started(self.sink, child_id, pid=pid)
        self.model[child_id].pid = pid

    @precondition(lambda self: bool(self._stopped()))
    @rule(data=st.data())
    def restart_stopped_child(self, data: st.DataObject) -> None:
        """restart_child on a child known to be stopped, so the success path runs often."""
        self.restart_child(data.draw(st.sampled_from(self._stopped()), label="child_id"))

    @precondition(lambda self: bool(self._stopped()))
    @rule(data=st.data())
    def delete_stopped_child(self, data: st.DataObject) -> None:
        """delete_child on a child known to be stopped, so the success path runs often."""
        self.delete_child(data.draw(st.sampled_from(self._stopped()), label="child_id"))

    @rule(child_id=started | ids)
    def delete_child(self, child_id: str) -> None:
        if child_id not in self.model:
            raises(ChildNotFoundError, self.handle.delete_child, child_id)
            return
        if self.model[child_id].pid is not None:
            raises(ChildRunningError, self.handle.delete_child, child_id)
            return
        self.handle.delete_child(child_id)
        del self.model[child_id]

    # ------------------------------------------------------------------ invariants

    @invariant()
    def children_match_the_model(self) -> None:
        infos = self.handle.which_children()

        assert [info.id for info in infos] == list(self.model)
        for info in infos:
            expected = self.model[info.id]
            assert info.pid == expected.pid
            assert info.restart is expected.restart
            assert info.type is ChildType.WORKER
            assert not info.restarting

    @invariant()
    def counts_match_the_model(self) -> None:
        counts = self.handle.count_children()

        assert counts.specs == len(self.model)
        assert counts.active == len(self._running())
        assert counts.workers == len(self.model)
        assert counts.supervisors == 0

    @invariant()
    def running_children_are_alive(self) -> None:
        """Every pid the model calls running is a live process, not a zombie (read from /proc)."""
        for child_id in self._running():
            pid = self.model[child_id].pid
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
            assert state != "Z", f"child {child_id!r} (pid {pid}) is a zombie"


def test_one_for_one_tree_matches_its_model() -> None:
    """Any sequence of starts, terminations, kills, restarts and deletions leaves the model's children."""
    run_state_machine_as_test(OneForOneMachine, settings=PROCESS_MACHINE_SETTINGS)
