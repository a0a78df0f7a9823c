"""
Messaging costs (GenServer, call, cast), each against a bare baseline measured in the same run.

Run from the repository root::

    python benchmarks/bench_messaging.py [--quick] [--rows ROW ...]

Rows:

call
    ``call(ref, SMALL, timeout=5.0)`` to a GenServer whose ``handle_call`` returns the request, one
    round trip per sample. Baseline: two processes ping-ponging ``conn.send_bytes(pickle.dumps(obj))``
    / ``pickle.loads(conn.recv_bytes())`` over a raw ``multiprocess`` Pipe (the C pickler on both
    sides). Target: ratio <= 1.3.
manager
    The same call as a method of a registered class through a ``multiprocess`` Manager proxy. Here
    *med* is the Manager's and *base med* is ours (measured alongside), so the ratio is manager/ours.
    Target: ratio >= 5 (ours at least five times faster).
cast
    Casts per second from one caller: batches of casts, each batch closed by one call (served after
    every cast of the batch, so the batch is timed until the server has handled them all). Baseline:
    raw Pipe sends of the same message (pickled per send) from this process to one that reads and
    unpickles them, each batch closed by a round trip. No target: a cast waits for the mailbox's
    receipt (a round trip to the server's mailbox thread), a raw send does not wait at all.
kill
    SIGKILL of a server whose ``handle_call`` sleeps, until a caller thread blocked in ``call`` gets
    ``ServerDown`` (from the kill to the exception). Baseline: a thread blocked in a bare pidfd wait
    (``os.pidfd_open`` + ``select.poll``) on a forked process that is SIGKILLed, from the kill to the
    poll's return. Target: ratio <= 2.
threads_N, procs_N (N = 1, 4, 16)
    Aggregate calls per second of N concurrent callers (threads of this process, or processes forked
    from it), each calling the same server in a loop for a fixed window; the handler returns at once.
    Baseline: the same callers ping-ponging the same message with one bare single-threaded process
    that serves all of them over raw Pipes (``select.poll``). No target.

Subject and baseline rounds alternate, so drift in the machine's load hits both alike. Latency rows
give medians and 90th percentiles of single operations; throughput rows (cast, threads_N, procs_N)
give rates, each sample a batch or window, and their p90 is the slow end (the 90th percentile of the
time per operation, as a rate). The ratio is always ours over the baseline in time per operation
(above 1: slower), except in the manager row.

Reading the figures: a call wakes three threads in turn (the caller, the server's mailbox thread,
its main thread), the raw ping-pong two. Where a wakeup on another CPU is dear (a VM whose idle
vCPUs halt: tens of microseconds each), the windows of the throughput rows come out in two modes,
depending on whether the scheduler keeps the threads on one CPU; the raw baseline stays on one.
"""

from __future__ import annotations

import argparse
import os
import pickle
import select
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import multiprocess  # noqa: E402
from _bench_children import handshake_then_sleep  # noqa: E402
from multiprocess.managers import BaseManager  # noqa: E402

from supervisor import (  # noqa: E402
    ExitKind,
    GenServer,
    ServerDown,
    ServerRef,
    Supervisor,
    SupervisorHandle,
    call,
    cast,
)

_fork = multiprocess.get_context("fork")

SMALL = ("get", "user:1729", 42)
"""The small request every call and cast sends (and every baseline, pickled the same way)."""
SYNC = ("sync",)
CALL_TIMEOUT = 5.0
RECV_TIMEOUT = 30.0  # only reached if something hangs
CONCURRENCY = (1, 4, 16)
NOTES: list[str] = []  # anything unexpected seen while measuring, printed under the table

# The supervisors' default logging sent to /dev/null: each kill still pays for its child_terminated
# report, but the table stays readable.
LOGGING: dict[str, Any] = {
    "version": 1,
    "formatters": {"default": {"format": "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"}},
    "handlers": {"devnull": {"class": "logging.FileHandler", "filename": os.devnull, "formatter": "default"}},
    "root": {"level": "WARNING", "handlers": ["devnull"]},
}


