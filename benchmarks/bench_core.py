"""
Core costs of a supervision tree, each against a bare ``multiprocess`` baseline measured in the same run.

Run from the repository root::

    python benchmarks/bench_core.py [--repeat N] [--rows ROW ...]

Rows:

start
    ``Supervisor.start`` of a one_for_one supervisor with one worker, until it returns (the stop is
    not timed). Baseline: a bare spawn ``Process`` whose child says ready over a ``Pipe``. Reported,
    no target: the root is spawned on purpose (see docs/process-model.md).
start_child
    ``handle.start_child`` on a running supervisor until it returns, i.e. the child is ready
    (terminate_child and delete_child between repetitions, not timed). Baseline: a bare fork
    ``Process`` with the same ready handshake over a ``Pipe``. Target: ratio <= 1.2.
restart
    SIGKILL of a worker until the benchmark receives the replacement's ready report (the child sends
    its pid and ``time.monotonic()`` on a datagram socket when it runs). Baseline: this process waits
    on the killed child's sentinel (``multiprocess.connection.wait``), joins it and starts a new fork
    ``Process`` running the same child. Target: ratio <= 1.5.
restart_silent_1, restart_silent_5
    The restart row's subject with 1 (or 5) silent client connections open: connected to the
    supervisor's socket, sending nothing (their handshakes pending; opened before each kill and
    accepted by the loop before it, closed after). Baseline: the same restart with none, alternating
    with it. Target: no change, ratio <= 1.1.

Subject and baseline repetitions alternate, so drift in the machine's load hits both alike. The
table gives medians and 90th percentiles; the ratio is median over median.
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import multiprocess  # noqa: E402
from _bench_children import handshake_then_sleep, report_ready, sleep_forever  # noqa: E402
from multiprocess.connection import wait  # noqa: E402

from supervisor import ChildSpec, Supervisor, SupervisorHandle  # noqa: E402

_spawn = multiprocess.get_context("spawn")
_fork = multiprocess.get_context("fork")

DEFAULT_REPEATS = {
    "start": 15,
    "start_child": 60,
    "restart": 60,
    "restart_silent_1": 60,
    "restart_silent_5": 60,
}
WARMUP = 2
TARGETS: dict[str, float | None] = {
    "start": None,
    "start_child": 1.2,
    "restart": 1.5,
    "restart_silent_1": 1.1,
    "restart_silent_5": 1.1,
}
RECV_TIMEOUT = 30.0  # only reached if something hangs

# The supervisors' default logging (warnings and errors, formatted), sent to /dev/null: each restart
# still pays for its child_terminated report, but the table stays readable.
LOGGING: dict[str, Any] = {
    "version": 1,
    "formatters": {"default": {"format": "%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s"}},
    "handlers": {"devnull": {"class": "logging.FileHandler", "filename": os.devnull, "formatter": "default"}},
    "root": {"level": "WARNING", "handlers": ["devnull"]},
}


def _bare_start(ctx: Any) -> tuple[float, Any]:
    """Start a bare Process of *ctx* with a ready handshake; return the time it took and the process."""
    began = time.perf_counter()
    reader, writer = ctx.Pipe(duplex=False)
    process = ctx.Process(target=handshake_then_sleep, args=(writer,))
    process.start()
    writer.close()
    reader.recv()
    elapsed = time.perf_counter() - began
    reader.close()
    return elapsed, process


def _kill_and_join(process: Any) -> None:
    process.kill()
    process.join()


def bench_start(repeat: int) -> tuple[list[float], list[float]]:
    subject: list[float] = []
    baseline: list[float] = []
    for i in range(repeat + WARMUP):
        began = time.perf_counter()
        handle = Supervisor.start([ChildSpec("w", sleep_forever)], logging_config=LOGGING)
        elapsed = time.perf_counter() - began
        handle.stop()
        base, process = _bare_start(_spawn)
        _kill_and_join(process)
        if i >= WARMUP:
            subject.append(elapsed)
            baseline.append(base)
    return subject, baseline


def bench_start_child(repeat: int) -> tuple[list[float], list[float]]:
    subject: list[float] = []
    baseline: list[float] = []
    with Supervisor.start([], logging_config=LOGGING) as handle:
        spec = ChildSpec("w", sleep_forever)
        for i in range(repeat + WARMUP):
            began = time.perf_counter()
            handle.start_child(spec)
            elapsed = time.perf_counter() - began
            handle.terminate_child("w")
            handle.delete_child("w")
            base, process = _bare_start(_fork)
            _kill_and_join(process)
            if i >= WARMUP:
                subject.append(elapsed)
                baseline.append(base)
    return subject, baseline


class _ReadySink:
    """A datagram socket the children's ready reports arrive on."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "ready.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(RECV_TIMEOUT)

    def next_pid(self) -> int:
        pid, _ = pickle.loads(self.sock.recv(512))
        return int(pid)

    def close(self) -> None:
        self.sock.close()


