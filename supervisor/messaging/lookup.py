"""
Servers by name or id path, resolved at call time: what ``whereis``, ``call`` and ``cast`` of a
handle do.

A target is first a registered name (unique in the tree), else an id path below the handle's
supervisor (``"api/handler"``). A call by name or path whose server is being restarted waits for
the restarted process within the call's own timeout (``wait_for_restart=False`` fails at once with
``NoProc`` instead); only ``NoProc`` (the request did not run) is followed by a new lookup, never a
failure after the request was sent.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Any

from .. import _names
from .._deadlines import deadline_from, remaining
from .._keys import Key
from .._linux import DirectoryWatch
from .._transport import AUTH_TIMEOUT
from ..errors import AuthenticationError, ChildNotFoundError, NoProc, SupervisorError, SupervisorGoneError
from ..info import ChildState
from .client import DEFAULT_TIMEOUT, call, cast, resolve
from .ref import ServerRef

__all__ = ["Scope", "call_target", "cast_target", "whereis_target"]


class Scope:
    """Where a handle looks servers up: the tree's private directory, the key it holds, its path."""

    def __init__(
        self,
        private_dir: str,
        key: Key,
        key_scope: str,
        base_path: str,
        parent_of: Callable[[str, str], Any],
        names: bool = True,
    ) -> None:
        """
        *parent_of(path, scope)*: a handle for the supervisor of the child at *path*, or None.
        *names*: a target is a registered name first (else only an id path below *base_path*).
        """
        self.private_dir = private_dir
        self.key = key
        self.key_scope = key_scope
        self.base_path = base_path
        self.parent_of = parent_of
        self.names = names

    def path_of(self, target: object) -> tuple[str, str]:
        """The id path *target* names, and the key scope it is in."""
        argument = "name_or_path" if self.names else "child_id"
        if not isinstance(target, str):
            raise TypeError(f"'{argument}' must be a str (got {target!r} that is a {type(target).__name__})")
        if not target.strip("/") or any(part in ("", ".", "..") for part in target.strip("/").split("/")):
            raise ValueError(f"'{argument}' must be a name or an id path like 'api/handler' (got {target!r})")
        entry = _names.read_name(self.private_dir, target) if self.names else None
        if entry is not None:
            return entry.path, entry.scope
        return f"{self.base_path}/{target.strip('/')}", self.key_scope


def whereis_target(scope: Scope, target: str) -> ServerRef | None:
    """The running server *target* names, None if none runs now. Reads files only."""
    path, _ = scope.path_of(target)
    return resolve(scope.private_dir, scope.key, scope.key_scope, path)


def call_target(
    scope: Scope,
    target: str,
    request: Any,
    timeout: float | None = DEFAULT_TIMEOUT,
    wait_for_restart: bool = True,
) -> Any:
    """``call`` the server *target* names, resolved now (waiting for a restart, see the module)."""
    deadline = deadline_from("timeout", timeout)
    ref = _running(scope, target, deadline, wait_for_restart, "call")
    while True:
        try:
            return call(ref, request, remaining(deadline))
        except NoProc:
            # It did not run: the process the lookup found was gone. Look again, once it is back.
            if not wait_for_restart:
                raise
            ref = _running(scope, target, deadline, wait_for_restart, "call")


def cast_target(scope: Scope, target: str, message: Any, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """``cast`` to the server *target* names if one runs now; does nothing otherwise (OTP's cast)."""
    deadline = deadline_from("timeout", timeout)
    path, _ = scope.path_of(target)
    ref = resolve(scope.private_dir, scope.key, scope.key_scope, path)
    if ref is not None:
        cast(ref, message, remaining(deadline))


def _running(scope: Scope, target: str, deadline: float | None, wait: bool, call_name: str) -> ServerRef:
    """
    The running server *target* names; with *wait*, waits within *deadline* while its supervisor
    still means to run it: woken when its entry appears (inotify) or when its supervisor has news
    of its children (an event stream), never by polling. ``NoProc`` when it is not to run again
    (its supervisor has no such child, or it is STOPPED, or the supervisor is gone).
    """
    path, where = scope.path_of(target)
    ref = resolve(scope.private_dir, scope.key, scope.key_scope, path)
    if ref is not None:
        return ref
    if not wait:
        raise NoProc(f"{call_name}: no server {target!r} is running ({path}); nothing was sent")
    parent = scope.parent_of(path, where)
    if parent is None:
        raise NoProc(
            f"{call_name}: no server {target!r} is running ({path}), nor its supervisor; nothing was sent"
        )
    try:
        news = parent.events(buffer=16)
    except SupervisorError as error:
        raise NoProc(
            f"{call_name}: no server {target!r} is running ({path}), and its supervisor cannot say "
            f"whether it will ({error}); nothing was sent"
        ) from error
    with DirectoryWatch(scope.private_dir) as entries, news:
        poller = select.poll()
        poller.register(entries.fileno(), select.POLLIN)
        poller.register(news.fileno(), select.POLLIN)
        child_id = path.rpartition("/")[2]
        while True:
            ref = resolve(scope.private_dir, scope.key, scope.key_scope, path)
            if ref is not None:
                return ref
            if news.ended or not _to_run(parent, child_id):
                raise NoProc(f"{call_name}: server {target!r} ({path}) is not to run again; nothing was sent")
            left = remaining(deadline)
            if left == 0:
                raise NoProc(
                    f"{call_name}: server {target!r} ({path}) did not run again within the timeout; "
                    "nothing was sent"
                )
            poller.poll(None if left is None else min(int(left * 1000) + 1, 2**31 - 1))
            entries.drain()
            while news.next_event(0) is not None:
                pass


def _to_run(parent: Any, child_id: str) -> bool:
    """Whether *parent* still means to run its child *child_id* (it has it, and it is not STOPPED)."""
    try:
        info = parent.which_child(child_id, timeout=AUTH_TIMEOUT)
    except (ChildNotFoundError, SupervisorGoneError, AuthenticationError):
        return False
    except SupervisorError:
        return True  # it did not answer in time: still ours to wait for, within the deadline
    return bool(info.state is not ChildState.STOPPED)
