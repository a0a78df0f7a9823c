"""
The control protocol's messages: one request type per handle call, and the shape of a reply.

A client sends one request and reads one reply, ``("ok", value)`` or ``("error", SupervisorError)``,
which the handle re-raises as its class, or ``("unreadable", why)`` when the supervisor could not
unpickle the request (the handle raises ``UnreadableRequestError``); ``Stop`` is answered once the
supervisor has stopped its children. Frozen values only: how they travel is :mod:`supervisor._transport` and
:mod:`supervisor._wire`, what a supervisor does with them is the engine's server.
"""

from __future__ import annotations

from typing import Any

import attrs

from .specs import ChildSpec

__all__ = [
    "KIND_DYNAMIC",
    "KIND_SIMPLE",
    "KIND_STATIC",
    "AwaitExit",
    "ChildAddress",
    "ChildSupervisorOf",
    "CountChildren",
    "DeleteChild",
    "GetChildspec",
    "Request",
    "RestartChild",
    "StartChild",
    "StartSimpleChild",
    "Stop",
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
)
