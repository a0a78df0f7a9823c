"""
One child's start and shutdown, as jobs: fork it and wait until it is ready, stop it by its spec.

The start job forks the child and waits on its pidfd and report pipe until it reports ready, declines
(OTP's ``ignore``), dies, or passes its start timeout (then it is SIGKILLed and the start fails). The
shutdown job sends SIGTERM (or SIGKILL for ``brutal_kill``), waits up to the shutdown time, sending
SIGTERM again at growing intervals meanwhile, then SIGKILLs, and reaps; an exit reason other than the
one the shutdown asked for is a ``shutdown_error`` report. A child already being stopped keeps its
first deadline and is not signalled anew. Both tell the hooks. Which child to start or stop, and what
follows, is the supervisor's decision (``supervisor.py``), not this module's.
"""

from __future__ import annotations

import datetime
import logging
import math
import signal
import time
from collections.abc import Generator
from typing import Any

from .. import _backoff
from .._addresses import TreeContext
from ..reasons import ExitKind, ExitReason
from ..specs import Restart, Shutdown, StartMode
from . import processes
from .hooks import LoopHooks
from .jobs import Wait
from .reactor import Reactor
from .reports import log, log_report
from .state import ChildRecord

__all__ = ["IGNORED", "STARTED", "Lifecycle"]

STARTED = "started"
IGNORED = "ignored"

RESEND_FIRST = 0.05
"""Seconds from a shutdown's SIGTERM to its first repeat; each later interval is twice the one before.

CPython runs a signal handler only between bytecodes: a SIGTERM that lands just before a blocking call
(``time.sleep``, a read) waits for the call to return. A repeat interrupts the call; a child that is
already stopping ignores it (see ``_child``)."""


