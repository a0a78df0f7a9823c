"""
OTP's supervisor semantics over OS processes: init, exits and restarts, the admin calls, terminate_all.

The decisions are OTP's exactly: which exits restart (``_strategy.should_restart``), which children a
restart touches (``_strategy.restart_set``), the restart intensity (``_intensity.add_restart``), the
temporary-bystander rule, escalation by giving up, and auto_shutdown when significant children end
(in both cases the loop then stops the supervisor, which exits with reason *shutdown*). Each
decision that waits on children is a job; a failed automatic restart queues its retry behind
everything already queued (OTP's ``try_again_restart``), so a ``stop`` or a ``terminate_child``
cuts through a restart loop.

A child with a :class:`~supervisor.specs.Backoff` may wait before its automatic restart (the delay is
``_backoff.restart_delay``). The restart is counted toward the intensity first, when the exit is
handled; the wait is a timer in the reactor, not a job, so the supervisor keeps serving, reaping and
restarting other children meanwhile, and ``terminate_child``, ``restart_child`` and ``stop`` cut
through it. The children of a group restart are stopped at once and wait as one (a
:class:`~supervisor._engine.state.RestartGroup`); with no backoff, or a delay of 0, nothing is armed
and the restart starts in the same job, as before.

Two kinds of supervisor know their children by pid, not id (their records are *anonymous*: the id
is a key made up here, for the child's lane and tree path): simple_one_for_one (OTP's: one template,
``start_child(*extra_args)``, one lane, parallel shutdown under one timer) and the DynamicSupervisor
(Elixir's: ``start_child(spec)``, ``max_children``, ``extra_arguments``, a lane per child, parallel
shutdown). In both, a child that is not restarted is dropped, as is one whose restart ignores its
start. The SessionManager is a DynamicSupervisor that keeps its children's ids (``keep_ids``): its
children are static records, addressed by session id.

How one child is started or stopped is ``lifecycle.py``; how requests arrive and how the process
stops is ``loop.py``. This module never touches a socket or the epoll set.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import random
import time
from collections.abc import Generator
from typing import Any

import attrs

from .. import _backoff
from .._addresses import TreeContext
from .._intensity import add_restart
from .._strategy import restart_set, should_restart
from ..errors import (
    ChildNotFoundError,
    ChildNotRunningError,
    MaxChildrenError,
    SimpleOneForOneError,
    StartError,
    SupervisorError,
)
from ..info import ChildInfo
from ..reasons import ExitReason
from ..specs import AutoShutdown, ChildSpec, DynamicSupervisorSpec, Restart, Strategy, check_significant
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
        keep_ids: bool = False,
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
        self.random = random.Random()  # seeded in this process: forked supervisors jitter apart
        self.simple = self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE
        self.dynamic = isinstance(self.spec, DynamicSupervisorSpec)
        # Children known by pid, reported with id None: simple_one_for_one's, a DynamicSupervisor's.
        self.anonymous = self.simple or (self.dynamic and not keep_ids)
        self._serial = itertools.count(1)

    def new_key(self, base: str) -> str:
        """A key for a new anonymous child (its lane and tree path): *base*, then a serial number."""
        return f"{base}#{next(self._serial)}"

    def lane_of(self, child: str | int) -> str:
        """The lane key of a request about *child* (an id, or a pid when children are known by pid)."""
        if isinstance(child, int):
            # An old pid too: a terminate_child of a child whose restart is in progress waits for it
            # in its lane, then finds it restarting (ends the loop) or running anew (not found).
            found = self.state.find_pid(child, past=True)
            return found.id if found is not None else f"pid:{child}"
        return child

    def child_died(self, child: ChildRecord) -> None:
        """A running child's pidfd fired outside any job: reap it and queue its exit (OTP's 'EXIT')."""
        child.exit_pid = child.pid
        reason = self.lifecycle.reap(child)
        restarting = not self.stopping and should_restart(child.spec.restart, reason)
        self.hooks.child_down(child.event(), reason, restarting)
        if self.stopping:
            # Its turn in the stop will find it gone: judge its reason now, as OTP's shutdown does.
            self.lifecycle.check_shutdown_reason(child, reason)
        else:
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
        if not (self.scheduler.concurrent or self.simple):
            for child in running:
                if child.proc is not None:
                    yield from self.lifecycle.shutdown(child)
                self.hooks.child_removed(child.event())
            return
        # All at once, in no defined order: every timer starts now, so children with the same shutdown
        # time share one deadline (simple_one_for_one's one timer; a DynamicSupervisor's one per value).
        now = time.monotonic()
        yield from all_of([self._shutdown_and_forget(child, now) for child in running])

    def _shutdown_and_forget(self, child: ChildRecord, since: float) -> Job:
        yield from self.lifecycle.shutdown(child, since)
        self.hooks.child_removed(child.event())

    def child_address(self, child_id: str) -> str:
        """The control address of the running nested supervisor *child_id*."""
        child = None if self.anonymous else self.state.find(child_id)
        if child is None:
            raise self.state.not_found("child_supervisor", child_id)
        if not child.nested:
            message = f"child_supervisor: child {child_id!r} is not a nested supervisor"
            raise ChildNotFoundError(message, child_id)
        if child.proc is None:
            message = f"child_supervisor: nested supervisor {child_id!r} is not running"
            raise ChildNotRunningError(message, child_id)
        return self.tree.child(child_id).address

    def child_supervisor_of(self, pid: int) -> tuple[str, str]:
        """The control address and tree id of the running nested supervisor child whose pid is *pid*."""
        child = self.state.find_pid(pid) if self.anonymous else None
        if child is None or child.pid != pid:
            raise self._pid_not_found("child_supervisor", pid)
        if not child.nested:
            raise ChildNotFoundError(f"child_supervisor: child pid {pid} is not a nested supervisor", pid)
        return self.tree.child(child.id).address, child.id

    # ------------------------------------------------------------------ init, exits, restarts

    def init(self) -> Generator[Wait, list[Any], bool]:
        """
        Start the children in order; True once all are; on a failure stop those started, False.

        A simple_one_for_one supervisor starts none: its one spec is the template.
        """
        for spec in () if self.simple else self.spec.children:
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
            if child.spec.restart is Restart.TEMPORARY or child.anonymous or self.dynamic:
                self._remove(child)
            self._auto_shutdown(child, reason)
            return
        yield from self._restart(child)

    def _auto_shutdown(self, ended: ChildRecord, reason: ExitReason) -> None:
        """
        OTP's ``do_auto_shutdown``: *ended*, a child that exited on its own and will not be restarted,
        stops the supervisor if it is significant and ``auto_shutdown`` says so.

        ALL_SIGNIFICANT waits until no significant child has a process: a running one, one being
        restarted (a retry, or a restart waiting out its backoff: OTP's ``restarting``), or one whose
        exit is still queued (in OTP, its ``'EXIT'`` is still in the mailbox and its pid still in the
        state) all have one.
        """
        mode = self.spec.auto_shutdown
        if mode is AutoShutdown.NEVER or not ended.spec.significant:
            return
        if mode is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant
            and (c.proc is not None or c.restarting or c.exit_pending is not None or c.group is not None)
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
            self.hooks.intensity_reached(failed.event(), failed.last_exit)
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

    def _start_group(
        self, group: RestartGroup
    ) -> Generator[Wait, list[Any], tuple[ChildRecord, ExitReason] | None]:
        """
        Start *group*'s members in start order; on a failure, queue its retry, stop there and return
        the member that failed with its reason.
        """
        for child in list(group.members):
            if child.group is not group or child not in self.state.children:
                continue
            outcome = yield from self.lifecycle.start(child, progress=logging.INFO, automatic=True)
            if isinstance(outcome, ExitReason):
                log_report(self.tree.path, "start_error", child.spec, outcome, logging.ERROR)
                child.restarting = True
                group.cause = child
                self.scheduler.enqueue(child.id, Pending(self._retry_job(child)))
                return child, outcome
            child.restarting = False
            if outcome == IGNORED and child.anonymous:
                self._remove(child)  # simple_one_for_one and DynamicSupervisor drop it
            else:
                self._leave_group(child)
        return None

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
        self.scheduler.enqueue(group.members[0].id, Pending(self._group_job(group)))

    def _group_job(self, group: RestartGroup) -> Job:
        yield from self._start_group(group)

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

    def start_child(self, spec: ChildSpec, key: str | None = None) -> Generator[Wait, list[Any], int | None]:
        """
        Add *spec* as a child and start it; its pid, or None if it ignored its start.

        A DynamicSupervisor refuses when it has ``max_children`` children, prepends its
        ``extra_arguments`` to the spec's args, and stores nothing for a child that ignores its start;
        its children are anonymous unless it keeps ids, *key* being the key the loop made up for it.
        """
        if self.simple:
            raise SimpleOneForOneError(
                f"start_child: supervisor {self.tree.path} is simple_one_for_one: it starts children from "
                "its template, with extra args (start_child(*extra_args)), not from a ChildSpec",
                "start_child",
            )
        check_significant(spec, self.spec.auto_shutdown, "DynamicSupervisor" if self.dynamic else None)
        if not self.anonymous:
            self.state.check_new(spec.id)
        record = ChildRecord(spec)
        if isinstance(self.spec, DynamicSupervisorSpec):
            self._check_room(spec.id)
            if self.anonymous or self.spec.extra_arguments:
                args = self.spec.extra_arguments + spec.args
                child_id = key if self.anonymous and key is not None else spec.id
                record = ChildRecord(attrs.evolve(spec, id=child_id, args=args), anonymous=self.anonymous)
        return (yield from self._start_new(record, spec.id))

    def start_simple_child(self, extra_args: tuple[Any, ...]) -> Generator[Wait, list[Any], int | None]:
        """OTP's ``start_child(Sup, ExtraArgs)``: a child from the template, its args then *extra_args*."""
        if not self.simple:
            raise SupervisorError(
                f"start_child: supervisor {self.tree.path} is not simple_one_for_one: it takes a ChildSpec"
            )
        template = self.spec.children[0]
        spec = attrs.evolve(template, id=self.new_key(template.id), args=template.args + tuple(extra_args))
        return (yield from self._start_new(ChildRecord(spec, anonymous=True), template.id))

    def _check_room(self, child_id: str) -> None:
        assert isinstance(self.spec, DynamicSupervisorSpec)
        limit = self.spec.max_children
        if limit is not None and len(self.state.children) >= limit:
            raise MaxChildrenError(
                f"start_child: DynamicSupervisor {self.tree.path} already has {len(self.state.children)} "
                f"children (max_children={limit}); child {child_id!r} was not started",
                limit,
            )

    def _start_new(self, child: ChildRecord, name: str) -> Generator[Wait, list[Any], int | None]:
        """Add and start *child* (an API start); a failure stores nothing and raises StartError."""
        self.state.add(child)
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            self._remove(child)
            raise self._start_error("start_child", child, outcome, name)
        if outcome == IGNORED and child.anonymous:
            self._remove(child)  # simple_one_for_one and DynamicSupervisor store nothing
            return None
        if child.spec.restart is Restart.TEMPORARY:
            self._started_temporary(child, outcome)
        return child.pid

    def terminate_child(self, child_id: str | int) -> Job:
        child = self._child_to_terminate(child_id)
        if child is None:
            return
        self._cancel_restart(child)
        if child.proc is not None:
            yield from self.lifecycle.shutdown(child)
        if (child.spec.restart is Restart.TEMPORARY or child.anonymous) and child in self.state.children:
            self._remove(child)

    def _child_to_terminate(self, child_id: str | int) -> ChildRecord | None:
        """The child ``terminate_child`` stops, None when there is nothing to do; raises as OTP replies."""
        if not self.anonymous:
            child = self.state.find(child_id) if isinstance(child_id, str) else None
            if child is None:
                if isinstance(child_id, int):
                    raise self._pid_not_found("terminate_child", child_id)
                raise self.state.not_found("terminate_child", child_id)
            return child
        if isinstance(child_id, str):
            if self.simple:
                raise self._simple_error("terminate_child", f"with an id ({child_id!r})")
            raise ChildNotFoundError(
                f"terminate_child: DynamicSupervisor {self.tree.path} knows its children by pid, "
                f"not id (got {child_id!r})",
                child_id,
            )
        child = self.state.find_pid(child_id)
        if child is None and (not self.simple or _alive(child_id)):
            # simple_one_for_one: a dead pid is fine (OTP); a live one that is not a child is not found.
            # DynamicSupervisor: any pid that is not a child is not found (Elixir).
            raise self._pid_not_found("terminate_child", child_id)
        return child

    def which_child(self, child_id: str | int) -> ChildInfo:
        """One child's ChildInfo (OTP 28's ``which_child``): by id, or by pid when known by pid."""
        return self._lookup("which_child", child_id).info()

    def get_childspec(self, child_id: str | int) -> ChildSpec:
        """
        One child's spec, every field filled in: by id, or by pid when known by pid; then with the
        id it was given (the template's, or the DynamicSupervisor's caller's) and the args it runs with.
        """
        child = self._lookup("get_childspec", child_id)
        if child.anonymous:
            return attrs.evolve(child.spec, id=child.id.rpartition("#")[0])
        return child.spec

    def _lookup(self, call: str, child_id: str | int) -> ChildRecord:
        if isinstance(child_id, int):
            child = self.state.find_pid(child_id) if self.anonymous else None
            if child is None:
                raise self._pid_not_found(call, child_id)
            return child
        if self.anonymous:
            raise self._no_ids(call, child_id)
        child = self.state.find(child_id)
        if child is None:
            raise self.state.not_found(call, child_id)
        return child

    def _pid_not_found(self, call: str, pid: int) -> ChildNotFoundError:
        return ChildNotFoundError(
            f"{call}: no child with pid {pid} under supervisor {self.tree.path} (pid {os.getpid()})", pid
        )

    def _simple_error(self, call: str, what: str = "") -> SimpleOneForOneError:
        if what:
            why = "its children have no ids: terminate_child takes a pid"
        else:
            why = "its children are started from the template and stopped by pid, not restarted or deleted"
        return SimpleOneForOneError(
            f"{call}{' ' + what if what else ''}: supervisor {self.tree.path} is simple_one_for_one "
            f"(OTP's {{error, simple_one_for_one}}): {why}",
            call,
        )

    def _no_ids(self, call: str, child_id: str) -> SupervisorError:
        """The error of a call by id that a supervisor knowing its children by pid does not take."""
        if self.simple:
            return self._simple_error(call)
        return ChildNotFoundError(
            f"{call}: DynamicSupervisor {self.tree.path} knows its children by pid; none has the id "
            f"{child_id!r}",
            child_id,
        )

    def restart_child(self, child_id: str) -> Generator[Wait, list[Any], int | None]:
        if self.anonymous:
            raise self._no_ids("restart_child", child_id)
        child = self.state.existing("restart_child", child_id)
        group = child.group
        if group is not None and group.cause is child and group.timer is not None and child.proc is None:
            # The group waits as one, so it ends its wait as one: the whole group starts now.
            Timers.cancel(group.timer)
            group.timer, group.retry_at, group.retry_at_utc = None, None, None
            failed = yield from self._start_group(group)
            if failed is not None:
                raise self._start_error("restart_child", *failed)
            return child.pid
        self._leave_group(child)  # a child in BACKOFF starts now
        outcome = yield from self.lifecycle.start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            raise self._start_error("restart_child", child, outcome)
        return child.pid

    def delete_child(self, child_id: str) -> Job:
        yield from ()
        if self.anonymous:
            raise self._no_ids("delete_child", child_id)
        child = self.state.existing("delete_child", child_id)
        child.exit_pending = None
        self._remove(child)  # a pending restart of it (BACKOFF) is cancelled

    def _start_error(
        self, call: str, child: ChildRecord, reason: ExitReason, name: str | None = None
    ) -> StartError:
        """*name*: the id the caller gave (a simple_one_for_one child's: its template's)."""
        child_id = child.id if name is None else name
        return StartError(
            f"{call}: child {child_id!r} of supervisor {self.tree.path} failed to start: {reason.describe()}",
            child_id,
            reason,
        )


def _alive(pid: int) -> bool:
    """Whether a process *pid* exists (a zombie counts: it is not reaped yet); does not block."""
    if pid <= 0:
        return False  # kill(0 or -n, 0) would ask about process groups, not a process
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True