# ---------------------------------------------------------------------------------------- servers
# At top level: the spawned root imports this script and finds them here.


class Echo(GenServer):
    """Replies with the request; counts casts."""

    def init(self) -> None:
        self.casts = 0

    def handle_call(self, request: Any, caller: Any) -> Any:
        return request

    def handle_cast(self, message: Any) -> None:
        self.casts += 1


class Sleeper(GenServer):
    """A call ``("sleep", path)`` reports its pid to the datagram socket at *path*, then sleeps."""

    def handle_call(self, request: Any, caller: Any) -> Any:
        _, path = request
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(str(os.getpid()).encode(), path)
        time.sleep(3600)
        return None


class EchoObject:
    """The Manager row's registered class."""

    def echo(self, request: Any) -> Any:
        return request


class EchoManager(BaseManager):  # type: ignore[misc]
    pass


EchoManager.register("Echo", EchoObject)


# ---------------------------------------------------------------------------------------- baselines


def raw_ping_pong_server(conn: Any) -> None:
    """The call baseline's peer: unpickle each request and pickle it back, until killed."""
    while True:
        conn.send_bytes(pickle.dumps(pickle.loads(conn.recv_bytes())))


def raw_sink(conn: Any) -> None:
    """The cast baseline's reader: unpickle every message and answer SYNC, until killed."""
    while True:
        message = pickle.loads(conn.recv_bytes())
        if message == SYNC:
            conn.send_bytes(b"ok")


def raw_poll_server(conns: list[Any]) -> None:
    """The concurrency baseline: one thread serving every connection, echoing each request, until killed."""
    poller = select.poll()
    by_fd = {}
    for conn in conns:
        poller.register(conn.fileno(), select.POLLIN)
        by_fd[conn.fileno()] = conn
    while by_fd:
        for fd, _ in poller.poll():
            conn = by_fd[fd]
            try:
                data = conn.recv_bytes()
            except EOFError:
                poller.unregister(fd)
                del by_fd[fd]
                continue
            conn.send_bytes(pickle.dumps(pickle.loads(data)))


def _raw_round_trip(conn: Any) -> Callable[[], Any]:
    def op() -> Any:
        conn.send_bytes(pickle.dumps(SMALL))
        return pickle.loads(conn.recv_bytes())

    return op


def _our_call(ref: ServerRef) -> Callable[[], Any]:
    def op() -> Any:
        return call(ref, SMALL, timeout=CALL_TIMEOUT)

    return op


# ---------------------------------------------------------------------------------------- helpers


def _time_ops(op: Callable[[], Any], count: int) -> list[float]:
    clock = time.perf_counter
    samples = []
    for _ in range(count):
        began = clock()
        op()
        samples.append(clock() - began)
    return samples


def _alternate(
    subject: Callable[[], list[float]], baseline: Callable[[], list[float]], rounds: int, warmup: int = 1
) -> tuple[list[float], list[float]]:
    """Run *rounds* (+ *warmup*) rounds of both, swapping which goes first each round."""
    ours: list[float] = []
    base: list[float] = []
    for i in range(rounds + warmup):
        if i % 2:
            b, s = baseline(), subject()
        else:
            s, b = subject(), baseline()
        if i >= warmup:
            ours.extend(s)
            base.extend(b)
    return ours, base


def _start_tree(children: list[Any]) -> SupervisorHandle:
    return Supervisor.start(children, max_restarts=100_000, max_seconds=1.0, logging_config=LOGGING)


