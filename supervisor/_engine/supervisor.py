"""
OTP's supervisor semantics over OS processes: init, exits and restarts, the admin calls, terminate_all.

The decisions are OTP's exactly: which exits restart (``_strategy.should_restart``), which children a
restart touches (``_strategy.restart_set``), the restart intensity (``_intensity.add_restart``), the
temporary-bystander rule, escalation by giving up, and auto_shutdown when significant children end
(in both cases the loop then stops the supervisor, which exits with reason *shutdown*). Each
decision that waits on children is a job; a failed automatic restart queues its retry behind
everything already queued (OTP's ``try_again_restart``), so a ``stop`` or a ``terminate_child``
cuts through a restart loop.

How one child is started or stopped is ``lifecycle.py``; how requests arrive and how the process
stops is ``loop.py``. This module never touches a socket or the epoll set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from .._addresses import TreeContext
from .._intensity import add_restart
from .._strategy import restart_set, should_restart
from ..errors import ChildNotFoundError, ChildNotRunningError, StartError
from ..reasons import ExitReason
from ..specs import AutoShutdown, ChildSpec, Restart, check_significant
from .hooks import LoopHooks
from .jobs import Job, Pending, Scheduler, Wait, all_of
from .lifecycle import IGNORED, Lifecycle
from .reports import log_report
from .state import ChildRecord, SupervisorState

__all__ = ["Supervision"]


class Supervision:
    """
    OTP's ``supervisor`` callbacks for one supervisor: what to start, restart, stop and forget.

    ``stopping`` is set by the loop when the supervisor begins to stop (exits are then no longer
    handled); ``giving_up`` is set here when the restart intensity is exceeded, and
    ``auto_shutting_down`` when a significant child's end triggers auto_shutdown: the loop stops the
    supervisor once the job that set either has ended; ``start_error`` is the initial start's failure.
    """

    def __init__(
        self,
        tree: TreeContext,
        state: SupervisorState,
        scheduler: Scheduler,
        lifecycle: Lifecycle,
        hooks: LoopHooks,
    ) -> None:
        self.tree = tree
        self.spec = state.spec
        self.state = state
        self.scheduler = scheduler
        self.lifecycle = lifecycle
        self.hooks = hooks
        self.stopping = False
        self.giving_up = False
        self.auto_shutting_down = False
        self.start_error: StartError | None = None

    def child_died(self, child: ChildRecord) -> None:
        """A running child's pidfd fired outside any job: reap it and queue its exit (OTP's 'EXIT')."""
        reason = self.lifecycle.reap(child)
        restarting = not self.stopping and should_restart(child.spec.restart, reason)
        self.hooks.child_down(child.event(), reason, restarting)
        if not self.stopping:
            child.exit_pending = reason
            self.scheduler.enqueue(child.id, Pending(self._exit_job(child)))

    def terminate_all(self) -> Job:
        """
        Stop every child by its shutdown spec: in reverse start order, one at a time, for a static
        supervisor; all at once for a concurrent one, as a DynamicSupervisor does.

        The supervisor is exiting, so the hooks are told each child is forgotten (``child_removed``):
        a child without a process at once (its pending restart, or the retry of a failed one, is
        cancelled), a running one once it has been stopped and reaped (``child_down`` first).
        """
        for child in self.state.children:
            child.restarting = False
            child.exit_pending = None
        for child in self.state.children:
            if child.proc is None:
                self.hooks.child_removed(child.event())
        running = [c for c in reversed(self.state.children) if c.proc is not None]
        if not self.scheduler.concurrent:
            for child in running:
                if child.proc is not None:
                    yield from self.lifecycle.shutdown(child)
                self.hooks.child_removed(child.event())
            return
        yield from all_of([self._shutdown_and_forget(child) for child in running])

    def _shutdown_and_forget(self, child: ChildRecord) -> Job:
        yield from self.lifecycle.shutdown(child)
        self.hooks.child_removed(child.event())

    def child_address(self, child_id: str) -> str:
        """The control address of the running nested supervisor *child_id*."""
        child = self.state.find(child_id)
        if child is None:
            raise self.state.not_found("child_supervisor", child_id)
        if not child.nested:
            message = f"child_supervisor: child {child_id!r} is not a nested supervisor"
            raise ChildNotFoundError(message, child_id)
        if child.proc is None:
            message = f"child_supervisor: nested supervisor {child_id!r} is not running"
            raise ChildNotRunningError(message, child_id)
        return self.tree.child(child_id).address

    # ------------------------------------------------------------------ init, exits, restarts

    def init(self) -> Generator[Wait, list[Any], bool]:
        """Start the children in order; True once all are; on a failure stop those started, False."""
        for spec in self.spec.children:
            child = ChildRecord(spec)
            self.state.add(child)
            outcome = yield from self.lifecycle.start(child, progress=logging.INFO)
            if isinstance(outcome, ExitReason):
                log_report(self.tree.path, "start_error", spec, outcome, logging.ERROR)
                self._remove(child)
                yield from self.terminate_all()
                self.start_error = self._start_error("start", child, outcome)
                return False
            if spec.restart is Restart.TEMPORARY:
                self._started_temporary(child, outcome)
        return True

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
            self._auto_shutdown(child, reason)
            return
        yield from self._restart(child)

    def _auto_shutdown(self, ended: ChildRecord, reason: ExitReason) -> None:
        """
        OTP's ``do_auto_shutdown``: *ended*, a child that exited on its own and will not be restarted,
        stops the supervisor if it is significant and ``auto_shutdown`` says so.

        ALL_SIGNIFICANT waits until no significant child has a process: a running one, one being
        restarted, or one whose exit is still queued (in OTP, its ``'EXIT'`` is still in the mailbox
        and its pid still in the state) all have one.
        """
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.NEVER or not ended.spec.significant:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant and (c.proc is not None or c.restarting or c.exit_pending is not None)
            for c in self.state.children
            if c is not ended
        ):
            return
        # Not an error: OTP's supervisor stops with reason shutdown and writes no report of its own.
        log_report(
            self.tree.path,
            "auto_shutdown",
            ended.spec,
            None,
            logging.INFO,
            f"{reason.describe()}; significant, auto_shutdown={mode.value}: stopping with reason shutdown",
        )
        self.auto_shutting_down = True

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

    def _started_temporary(self, child: ChildRecord, outcome: str) -> None:
        """A temporary child that declined is forgotten; one that started keeps no start arguments."""
        if outcome == IGNORED:
            self._remove(child)
        else:
            child.forget_start_arguments()

    def _remove(self, child: ChildRecord) -> None:
        """Forget *child*'s spec and tell the hooks."""
        self.state.remove(child)
        self.hooks.child_removed(child.event())

    def start_child(self, spec: ChildSpec) -> Generator[Wait, list[Any], int | None]:
        check_significant(spec, self.spec.auto_shutdown)
        self.state.check_new(spec.id)
        child = ChildRecord(spec)
        self.state.add(child)
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            self._remove(child)
            raise self._start_error("start_child", child, outcome)
        if spec.restart is Restart.TEMPORARY:
            self._started_temporary(child, outcome)
        return child.pid

    def terminate_child(self, child_id: str) -> Job:
        child = self.state.find(child_id)
        if child is None:
            raise self.state.not_found("terminate_child", child_id)
        child.restarting = False
        child.exit_pending = None
        if child.proc is not None:
            yield from self.lifecycle.shutdown(child)
        if child.spec.restart is Restart.TEMPORARY and child in self.state.children:
            self._remove(child)

    def restart_child(self, child_id: str) -> Generator[Wait, list[Any], int | None]:
        child = self.state.existing("restart_child", child_id)
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            raise self._start_error("restart_child", child, outcome)
        return child.pid

    def delete_child(self, child_id: str) -> Job:
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
