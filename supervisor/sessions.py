"""
The session layer: ``Application`` → ``SessionManager`` → ``SessionSupervisor`` → the session's workers.

The Application's supervisor (one_for_one) has two children: the registry server (a Manager dict
holding ``session_id → SessionInfo``) and the SessionManager (a dynamic supervisor of sessions, the
registry's only writer). Each session is a SessionSupervisor process with the session's children.

:class:`SessionManagerHandle` is the client: writes go to the SessionManager over its control socket,
reads go straight to the registry. It pickles, so any process, a session's own workers included, can
use it; each thread uses its own connections.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from types import TracebackType
from typing import Any

from ._protocol import socket_path
from ._session_manager import run_session_manager, run_session_supervisor
from .errors import ChildNotFoundError, RegistryUnavailableError, SessionNotFoundError
from .handle import Supervisor, SupervisorHandle
from .registry import REGISTRY_ID, RegistryClient, run_registry_server
from .session_values import SessionInfo, SessionOptions, SessionStatus
from .specs import ChildSpec, ChildType, Restart, Shutdown, StartMode, Strategy, SupervisorSpec

__all__ = ["Application", "SessionManagerHandle"]

SESSION_MANAGER_ID = "session_manager"


class SessionManagerHandle:
    """
    Creates, terminates, lists and looks up sessions. Get one from :attr:`Application.session_manager`.

    Every call blocks until its effect is done; none waits on another session's start.
    """

    def __init__(
        self, app_address: str, app_path: str, authkey: bytes, registry_timeout: float = 5.0
    ) -> None:
        private_dir = os.path.dirname(app_address)
        self._app = (app_address, app_path, authkey, registry_timeout)
        manager_path = f"{app_path}/{SESSION_MANAGER_ID}"
        self._manager = SupervisorHandle(socket_path(private_dir, manager_path), authkey, manager_path)
        self._registry = RegistryClient(
            socket_path(private_dir, f"{app_path}/{REGISTRY_ID}"), authkey, registry_timeout
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (SessionManagerHandle, self._app)

    def create_session(self, **options: Any) -> str:
        """
        Start a new session; return its id (a UUID4 string) once all its children are ready.

        Options are those of :class:`SessionOptions`: ``children``, ``strategy``, ``max_restarts``,
        ``max_seconds``, ``metadata``, ``restart``, ``cwd``, ``env``, ``max_memory_bytes``,
        ``max_cpu_seconds``, ``max_open_files``.

        Raises:
            TypeError, ValueError: an unknown or bad option, named; nothing is created.
            StartError: a child of the session failed to start; nothing is left behind. Its
                ``__cause__`` chain ends with the child's own exception and remote traceback.
        """
        unknown = sorted(set(options) - set(SessionOptions.names()))
        if unknown:
            raise TypeError(
                f"create_session got unknown option(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(SessionOptions.names())})"
            )
        parsed = SessionOptions(**options)
        session_id = str(uuid.uuid4())
        spec = ChildSpec(
            id=session_id,
            start=run_session_supervisor,
            args=(parsed.supervisor_spec(), parsed),
            restart=parsed.restart,
            shutdown=Shutdown.INFINITY,
            type=ChildType.SUPERVISOR,
            start_mode=StartMode.NOTIFY,
        )
        self._manager.start_child(spec)
        return session_id

    def terminate_session(self, session_id: str) -> None:
        """
        Stop the session by its children's shutdown specs and remove its entry; return when both are done.

        A session still starting is stopped too, without waiting for its start: its SessionSupervisor
        is told to stop (SIGTERM), which stops the children it has started by their shutdown specs,
        and the ``create_session`` call that is starting it raises :class:`StartError`.

        Raises:
            SessionNotFoundError: no live session has this id.
        """
        _check_session_id(session_id)
        interrupted = self._interrupt_start(session_id)
        try:
            self._manager.terminate_child(session_id)
        except ChildNotFoundError as error:
            if interrupted:
                return  # its start failed and the SessionManager forgot it: terminated
            raise self._not_found(session_id) from error
        with contextlib.suppress(ChildNotFoundError):  # a temporary session is already forgotten
            self._manager.delete_child(session_id)

    def _interrupt_start(self, session_id: str) -> bool:
        """
        SIGTERM the SessionSupervisor of a session that is INITIALIZING; True if it was signalled.

        The SessionManager runs a session's jobs one at a time, so a terminate request would wait
        behind the session's start, for ever if the start never ends. A start ends at once when the
        SessionSupervisor dies or stops, and then the terminate request finds it gone.
        """
        try:
            info = self._registry.get(session_id)
        except RegistryUnavailableError:
            return False  # the terminate request still stops it, once its start is over
        if not isinstance(info, SessionInfo) or info.status is not SessionStatus.INITIALIZING:
            return False
        assert info.pid is not None
        try:
            pidfd = os.pidfd_open(info.pid)
        except ProcessLookupError:
            return False
        try:
            # The pidfd pins the process: checked again, the entry is still this process's start,
            # and the signal cannot reach another process that reused the pid.
            again = self._registry.get(session_id)
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

    def list_sessions(self) -> list[SessionInfo]:
        """Every live session's entry, read from the registry in one round trip, oldest first."""
        entries = self._registry.snapshot()
        return sorted(entries.values(), key=lambda info: info.created_at)

    def get_session_info(self, session_id: str) -> SessionInfo:
        """
        The session's registry entry.

        Raises:
            SessionNotFoundError: no live session has this id.
            RegistryUnavailableError: the registry did not answer within its wait bound.
        """
        _check_session_id(session_id)
        info = self._registry.get(session_id)
        if info is None:
            raise self._not_found(session_id)
        assert isinstance(info, SessionInfo)
        return info

    def get_session_pid(self, session_id: str) -> int:
        """
        The pid of the session's SessionSupervisor.

        Raises:
            SessionNotFoundError: no live session has this id.
        """
        pid = self.get_session_info(session_id).pid
        if pid is None:
            raise self._not_found(session_id)
        return pid

    def session_supervisor(self, session_id: str) -> SupervisorHandle:
        """A handle for the session's SessionSupervisor (its children, live pids, start_child...)."""
        _check_session_id(session_id)
        try:
            return self._manager.child_supervisor(session_id)
        except ChildNotFoundError as error:
            raise self._not_found(session_id) from error

    @property
    def supervisor(self) -> SupervisorHandle:
        """The SessionManager's own supervisor handle (``which_children`` lists sessions by id)."""
        return self._manager

    def _not_found(self, session_id: str) -> SessionNotFoundError:
        return SessionNotFoundError(f"no live session with id {session_id!r}", session_id)


