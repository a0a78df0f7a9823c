"""
The client of a supervisor process: one request per call over its control socket.

Handles have no public constructor: :meth:`Supervisor.start` returns the root's, and
:meth:`SupervisorHandle.child_supervisor` a nested supervisor's. A handle pickles (as the address, the
key it holds and the tree path) and reconnects lazily in the process that unpickles it; each thread uses a
connection of its own, so one handle is safe to share between threads. This module imports values,
the wire encoding and the transport only, never the engine: unpickling a handle in a worker loads no
supervisor machinery.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any, Protocol

from . import _wire
from ._addresses import socket_path
from ._deadlines import deadline_from, remaining
from ._keys import Key
from ._protocol import (
    KIND_SIMPLE,
    ChildAddress,
    ChildSupervisorOf,
    CountChildren,
    DeleteChild,
    GetChildspec,
    RestartChild,
    StartChild,
    StartSimpleChild,
    Stop,
    SupervisorKind,
    TerminateChild,
    WhichChild,
    WhichChildren,
)
from ._transport import AUTH_TIMEOUT, KeyMismatch, KeyRefused, connect
from .errors import (
    AuthenticationError,
    CallTimeout,
    HandleClosedError,
    SupervisorError,
    SupervisorGoneError,
    UnreadableRequestError,
)
from .info import ChildCounts, ChildInfo
from .messaging.client import DEFAULT_TIMEOUT
from .messaging.events import DEFAULT_BUFFER, EventStream, check_buffer
from .messaging.lookup import Scope, call_target, cast_target, whereis_target
from .messaging.ref import ServerRef
from .reasons import ExitReason
from .specs import ChildSpec

__all__ = ["RootProcess", "SupervisorHandle", "deadline_from", "remaining"]


class RootProcess(Protocol):
    """The root supervisor's process, as the handle of the process that started it sees it."""

    exit_reason: ExitReason | None

    @property
    def pid(self) -> int: ...

    def collect(self, timeout: float | None) -> bool:
        """Reap the root if it exits within *timeout*; read its exit reason. True once reaped."""

    def terminate(self) -> None:
        """SIGTERM the root (an orderly stop)."""

    def kill(self) -> None:
        """SIGKILL the root."""

    def remove(self) -> None:
        """Close the result pipe and remove the tree's private directory."""