def _restart_subject(handle: SupervisorHandle, sink: _ReadySink, pid: int) -> tuple[float, int]:
    began = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    new_pid = sink.next_pid()
    return time.perf_counter() - began, new_pid


def _restart_baseline(sink: _ReadySink, process: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    os.kill(process.pid, signal.SIGKILL)
    wait([process.sentinel])
    process.join()
    replacement = _fork.Process(target=report_ready, args=(sink.path,))
    replacement.start()
    sink.next_pid()
    return time.perf_counter() - began, replacement


def bench_restart(repeat: int) -> tuple[list[float], list[float]]:
    subject: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        sink = _ReadySink(directory)
        try:
            spec = ChildSpec("w", report_ready, args=(sink.path,))
            # Intensity high enough that the benchmark's own kills never make the supervisor give up.
            handle = Supervisor.start(
                [spec], max_restarts=10 * (repeat + WARMUP), max_seconds=1.0, logging_config=LOGGING
            )
            with handle:
                pid = sink.next_pid()
                process = _fork.Process(target=report_ready, args=(sink.path,))
                process.start()
                sink.next_pid()
                try:
                    for i in range(repeat + WARMUP):
                        elapsed, pid = _restart_subject(handle, sink, pid)
                        base, process = _restart_baseline(sink, process)
                        if i >= WARMUP:
                            subject.append(elapsed)
                            baseline.append(base)
                finally:
                    _kill_and_join(process)
        finally:
            sink.close()
    return subject, baseline


def _silent_connections(handle: SupervisorHandle, count: int) -> list[socket.socket]:
    """*count* connections to *handle*'s supervisor that say nothing, accepted by its loop on return."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(handle._address)
        socks.append(sock)
    # Connected before this call was sent, so the loop accepted them in the turn that reads it, or before.
    handle.count_children()
    return socks


def bench_restart_silent(count: int, repeat: int) -> tuple[list[float], list[float]]:
    subject: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as directory:
        sink = _ReadySink(directory)
        try:
            spec = ChildSpec("w", report_ready, args=(sink.path,))
            handle = Supervisor.start(
                [spec], max_restarts=10 * (repeat + WARMUP), max_seconds=1.0, logging_config=LOGGING
            )
            with handle:
                pid = sink.next_pid()
                for i in range(repeat + WARMUP):
                    handle.count_children()
                    base, pid = _restart_subject(handle, sink, pid)
                    silent = _silent_connections(handle, count)
                    try:
                        elapsed, pid = _restart_subject(handle, sink, pid)
                    finally:
                        for sock in silent:
                            sock.close()
                    if i >= WARMUP:
                        subject.append(elapsed)
                        baseline.append(base)
        finally:
            sink.close()
    return subject, baseline


def _p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10, method="inclusive")[-1]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


ROWS: dict[str, tuple[str, Callable[[int], tuple[list[float], list[float]]]]] = {
    "start": ("Supervisor.start vs bare spawn Process", bench_start),
    "start_child": ("start_child vs bare fork Process", bench_start_child),
    "restart": ("restart after SIGKILL vs sentinel+fork", bench_restart),
    "restart_silent_1": ("restart, 1 silent conn vs none", lambda n: bench_restart_silent(1, n)),
    "restart_silent_5": ("restart, 5 silent conns vs none", lambda n: bench_restart_silent(5, n)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per row (default: per row)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), help="rows to run")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 2:
        parser.error("--repeat must be at least 2")

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, kernel {os.uname().release}")
    header = (
        f"{'row':<40} {'n':>4} {'med ms':>8} {'p90 ms':>8} {'base med':>8} {'base p90':>8} "
        f"{'ratio':>6} {'target':>7} result"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for key in args.rows:
        title, bench = ROWS[key]
        repeat = args.repeat if args.repeat is not None else DEFAULT_REPEATS[key]
        subject, baseline = bench(repeat)
        ratio = statistics.median(subject) / statistics.median(baseline)
        target = TARGETS[key]
        if target is None:
            target_text, result = "-", "(info)"
        else:
            target_text, result = f"<={target:.1f}x", "pass" if ratio <= target else "FAIL"
            failed = failed or ratio > target
        numbers = [statistics.median(subject), _p90(subject), statistics.median(baseline), _p90(baseline)]
        columns = " ".join(_ms(n) for n in numbers)
        print(f"{title:<40} {len(subject):>4} {columns} {ratio:6.2f} {target_text:>7} {result}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
