"""
The processes of the session layer: the SessionManager and each session's SessionSupervisor.

The SessionManager is a dynamic supervisor (the loop in concurrent mode: one lane per session, so a
slow start delays no other request) whose children are SessionSupervisors. It is the only writer of
the registry: a :class:`RegistryPublisher` hooked into its loop writes each session's entry as the
session starts, becomes ready, stops, dies or is forgotten, and keeps a mirror of every entry so it can
republish them all when the registry server comes back after a crash. When it starts, it clears the
registry: the sessions of a previous incarnation died with it.

A SessionSupervisor applies the session's isolation (working directory, environment, resource
limits; its own process group comes with every child) and then runs an ordinary supervisor loop over
the session's children, ready once they all are.
"""

from __future__ import annotations

import datetime
import logging
import os
import resource
import time
from typing import Any

import attrs
from multiprocess.managers import RemoteError

from . import _child, _loop
from .reasons import ExitReason, ShutdownExit
from .registry import RegistryClient, registry_address
from .session_values import ChildSummary, SessionInfo, SessionOptions, SessionStatus
from .specs import SupervisorSpec

__all__ = ["RegistryPublisher", "run_session_manager", "run_session_supervisor"]

log = logging.getLogger("supervisor.sessions")


class RegistryPublisher(_loop.LoopHooks):
    """Keeps the registry equal to the SessionManager's live sessions; survives registry restarts."""

    def __init__(self, registry: RegistryClient) -> None:
        self.registry = registry
        self.entries: dict[str, SessionInfo] = {}
        self.up = True
        self.retry_at: float | None = None
        self.pause = 0.01
        self.unwatch: Any = lambda fd: None

    # ------------------------------------------------------------------ life-cycle hooks

    def child_starting(self, child: Any) -> None:
        previous = self.entries.get(child.id)
        options = _options_of(child)
        if previous is None:
            info = SessionInfo(
                session_id=child.id,
                pid=child.pid,
                status=SessionStatus.INITIALIZING,
                created_at=datetime.datetime.now(datetime.timezone.utc),
                restarts=0,
                metadata=options.metadata if options is not None else None,
                children=(),
            )
        else:
            info = attrs.evolve(previous, pid=child.pid, status=SessionStatus.INITIALIZING)
        self._write(child.id, info)

    def child_ready(self, child: Any, info: Any) -> None:
        previous = self.entries.get(child.id)
        if previous is None:
            return
        summary = tuple(ChildSummary(cid, pid) for cid, pid in (info or {}).get("children", ()))
        self._write(
            child.id,
            attrs.evolve(previous, status=SessionStatus.ACTIVE, children=summary),
        )

    def child_stopping(self, child: Any) -> None:
        previous = self.entries.get(child.id)
        if previous is not None:
            self._write(child.id, attrs.evolve(previous, status=SessionStatus.TERMINATING))

    def child_down(self, child: Any, reason: ExitReason, restarting: bool) -> None:
        previous = self.entries.get(child.id)
        if previous is None:
            return
        if restarting:
            # Counted here, not from the loop's own count: the loop increments that only after the
            # restarted session is ready, which is after the hook that publishes it as ACTIVE. A
            # failed retry (the entry still INITIALIZING) is part of the same restart.
            restarts = previous.restarts + (previous.status is not SessionStatus.INITIALIZING)
            self._write(
                child.id,
                attrs.evolve(previous, status=SessionStatus.INITIALIZING, children=(), restarts=restarts),
            )
        else:
            self._remove(child.id)

    def child_removed(self, child: Any) -> None:
        if child.id in self.entries:
            self._remove(child.id)

    # ------------------------------------------------------------------ the registry connection

    def fds(self) -> list[Any]:
        fileno = self.registry.connection_fileno() if self.up else None
        return [] if fileno is None else [fileno]

    def deadline(self) -> float | None:
        return self.retry_at

    def attach(self, unwatch: Any) -> None:
        self.unwatch = unwatch

    def on_wake(self, ready: set[Any]) -> None:
        if ready and self.up:
            try:
                self.registry.acknowledge()
            except (OSError, EOFError, RemoteError):
                log.warning("session registry: the server went away; republishing when it is back")
                self._lost()
            return
        if self.retry_at is not None and time.monotonic() >= self.retry_at:
            self._reconnect()

    def _write(self, session_id: str, info: SessionInfo) -> None:
        self.entries[session_id] = info
        if self.up:
            self._guard(lambda: self.registry.put_later(session_id, info))

    def _remove(self, session_id: str) -> None:
        self.entries.pop(session_id, None)
        if self.up:
            self._guard(lambda: self.registry.delete_later(session_id))

    def before_reply(self) -> None:
        if self.up:
            self._guard(self.registry.flush)

    def _guard(self, write: Any) -> None:
        try:
            write()
        except (OSError, EOFError, RemoteError):
            self._lost()

    def _lost(self) -> None:
        fileno = self.registry.connection_fileno()
        if fileno is not None:
            self.unwatch(fileno)  # before the close: the fd number may be reused at once
        self.registry.reset()
        self.up = False
        self.pause = 0.01
        self.retry_at = time.monotonic()

    def _reconnect(self) -> None:
        if self.registry.try_connect():
            try:
                self.registry.replace_all_now(dict(self.entries))
            except (OSError, EOFError, RemoteError):
                self.registry.reset()
            else:
                self.up, self.retry_at = True, None
                log.info("session registry: republished %d sessions", len(self.entries))
                return
        # The server is being restarted by the Application's supervisor; try again shortly.
        self.retry_at = time.monotonic() + self.pause
        self.pause = min(self.pause * 2, 0.5)

    def publish_all(self) -> None:
        """Make the registry hold exactly this manager's sessions (none, at start)."""
        self._guard(lambda: self.registry.replace_all_now(dict(self.entries)))


