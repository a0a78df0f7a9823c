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

from collections.abc import Callable
from typing import Any

from .. import _names
from .._deadlines import deadline_from, remaining
from .._keys import Key
from ..errors import NoProc
from .client import DEFAULT_TIMEOUT, await_running, call, cast, resolve
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
        expected: Callable[[str], bool],
        names: bool = True,
    ) -> None:
        """
        *expected(path)*: whether the child at *path* exists and is to run again (not stopped).
        *names*: a target is a registered name first (else only an id path below *base_path*).
        """
        self.private_dir = private_dir
        self.key = key
        self.key_scope = key_scope
        self.base_path = base_path
        self.expected = expected
        self.names = names

    def path_of(self, target: object) -> tuple[str, bool]:
        """The id path *target* names, and whether it is a registered name."""
        argument = "name_or_path" if self.names else "child_id"
        if not isinstance(target, str):
            raise TypeError(f"'{argument}' must be a str (got {target!r} that is a {type(target).__name__})")
        if not target.strip("/") or any(part in ("", ".", "..") for part in target.strip("/").split("/")):
            raise ValueError(f"'{argument}' must be a name or an id path like 'api/handler' (got {target!r})")
        entry = _names.read_name(self.private_dir, target) if self.names else None
        if entry is not None:
            return entry.path, True
        return f"{self.base_path}/{target.strip('/')}", False


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
    path, _ = scope.path_of(target)
    ref = resolve(scope.private_dir, scope.key, scope.key_scope, path)
    if ref is not None:
        return ref
    if wait and scope.expected(path):
        ref = await_running(scope.private_dir, scope.key, scope.key_scope, path, deadline)
        if ref is not None:
            return ref
        raise NoProc(
            f"{call_name}: server {target!r} ({path}) did not run again within the timeout; nothing was sent"
        )
    raise NoProc(f"{call_name}: no server {target!r} is running ({path}); nothing was sent")