class Lifecycle:
    """Starts, stops, drains and reaps the children of one supervisor."""

    def __init__(self, tree: TreeContext, reactor: Reactor, hooks: LoopHooks) -> None:
        self.tree = tree
        self.reactor = reactor
        self.hooks = hooks
        self.reaped_any = False  # a child was reaped: adopted orphans may be waiting too

    def start(
        self, child: ChildRecord, progress: int, automatic: bool = False
    ) -> Generator[Wait, list[Any], str | ExitReason]:
        """
        Fork *child* and wait until it is ready, declines (``ignore``), dies or times out.

        Returns ``STARTED``, ``IGNORED`` or the failed start's exit reason. *automatic* marks a
        restart by the supervisor itself, which a failure does not end (a retry follows).
        """
        child.exit_pending = None
        last_exit = child.last_exit
        try:
            proc = processes.fork(child.spec, self.tree.child(child.id))
        except Exception as error:
            # Out of descriptors or processes, or an entry point that does not resolve: this start
            # fails; the supervisor does not.
            log.error("supervisor %s: could not fork child %r: %s", self.tree.path, child.id, error)
            return ExitReason.from_exception(error)
        child.proc = proc
        child.starting = True
        child.started_at = datetime.datetime.now(datetime.timezone.utc)
        child.running_since = None
        self.reactor.watch(proc.pidfd, child)
        self.reactor.watch(proc.report, child)
        child.busy = True
        self.hooks.child_starting(child.event())
        deadline = None
        if child.spec.start_mode is StartMode.NOTIFY and child.spec.start_timeout is not None:
            deadline = time.monotonic() + child.spec.start_timeout
        timed_out = False
        while True:
            fired = yield Wait(proc.fds(), deadline)
            if proc.report is not None and proc.report in fired and "ready" in self.drain(child):
                child.busy = False
                child.starting = False
                child.running_since = _backoff.clock()
                log.log(
                    progress, "supervisor %s: started child %r (pid %s)", self.tree.path, child.id, proc.pid
                )
                self.hooks.child_ready(child.event(automatic), proc.ready_info)
                return STARTED
            if proc.pidfd in fired:
                reason = self.reap(child)
                self.hooks.child_down(child.event(), reason, automatic)
                if proc.declined:
                    child.last_exit = last_exit  # a declined start (OTP's ignore) is not an exit
                    return IGNORED
                if timed_out and child.spec.start_timeout is not None:
                    child.last_exit = ExitReason.start_timeout(child.spec.start_timeout)
                    return child.last_exit
                return reason
            if not fired and deadline is not None and time.monotonic() >= deadline:
                timed_out, deadline = True, None
                processes.kill(proc.pid, signal.SIGKILL)

    def check_shutdown_reason(self, child: ChildRecord, reason: ExitReason) -> None:
        """
        Log a ``shutdown_error`` if *reason* is not what stopping *child* by its spec gives (OTP).

        Also for a child that exited on its own while its supervisor was stopping. Does not block.
        """
        expected = (
            reason.kind is ExitKind.KILLED
            if child.spec.shutdown is Shutdown.BRUTAL_KILL
            else reason.kind is ExitKind.SHUTDOWN and reason.term is None  # OTP: shutdown, not {shutdown, T}
        )
        if not expected and child.spec.restart is not Restart.PERMANENT:
            expected = reason.is_normal
        if not expected:
            log_report(self.tree.path, "shutdown_error", child.spec, reason, logging.ERROR)

    def shutdown(
        self, child: ChildRecord, since: float | None = None
    ) -> Generator[Wait, list[Any], ExitReason]:
        """
        Stop *child* by its shutdown spec and reap it; log a ``shutdown_error`` for an odd reason.

        *since* (monotonic) is when its shutdown timer starts, if not now: children stopped together
        with the same shutdown time share one deadline (simple_one_for_one's one timer).

        SIGTERM is sent again at growing intervals (see ``RESEND_FIRST``) until the child exits or its
        deadline passes. A child already being stopped (a stop preempted the ``terminate_child`` that
        began it) is not signalled anew and keeps its first deadline.
        """
        proc = child.proc
        assert proc is not None
        child.busy = True
        shutdown = child.spec.shutdown
        now = time.monotonic()
        if child.shutdown_deadline is None:
            self.hooks.child_stopping(child.event())
            if shutdown is Shutdown.BRUTAL_KILL:
                child.shutdown_deadline = now
            else:
                processes.kill(proc.pid, signal.SIGTERM)
                start = now if since is None else since
                child.shutdown_deadline = math.inf if isinstance(shutdown, Shutdown) else start + shutdown
        killed = False
        interval = RESEND_FIRST
        resend_at = now + interval
        while True:
            now = time.monotonic()
            if not killed and now >= child.shutdown_deadline:
                killed = True
                processes.kill(proc.pid, signal.SIGKILL)
            if not killed and now >= resend_at:
                processes.kill(proc.pid, signal.SIGTERM)
                interval *= 2
                resend_at = now + interval
            wake = None if killed else min(child.shutdown_deadline, resend_at)
            fired = yield Wait(proc.fds(), wake)
            if proc.report is not None and proc.report in fired:
                self.drain(child)
            if proc.pidfd in fired:
                break
        reason = self.reap(child)
        self.hooks.child_down(child.event(), reason, False)
        self.check_shutdown_reason(child, reason)
        return reason

    def drain(self, child: ChildRecord) -> set[str]:
        """Read *child*'s pending report messages; return their kinds."""
        assert child.proc is not None
        return child.proc.drain(self.reactor.unwatch)

    def reap(self, child: ChildRecord) -> ExitReason:
        """Collect *child*'s dead process (see :meth:`ChildProcess.reap`); it is not running after."""
        proc = child.proc
        assert proc is not None
        reason = proc.reap(self.reactor.unwatch)
        child.last_pid = proc.pid
        child.proc = None
        child.busy = False
        child.starting = False
        child.started_at = None
        child.last_exit = reason
        child.shutdown_deadline = None
        self.reaped_any = True
        return reason

    def kill_and_reap(self, child: ChildRecord) -> None:
        """
        SIGKILL *child* and reap it at once, and tell the hooks it is down and forgotten.

        Only for a supervisor that must exit without a stop (an internal error in its stop). Does
        nothing to a child without a process.
        """
        if child.proc is not None:
            processes.kill(child.proc.pid, signal.SIGKILL)
            reason = self.reap(child)
            self.hooks.child_down(child.event(), reason, False)
            self.hooks.child_removed(child.event())