def _options_of(child: Any) -> SessionOptions | None:
    args = child.spec.args
    return args[1] if len(args) > 1 and isinstance(args[1], SessionOptions) else None


def run_session_manager(spec: SupervisorSpec) -> None:
    """The start function of the SessionManager child: a dynamic supervisor of sessions."""
    parent, launch = _loop.current_tree, _child.current_launch
    if parent is None or launch is None:
        raise RuntimeError("the SessionManager must be started by a supervisor")
    registry = RegistryClient(registry_address(parent), parent.authkey)
    publisher = RegistryPublisher(registry)
    publisher.publish_all()
    tree = parent.child(launch.spec.id)
    loop = _loop.SupervisorLoop(spec, tree, concurrent=True, hooks=publisher)
    loop.serve(lambda: _child.notify_ready({"address": tree.address}))
    raise ShutdownExit()


def run_session_supervisor(spec: SupervisorSpec, options: SessionOptions) -> None:
    """The start function of a session: isolate, then supervise the session's children."""
    parent, launch = _loop.current_tree, _child.current_launch
    if parent is None or launch is None:
        raise RuntimeError("a SessionSupervisor must be started by the SessionManager")
    _isolate(options)
    tree = parent.child(launch.spec.id)
    loop = _loop.SupervisorLoop(spec, tree)

    def ready() -> None:
        _child.notify_ready({"children": [(c.id, c.pid) for c in loop.children]})

    loop.serve(ready)
    if loop.start_error is not None:
        raise loop.start_error
    raise ShutdownExit()


def _isolate(options: SessionOptions) -> None:
    if options.cwd is not None:
        os.chdir(options.cwd)
    if options.env is not None:
        os.environ.clear()
        os.environ.update(options.env)
    limits = {
        resource.RLIMIT_AS: options.max_memory_bytes,
        resource.RLIMIT_CPU: options.max_cpu_seconds,
        resource.RLIMIT_NOFILE: options.max_open_files,
    }
    for kind, value in limits.items():
        if value is not None:
            resource.setrlimit(kind, (value, value))
