"""
Starting a tree, and the handle that talks to a supervisor process over its control socket.

The root supervisor is started with the *spawn* start method: a fresh interpreter, so it inherits no
threads, locks or descriptors from the caller, which may have threads. It is spawned without
multiprocessing's resource tracker, so no helper process outlives the tree. Everything below the root
is forked from single-threaded supervisor processes.

Handles have no public constructor: :meth:`Supervisor.start` returns the root's, and
:meth:`SupervisorHandle.child_supervisor` a nested supervisor's. A handle pickles (as the address, the
authkey and the tree path) and reconnects lazily in the process that unpickles it; each thread uses a
connection of its own, so one handle is safe to share between threads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.config
import os
import resource
import shutil
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import multiprocess
from multiprocess import popen_spawn_posix, spawn, util
from multiprocess.context import SpawnProcess, reduction, set_spawning_popen

from . import _wire
from ._loop import SupervisorLoop, TreeContext
from ._protocol import (
    AUTH_TIMEOUT,
    ChildAddress,
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    Stop,
    TerminateChild,
    WhichChildren,
    connect,
    make_private_dir,
)
from .errors import HandleClosedError, StartError, SupervisorGoneError
from .info import ChildCounts, ChildInfo
from .reasons import ExitReason
from .specs import ChildSpec, Strategy, SupervisorSpec

__all__ = ["Supervisor", "SupervisorHandle"]

_spawn = multiprocess.get_context("spawn")
_DEFAULT_LOG_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"


class _RootPopen(popen_spawn_posix.Popen):  # type: ignore[misc]
    """Spawn without starting multiprocessing's resource tracker, which would outlive the tree."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buffer = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buffer)
            reduction.dump(process_obj, buffer)
        finally:
            set_spawning_popen(None)
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        try:
            cmd = spawn.get_command_line(tracker_fd=None, pipe_handle=child_r)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as pipe:
                pipe.write(buffer.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
            os.close(child_r)
            os.close(child_w)


class _RootProcess(SpawnProcess):  # type: ignore[misc]
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _RootPopen(process_obj)


def _root_main(
    spec: SupervisorSpec,
    tree: TreeContext,
    starter_pid: int,
    result: Any,
    logging_config: dict[str, Any] | None,
) -> None:
    """The root supervisor process: watch the starter, serve, and report how it ended."""
    if logging_config is not None:
        logging.config.dictConfig(logging_config)
    else:
        logging.basicConfig(level=logging.WARNING, format=_DEFAULT_LOG_FORMAT)
    # A pidfd of the starter fires when it exits, whatever it forked; getppid() after opening it
    # tells whether it had already died (then the pidfd would name a reused pid).
    watch = os.pidfd_open(starter_pid)
    if os.getppid() != starter_pid:
        return
    _raise_open_files_limit()
    loop = SupervisorLoop(spec, tree, watch_fd=watch)
    loop.private_fds.append(result.fileno())
    loop.serve(lambda: result.send(("ready", os.getpid())))
    try:
        if loop.start_error is not None:
            result.send(("start_error", loop.start_error))
        else:
            result.send(("exit", loop.exit_reason))
    except OSError:
        pass  # the starter is gone or dropped its handle: nobody is left to tell
    # Nothing of the tree listens any more; a starter that died cannot remove the directory itself.
    shutil.rmtree(tree.private_dir, ignore_errors=True)


def _raise_open_files_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: a supervisor holds ~4 descriptors per child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Root:
    """What only the process that started a tree holds: the root's process, its result pipe, the directory."""

    def __init__(self, process: Any, result: Any, private_dir: str) -> None:
        self.process = process
        self.result = result
        self.private_dir = private_dir
        self.exit_reason: ExitReason | None = None

    def collect(self, timeout: float | None) -> bool:
        """Reap the root if it exits within *timeout*; read its exit reason. True once reaped."""
        self.process.join(timeout)
        if self.process.exitcode is None:
            return False
        while self.exit_reason is None:
            try:
                if not self.result.poll(0):
                    break
                kind, value = self.result.recv()
            except (EOFError, OSError):
                break
            if kind == "exit":
                self.exit_reason = value
        if self.exit_reason is None:
            self.exit_reason = ExitReason.from_exitcode(self.process.exitcode)
        return True

    def remove(self) -> None:
        self.result.close()
        shutil.rmtree(self.private_dir, ignore_errors=True)


class Supervisor:
    """Starts supervision trees. Linux only."""

    @staticmethod
    def start(
        children: Sequence[ChildSpec],
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        *,
        logging_config: dict[str, Any] | None = None,
    ) -> SupervisorHandle:
        """
        Start a root supervisor process with *children*, each started and ready before the next.

        Blocks until every child is ready. The tree lives until :meth:`SupervisorHandle.stop`, until it
        gives up after more than *max_restarts* restarts within *max_seconds*, or until the calling
        process dies, whichever comes first; it never outlives the caller.

        Args:
            logging_config: a :func:`logging.config.dictConfig` dict applied in the root supervisor
                (and inherited below it). By default, warnings and errors go to stderr.

        Raises:
            TypeError, ValueError: an invalid argument; nothing is started.
            StartError: a child failed to start; the children already started were stopped in
                reverse order. Its ``__cause__`` is the child's exception with its remote traceback.
        """
        spec = SupervisorSpec(
            children=children, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        )
        if logging_config is not None and not isinstance(logging_config, dict):
            raise TypeError(f"'logging_config' must be a dict or None (got {logging_config!r})")
        private_dir = make_private_dir()
        tree = TreeContext(private_dir, os.urandom(32), "root")
        reader, writer = _spawn.Pipe(duplex=False)
        process = _RootProcess(
            target=_root_main, args=(spec, tree, os.getpid(), writer, logging_config), name="supervisor:root"
        )
        try:
            process.start()
        except BaseException:
            shutil.rmtree(private_dir, ignore_errors=True)
            raise
        finally:
            writer.close()
        # multiprocessing joins its non-daemon children when the interpreter exits, but the root
        # exits only when its starter does: a caller that never called stop() would hang at exit.
        # Out of that list, the root sees the starter's pidfd fire and stops the tree by itself.
        multiprocess.process._children.discard(process)
        root = _Root(process, reader, private_dir)
        try:
            kind, value = reader.recv()
        except (EOFError, OSError):
            kind, value = "died", None
        if kind == "ready":
            return SupervisorHandle(tree.address, tree.authkey, tree.path, root)
        root.collect(None)
        root.remove()
        if kind == "start_error":
            assert isinstance(value, StartError)
            raise value
        raise SupervisorGoneError(
            f"the root supervisor died while starting (exit reason: "
            f"{root.exit_reason.describe() if root.exit_reason else 'unknown'})",
            root.exit_reason,
        )


class SupervisorHandle:
    """
    A client of one supervisor process. Returned by :meth:`Supervisor.start`; no public constructor.

    Every call is synchronous and has no timeout, as OTP's calls: it returns once its effect is done.
    """

    def __init__(self, address: str, authkey: bytes, path: str, root: _Root | None = None) -> None:
        self._address = address
        self._authkey = authkey
        self._path = path
        self._root = root
        self._closed = False
        self._local = threading.local()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (SupervisorHandle, (self._address, self._authkey, self._path))

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running"
        pid = f" pid {self._root.process.pid}" if self._root is not None else ""
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
        return None if self._root is None else int(self._root.process.pid)

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

    # ------------------------------------------------------------------ the admin API

    def start_child(self, spec: ChildSpec) -> int | None:
        """
        Add *spec* as the last child and start it; return its pid (None if it declined to start).

        Blocks until the child is ready (or has failed). Nothing is stored if the start fails.

        Raises:
            TypeError: *spec* is not a ChildSpec.
            DuplicateChildError: a child with this id exists (its ``pid`` says whether it runs).
            StartError: the child failed to start; ``__cause__`` is its exception, if it raised.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"'spec' must be a ChildSpec (got {spec!r} that is a {type(spec).__name__})")
        result: int | None = self._call(StartChild(spec))
        return result

    def terminate_child(self, child_id: str) -> None:
        """
        Stop the child *child_id* as its shutdown spec says; keep its spec unless it is temporary.

        Blocks until its process has exited and been reaped. Idempotent: a stopped child is fine. It
        also ends a pending restart loop of that child.

        Raises:
            ChildNotFoundError: no child has this id.
        """
        self._call(TerminateChild(_check_id(child_id)))

    def restart_child(self, child_id: str) -> int | None:
        """
        Start the stopped child *child_id* again; return its pid. Does not count toward intensity.

        Raises:
            ChildNotFoundError, ChildRunningError, ChildRestartingError: as the names say.
            StartError: it failed to start; the spec stays, not running.
        """
        result: int | None = self._call(RestartChild(_check_id(child_id)))
        return result

    def delete_child(self, child_id: str) -> None:
        """
        Forget the stopped child *child_id*.

        Raises:
            ChildNotFoundError, ChildRunningError, ChildRestartingError: as the names say.
        """
        self._call(DeleteChild(_check_id(child_id)))

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order: id, pid (None if not running), type, restart, restarting."""
        result: list[ChildInfo] = self._call(WhichChildren())
        return result

    def count_children(self) -> ChildCounts:
        """Counts of specs, active (running) children, supervisors and workers."""
        result: ChildCounts = self._call(CountChildren())
        return result

    def child_supervisor(self, child_id: str) -> SupervisorHandle:
        """
        A handle for the nested supervisor *child_id* (built with ``ChildSpec.supervisor``).

        Its address is stable across the nested supervisor's restarts, so the handle stays usable.

        Raises:
            ChildNotFoundError: no such child, or it is not a nested supervisor.
            ChildNotRunningError: it is not running now.
        """
        address: str = self._call(ChildAddress(_check_id(child_id)))
        return SupervisorHandle(address, self._authkey, f"{self._path}/{child_id}")

    def stop(self, timeout: float | None = None) -> None:
        """
        Stop the supervisor: its children in reverse start order, each by its shutdown spec.

        Blocks until the supervisor has exited (the starter's handle also reaps it and removes the
        tree's private directory). With *timeout*, after that many seconds the root is SIGKILLed,
        and every process below it dies with it. Idempotent; a dead supervisor is fine.
        """
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError(f"'timeout' must be seconds >= 0 or None (got {timeout!r})")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drop_connection()
        try:
            conn = connect(self._address, self._authkey, _bounded(AUTH_TIMEOUT, deadline))
        except OSError:
            conn = None  # already gone: nothing to ask, only to reap
        if conn is not None:
            try:
                _wire.send(conn, Stop())
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining is None or conn.poll(remaining):
                    _wire.recv(conn)
            except (EOFError, OSError):
                pass
            finally:
                conn.close()
        if self._root is not None:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._root.collect(remaining):
                self._root.process.kill()
                self._root.collect(None)
            self._root.remove()

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            # Between calls the supervisor sends nothing: a readable connection was closed by a
            # supervisor that has since died (perhaps restarted at the same address), so reconnect.
            if not conn.poll(0):
                return conn
            self._drop_connection()
        try:
            conn = connect(self._address, self._authkey)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise self._gone() from error
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def _call(self, request: Any) -> Any:
        if self._closed:
            raise HandleClosedError(f"supervisor {self._path} was stopped through this handle")
        conn = self._connection()
        try:
            _wire.send(conn, request)
            status, value = _wire.recv(conn)
        except (EOFError, OSError) as error:
            self._drop_connection()
            raise self._gone() from error
        if status == "error":
            raise value
        return value

    def _gone(self) -> SupervisorGoneError:
        reason = None
        if self._root is not None and self._root.collect(1.0):
            reason = self._root.exit_reason
        detail = "" if reason is None else f" (exit reason: {reason.describe()})"
        return SupervisorGoneError(f"supervisor {self._path} is gone{detail}", reason)


def _bounded(seconds: float, deadline: float | None) -> float:
    """*seconds*, or less if *deadline* (monotonic) comes sooner; never negative."""
    if deadline is None:
        return seconds
    return max(0.0, min(seconds, deadline - time.monotonic()))


def _check_id(child_id: object) -> str:
    if not isinstance(child_id, str):
        raise TypeError(f"'child_id' must be a str (got {child_id!r} that is a {type(child_id).__name__})")
    return child_id
