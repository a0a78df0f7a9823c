"""
The session layer's values: a session's status, its registry entry, and the options it is created with.

All frozen attrs classes; :class:`SessionOptions` validates every option when built, so a bad
``create_session`` call raises before anything is created.
"""

from __future__ import annotations

import datetime
import enum
import math
import numbers
import os
import pickle
import resource
from collections.abc import Mapping
from typing import Any

import attrs

from ..specs import AutoShutdown, Backoff, ChildSpec, Restart, Strategy, SupervisorSpec, _to_children

__all__ = [
    "LOCAL_NODE",
    "MAX_LIMIT",
    "MIN_MEMORY_BYTES",
    "ChildSummary",
    "LimitCeilings",
    "Placement",
    "SessionInfo",
    "SessionOptions",
    "SessionStatus",
    "positive_seconds",
]

MAX_LIMIT = 2**63 - 1
"""The largest resource limit the platform takes (``rlim_t`` as Python's ``setrlimit`` reads it)."""

MIN_MEMORY_BYTES = 64 << 20
"""The smallest ``max_memory_bytes``: below 64 MiB of address space a Python interpreter cannot start."""


class SessionStatus(enum.Enum):
    INITIALIZING = "initializing"
    """Its SessionSupervisor is starting (or restarting) the session's children."""
    ACTIVE = "active"
    """Every child of the session is ready."""
    TERMINATING = "terminating"
    """It is being stopped."""


@attrs.frozen
class ChildSummary:
    """One child of a session, as of the last time the session became ready."""

    id: str
    pid: int | None


@attrs.frozen
class SessionInfo:
    """
    A session's registry entry.

    ``pid`` is its SessionSupervisor's (None while a restart of the session has not forked its new
    process yet, say during a backoff), a pid of the machine of ``node``; ``children`` lists the
    session's children and their pids as of the moment the session last became ACTIVE (empty
    before); ``restarts`` counts automatic restarts of the session under the same id, on its node or,
    in a cluster, by a re-placement on another node. ``node`` is the name of the node that runs it
    (:data:`LOCAL_NODE` outside a cluster); ``incarnation`` counts its placements: 1 when created,
    one more each time the cluster re-placed it after its node died.
    """

    session_id: str
    pid: int | None
    status: SessionStatus
    created_at: datetime.datetime
    restarts: int
    metadata: Any
    children: tuple[ChildSummary, ...]
    node: str = "local"
    incarnation: int = 1


LOCAL_NODE = "local"
"""The ``node`` of every session of an Application that is not part of a cluster."""


@attrs.frozen
class Placement:
    """
    Where and how many times a session has been placed: the start of its registry entry.

    ``node`` runs it; ``incarnation`` is 1 at creation and grows by one at each re-placement;
    ``restarts`` is the count it carries over from its previous placements.
    """

    node: str = LOCAL_NODE
    incarnation: int = 1
    restarts: int = 0
    created_at: datetime.datetime | None = None


@attrs.frozen
class LimitCeilings:
    """
    The largest value each resource-limit option may take: the calling process's hard limit, or
    :data:`MAX_LIMIT` where the hard limit is unlimited (a limit cannot be raised above the hard limit
    without privileges, and the session's processes inherit the tree's hard limits, which are its
    starter's).
    """

    max_memory_bytes: int
    max_cpu_seconds: int
    max_open_files: int

    @classmethod
    def current(cls) -> LimitCeilings:
        """The ceilings of the calling process, read with ``getrlimit`` (does not block)."""
        return cls(
            max_memory_bytes=_hard_limit(resource.RLIMIT_AS),
            max_cpu_seconds=_hard_limit(resource.RLIMIT_CPU),
            max_open_files=_hard_limit(resource.RLIMIT_NOFILE),
        )


_LIMIT_NAMES = {
    "max_memory_bytes": "RLIMIT_AS",
    "max_cpu_seconds": "RLIMIT_CPU",
    "max_open_files": "RLIMIT_NOFILE",
}
_LIMIT_MINIMUMS = {"max_memory_bytes": MIN_MEMORY_BYTES}


