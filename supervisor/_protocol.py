"""
The control protocol's messages: one request type per handle call, and the shape of a reply.

A client sends one request and reads one reply, ``("ok", value)`` or ``("error", SupervisorError)``,
which the handle re-raises as its class, or ``("unreadable", why)`` when the supervisor could not
unpickle the request (the handle raises ``UnreadableRequestError``); ``Stop`` is answered once the
supervisor has stopped its children. ``Subscribe`` is answered once, then the connection carries only
:class:`Notice` frames from the supervisor (an event stream) until one end closes it. Frozen values
only: how they travel is :mod:`supervisor._transport` and :mod:`supervisor._wire`, what a supervisor
does with them is the engine's server.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from .reasons import ExitReason
from .specs import ChildSpec

__all__ = [
    "KIND_DYNAMIC",
    "KIND_SIMPLE",
    "KIND_STATIC",
    "NEWS_EXITED",
    "NEWS_FORKED",
    "NEWS_INTENSITY",
    "NEWS_KINDS",
    "NEWS_LOST",
    "NEWS_REMOVED",
    "NEWS_RESTARTED",
    "NEWS_STARTED",
    "AwaitExit",
    "ChildAddress",
    "ChildSupervisorOf",
    "CountChildren",
    "DeleteChild",
    "GetChildspec",
    "Notice",
    "Request",
    "RestartChild",
    "StartChild",
    "StartSimpleChild",
    "Stop",
    "Subscribe",
    "SupervisorKind",
    "TerminateChild",
    "WhichChild",
    "WhichChildren",
]


@attrs.frozen
class StartChild:
    spec: ChildSpec


KIND_STATIC = "static"
"""A one_for_one, one_for_all or rest_for_one supervisor: ``start_child(spec)``, children by id."""
KIND_SIMPLE = "simple"
"""A simple_one_for_one supervisor: ``start_child(*extra_args)``, children by pid."""
KIND_DYNAMIC = "dynamic"
"""A DynamicSupervisor: ``start_child(spec)``, children by pid (the SessionManager's: by id)."""


@attrs.frozen
class StartSimpleChild:
    """Start a child of a simple_one_for_one supervisor: its template's args, then *extra_args*."""

    extra_args: tuple[Any, ...]


@attrs.frozen
class TerminateChild:
    """*child_id* is an id, or a pid (an int) for a supervisor that knows its children by pid."""

    child_id: str | int


@attrs.frozen
class SupervisorKind:
    """Which of ``KIND_STATIC``, ``KIND_SIMPLE``, ``KIND_DYNAMIC`` the supervisor is."""


@attrs.frozen
class ChildSupervisorOf:
    """The control address and tree id of the nested supervisor whose pid is *pid*."""

    pid: int


@attrs.frozen
class RestartChild:
    child_id: str


@attrs.frozen
class DeleteChild:
    child_id: str


@attrs.frozen
class WhichChildren:
    pass


@attrs.frozen
class CountChildren:
    pass


@attrs.frozen
class WhichChild:
    child_id: str | int


@attrs.frozen
class GetChildspec:
    child_id: str | int


@attrs.frozen
class ChildAddress:
    """The control address of the nested supervisor *child_id*."""

    child_id: str


@attrs.frozen
class Stop:
    pass


@attrs.frozen
class AwaitExit:
    """
    The exit reason of this supervisor's child process *pid*, replied when it has been reaped (at once
    if it already was, recently); ``NoProc`` for a pid that is not, and was not lately, its child.
    """

    pid: int


NEWS_FORKED = "forked"
"""A child's process was forked (it is starting)."""
NEWS_STARTED = "started"
"""A child became ready, not after an automatic restart (its first start, start_child, restart_child)."""
NEWS_RESTARTED = "restarted"
"""A child became ready again in an automatic restart (the failed child or a bystander of its set)."""
NEWS_EXITED = "exited"
"""A child's process was reaped, with its exit reason."""
NEWS_REMOVED = "removed"
"""A child's spec was forgotten (a temporary child that ended, delete_child, the supervisor's stop)."""
NEWS_INTENSITY = "intensity_reached"
"""The supervisor reached its restart intensity and gives up (it stops, exit reason shutdown)."""
NEWS_LOST = "lost"
"""Notices were dropped for this subscriber, whose buffer was full; ``count`` says how many."""
NEWS_KINDS = frozenset({NEWS_FORKED, NEWS_STARTED, NEWS_RESTARTED, NEWS_EXITED, NEWS_REMOVED, NEWS_INTENSITY})
"""The kinds a subscriber may ask for (``lost`` always comes when notices were dropped)."""


@attrs.frozen
class Subscribe:
    """
    Turn this connection into a stream of the supervisor's notices of the *kinds* asked (``NEWS_*``).

    Replied ``("ok", (pid, nested))`` once subscribed, *pid* being the supervisor's and *nested*
    (when *nested* is asked) the ``(child_id, pid)`` of each nested supervisor child that is running
    and ready; from then on only :class:`Notice` frames come, in the order of the events, until the
    supervisor exits (end of file) or the client closes the connection (it must send nothing more).
    At most *buffer* notices wait in the supervisor for a subscriber that does not read; then they
    are counted, and a ``lost`` notice with the count follows once the subscriber has caught up.
    """

    kinds: frozenset[str]
    buffer: int = 1000
    nested: bool = False


@attrs.frozen
class Notice:
    """
    One event of a supervisor's children, as its subscribers receive it.

    *child_id* is the child's id (a made-up key for a child known by pid), None for the supervisor's
    own notices (``intensity_reached``, ``lost``); *pid* the child's process (the reaped one for
    ``exited``), or the supervisor's for its own notices; *at* the UTC time the supervisor saw it.
    *supervisor* says the child is a nested supervisor (one that can be subscribed to); *restarting*,
    for ``exited``, that an automatic restart follows; *count*, for ``lost``, how many were dropped.
    """

    kind: str
    child_id: str | None
    pid: int | None
    at: datetime.datetime
    reason: ExitReason | None = None
    supervisor: bool = False
    restarting: bool = False
    count: int = 0


Request = (
    StartChild
    | TerminateChild
    | RestartChild
    | DeleteChild
    | WhichChildren
    | CountChildren
    | ChildAddress
    | WhichChild
    | GetChildspec
    | Stop
    | StartSimpleChild
    | SupervisorKind
    | ChildSupervisorOf
    | AwaitExit
    | Subscribe
)
