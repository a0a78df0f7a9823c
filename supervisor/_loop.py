"""
The supervisor process: its state, its single wait loop, and the jobs that start and stop children.

One thread, one loop. Each turn makes one ``epoll_wait`` on a persistent epoll set holding the
listening socket, the client connections, the signal wake-up pipe, the parent-death pidfd (the
root's), and every child's pidfd and report pipe (jobs wait on those too); the timeout is the nearest
job deadline, never a polling interval.

Work that waits on children (starting one until it is ready, stopping one by its shutdown spec, a
group restart) is a *job*: a generator that yields what it waits for and is resumed with what became
ready. Jobs run one at a time in arrival order, as OTP's supervisor handles one message at a time, but
while a job waits the loop keeps accepting connections, answering read-only calls (``which_children``,
``count_children``), reaping children that die and queueing their exits. A failed automatic restart
queues its retry behind everything already queued (OTP's ``try_again_restart``), so a ``stop`` or a
``terminate_child`` cuts through a restart loop. A stop preempts the current job: stopping must be
bounded even while a child hangs in its start.

Children are forked from this single-threaded process, so forking is safe. A dead child is noticed
by its pidfd, which fires at once even if the child had forked grandchildren holding inherited pipes.
This process is a child subreaper: orphans of its workers are reparented to it and reaped here.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Generator
from typing import Any

import attrs
import multiprocess

from . import _child, _linux, _wire
from ._intensity import add_restart
from ._protocol import (
    ChildAddress,
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    Stop,
    TerminateChild,
    WhichChildren,
    accept_authenticated,
    listen,
    socket_path,
)
from ._strategy import restart_set, should_restart
from .errors import (
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRestartingError,
    ChildRunningError,
    DuplicateChildError,
    StartError,
    SupervisorError,
    SupervisorGoneError,
)
from .info import ChildCounts, ChildInfo
from .reasons import ExitKind, ExitReason, ShutdownExit
from .specs import ChildSpec, ChildType, Restart, Shutdown, StartMode, Strategy, SupervisorSpec

__all__ = ["SupervisorLoop", "TreeContext", "run_nested_supervisor"]

log = logging.getLogger("supervisor")
_fork = multiprocess.get_context("fork")

current_tree: TreeContext | None = None
"""The tree context of the supervisor running in this process; inherited by forked children."""


@attrs.frozen
class TreeContext:
    """Where a supervisor sits in its tree: the private directory, the authkey and its id path."""

    private_dir: str
    authkey: bytes = attrs.field(repr=False)
    path: str

    @property
    def address(self) -> str:
        return socket_path(self.private_dir, self.path)

    def child(self, child_id: str) -> TreeContext:
        return attrs.evolve(self, path=f"{self.path}/{child_id}")


@attrs.define(eq=False)
class _Child:
    """
    One child spec and, while it has one, its process.

    ``process`` is None while the child is not running; ``pidfd`` and ``report`` are set exactly while
    ``process`` is. ``exit_pending`` holds the reason of a child reaped by the loop whose exit the
    restart logic has not handled yet; clearing it (terminate, restart) cancels that handling.
    ``restarting`` is set between a failed automatic restart and its retry. ``busy`` is set while a job
    waits on the process itself, so the loop leaves its pidfd to the job.
    """

    spec: ChildSpec
    process: Any = None
    pidfd: int | None = None
    report: Any = None
    reported: ExitReason | None = None
    exit_pending: ExitReason | None = None
    restarting: bool = False
    busy: bool = False
    declined: bool = False
    ready_info: Any = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def pid(self) -> int | None:
        return None if self.process is None else int(self.process.pid)

    def info(self) -> ChildInfo:
        # A retry in progress has a process, but the child is not up until the retry succeeds.
        pid = None if self.restarting else self.pid
        return ChildInfo(self.id, pid, self.spec.type, self.spec.restart, self.restarting)


@attrs.frozen
class _Wait:
    """What a job waits for: any of *fds* ready, or *deadline* (monotonic seconds) passed."""

    fds: tuple[Any, ...]
    deadline: float | None = None


Job = Generator[_Wait, list[Any], Any]


@attrs.define
class _Pending:
    job: Job
    conn: Any = None  # the client connection awaiting this job's reply, if any
    wait: _Wait | None = None


@attrs.define
class _Lane:
    """Jobs that run one at a time: all of a static supervisor's, or one child's in a dynamic one."""

    current: _Pending | None = None
    queue: collections.deque[_Pending] = attrs.Factory(collections.deque)


class LoopHooks:
    """
    What a process built on the loop (the SessionManager) is told, and extra things it waits on.

    Every method is called on the loop's only thread; the defaults do nothing.
    """

    def child_starting(self, child: _Child) -> None:
        """*child* was forked and is starting."""

    def child_ready(self, child: _Child, info: Any) -> None:
        """*child* reported ready, with the *info* it passed to ``notify_ready``."""

    def child_stopping(self, child: _Child) -> None:
        """*child* is being stopped by its shutdown spec."""

    def child_down(self, child: _Child, reason: ExitReason, restarting: bool) -> None:
        """*child*'s process was reaped; *restarting* if an automatic restart follows."""

    def child_removed(self, child: _Child) -> None:
        """*child*'s spec was forgotten."""

    def attach(self, unwatch: Callable[[int], None]) -> None:
        """Given the loop's *unwatch*: call it on any fd of :meth:`fds` before closing that fd."""

    def before_reply(self) -> None:
        """Called before the loop replies to a caller: make the caller's effects visible."""

    def fds(self) -> list[Any]:
        """Extra objects for the loop's wait."""
        return []

    def deadline(self) -> float | None:
        """The monotonic time the loop must wake at for :meth:`on_wake`, if any."""
        return None

    def on_wake(self, ready: set[Any]) -> None:
        """Called each turn with what became ready among :meth:`fds` (maybe nothing: a deadline)."""


