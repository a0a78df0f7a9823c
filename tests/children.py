"""
Child start functions for tests, at module level so every process can import them.

Children report what happens to them through an :class:`EventSink` (a Unix datagram socket the
test binds): ``emit(sink_path, "started", key)`` sends ``("started", key, pid)``. Tests block on the
sink with a generous timeout; they never sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from supervisor import (
    IGNORE,
    AutoShutdown,
    ChildSpec,
    Restart,
    ShutdownExit,
    StartMode,
    Strategy,
    SupervisorSpec,
    ignore_start,
    notify_ready,
)

HANG_TIMEOUT = 30.0
"""Seconds a test waits for an event before declaring a hang; only reached when something is broken."""


class EventSink:
    """The test's end: a bound datagram socket collecting ``(kind, key, pid)`` events."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.seen: list[tuple[str, Any, int]] = []

    def next(self, timeout: float = HANG_TIMEOUT) -> tuple[str, Any, int]:
        """The next event; raises TimeoutError after *timeout* seconds without one."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError as error:
            raise TimeoutError(f"no event within {timeout} s; seen so far: {self.seen}") from error
        event: tuple[str, Any, int] = pickle.loads(data)
        self.seen.append(event)
        return event

    def pending(self) -> list[tuple[str, Any, int]]:
        """The events already queued, without waiting (those of processes known to have exited)."""
        found: list[tuple[str, Any, int]] = []
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except BlockingIOError:
                    return found
                found.append(pickle.loads(data))
                self.seen.append(found[-1])
        finally:
            self.sock.setblocking(True)

    def expect(self, kind: str, key: Any = None, timeout: float = HANG_TIMEOUT) -> int:
        """Skip events until one of *kind* (and *key*, if given) arrives; return its pid."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.001, deadline - time.monotonic()))
            if event[0] == kind and (key is None or event[1] == key):
                return event[2]

    def expect_all(self, kind: str, keys: Any, timeout: float = HANG_TIMEOUT) -> dict[Any, int]:
        """Skip events until one of *kind* came for every key in *keys*, in any order; map key to pid."""
        deadline = time.monotonic() + timeout
        wanted = set(keys)
        found: dict[Any, int] = {}
        while wanted - found.keys():
            event = self.next(max(0.001, deadline - time.monotonic()))
            if event[0] == kind and event[1] in wanted:
                found[event[1]] = event[2]
        return found

    def close(self) -> None:
        self.sock.close()


