"""
OTP's supervisor, over OS processes: init, exits and restarts, the admin calls, and stopping.

One thread, one loop. Each turn (:meth:`SupervisorProcess.serve`) makes one wait on the reactor, then
handles what became ready in a fixed order: signals, the starter's death, new connections, report
pipes, *deaths* (reaped at once, their exits queued as jobs and begun before any request, as OTP
handles an ``'EXIT'`` queued before a call), requests, the hooks' fds, and last the jobs whose waits
were met. Jobs run one at a time per lane (see ``jobs.py``); a failed automatic restart queues its
retry behind everything already queued (OTP's ``try_again_restart``), so a ``stop`` or a
``terminate_child`` cuts through a restart loop. A stop preempts every job: stopping is bounded even
while a child hangs in its start.

The decisions are OTP's exactly: which exits restart (``_strategy.should_restart``), which children a
restart touches (``_strategy.restart_set``), the restart intensity (``_intensity.add_restart``), the
temporary-bystander rule, and escalation by exiting with reason *shutdown*. How one child is started
or stopped is ``lifecycle.py``; how requests arrive is ``server.py``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator
from typing import Any

from .. import _linux
from .._addresses import TreeContext
from .._intensity import add_restart
from .._protocol import (
    ChildAddress,
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    Stop,
    TerminateChild,
    WhichChildren,
)
from .._strategy import restart_set, should_restart
from ..errors import (
    ChildNotFoundError,
    ChildNotRunningError,
    StartError,
    SupervisorError,
    SupervisorGoneError,
)
from ..reasons import ExitReason
from ..specs import ChildSpec, Restart, Strategy, SupervisorSpec
from . import processes
from .hooks import LoopHooks
from .jobs import Job, Pending, Scheduler, Wait, all_of
from .lifecycle import IGNORED, Lifecycle
from .reactor import Reactor
from .reports import log, log_report
from .server import ControlServer, Route, RouteKind
from .state import ChildRecord, SupervisorState

__all__ = ["SupervisorProcess"]


class _HookFds:
    """The reactor as the hooks see it: their own fds only, owned by them."""

    def __init__(self, reactor: Reactor, hooks: LoopHooks) -> None:
        self._reactor, self._hooks = reactor, hooks

    def watch(self, fd: int) -> None:
        self._reactor.watch(fd, self._hooks)

    def unwatch(self, fd: int) -> None:
        self._reactor.unwatch(fd)


class SupervisorProcess:
    """The supervisor running in this process: OTP's ``#state`` and its ``handle_*`` callbacks."""

    def __init__(
        self,
        spec: SupervisorSpec,
        tree: TreeContext,
        watch_fd: int | None = None,
        *,
        concurrent: bool = False,
        hooks: LoopHooks | None = None,
        private_fds: tuple[int, ...] = (),
    ) -> None:
        """
        Listen at *tree*'s address and get ready to serve; starts no child (see :meth:`serve`).

        Args:
            watch_fd: a pidfd whose firing (the tree's starter died) stops the supervisor.
            concurrent: run each child's jobs in a lane of its own, so one child's start or stop never
                delays another's (a dynamic supervisor; one_for_one only).
            hooks: told about children's life cycles; see :class:`LoopHooks`.
            private_fds: more descriptors of this process that its children must close.
        """
        if concurrent and spec.strategy is not Strategy.ONE_FOR_ONE:
            raise ValueError(f"a concurrent supervisor must be one_for_one (got {spec.strategy})")
        self.spec = spec
        self.tree = tree
        self.concurrent = concurrent
        self.hooks = hooks if hooks is not None else LoopHooks()
        self.watch_fd = watch_fd
        self.private_fds = private_fds
        self.state = SupervisorState(spec, tree.path)
        self.stopping = False
        self.giving_up = False  # set by a job that exceeded the restart intensity
        self.finished = False
        self.stop_waiters: list[Any] = []
        self.exit_reason: ExitReason = ExitReason.shutdown()
        self.start_error: StartError | None = None

        _linux.set_child_subreaper()
        self.reactor = Reactor()
        self.scheduler = Scheduler(concurrent, self._job_done, self._job_crashed)
        self.lifecycle = Lifecycle(tree, self.reactor, self.hooks, self._own_fds)
        self.server = ControlServer(tree, self.reactor, self.hooks, self._routes(), self._submit)
        if watch_fd is not None:
            self.reactor.watch(watch_fd, self)
        self.hooks.attach(_HookFds(self.reactor, self.hooks))

    def _routes(self) -> dict[type, Route]:
        def child_id(request: Any) -> str:
            return str(request.child_id)

        return {
            WhichChildren: Route(RouteKind.READ, lambda _: self.state.which_children()),
            CountChildren: Route(RouteKind.READ, lambda _: self.state.count_children()),
            ChildAddress: Route(RouteKind.READ, lambda request: self._child_address(request.child_id)),
            Stop: Route(RouteKind.DIRECT, lambda conn, _: self._begin_stop(conn)),
            StartChild: Route(
                RouteKind.QUEUED, lambda request: self._start_child(request.spec), lambda r: r.spec.id
            ),
            TerminateChild: Route(
                RouteKind.QUEUED, lambda request: self._terminate_child(request.child_id), child_id
            ),
            RestartChild: Route(
                RouteKind.QUEUED, lambda request: self._restart_child(request.child_id), child_id
            ),
            DeleteChild: Route(
                RouteKind.QUEUED, lambda request: self._delete_child(request.child_id), child_id
            ),
        }

    def _own_fds(self) -> tuple[int, ...]:
        """The descriptors a child must close: this supervisor's endpoints, epoll set and signal pipe."""
        fds = [*self.server.fds(), *self.reactor.fds(), *self.private_fds, *self.hooks.fds()]
        if self.watch_fd is not None:
            fds.append(self.watch_fd)
        return tuple(fds)

    # ------------------------------------------------------------------ the loop

    def serve(self, on_ready: Callable[[], None]) -> None:
        """Start the children in order, call *on_ready*, then serve until stopped or given up."""
        self.scheduler.enqueue("", Pending(self._init_job(on_ready)))
        while not self.finished:
            self._turn()
        self._close()

    def _turn(self) -> None:
        self.scheduler.schedule()
        if self.finished:
            return
        waits = self.scheduler.waits()
        deadlines = [w.deadline for _, w in waits if w.deadline is not None]
        hook_deadline = self.hooks.deadline()
        if hook_deadline is not None:
            deadlines.append(hook_deadline)
        ready, ready_fds = self.reactor.wait(deadlines)
        owners = self.reactor.owners
        hook_ready = any(owners.get(fd) is self.hooks for fd in ready_fds)

        if self.reactor.wakeup_r in ready:
            signals = self.reactor.read_signals()
            self.lifecycle.reaped_any |= signals.child_exited
            if signals.terminate:
                self._begin_stop(None)
        if self.watch_fd is not None and self.watch_fd in ready:
            log.warning("supervisor %s: the process that started the tree died; stopping", self.tree.path)
            self.reactor.unwatch(self.watch_fd)
            self.watch_fd = None
            self._begin_stop(None)
        if self.server.listener in ready:
            self.server.accept()
        for fd in ready_fds:
            child = owners.get(fd)
            if isinstance(child, ChildRecord) and not child.busy and _is_report(child, fd):
                self.lifecycle.drain(child)
        # Deaths before requests: a caller who saw a child die before calling sees the death handled.
        for fd in ready_fds:
            child = owners.get(fd)
            if isinstance(child, ChildRecord) and not child.busy and _is_pidfd(child, fd):
                self._child_died(child)
        # Begin handling those exits (a temporary child forgotten, a restart forked) before serving
        # requests, as OTP handles an 'EXIT' queued before a call.
        self.scheduler.schedule()
        for conn in [c for c in ready if c in self.server.conns]:
            self.server.on_readable(conn)
        now = time.monotonic()
        if hook_ready:
            self.hooks.on_readable()
        elif hook_deadline is not None and now >= hook_deadline:
            self.hooks.on_deadline()
        self.scheduler.resume(waits, ready, now)
        if self.lifecycle.reaped_any:
            self.lifecycle.reaped_any = False
            processes.reap_adopted(self.state.running_pids())

    def _child_died(self, child: ChildRecord) -> None:
        """A running child's pidfd fired outside any job: reap it and queue its exit (OTP's 'EXIT')."""
        reason = self.lifecycle.reap(child)
        restarting = not self.stopping and should_restart(child.spec.restart, reason)
        self.hooks.child_down(child.event(), reason, restarting)
        if not self.stopping:
            child.exit_pending = reason
            self.scheduler.enqueue(child.id, Pending(self._exit_job(child)))

    def _submit(self, key: str, conn: Any, job: Job) -> None:
        if self.stopping:
            job.close()
            self.server.reply(conn, ("error", self._gone("the supervisor is stopping")))
        else:
            self.scheduler.enqueue(key, Pending(job, conn))

    def _job_done(self, pending: Pending) -> None:
        if self.giving_up and not self.stopping:
            self._begin_stop(None)

    def _job_crashed(self, pending: Pending) -> None:
        # As in OTP, a crash in the supervisor's own code ends the supervisor.
        log.exception("supervisor %s: internal error; stopping", self.tree.path)
        self.server.reply(pending.conn, ("error", SupervisorError("internal error in the supervisor")))
        if self.stopping:
            self._finish(ExitReason.shutdown())
        else:
            self._begin_stop(None)

    def _gone(self, why: str) -> SupervisorGoneError:
        return SupervisorGoneError(f"supervisor {self.tree.path} (pid {os.getpid()}): {why}")

    def _child_address(self, child_id: str) -> str:
        child = self.state.find(child_id)
        if child is None:
            raise self.state.not_found("child_supervisor", child_id)
        if child.spec.nested is None:
            message = f"child_supervisor: child {child_id!r} is not a nested supervisor"
            raise ChildNotFoundError(message, child_id)
        if child.proc is None:
            message = f"child_supervisor: nested supervisor {child_id!r} is not running"
            raise ChildNotRunningError(message, child_id)
        return self.tree.child(child_id).address

    # ------------------------------------------------------------------ stopping

    def _begin_stop(self, conn: Any) -> None:
        if conn is not None:
            self.stop_waiters.append(conn)
        if self.stopping:
            return
        self.stopping = True
        for pending in self.scheduler.take_all():
            pending.job.close()
            self.server.reply(
                pending.conn, ("error", self._gone("the supervisor stopped before this call completed"))
            )
        for child in self.state.children:
            child.busy = False
        self.scheduler.enqueue("", Pending(self._stop_job()))

    def _stop_job(self) -> Job:
        yield from self._terminate_all()
        self._finish(ExitReason.shutdown())

    def _finish(self, reason: ExitReason) -> None:
        self.exit_reason = reason
        self.finished = True
        self.scheduler.halted = True

    def _close(self) -> None:
        for pending in self.scheduler.take_all():
            pending.job.close()
            self.server.reply(
                pending.conn, ("error", self._gone("the supervisor exited before this call completed"))
            )
        for child in self.state.children:
            # Only after an internal error in a stop: no child may outlive its supervisor's exit.
            self.lifecycle.kill_and_reap(child)
        for conn in self.stop_waiters:
            self.server.reply(conn, ("ok", None))
        self.server.close()
        self.reactor.close()
        processes.reap_adopted(self.state.running_pids())

    def _terminate_all(self) -> Job:
        """
        Stop every child by its shutdown spec: in reverse start order, one at a time, for a static
        supervisor; all at once for a concurrent one, as a DynamicSupervisor does.
        """
        for child in self.state.children:
            child.restarting = False
            child.exit_pending = None
        running = [c for c in reversed(self.state.children) if c.proc is not None]
        if not self.concurrent:
            for child in running:
                if child.proc is not None:
                    yield from self.lifecycle.shutdown(child)
            return
        yield from all_of([self.lifecycle.shutdown(child) for child in running])

    # ------------------------------------------------------------------ init, exits, restarts

    def _init_job(self, on_ready: Callable[[], None]) -> Job:
        for spec in self.spec.children:
            child = ChildRecord(spec)
            self.state.add(child)
            outcome = yield from self.lifecycle.start(child, progress=logging.INFO)
            if isinstance(outcome, ExitReason):
                log_report(self.tree.path, "start_error", spec, outcome, logging.ERROR)
                self._remove(child)
                yield from self._terminate_all()
                self.start_error = self._start_error("start", child, outcome)
                self._finish(ExitReason.shutdown())
                return
            if outcome == IGNORED and spec.restart is Restart.TEMPORARY:
                self._remove(child)
        on_ready()

    def _exit_job(self, child: ChildRecord) -> Job:
        reason = child.exit_pending
        if reason is None or child not in self.state.children:
            return
        child.exit_pending = None
        restart = should_restart(child.spec.restart, reason)
        if restart or reason.is_abnormal:
            log_report(self.tree.path, "child_terminated", child.spec, reason, logging.ERROR)
        else:
            log_report(self.tree.path, "child_exited", child.spec, reason, logging.INFO)
        if not restart:
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
            return
        yield from self._restart(child)

    def _retry_job(self, child: ChildRecord) -> Job:
        if child in self.state.children and child.restarting:
            yield from self._restart(child)

    def _restart(self, failed: ChildRecord) -> Job:
        """OTP's ``restart/2``: count the restart, then restart the strategy's set of children."""
        state = self.state
        state.restart_times, exceeded = add_restart(
            state.restart_times, time.monotonic(), self.spec.max_restarts, self.spec.max_seconds
        )
        if exceeded:
            # Giving up is a stop (all children, by their shutdown specs, then exit shutdown) that
            # must also preempt the other lanes' jobs; the loop begins it once this job has ended.
            log_report(
                self.tree.path, "shutdown", failed.spec, None, logging.ERROR, "reached_max_restart_intensity"
            )
            self.giving_up = True
            return
        group_ids = restart_set(self.spec.strategy, [c.id for c in state.children], failed.id)
        group = [c for c in state.children if c.id in group_ids]
        for child in reversed(group):
            if child is failed:
                continue
            child.restarting = False
            child.exit_pending = None
            if child.proc is not None:
                yield from self.lifecycle.shutdown(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
        for child in group:
            if child not in state.children:
                continue
            outcome = yield from self.lifecycle.start(child, progress=logging.INFO, automatic=True)
            if isinstance(outcome, ExitReason):
                log_report(self.tree.path, "start_error", child.spec, outcome, logging.ERROR)
                child.restarting = True
                self.scheduler.enqueue(child.id, Pending(self._retry_job(child)))
                return
            child.restarting = False

    # ------------------------------------------------------------------ the admin API

    def _remove(self, child: ChildRecord) -> None:
        self.state.remove(child)
        self.hooks.child_removed(child.event())

    def _start_child(self, spec: ChildSpec) -> Generator[Wait, list[Any], int | None]:
        self.state.check_new(spec.id)
        child = ChildRecord(spec)
        self.state.add(child)
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            self._remove(child)
            raise self._start_error("start_child", child, outcome)
        if outcome == IGNORED and spec.restart is Restart.TEMPORARY:
            self._remove(child)
        return child.pid

    def _terminate_child(self, child_id: str) -> Job:
        child = self.state.find(child_id)
        if child is None:
            raise self.state.not_found("terminate_child", child_id)
        child.restarting = False
        child.exit_pending = None
        if child.proc is not None:
            yield from self.lifecycle.shutdown(child)
        if child.spec.restart is Restart.TEMPORARY and child in self.state.children:
            self._remove(child)

    def _restart_child(self, child_id: str) -> Generator[Wait, list[Any], int | None]:
        child = self.state.existing("restart_child", child_id)
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            raise self._start_error("restart_child", child, outcome)
        return child.pid

    def _delete_child(self, child_id: str) -> Job:
        yield from ()
        child = self.state.existing("delete_child", child_id)
        child.exit_pending = None
        self._remove(child)

    def _start_error(self, call: str, child: ChildRecord, reason: ExitReason) -> StartError:
        return StartError(
            f"{call}: child {child.id!r} of supervisor {self.tree.path} failed to start: {reason.describe()}",
            child.id,
            reason,
        )


def _is_report(child: ChildRecord, fd: int) -> bool:
    return child.proc is not None and child.proc.report is not None and fd != child.proc.pidfd


def _is_pidfd(child: ChildRecord, fd: int) -> bool:
    return child.proc is not None and child.proc.pidfd == fd
