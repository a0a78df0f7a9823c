"""
The SessionManager's hooks: keep the registry equal to its live sessions, across registry restarts.

The publisher is told of each session's life cycle by the engine (frozen ``ChildEvent`` values) and
writes the session's entry as it starts, becomes ready, stops, dies or is forgotten, pipelined
(``registry_writer.py``). It keeps a mirror of every entry, so when the registry server dies (EOF on
its link, which it watches through the loop) or stops answering (a write or a flush not acknowledged
within ``ACK_TIMEOUT``), it republishes them all once the server is back. Reconnecting never blocks
the loop: the connect does not block on a Unix socket, the handshake is driven by the link's
readiness under a deadline, and a failed try is retried on a growing timer. While the registry is
away nothing waits on it at all; the entries are kept in the mirror only.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import attrs

from .._engine.hooks import ChildEvent, FdWatch, LoopHooks
from ..reasons import ExitReason
from .lease_guard import LeaseClock
from .registry_writer import ACK_TIMEOUT, RegistryWriter
from .values import ChildSummary, Placement, SessionInfo, SessionOptions, SessionStatus

__all__ = ["RegistryPublisher"]

log = logging.getLogger("supervisor.sessions")


class _NoFds:
    def watch(self, fd: int) -> None:
        pass

    def unwatch(self, fd: int) -> None:
        pass


class RegistryPublisher(LoopHooks):
    """Keeps the registry equal to the SessionManager's live sessions; survives registry restarts."""

    def __init__(self, registry: RegistryWriter, lease: LeaseClock | None = None) -> None:
        self.registry = registry
        self.lease = lease  # in a cluster: until when the sessions may run (lease_guard.py)
        self.lease_until = 0.0
        self.entries: dict[str, SessionInfo] = {}
        self.up = False
        self.connecting = False
        self.retry_at: float | None = None
        self.pause = 0.01
        self.loop_fds: FdWatch = _NoFds()
        self.watched: int | None = None

    # ------------------------------------------------------------------ life-cycle hooks

    def child_starting(self, child: ChildEvent) -> None:
        if self.lease is not None:
            self.lease_until = self.lease.read()
        previous = self.entries.get(child.child_id)
        options = _options_of(child)
        if previous is None:
            placement = _placement_of(child)
            info = SessionInfo(
                session_id=child.child_id,
                pid=child.pid,
                status=SessionStatus.INITIALIZING,
                created_at=placement.created_at or datetime.datetime.now(datetime.timezone.utc),
                restarts=placement.restarts,
                metadata=options.metadata if options is not None else None,
                children=(),
                node=placement.node,
                incarnation=placement.incarnation,
            )
        else:
            info = attrs.evolve(previous, pid=child.pid, status=SessionStatus.INITIALIZING)
        self._write(child.child_id, info)

    def child_ready(self, child: ChildEvent, info: Any) -> None:
        previous = self.entries.get(child.child_id)
        if previous is None:
            return
        summary = tuple(ChildSummary(cid, pid) for cid, pid in (info or {}).get("children", ()))
        self._write(child.child_id, attrs.evolve(previous, status=SessionStatus.ACTIVE, children=summary))

    def child_stopping(self, child: ChildEvent) -> None:
        previous = self.entries.get(child.child_id)
        if previous is not None:
            self._write(child.child_id, attrs.evolve(previous, status=SessionStatus.TERMINATING))

    def child_down(self, child: ChildEvent, reason: ExitReason, restarting: bool) -> None:
        previous = self.entries.get(child.child_id)
        if previous is None:
            return
        if restarting:
            # Counted here, not from the loop's own count: the loop increments that only after the
            # restarted session is ready, which is after the hook that publishes it as ACTIVE. A
            # failed retry (the entry still INITIALIZING) is part of the same restart.
            restarts = previous.restarts + (previous.status is not SessionStatus.INITIALIZING)
            # No pid until the restart forks one: with a backoff that may be long after this process
            # is gone, and its pid may be reused meanwhile.
            self._write(
                child.child_id,
                attrs.evolve(
                    previous, pid=None, status=SessionStatus.INITIALIZING, children=(), restarts=restarts
                ),
            )
        else:
            self._remove(child.child_id)

    def child_removed(self, child: ChildEvent) -> None:
        if child.child_id in self.entries:
            self._remove(child.child_id)

    def _check_lease(self) -> None:
        """The sessions' time is up unless the agent renewed the lease since: then die, and they with us."""
        assert self.lease is not None
        self.lease_until = self.lease.read()
        if time.monotonic() < self.lease_until:
            return
        log.critical(
            "session manager: the node's lease was not renewed in time (its agent is frozen or gone); "
            "killing itself and its %d sessions before the lease can expire",
            len(self.entries),
        )
        os.kill(os.getpid(), signal.SIGKILL)

    # ------------------------------------------------------------------ the registry connection

    def attach(self, fds: FdWatch) -> None:
        self.loop_fds = fds
        self._watch_link()

    def deadline(self) -> float | None:
        if self.lease is None or not self.entries:
            return self.retry_at
        return self.lease_until if self.retry_at is None else min(self.retry_at, self.lease_until)

    def on_readable(self) -> None:
        if self.connecting:
            self._advance()
        elif self.up:
            try:
                self.registry.acknowledge()
            except _LINK_ERRORS:
                log.warning("session registry: the server went away; republishing when it is back")
                self._lost()

    def on_deadline(self) -> None:
        if self.lease is not None and self.entries and time.monotonic() >= self.lease_until:
            self._check_lease()
        if self.retry_at is None or time.monotonic() < self.retry_at:
            return
        if self.connecting:
            # Connected, but the server did not complete the handshake (it is stopped or hung).
            self._drop_link()
            self._retry_later()
        else:
            self._begin_reconnect()

    def before_reply(self) -> None:
        if self.up:
            self._guard(self.registry.flush)

    def publish_all(self) -> None:
        """
        Make the registry hold exactly this manager's sessions (none, at start); blocks ``ACK_TIMEOUT``
        seconds at most for each of the connect and the write. If the server does not answer, the
        loop republishes once it does.
        """
        try:
            self.registry.connect_now()
            self.registry.replace_all_later(dict(self.entries))
            self.registry.flush()
        except _LINK_ERRORS:
            log.warning("session registry: the server does not answer; publishing when it does")
            self._lost()
            return
        self.up = True  # the loop watches the link once it starts (attach)

    def _write(self, session_id: str, info: SessionInfo) -> None:
        self.entries[session_id] = info
        if self.up:
            self._guard(lambda: self.registry.put_later(session_id, info))

    def _remove(self, session_id: str) -> None:
        self.entries.pop(session_id, None)
        if self.up:
            self._guard(lambda: self.registry.delete_later(session_id))

    def _guard(self, write: Callable[[], Any]) -> None:
        try:
            write()
        except _LINK_ERRORS as error:
            log.warning("session registry: %s; republishing when it answers", _describe(error))
            self._lost()

    def _watch_link(self) -> None:
        fileno = self.registry.fileno()
        if fileno is not None and fileno != self.watched:
            self.loop_fds.watch(fileno)
            self.watched = fileno

    def _drop_link(self) -> None:
        if self.watched is not None:
            self.loop_fds.unwatch(self.watched)  # before the close: the fd number may be reused at once
            self.watched = None
        self.registry.close()
        self.connecting = False

    def _lost(self) -> None:
        """The link failed or the server stopped answering: keep the mirror, reconnect on a timer."""
        self._drop_link()
        self.up = False
        self.pause = 0.01
        self.retry_at = time.monotonic()

    def _retry_later(self) -> None:
        # The server is being restarted by the Application's supervisor, or is stopped; try again
        # shortly. Each try costs the loop no wait: a connect to a Unix socket does not block.
        self.retry_at = time.monotonic() + self.pause
        self.pause = min(self.pause * 2, 0.5)

    def _begin_reconnect(self) -> None:
        try:
            self.registry.begin_connect()
        except OSError:
            self.registry.close()
            self._retry_later()
            return
        self.connecting = True
        self.retry_at = time.monotonic() + ACK_TIMEOUT  # the handshake's deadline
        self._watch_link()
        self._advance()

    def _advance(self) -> None:
        try:
            if not self.registry.advance():
                return
            self.registry.replace_all_later(dict(self.entries))
        except _LINK_ERRORS:
            self._drop_link()
            self._retry_later()
            return
        self.connecting = False
        self.up, self.retry_at = True, None
        log.info("session registry: republished %d sessions", len(self.entries))


_LINK_ERRORS = (OSError, EOFError)
"""How the writer says the link failed: TimeoutError, EOF, a refused key or an error reply included."""


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"the server did not answer within {ACK_TIMEOUT} s"
    if isinstance(error, EOFError):
        return "the server went away"
    return f"the link to the server failed ({error})"


def _options_of(child: ChildEvent) -> SessionOptions | None:
    args = child.spec.args
    return args[1] if len(args) > 1 and isinstance(args[1], SessionOptions) else None


def _placement_of(child: ChildEvent) -> Placement:
    args = child.spec.args
    return args[2] if len(args) > 2 and isinstance(args[2], Placement) else Placement()