def _await_ref(tree: SupervisorHandle, name: str, not_pid: int | None = None) -> ServerRef:
    """The running server *name* (another process than *not_pid*), polling its entry (untimed)."""
    deadline = time.monotonic() + RECV_TIMEOUT
    while time.monotonic() < deadline:
        ref = tree.whereis(name)
        if ref is not None and ref.pid != not_pid:
            return ref
        time.sleep(0.001)
    raise RuntimeError(f"server {name!r} did not (re)start within {RECV_TIMEOUT} s")


def _stop(process: Any) -> None:
    """Kill and reap a baseline process (it shares our ends of its pipes, so it never sees EOF)."""
    process.kill()
    process.join()


def _fork_peer(target: Callable[..., None]) -> tuple[Any, Any]:
    """A forked process running *target(conn)*; returns our end of the Pipe and the process."""
    ours, theirs = _fork.Pipe()
    process = _fork.Process(target=target, args=(theirs,), daemon=True)
    process.start()
    theirs.close()
    return ours, process


# ---------------------------------------------------------------------------------------- rows


@dataclass
class Result:
    subject: list[float]
    baseline: list[float]
    rate: bool = False  # samples are seconds per operation, shown as operations per second


def bench_call(tree: SupervisorHandle, scale: float) -> Result:
    ref = _await_ref(tree, "echo")
    conn, peer = _fork_peer(raw_ping_pong_server)
    try:
        ours, raw = _our_call(ref), _raw_round_trip(conn)
        per_round = max(50, int(500 * scale))
        subject, baseline = _alternate(
            lambda: _time_ops(ours, per_round), lambda: _time_ops(raw, per_round), rounds=10
        )
    finally:
        conn.close()
        _stop(peer)
    return Result(subject, baseline)


def bench_manager(tree: SupervisorHandle, scale: float) -> Result:
    ref = _await_ref(tree, "echo")
    manager = EchoManager(ctx=_fork)
    manager.start()
    try:
        proxy = manager.Echo()
        ours = _our_call(ref)

        def via_manager() -> Any:
            return proxy.echo(SMALL)

        per_round = max(20, int(150 * scale))
        managed, subject = _alternate(
            lambda: _time_ops(via_manager, per_round), lambda: _time_ops(ours, per_round), rounds=6
        )
    finally:
        manager.shutdown()
    return Result(managed, subject)


def bench_cast(tree: SupervisorHandle, scale: float) -> Result:
    ref = _await_ref(tree, "echo")
    conn, peer = _fork_peer(raw_sink)
    batch = max(200, int(2000 * scale))

    def ours() -> list[float]:
        began = time.perf_counter()
        for _ in range(batch):
            cast(ref, SMALL, timeout=CALL_TIMEOUT)
        call(ref, SYNC, timeout=RECV_TIMEOUT)
        return [(time.perf_counter() - began) / batch]

    def raw() -> list[float]:
        began = time.perf_counter()
        for _ in range(batch):
            conn.send_bytes(pickle.dumps(SMALL))
        conn.send_bytes(pickle.dumps(SYNC))
        conn.recv_bytes()
        return [(time.perf_counter() - began) / batch]

    try:
        subject, baseline = _alternate(ours, raw, rounds=21)
    finally:
        conn.close()
        _stop(peer)
    return Result(subject, baseline, rate=True)


