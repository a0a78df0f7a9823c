"""
Starting a tree: spawn the root supervisor process and wait until its children are ready.

The root is started with the *spawn* start method: a fresh interpreter, so it inherits no threads,
locks or descriptors from the caller, which may have threads. It is spawned without multiprocessing's
resource tracker, so no helper process outlives the tree. Its entry point is named, not imported
(:class:`~supervisor._entrypoint.EntryPoint`): the starter never loads the engine. Everything below
the root is forked from single-threaded supervisor processes.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import multiprocess
from multiprocess import popen_spawn_posix, spawn, util
from multiprocess.context import SpawnProcess, reduction, set_spawning_popen

from . import _spawned, _wire
from ._addresses import TreeContext, make_private_dir
from ._entrypoint import EntryPoint
from .errors import StartError, SupervisorGoneError
from .handle import SupervisorHandle
from .reasons import ExitReason
from .specs import ChildSpec, Strategy, SupervisorSpec

__all__ = ["Supervisor"]

_spawn = multiprocess.get_context("spawn")
_RUN_ROOT = EntryPoint("supervisor._engine.entry", "run_root")


class _RootPopen(popen_spawn_posix.Popen):  # type: ignore[misc]
    """Spawn without starting multiprocessing's resource tracker, which would outlive the tree."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        buffer = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buffer)
            # Functions of __main__ travel by value with the globals they use, as _wire sends them:
            # the root's __main__ lacks what ran under the guard (under python -c, it is empty).
            reduction.dump(process_obj, buffer, recurse=_wire.by_value(process_obj._args[0]))
        finally:
            set_spawning_popen(None)
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        try:
            cmd = _command_line(child_r, process_obj.result_fd)
            self._fds.extend([child_r, child_w])
            self.pid = util.spawnv_passfds(spawn.get_executable(), cmd, self._fds)
            self.sentinel = parent_r
            with open(parent_w, "wb", closefd=False) as pipe:
                pipe.write(buffer.getbuffer())
        finally:
            self.finalizer = util.Finalize(self, util.close_fds, (parent_r, parent_w))
            os.close(child_r)
            os.close(child_w)


def _command_line(pipe_handle: int, result_fd: int) -> list[str]:
    """multiprocess's spawn command line, entered through ``_spawned.spawn_main`` (noting *result_fd*)."""
    cmd: list[str] = spawn.get_command_line(tracker_fd=None, pipe_handle=pipe_handle)
    if "-c" in cmd:  # not in a frozen executable, which has its own bootstrap
        cmd[cmd.index("-c") + 1] = (
            "from supervisor._spawned import spawn_main; "
            f"spawn_main(pipe_handle={pipe_handle}, result_fd={result_fd})"
        )
    return cmd


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


class _RootProcess(SpawnProcess):  # type: ignore[misc]
    result_fd: int
    """The write end of the result pipe, the same number in the root (spawn passes it as is)."""

    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _RootPopen(process_obj)


class StartedRoot:
    """What only the process that started a tree holds: the root's process, its result pipe, the directory."""

    def __init__(self, process: Any, result: Any, private_dir: str) -> None:
        self.process = process
        self.result = result
        self.private_dir = private_dir
        self.exit_reason: ExitReason | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def collect(self, timeout: float | None) -> bool:
        """Reap the root if it exits within *timeout*; read its exit reason. True once reaped."""
        left = timeout
        while True:
            # A wait's timeout is bounded by the OS (~24.8 days): longer ones wait in steps.
            step = None if left is None else min(left, 86400.0)
            self.process.join(step)
            if self.process.exitcode is not None or left is None or left <= 86400.0:
                break
            left -= 86400.0
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

    def terminate(self) -> None:
        """SIGTERM the root: its loop stops the tree in order, as ``stop()`` asks it to."""
        self.process.terminate()

    def kill(self) -> None:
        """SIGKILL the root; every process below it dies with it (parent-death signals)."""
        self.process.kill()

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

        Call it under ``if __name__ == "__main__":`` in a script: the root is spawned, a new Python
        interpreter that imports the main module before it runs, and a start at import time would
        run again there (it is refused, and this call raises :class:`SupervisorGoneError` saying so).

        Raises:
            TypeError, ValueError: an invalid argument; nothing is started.
            SupervisorGoneError: the root died while starting; the message says why when it knows
                (the main module lacks the ``if __name__ == "__main__":`` guard).
            StartError: a child failed to start; the children already started were stopped in
                reverse order. Its ``__cause__`` is the child's exception with its remote traceback.
        """
        if _spawned.importing_main():
            message = _guard_missing_message()
            _spawned.report(_spawned.GUARD_MISSING, message)
            raise RuntimeError(message)
        spec = SupervisorSpec(
            children=children, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
        )
        if logging_config is not None and not isinstance(logging_config, dict):
            raise TypeError(f"'logging_config' must be a dict or None (got {logging_config!r})")
        private_dir = make_private_dir()
        tree = TreeContext(private_dir, os.urandom(32), "root")
        reader, writer = _spawn.Pipe(duplex=False)
        process = _RootProcess(
            target=_RUN_ROOT, args=(spec, tree, os.getpid(), writer, logging_config), name="supervisor:root"
        )
        process.result_fd = writer.fileno()
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
            return SupervisorHandle(tree.address, tree.authkey, tree.path, root)
        root.collect(None)
        root.remove()
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
