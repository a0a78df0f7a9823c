"""
The session layer's values: a session's status, its registry entry, and the options it is created with.

All frozen attrs classes; :class:`SessionOptions` validates every option when built, so a bad
``create_session`` call raises before anything is created.
"""

from __future__ import annotations

import datetime
import enum
import os
import pickle
from collections.abc import Mapping
from typing import Any

import attrs

from ..specs import ChildSpec, Restart, Strategy, SupervisorSpec, _to_children

__all__ = ["ChildSummary", "SessionInfo", "SessionOptions", "SessionStatus"]


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

    ``pid`` is its SessionSupervisor's; ``children`` lists the session's children and their pids as of
    the moment the session last became ACTIVE (empty before); ``restarts`` counts automatic restarts
    of the session under the same id.
    """

    session_id: str
    pid: int | None
    status: SessionStatus
    created_at: datetime.datetime
    restarts: int
    metadata: Any
    children: tuple[ChildSummary, ...]


def _positive_int_or_none(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"'{attribute.name}' must be an int > 0 or None (got {value!r} that is a {type(value).__name__})"
        )
    if value <= 0:
        raise ValueError(f"'{attribute.name}' must be an int > 0 or None (got {value!r})")


def _check_restart(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Restart):
        raise TypeError(f"'restart' must be a Restart (got {value!r} that is a {type(value).__name__})")


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
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"'env' must be a mapping of str to str or None (got {value!r})")


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
            RLIMIT_NOFILE) of each process of the session, the SessionSupervisor included.
    """

    children: tuple[ChildSpec, ...] = attrs.field(default=(), converter=_to_children)
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    max_seconds: float = 5.0
    metadata: Any = attrs.field(default=None, validator=_check_metadata)
    restart: Restart = attrs.field(default=Restart.TEMPORARY, validator=_check_restart)
    cwd: str | None = attrs.field(default=None, validator=_check_cwd)
    env: dict[str, str] | None = attrs.field(default=None, validator=_check_env, converter=_to_env)
    max_memory_bytes: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    max_cpu_seconds: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    max_open_files: int | None = attrs.field(default=None, validator=_positive_int_or_none)

    def __attrs_post_init__(self) -> None:
        self.supervisor_spec()

    def supervisor_spec(self) -> SupervisorSpec:
        """The SessionSupervisor's spec; raises TypeError/ValueError naming a bad flag."""
        return SupervisorSpec(
            children=self.children,
            strategy=self.strategy,
            max_restarts=self.max_restarts,
            max_seconds=self.max_seconds,
        )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in attrs.fields(cls))