def emit(path: str, kind: str, key: Any = None, block: bool = True) -> None:
    """Send ``(kind, key, pid)`` to the sink; with *block* False, drop it if the sink's queue is full."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(pickle.dumps((kind, key, os.getpid())), 0 if block else socket.MSG_DONTWAIT, path)
        except BlockingIOError:
            pass


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def report_then_sleep(path: str, key: Any) -> None:
    """
    Report ``started``, become ready, and run until stopped; report ``stopping`` from the shutdown path.

    With ``StartMode.NOTIFY``, ``started`` events arrive in start order, as the supervisor starts the
    next child only once this one is ready.
    """
    emit(path, "started", key)
    try:
        # Inside the try: the supervisor may signal as soon as the ready report is written.
        notify_ready()
        sleep_forever()
    finally:
        emit(path, "stopping", key)


def notify_then_sleep(path: str | None = None, key: Any = None) -> None:
    notify_ready()
    if path is not None:
        emit(path, "started", key)
    sleep_forever()


def return_at_once() -> None:
    """A normal exit as soon as started."""


def exit_with(code: int) -> None:
    raise SystemExit(code)


def exit_shutdown(term: Any = None) -> None:
    raise ShutdownExit(term)


class Unpicklable:
    """A term no pickler can encode, with a repr that is always the same."""

    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable does not pickle")

    def __repr__(self) -> str:
        return "Unpicklable()"


def crash(message: str = "boom") -> None:
    try:
        raise KeyError("inner cause")
    except KeyError as inner:
        raise ValueError(message) from inner


def crash_before_ready(message: str = "cannot start") -> None:
    raise RuntimeError(message)


def kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)
    sleep_forever()


def ignore_sigterm(path: str | None = None, key: Any = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if path is not None:
        emit(path, "started", key)
    sleep_forever()


def decline() -> None:
    ignore_start()


def fail_if_marker(marker: str, path: str | None = None, key: Any = None) -> None:
    """
    Fail to start while the file *marker* exists; otherwise report and run (for restart loops).

    Each refusal reports ``refused`` without blocking: a restart loop makes many, faster than a test
    reads them.
    """
    if os.path.exists(marker):
        if path is not None:
            emit(path, "refused", key, block=False)
        raise RuntimeError(f"marker {marker} present")
    notify_ready()
    if path is not None:
        emit(path, "started", key)
    sleep_forever()


def fork_grandchild_then_sleep(path: str, key: Any) -> None:
    """Fork a grandchild that reports its pid and sleeps; then report and sleep."""
    pid = os.fork()
    if pid == 0:
        emit(path, "grandchild", key)
        sleep_forever()
    emit(path, "started", key)
    sleep_forever()


def _exit_by_signal(sig: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file from SIGSEGV
    os.kill(os.getpid(), sig)
    sleep_forever()


EXITS: dict[str, Callable[[], None]] = {
    "return": lambda: None,
    "sys_exit_0": lambda: exit_with(0),
    "sys_exit_3": lambda: exit_with(3),
    "exception": crash,
    "sigkill": lambda: _exit_by_signal(signal.SIGKILL),
    "sigsegv": lambda: _exit_by_signal(signal.SIGSEGV),
    "sigterm": lambda: _exit_by_signal(signal.SIGTERM),
    "shutdown_exit": lambda: exit_shutdown("bye"),
    "shutdown_exit_unpicklable": lambda: exit_shutdown(Unpicklable()),
}
"""The ways a child can end, by name (the crash table of the restart-type tests)."""


def exit_once(how: str, marker: str, path: str, key: Any) -> None:
    """
    Report ``started``; the first time (no file *marker* yet) create it and end as ``EXITS[how]``.

    Later incarnations report and run until stopped, so a restart is seen as a second ``started``.
    """
    emit(path, "started", key)
    if os.path.exists(marker):
        sleep_forever()
    with open(marker, "x"):
        pass
    EXITS[how]()


def query_handle(handle: Any, path: str, key: Any) -> None:
    """Report ``children`` with the ids ``handle.which_children()`` gives, from this process."""
    ids = tuple(info.id for info in handle.which_children())
    emit(path, "children", (key, ids))
    sleep_forever()


def slow_to_stop(path: str, key: Any, cleanup_seconds: float) -> None:
    """Report ``started``; on SIGTERM, report ``stopping``, clean up a while, then report ``cleaned``."""
    emit(path, "started", key)
    try:
        notify_ready()
        sleep_forever()
    except ShutdownExit:
        emit(path, "stopping", key)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(cleanup_seconds)  # the child's own slow cleanup, the behaviour under test
        emit(path, "cleaned", key)
        raise


def slow_start(path: str, key: Any, seconds: float) -> None:
    """Take *seconds* to initialise (the child's own work), then behave as :func:`report_then_sleep`."""
    time.sleep(seconds)
    report_then_sleep(path, key)


def report_never_ready(path: str, key: Any) -> None:
    """Report ``started`` but never become ready (for a NOTIFY child that hangs in its start)."""
    emit(path, "started", key)
    sleep_forever()


def decline_after_first(marker: str, path: str, key: Any) -> None:
    """Run the first time (creating *marker*); decline to start (``ignore``) every later time."""
    if os.path.exists(marker):
        ignore_start()
    with open(marker, "x"):
        pass
    emit(path, "started", key)
    notify_ready()
    sleep_forever()


def close_fds_then_sleep(path: str, key: Any) -> None:
    """Report ``started``, then close every descriptor above stderr (the report pipe too) and run."""
    emit(path, "started", key)
    os.closerange(3, 65536)
    sleep_forever()


def ready_on_sigusr1(path: str, key: Any) -> None:
    """Report ``started``, become ready only when SIGUSR1 comes, report ``ready``, then sleep."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    emit(path, "started", key)
    signal.sigwait({signal.SIGUSR1})
    notify_ready()
    emit(path, "ready", key)
    sleep_forever()


def cleanup_in_finally(path: str, key: Any, cleanup_seconds: float) -> None:
    """
    Report ``started`` and run; when stopped, report ``stopping``, clean up a while in ``finally``
    (leaving SIGTERM as the package set it), then report ``cleaned``.
    """
    emit(path, "started", key)
    try:
        notify_ready()
        sleep_forever()
    finally:
        emit(path, "stopping", key)
        time.sleep(cleanup_seconds)  # the child's own slow cleanup, the behaviour under test
        emit(path, "cleaned", key)


def hold_cleanup_until_sigusr1(path: str, key: Any) -> None:
    """Report ``started`` and run; when stopped, report ``stopping`` and finish only on SIGUSR1 (bounded)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        emit(path, "started", key)  # inside the try: a stop that follows it always reports stopping
        notify_ready()
        sleep_forever()
    finally:
        emit(path, "stopping", key)
        signal.sigtimedwait({signal.SIGUSR1}, HANG_TIMEOUT)


def sleep_in_try_finally(path: str, key: Any) -> None:
    """Report ``entered`` and sleep inside ``try``; report ``cleaned`` from its ``finally``."""
    try:
        emit(path, "entered", key)
        time.sleep(HANG_TIMEOUT * 4)
    finally:
        emit(path, "cleaned", key)


def miss_first_sigterm(path: str, key: Any) -> None:
    """
    Lose the first SIGTERM, as one that lands just before a blocking call is lost until the call
    returns; then sleep inside ``try`` and report ``cleaned`` from its ``finally``.

    The first SIGTERM is taken with ``sigtimedwait`` while blocked, so no handler runs for it; only a
    SIGTERM sent after it can end the sleep.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    emit(path, "started", key)
    signal.sigtimedwait({signal.SIGTERM}, HANG_TIMEOUT)
    emit(path, "missed", key)
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        time.sleep(HANG_TIMEOUT * 4)
    finally:
        emit(path, "cleaned", key)


def grandchild_leaves_start(path: str, key: Any, how: str) -> None:
    """
    Fork a grandchild that returns (*how* ``"return"``) or raises (``"raise"``) out of this start
    function; once it has exited, report ``started`` and run.
    """
    pid = os.fork()
    if pid == 0:
        if how == "raise":
            raise ValueError("raised by the grandchild")
        return
    os.waitpid(pid, 0)
    emit(path, "started", key)
    sleep_forever()


_PR_GET_PDEATHSIG = 2


def _parent_death_signal() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_int(-1)
    if libc.prctl(_PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_GET_PDEATHSIG)")
    return value.value


def report_grandchildren_death_signals(path: str, key: Any) -> None:
    """
    Fork a grandchild from another thread, then one from the main thread; each reports
    ``pdeathsig`` with ``(where, its parent-death signal)`` and exits. Then run.
    """

    def fork_and_report(where: str) -> None:
        pid = os.fork()
        if pid == 0:
            emit(path, "pdeathsig", (where, _parent_death_signal()))
            os._exit(0)
        os.waitpid(pid, 0)

    thread = threading.Thread(target=fork_and_report, args=("thread",))
    thread.start()
    thread.join()
    fork_and_report("main")
    sleep_forever()


class Tracked:
    """An argument that reports ``freed`` (with the pid of the process that dropped it) when freed."""

    def __init__(self, path: str, key: Any) -> None:
        self.path = path
        self.key = key

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            emit(self.path, "freed", self.key, block=False)


def sleep_with(*args: Any, **kwargs: Any) -> None:
    """Take any arguments and run until stopped."""
    sleep_forever()


def end_on_sigusr1(path: str, key: Any, how: str) -> None:
    """
    Become ready, report ``started``, and run until SIGUSR1 comes; then end as ``EXITS[how]``.

    SIGUSR1 is blocked before ``started`` is reported, so a test may send it as soon as it has the pid.
    A stop by the supervisor (SIGTERM) before that ends the child with reason *shutdown*, as usual.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    notify_ready()
    emit(path, "started", key)
    # sigwaitinfo, not sigwait: glibc's sigwait resumes after a handled SIGTERM, so the handler's
    # ShutdownExit would wait for SIGUSR1; sigwaitinfo returns EINTR and Python raises it.
    signal.sigwaitinfo({signal.SIGUSR1})
    EXITS[how]()


# ------------------------------------------------------------------ start info and init functions


def notify_with_info(path: str, key: Any, info: Any) -> None:
    """Report ``started``, become ready with *info* as the start info, and run until stopped."""
    emit(path, "started", key)
    notify_ready(info)
    sleep_forever()


def _reporting_children(path: str, ids: Any) -> list[ChildSpec]:
    return [
        ChildSpec(child_id, report_then_sleep, args=(path, child_id), start_mode=StartMode.NOTIFY)
        for child_id in ids
    ]


def init_children(path: str, key: Any, ids: Any, strategy_name: str = "ONE_FOR_ONE") -> SupervisorSpec:
    """An init function: report ``init`` (with the pid it runs in), then a spec of reporting workers."""
    emit(path, "init", key)
    return SupervisorSpec(
        _reporting_children(path, ids), Strategy[strategy_name], max_restarts=5, max_seconds=30
    )


def init_children_from_file(path: str, key: Any, ids_file: str) -> Any:
    """An init function: report ``init``, then reporting workers named in *ids_file*, one a line."""
    emit(path, "init", key)
    with open(ids_file) as file:
        ids = file.read().split()
    return SupervisorSpec(_reporting_children(path, ids))


def init_ignore(path: str, key: Any) -> Any:
    """An init function that reports ``init`` and declines: ``supervisor.IGNORE``."""
    emit(path, "init", key)
    return IGNORE


def init_raises(message: str) -> Any:
    """An init function that raises ValueError(*message*)."""
    raise ValueError(message)


def init_bad_return(value: Any) -> Any:
    """An init function that returns *value*, which is not a SupervisorSpec."""
    return value


def init_starts_thread() -> Any:
    """An init function that leaves a thread running, which a supervisor's process must not have."""
    threading.Thread(target=sleep_forever, daemon=True).start()
    return SupervisorSpec([])


def notify_with_unpicklable_info() -> None:
    """Become ready with a start info that cannot be pickled."""
    notify_ready(Unpicklable())
    sleep_forever()


def _load_only_in(pid: int) -> str:
    if os.getpid() != pid:
        raise RuntimeError(f"this value loads only in pid {pid}")
    return "loaded"


class LoadsOnlyHere:
    """A value that pickles anywhere but loads only in the process that pickled it."""

    def __reduce__(self) -> Any:
        return (_load_only_in, (os.getpid(),))


def notify_with_info_only_this_process_loads() -> None:
    """Become ready with a start info that loads in this process but not in its supervisor."""
    notify_ready(LoadsOnlyHere())
    sleep_forever()


def init_significant(path: str, mode_name: str) -> SupervisorSpec:
    """An init function: a worker ``a`` and a significant transient :func:`end_on_sigusr1` child ``s``."""
    significant = ChildSpec(
        "s",
        end_on_sigusr1,
        args=(path, "s", "return"),
        restart=Restart.TRANSIENT,
        start_mode=StartMode.NOTIFY,
        significant=True,
    )
    worker = ChildSpec("a", report_then_sleep, args=(path, "a"), start_mode=StartMode.NOTIFY)
    return SupervisorSpec([worker, significant], auto_shutdown=AutoShutdown[mode_name])
