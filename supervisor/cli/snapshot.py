"""
A running tree read into plain values: the JSON of ``status``, ``ls`` and ``sessions``, and its health.

Every value here is what ``--json`` prints (the schema is documented in ``docs/operating.md``); the
text views render the same values. A tree changes while it is read: a supervisor that stops between
``which_children`` and its own listing shows no children rather than failing the command.
"""

from __future__ import annotations

import datetime
from typing import Any

from ..errors import SupervisorError
from ..handle import SupervisorHandle
from ..info import ChildInfo, ChildState
from ..reasons import ExitReason
from ..sessions.values import SessionInfo
from ..specs import ChildType, Restart
from .target import Target

__all__ = [
    "child_json",
    "children_json",
    "health",
    "is_healthy",
    "reason_json",
    "session_json",
    "sessions_json",
    "status_json",
    "supervisor_children",
    "tree_json",
    "unhealthy",
]

_MANAGER = "root/session_manager"


def now() -> datetime.datetime:
    """The current time, UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _uptime(started: datetime.datetime | None) -> float | None:
    return None if started is None else round(max(0.0, (now() - started).total_seconds()), 3)


def reason_json(reason: ExitReason | None) -> dict[str, Any] | None:
    """An exit reason as ``{"kind", "description", "abnormal"}``, or None."""
    if reason is None:
        return None
    return {"kind": reason.kind.value, "description": reason.describe(), "abnormal": reason.is_abnormal}


def child_json(target: Target, handle: SupervisorHandle, info: ChildInfo) -> dict[str, Any]:
    """One child of the supervisor *handle*, with its own children if it is a running supervisor."""
    key: str | int | None = info.id if info.id is not None else info.pid
    path = f"{handle.path}/{key}"
    children: list[dict[str, Any]] = []
    nested = info.type is ChildType.SUPERVISOR and info.state is ChildState.RUNNING and key is not None
    # An Application's sessions are listed apart, from the registry.
    if nested and key is not None and (path != _MANAGER or target.sessions is None):
        children = children_json(target, handle, key)
    return {
        "id": info.id,
        "path": path,
        "pid": info.pid,
        "type": info.type.value,
        "restart": info.restart.value,
        "state": info.state.value,
        "restarts": info.restarts,
        "started_at": _iso(info.started_at),
        "uptime_seconds": _uptime(info.started_at) if info.pid is not None else None,
        "retry_at": _iso(info.retry_at),
        "last_exit": reason_json(info.last_exit),
        "healthy": is_healthy(info),
        "children": children,
    }


def children_json(target: Target, parent: SupervisorHandle, key: str | int) -> list[dict[str, Any]]:
    """The children of the supervisor child *key* of *parent*; [] if it stopped meanwhile."""
    try:
        handle = parent.child_supervisor(key, timeout=target.timeout)
        return supervisor_children(target, handle)
    except SupervisorError:
        return []


def supervisor_children(target: Target, handle: SupervisorHandle) -> list[dict[str, Any]]:
    """Every child of the supervisor *handle*, recursively. Blocks for a call per supervisor."""
    return [child_json(target, handle, info) for info in handle.which_children(timeout=target.timeout)]


def is_healthy(info: ChildInfo) -> bool:
    """
    False when the child is not running although its restart type says it should be: a permanent
    child, or a transient one whose last exit was abnormal. A first start in progress is healthy.
    """
    if info.state is ChildState.RUNNING:
        return True
    if info.state is ChildState.STARTING and info.last_exit is None:
        return True
    if info.restart is Restart.PERMANENT:
        return False
    return info.restart is Restart.TRANSIENT and info.last_exit is not None and info.last_exit.is_abnormal


def session_json(target: Target, info: SessionInfo) -> dict[str, Any]:
    """A session: its registry entry, and its children as its SessionSupervisor lists them now."""
    children: list[dict[str, Any]]
    try:
        assert target.sessions is not None
        handle = target.sessions.session_supervisor(info.session_id, timeout=target.timeout)
        children = supervisor_children(target, handle)
    except SupervisorError:  # not running here now (restarting, ended, another node's): as last reported
        children = [{"id": child.id, "pid": child.pid} for child in info.children]
    return {
        "session_id": info.session_id,
        "node": info.node,
        "incarnation": info.incarnation,
        "pid": info.pid,
        "status": info.status.value,
        "created_at": _iso(info.created_at),
        "restarts": info.restarts,
        "metadata": _plain(info.metadata),
        "children": children,
    }


def sessions_json(target: Target) -> list[dict[str, Any]]:
    """Every live session of an Application (oldest first); [] for a plain tree."""
    if target.sessions is None:
        return []
    return [session_json(target, info) for info in target.sessions.list_sessions(timeout=target.timeout)]


def _plain(value: Any) -> Any:
    """*value* as JSON can hold it: containers kept, anything else its repr unless a plain scalar."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return repr(value)


def tree_json(target: Target) -> dict[str, Any]:
    """The head of ``status``: the tree's name, kind, root pid and start time."""
    descriptor = target.descriptor
    return {
        "tree": descriptor.name,
        "kind": descriptor.kind,
        "pid": descriptor.pid,
        "started_at": _iso(descriptor.started_at),
        "uptime_seconds": _uptime(descriptor.started_at),
    }


def status_json(target: Target, ids: list[str]) -> dict[str, Any]:
    """
    ``status [PATH]``: the whole tree, or the part at *ids* (a supervisor's children, or one child),
    with the sessions (whole tree only) and ``"healthy"``. Blocks for a call per supervisor.
    """
    result = tree_json(target)
    result["path"] = "/".join(["root", *ids])
    if not ids:
        result["children"] = supervisor_children(target, target.root)
        result["sessions"] = sessions_json(target)
    else:
        parent, info = target.child_at(ids)
        result["children"] = [child_json(target, parent, info)]
        result["sessions"] = []
    result["unhealthy"] = unhealthy(result)
    result["healthy"] = not result["unhealthy"]
    return result


def _walk(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for child in children:
        found.append(child)
        found.extend(_walk(child.get("children", [])))
    return found


def unhealthy(status: dict[str, Any]) -> list[str]:
    """The paths of the children, sessions' included, that should run and do not."""
    children = list(status["children"])
    for session in status["sessions"]:
        children.extend(session["children"])
    return [child["path"] for child in _walk(children) if child.get("healthy") is False]


def health(status: dict[str, Any]) -> int:
    """The exit status of ``status``: 0 when healthy, 1 when a child should run and does not."""
    return 0 if status["healthy"] else 1
