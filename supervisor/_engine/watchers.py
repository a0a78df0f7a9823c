"""
What the supervisor does for those who watch its children: exit waiters, and servers' entries.

A monitor (``supervisor.monitor``) or a caller whose server died asks the supervisor, with
:class:`~supervisor._protocol.AwaitExit`, for the exit reason of one child process: answered when the
process is reaped (the pidfd fired: no polling), or at once from the reasons of recent exits. When a
GenServer child's process is reaped, its server entry is removed, so ``whereis`` stops finding it
before any restart; when its spec is forgotten, so is its name. Told by the loop's hooks; replies go
through the control server's ``reply``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import _names
from .._addresses import TreeContext
from ..errors import NoProc
from ..reasons import ExitReason
from .hooks import ChildEvent, LoopHooks

__all__ = ["ExitWatchers"]

RECENT_EXITS = 1024
"""How many recent exit reasons a supervisor keeps for AwaitExit requests that come after the reap."""


class ExitWatchers(LoopHooks):
    """The exit waiters of one supervisor and the entries of its server children."""

    def __init__(self, tree: TreeContext, running_pids: Callable[[], set[int]]) -> None:
        self.tree = tree
        self.running_pids = running_pids
        self.reply: Callable[[Any, tuple[str, Any]], None] = lambda conn, message: None
        self.recent: OrderedDict[int, ExitReason] = OrderedDict()
        self.waiters: dict[int, list[Any]] = {}

    def await_exit(self, conn: Any, pid: int) -> None:
        """Reply to *conn* with the exit reason of the child process *pid*, now or once it is reaped."""
        reason = self.recent.get(pid)
        if reason is not None:
            self.reply(conn, ("ok", reason))
        elif pid in self.running_pids():
            self.waiters.setdefault(pid, []).append(conn)
        else:
            message = f"supervisor {self.tree.path} has no child process {pid}, and had none lately"
            self.reply(conn, ("error", NoProc(message)))

    def child_down(self, child: ChildEvent, reason: ExitReason, restarting: bool) -> None:
        pid = child.last_pid
        if pid is not None:
            self.recent[pid] = reason
            self.recent.move_to_end(pid)
            if len(self.recent) > RECENT_EXITS:
                self.recent.popitem(last=False)
            for conn in self.waiters.pop(pid, ()):
                self.reply(conn, ("ok", reason))
        if child.spec.start == _names.GEN_SERVER:
            _names.forget_server(self.tree.private_dir, f"{self.tree.path}/{child.child_id}")

    def child_removed(self, child: ChildEvent) -> None:
        if child.spec.name is not None and child.spec.start == _names.GEN_SERVER:
            _names.forget_name(self.tree.private_dir, child.spec.name, f"{self.tree.path}/{child.child_id}")
