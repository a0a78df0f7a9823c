"""
What a process built on the engine (the SessionManager) is told, and the fds it asks the loop to watch.

The engine's own observers (the exit watchers, the event feed) are told the same, first
(:class:`ChainedHooks`). Hooks receive frozen :class:`ChildEvent` values, never the supervisor's own
records, and reach the epoll set only through the narrow :class:`FdWatch`. Every method is called on the
supervisor's only thread, between its waits; a hook must not block on a peer for long (the registry
publisher bounds its waits). The default hooks do nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from ..reasons import ExitReason
from ..specs import ChildSpec

__all__ = ["ChainedHooks", "ChildEvent", "FdWatch", "LoopHooks"]


@attrs.frozen
class ChildEvent:
    """
    A child at the moment of an event: its id, its pid (None when not running), its spec, the
    pid of its last process to be reaped (None before the first), and, for ``child_ready``, whether
    it became ready in an automatic restart (*automatic*).
    """

    child_id: str
    pid: int | None
    spec: ChildSpec
    last_pid: int | None = None
    automatic: bool = False


class FdWatch(Protocol):
    """The loop's epoll set, as hooks may use it."""

    def watch(self, fd: int) -> None:
        """Wake the loop and call :meth:`LoopHooks.on_readable` when *fd* is readable."""

    def unwatch(self, fd: int) -> None:
        """Stop watching *fd*. Call it *before* closing *fd*: the number may be reused at once."""


class LoopHooks:
    """Told about children's life cycles; may watch fds of its own and ask for a wake-up time."""

    def child_starting(self, child: ChildEvent) -> None:
        """*child* was forked and is starting."""

    def child_ready(self, child: ChildEvent, info: Any) -> None:
        """*child* reported ready, with the *info* it passed to ``notify_ready``."""

    def child_stopping(self, child: ChildEvent) -> None:
        """*child* is being stopped by its shutdown spec."""

    def child_down(self, child: ChildEvent, reason: ExitReason, restarting: bool) -> None:
        """*child*'s process was reaped; *restarting* if an automatic restart follows."""

    def child_removed(self, child: ChildEvent) -> None:
        """
        *child*'s spec was forgotten.

        Also said of every child the supervisor still has when it stops: at once for one without a
        process (a restart it was waiting for is cancelled), after ``child_down`` for a running one.
        """

    def intensity_reached(self, child: ChildEvent, reason: ExitReason | None) -> None:
        """
        The restart of *child* (whose last exit was *reason*) exceeded the restart intensity: the
        supervisor gives up and stops.
        """

    def attach(self, fds: FdWatch) -> None:
        """Called once, when the loop starts: *fds* is how the hooks watch fds of their own."""

    def on_readable(self) -> None:
        """An fd the hooks watch became readable."""

    def deadline(self) -> float | None:
        """The monotonic time the loop must wake at for :meth:`on_deadline`, if any."""
        return None

    def on_deadline(self) -> None:
        """The time given by :meth:`deadline` has come."""

    def before_reply(self) -> None:
        """Called before the loop replies to a caller: make the caller's effects visible."""


class ChainedHooks(LoopHooks):
    """
    The loop's hooks: each child event goes to the *observers* (the engine's own, in order), then to
    *primary* (a process built on the engine); fds, deadlines and replies are *primary*'s alone.
    """

    def __init__(self, primary: LoopHooks, observers: list[LoopHooks]) -> None:
        self.primary = primary
        self.observers = observers

    def child_starting(self, child: ChildEvent) -> None:
        for observer in self.observers:
            observer.child_starting(child)
        self.primary.child_starting(child)

    def child_ready(self, child: ChildEvent, info: Any) -> None:
        for observer in self.observers:
            observer.child_ready(child, info)
        self.primary.child_ready(child, info)

    def child_stopping(self, child: ChildEvent) -> None:
        for observer in self.observers:
            observer.child_stopping(child)
        self.primary.child_stopping(child)

    def child_down(self, child: ChildEvent, reason: ExitReason, restarting: bool) -> None:
        for observer in self.observers:
            observer.child_down(child, reason, restarting)
        self.primary.child_down(child, reason, restarting)

    def child_removed(self, child: ChildEvent) -> None:
        for observer in self.observers:
            observer.child_removed(child)
        self.primary.child_removed(child)

    def intensity_reached(self, child: ChildEvent, reason: ExitReason | None) -> None:
        for observer in self.observers:
            observer.intensity_reached(child, reason)
        self.primary.intensity_reached(child, reason)

    def attach(self, fds: FdWatch) -> None:
        self.primary.attach(fds)

    def on_readable(self) -> None:
        self.primary.on_readable()

    def deadline(self) -> float | None:
        return self.primary.deadline()

    def on_deadline(self) -> None:
        self.primary.on_deadline()

    def before_reply(self) -> None:
        self.primary.before_reply()