class _Waiter(threading.Thread):
    """Runs *wait* (which blocks until the process dies), noting when it returned and what it raised."""

    def __init__(self, wait: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.wait = wait
        self.ended = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.wait()
        except BaseException as error:
            self.error = error
        self.ended = time.perf_counter()


def _kill_server(sink: socket.socket, sink_path: str, ref: ServerRef) -> float:
    waiter = _Waiter(lambda: call(ref, ("sleep", sink_path), timeout=RECV_TIMEOUT))
    waiter.start()
    pid = int(sink.recv(64))  # the handler runs: the call has been sent and is waiting
    assert pid == ref.pid, (pid, ref)
    time.sleep(0.005)  # let the caller settle in its poll
    began = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    waiter.join(RECV_TIMEOUT)
    if waiter.is_alive():
        raise RuntimeError(f"a call to a SIGKILLed server did not return within {RECV_TIMEOUT} s")
    if not isinstance(waiter.error, ServerDown):
        raise RuntimeError(f"a call to a SIGKILLed server raised {waiter.error!r}, not ServerDown")
    reason = waiter.error.reason
    if reason is None or reason.kind is not ExitKind.KILLED:
        NOTES.append(f"kill: ServerDown with reason {reason!r}, not killed: {waiter.error}")
    return waiter.ended - began


def _kill_bare() -> float:
    reader, writer = _fork.Pipe(duplex=False)
    process = _fork.Process(target=handshake_then_sleep, args=(writer,), daemon=True)
    process.start()
    writer.close()
    reader.recv()
    reader.close()
    pidfd = os.pidfd_open(process.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    try:
        waiter = _Waiter(poller.poll)
        waiter.start()
        time.sleep(0.005)  # let the waiter settle in its poll
        began = time.perf_counter()
        os.kill(process.pid, signal.SIGKILL)
        waiter.join(RECV_TIMEOUT)
        process.join()
    finally:
        os.close(pidfd)
    return waiter.ended - began


def bench_kill(tree: SupervisorHandle, scale: float) -> Result:
    repeat = max(5, int(40 * scale))
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        sink_path = os.path.join(directory, "sink.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
            sink.bind(sink_path)
            sink.settimeout(RECV_TIMEOUT)
            ref = _await_ref(tree, "sleeper")

            def subject() -> list[float]:
                nonlocal ref
                elapsed = _kill_server(sink, sink_path, ref)
                ref = _await_ref(tree, "sleeper", not_pid=ref.pid)
                return [elapsed]

            return Result(*_alternate(subject, lambda: [_kill_bare()], rounds=repeat, warmup=2))


def caller_loop(command: Any, op: Callable[[], Any]) -> None:
    """A concurrency row's caller: for each (start, end) window received, run *op* in a loop through
    it and send back (operations done, time.monotonic() at the end); None ends it."""
    op()  # connect (and authenticate) before any window
    command.send("ready")
    while True:
        window = command.recv()
        if window is None:
            return
        start, end = window
        delay = start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        done = 0
        clock = time.monotonic
        while clock() < end:
            op()
            done += 1
        command.send((done, clock()))


class _Callers:
    """*count* callers (threads or forked processes) each running ``caller_loop`` with its own op."""

    def __init__(self, ops: list[Callable[[], Any]], processes: bool) -> None:
        self.commands = []
        self.workers: list[Any] = []
        for op in ops:
            ours, theirs = _fork.Pipe()
            if processes:
                worker: Any = _fork.Process(target=caller_loop, args=(theirs, op), daemon=True)
            else:
                worker = threading.Thread(target=caller_loop, args=(theirs, op), daemon=True)
            worker.start()
            self.commands.append(ours)
            self.workers.append(worker)
        for command in self.commands:
            if not command.poll(RECV_TIMEOUT):
                raise RuntimeError("a caller did not become ready")
            command.recv()

    def window(self, seconds: float) -> list[float]:
        """One window of *seconds*: the aggregate time per operation."""
        start = time.monotonic() + 0.02
        for command in self.commands:
            command.send((start, start + seconds))
        done, last = 0, start
        for command in self.commands:
            if not command.poll(RECV_TIMEOUT):
                raise RuntimeError("a caller did not finish its window")
            count, ended = command.recv()
            done, last = done + count, max(last, ended)
        return [(last - start) / max(done, 1)]

    def close(self) -> None:
        for command in self.commands:
            command.send(None)
        for worker in self.workers:
            worker.join(RECV_TIMEOUT)
        for command in self.commands:
            command.close()


def bench_concurrent(tree: SupervisorHandle, scale: float, count: int, processes: bool) -> Result:
    ref = _await_ref(tree, "echo")
    pipes = [_fork.Pipe() for _ in range(count)]
    server = _fork.Process(target=raw_poll_server, args=([theirs for _, theirs in pipes],), daemon=True)
    server.start()
    for _, theirs in pipes:
        theirs.close()
    seconds = max(0.05, 0.3 * scale)
    ours = _Callers([_our_call(ref) for _ in range(count)], processes)
    try:
        raw = _Callers([_raw_round_trip(mine) for mine, _ in pipes], processes)
        try:
            subject, baseline = _alternate(
                lambda: ours.window(seconds), lambda: raw.window(seconds), rounds=9
            )
        finally:
            raw.close()
    finally:
        ours.close()
        for mine, _ in pipes:
            mine.close()
        _stop(server)
    return Result(subject, baseline, rate=True)


# ---------------------------------------------------------------------------------------- table


@dataclass
class Row:
    title: str
    bench: Callable[[SupervisorHandle, float], Result]
    target: tuple[str, float] | None = None  # ("<=", 1.3): ratio at most; (">=", 5.0): at least


ROWS: dict[str, Row] = {
    "call": Row("call round trip vs raw Pipe ping-pong", bench_call, ("<=", 1.3)),
    "manager": Row("call via Manager proxy / ours", bench_manager, (">=", 5.0)),
    "cast": Row("cast throughput vs raw Pipe sends", bench_cast),
    "kill": Row("SIGKILL -> ServerDown vs bare pidfd wait", bench_kill, ("<=", 2.0)),
}


def _concurrent_row(count: int, processes: bool) -> Row:
    def bench(tree: SupervisorHandle, scale: float) -> Result:
        return bench_concurrent(tree, scale, count, processes)

    kind = "processes" if processes else "threads"
    return Row(f"calls/s, {count} {kind} vs raw server", bench)


for _processes in (False, True):
    for _count in CONCURRENCY:
        ROWS[f"{'procs' if _processes else 'threads'}_{_count}"] = _concurrent_row(_count, _processes)


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10, method="inclusive")[-1]


def _time_text(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _rate_text(seconds_per_op: float) -> str:
    rate = 1.0 / seconds_per_op
    return f"{rate / 1000:.1f} k/s" if rate >= 1000 else f"{rate:.0f} /s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a quarter of the samples")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run")
    args = parser.parse_args(argv)
    scale = 0.25 if args.quick else 1.0

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, kernel {os.uname().release}")
    print(f"command: {shlex.join(['python', *sys.argv])}")
    header = (
        f"{'row':<42} {'n':>5} {'med':>10} {'p90':>10} {'base med':>10} {'ratio':>6} {'target':>7} result"
    )
    print(header)
    print("-" * len(header), flush=True)
    failed = False
    began = time.perf_counter()
    with _start_tree([Echo.child_spec("echo"), Sleeper.child_spec("sleeper")]) as tree:
        for key in args.rows:
            row = ROWS[key]
            result = row.bench(tree, scale)
            ratio = statistics.median(result.subject) / statistics.median(result.baseline)
            show = _rate_text if result.rate else _time_text
            if row.target is None:
                target_text, verdict = "-", "info"
            else:
                op, bound = row.target
                passed = ratio <= bound if op == "<=" else ratio >= bound
                target_text, verdict = f"{op}{bound:g}x", "PASS" if passed else "FAIL"
                failed = failed or not passed
            numbers = [statistics.median(result.subject), _p90(result.subject)]
            columns = " ".join(f"{show(n):>10}" for n in numbers)
            base = show(statistics.median(result.baseline))
            print(
                f"{row.title:<42} {len(result.subject):>5} {columns} {base:>10} {ratio:6.2f} "
                f"{target_text:>7} {verdict}",
                flush=True,
            )
    print("ratio: ours / baseline, in time per operation (above 1: slower); manager row: manager / ours")
    for note in NOTES:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - began:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
