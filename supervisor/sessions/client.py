"""
The session layer's client: :class:`SessionManagerHandle`.

Writes (create, terminate) go to the SessionManager over its control socket, as supervisor requests;
reads (list, look up) go straight to the registry. It pickles, so any process it is given to (a
session's worker, through its arguments) can use it; each thread uses its own connections. It holds
the tree's key; :meth:`SessionManagerHandle.session_supervisor` gives a handle holding only the
session's own key (derived from the tree key and the session's id path). A session is started from
a child spec whose start is the SessionSupervisor's entry point, *named* (see
``supervisor._entrypoint``): this module imports no engine module.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import uuid
from typing import Any

from .._addresses import TreeContext, socket_path
from .._entrypoint import EntryPoint
from .._keys import Key
from .._protocol import KIND_DYNAMIC
from ..errors import (
    ChildNotFoundError,
    ChildNotRunningError,
    RegistryUnavailableError,
    RemoteSessionError,
    SessionNotFoundError,
)
from ..handle import SupervisorHandle, deadline_from, remaining
from ..messaging.client import DEFAULT_TIMEOUT
from ..messaging.events import DEFAULT_BUFFER, check_buffer
from ..messaging.lookup import Scope, call_target, cast_target, whereis_target
from ..messaging.ref import ServerRef
from ..specs import ChildSpec, ChildType, Shutdown, StartMode
from .events import SessionEventStream
from .registry import RegistryClient
from .values import LOCAL_NODE, Placement, SessionInfo, SessionOptions, SessionStatus, positive_seconds

__all__ = ["SessionManagerHandle"]

_RUN_SESSION = EntryPoint("supervisor.sessions.session", "run_session_supervisor")
FOREVER = 3600.0
"""The bound of a request forwarded to another node when the caller gives no timeout: an hour."""
_PEEK_TIMEOUT = 0.5
"""Seconds ``terminate_session`` gives a registry read at most (to find a session still starting)."""


class SessionManagerHandle:
    """
    Creates, terminates, lists and looks up sessions. Get one from :attr:`Application.session_manager`.

    Every call blocks until its effect is done; none waits on another session's start.
    """

    def __init__(
        self,
        app_address: str,
        app_path: str,
        authkey: Key | bytes,
        registry_timeout: float = 5.0,
        node: str | None = None,
        *,
        forward: bool = True,
        slack: float = 0.0,
    ) -> None:
        registry_timeout = positive_seconds("registry_timeout", registry_timeout)
        if not isinstance(authkey, Key):
            authkey = Key(authkey)
        app = TreeContext.at(app_address, authkey, app_path)
        self._app = (app_address, app_path, authkey, registry_timeout, node, forward, slack)
        self._slack = slack  # how long past a forwarded request's timeout its answer may take
        self._node = node  # this node's name in a cluster; None outside one
        # Whether another node's sessions are reached through the cluster: False for the node agent's
        # own handle, which acts on this node's sessions only.
        self._cluster = node is not None and forward
        manager = app.session_manager
        self._manager = SupervisorHandle(manager.address, authkey, manager.path, kind=KIND_DYNAMIC)
        self._registry = RegistryClient(app.registry.address, authkey, registry_timeout)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_handle, self._app)

    def discover_node(self, timeout: float | None = None) -> SessionManagerHandle:
        """
        This handle, knowing whether its Application is a node of a cluster (and its name): the
        registry is asked once, within *timeout* seconds (None: the registry bound). For handles made
        without the node's name (a command-line tool's, from the published descriptor).

        Raises:
            RegistryUnavailableError: the registry did not answer in time.
        """
        address, path, authkey, registry_timeout, _, _, _ = self._app
        info = self._registry.ask("node_info", (), registry_timeout if timeout is None else timeout)
        if info is None:
            return SessionManagerHandle(address, path, authkey, registry_timeout)
        node, slack = info
        return SessionManagerHandle(address, path, authkey, registry_timeout, node, slack=slack)

    def create_session(self, *, timeout: float | None = None, node: str | None = None, **options: Any) -> str:
        """
        Start a new session; return its id (a UUID4 string) once all its children are ready.

        In a cluster, the session is placed on *node*, or (None) on the live node with the lowest
        sessions / capacity; its id is claimed in etcd first, so it runs on one node at most. Outside
        a cluster *node* must be None.

        Options are those of :class:`SessionOptions`: ``children``, ``strategy``, ``max_restarts``,
        ``max_seconds``, ``metadata``, ``restart``, ``cwd``, ``env``, ``max_memory_bytes``,
        ``max_cpu_seconds``, ``max_open_files``, ``auto_shutdown`` (with significant children, a
        session that ends itself when its work is done and leaves the registry),
        ``backoff`` (a restartable session's restart
        delay, see :class:`~supervisor.specs.Backoff`).

        Raises:
            TypeError, ValueError: an unknown or bad option, named; nothing is created.
            BadCombinationError: a significant child without ``auto_shutdown`` (a ValueError);
                nothing is created.
            StartError: a child of the session failed to start; nothing is left behind. Its
                ``__cause__`` chain ends with the child's own exception and remote traceback.
            CallTimeout: not created within *timeout* seconds; the session may still be created.
            ClusterUnavailableError: (a cluster) etcd did not answer, or this node is fencing itself.
            NodeNotFoundError, NoCapacityError, NodeUnreachableError: (a cluster) no such live node,
                no room on it (or anywhere), or it did not answer: nothing was created.
        """
        deadline_from("timeout", timeout)
        unknown = sorted(set(options) - set(SessionOptions.names()))
        if unknown:
            raise TypeError(
                f"create_session got unknown option(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(SessionOptions.names())})"
            )
        parsed = SessionOptions(**options)
        if node is not None and not isinstance(node, str):
            raise TypeError(
                f"'node' must be a node's name or None (got {node!r} that is a {type(node).__name__})"
            )
        session_id = str(uuid.uuid4())
        if self._cluster:
            _check_pickles_by_reference(parsed)
            self._registry.ask("cluster_create", (session_id, parsed, node, timeout), self._bound(timeout))
            return session_id
        if node is not None:
            raise ValueError(f"'node' must be None: this Application is not part of a cluster (got {node!r})")
        return self._start_session(session_id, parsed, None, timeout)

    def _start_session(
        self, session_id: str, parsed: SessionOptions, placement: Placement | None, timeout: float | None
    ) -> str:
        """Start the session *session_id* here (its placement in the registry); its id once ready."""
        spec = ChildSpec(
            id=session_id,
            start=_RUN_SESSION,
            args=(parsed.supervisor_spec(), parsed) + (() if placement is None else (placement,)),
            restart=parsed.restart,
            shutdown=Shutdown.INFINITY,
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
            backoff=parsed.backoff,
        )
        self._manager.start_child(spec, timeout=timeout)
        return session_id

    def terminate_session(self, session_id: str, *, timeout: float | None = None) -> None:
        """
        Stop the session by its children's shutdown specs and remove its entry; return when both are done.

        A session still starting is stopped too, without waiting for its start: its SessionSupervisor
        is told to stop (SIGTERM), which stops the children it has started by their shutdown specs,
        and the ``create_session`` call that is starting it raises :class:`StartError`. (A start is
        found in the session's registry entry, read for half a second at most: with the registry
        away or stopped, the terminate does not wait on it, and waits for the start to end instead.)

        Raises:
            SessionNotFoundError: no live session has this id.
            CallTimeout: not done within *timeout* seconds; the session is still being stopped.
            NodeUnreachableError, ClusterUnavailableError: (a cluster) its owner did not answer, or
                etcd did not: nothing was asked of the owner (within the node bound).
        """
        deadline = deadline_from("timeout", timeout)
        _check_session_id(session_id)
        if self._cluster:
            self._registry.ask("cluster_terminate", (session_id, timeout), self._bound(timeout))
            return
        interrupted = self._interrupt_start(session_id)
        try:
            self._manager.terminate_child(session_id, timeout=remaining(deadline))
        except ChildNotFoundError as error:
            if interrupted:
                return  # its start failed and the SessionManager forgot it: terminated
            raise self._not_found(session_id) from error
        with contextlib.suppress(ChildNotFoundError):  # a temporary session is already forgotten
            self._manager.delete_child(session_id, timeout=remaining(deadline))

    def _interrupt_start(self, session_id: str) -> bool:
        """
        SIGTERM the SessionSupervisor of a session that is INITIALIZING; True if it was signalled.

        The SessionManager runs a session's jobs one at a time, so a terminate request would wait
        behind the session's start, for ever if the start never ends. A start ends at once when the
        SessionSupervisor dies or stops, and then the terminate request finds it gone.

        The registry is only peeked at (``_PEEK_TIMEOUT`` seconds at most for each read, no waiting
        for a registry that is away or stopped): the terminate must not wait on the registry.
        """
        peek = min(self._registry.timeout, _PEEK_TIMEOUT)
        try:
            info = self._registry.get(session_id, timeout=peek)
        except RegistryUnavailableError:
            return False  # the terminate request still stops it, once its start is over
        if not isinstance(info, SessionInfo) or info.status is not SessionStatus.INITIALIZING:
            return False
        if info.node not in (LOCAL_NODE, self._node):
            return False  # another node's session: its pid means nothing on this machine
        if info.pid is None:
            return False  # waiting to be restarted (a backoff): no process, no start to interrupt
        try:
            pidfd = os.pidfd_open(info.pid)
        except ProcessLookupError:
            return False
        try:
            # The pidfd pins the process: checked again, the entry is still this process's start,
            # and the signal cannot reach another process that reused the pid.
            try:
                again = self._registry.get(session_id, timeout=peek)
            except RegistryUnavailableError:
                return False
            if not (
                isinstance(again, SessionInfo)
                and again.pid == info.pid
                and again.status is SessionStatus.INITIALIZING
            ):
                return False
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            except ProcessLookupError:
                return False
            return True
        finally:
            os.close(pidfd)

    def list_sessions(self, *, timeout: float | None = None) -> list[SessionInfo]:
        """
        Every live session's entry, read from the registry in one round trip, oldest first.

        Raises:
            RegistryUnavailableError: the registry did not answer within *timeout* seconds (by
                default, the Application's ``registry_timeout``).
        """
        deadline_from("timeout", timeout)
        entries = self._registry.snapshot(timeout=timeout)
        return sorted(entries.values(), key=lambda info: info.created_at)

    def get_session_info(self, session_id: str, *, timeout: float | None = None) -> SessionInfo:
        """
        The session's registry entry.

        Raises:
            SessionNotFoundError: no live session has this id.
            RegistryUnavailableError: the registry did not answer within *timeout* seconds (by
                default, the Application's ``registry_timeout``).
        """
        deadline_from("timeout", timeout)
        _check_session_id(session_id)
        info = self._registry.get(session_id, timeout=timeout)
        if info is None:
            raise self._not_found(session_id)
        assert isinstance(info, SessionInfo)
        return info

    def get_session_pid(self, session_id: str, *, timeout: float | None = None) -> int:
        """
        The pid of the session's SessionSupervisor.

        Raises:
            SessionNotFoundError: no live session has this id.
        """
        pid = self.get_session_info(session_id, timeout=timeout).pid
        if pid is None:
            raise self._not_found(session_id)
        return pid

    def session_supervisor(self, session_id: str, *, timeout: float | None = None) -> SupervisorHandle:
        """
        A handle for the session's SessionSupervisor (its children, live pids, start_child...).

        The handle holds the session's own key only, so it opens this session's supervisors and
        nothing else (not the SessionManager, another session or the registry): give it to a
        session's worker that should manage its own session. Blocks for one call to the SessionManager.

        Raises:
            SessionNotFoundError: no live session has this id.
            ChildNotRunningError: the session is listed but its SessionSupervisor is not running now
                (a restartable session between a crash and its restart, waiting in its backoff).
        """
        _check_session_id(session_id)
        self._check_here(session_id, "session_supervisor")
        try:
            handle = self._manager.child_supervisor(session_id, timeout=timeout)
        except ChildNotFoundError as error:
            raise self._not_found(session_id) from error
        except ChildNotRunningError as error:
            message = (
                f"session {session_id!r} is not running now: it is restarting "
                "(see get_session_info(session_id).status); ask again once it runs"
            )
            raise ChildNotRunningError(message, session_id) from error
        return handle._with_key(self._manager._authkey.derive(handle.path))

    def events(self, *, buffer: int = DEFAULT_BUFFER, timeout: float | None = None) -> SessionEventStream:
        """
        A stream of the sessions' events (:class:`~supervisor.SessionEvent`), subscribed when it
        returns: no event after that is missed.

        Events are ``created``, ``active``, ``down`` and ``terminated``, in the order the
        SessionManager saw them. The SessionManager pushes them and never waits for the stream: it
        keeps at most *buffer* events for a stream that does not keep up, then drops them, and
        once the stream has caught up it sends a ``lost`` event with their count. The stream ends
        when the SessionManager exits (a restarted one is not followed: subscribe again).

        Blocks for the connection and the SessionManager's answer (at most *timeout* seconds, if
        given). See :class:`~supervisor.SessionEventStream`.

        Raises:
            TypeError, ValueError: *buffer* is not an int from 1 to 1,000,000, or *timeout* not
                seconds >= 0 or None; nothing is sent.
            SupervisorGoneError: the SessionManager is not running.
            CallTimeout: it did not answer within *timeout* seconds.
        """
        check_buffer(buffer)
        manager = self._manager
        return SessionEventStream(
            manager._address, manager._authkey, manager.path, buffer=buffer, timeout=timeout
        )

    # ------------------------------------------------------------------ the sessions' servers

    def whereis(self, session_id: str, child_id: str) -> ServerRef | None:
        """
        The running server *child_id* (an id, or an id path like ``"sub/ctx"``) of the session
        *session_id*, as a ref that carries the session's key; None if none runs now. Reads the
        tree's entries; sends nothing. In a cluster, for a session of this node only
        (:class:`RemoteSessionError` for another node's: call and cast it through this handle).
        """
        self._check_here(session_id, "whereis")
        return whereis_target(self._session_servers(session_id), child_id)

    def call(
        self,
        session_id: str,
        child_id: str,
        request: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        *,
        wait_for_restart: bool = True,
    ) -> Any:
        """
        Call the server *child_id* of the session *session_id* and return its reply; while it is
        being restarted, wait for it within *timeout* (``wait_for_restart=False``: ``NoProc`` at
        once). The errors are :func:`supervisor.call`'s. In a cluster, a session of another node is
        called through that node (:class:`NodeUnreachableError` if it does not answer within the
        node bound: the request was not delivered).
        """
        if self._cluster and not self._is_here(session_id):
            bound = self._bound(timeout)
            return self._registry.ask(
                "cluster_call", (session_id, child_id, request, timeout, wait_for_restart), bound
            )
        return call_target(self._session_servers(session_id), child_id, request, timeout, wait_for_restart)

    def cast(
        self, session_id: str, child_id: str, message: Any, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> None:
        """Cast *message* to the server *child_id* of the session *session_id*, if one runs now."""
        if self._cluster and not self._is_here(session_id):
            self._registry.ask("cluster_cast", (session_id, child_id, message, timeout), self._bound(timeout))
            return
        cast_target(self._session_servers(session_id), child_id, message, timeout)

    def _bound(self, timeout: float | None) -> float:
        """How long to wait for the agent's answer to a cluster request of *timeout* seconds."""
        return (FOREVER if timeout is None else timeout) + self._slack

    def _is_here(self, session_id: str) -> bool:
        """True outside a cluster, or if the session's entry names this node (one registry read)."""
        if self._node is None:
            return True
        return self.get_session_info(session_id).node == self._node

    def _check_here(self, session_id: str, operation: str) -> None:
        _check_session_id(session_id)
        if self._node is None:
            return
        owner = self.get_session_info(session_id).node
        if owner != self._node:
            raise RemoteSessionError(
                f"session {session_id!r} runs on node {owner!r}, and {operation} works on this node's "
                f"({self._node!r}) sessions only",
                session_id,
                owner,
            )

    @property
    def node(self) -> str | None:
        """This node's name in its cluster; None outside a cluster."""
        return self._node

    def _session_servers(self, session_id: str) -> Scope:
        _check_session_id(session_id)
        path = f"{self._manager.path}/{session_id}"
        private_dir = os.path.dirname(self._manager._address)
        own = SupervisorHandle(
            socket_path(private_dir, path), self._manager._authkey.derive(path), path, scope=path
        )
        return own._servers(names=False)

    @property
    def supervisor(self) -> SupervisorHandle:
        """The SessionManager's own supervisor handle (``which_children`` lists sessions by id)."""
        return self._manager

    def _not_found(self, session_id: str) -> SessionNotFoundError:
        return SessionNotFoundError(f"no live session with id {session_id!r}", session_id)


def _check_pickles_by_reference(options: SessionOptions) -> None:
    """A cluster keeps a session's options in etcd, for any node to start: they must pickle plainly."""
    try:
        pickle.dumps(options, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise TypeError(
            "in a cluster, a session's options must pickle with the standard pickler (its children's "
            f"start functions importable by name from a module, not lambdas or local functions): {error}"
        ) from error


def _rebuild_handle(
    address: str,
    path: str,
    authkey: Key | bytes,
    registry_timeout: float,
    node: str | None,
    forward: bool,
    slack: float,
) -> SessionManagerHandle:
    return SessionManagerHandle(address, path, authkey, registry_timeout, node, forward=forward, slack=slack)


def _check_session_id(session_id: object) -> None:
    if not isinstance(session_id, str):
        raise TypeError(
            f"'session_id' must be a str (got {session_id!r} that is a {type(session_id).__name__})"
        )
