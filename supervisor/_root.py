"""
Starting a tree: spawn the root supervisor process and wait until its children are ready.

The root is a fresh interpreter started with :class:`subprocess.Popen` (fork and exec, every
descriptor closed but the two it is given), so it inherits no threads, locks, descriptors or memory
from the caller, which may have threads, and its environment is exactly the caller's or exactly the
``env=`` it is given. It reads the tree's key from a pipe straight into a ``bytearray`` (never from its
arguments or environment, which ``/proc`` shows), then multiprocess's spawn preparation (``sys.path``,
the working directory, the main module, so functions of the caller's ``__main__`` resolve there), then
its spec. No resource tracker or other helper process is started. Its entry point is named, not
imported: the starter never loads the engine. Everything below the root is forked from
single-threaded supervisor processes.
"""

from __future__ import annotations

import datetime
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import multiprocess
from multiprocess import spawn, util

from . import _published, _spawned, _wire
from ._addresses import make_private_dir, socket_path
from ._keys import Key
from ._protocol import KIND_DYNAMIC, KIND_SIMPLE, KIND_STATIC
from ._titles import TITLE_ROOM
from .errors import StartError, SupervisorGoneError
from .handle import SupervisorHandle
from .reasons import ExitReason
from .specs import AutoShutdown, ChildSpec, DynamicSupervisorSpec, Ignore, InitCall, Strategy, SupervisorSpec

__all__ = ["DynamicSupervisor", "Supervisor", "check_environment"]

_spawn = multiprocess.get_context("spawn")
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MAX_STEP = 86400.0  # poll(2) takes at most ~24.8 days: longer waits are taken in steps


def check_environment(env: object) -> dict[str, str] | None:
    """
    *env* as the root's whole environment (a new dict), or None to inherit the caller's.

    Does not block.

    Raises:
        TypeError: *env* is not a mapping of str to str.
        ValueError: a name is empty or holds '=' or NUL, or a value holds NUL.
    """
    if env is None:
        return None
    if not isinstance(env, Mapping):
        raise TypeError(
            f"'env' must be a mapping of str to str or None (got {env!r} that is a {type(env).__name__})"
        )
    checked: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str):
            raise TypeError(f"'env' names must be str (got {name!r} that is a {type(name).__name__})")
        if not isinstance(value, str):
            raise TypeError(
                f"'env' values must be str (got {value!r} that is a {type(value).__name__} for {name!r})"
            )
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"'env' names must be non-empty, without '=' or NUL (got {name!r})")
        if "\0" in value:
            raise ValueError(f"'env' values must not hold NUL (got {value!r} for {name!r})")
        checked[name] = value
    return checked


def _spawn_root(
    launch: bytes, key: Key, result_fd: int, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    """
    Start the root's interpreter and hand it *key*, then *launch*; returns once both are written.

    Blocks while the root reads them (a pipe holds 64 KiB). A root that dies before it has read them
    is noticed by the caller as an end of file on its result pipe.
    """
    launch_r, launch_w = os.pipe()
    try:
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); "
            f"from supervisor._engine.entry import boot_root; boot_root({launch_r}, {result_fd})"
        ).ljust(TITLE_ROOM)  # the tree's process titles are written over this command line (_titles)
        command = [spawn.get_executable(), *util._args_from_interpreter_flags(), "-c", code]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, pass_fds=(launch_r, result_fd), close_fds=True, env=env
        )
    except BaseException:
        os.close(launch_w)
        raise
    finally:
        os.close(launch_r)
    try:
        key.write_to(launch_w)
        view = memoryview(launch)
        while view:
            view = view[os.write(launch_w, view) :]
    except BrokenPipeError:
        pass  # the root died before reading it all: its result pipe says so
    except BaseException:
        process.kill()  # interrupted (Ctrl-C) before the root had its launch: leave nothing behind
        process.wait()
        raise
    finally:
        os.close(launch_w)
    return process


def _guard_missing_message() -> str:
    # In the root's bootstrap, the starter's main module is being imported as __mp_main__.
    main = next(
        (
            path
            for name in ("__mp_main__", "__main__")
            if (path := getattr(sys.modules.get(name), "__file__", None)) is not None
        ),
        "__main__",
    )
    return (
        f"a tree was started while the root supervisor was importing the main module {main}: "
        'it lacks the `if __name__ == "__main__":` guard around the code that starts the tree. '
        "The root is spawned, a new Python interpreter that imports the main module before it runs, "
        "so a script that starts a tree at import time starts it again inside the root"
    )


