"""
The control protocol's messages: one request type per handle call, and the shape of a reply.

A client sends one request and reads one reply, ``("ok", value)`` or ``("error", SupervisorError)``,
which the handle re-raises as its class, or ``("unreadable", why)`` when the supervisor could not
unpickle the request (the handle raises ``UnreadableRequestError``); ``Stop`` is answered once the
supervisor has stopped its children. Frozen values only: how they travel is :mod:`supervisor._transport` and
:mod:`supervisor._wire`, what a supervisor does with them is the engine's server.
"""

from __future__ import annotations

import attrs

from .specs import ChildSpec

__all__ = [
    "ChildAddress",
    "CountChildren",
    "DeleteChild",
    "GetChildspec",
    "Request",
    "RestartChild",
    "StartChild",
    "Stop",
    "TerminateChild",
    "WhichChild",
    "WhichChildren",
]


@attrs.frozen
class StartChild:
    spec: ChildSpec


@attrs.frozen
class TerminateChild:
    child_id: str


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
    child_id: str


@attrs.frozen
class GetChildspec:
    child_id: str


@attrs.frozen
class ChildAddress:
    """The control address of the nested supervisor *child_id*."""

    child_id: str


@attrs.frozen
class Stop:
    pass


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
)
