"""
Child processes from fork to reap: forking, the report pipe, process groups, adopted orphans.

A child is forked (``multiprocess``'s fork context) from the single-threaded supervisor with SIGTERM
and SIGCHLD blocked across the fork, given a pidfd (its death sentinel: it fires at once, even if the
child forked grandchildren holding inherited pipes) and the read end of a report pipe on which it
says ``ready``, ``ignore`` and, last, ``exit`` with its reason. Reaping kills what is left of the
child's process group, joins it and reads its reason. The supervisor is a child subreaper, so orphans
of its workers are reparented to it; :func:`reap_adopted` collects them and kills their groups.

Which descriptors a child keeps: its own only (standard streams, its report pipe's write end, its
``multiprocess`` parent sentinel, the logging handlers' files; see ``_child._close_inherited_fds``).
The rest it inherited (the supervisor's sockets, epoll set and signal pipe, every sibling's pidfd and
report pipe) it closes first thing, one close_range(2) per gap whatever their number: no process
holds another's pidfd or reads another's reports, and a child's count does not grow with its
siblings'. The supervisor's own descriptors are close-on-exec too. The fork Popen opens no pipes of
its own (``multiprocess``'s opens two per child and keeps two ends in the parent): a supervisor holds
two descriptors per child, its pidfd and its report pipe's read end. This module decides nothing
about restarts.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

import multiprocess
from multiprocess.context import ForkProcess
from multiprocess.popen_fork import Popen

from .. import _child, _titles, _wire
from .._addresses import TreeContext
from .._entrypoint import EntryPoint
from ..reasons import ExitReason
from ..specs import ChildSpec

__all__ = ["ChildProcess", "fork", "kill", "raise_open_files_limit", "reap_adopted"]

_fork = multiprocess.get_context("fork")


class _PidfdPopen(Popen):  # type: ignore[misc]
    """
    ``multiprocess``'s fork Popen with pidfds for sentinels instead of its two pipes per child.

    The stock one opens two pipes per child and keeps both ends' parent halves (and a finalizer for
    them) until the Process object goes: four descriptors per child in all with the pidfd and report
    pipe, which every later fork copies, and a finalizer each child then frees, page by page. Here
    the supervisor's sentinel is the child's pidfd (readable once it exits, whatever it forked; the
    supervisor closes it at the reap), and the child's ``parent_process().sentinel`` is a pidfd of
    its supervisor, readable once the supervisor exits.
    """

    def _launch(self, process_obj: Any) -> None:
        code = 1
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                code = process_obj._bootstrap(parent_sentinel=_pidfd_or_none(parent))
            finally:
                os._exit(code)
        try:
            self.sentinel = os.pidfd_open(self.pid)
        except OSError:
            kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise


def _pidfd_or_none(pid: int) -> int | None:
    # None if the supervisor is gone already: the child then exits at its parent-death check.
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


class _Process(ForkProcess):  # type: ignore[misc]
    @staticmethod
    def _Popen(process_obj: Any) -> _PidfdPopen:
        return _PidfdPopen(process_obj)


def kill(pid: int | None, sig: int) -> None:
    """Send *sig* to *pid*, if there is one and it still exists."""
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class ChildProcess:
    """
    One forked child, from its fork until it is reaped.

    ``report`` is None once the pipe was closed (EOF, or after the reap). ``reported`` is the exit
    reason the child sent, ``declined`` is set if it declined to start (``ignore``), ``ready_info`` is
    what it passed to ``notify_ready``.
    """

    __slots__ = ("declined", "pidfd", "process", "ready_info", "report", "reported")

    def __init__(self, process: Any, pidfd: int, report: Any) -> None:
        self.process = process
        self.pidfd = pidfd
        self.report = report
        self.reported: ExitReason | None = None
        self.declined = False
        self.ready_info: Any = None

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def fds(self) -> tuple[Any, ...]:
        """What a job waits on for this child: its pidfd, and its report pipe while open."""
        return (self.pidfd,) if self.report is None else (self.pidfd, self.report)

    def drain(self, unwatch: Callable[[Any], None]) -> set[str]:
        """Read the child's pending report messages; return the kinds read ('ready', 'exit', 'ignore')."""
        kinds: set[str] = set()
        report = self.report
        while report is not None:
            try:
                if not report.poll(0):
                    break
                frame = _wire.recv_frame(report)
            except (EOFError, OSError):
                self.close_report(unwatch)
                break
            try:
                kind, payload = _wire.loads(frame)
            except Exception as error:
                # The child checks that what it sends loads again (notify_ready's info), but a value
                # can still fail to load here (a class only the child could import). The child can
                # no longer be understood: it is killed, with this as its exit reason, and the
                # supervisor goes on.
                self.reported = ExitReason.from_exception(
                    RuntimeError(
                        f"its supervisor could not read a report from child pid {self.pid} "
                        f"({type(error).__name__}: {error}); it was killed"
                    )
                )
                kill(self.pid, signal.SIGKILL)
                self.close_report(unwatch)
                break
            if kind == "exit":
                self.reported = payload
            elif kind == "ready":
                self.ready_info = payload
            elif kind == "ignore":
                self.declined = True
            kinds.add(kind)
        return kinds

    def close_report(self, unwatch: Callable[[Any], None]) -> None:
        report = self.report
        unwatch(report)
        report.close()
        self.report = None

    def reap(self, unwatch: Callable[[Any], None]) -> ExitReason:
        """Collect the dead child: kill what is left of its process group, join it, read its reason."""
        pid = self.pid
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.join()
        exitcode = self.process.exitcode
        self.drain(unwatch)
        if self.report is not None:
            self.close_report(unwatch)
        unwatch(self.pidfd)
        os.close(self.pidfd)
        return self.reported if self.reported is not None else ExitReason.from_exitcode(exitcode)