def _hard_limit(kind: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return MAX_LIMIT if hard == resource.RLIM_INFINITY or hard > MAX_LIMIT else hard


def _check_limit(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    """A resource limit: None, or an int from its minimum to its ceiling (see :class:`LimitCeilings`)."""
    if value is None:
        return
    name = attribute.name
    minimum = _LIMIT_MINIMUMS.get(name, 1)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"'{name}' must be an int >= {minimum} or None (got {value!r} that is a {type(value).__name__})"
        )
    if value < minimum:
        why = " (a Python interpreter needs more address space)" if name == "max_memory_bytes" else ""
        raise ValueError(f"'{name}' must be an int >= {minimum} or None{why} (got {value!r})")
    if value > MAX_LIMIT:
        raise ValueError(
            f"'{name}' must be at most {MAX_LIMIT} (2**63 - 1), the platform's largest limit (got {value!r})"
        )
    ceiling: int = getattr(LimitCeilings.current(), name)
    if value > ceiling:
        raise ValueError(
            f"'{name}' must be at most {ceiling}, the hard {_LIMIT_NAMES[name]} of this process, "
            f"which the session's processes cannot exceed (got {value!r})"
        )


def _check_restart(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Restart):
        raise TypeError(f"'restart' must be a Restart (got {value!r} that is a {type(value).__name__})")


def _check_auto_shutdown(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, AutoShutdown):
        raise TypeError(
            f"'auto_shutdown' must be an AutoShutdown (got {value!r} that is a {type(value).__name__})"
        )


def _check_backoff(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Backoff):
        raise TypeError(
            f"'backoff' must be a Backoff or None (got {value!r} that is a {type(value).__name__})"
        )


def _check_metadata(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    try:
        pickle.dumps(value)
    except Exception as error:
        raise TypeError(f"'metadata' must be picklable (got {value!r}: {error})") from error


def _check_cwd(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"'cwd' must be a str path or None (got {value!r} that is a {type(value).__name__})")
    if not os.path.isdir(value):
        raise ValueError(f"'cwd' must be an existing directory (got {value!r})")


def _check_env(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    """A whole environment: names without "=" or NUL (and not empty), values without NUL."""
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"'env' must be a mapping of str to str or None (got {value!r})")
    for name, text in value.items():
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"'env' names must be non-empty, without '=' or NUL (got the name {name!r})")
        if "\0" in text:
            raise ValueError(f"'env' values must not contain NUL (got {text!r} for {name!r})")


def _to_env(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


@attrs.frozen
class SessionOptions:
    """
    The options of ``create_session``, validated.

    Args:
        children: the session's child specs, started in order.
        strategy, max_restarts, max_seconds: the session's SessionSupervisor's flags.
        metadata: picklable user data, kept in the registry entry.
        restart: what happens when the SessionSupervisor dies: TEMPORARY (default) forgets the
            session; TRANSIENT and PERMANENT restart it under the same id.
        cwd: the working directory of the session's processes.
        env: the whole environment of the session's processes (replacing the inherited one).
        max_memory_bytes, max_cpu_seconds, max_open_files: resource limits (RLIMIT_AS, RLIMIT_CPU,
            RLIMIT_NOFILE) of each process of the session, the SessionSupervisor included: each an
            int from 1 (``max_memory_bytes``: :data:`MIN_MEMORY_BYTES`, 64 MiB) to the calling
            process's hard limit (:class:`LimitCeilings`; ``2**63 - 1`` where it is unlimited).
        auto_shutdown: the SessionSupervisor's :class:`~supervisor.AutoShutdown`: with
            ANY_SIGNIFICANT or ALL_SIGNIFICANT, the session ends itself (with reason *shutdown*) when
            its significant children (``ChildSpec(..., significant=True)``) have finished, and leaves
            the registry. NEVER by default, and then no child may be significant.
        backoff: how long a restart of the session (``restart`` TRANSIENT or PERMANENT) waits; see
            :class:`~supervisor.specs.Backoff`. None (the default) restarts it at once.

    Raises:
        TypeError: an option of the wrong type, named.
        ValueError: an option out of its range, named (an ``env`` name with "=" or NUL, a limit
            above the hard limit...). Nothing is started: validation runs in the calling process.
        BadCombinationError: a significant child while *auto_shutdown* is NEVER (a ValueError).
    """

    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=_to_children)
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    max_seconds: float = 5.0
    metadata: Any = attrs.field(default=None, validator=_check_metadata)
    restart: Restart = attrs.field(default=Restart.TEMPORARY, validator=_check_restart)
    cwd: str | None = attrs.field(default=None, validator=_check_cwd)
    env: dict[str, str] | None = attrs.field(default=None, validator=_check_env, converter=_to_env)
    max_memory_bytes: int | None = attrs.field(default=None, validator=_check_limit)
    max_cpu_seconds: int | None = attrs.field(default=None, validator=_check_limit)
    max_open_files: int | None = attrs.field(default=None, validator=_check_limit)
    auto_shutdown: AutoShutdown = attrs.field(default=AutoShutdown.NEVER, validator=_check_auto_shutdown)
    backoff: Backoff | None = attrs.field(default=None, validator=_check_backoff)

    def __attrs_post_init__(self) -> None:
        self.supervisor_spec()

    def supervisor_spec(self) -> SupervisorSpec:
        """The SessionSupervisor's spec; raises TypeError/ValueError naming a bad flag."""
        return SupervisorSpec(
            children=self.children,
            strategy=self.strategy,
            max_restarts=self.max_restarts,
            max_seconds=self.max_seconds,
            auto_shutdown=self.auto_shutdown,
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in attrs.fields(cls))


def positive_seconds(name: str, value: object) -> float:
    """
    *value* as a float of seconds, checked: a finite real number > 0, not a bool.

    Raises:
        TypeError: *value* is not a real number (named *name* in the message).
        ValueError: it is not finite, or not > 0.
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"'{name}' must be seconds > 0 (got {value!r} that is a {type(value).__name__})")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"'{name}' must be finite seconds > 0 (got {value!r})")
    return seconds
