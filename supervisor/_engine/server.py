"""
The supervisor's control socket: accept and authenticate clients, read requests, route them, reply.

One table maps each request type to a :class:`Route`: *read* routes are answered at once from the
state (``which_children`` while a start is in progress is fine, as in OTP it is not); *queued* routes
become jobs that the supervisor schedules and whose return value (or ``SupervisorError``) is the
reply; a *direct* route gets the connection and replies when it chooses (``Stop``). A connection that
closes, sends something unreadable or an unknown request is dropped; the loop goes on. This module
knows the protocol's shape, not what a supervisor does.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .. import _wire
from .._addresses import TreeContext
from .._transport import accept_authenticated, listen
from ..errors import SupervisorError
from .hooks import LoopHooks
from .jobs import Job
from .reactor import Reactor

__all__ = ["ControlServer", "Route", "RouteKind"]

log = logging.getLogger("supervisor")


class RouteKind(enum.Enum):
    READ = "read"
    """``handler(request)`` returns the reply's value (or raises SupervisorError) at once."""
    QUEUED = "queued"
    """``handler(request)`` returns a job, queued under ``key(request)``; its return is the reply."""
    DIRECT = "direct"
    """``handler(conn, request)`` replies itself, when it chooses."""


@attrs.frozen
class Route:
    kind: RouteKind
    handler: Callable[..., Any]
    key: Callable[[Any], str] | None = None


class ControlServer:
    """
    The listening socket and client connections of one supervisor.

    Args:
        routes: request type → route.
        submit: queue a job ``(key, conn, job)``; it replies through :meth:`reply_job`.
    """

    def __init__(
        self,
        tree: TreeContext,
        reactor: Reactor,
        hooks: LoopHooks,
        routes: Mapping[type, Route],
        submit: Callable[[str, Any, Job], None],
    ) -> None:
        self.tree = tree
        self.reactor = reactor
        self.hooks = hooks
        self.routes = routes
        self.submit = submit
        self.listener = listen(tree.address)
        self.conns: list[Any] = []
        reactor.watch(self.listener, self)

    def fds(self) -> list[int]:
        """The listener's and every connection's fd, which a forked child must close."""
        return [self.listener.fileno(), *(conn.fileno() for conn in self.conns)]

    def accept(self) -> None:
        """Accept and authenticate one client (bounded by the handshake's deadline)."""
        conn = accept_authenticated(self.listener, self.tree.authkey)
        if conn is None:
            log.warning("supervisor %s: refused a connection that failed authentication", self.tree.path)
            return
        self.conns.append(conn)
        self.reactor.watch(conn, self)

    def on_readable(self, conn: Any) -> None:
        """Read one request from *conn* and route it."""
        try:
            request = _wire.recv(conn)
        except (EOFError, OSError):
            self.drop(conn)
            return
        except Exception:
            log.warning("supervisor %s: unreadable request; closing its connection", self.tree.path)
            self.drop(conn)
            return
        route = self.routes.get(type(request))
        if route is None:
            log.warning("supervisor %s: unknown request %r; closing its connection", self.tree.path, request)
            self.drop(conn)
        elif route.kind is RouteKind.READ:
            try:
                value = route.handler(request)
            except SupervisorError as error:
                self.reply(conn, ("error", error))
            else:
                self.reply(conn, ("ok", value))
        elif route.kind is RouteKind.QUEUED:
            assert route.key is not None
            self.submit(route.key(request), conn, self.reply_job(conn, route.handler(request)))
        else:
            route.handler(conn, request)

    def reply_job(self, conn: Any, job: Job) -> Job:
        """Run *job*, then reply to *conn* with its return value or the SupervisorError it raised."""
        try:
            value = yield from job
        except SupervisorError as error:
            self.reply(conn, ("error", error))
        else:
            self.reply(conn, ("ok", value))

    def reply(self, conn: Any, message: tuple[str, Any]) -> None:
        """Send *message* to *conn* (None: nobody to tell); a connection that fails is dropped."""
        if conn is None:
            return
        self.hooks.before_reply()
        try:
            _wire.send(conn, message)
        except (OSError, ValueError):
            self.drop(conn)

    def drop(self, conn: Any) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
            self.reactor.unwatch(conn)
        conn.close()

    def close(self) -> None:
        """Drop every connection, close the listener and remove its socket file."""
        for conn in list(self.conns):
            self.drop(conn)
        self.reactor.unwatch(self.listener)
        self.listener.close()
        try:
            os.unlink(self.tree.address)
        except FileNotFoundError:
            pass