class StartedRoot:
    """What only the process that started a tree holds: the root's process, its result pipe, the directory."""

    def __init__(self, process: subprocess.Popen[bytes], result: Any, private_dir: str) -> None:
        self.process = process
        self.result = result
        self.private_dir = private_dir
        self.descriptor: _published.Descriptor | None = None  # set once a named tree is published
        self.exit_reason: ExitReason | None = None
        self._pidfd: int | None = os.pidfd_open(process.pid)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def collect(self, timeout: float | None) -> bool:
        """Reap the root if it exits within *timeout*; read its exit reason. True once reaped."""
        if self.process.returncode is None:
            if self._pidfd is None or not _wait_readable(self._pidfd, timeout):
                return False
            self.process.wait()
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
            self.exit_reason = ExitReason.from_exitcode(self.process.returncode)
        return True

    def terminate(self) -> None:
        """SIGTERM the root: its loop stops the tree in order, as ``stop()`` asks it to."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the root; every process below it dies with it (parent-death signals)."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        # Through the pidfd: once the root is reaped, its pid may name another process.
        if self._pidfd is not None and self.process.returncode is None:
            try:
                signal.pidfd_send_signal(self._pidfd, signum)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        if self.descriptor is not None:
            descriptor, self.descriptor = self.descriptor, None
            _published.unpublish(descriptor.file, descriptor.pid, descriptor.pid_start)
        self.result.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        shutil.rmtree(self.private_dir, ignore_errors=True)


def _wait_readable(fd: int, timeout: float | None) -> bool:
    """Wait until *fd* is readable (a pidfd: its process exited), at most *timeout* seconds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if timeout is None:
        return bool(poller.poll())
    left = timeout
    while True:
        step = min(left, _MAX_STEP)
        if poller.poll(step * 1000):
            return True
        left -= step
        if left <= 0:
            return False


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
        env: Mapping[str, str] | None = None,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        name: str | None = None,
    ) -> SupervisorHandle:
        """
        Start a root supervisor process with *children*, each started and ready before the next.

        Blocks until every child is ready. The tree lives until :meth:`SupervisorHandle.stop`, until it
        gives up after more than *max_restarts* restarts within *max_seconds*, until its significant
        children end (*auto_shutdown*), or until the calling process dies, whichever comes first; it
        never outlives the caller. :meth:`SupervisorHandle.wait` blocks until it has exited.

        Args:
            logging_config: a :func:`logging.config.dictConfig` dict applied in the root supervisor
                (and inherited below it). By default, warnings and errors go to stderr.
            env: the tree's whole environment (names and values str; names without '=' or NUL,
                values without NUL). The root is spawned with exactly this environment, so its
                ``/proc/<pid>/environ``, its ``os.environ`` and those of every process below it
                (all forked from it) hold these variables and nothing of the caller's. By default
                (None) the tree inherits the caller's whole environment, as :mod:`subprocess` does.
            auto_shutdown: whether the end of the root's significant children (``ChildSpec(...,
                significant=True)``) stops the tree, with exit reason *shutdown*; see
                :class:`AutoShutdown`. NEVER by default, and then no child may be significant.
            name: publish the tree under this name for the same user's tools (``otp-supervisor
                status --tree NAME``): a descriptor file in the user's private runtime directory,
                removed when the tree stops (see ``docs/operating.md``). None (the default)
                publishes nothing. 1 to 64 letters, digits, '_', '.' or '-'.

        Call it under ``if __name__ == "__main__":`` in a script: the root is spawned, a new Python
        interpreter that imports the main module before it runs, and a start at import time would
        run again there (it is refused, and this call raises :class:`SupervisorGoneError` saying so).

        Raises:
            TypeError, ValueError: an invalid argument, or *name* is already published by a running
                tree; nothing is started.
            PermissionError: with *name*, the runtime directory is not this user's private one.
            BadCombinationError: a significant child while *auto_shutdown* is NEVER (a
                ``ValueError``); nothing is started.
            SupervisorGoneError: the root died while starting; the message says why when it knows
                (the main module lacks the ``if __name__ == "__main__":`` guard).
            StartError: a child failed to start; the children already started were stopped in
                reverse order. Its ``__cause__`` is the child's exception with its remote traceback.
        """
        return start_tree(
            children,
            strategy,
            max_restarts,
            max_seconds,
            logging_config=logging_config,
            env=env,
            auto_shutdown=auto_shutdown,
            name=name,
        )

    @staticmethod
    def start_from(
        init: Callable[..., SupervisorSpec | Ignore],
        *args: Any,
        logging_config: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SupervisorHandle | None:
        """
        Start a root supervisor whose children come from ``init(*args)``, run in the root's process.

        OTP's ``supervisor:start_link(Module, Args)``: the root calls *init* first (with the tree's
        *env* and *logging_config* in effect), then starts the children of the
        :class:`SupervisorSpec` it returns, each ready before the next, as :meth:`start` does. Blocks
        until every child is ready, or until *init* has declined or failed. *init* and *args* must
        be picklable; *init* is best a module-level function (see :meth:`start` for functions of
        ``__main__``).

        Returns:
            The root's handle, or None if *init* returned :data:`supervisor.IGNORE`: then the root
            has exited and nothing of the tree is left running.

        Raises:
            TypeError, ValueError: *init* is not callable, *args* cannot be pickled, or another
                argument is invalid (the message names it); nothing is started.
            StartError: *init* raised (its ``__cause__`` is the exception, with the traceback from
                the root's process), returned something else than a SupervisorSpec or IGNORE
                (OTP's ``bad_return``: a ``TypeError`` naming the value is the cause), or left a
                thread running; or a child failed to start, as for :meth:`start`. Its ``child_id``
                is ``"root"`` when the init function failed. Nothing is left running.
            SupervisorGoneError: the root died while starting, as for :meth:`start`.
        """
        _refuse_start_while_importing_main()
        call = InitCall(init, args)
        return _start_root(call, logging_config, env)


def start_tree(
    children: Sequence[ChildSpec],
    strategy: Strategy,
    max_restarts: int,
    max_seconds: float,
    *,
    logging_config: dict[str, Any] | None,
    env: Mapping[str, str] | None,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    name: str | None = None,
    published_kind: str = _published.KIND_TREE,
) -> SupervisorHandle:
    """:meth:`Supervisor.start`, published (with *name*) as *published_kind*: an Application says so."""
    _refuse_start_while_importing_main()
    spec = SupervisorSpec(
        children=children,
        strategy=strategy,
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        auto_shutdown=auto_shutdown,
    )
    kind = KIND_SIMPLE if spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE else KIND_STATIC
    publication = None if name is None else (name, published_kind)
    handle = _start_root(spec, logging_config, env, kind, publication)
    assert handle is not None  # only an init function can decline
    return handle


class DynamicSupervisor:
    """
    Starts root DynamicSupervisors (Elixir's): supervisors that start with no children and take
    ``start_child(spec)`` later, one_for_one, children known by pid. Linux only.
    """

    @staticmethod
    def start(
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        max_children: int | None = None,
        extra_arguments: Sequence[Any] = (),
        *,
        logging_config: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> SupervisorHandle:
        """
        Start a root DynamicSupervisor process; return its handle. It has no child yet.

        Blocks until the supervisor listens. Its children are started by ``handle.start_child(spec)``
        (each with *extra_arguments* prepended to its args; at most *max_children* at once, None for
        no limit), each start in a lane of its own, so none waits on another's. They are known by
        pid: ``terminate_child(pid)``; their ids read None in ``which_children``. It stops them all at
        once. The tree lives until :meth:`SupervisorHandle.stop`, until it gives up after more than
        *max_restarts* restarts within *max_seconds*, or until the calling process dies.

        Args:
            logging_config, env: as for :meth:`Supervisor.start`.

        Call it under ``if __name__ == "__main__":``, as :meth:`Supervisor.start`.

        Raises:
            TypeError, ValueError: an invalid argument, named; nothing is started.
            SupervisorGoneError: the root died while starting (see :meth:`Supervisor.start`).
        """
        _refuse_start_while_importing_main()
        spec = DynamicSupervisorSpec(
            max_restarts=max_restarts,
            max_seconds=max_seconds,
            max_children=max_children,
            extra_arguments=extra_arguments,
        )
        handle = _start_root(spec, logging_config, env, KIND_DYNAMIC)
        assert handle is not None  # only an init function can decline
        return handle


def _refuse_start_while_importing_main() -> None:
    if _spawned.importing_main():
        message = _guard_missing_message()
        _spawned.report(_spawned.GUARD_MISSING, message)
        raise RuntimeError(message)


def _start_root(
    spec: SupervisorSpec | DynamicSupervisorSpec | InitCall,
    logging_config: dict[str, Any] | None,
    env: Mapping[str, str] | None,
    supervisor_kind: str | None = None,
    publication: tuple[str, str] | None = None,
) -> SupervisorHandle | None:
    """
    Spawn the root with *spec* and wait for its first word: its handle, None if its init declined.

    *supervisor_kind* is the handle's ``_protocol.KIND_*`` when known (None: asked when needed).
    *publication* is the tree's name and published kind, if it is to be published once ready.
    """
    if logging_config is not None and not isinstance(logging_config, dict):
        raise TypeError(f"'logging_config' must be a dict or None (got {logging_config!r})")
    environment = check_environment(env)
    descriptor_file = None
    if publication is not None:
        descriptor_file = _published.file_for(publication[0], create=True)
        holder = _published.read(publication[0])
        if holder is not None:
            raise ValueError(
                f"'name' {publication[0]!r} is already published by a running tree (root pid "
                f"{holder.pid}, {holder.file}); stop it or choose another name; nothing was started"
            )
    try:
        payload = _wire.dumps((spec, os.getpid(), logging_config, environment))
    except Exception as error:
        if not isinstance(spec, InitCall):
            raise
        raise TypeError(
            f"start_from: cannot send the init function {spec.init!r} and its args to the root: "
            f"they cannot be pickled ({type(error).__name__}: {error}); nothing was started"
        ) from error
    private_dir = make_private_dir()
    # Spawn's preparation first, then the spec: the spec may name functions of the caller's
    # __main__, importable in the root only once the preparation has loaded it.
    preparation = spawn.get_preparation_data("supervisor:root")
    preparation.pop("authkey", None)  # multiprocessing's key of this process: the tree needs none
    launch = pickle.dumps((preparation, private_dir, descriptor_file)) + payload
    key = Key.random()
    reader, writer = _spawn.Pipe(duplex=False)
    try:
        process = _spawn_root(launch, key, writer.fileno(), environment)
    except BaseException:
        reader.close()
        shutil.rmtree(private_dir, ignore_errors=True)
        raise
    finally:
        writer.close()
    root = StartedRoot(process, reader, private_dir)
    running = False
    try:
        kind, value = reader.recv()
        if kind == "running":  # the root's bootstrap is over: it imported __main__ and runs
            running = True
            kind, value = reader.recv()
    except (EOFError, OSError):
        kind, value = "died", None
    if kind == "ready":
        handle = SupervisorHandle(socket_path(private_dir, "root"), key, "root", root, supervisor_kind)
        if publication is not None:
            _publish(handle, root, key, publication, logging_config)
        return handle
    root.collect(None)
    root.remove()
    if kind == "ignore":
        return None
    if kind == "start_error":
        assert isinstance(value, StartError)
        raise value
    reason = root.exit_reason.describe() if root.exit_reason else "unknown"
    if kind == _spawned.GUARD_MISSING:
        raise SupervisorGoneError(f"the root supervisor died while starting: {value}", root.exit_reason)
    if not running:
        raise SupervisorGoneError(
            f"the root supervisor died while starting, before it ran (exit reason: {reason}): it is "
            "spawned, a new Python interpreter that first imports the main module; its traceback "
            'is on stderr (a script that starts a tree needs `if __name__ == "__main__":`)',
            root.exit_reason,
        )
    raise SupervisorGoneError(
        f"the root supervisor died while starting (exit reason: {reason})", root.exit_reason
    )


def _publish(
    handle: SupervisorHandle,
    root: StartedRoot,
    key: Key,
    publication: tuple[str, str],
    logging_config: dict[str, Any] | None,
) -> None:
    """Publish the ready tree of *handle*; if that fails (another starter won the name), stop it and raise."""
    name, published_kind = publication
    try:
        root.descriptor = _published.publish(
            _published.Descriptor(
                name=name,
                kind=published_kind,
                address=socket_path(root.private_dir, "root"),
                key=bytes(key.material),
                pid=root.pid,
                pid_start=_published.process_start_time(root.pid) or 0,
                started_at=datetime.datetime.now(datetime.timezone.utc),
                log_files=_published.log_files_of(logging_config),
            )
        )
    except BaseException:
        handle.stop()
        raise
