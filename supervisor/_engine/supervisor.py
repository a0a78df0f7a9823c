"""
OTP's supervisor semantics over OS processes: init, exits and restarts, the admin calls, terminate_all.

The decisions are OTP's exactly: which exits restart (``_strategy.should_restart``), which children a
restart touches (``_strategy.restart_set``), the restart intensity (``_intensity.add_restart``), the
temporary-bystander rule, and escalation by giving up (the loop then stops the supervisor, which
exits with reason *shutdown*). Each decision that waits on children is a job; a failed automatic
restart queues its retry behind everything already queued (OTP's ``try_again_restart``), so a
``stop`` or a ``terminate_child`` cuts through a restart loop.

A child with a :class:`~supervisor.specs.Backoff` may wait before its automatic restart (the delay is
``_backoff.restart_delay``). The restart is counted toward the intensity first, when the exit is
handled; the wait is a timer in the reactor, not a job, so the supervisor keeps serving, reaping and
restarting other children meanwhile, and ``terminate_child``, ``restart_child`` and ``stop`` cut
through it. The children of a group restart are stopped at once and wait as one (a
:class:`~supervisor._engine.state.RestartGroup`); with no backoff, or a delay of 0, nothing is armed
and the restart starts in the same job, as before.

How one child is started or stopped is ``lifecycle.py``; how requests arrive and how the process
stops is ``loop.py``. This module never touches a socket or the epoll set.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections.abc import Generator
from typing import Any

from .. import _backoff
from .._addresses import TreeContext
from .._intensity import add_restart
from .._strategy import restart_set, should_restart
from ..errors import ChildNotFoundError, ChildNotRunningError, StartError
from ..reasons import ExitReason
from ..specs import ChildSpec, Restart
from .hooks import LoopHooks
from .jobs import Job, Pending, Scheduler, Wait, all_of
from .lifecycle import IGNORED, Lifecycle
from .reactor import Timers
from .reports import log_report
from .state import ChildRecord, RestartGroup, SupervisorState

__all__ = ["Supervision"]


class Supervision:
    """
    OTP's ``supervisor`` callbacks for one supervisor: what to start, restart, stop and forget.

    ``stopping`` is set by the loop when the supervisor begins to stop (exits are then no longer
    handled); ``giving_up`` is set here when the restart intensity is exceeded, and the loop stops
    the supervisor once the job that set it has ended; ``start_error`` is the initial start's failure.
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
        self.start_error: StartError | None = None
        self.random = random.Random()  # seeded in this process: forked supervisors jitter apart

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
            self._cancel_restart(child)
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
            return
        yield from self._restart(child)

    def _retry_job(self, child: ChildRecord) -> Job:
        if child in self.state.children and child.restarting:
            yield from self._restart(child, retry=True)

    def _restart(self, failed: ChildRecord, retry: bool = False) -> Job:
        """
        OTP's ``restart/2``: count the restart, then restart the strategy's set of children, at once
        or, when *failed* has a backoff with a delay, once the delay has passed (the others of the
        set are stopped now). *retry*: a failed restart is being retried (the same restart).
        """
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
        members = [c for c in state.children if c.id in group_ids]
        group = RestartGroup(list(members), failed)
        for child in members:
            self._leave_group(child)
            child.group = group
            if not retry:
                child.restarts += 1
        delay = 0.0 if failed.spec.backoff is None else self._backoff_delay(failed)
        if delay > 0:
            failed.restarting = False  # BACKOFF, not RESTARTING: restart_child may start it now
            self._arm(group, delay)
        for child in reversed(members):
            if child is failed:
                continue
            child.restarting = False
            child.exit_pending = None
            if child.proc is not None:
                yield from self.lifecycle.shutdown(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
        if delay <= 0:
            yield from self._start_group(group)

    def _start_group(self, group: RestartGroup) -> Job:
        """Start *group*'s members in start order; on a failure, queue its retry and stop there."""
        for child in list(group.members):
            if child.group is not group or child not in self.state.children:
                continue
            outcome = yield from self.lifecycle.start(child, progress=logging.INFO, automatic=True)
            if isinstance(outcome, ExitReason):
                log_report(self.tree.path, "start_error", child.spec, outcome, logging.ERROR)
                child.restarting = True
                group.cause = child
                self.scheduler.enqueue(child.id, Pending(self._retry_job(child)))
                return
            child.restarting = False
            self._leave_group(child)

    # ------------------------------------------------------------------ backoff

    def _backoff_delay(self, failed: ChildRecord) -> float:
        """Count *failed*'s consecutive restart (reset after a long enough run); return its delay."""
        backoff = failed.spec.backoff
        assert backoff is not None
        ran = None if failed.running_since is None else _backoff.clock() - failed.running_since
        failed.running_since = None
        failed.consecutive = _backoff.consecutive_restarts(backoff, failed.consecutive, ran)
        return _backoff.restart_delay(backoff, failed.consecutive, self.random.uniform(-1.0, 1.0))

    def _arm(self, group: RestartGroup, delay: float) -> None:
        """Put *group* in BACKOFF: its start is queued when *delay* seconds have passed."""
        group.retry_at = time.monotonic() + delay
        group.retry_at_utc = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delay)
        group.timer = self.lifecycle.reactor.timers.call_at(group.retry_at, lambda: self._backoff_over(group))

    def _backoff_over(self, group: RestartGroup) -> None:
        """The reactor's timer: queue the start of *group*'s members (RESTARTING until it runs)."""
        group.timer, group.retry_at, group.retry_at_utc = None, None, None
        if self.stopping or not group.members:
            return
        self.scheduler.enqueue(group.members[0].id, Pending(self._start_group(group)))

    def _leave_group(self, child: ChildRecord) -> None:
        """Take *child* out of its pending automatic restart; an emptied one's timer is cancelled."""
        group = child.group
        if group is None:
            return
        child.group = None
        if child in group.members:
            group.members.remove(child)
        if not group.members:
            Timers.cancel(group.timer)
            group.timer, group.retry_at, group.retry_at_utc = None, None, None

    def _cancel_restart(self, child: ChildRecord) -> None:
        """
        Cancel *child*'s pending automatic restart (``terminate_child``, a stop): its queued exit, its
        retry, its backoff. If the restart is for *child*'s own exit or failed start, it is abandoned
        for every member, as OTP's ``terminate_child`` ends a restart loop: those without a process
        stay stopped.
        """
        child.restarting = False
        child.exit_pending = None
        group = child.group
        if group is not None and group.cause is child:
            for member in list(group.members):
                self._leave_group(member)
        self._leave_group(child)

    # ------------------------------------------------------------------ the admin API

    def _started_temporary(self, child: ChildRecord, outcome: str) -> None:
        """A temporary child that declined is forgotten; one that started keeps no start arguments."""
        if outcome == IGNORED:
            self._remove(child)
        else:
            child.forget_start_arguments()

    def _remove(self, child: ChildRecord) -> None:
        """Forget *child*'s spec and tell the hooks."""
        self._leave_group(child)
        self.state.remove(child)
        self.hooks.child_removed(child.event())

    def start_child(self, spec: ChildSpec) -> Generator[Wait, list[Any], int | None]:
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
        self._cancel_restart(child)
        if child.proc is not None:
            yield from self.lifecycle.shutdown(child)
        if child.spec.restart is Restart.TEMPORARY and child in self.state.children:
            self._remove(child)

    def restart_child(self, child_id: str) -> Generator[Wait, list[Any], int | None]:
        child = self.state.existing("restart_child", child_id)
        self._leave_group(child)  # a child in BACKOFF starts now
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            raise self._start_error("restart_child", child, outcome)
        return child.pid

    def delete_child(self, child_id: str) -> Job:
        yield from ()
        child = self.state.existing("delete_child", child_id)
        child.exit_pending = None
        self._remove(child)  # a pending restart of it (BACKOFF) is cancelled

    def _start_error(self, call: str, child: ChildRecord, reason: ExitReason) -> StartError:
        return StartError(
            f"{call}: child {child.id!r} of supervisor {self.tree.path} failed to start: {reason.describe()}",
            child.id,
            reason,
        )
