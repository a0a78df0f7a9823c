"""A supervisor's records: looking a child up by pid when pids are reused."""

from __future__ import annotations

from typing import Any

from supervisor import ChildSpec
from supervisor._engine.state import ChildRecord, RestartGroup, SupervisorState
from supervisor.specs import Strategy, SupervisorSpec
from tests.children import sleep_forever


class _Process:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def test_a_reused_pid_names_the_live_child_not_the_one_whose_process_had_it() -> None:
    template = ChildSpec("t", sleep_forever)
    state = SupervisorState(SupervisorSpec([template], Strategy.SIMPLE_ONE_FOR_ONE, 3, 5), "root")
    waiting = ChildRecord(ChildSpec("t#1", sleep_forever), anonymous=True)
    waiting.exit_pid = 4242  # its process 4242 died; it waits out a backoff
    waiting.group = RestartGroup([waiting], waiting, retry_at=1e18)
    live = ChildRecord(ChildSpec("t#2", sleep_forever), anonymous=True)
    process: Any = _Process(4242)  # started later, the kernel gave it pid 4242 again
    live.proc = process
    state.add(waiting)
    state.add(live)

    assert state.find_pid(4242) is live
    assert state.find_pid(4242, past=True) is live
