"""
The supervisor process's loop: one thread, one wait per turn, and the order in which events are handled.

:class:`SupervisorProcess` builds the parts (reactor, scheduler, lifecycle, control server, and the
OTP semantics in :class:`~supervisor._engine.supervisor.Supervision`) and runs the turn. Each turn
makes one wait on the reactor, then handles what became ready in a fixed order: signals, the
starter's death, new connections and event subscribers' sockets (a closed stream is forgotten
before any request of the turn; a writable one is flushed), report pipes, *deaths* (reaped at once,
their exits queued as jobs and begun before any request, as OTP handles an ``'EXIT'`` queued before a
call), the reactor's due timers (a backoff that has passed queues its restart), requests, the hooks'
fds, and last the jobs whose waits were met. The event feed (``events.py``) is told of every child's
life cycle by the hooks, as the exit watchers are. Stopping preempts every job (a stop is bounded even while
a child hangs in its start), then stops the children by their shutdown specs and closes everything.

Children are forked from this single-threaded process, so forking is safe. This process is a child
subreaper: orphans of its workers are reparented to it and reaped here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .. import _linux
from .._addresses import TreeContext
from .._protocol import (
    KIND_DYNAMIC,
    KIND_SIMPLE,
    KIND_STATIC,
    AwaitExit,
    ChildAddress,
    ChildSupervisorOf,
    CountChildren,
    DeleteChild,
    GetChildspec,
    RestartChild,
    StartChild,
    StartSimpleChild,
    Stop,
    Subscribe,
    SupervisorKind,
    TerminateChild,
    WhichChild,
    WhichChildren,
)
from ..errors import StartError, SupervisorError, SupervisorGoneError
from ..reasons import ExitReason
from ..specs import DynamicSupervisorSpec, SupervisorSpec
from . import processes
from .events import EventFeed
from .hooks import ChainedHooks, LoopHooks
from .jobs import Job, Pending, Scheduler
from .lifecycle import Lifecycle
from .reactor import Reactor
from .reports import log
from .server import ControlServer, Route, RouteKind
from .state import ChildRecord, SupervisorState
from .supervisor import Supervision
from .watchers import ExitWatchers

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
    """The supervisor running in this process: its parts, its loop, and how it stops."""

    def __init__(
        self,
        spec: SupervisorSpec | DynamicSupervisorSpec,
        tree: TreeContext,
        watch_fd: int | None = None,
        *,
        keep_ids: bool = False,
        hooks: LoopHooks | None = None,
    ) -> None:
        """
        Listen at *tree*'s address and get ready to serve; starts no child (see :meth:`serve`).

        A :class:`DynamicSupervisorSpec` makes a DynamicSupervisor: each child's jobs run in a lane of
        their own (concurrent), so one child's start or stop never delays another's.

        Args:
            watch_fd: a pidfd whose firing (the tree's starter died) stops the supervisor.
            keep_ids: a DynamicSupervisor that keeps its children's ids and addresses them by id, as
                a static supervisor does (the SessionManager's sessions).
            hooks: told about children's life cycles; see :class:`LoopHooks`.
        """
        concurrent = isinstance(spec, DynamicSupervisorSpec)
        if keep_ids and not concurrent:
            raise ValueError("'keep_ids' is for a DynamicSupervisor (a DynamicSupervisorSpec)")
        self.tree = tree
        self.state = SupervisorState(spec, tree.path)
        self.watchers = ExitWatchers(tree, self.state.running_pids)
        self.hooks = ChainedHooks(hooks if hooks is not None else LoopHooks(), [self.watchers])
        self.watch_fd = watch_fd
        self.finished = False
        self.stop_waiters: list[Any] = []
        self.exit_reason: ExitReason = ExitReason.shutdown()

        _linux.set_child_subreaper()
        self.reactor = Reactor()
        self.events = EventFeed(self.reactor, self.state.running_supervisors)
        self.hooks.observers.append(self.events)
        self.scheduler = Scheduler(concurrent, self._job_done, self._job_crashed)
        self.lifecycle = Lifecycle(tree, self.reactor, self.hooks)
        self.supervision = Supervision(
            tree, self.state, self.scheduler, self.lifecycle, self.hooks, keep_ids=keep_ids
        )
        self.server = ControlServer(tree, self.reactor, self.hooks, self._routes(), self._submit)
        self.watchers.reply = self.server.reply
        if watch_fd is not None:
            self.reactor.watch(watch_fd, self)
        self.hooks.attach(_HookFds(self.reactor, self.hooks))

    @property
    def start_error(self) -> StartError | None:
        """Why the initial start failed (a child failed to start), if it did."""
        return self.supervision.start_error

    def _routes(self) -> dict[type, Route]:
        otp = self.supervision

        def child_id(request: Any) -> str:
            return str(request.child_id)

        if otp.simple:
            kind = KIND_SIMPLE
        elif otp.dynamic:
            kind = KIND_DYNAMIC
        else:
            kind = KIND_STATIC
        start_child = Route(
            RouteKind.QUEUED, lambda request: otp.start_child(request.spec), lambda r: r.spec.id
        )
        if otp.dynamic and otp.anonymous:
            # The new child's key, made up here, is its lane: no other child's jobs wait on its start.
            start_child = Route(RouteKind.DIRECT, self._start_dynamic_child)
        return {
            SupervisorKind: Route(RouteKind.READ, lambda _: kind),
            ChildSupervisorOf: Route(RouteKind.READ, lambda request: otp.child_supervisor_of(request.pid)),
            StartSimpleChild: Route(
                RouteKind.QUEUED, lambda request: otp.start_simple_child(request.extra_args), lambda _: ""
            ),
            WhichChildren: Route(RouteKind.READ, lambda _: self.state.which_children()),
            CountChildren: Route(RouteKind.READ, lambda _: self.state.count_children()),
            ChildAddress: Route(RouteKind.READ, lambda request: otp.child_address(request.child_id)),
            WhichChild: Route(RouteKind.READ, lambda request: otp.which_child(request.child_id)),
            GetChildspec: Route(RouteKind.READ, lambda request: otp.get_childspec(request.child_id)),
            Stop: Route(RouteKind.DIRECT, lambda conn, _: self._begin_stop(conn)),
            AwaitExit: Route(
                RouteKind.DIRECT, lambda conn, request: self.watchers.await_exit(conn, request.pid)
            ),
            Subscribe: Route(RouteKind.DIRECT, self._subscribe),
            StartChild: start_child,
            TerminateChild: Route(
                RouteKind.QUEUED,
                lambda request: otp.terminate_child(request.child_id),
                lambda request: otp.lane_of(request.child_id),
            ),
            RestartChild: Route(
                RouteKind.QUEUED, lambda request: otp.restart_child(request.child_id), child_id
            ),
            DeleteChild: Route(
                RouteKind.QUEUED, lambda request: otp.delete_child(request.child_id), child_id
            ),
        }

    def _subscribe(self, conn: Any, request: Subscribe) -> None:
        self.server.release(conn)
        self.events.subscribe(conn, request)

    def _start_dynamic_child(self, conn: Any, request: StartChild) -> None:
        key = self.supervision.new_key(request.spec.id)
        job = self.supervision.start_child(request.spec, key)
        self._submit(key, conn, self.server.reply_job(conn, job))

    # ------------------------------------------------------------------ the loop

    def serve(self, on_ready: Callable[[], None]) -> None:
        """
        Start the children in order, call *on_ready*, then serve until stopped or given up.

        Blocks for the supervisor's life. On return every child has exited and been reaped, and the
        control socket is closed; :attr:`start_error` or :attr:`exit_reason` says how it ended.
        """
        self.scheduler.enqueue("", Pending(self._init_job(on_ready)))
        crashed = False
        while not self.finished:
            try:
                self._turn()
            except Exception:
                # As in OTP, a crash in the supervisor's own code ends the supervisor, but in order:
                # its children are stopped by their shutdown specs (a second crash skips to the
                # close, which SIGKILLs and reaps whatever is left).
                log.exception("supervisor %s: internal error in the loop; stopping", self.tree.path)
                if crashed or self.supervision.stopping:
                    break
                crashed = True
                self._begin_stop(None)
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
        server_deadline = self.server.deadline()
        if server_deadline is not None:
            deadlines.append(server_deadline)
        timers = self.reactor.timers
        timer_deadline = timers.deadline() if timers else None
        if timer_deadline is not None:
            deadlines.append(timer_deadline)
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
            if fd in self.server.pending:
                self.server.on_handshake_readable(fd)
            elif owners.get(fd) is self.events:
                self.events.on_ready(fd)
        for fd in ready_fds:
            child = owners.get(fd)
            if isinstance(child, ChildRecord) and not child.busy and _is_report(child, fd):
                self.lifecycle.drain(child)
        # Deaths before requests: a caller who saw a child die before calling sees the death handled.
        for fd in ready_fds:
            child = owners.get(fd)
            if isinstance(child, ChildRecord) and not child.busy and _is_pidfd(child, fd):
                self.supervision.child_died(child)
        if timer_deadline is not None:
            timers.run_due(time.monotonic())
        # Begin handling those exits (a temporary child forgotten, a restart forked) before serving
        # requests, as OTP handles an 'EXIT' queued before a call.
        self.scheduler.schedule()
        for conn in [c for c in ready if c in self.server.conns]:
            self.server.on_readable(conn)
        now = time.monotonic()
        if server_deadline is not None and now >= server_deadline:
            self.server.on_deadline(now)
        if hook_ready:
            self.hooks.on_readable()
        elif hook_deadline is not None and now >= hook_deadline:
            self.hooks.on_deadline()
        self.scheduler.resume(waits, ready, now)
        if self.lifecycle.reaped_any:
            self.lifecycle.reaped_any = False
            processes.reap_adopted(self.state.running_pids())

    def _init_job(self, on_ready: Callable[[], None]) -> Job:
        started = yield from self.supervision.init()
        if started:
            on_ready()
        else:
            self._finish(ExitReason.shutdown())

    def _submit(self, key: str, conn: Any, job: Job) -> None:
        if self.supervision.stopping:
            job.close()
            self.server.reply(conn, ("error", self._gone("the supervisor is stopping")))
        else:
            self.scheduler.enqueue(key, Pending(job, conn))

    def _job_done(self, pending: Pending) -> None:
        must_stop = self.supervision.giving_up or self.supervision.auto_shutting_down
        if must_stop and not self.supervision.stopping:
            self._begin_stop(None)

    def _job_crashed(self, pending: Pending) -> None:
        # As in OTP, a crash in the supervisor's own code ends the supervisor.
        log.exception("supervisor %s: internal error; stopping", self.tree.path)
        self.server.reply(pending.conn, ("error", SupervisorError("internal error in the supervisor")))
        if self.supervision.stopping:
            self._finish(ExitReason.shutdown())
        else:
            self._begin_stop(None)

    def _gone(self, why: str) -> SupervisorGoneError:
        return SupervisorGoneError(f"supervisor {self.tree.path} (pid {os.getpid()}): {why}")

    # ------------------------------------------------------------------ stopping

    def _begin_stop(self, conn: Any) -> None:
        if conn is not None:
            self.stop_waiters.append(conn)
        if self.supervision.stopping:
            return
        self.supervision.stopping = True
        for pending in self.scheduler.take_all():
            pending.job.close()
            self.server.reply(
                pending.conn, ("error", self._gone("the supervisor stopped before this call completed"))
            )
        for child in self.state.children:
            child.busy = False
        self.scheduler.enqueue("", Pending(self._stop_job()))

    def _stop_job(self) -> Job:
        yield from self.supervision.terminate_all()
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
        self.events.close()
        self.reactor.close()
        processes.reap_adopted(self.state.running_pids())


def _is_report(child: ChildRecord, fd: int) -> bool:
    return child.proc is not None and child.proc.report is not None and fd != child.proc.pidfd


def _is_pidfd(child: ChildRecord, fd: int) -> bool:
    return child.proc is not None and child.proc.pidfd == fd