class SupervisorHandle:
    """
    A client of one supervisor process. Returned by :meth:`Supervisor.start`; no public constructor.

    Every call is synchronous: it returns once its effect is done. By default it waits as long as
    that takes (OTP's ``infinity``); ``timeout=`` bounds the wait and raises :class:`CallTimeout`.
    Every failure is a :class:`SupervisorError`: no OS error reaches the caller.
    """

    def __init__(
        self,
        address: str,
        authkey: Key | bytes,
        path: str,
        root: RootProcess | None = None,
        kind: str | None = None,
        scope: str = "",
    ) -> None:
        self._address = address
        self._authkey = authkey if isinstance(authkey, Key) else Key(authkey)
        self._path = path
        self._scope = scope  # the path whose key this handle holds: "" for the tree key
        self._root = root
        self._kind = kind  # one of _protocol's KIND_*; None: asked of the supervisor when needed
        self._closed = False
        self._local = threading.local()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (SupervisorHandle, (self._address, self._authkey, self._path, None, self._kind, self._scope))

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running"
        pid = f" pid {self._root.pid}" if self._root is not None else ""
        return f"<SupervisorHandle {self._path}{pid}: {state}>"

    def __enter__(self) -> SupervisorHandle:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def path(self) -> str:
        """This supervisor's place in its tree: ``root``, then child ids joined by ``/``."""
        return self._path

    @property
    def pid(self) -> int | None:
        """The root supervisor's pid, for the handle that started it; None for other handles."""
        return None if self._root is None else self._root.pid

    @property
    def stopped(self) -> bool:
        """True once this handle stopped the supervisor, or (for the starter's handle) once it exited."""
        if self._closed:
            return True
        return self._root is not None and self._root.collect(0)

    @property
    def exit_reason(self) -> ExitReason | None:
        """The root's exit reason once it has exited, for the starter's handle; else None."""
        if self._root is None or not self._root.collect(0):
            return None
        return self._root.exit_reason

    def wait(self, timeout: float | None = None) -> ExitReason | None:
        """
        Wait until the root supervisor exits on its own; return its exit reason (None at *timeout*).

        Blocks until the root has exited and been reaped, or *timeout* seconds (None: as long as it
        takes). A tree exits on its own when it gives up after too many restarts, or when its
        significant children end (``auto_shutdown``): the reason is then *shutdown*. Does not stop
        the tree; :meth:`stop` (or leaving the ``with`` block) still releases the handle.

        Raises:
            TypeError, ValueError: *timeout* is not seconds >= 0 or None.
            RuntimeError: this handle did not start the tree (only :meth:`Supervisor.start`'s does).
        """
        deadline = deadline_from("timeout", timeout)
        if self._root is None:
            raise RuntimeError(
                f"wait: only the handle returned by Supervisor.start can wait for its root to exit "
                f"(this is a handle of supervisor {self._path})"
            )
        if not self._root.collect(remaining(deadline)):
            return None
        return self._root.exit_reason

    # ------------------------------------------------------------------ the admin API

    def start_child(self, *args: Any, timeout: float | None = None) -> int | None:
        """
        Start a new child; return its pid (None if it declined to start). Nothing is stored if it fails.

        ``start_child(spec)`` with a :class:`ChildSpec`: a static supervisor adds it as the last
        child; a DynamicSupervisor starts it with its ``extra_arguments`` prepended to the spec's
        args, and ignores its id (its children are known by pid). ``start_child(*extra_args)`` on a
        simple_one_for_one supervisor: a child from its template, called with the template's args
        followed by *extra_args*.

        Blocks until the child is ready (or has failed). A DynamicSupervisor starts children at once:
        this call does not wait on another child's start.

        Raises:
            TypeError: not one ChildSpec (except on simple_one_for_one), or what it sends cannot be
                pickled (its start function, args or kwargs): the message names the child and its
                start function, and nothing is sent.
            UnreadableRequestError: the supervisor could not unpickle the spec (say, a function or
                class of ``__main__`` defined under ``if __name__ == "__main__":``, which the
                supervisor's copy of ``__main__`` lacks); nothing was started.
            DuplicateChildError: a child with this id exists (its ``pid`` says whether it runs).
            MaxChildrenError: a DynamicSupervisor that has ``max_children`` children already.
            StartError: the child failed to start; ``__cause__`` is its exception, if it raised.
            CallTimeout: no reply within *timeout* seconds; the child may still be started.
        """
        deadline_from("timeout", timeout)
        if self._supervisor_kind(timeout) == KIND_SIMPLE:
            result: int | None = self._call("start_child", StartSimpleChild(tuple(args)), timeout)
            return result
        if len(args) != 1 or not isinstance(args[0], ChildSpec):
            got = args[0] if len(args) == 1 else args
            raise TypeError(
                f"'spec' must be a ChildSpec, the only argument (got {got!r} that is a "
                f"{type(got).__name__}); extra args are for simple_one_for_one supervisors"
            )
        result = self._call("start_child", StartChild(args[0]), timeout)
        return result

    def terminate_child(self, child_id: str | int, *, timeout: float | None = None) -> None:
        """
        Stop the child *child_id* as its shutdown spec says; keep its spec unless it is temporary.

        A simple_one_for_one supervisor or a DynamicSupervisor takes the child's pid instead of an id,
        and forgets the child once stopped. Blocks until its process has exited and been reaped.
        Idempotent: a stopped child is fine (simple_one_for_one: any dead pid). It also ends a
        pending restart loop of that child (by its old pid, for children known by pid).

        Raises:
            TypeError: *child_id* is neither a str nor an int; nothing is sent.
            ChildNotFoundError: no child has this id; for a pid: no child has it (simple_one_for_one:
                and it is alive), or the supervisor knows its children by id.
            SimpleOneForOneError: an id given to a simple_one_for_one supervisor.
            CallTimeout: no reply within *timeout* seconds; the child is still being stopped.
        """
        self._call("terminate_child", TerminateChild(_check_child(child_id)), timeout)

    def restart_child(self, child_id: str, *, timeout: float | None = None) -> int | None:
        """
        Start the stopped child *child_id* again; return its pid. Does not count toward intensity.

        Raises:
            ChildNotFoundError, ChildRunningError, ChildRestartingError: as the names say (a
                DynamicSupervisor's children have no ids: not found).
            SimpleOneForOneError: the supervisor is simple_one_for_one.
            StartError: it failed to start; the spec stays, not running.
            CallTimeout: no reply within *timeout* seconds; the child may still be started.
        """
        result: int | None = self._call("restart_child", RestartChild(_check_id(child_id)), timeout)
        return result

    def delete_child(self, child_id: str, *, timeout: float | None = None) -> None:
        """
        Forget the stopped child *child_id*.

        Raises:
            ChildNotFoundError, ChildRunningError, ChildRestartingError: as the names say (a
                DynamicSupervisor's children have no ids: not found).
            SimpleOneForOneError: the supervisor is simple_one_for_one.
            CallTimeout: no reply within *timeout* seconds.
        """
        self._call("delete_child", DeleteChild(_check_id(child_id)), timeout)

    def which_children(self, *, timeout: float | None = None) -> list[ChildInfo]:
        """
        Every child: id, pid (None unless running), type, restart, restarting, start info, and its
        state (:class:`~supervisor.info.ChildState`), restarts, last exit, start time and, in BACKOFF,
        the time of its next start. In start order for a static supervisor; in no defined order, with
        id None, for simple_one_for_one and DynamicSupervisor. Answered even while the supervisor
        waits on a child.
        """
        result: list[ChildInfo] = self._call("which_children", WhichChildren(), timeout)
        return result

    def which_child(self, child_id: str | int, *, timeout: float | None = None) -> ChildInfo:
        """
        The child *child_id* as :meth:`which_children` reports it, without listing the others
        (OTP 28's ``which_child``).

        Answered at once, even while the supervisor is starting or stopping a child; blocks only for
        the round trip (at most *timeout* seconds).

        A simple_one_for_one supervisor or a DynamicSupervisor takes the child's pid instead.

        Raises:
            TypeError: *child_id* is neither a str nor an int; nothing is sent.
            ChildNotFoundError: no child has this id (never had, or was deleted or forgotten), or
                this pid (a supervisor whose children have ids takes no pid).
            SimpleOneForOneError: an id given to a simple_one_for_one supervisor.
            CallTimeout: no reply within *timeout* seconds.
        """
        result: ChildInfo = self._call("which_child", WhichChild(_check_child(child_id)), timeout)
        return result

    def get_childspec(self, child_id: str | int, *, timeout: float | None = None) -> ChildSpec:
        """
        The spec of the child *child_id*, with every field filled in (OTP's ``get_childspec``).

        A defaulted field comes back with its value (``shutdown`` 5.0 for a worker,
        ``Shutdown.INFINITY`` for a supervisor, and so on). A temporary child that has started comes
        back with empty ``args`` and ``kwargs``: its supervisor does not keep them. Answered at once,
        as :meth:`which_child`, and by pid for a simple_one_for_one supervisor or a DynamicSupervisor
        (the spec then has the id it was given: the template's, or the one passed to ``start_child``).

        Raises:
            TypeError: *child_id* is neither a str nor an int; nothing is sent.
            ChildNotFoundError: no child has this id, or this pid.
            SimpleOneForOneError: an id given to a simple_one_for_one supervisor.
            CallTimeout: no reply within *timeout* seconds.
        """
        result: ChildSpec = self._call("get_childspec", GetChildspec(_check_child(child_id)), timeout)
        return result

    def count_children(self, *, timeout: float | None = None) -> ChildCounts:
        """
        Counts of specs (simple_one_for_one: 1, the template), active (RUNNING: ready, not
        stopping, not restarting) children, supervisors and workers.
        """
        result: ChildCounts = self._call("count_children", CountChildren(), timeout)
        return result

    def child_supervisor(self, child_id: str | int, *, timeout: float | None = None) -> SupervisorHandle:
        """
        A handle for the nested supervisor *child_id* (built with ``ChildSpec.supervisor`` or
        ``ChildSpec.dynamic_supervisor``); its pid instead of an id for a supervisor whose children
        are known by pid (simple_one_for_one, DynamicSupervisor).

        Its address is stable across the nested supervisor's restarts, so the handle stays usable.
        Blocks for one call.

        Raises:
            TypeError: *child_id* is neither a str nor an int; nothing is sent.
            ChildNotFoundError: no such child, or it is not a nested supervisor.
            ChildNotRunningError: it is not running now.
        """
        child = _check_child(child_id)
        if isinstance(child, int):
            located: tuple[str, str] = self._call("child_supervisor", ChildSupervisorOf(child), timeout)
            path = f"{self._path}/{located[1]}"
            return SupervisorHandle(located[0], self._authkey, path, scope=self._scope)
        address: str = self._call("child_supervisor", ChildAddress(child), timeout)
        return SupervisorHandle(address, self._authkey, f"{self._path}/{child_id}", scope=self._scope)

    def events(
        self, subtree: bool = False, *, buffer: int = DEFAULT_BUFFER, timeout: float | None = None
    ) -> EventStream:
        """
        A stream of this supervisor's child events (:class:`~supervisor.Event`), subscribed when it
        returns: no event after that is missed, and none before it is in the stream.

        Events are ``started``, ``restarted``, ``exited`` and ``intensity_reached``, each
        supervisor's in the order it saw them. The supervisor pushes them (no polling) and never
        waits for the stream: it keeps at most *buffer* events for a stream that does not keep up,
        then drops them, and once the stream has caught up it sends a ``lost`` event with their
        count. With *subtree*, the stream also follows every nested supervisor below: those running
        now, and each that becomes ready later, from the moment the stream reads its ``started`` (or
        ``restarted``) event; what such a supervisor does before that moment (the start of its own
        children, during its start) is not in the stream. Supervisors of sessions are followed too
        when this handle holds the tree's key.

        Blocks for the connection and the supervisor's answer (at most *timeout* seconds, if given),
        and with *subtree*, for each nested supervisor's. See :class:`~supervisor.EventStream`.

        Raises:
            TypeError, ValueError: *buffer* is not an int from 1 to 1,000,000, or *timeout* not
                seconds >= 0 or None; nothing is sent.
            HandleClosedError: this handle stopped the supervisor.
            SupervisorGoneError: the supervisor is not running.
            AuthenticationError: it refused this handle's key.
            CallTimeout: it did not answer within *timeout* seconds.
        """
        check_buffer(buffer)
        deadline_from("timeout", timeout)
        if self._closed:
            raise HandleClosedError(f"events: supervisor {self._path} was stopped through this handle")
        return EventStream(
            self._address,
            self._authkey,
            self._path,
            subtree=bool(subtree),
            buffer=buffer,
            timeout=timeout,
            tree_key=self._authkey if not self._scope else None,
        )

    def _supervisor_kind(self, timeout: float | None) -> str:
        """Which kind of supervisor this is (``_protocol.KIND_*``): known, or asked once."""
        if self._kind is None:
            self._kind = self._call("start_child", SupervisorKind(), timeout)
        return self._kind

    def _with_key(self, authkey: Key) -> SupervisorHandle:
        """A handle for the same supervisor holding *authkey* instead (a session's own key)."""
        return SupervisorHandle(self._address, authkey, self._path, None, self._kind, scope=self._path)

    # ------------------------------------------------------------------ servers

    def whereis(self, name_or_path: str) -> ServerRef | None:
        """
        The running server registered as *name_or_path*, or else at that id path below this
        supervisor (``"api/handler"``); None if none runs now. Reads the tree's entries; sends nothing.

        Raises:
            TypeError: *name_or_path* is not a non-empty str.
            AuthenticationError: the server is in a session this handle's key does not open.
        """
        return whereis_target(self._servers(), name_or_path)

    def call(
        self,
        name_or_path: str,
        request: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        *,
        wait_for_restart: bool = True,
    ) -> Any:
        """
        Call the server *name_or_path* names (see :meth:`whereis`), resolved now, and return its
        reply. If it is being restarted, waits for the restarted process within *timeout*
        (``wait_for_restart=False``: ``NoProc`` at once). See :func:`supervisor.call` for the errors.
        """
        return call_target(self._servers(), name_or_path, request, timeout, wait_for_restart)

    def cast(self, name_or_path: str, message: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Cast *message* to the server *name_or_path* names if one runs now (else nothing happens)."""
        cast_target(self._servers(), name_or_path, message, timeout)

    def _servers(self, names: bool = True) -> Scope:
        """Where this handle looks servers up: by name first (*names*), else by id path below it."""
        return Scope(
            os.path.dirname(self._address),
            self._authkey,
            self._scope,
            self._path,
            self._parent_of,
            names,
        )

    def _parent_of(self, path: str, scope: str) -> SupervisorHandle | None:
        """
        A handle for the supervisor of the child at *path* (a child of *scope*, "" for the tree's),
        walked to from the top of that scope; None if this handle's key cannot open it or it is not
        there. Blocks for one call per level.
        """
        private_dir = os.path.dirname(self._address)
        top = scope or path.split("/", 1)[0]
        if not path.startswith(f"{top}/"):
            return None
        if scope == self._scope:
            key = self._authkey
        elif not self._scope:
            key = self._authkey.derive(scope)  # the tree key opens every session
        else:
            return None
        handle = SupervisorHandle(socket_path(private_dir, top), key, top, scope=scope)
        try:
            for child_id in path[len(top) + 1 :].split("/")[:-1]:
                handle = handle.child_supervisor(child_id, timeout=AUTH_TIMEOUT)
        except SupervisorError:
            return None
        return handle

    def stop(self, timeout: float | None = None) -> None:
        """
        Stop the supervisor: its children in reverse start order, each by its shutdown spec.

        Blocks until the supervisor has exited (the starter's handle also reaps it and removes the
        tree's private directory). With *timeout*, after that many seconds the root is SIGKILLed,
        and every process below it dies with it. If the supervisor cannot be asked (its handshake
        does not complete), the starter's handle sends the root SIGTERM instead, which stops it the
        same way. Idempotent; a dead supervisor is fine.

        Raises:
            TypeError, ValueError: *timeout* is not a number of seconds >= 0 or None.
        """
        deadline = deadline_from("timeout", timeout)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._drop_connection()
        try:
            conn = connect(self._address, self._authkey, _bounded(AUTH_TIMEOUT, deadline))
        except OSError:
            conn = None  # gone, or it does not answer: nothing to ask
        asked = False
        if conn is not None:
            try:
                _wire.send(conn, Stop())
                asked = True
                if deadline is None or _poll_until(conn, deadline):
                    _wire.recv(conn)
            except (EOFError, OSError):
                pass
            finally:
                conn.close()
        if self._root is not None:
            if not asked and not self._root.collect(0):
                # Alive but not answering (its loop is held, or it is stopped): SIGTERM is the same
                # orderly stop, taken the next time its loop turns.
                self._root.terminate()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._root.collect(remaining):
                self._root.kill()
                self._root.collect(None)
            self._root.remove()

    # ------------------------------------------------------------------ plumbing

    def _connection(self, call: str, timeout: float | None, deadline: float | None) -> Any:
        """This thread's connection, made (and authenticated) if there is none; raises SupervisorError."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            # Between calls the supervisor sends nothing: a readable connection was closed by a
            # supervisor that has since died (perhaps restarted at the same address), so reconnect.
            try:
                if not conn.poll(0):
                    return conn
            except OSError:
                pass
            self._drop_connection()
        for attempt in (1, 2):
            try:
                conn = connect(self._address, self._authkey, _bounded(AUTH_TIMEOUT, deadline))
                break
            except (FileNotFoundError, ConnectionRefusedError) as error:
                raise self._gone() from error
            except KeyRefused as error:
                raise AuthenticationError(
                    f"{call}: supervisor {self._path} refused this handle's authkey"
                ) from error
            except KeyMismatch as error:
                raise AuthenticationError(
                    f"{call}: the peer at supervisor {self._path}'s address does not hold this tree's authkey"
                ) from error
            except TimeoutError as error:
                waited = AUTH_TIMEOUT if deadline is None else timeout
                raise CallTimeout(
                    f"{call}: supervisor {self._path} did not complete the connection handshake within "
                    f"{waited} s (it is stopped or not serving); nothing was sent"
                ) from error
            except OSError as error:
                # Closed during the handshake without a refusal: it is exiting (then the second
                # try finds no listener), or it cut the handshake at its deadline, being too loaded.
                if attempt == 2:
                    raise CallTimeout(
                        f"{call}: supervisor {self._path} closed the connection twice during the "
                        "handshake (it is too loaded to complete one within its deadline); nothing was sent"
                    ) from error
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _call(self, call: str, request: Any, timeout: float | None) -> Any:
        """
        Send *request* and return its reply's value, or raise its error. Blocks until the reply, or
        *timeout* seconds. Any exception between the send and the reply (a timeout, a signal
        handler's, Ctrl-C) drops the connection, so no later call reads this call's reply.
        """
        deadline = deadline_from("timeout", timeout)
        if self._closed:
            raise HandleClosedError(f"{call}: supervisor {self._path} was stopped through this handle")
        data = self._encode(call, request)
        conn = self._connection(call, timeout, deadline)
        try:
            _wire.send_bytes(conn, data)
            if deadline is not None and not _poll_until(conn, deadline):
                raise CallTimeout(
                    f"{call}: supervisor {self._path} did not reply within {timeout} s; "
                    "the request may still complete"
                )
            status, value = _wire.recv(conn)
        except BaseException as error:
            self._drop_connection()
            if isinstance(error, (EOFError, OSError)) and not isinstance(error, SupervisorError):
                raise self._gone() from error
            raise
        if status == "error":
            raise value
        if status == "unreadable":
            raise UnreadableRequestError(
                f"{call}: supervisor {self._path} could not read the request{_about(request)}: {value}",
                value,
            )
        return value

    def _encode(self, call: str, request: Any) -> bytes:
        """*request* pickled for the supervisor, before anything is sent; raises TypeError naming it."""
        try:
            return _wire.dumps(request)
        except Exception as error:
            raise TypeError(
                f"{call}: cannot send{_about(request)} to supervisor {self._path}: it cannot be pickled "
                f"({type(error).__name__}: {error})"
            ) from error

    def _gone(self) -> SupervisorGoneError:
        reason = None
        if self._root is not None and self._root.collect(1.0):
            reason = self._root.exit_reason
        detail = "" if reason is None else f" (exit reason: {reason.describe()})"
        return SupervisorGoneError(f"supervisor {self._path} is gone{detail}", reason)


def _poll_until(conn: Any, deadline: float) -> bool:
    """Wait until *conn* is readable (True) or *deadline* passes (False), in waits the OS accepts."""
    while True:
        left = deadline - time.monotonic()
        if conn.poll(min(max(0.0, left), _MAX_POLL)):
            return True
        if left <= _MAX_POLL:
            return False


_MAX_POLL = 86400.0  # poll(2) takes at most ~24.8 days; longer timeouts wait in steps


def _bounded(seconds: float, deadline: float | None) -> float:
    """*seconds*, or less if *deadline* (monotonic) comes sooner; never negative."""
    if deadline is None:
        return seconds
    return max(0.0, min(seconds, deadline - time.monotonic()))


def _about(request: Any) -> str:
    """Words naming a StartChild's child and start function (" for child 'w' (start function m.f)")."""
    if not isinstance(request, StartChild):
        return ""
    start = request.spec.start
    name = getattr(start, "__qualname__", None) or getattr(start, "__name__", None)
    module = getattr(start, "__module__", None)
    function = f"{module}.{name}" if module and name else repr(start)
    return f" for child {request.spec.id!r} (start function {function})"


def _check_child(child_id: object) -> str | int:
    """An id (str) or a pid (int, not bool), as given; TypeError naming the argument otherwise."""
    if isinstance(child_id, int) and not isinstance(child_id, bool):
        return child_id
    if not isinstance(child_id, str):
        raise TypeError(
            f"'child_id' must be a str (an id) or an int (a pid) (got {child_id!r} "
            f"that is a {type(child_id).__name__})"
        )
    return child_id


def _check_id(child_id: object) -> str:
    if not isinstance(child_id, str):
        raise TypeError(f"'child_id' must be a str (got {child_id!r} that is a {type(child_id).__name__})")
    return child_id