_STARTED = "started"
_IGNORED = "ignored"


class SupervisorLoop:
    """The state and loop of one supervisor process (OTP's ``#state`` and its ``handle_*``)."""

    def __init__(
        self,
        spec: SupervisorSpec,
        tree: TreeContext,
        watch_fd: int | None = None,
        *,
        concurrent: bool = False,
        hooks: LoopHooks | None = None,
    ) -> None:
        """
        Args:
            concurrent: run each child's jobs in a lane of its own, so one child's start or stop never
                delays another's (a dynamic supervisor; one_for_one only).
            hooks: told about children's life cycles; see :class:`LoopHooks`.
        """
        global current_tree
        if concurrent and spec.strategy is not Strategy.ONE_FOR_ONE:
            raise ValueError(f"a concurrent supervisor must be one_for_one (got {spec.strategy})")
        current_tree = tree
        self.concurrent = concurrent
        self.hooks = hooks if hooks is not None else LoopHooks()
        self.spec = spec
        self.tree = tree
        self.watch_fd = watch_fd
        self.children: list[_Child] = []  # in start order
        self.by_id: dict[str, _Child] = {}
        self.restart_times: tuple[float, ...] = ()
        self.lanes: dict[str, _Lane] = {}
        self.conns: list[Any] = []
        self.stopping = False
        self.stop_waiters: list[Any] = []
        self.finished = False
        self.exit_reason: ExitReason = ExitReason.shutdown()
        self.start_error: StartError | None = None
        self.reaped_any = False
        self.private_fds: list[int] = []

        _linux.set_child_subreaper()
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(signum, _note_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.listener = listen(tree.address)
        # One epoll set for the life of the loop: each fd is added when it appears and removed before
        # it is closed, so a turn costs what became ready, not how many children there are.
        self.poller = select.epoll()
        self.watched: dict[int, Any] = {}
        self.pidfd_owner: dict[int, _Child] = {}
        self.report_owner: dict[int, _Child] = {}
        self.hook_watched: set[int] = set()
        self.giving_up = False  # set by a job that exceeded the restart intensity
        self.hooks.attach(self._unwatch)
        for obj in (self.listener, self.wakeup_r, watch_fd):
            if obj is not None:
                self._watch(obj)

    def _watch(self, obj: Any) -> int:
        fd = obj if isinstance(obj, int) else obj.fileno()
        self.poller.register(fd, select.EPOLLIN)
        self.watched[fd] = obj
        return int(fd)

    def _unwatch(self, obj: Any) -> None:
        fd = obj if isinstance(obj, int) else obj.fileno()
        self.hook_watched.discard(fd)
        if self.watched.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self.poller.unregister(fd)

    # ------------------------------------------------------------------ the loop

    def serve(self, on_ready: Callable[[], None]) -> None:
        """Start the children in order, call *on_ready*, then serve until stopped or given up."""
        self._enqueue("", _Pending(self._init_job(on_ready)))
        while not self.finished:
            self._turn()
        self._close()

    def _enqueue(self, child_id: str, pending: _Pending) -> None:
        key = child_id if self.concurrent else ""
        self.lanes.setdefault(key, _Lane()).queue.append(pending)

    def _schedule(self) -> None:
        """Start the next job of every idle lane, until each lane is busy or empty."""
        progressed = True
        while progressed and not self.finished:
            progressed = False
            for key, lane in list(self.lanes.items()):
                if lane.current is None and lane.queue:
                    lane.current = lane.queue.popleft()
                    self._advance(lane, None)
                    progressed = True
                elif lane.current is None and self.lanes.get(key) is lane:
                    del self.lanes[key]

    def _turn(self) -> None:
        self._schedule()
        if self.finished:
            return
        hook_fds = self._sync_hook_fds()
        waits = [
            (lane, lane.current.wait) for lane in self.lanes.values() if lane.current and lane.current.wait
        ]
        deadlines = [w.deadline for _, w in waits if w.deadline is not None]
        hook_deadline = self.hooks.deadline()
        if hook_deadline is not None:
            deadlines.append(hook_deadline)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else -1.0
        events = self.poller.poll(timeout)
        ready = {self.watched[fd] for fd, _ in events if fd in self.watched}
        ready_fds = [fd for fd, _ in events]

        if self.wakeup_r in ready:
            self._on_signals()
        if self.watch_fd is not None and self.watch_fd in ready:
            log.warning("supervisor %s: the process that started the tree died; stopping", self.tree.path)
            self._unwatch(self.watch_fd)
            self.watch_fd = None
            self._begin_stop(None)
        if self.listener in ready:
            conn = accept_authenticated(self.listener, self.tree.authkey)
            if conn is None:
                log.warning("supervisor %s: refused a connection that failed authentication", self.tree.path)
            else:
                self.conns.append(conn)
                self._watch(conn)
        for fd in ready_fds:
            child = self.report_owner.get(fd)
            if child is not None and not child.busy and child.report is not None:
                self._drain(child)
        # Deaths before requests: a caller who saw a child die before calling sees the death handled.
        for fd in ready_fds:
            child = self.pidfd_owner.get(fd)
            if child is not None and child.pidfd == fd and not child.busy:
                reason = self._reap(child)
                restarting = not self.stopping and should_restart(child.spec.restart, reason)
                self.hooks.child_down(child, reason, restarting)
                if not self.stopping:
                    child.exit_pending = reason
                    self._enqueue(child.id, _Pending(self._exit_job(child)))
        # Begin handling those exits (a temporary child forgotten, a restart forked) before serving
        # requests, as OTP handles an 'EXIT' queued before a call.
        self._schedule()
        for conn in [c for c in ready if c in self.conns]:
            self._on_conn_readable(conn)
        now = time.monotonic()
        hook_ready = {fd for fd in hook_fds if fd in ready}
        if hook_ready or (hook_deadline is not None and now >= hook_deadline):
            self.hooks.on_wake(hook_ready)
        for lane, job_wait in waits:
            if lane.current is None or lane.current.wait is not job_wait:
                continue
            fired = [fd for fd in job_wait.fds if fd in ready]
            if fired or (job_wait.deadline is not None and now >= job_wait.deadline):
                self._advance(lane, fired)
        if self.reaped_any:
            self.reaped_any = False
            self._reap_adopted()

    def _sync_hook_fds(self) -> list[Any]:
        """Watch exactly the hooks' current fds (a handful, which may change from turn to turn)."""
        hook_fds = self.hooks.fds()
        wanted = {fd if isinstance(fd, int) else fd.fileno() for fd in hook_fds}
        for fd in self.hook_watched - wanted:
            self._unwatch(fd)
        for obj in hook_fds:
            fd = obj if isinstance(obj, int) else obj.fileno()
            if fd not in self.hook_watched:
                self._watch(obj)
        self.hook_watched = wanted
        return hook_fds

    def _advance(self, lane: _Lane, fired: list[Any] | None) -> None:
        pending = lane.current
        assert pending is not None
        try:
            pending.wait = pending.job.send(fired)  # type: ignore[arg-type]
        except StopIteration:
            lane.current = None
            if self.giving_up and not self.stopping:
                self._begin_stop(None)
        except Exception:
            # As in OTP, a crash in the supervisor's own code ends the supervisor.
            log.exception("supervisor %s: internal error; stopping", self.tree.path)
            lane.current = None
            self._reply(pending.conn, ("error", SupervisorError("internal error in the supervisor")))
            if self.stopping:
                self._finish(ExitReason.shutdown())
            else:
                self._begin_stop(None)

    # ------------------------------------------------------------------ events

    def _on_signals(self) -> None:
        try:
            data = os.read(self.wakeup_r, 512)
        except BlockingIOError:
            return
        if signal.SIGCHLD in data:
            self.reaped_any = True
        if signal.SIGTERM in data:
            self._begin_stop(None)

    def _reap_adopted(self) -> None:
        """Reap orphans reparented to this subreaper, leaving this supervisor's own children alone."""
        own = {c.pid for c in self.children if c.process is not None}
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in own:
                return
            # An adopted worker that led a process group (its own supervisor was killed): kill what
            # is left of its group before reaping it, while its pid cannot be reused yet.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(info.si_pid, signal.SIGKILL)
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                return

    def _on_conn_readable(self, conn: Any) -> None:
        try:
            request = _wire.recv(conn)
        except (EOFError, OSError):
            self._drop_conn(conn)
            return
        except Exception:
            log.warning("supervisor %s: unreadable request; closing its connection", self.tree.path)
            self._drop_conn(conn)
            return
        if isinstance(request, WhichChildren):
            self._reply(conn, ("ok", [c.info() for c in self.children]))
        elif isinstance(request, CountChildren):
            self._reply(conn, ("ok", self._count()))
        elif isinstance(request, ChildAddress):
            self._reply(conn, self._child_address(request.child_id))
        elif isinstance(request, Stop):
            self._begin_stop(conn)
        elif isinstance(request, (StartChild, TerminateChild, RestartChild, DeleteChild)):
            if self.stopping:
                self._reply(conn, ("error", self._gone("the supervisor is stopping")))
            else:
                self._enqueue(_request_child_id(request), _Pending(self._request_job(conn, request), conn))
        else:
            log.warning("supervisor %s: unknown request %r; closing its connection", self.tree.path, request)
            self._drop_conn(conn)

    def _drop_conn(self, conn: Any) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
            self._unwatch(conn)
        conn.close()

    def _reply(self, conn: Any, message: tuple[str, Any]) -> None:
        if conn is None:
            return
        self.hooks.before_reply()
        try:
            _wire.send(conn, message)
        except (OSError, ValueError):
            self._drop_conn(conn)

    def _gone(self, why: str) -> SupervisorGoneError:
        return SupervisorGoneError(f"supervisor {self.tree.path} (pid {os.getpid()}): {why}")

    def _count(self) -> ChildCounts:
        supervisors = sum(1 for c in self.children if c.spec.type is ChildType.SUPERVISOR)
        return ChildCounts(
            specs=len(self.children),
            active=sum(1 for c in self.children if c.process is not None and not c.restarting),
            supervisors=supervisors,
            workers=len(self.children) - supervisors,
        )

    def _child_address(self, child_id: str) -> tuple[str, Any]:
        child = self._find(child_id)
        if child is None:
            return ("error", self._not_found("child_supervisor", child_id))
        if child.spec.nested is None:
            message = f"child_supervisor: child {child_id!r} is not a nested supervisor"
            return ("error", ChildNotFoundError(message, child_id))
        if child.process is None:
            message = f"child_supervisor: nested supervisor {child_id!r} is not running"
            return ("error", ChildNotRunningError(message, child_id))
        return ("ok", self.tree.child(child_id).address)

    # ------------------------------------------------------------------ stopping

    def _begin_stop(self, conn: Any) -> None:
        if conn is not None:
            self.stop_waiters.append(conn)
        if self.stopping:
            return
        self.stopping = True
        lanes, self.lanes = list(self.lanes.values()), {}
        for lane in lanes:
            aborted = [lane.current, *lane.queue] if lane.current is not None else list(lane.queue)
            lane.current = None
            lane.queue.clear()
            for pending in aborted:
                pending.job.close()
                self._reply(
                    pending.conn, ("error", self._gone("the supervisor stopped before this call completed"))
                )
        for child in self.children:
            child.busy = False
        self._enqueue("", _Pending(self._stop_job()))

    def _stop_job(self) -> Job:
        yield from self._terminate_all()
        self._finish(ExitReason.shutdown())

    def _finish(self, reason: ExitReason) -> None:
        self.exit_reason = reason
        self.finished = True

    def _close(self) -> None:
        for lane in self.lanes.values():
            pending_calls = [lane.current, *lane.queue] if lane.current is not None else list(lane.queue)
            for pending in pending_calls:
                pending.job.close()
                self._reply(
                    pending.conn, ("error", self._gone("the supervisor exited before this call completed"))
                )
        self.lanes.clear()
        for child in self.children:
            # Only after an internal error in a stop: no child may outlive its supervisor's exit.
            if child.process is not None:
                _kill(child.pid, signal.SIGKILL)
                self._reap(child)
        for conn in self.stop_waiters:
            self._reply(conn, ("ok", None))
        for conn in list(self.conns):
            self._drop_conn(conn)
        self._unwatch(self.listener)
        self.listener.close()
        self.poller.close()
        try:
            os.unlink(self.tree.address)
        except FileNotFoundError:
            pass
        self._reap_adopted()

    def _terminate_all(self) -> Job:
        """
        Stop every child by its shutdown spec: in reverse start order, one at a time, for a static
        supervisor; all at once for a concurrent one, as a DynamicSupervisor does.
        """
        for child in self.children:
            child.restarting = False
            child.exit_pending = None
        running = [c for c in reversed(self.children) if c.process is not None]
        if not self.concurrent:
            for child in running:
                if child.process is not None:
                    yield from self._shutdown(child)
            return
        stops = [self._shutdown(child) for child in running]
        waits: dict[int, _Wait] = {}
        for index, stop in enumerate(stops):
            waits[index] = next(stop)
        while waits:
            deadlines = [w.deadline for w in waits.values() if w.deadline is not None]
            fds = tuple(fd for w in waits.values() for fd in w.fds)
            fired = yield _Wait(fds, min(deadlines) if deadlines else None)
            now = time.monotonic()
            for index, job_wait in list(waits.items()):
                mine = [fd for fd in job_wait.fds if fd in fired]
                if mine or (job_wait.deadline is not None and now >= job_wait.deadline):
                    try:
                        waits[index] = stops[index].send(mine)
                    except StopIteration:
                        del waits[index]

    # ------------------------------------------------------------------ jobs

    def _init_job(self, on_ready: Callable[[], None]) -> Job:
        for spec in self.spec.children:
            child = _Child(spec)
            self._add(child)
            outcome = yield from self._start(child, progress=logging.INFO)
            if isinstance(outcome, ExitReason):
                self._log_report("start_error", child, outcome, logging.ERROR)
                self._remove(child)
                yield from self._terminate_all()
                self.start_error = self._start_error("start", child, outcome)
                self._finish(ExitReason.shutdown())
                return
            if outcome == _IGNORED and spec.restart is Restart.TEMPORARY:
                self._remove(child)
        on_ready()

    def _request_job(self, conn: Any, request: Any) -> Job:
        try:
            if isinstance(request, StartChild):
                value = yield from self._start_child(request.spec)
            elif isinstance(request, TerminateChild):
                value = yield from self._terminate_child(request.child_id)
            elif isinstance(request, RestartChild):
                value = yield from self._restart_child(request.child_id)
            else:
                self._delete_child(request.child_id)
                value = None
        except SupervisorError as error:
            self._reply(conn, ("error", error))
        else:
            self._reply(conn, ("ok", value))

    def _exit_job(self, child: _Child) -> Job:
        reason = child.exit_pending
        if reason is None or child not in self.children:
            return
        child.exit_pending = None
        restart = should_restart(child.spec.restart, reason)
        if restart or reason.is_abnormal:
            self._log_report("child_terminated", child, reason, logging.ERROR)
        else:
            self._log_report("child_exited", child, reason, logging.INFO)
        if not restart:
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
            return
        yield from self._restart(child)

    def _retry_job(self, child: _Child) -> Job:
        if child in self.children and child.restarting:
            yield from self._restart(child)

    def _restart(self, failed: _Child) -> Job:
        """OTP's ``restart/2``: count the restart, then restart the strategy's set of children."""
        self.restart_times, exceeded = add_restart(
            self.restart_times, time.monotonic(), self.spec.max_restarts, self.spec.max_seconds
        )
        if exceeded:
            # Giving up is a stop (all children, by their shutdown specs, then exit shutdown) that
            # must also preempt the other lanes' jobs; the loop begins it once this job has ended.
            self._log_report("shutdown", failed, None, logging.ERROR, "reached_max_restart_intensity")
            self.giving_up = True
            return
        group_ids = restart_set(self.spec.strategy, [c.id for c in self.children], failed.id)
        group = [c for c in self.children if c.id in group_ids]
        for child in reversed(group):
            if child is failed:
                continue
            child.restarting = False
            child.exit_pending = None
            if child.process is not None:
                yield from self._shutdown(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._remove(child)
        for child in group:
            if child not in self.children:
                continue
            outcome = yield from self._start(child, progress=logging.INFO, automatic=True)
            if isinstance(outcome, ExitReason):
                self._log_report("start_error", child, outcome, logging.ERROR)
                child.restarting = True
                self._enqueue(child.id, _Pending(self._retry_job(child)))
                return
            child.restarting = False

    # ------------------------------------------------------------------ the admin API

    def _remove(self, child: _Child) -> None:
        self.children.remove(child)
        del self.by_id[child.id]
        self.hooks.child_removed(child)

    def _add(self, child: _Child) -> None:
        self.children.append(child)
        self.by_id[child.id] = child

    def _find(self, child_id: str) -> _Child | None:
        return self.by_id.get(child_id)

    def _not_found(self, call: str, child_id: str) -> ChildNotFoundError:
        known = ", ".join(repr(c.id) for c in self.children) or "none"
        return ChildNotFoundError(
            f"{call}: no child with id {child_id!r} under supervisor {self.tree.path} (pid {os.getpid()}) "
            f"(children: {known})",
            child_id,
        )

    def _existing(self, call: str, child_id: str) -> _Child:
        child = self._find(child_id)
        if child is None:
            raise self._not_found(call, child_id)
        if child.restarting:
            raise ChildRestartingError(
                f"{call}: child {child_id!r} is restarting (a failed restart is being retried)", child_id
            )
        if child.process is not None:
            raise ChildRunningError(f"{call}: child {child_id!r} is running (pid {child.pid})", child_id)
        return child

    def _start_child(self, spec: ChildSpec) -> Generator[_Wait, list[Any], int | None]:
        existing = self._find(spec.id)
        if existing is not None:
            pid = existing.info().pid
            state = f"running (pid {pid})" if pid is not None else "present, not running"
            raise DuplicateChildError(
                f"start_child: a child with id {spec.id!r} is already {state}", spec.id, pid
            )
        child = _Child(spec)
        self._add(child)
        outcome = yield from self._start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            self._remove(child)
            raise self._start_error("start_child", child, outcome)
        if outcome == _IGNORED and spec.restart is Restart.TEMPORARY:
            self._remove(child)
        return child.pid

    def _terminate_child(self, child_id: str) -> Job:
        child = self._find(child_id)
        if child is None:
            raise self._not_found("terminate_child", child_id)
        child.restarting = False
        child.exit_pending = None
        if child.process is not None:
            yield from self._shutdown(child)
        if child.spec.restart is Restart.TEMPORARY and child in self.children:
            self._remove(child)

    def _restart_child(self, child_id: str) -> Generator[_Wait, list[Any], int | None]:
        child = self._existing("restart_child", child_id)
        outcome = yield from self._start(child, progress=logging.DEBUG)
        if isinstance(outcome, ExitReason):
            raise self._start_error("restart_child", child, outcome)
        return child.pid

    def _delete_child(self, child_id: str) -> None:
        child = self._existing("delete_child", child_id)
        child.exit_pending = None
        self._remove(child)

    def _start_error(self, call: str, child: _Child, reason: ExitReason) -> StartError:
        return StartError(
            f"{call}: child {child.id!r} of supervisor {self.tree.path} failed to start: {reason.describe()}",
            child.id,
            reason,
        )

    # ------------------------------------------------------------------ one child

    def _owned_fds(self) -> tuple[int, ...]:
        """
        The descriptors a child must close: this supervisor's endpoints and signal pipe.

        Siblings' pidfds and report pipes are left open in the child: holding them changes nothing
        (death is read from pidfds, and report write ends are never inherited), and closing a few
        thousand of them at each fork would make starts slow in a supervisor with many children.
        """
        fds = [self.listener.fileno(), self.wakeup_r, self.wakeup_w, self.poller.fileno()]
        fds.extend(conn.fileno() for conn in self.conns)
        if self.watch_fd is not None:
            fds.append(self.watch_fd)
        fds.extend(self.private_fds)
        fds.extend(fd if isinstance(fd, int) else fd.fileno() for fd in self.hooks.fds())
        return tuple(fds)

    def _start(
        self, child: _Child, progress: int, automatic: bool = False
    ) -> Generator[_Wait, list[Any], str | ExitReason]:
        """
        Fork *child* and wait until it is ready, declines (``ignore``), dies or times out.

        Returns ``_STARTED``, ``_IGNORED`` or the failed start's exit reason. *automatic* marks a
        restart by the supervisor itself, which a failure does not end (a retry follows).
        """
        child.exit_pending, child.declined, child.ready_info = None, False, None
        try:
            process, pidfd, reader = self._fork(child)
        except OSError as error:
            # Out of descriptors or processes: this start fails; the supervisor does not.
            log.error("supervisor %s: could not fork child %r: %s", self.tree.path, child.id, error)
            return ExitReason.from_exception(error)
        child.process, child.pidfd, child.report, child.reported = process, pidfd, reader, None
        self.pidfd_owner[self._watch(pidfd)] = child
        self.report_owner[self._watch(reader)] = child
        child.busy = True
        self.hooks.child_starting(child)
        deadline = None
        if child.spec.start_mode is StartMode.NOTIFY and child.spec.start_timeout is not None:
            deadline = time.monotonic() + child.spec.start_timeout
        timed_out = False
        while True:
            fds = (child.pidfd,) if child.report is None else (child.pidfd, child.report)
            fired = yield _Wait(fds, deadline)
            if child.report is not None and child.report in fired and "ready" in self._drain(child):
                child.busy = False
                log.log(
                    progress,
                    "supervisor %s: started child %r (pid %s)",
                    self.tree.path,
                    child.id,
                    child.pid,
                )
                self.hooks.child_ready(child, child.ready_info)
                return _STARTED
            if child.pidfd in fired:
                reason = self._reap(child)
                self.hooks.child_down(child, reason, automatic)
                if child.declined:
                    child.declined = False
                    return _IGNORED
                if timed_out:
                    return ExitReason(ExitKind.KILLED, signal=signal.SIGKILL, message="start timeout")
                return reason
            if not fired and deadline is not None and time.monotonic() >= deadline:
                timed_out, deadline = True, None
                _kill(child.pid, signal.SIGKILL)

    def _fork(self, child: _Child) -> tuple[Any, int, Any]:
        """Fork *child*'s process; return it, its pidfd and the read end of its report pipe."""
        reader, writer = _fork.Pipe(duplex=False)
        process = None
        try:
            launch = _child.ChildLaunch(child.spec, writer, os.getpid(), self._owned_fds())
            process = _fork.Process(target=_child.child_main, args=(launch,), name=f"supervisor:{child.id}")
            signal.pthread_sigmask(signal.SIG_BLOCK, _child.SUPERVISED_SIGNALS)
            try:
                process.start()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _child.SUPERVISED_SIGNALS)
            # The loop reaps its children itself; out of multiprocessing's list, they are not polled
            # with waitpid at every later start, nor joined at exit.
            multiprocess.process._children.discard(process)
            with contextlib.suppress(OSError):
                os.setpgid(process.pid, process.pid)  # the child does it too; whoever is first wins
            return process, os.pidfd_open(process.pid), reader
        except OSError:
            reader.close()
            if process is not None and process.pid is not None:
                _kill(process.pid, signal.SIGKILL)
                process.join()
            raise
        finally:
            writer.close()

    def _close_report(self, child: _Child) -> None:
        report = child.report
        self._unwatch(report)
        self.report_owner.pop(report.fileno(), None)
        report.close()
        child.report = None

    def _drain(self, child: _Child) -> set[str]:
        """Read the child's pending report messages; return the kinds read ('ready', 'exit', 'ignore')."""
        kinds: set[str] = set()
        report = child.report
        while report is not None:
            try:
                if not report.poll(0):
                    break
                kind, payload = _wire.recv(report)
            except (EOFError, OSError):
                self._close_report(child)
                report = None
                break
            if kind == "exit":
                child.reported = payload
            elif kind == "ready":
                child.ready_info = payload
            elif kind == "ignore":
                child.declined = True
            kinds.add(kind)
        return kinds

    def _shutdown(self, child: _Child) -> Generator[_Wait, list[Any], ExitReason]:
        """Stop *child* by its shutdown spec and reap it; log a ``shutdown_error`` for an odd reason."""
        child.busy = True
        self.hooks.child_stopping(child)
        shutdown = child.spec.shutdown
        deadline = None
        if shutdown is Shutdown.BRUTAL_KILL:
            _kill(child.pid, signal.SIGKILL)
        else:
            _kill(child.pid, signal.SIGTERM)
            if not isinstance(shutdown, Shutdown):
                deadline = time.monotonic() + shutdown
        while True:
            fds = (child.pidfd,) if child.report is None else (child.pidfd, child.report)
            fired = yield _Wait(fds, deadline)
            if child.report is not None and child.report in fired:
                self._drain(child)
            if child.pidfd in fired:
                break
            if deadline is not None and time.monotonic() >= deadline:
                deadline = None
                _kill(child.pid, signal.SIGKILL)
        reason = self._reap(child)
        self.hooks.child_down(child, reason, False)
        expected = (
            reason.kind is ExitKind.KILLED
            if shutdown is Shutdown.BRUTAL_KILL
            else reason.kind is ExitKind.SHUTDOWN
        )
        if not expected and child.spec.restart is not Restart.PERMANENT:
            expected = reason.is_normal
        if not expected:
            self._log_report("shutdown_error", child, reason, logging.ERROR)
        return reason

    def _reap(self, child: _Child) -> ExitReason:
        """Collect a dead child: kill what is left of its process group, join it, read its reason."""
        pid = child.pid
        assert pid is not None and child.pidfd is not None
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.process.join()
        exitcode = child.process.exitcode
        self._drain(child)
        if child.report is not None:
            self._close_report(child)
        self._unwatch(child.pidfd)
        self.pidfd_owner.pop(child.pidfd, None)
        os.close(child.pidfd)
        reason = child.reported if child.reported is not None else ExitReason.from_exitcode(exitcode)
        child.process = child.pidfd = child.report = child.reported = None
        child.busy = False
        self.reaped_any = True
        return reason

    def _log_report(
        self, context: str, child: _Child, reason: ExitReason | None, level: int, detail: str | None = None
    ) -> None:
        text = detail if reason is None else reason.describe()
        message = "supervisor %s: %s: child %r (%s, %s) reason=%s"
        args: list[Any] = [
            self.tree.path,
            context,
            child.id,
            child.spec.restart.value,
            child.spec.type.value,
            text,
        ]
        if reason is not None and reason.traceback_text:
            message += "\n%s"
            args.append(reason.traceback_text.rstrip())
        log.log(level, message, *args, extra={"supervisor_context": context, "child_id": child.id})


def _request_child_id(request: Any) -> str:
    return str(request.spec.id if isinstance(request, StartChild) else request.child_id)


def _note_signal(signum: int, frame: Any) -> None:
    """Signal handler: nothing to do here; the byte in the wake-up pipe wakes the loop."""


def _kill(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def run_nested_supervisor(spec: SupervisorSpec) -> None:
    """
    The start function of a nested supervisor child (see ``ChildSpec.supervisor``).

    Ready once all its children are; exits with reason *shutdown* when stopped or when it gives up
    after too many restarts; a child's start failure makes it fail to start with that child's error.
    """
    parent = current_tree
    launch = _child.current_launch
    if parent is None or launch is None:
        raise RuntimeError("a nested supervisor must be started by a supervisor")
    tree = parent.child(launch.spec.id)
    loop = SupervisorLoop(spec, tree)
    loop.serve(lambda: _child.notify_ready({"address": tree.address}))
    if loop.start_error is not None:
        raise loop.start_error
    raise ShutdownExit()
