"""
Session-layer benchmark: speed and scale of Application → SessionManager → SessionSupervisor.

Run from the repository root::

    python benchmarks/bench_sessions.py [--quick] [--sessions N] [--threads T] [--reps R]

Every row is a median (and p90) over repeated runs, next to a baseline measured in the same run,
interleaved with it (baseline, target, baseline, target...) so drift hits both alike:

- ``create_session`` with one worker, until it returns. Baseline: two bare
  ``multiprocess.get_context("fork")`` Process starts, each with a ready handshake over a Pipe, in
  sequence (a SessionSupervisor and its worker are two such starts). Target <= 1.5x.
- ``terminate_session``. Baseline: SIGTERM and reap two bare processes in sequence. No target.
- ``get_session_info``. Baseline: ``get`` on a raw SyncManager dict holding a real SessionInfo.
  Target <= 1.2x.
- kill -> gone: from SIGKILL of a session's SessionSupervisor until a reader looping on
  ``get_session_info`` gets SessionNotFoundError. Baseline: a bare parent process that waits on its
  child's pidfd, reaps it and deletes its entry from a raw Manager dict, seen by a reader doing the
  same loop (get, then the same marker check on a miss as the registry client). Target <= 2x.
- create_session latency at 10, 100 and N live sessions, each sample a create (followed by an
  untimed terminate, so the count stays put), as a ratio to the 10-session figure. Target <= 1.2x.
- floor: the same three levels for a bare parent process (forked from this one before the
  Application starts, so with a similar heap) that forks a child which forks a grandchild, each
  with a ready handshake (the shape of a session), while that many such pairs live. No target: it
  shows what the kernel and the machine add per fork as the number of processes grows.
- scale: N live sessions (default 1000) of one worker each, created from T threads: total time
  (target <= 4.5 s), per-call latency, USS per process (sum over the tree / count, and per kind),
  ``list_sessions`` with N live sessions (baseline: one raw Manager dict ``copy()`` of N real entries,
  target <= 1.5x), ``create_session``, ``get_session_info`` and kill -> gone at that scale (same
  baselines and targets as above), and the time to stop the whole Application (target <= 2 s).

The busy read loops of the kill -> gone rows exist only in this benchmark, to time the removal as a
reader sees it. The Application's logging is turned down to CRITICAL so the kills do not flood the
output (the log lines come after the registry delete, so the timed path is unchanged).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import multiprocess
import psutil
from _bench_stats import fmt_time, median, p90  # the script's own directory is on sys.path
from multiprocess.connection import wait
from multiprocess.managers import SyncManager

from supervisor import Application, ChildSpec, SessionNotFoundError, _linux
from supervisor.sessions.registry import RegistryLink

_fork = multiprocess.get_context("fork")
MARKER = "\x00published"  # the registry's published-marker key, mirrored in the baseline dict
QUIET = {"version": 1, "incremental": True, "loggers": {"supervisor": {"level": "CRITICAL"}}}


# ---------------------------------------------------------------------------------------- children


def session_worker() -> None:
    """The one worker of every benchmark session: idle until stopped."""
    while True:
        signal.pause()


def _bare_ready(conn: Any) -> None:
    """A baseline process: say ready over the pipe, then idle until signalled."""
    conn.send("ready")
    while True:
        signal.pause()


def _bare_idle() -> None:
    while True:
        signal.pause()


def _baseline_parent(conn: Any, table: Any) -> None:
    """
    The kill -> gone baseline's 'manager': for each (key, value) received, fork a child, publish the
    entry, send the child's pid, wait on its pidfd, reap it and delete the entry.
    """
    table.get(MARKER)  # open this process's connection to the manager before timing anything
    while True:
        message = conn.recv()
        if message is None:
            return
        key, value = message
        child = _fork.Process(target=_bare_idle)
        child.start()
        table[key] = value
        pidfd = os.pidfd_open(child.pid)
        conn.send(child.pid)
        wait([pidfd])
        child.join()
        os.close(pidfd)
        table.pop(key, None)


# ---------------------------------------------------------------------------------------- stats


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        name: str,
        samples: list[float],
        base: list[float] | None = None,
        target: float | None = None,
        absolute_target: float | None = None,
        failed: bool = False,
        note: str = "",
    ) -> None:
        med = median(samples) if samples else None
        ninety = p90(samples) if samples else None
        base_med = median(base) if base else None
        ratio = med / base_med if med is not None and base_med else None
        verdict = ""
        if target is not None and ratio is not None:
            verdict = "PASS" if ratio <= target else "FAIL"
        if absolute_target is not None and med is not None:
            verdict = "PASS" if med <= absolute_target else "FAIL"
        if failed:
            verdict = "FAIL"
        target_text = (
            f"<= {target}x"
            if target is not None
            else f"<= {absolute_target:g} s"
            if absolute_target is not None
            else "-"
        )
        self.rows.append(
            (
                name,
                str(len(samples)),
                fmt_time(med),
                fmt_time(ninety),
                fmt_time(base_med),
                f"{ratio:.2f}x" if ratio is not None else "-",
                target_text,
                verdict or "-",
                note,
            )
        )
        print(
            f"  {name}: median {fmt_time(med)}, p90 {fmt_time(ninety)}"
            + (f", baseline {fmt_time(base_med)}, ratio {ratio:.2f}x" if ratio is not None else "")
            + (f" [{verdict}]" if verdict else ""),
            flush=True,
        )

    def print(self) -> None:
        header = ("row", "n", "median", "p90", "baseline", "ratio", "target", "result", "note")
        widths = [max(len(r[i]) for r in [header, *self.rows]) for i in range(len(header))]
        line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
        print(line)
        print("-+-".join("-" * w for w in widths))
        for row in self.rows:
            print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def interleave(
    reps: int, base: Callable[[], float], target: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """Run baseline and target alternately *reps* times each (after one warm-up of each)."""
    base(), target()
    bs, ts = [], []
    for _ in range(reps):
        bs.append(base())
        ts.append(target())
    return bs, ts


def per_call(fn: Callable[[], Any], batch: int) -> float:
    """Mean seconds per call over a batch of *batch* calls."""
    t0 = time.perf_counter()
    for _ in range(batch):
        fn()
    return (time.perf_counter() - t0) / batch


# ---------------------------------------------------------------------------------------- pieces


def bare_pair_start() -> tuple[float, list[Any]]:
    """Two bare fork starts with a ready handshake, in sequence; returns (seconds, processes)."""
    procs = []
    t0 = time.perf_counter()
    for _ in range(2):
        reader, writer = _fork.Pipe(duplex=False)
        proc = _fork.Process(target=_bare_ready, args=(writer,))
        proc.start()
        writer.close()
        if reader.recv() != "ready":
            raise RuntimeError("baseline child did not say ready")
        reader.close()
        procs.append(proc)
    return time.perf_counter() - t0, procs


def bare_pair_terminate(procs: list[Any]) -> float:
    """SIGTERM and reap the processes one after another (the worker first, as a session does)."""
    t0 = time.perf_counter()
    for proc in reversed(procs):
        proc.terminate()
        proc.join()
    return time.perf_counter() - t0


def new_session(sm: Any) -> str:
    return sm.create_session(children=[ChildSpec("w", session_worker)])


def kill_until_gone(sm: Any, sid: str) -> float:
    pid = sm.get_session_pid(sid)
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        try:
            sm.get_session_info(sid)
        except SessionNotFoundError:
            return time.perf_counter() - t0


class BaselineKill:
    """The kill -> gone baseline: a bare parent process with a pidfd wait and a raw dict delete."""

    def __init__(self, table: Any, value: Any) -> None:
        self.table = table
        self.value = value
        self.conn, child_conn = _fork.Pipe()
        self.parent = _fork.Process(target=_baseline_parent, args=(child_conn, table))
        self.parent.start()
        child_conn.close()
        self.n = 0

    def once(self) -> float:
        self.n += 1
        key = f"kill-{self.n}"
        self.conn.send((key, self.value))
        pid = self.conn.recv()
        table = self.table
        if table.get(key) is None:
            raise RuntimeError("baseline entry missing before the kill")
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            value = table.get(key)
            if value is None and MARKER in table:  # the registry client's own check on a miss
                return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.send(None)
        self.parent.join(10)


def create_latency(sm: Any, reps: int) -> list[float]:
    """*reps* create_session latencies at the current number of live sessions (each terminated after)."""
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        sid = new_session(sm)
        samples.append(time.perf_counter() - t0)
        sm.terminate_session(sid)
    return samples


def _floor_child(writer: int) -> None:
    """A floor pair: this child forks an idle grandchild, which says ready; both idle until killed."""
    os.setpgid(0, 0)
    if os.fork() == 0:
        os.write(writer, b"r")
    while True:
        signal.pause()


def _floor_parent(conn: Any) -> None:
    """The floor's bare parent: ('grow', n) forks n more pairs; ('time', k) times k pair starts."""
    _linux.set_child_subreaper()  # the killed pairs' grandchildren are reaped here
    groups: list[int] = []

    def pair() -> tuple[float, int]:
        reader, writer = os.pipe()
        t0 = time.perf_counter()
        child = _fork.Process(target=_floor_child, args=(writer,))
        child.start()
        os.read(reader, 1)
        elapsed = time.perf_counter() - t0
        os.close(reader)
        os.close(writer)
        return elapsed, int(child.pid)

    while (message := conn.recv()) is not None:
        kind, n = message
        if kind == "grow":
            groups.extend(pair()[1] for _ in range(n))
            conn.send(None)
        else:
            samples = []
            for _ in range(n):
                elapsed, pid = pair()
                samples.append(elapsed)
                os.killpg(pid, signal.SIGKILL)
            conn.send(samples)
    for pid in groups:
        os.killpg(pid, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def uss(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).memory_full_info().uss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def mib(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


# ---------------------------------------------------------------------------------------- phases


def micro(table: Table, sm: Any, raw: Any, raw_spawn: Any, reps: int) -> Any:
    """create / terminate / get / kill->gone with few live sessions. Returns a real SessionInfo."""
    print(f"micro benchmarks ({reps} reps each)", flush=True)

    # create_session vs two bare starts; terminate_session vs two bare SIGTERM+reap.
    create_b, create_t, term_b, term_t = [], [], [], []
    for i in range(reps + 1):
        seconds, procs = bare_pair_start()
        t_term = bare_pair_terminate(procs)
        t0 = time.perf_counter()
        sid = new_session(sm)
        t_create = time.perf_counter() - t0
        t0 = time.perf_counter()
        sm.terminate_session(sid)
        t_sterm = time.perf_counter() - t0
        if i:  # the first round is a warm-up
            create_b.append(seconds)
            create_t.append(t_create)
            term_b.append(t_term)
            term_t.append(t_sterm)
    table.add(
        "create_session (1 worker)",
        create_t,
        create_b,
        target=1.5,
        note="baseline: 2 bare fork starts + ready handshake, in sequence",
    )
    table.add(
        "terminate_session", term_t, term_b, note="baseline: SIGTERM + reap of 2 bare processes, in sequence"
    )

    # get_session_info vs a raw SyncManager dict get of the same value.
    sid = new_session(sm)
    info = sm.get_session_info(sid)
    raw[sid] = info
    raw_spawn[sid] = info
    # A raw link to the registry server: the same server and request, without the API.
    own = RegistryLink.open(sm._registry.address, sm._registry.authkey, time.monotonic() + 10)
    batch = 50
    base, spawn_base, own_base, target = [], [], [], []
    for i in range(reps + 1):
        samples = (
            per_call(lambda: raw.get(sid), batch),
            per_call(lambda: raw_spawn.get(sid), batch),
            per_call(lambda: own.call("lookup", (sid,), time.monotonic() + 10), batch),
            per_call(lambda: sm.get_session_info(sid), batch),
        )
        if i:
            for xs, x in zip((base, spawn_base, own_base, target), samples, strict=True):
                xs.append(x)
    table.add(
        "get_session_info",
        target,
        base,
        target=1.2,
        note=f"baseline: raw SyncManager dict get (fork-started server); sample = mean of {batch} calls",
    )
    table.add("  same, vs a spawn-started SyncManager", target, spawn_base, note="informative")
    table.add(
        "  same, vs a raw lookup on a registry link",
        target,
        own_base,
        note="informative: the API's own overhead",
    )
    own.close()
    sm.terminate_session(sid)

    # kill -> gone vs a bare parent's pidfd wait + dict delete.
    baseline = BaselineKill(raw, info)
    sids = [new_session(sm) for _ in range(reps + 1)]
    it = iter(sids)
    base, target = interleave(reps, baseline.once, lambda: kill_until_gone(sm, next(it)))
    baseline.close()
    table.add(
        "kill -> entry gone",
        target,
        base,
        target=2.0,
        note="baseline: bare parent pidfd wait + reap + Manager dict delete",
    )
    return info


def levels(table: Table, sm: Any, reps: int) -> list[float]:
    """create_session latency at 10 and 100 live sessions; returns the 10-session samples."""
    print(f"create_session latency by live sessions ({reps} reps each)", flush=True)
    live: list[str] = []
    figures: dict[int, list[float]] = {}
    for level in (10, 100):
        with ThreadPoolExecutor(4) as pool:
            live.extend(pool.map(lambda _: new_session(sm), range(level - len(live))))
        figures[level] = create_latency(sm, reps)
    table.add(
        "create_session (10 live, sequential)", figures[10], note="each followed by an untimed terminate"
    )
    table.add(
        "create_session (100 live, sequential)",
        figures[100],
        figures[10],
        target=1.2,
        note="baseline: the 10-live figure",
    )
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(sm.terminate_session, live))
    return figures[10]


def floor(table: Table, conn: Any, n: int, reps: int) -> None:
    """The bare parent's fork-pair latency at 10, 100 and *n* live pairs (see the module docstring)."""
    print(f"floor: a bare parent forking child+grandchild pairs, at 10, 100 and {n} live pairs", flush=True)
    live = 0
    figures: dict[int, list[float]] = {}
    for level in sorted({10, 100, n}):
        conn.send(("grow", level - live))
        conn.recv()
        live = level
        conn.send(("time", reps))
        figures[level] = conn.recv()
    for level, samples in figures.items():
        table.add(
            f"floor: bare fork pair ({level} live pairs)",
            samples,
            figures[10] if level != 10 else None,
            note="informative: the kernel's and machine's share" + ("" if level != 10 else "; the base"),
        )


def scale(
    table: Table, app: Any, sm: Any, raw: Any, n: int, threads: int, reps: int, sample: Any, at10: list[float]
) -> dict[str, Any]:
    print(f"scale: {n} sessions of one worker, created from {threads} threads", flush=True)
    errors: list[BaseException] = []
    latencies: list[float] = []
    lock = threading.Lock()

    def make(_: int) -> str | None:
        t0 = time.perf_counter()
        try:
            sid = new_session(sm)
        except BaseException as error:
            with lock:
                errors.append(error)
            return None
        with lock:
            latencies.append(time.perf_counter() - t0)
        return sid

    progress: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    sids: list[str] = []
    with ThreadPoolExecutor(threads) as pool:
        for i, sid in enumerate(pool.map(make, range(n)), 1):
            if sid is not None:
                sids.append(sid)
            if i % max(1, n // 5) == 0:
                progress.append((i, time.perf_counter() - t0))
    total = time.perf_counter() - t0
    print(
        f"  created {len(sids)}/{n} in {total:.2f} s; cumulative: "
        + ", ".join(f"{i} @ {s:.1f}s" for i, s in progress),
        flush=True,
    )
    if errors:
        print(f"  !! {len(errors)} create_session calls failed; first: {errors[0]!r}", flush=True)
    table.add(
        f"create {n} sessions ({threads} threads)",
        [total],
        absolute_target=4.5,
        note=f"one run; {len(errors)} calls FAILED" if errors else "one run",
        failed=bool(errors),
    )
    table.add("  create_session latency under load", latencies, note=f"per call, {threads} in flight")

    if errors:
        print("  !! the scale phase stops here: the failures above are the finding", flush=True)
        return {"pids": set(), "memory": {}, "uss_total": 0, "sm_fds": None, "live_entries": len(sids)}

    # The tree, by kind.
    root = psutil.Process(app.supervisor.pid)
    infos = sm.list_sessions()
    session_pids = {i.pid for i in infos}
    worker_pids = {c.pid for i in infos for c in i.children}
    tree = [root, *root.children(recursive=True)]
    manager = next(p for p in root.children() if any(c.pid in session_pids for c in p.children()))
    kinds: dict[str, list[int]] = {"root": [root.pid], "session_manager": [manager.pid]}
    for p in root.children():
        if p.pid != manager.pid:
            kinds.setdefault("registry", []).append(p.pid)
    kinds["session_supervisor"] = sorted(session_pids)
    kinds["worker"] = sorted(worker_pids)
    other = {p.pid for p in tree} - {pid for pids in kinds.values() for pid in pids}
    if other:
        kinds["other"] = sorted(other)
    t_mem = time.perf_counter()
    memory: dict[str, list[int]] = {}
    for kind, pids in kinds.items():
        memory[kind] = [u for u in (uss(pid) for pid in pids) if u is not None]
    t_mem = time.perf_counter() - t_mem
    all_uss = [u for us in memory.values() for u in us]
    facts = {
        "processes": len(tree),
        "uss_total": sum(all_uss),
        "sm_fds": manager.num_fds(),
        "sm_threads": manager.num_threads(),
        "live_entries": len(infos),
    }
    print(
        f"  memory (USS, read in {t_mem:.1f} s): {len(all_uss)} processes, total {mib(sum(all_uss))}, "
        f"per process {mib(sum(all_uss) / max(1, len(all_uss)))}",
        flush=True,
    )
    for kind, us in memory.items():
        print(
            f"    {kind:<20} n={len(us):<5} per process: median {mib(median(us)) if us else '-'}, "
            f"mean {mib(sum(us) / len(us)) if us else '-'}, sum {mib(sum(us))}",
            flush=True,
        )
    print(f"  SessionManager: {facts['sm_fds']} open fds, {facts['sm_threads']} threads", flush=True)
    facts["memory"] = {k: (len(v), sum(v)) for k, v in memory.items()}

    # list_sessions with n live sessions vs one raw copy of n real entries.
    raw.clear()
    raw.update({i.session_id: i for i in infos})
    raw[MARKER] = True
    base, target = interleave(reps, lambda: per_call(raw.copy, 1), lambda: per_call(sm.list_sessions, 1))
    table.add(
        f"list_sessions ({len(infos)} live)",
        target,
        base,
        target=1.5,
        note=f"baseline: raw Manager dict copy() of {len(infos)} entries",
    )

    # The single-session rows again, with n live sessions.
    sid = sids[len(sids) // 2]
    base, target = interleave(
        reps,
        lambda: per_call(lambda: raw.get(sid), 50),
        lambda: per_call(lambda: sm.get_session_info(sid), 50),
    )
    table.add(
        f"get_session_info ({len(infos)} live)",
        target,
        base,
        target=1.2,
        note="baseline: raw Manager dict get",
    )

    few = max(3, reps // 3)
    create_b, create_t = [], []
    extra: list[str] = []
    for _ in range(few):
        seconds, procs = bare_pair_start()
        bare_pair_terminate(procs)
        create_b.append(seconds)
        t0 = time.perf_counter()
        extra.append(new_session(sm))
        create_t.append(time.perf_counter() - t0)
    table.add(
        f"create_session ({len(infos)} live)",
        create_t,
        create_b,
        target=1.5,
        note="one at a time; baseline as above",
    )
    table.add(
        f"create_session ({len(infos) + len(extra)} live, sequential)",
        create_latency(sm, reps),
        at10,
        target=1.2,
        note="baseline: the 10-live figure",
    )

    baseline = BaselineKill(raw, sample)
    victims = iter(extra + sids[:few])
    base, target = interleave(few, baseline.once, lambda: kill_until_gone(sm, next(victims)))
    baseline.close()
    table.add(f"kill -> entry gone ({len(infos)} live)", target, base, target=2.0, note="baseline as above")

    facts["pids"] = {p.pid for p in tree}
    return facts


def stop_app(table: Table, app: Any, pids: set[int], live: int) -> None:
    t0 = time.perf_counter()
    app.stop()
    seconds = time.perf_counter() - t0
    table.add(f"stop Application ({live} sessions)", [seconds], absolute_target=2.0, note="one run")
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    print(f"  stopped in {seconds:.2f} s; processes of the tree left behind: {len(left)}", flush=True)


# ---------------------------------------------------------------------------------------- main


def raise_fd_limit() -> tuple[tuple[int, int], tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = before
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return before, resource.getrlimit(resource.RLIMIT_NOFILE)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="12 reps, 200 sessions")
    parser.add_argument("--sessions", type=int, default=None, help="live sessions for the scale rows")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating the sessions")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of each micro benchmark")
    args = parser.parse_args()
    n = args.sessions if args.sessions is not None else (200 if args.quick else 1000)
    reps = args.reps if args.reps is not None else (12 if args.quick else 40)

    before, after = raise_fd_limit()
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs", flush=True)
    print(
        f"RLIMIT_NOFILE {before} -> {after}; RLIMIT_NPROC {nproc}; "
        f"pid_max {Path('/proc/sys/kernel/pid_max').read_text().strip()}",
        flush=True,
    )
    print(f"command: python benchmarks/bench_sessions.py {' '.join(sys.argv[1:])}".rstrip(), flush=True)
    started = time.perf_counter()

    # The raw Manager is forked now, while this process has no other thread.
    raw_manager = SyncManager()
    raw_manager.start()
    raw = raw_manager.dict()
    raw[MARKER] = True
    # The registry server runs in a spawn-rooted tree; a spawn-started SyncManager is a second baseline.
    spawn_manager = SyncManager(ctx=multiprocess.get_context("spawn"))
    spawn_manager.start()
    raw_spawn = spawn_manager.dict()

    # The floor's bare parent is forked now too, with this process's heap and no thread.
    floor_conn, floor_end = _fork.Pipe()
    floor_parent = _fork.Process(target=_floor_parent, args=(floor_end,))
    floor_parent.start()
    floor_end.close()

    table = Table()
    gc.collect()
    app = Application(logging_config=QUIET).start()
    try:
        sm = app.session_manager
        sample = micro(table, sm, raw, raw_spawn, reps)
        at10 = levels(table, sm, reps)
        facts = scale(table, app, sm, raw, n, args.threads, reps, sample, at10)
        try:
            live = len(sm.list_sessions())
        except Exception as error:
            print(f"  !! list_sessions failed: {error!r}", flush=True)
            live = -1
        stop_app(table, app, facts["pids"], live)
        floor(table, floor_conn, n, reps)
    finally:
        app.stop()
        floor_conn.send(None)
        floor_parent.join()
        raw_manager.shutdown()
        spawn_manager.shutdown()

    print()
    print(
        f"results ({time.perf_counter() - started:.0f} s in all; medians and p90 over the runs; "
        "ratio = median / baseline median):"
    )
    table.print()
    mem = facts["memory"]
    total_n = sum(c for c, _ in mem.values())
    print()
    print(
        f"memory at {facts['live_entries']} sessions (USS): {total_n} processes, "
        f"{mib(facts['uss_total'])} in all, {mib(facts['uss_total'] / max(1, total_n))} per process; "
        + "; ".join(f"{k} {mib(s / c) if c else '-'} x{c}" for k, (c, s) in mem.items())
    )
    print(f"SessionManager at {facts['live_entries']} sessions: {facts['sm_fds']} open fds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