def _check_session_id(session_id: object) -> None:
    if not isinstance(session_id, str):
        raise TypeError(
            f"'session_id' must be a str (got {session_id!r} that is a {type(session_id).__name__})"
        )


class Application:
    """
    The session tree: a supervisor with the registry server and the SessionManager.

    ``with Application() as app:`` starts the tree and stops it on exit. It never outlives the process
    that started it. :meth:`child_spec` puts the same tree inside a tree of your own.

    Args:
        max_restarts, max_seconds: the SessionManager's restart intensity (for sessions created with
            restart TRANSIENT or PERMANENT).
        registry_timeout: how long registry readers wait for a restarting registry server.
        logging_config: as for :meth:`Supervisor.start`.
    """

    def __init__(
        self,
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        registry_timeout: float = 5.0,
        logging_config: dict[str, Any] | None = None,
    ) -> None:
        self._manager_spec = SupervisorSpec(children=(), max_restarts=max_restarts, max_seconds=max_seconds)
        self._registry_timeout = registry_timeout
        self._logging_config = logging_config
        self._handle: SupervisorHandle | None = None

    @staticmethod
    def children(manager_spec: SupervisorSpec | None = None) -> list[ChildSpec]:
        """The Application supervisor's children: the registry server, then the SessionManager."""
        return [
            ChildSpec(REGISTRY_ID, run_registry_server, start_mode=StartMode.NOTIFY),
            ChildSpec(
                SESSION_MANAGER_ID,
                run_session_manager,
                args=(manager_spec or SupervisorSpec(children=()),),
                type=ChildType.SUPERVISOR,
                start_mode=StartMode.NOTIFY,
            ),
        ]

    @classmethod
    def child_spec(
        cls, id: str = "application", *, max_restarts: int = 3, max_seconds: float = 5.0
    ) -> ChildSpec:
        """The Application as a nested supervisor child of your own tree; see :meth:`session_manager_in`."""
        manager_spec = SupervisorSpec(children=(), max_restarts=max_restarts, max_seconds=max_seconds)
        return ChildSpec.supervisor(
            id, cls.children(manager_spec), Strategy.ONE_FOR_ONE, restart=Restart.PERMANENT
        )

    @staticmethod
    def session_manager_in(
        handle: SupervisorHandle, child_id: str = "application", registry_timeout: float = 5.0
    ) -> SessionManagerHandle:
        """The SessionManager of the Application child *child_id* of the supervisor *handle*."""
        nested = handle.child_supervisor(child_id)
        return SessionManagerHandle(nested._address, nested.path, nested._authkey, registry_timeout)

    def start(self) -> Application:
        """Start the tree; blocks until the registry and the SessionManager are ready."""
        if self._handle is not None:
            raise RuntimeError("this Application was already started")
        self._handle = Supervisor.start(
            self.children(self._manager_spec), Strategy.ONE_FOR_ONE, logging_config=self._logging_config
        )
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop every session and the tree; idempotent."""
        if self._handle is not None:
            self._handle.stop(timeout)

    @property
    def supervisor(self) -> SupervisorHandle:
        """The Application's root supervisor handle."""
        if self._handle is None:
            raise RuntimeError("the Application is not started")
        return self._handle

    @property
    def session_manager(self) -> SessionManagerHandle:
        """A client handle for the SessionManager (picklable; usable from any process)."""
        handle = self.supervisor
        return SessionManagerHandle(handle._address, handle.path, handle._authkey, self._registry_timeout)

    def __enter__(self) -> Application:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