def fork(spec: ChildSpec, context: TreeContext) -> ChildProcess:
    """
    Fork the child of *spec* at *context*; it closes every inherited descriptor but its own first thing.

    Raises:
        OSError: out of descriptors or processes; nothing is left behind.
        Exception: an :class:`EntryPoint` start that does not resolve (ImportError, AttributeError).
    """
    if isinstance(spec.start, EntryPoint):
        spec.start.resolve()  # imported here, once, rather than in every child
    reader, writer = _fork.Pipe(duplex=False)
    process = None
    try:
        # A worker's title is built here, where the pages are warm; the package's own processes
        # (entry points) title themselves.
        title = None if isinstance(spec.start, EntryPoint) else _titles.title("worker", context.shown_path)
        launch = _child.ChildLaunch(spec, writer, os.getpid(), _child.logging_fds(), context, title)
        process = _Process(target=_child.child_main, args=(launch,), name=f"supervisor:{spec.id}")
        signal.pthread_sigmask(signal.SIG_BLOCK, _child.SUPERVISED_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _child.SUPERVISED_SIGNALS)
        # The loop reaps its children itself; out of multiprocessing's list, they are not polled
        # with waitpid at every later start, nor joined at exit.
        multiprocess.process._children.discard(process)
        with contextlib.suppress(OSError):
            os.setpgid(process.pid, process.pid)  # the child does it too; whoever is first wins
        return ChildProcess(process, process.sentinel, reader)
    except OSError:
        reader.close()
        if process is not None and process.pid is not None:
            kill(process.pid, signal.SIGKILL)
            process.join()
        raise
    finally:
        writer.close()


def reap_adopted(own: set[int]) -> None:
    """Reap orphans reparented to this subreaper, leaving the pids in *own* (the supervisor's children)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in own:
            return
        # An adopted worker that led a process group (its own supervisor was killed): kill what
        # is left of its group before reaping it, while its pid cannot be reused yet.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.si_pid, signal.SIGKILL)
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return


def raise_open_files_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: a supervisor holds 2 descriptors per child."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
