"""
Cluster benchmark: the cost of running the session layer as nodes of a cluster on etcd.

Run from the repository root (needs the ``etcd`` executable, 3.4, on PATH)::

    python benchmarks/bench_cluster.py [--quick] [--reps R] [--kill-reps K] [--ttls 3,10]
                                       [--etcd-dir-in /dev/shm]

About three minutes on 2 cores. One etcd of the benchmark's own (``tests.cluster.etcd_server.
EtcdServer``: free loopback ports, its data directory in the system's temporary directory, or in
``--etcd-dir-in``: ``/dev/shm`` takes the disk's fsyncs out), and Applications of this process as
nodes, each phase's under a key prefix of its own. Every row is a median (and p90) over repeated
runs, next to a baseline measured in the same run, interleaved with it where both are quick, so
drift hits both alike. No row has a target: the figures are for the issue to judge.

- ``create_session`` placed on another node (``node="b"`` from node a's handle), until it returns.
  Baseline: the same create on the local node (``node="a"``) plus one etcd transaction shaped as the
  claim (one create-if-absent compare, two puts of real entry sizes under a lease), timed apart and
  added, per round. Informative rows split the cost: the local create against a plain (non-cluster)
  Application's create, the etcd transaction, one range read of the nodes (placement), one
  node-to-node request (connect, mutual handshake, a request the peer refuses, its reply), and a
  remote terminate against a local one. Printed under the table: the etcd requests and WAL fsyncs
  of one remote create and terminate (etcd's own ``/metrics``), and the CPU each process spent on it.
- ``list_sessions`` from one node of 3 nodes x 300 sessions (900 entries). Baseline: one raw range
  read of the same keys (``Store.range`` of the sessions' prefix: one POST to ``/v3/kv/range``).
  Informative: the same range read, then every entry's seal opened and its SessionInfo unpickled in
  this process (the least work any reader of sealed entries does).
- A node's death: SIGKILL of a node's Application root (node c of a, b, c; it owns 10 PERMANENT and
  10 TEMPORARY sessions), until none of its entries is in node a's and node b's ``list_sessions``,
  and until its PERMANENT sessions are listed ACTIVE on a or b. Each with the lease TTL of its
  nodes (3 s and the default 10 s): the ratio is to the TTL. The kill comes at a random moment of
  the renewal period, so a lease renewed every TTL/3 expires between 2/3 TTL and the TTL after
  the kill, plus up to 0.5 s (etcd looks for expired leases twice a second). Informative baseline:
  a raw etcd lease of the same TTL, renewed every third of it by a thread of this process that
  stops renewing at the kill, until a read no longer sees its key.
- 10 nodes x 100 sessions on this machine: total creation time (8 client threads, each create on
  the node of the handle it uses), per session, and memory: the sum of RSS and of PSS
  (``/proc/PID/smaps_rollup``) over every process of each node's tree, per node and per session,
  and by kind (the sessions' own processes, the agent, root + SessionManager). Baseline: a plain
  Application with 100 sessions, created the same way before the nodes start and measured in the
  same memory snapshot (so shared pages are divided among the same processes). Printed under the
  table: the etcd requests and fsyncs per session created, the CPU per session created by kind of
  process (for the nodes and for the plain Application), and etcd's own memory. Then
  ``list_sessions`` at that scale and the time to stop the nodes.

The sessions are one idle worker each (``_bench_children.sleep_forever``: importable by name, as a
cluster needs, since any node may start a session from its options in etcd). The nodes' logging is
turned down to CRITICAL (a killed node's neighbours would log every re-placement). Everything is
torn down at the end (Applications, etcd, its data directory), and any process left below this one
is reported (exit status 1).
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _bench_children import sleep_forever  # noqa: E402
from _bench_stats import fmt_time, median, p90  # noqa: E402

from supervisor import (  # noqa: E402
    Application,
    ChildSpec,
    EtcdCluster,
    Restart,
    SessionManagerHandle,
    SessionStatus,
)
from supervisor._addresses import REGISTRY_ID, SESSION_MANAGER_ID  # noqa: E402
from supervisor._keys import Key  # noqa: E402
from supervisor.sessions.cluster import peer  # noqa: E402
from supervisor.sessions.cluster.records import ClusterKeys, NodeRecord, Sealer  # noqa: E402
from supervisor.sessions.cluster.store import Put, Store  # noqa: E402
from supervisor.testing import descendants, wait_gone  # noqa: E402
from tests.cluster.etcd_server import EtcdServer  # noqa: E402

SECRET = b"the cluster benchmark's secret, 32B."
SECRET_KEY = Key(SECRET)
QUIET = {"version": 1, "incremental": True, "loggers": {"supervisor": {"level": "CRITICAL"}}}
ETCD_TIMEOUT = 5.0  # the nodes' and this process's bound on each etcd request (2 s by default)
SPEC: dict[str, Any] = {"children": [ChildSpec("w", sleep_forever)]}
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------------------------------- stats


def fmt_mib(n: float | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def add(
        self,
        name: str,
        samples: Sequence[float],
        base: Sequence[float] | None = None,
        note: str = "",
        fmt: Callable[[float | None], str] = fmt_time,
        base_fmt: Callable[[float | None], str] | None = None,
    ) -> None:
        med = median(samples) if samples else None
        ninety = p90(samples) if len(samples) > 1 else None
        base_med = median(base) if base else None
        ratio = med / base_med if med is not None and base_med else None
        base_text = (base_fmt or fmt)(base_med)
        row = (
            name,
            str(len(samples)),
            fmt(med),
            fmt(ninety),
            base_text,
            f"{ratio:.2f}x" if ratio is not None else "-",
            note,
        )
        self.rows.append(row)
        print(
            f"  {name}: median {fmt(med)}"
            + (f", p90 {fmt(ninety)}" if ninety is not None else "")
            + (f", baseline {base_text}, ratio {ratio:.2f}x" if ratio is not None else ""),
            flush=True,
        )

    def print(self) -> None:
        header = ("row", "n", "median", "p90", "baseline", "ratio", "note")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for row in self.rows:
            print("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------- nodes


class Nodes:
    """The Applications of one phase, by name, under one prefix; every one of them is stopped at the end."""

    def __init__(self, endpoints: list[str], ttl: int, everything: list[Application]) -> None:
        self.endpoints = endpoints
        self.ttl = ttl
        self.prefix = f"/bench-{uuid.uuid4().hex[:12]}/"
        self.keys = ClusterKeys(self.prefix)
        self.apps: dict[str, Application] = {}
        self.everything = everything  # every Application of the run, for the teardown

    def config(self, name: str) -> EtcdCluster:
        return EtcdCluster(
            endpoints=self.endpoints,
            node=name,
            secret=SECRET,
            prefix=self.prefix,
            lease_ttl=self.ttl,
            etcd_timeout=ETCD_TIMEOUT,
        )

    def start(self, name: str) -> SessionManagerHandle:
        app = Application(cluster=self.config(name), logging_config=QUIET, max_restarts=1000)
        self.everything.append(app)
        app.start()
        self.apps[name] = app
        return app.session_manager

    def __getitem__(self, name: str) -> SessionManagerHandle:
        return self.apps[name].session_manager

    def stop(self, name: str) -> None:
        self.apps.pop(name).stop(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.apps):
            self.stop(name)


def tree_pids(app: Application) -> list[int]:
    root = app.supervisor.pid
    assert root is not None
    return [root, *(entry.pid for entry in descendants(root) if entry.state != "Z")]


def create_many(
    jobs: Sequence[tuple[SessionManagerHandle, str | None]], threads: int, **options: Any
) -> tuple[float, list[float], list[str], list[BaseException]]:
    """Run every (handle, node) create of *jobs* from *threads* threads: (total, latencies, ids, errors)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def make(job: tuple[SessionManagerHandle, str | None]) -> str | None:
        handle, node = job
        t0 = time.perf_counter()
        try:
            sid = handle.create_session(node=node, **SPEC, **options)
        except BaseException as error:
            with lock:
                errors.append(error)
            return None
        with lock:
            latencies.append(time.perf_counter() - t0)
        return sid

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        sids = [sid for sid in pool.map(make, jobs) if sid is not None]
    return time.perf_counter() - t0, latencies, sids, errors


def report_errors(what: str, errors: list[BaseException]) -> None:
    if errors:
        print(f"  !! {len(errors)} {what} failed; first: {errors[0]!r}", flush=True)


TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pids: Sequence[int | None]) -> float:
    """
    CPU seconds (user + system, every thread, exited ones too) the processes *pids* have used so far;
    0 for a gone one. In clock ticks (10 ms) for processes other than this one: batches, not calls.
    """
    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        if pid == os.getpid():
            total += time.process_time()
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def cpu_split(groups: dict[str, Sequence[int | None]], run: Callable[[], Any]) -> dict[str, float]:
    """CPU seconds each group of processes used while *run* ran (the groups' processes exist before)."""
    before = {name: cpu_of(pids) for name, pids in groups.items()}
    run()
    return {name: cpu_of(pids) - before[name] for name, pids in groups.items()}


def etcd_counts(url: str) -> dict[str, float]:
    """
    From etcd's /metrics: its handled KV and lease requests by method (Range, Put, Txn...), and its
    WAL fsyncs (``fsyncs``, ``fsync_seconds``: their count and total time).
    """
    text = DIRECT.open(f"{url}/metrics", timeout=5).read().decode()
    counts: dict[str, float] = {}
    pattern = re.compile(r'^grpc_server_handled_total\{[^}]*grpc_method="(\w+)",grpc_service="([\w.]+)"')
    for line in text.splitlines():
        found = pattern.match(line)
        if found and found.group(2) in ("etcdserverpb.KV", "etcdserverpb.Lease"):
            counts[found.group(1)] = counts.get(found.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("etcd_disk_wal_fsync_duration_seconds_sum "):
            counts["fsync_seconds"] = float(line.split()[1])
        elif line.startswith("etcd_disk_wal_fsync_duration_seconds_count "):
            counts["fsyncs"] = float(line.split()[1])
    return counts


def etcd_per(first: dict[str, float], second: dict[str, float], count: int) -> str:
    """The requests etcd handled per operation between two :func:`etcd_counts`, and its WAL fsyncs."""
    diff = {k: second.get(k, 0.0) - first.get(k, 0.0) for k in second}
    fsyncs, fsync_seconds = diff.pop("fsyncs", 0.0), diff.pop("fsync_seconds", 0.0)
    text = ", ".join(f"{k} {v / count:.2f}" for k, v in sorted(diff.items()) if v / count > 0.004) or "none"
    mean = fsync_seconds / fsyncs if fsyncs else 0.0
    return f"{text} (WAL fsyncs {fsyncs / count:.2f}, {fmt_time(mean)} each)"


# ---------------------------------------------------------------------------------------- phases


def create_phase(
    table: Table, nodes: Nodes, plain: SessionManagerHandle, store: Store, etcd_url: str, reps: int
) -> None:
    """create_session on another node vs the local create + one etcd transaction; its parts."""
    print(f"create_session across nodes ({reps} rounds)", flush=True)
    a = nodes["a"]
    keys = nodes.keys
    sid = a.create_session(node="b", **SPEC)
    found_entry, found_node = store.get(keys.session(sid)), store.get(keys.node("b"))
    assert found_entry is not None and found_node is not None
    entry, node_value = found_entry.value, found_node.value
    a.terminate_session(sid)
    record = Sealer(SECRET_KEY).open(found_node.key, node_value)
    assert isinstance(record, NodeRecord)
    peer_key = SECRET_KEY.derive("otp-supervisor node-to-node")
    lease = store.grant(60)
    scratch = f"/bench-txn-{uuid.uuid4().hex[:12]}/".encode()
    print(f"  payloads: session entry {len(entry)} B, node record {len(node_value)} B", flush=True)

    def claim_txn() -> float:
        key = scratch + uuid.uuid4().hex.encode()
        puts = [Put(key, entry, lease), Put(scratch + b"node", node_value, lease)]
        t0 = time.perf_counter()
        done, _ = store.transaction(absent=[key], puts=puts)
        elapsed = time.perf_counter() - t0
        assert done
        return elapsed

    def ping() -> float:
        t0 = time.perf_counter()
        now = time.monotonic()
        try:
            peer.request(
                (record.host, record.port), peer_key, "ping", (), connect_deadline=now + 5, deadline=now + 5
            )
        except ValueError:  # "no node-to-node operation 'ping'": the reply came back
            pass
        return time.perf_counter() - t0

    columns: dict[str, list[float]] = {
        k: []
        for k in ("remote", "local", "txn", "base", "plain", "ping", "range", "term_remote", "term_local")
    }
    for i in range(reps + 1):  # the first round is a warm-up
        t0 = time.perf_counter()
        remote_sid = a.create_session(node="b", **SPEC)
        remote = time.perf_counter() - t0
        t0 = time.perf_counter()
        local_sid = a.create_session(node="a", **SPEC)
        local = time.perf_counter() - t0
        txn = claim_txn()
        t0 = time.perf_counter()
        plain_sid = plain.create_session(**SPEC)
        plain_t = time.perf_counter() - t0
        ping_t = ping()
        range_t = timed(lambda: store.range(keys.nodes))
        term_remote = timed(lambda sid=remote_sid: a.terminate_session(sid))
        term_local = timed(lambda sid=local_sid: a.terminate_session(sid))
        plain.terminate_session(plain_sid)
        if i:
            for name, value in (
                ("remote", remote),
                ("local", local),
                ("txn", txn),
                ("base", local + txn),
                ("plain", plain_t),
                ("ping", ping_t),
                ("range", range_t),
                ("term_remote", term_remote),
                ("term_local", term_local),
            ):
                columns[name].append(value)
    table.add(
        "create_session on another node (a -> b)",
        columns["remote"],
        columns["base"],
        note="baseline: the same create on the local node (a -> a) + one etcd txn, per round",
    )
    table.add(
        "  create_session on the local node (a -> a)",
        columns["local"],
        columns["plain"],
        note="baseline: a plain Application's create_session",
    )
    table.add("  etcd txn (claim-shaped: 1 compare, 2 puts)", columns["txn"], note="part of the baseline")
    table.add("  plain Application create_session", columns["plain"], note="the local start alone")
    table.add("  node-to-node request (connect+handshake+reply)", columns["ping"], note="a -> b's endpoint")
    table.add("  etcd range of the nodes (placement read)", columns["range"])
    table.add(
        "terminate_session on another node (a -> b)",
        columns["term_remote"],
        columns["term_local"],
        note="baseline: terminate of a session on the local node",
    )

    # The etcd requests of one remote create (and of its terminate), from etcd's own counters; the
    # nodes' renewals (one keepalive and one node put per node per TTL/3) come in too, a little.
    batch = 20
    apps = nodes.apps
    groups: dict[str, Sequence[int | None]] = {
        "client (this process)": [os.getpid()],
        "agent a": [apps["a"].supervisor.which_child(REGISTRY_ID).pid],
        "agent b": [apps["b"].supervisor.which_child(REGISTRY_ID).pid],
        "session manager b": [apps["b"].supervisor.which_child(SESSION_MANAGER_ID).pid],
        "etcd": [ETCD_PID[0]],
    }
    made: list[str] = []
    before = etcd_counts(etcd_url)
    t0 = time.perf_counter()
    cpu = cpu_split(groups, lambda: made.extend(a.create_session(node="b", **SPEC) for _ in range(batch)))
    created_in = time.perf_counter() - t0
    middle = etcd_counts(etcd_url)
    cpu_text = ", ".join(f"{name} {fmt_time(seconds / batch)}" for name, seconds in cpu.items())
    print(f"  CPU per remote create: {cpu_text}", flush=True)
    NOTES.append(f"CPU per remote create (a batch of {batch}, sequential): {cpu_text}")
    for sid in made:
        a.terminate_session(sid)
    after = etcd_counts(etcd_url)
    store.revoke(lease)

    per_create, per_terminate = etcd_per(before, middle, batch), etcd_per(middle, after, batch)
    print(
        f"  etcd requests per remote create (a batch of {batch}, {fmt_time(created_in / batch)} each): "
        f"{per_create}; per remote terminate: {per_terminate}",
        flush=True,
    )
    NOTES.append(
        f"etcd requests per remote create (sequential): {per_create}; per remote terminate: {per_terminate}"
    )


def list_phase(table: Table, nodes: Nodes, store: Store, per_node: int, threads: int, reps: int) -> None:
    """list_sessions over 3 nodes x per_node sessions vs one raw range read of the same keys."""
    names = sorted(nodes.apps)
    total = per_node * len(names)
    print(
        f"list_sessions: {len(names)} nodes x {per_node} sessions, created from {threads} threads", flush=True
    )
    jobs = [(nodes[name], name) for _ in range(per_node) for name in names]
    seconds, latencies, sids, errors = create_many(jobs, threads)
    report_errors("create_session calls", errors)
    print(f"  created {len(sids)}/{total} in {seconds:.2f} s", flush=True)
    table.add(
        f"create {total} sessions on {len(names)} nodes ({threads} threads)",
        latencies,
        note=f"per call, local to each node; total {seconds:.2f} s, {fmt_time(seconds / max(1, len(sids)))}"
        " per session (wall)",
    )
    a = nodes["a"]
    listed = a.list_sessions()
    print(f"  node a lists {len(listed)} sessions", flush=True)
    sealer = Sealer(SECRET_KEY)
    prefix = nodes.keys.sessions

    def raw() -> float:
        return timed(lambda: store.range(prefix))

    def decoded() -> float:
        def read() -> None:
            found, _ = store.range(prefix)
            for item in found:
                _node, info = sealer.open(item.key, item.value)
                pickle.loads(info)

        return timed(read)

    raw()  # warm-ups
    decoded()
    timed(a.list_sessions)
    base, dec, target, target_b = [], [], [], []
    for _ in range(reps):
        base.append(raw())
        target.append(timed(a.list_sessions))
        dec.append(decoded())
        target_b.append(timed(nodes["b"].list_sessions))
    count = len(store.range(prefix, keys_only=True)[0])
    table.add(
        f"list_sessions ({len(listed)} sessions, 3 nodes)",
        target,
        base,
        note=f"from node a; baseline: one raw etcd range read of the {count} session keys",
    )
    table.add("  same, from node b", target_b, base, note="baseline: the same raw range read")
    table.add(
        "  range read + open seals + unpickle, in this process",
        dec,
        base,
        note="informative: the least work a reader of sealed entries does",
    )


def kill_phase(
    table: Table,
    endpoints: list[str],
    store: Store,
    ttl: int,
    reps: int,
    everything: list[Application],
    threads: int,
) -> None:
    """SIGKILL of node c's root, until its entries are gone and its PERMANENT sessions run elsewhere."""
    print(f"a node's death, lease TTL {ttl} s ({reps} kills)", flush=True)
    nodes = Nodes(endpoints, ttl, everything)
    gone_s, back_s, raw_s = [], [], []
    left_behind = 0
    try:
        a, b = nodes.start("a"), nodes.start("b")
        for rep in range(reps):
            nodes.start("c")
            jobs = [(a, "c")] * 10
            _, _, permanent, errors = create_many(jobs, threads, restart=Restart.PERMANENT)
            _, _, temporary, errors2 = create_many(jobs, threads)
            report_errors("create_session calls", errors + errors2)
            listed = {info.session_id for info in b.list_sessions() if info.node == "c"}
            assert listed >= set(permanent) | set(temporary), "node c's sessions are not all listed"

            # The baseline: a raw lease, renewed every TTL/3 by a thread until the kill.
            lease = store.grant(ttl)
            raw_key = f"/bench-lease-{uuid.uuid4().hex[:12]}".encode()
            store.put(raw_key, b"x", lease)
            stop = threading.Event()

            def renew(lease: int = lease, stop: threading.Event = stop) -> None:
                try:
                    while not stop.wait(ttl / 3):
                        store.keepalive(lease)
                finally:
                    store.close()

            keeper = threading.Thread(target=renew, daemon=True)
            keeper.start()
            time.sleep(random.uniform(ttl / 3, 2 * ttl / 3))  # a random phase of both renewals

            victim = nodes.apps["c"]
            pids = tree_pids(victim)
            t0 = time.perf_counter()
            os.kill(pids[0], signal.SIGKILL)
            stop.set()
            gone = back = raw = None
            deadline = t0 + 3 * ttl + 30
            while (gone is None or back is None or raw is None) and time.perf_counter() < deadline:
                if gone is None or back is None:
                    infos_a = a.list_sessions()
                    if gone is None:
                        infos_b = b.list_sessions()
                        if not any(i.node == "c" for i in infos_a + infos_b):
                            gone = time.perf_counter() - t0
                    if back is None:
                        running = {i.session_id for i in infos_a if i.status is SessionStatus.ACTIVE}
                        if running >= set(permanent) and not any(
                            i.node == "c" for i in infos_a if i.session_id in permanent
                        ):
                            back = time.perf_counter() - t0
                if raw is None and store.get(raw_key) is None:
                    raw = time.perf_counter() - t0
                time.sleep(0.005)
            keeper.join()
            print(
                f"  kill {rep + 1}: gone {fmt_time(gone)}, re-placed ACTIVE {fmt_time(back)}, "
                f"raw lease gone {fmt_time(raw)}",
                flush=True,
            )
            if gone is None or back is None or raw is None:
                print(f"  !! not all seen within {deadline - t0:.0f} s", flush=True)
            for value, samples in ((gone, gone_s), (back, back_s), (raw, raw_s)):
                if value is not None:
                    samples.append(value)

            # Clean up: the killed node's Application, its processes, the re-placed sessions.
            nodes.stop("c")
            left = wait_gone(pids, 10)
            left_behind += len(left)
            if left:
                print(f"  !! {len(left)} processes of the killed node still run: {left}", flush=True)
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(a.terminate_session, permanent))
    finally:
        nodes.stop_all()
    ttls = [float(ttl)] * len(gone_s)
    note = f"{left_behind} processes of killed nodes outlived them" if left_behind else ""
    table.add(
        f"kill -> entries gone from a and b (TTL {ttl} s)",
        gone_s,
        ttls,
        note="ratio to the TTL" + (f"; {note}" if note else ""),
    )
    table.add(
        "  same, vs a raw etcd lease",
        gone_s,
        raw_s,
        note=f"baseline: a lease of TTL {ttl} s renewed every TTL/3 until the kill, until its key is gone",
    )
    table.add(
        f"kill -> PERMANENT sessions ACTIVE elsewhere (TTL {ttl} s)", back_s, ttls, note="ratio to the TTL"
    )
    table.add("  same, vs a raw etcd lease", back_s, raw_s, note="baseline as above")


def memory_of(pids: Sequence[int]) -> tuple[int, int, bool]:
    """The sums of RSS and PSS (bytes) over *pids*, and whether PSS was readable for every one."""
    rss = pss = 0
    complete = True
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except PermissionError:
            complete = False
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
            rss += int(found.group(1)) * 1024 if found else 0
            continue
        except OSError:  # gone meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss, complete


def kinds(app: Application) -> dict[str, list[int]]:
    """A tree's processes by kind: root, registry (the agent in a cluster), session manager, sessions."""
    pids = tree_pids(app)
    registry = app.supervisor.which_child(REGISTRY_ID).pid
    manager = app.supervisor.which_child(SESSION_MANAGER_ID).pid
    fixed = {pids[0], registry, manager}
    return {
        "root": [pids[0]],
        "registry": [registry] if registry is not None else [],
        "manager": [manager] if manager is not None else [],
        "sessions": [pid for pid in pids if pid not in fixed],
    }


def fixed_groups(apps: Sequence[Application], etcd_pid: int | None) -> dict[str, Sequence[int | None]]:
    """The long-lived processes of *apps* by kind (and etcd), for :func:`cpu_split`."""
    groups: dict[str, Sequence[int | None]] = {
        "client (this process)": [os.getpid()],
        "roots": [app.supervisor.pid for app in apps],
        "registries/agents": [app.supervisor.which_child(REGISTRY_ID).pid for app in apps],
        "session managers": [app.supervisor.which_child(SESSION_MANAGER_ID).pid for app in apps],
    }
    if etcd_pid is not None:
        groups["etcd"] = [etcd_pid]
    return groups


def scale_phase(
    table: Table,
    endpoints: list[str],
    everything: list[Application],
    etcd: EtcdServer,
    store: Store,
    n_nodes: int,
    per_node: int,
    threads: int,
) -> None:
    """n_nodes x per_node sessions: creation time and memory, vs a plain Application with per_node."""
    print(f"scale: {n_nodes} nodes x {per_node} sessions, created from {threads} threads", flush=True)
    plain_app = Application(logging_config=QUIET, max_restarts=1000)
    everything.append(plain_app)
    plain_app.start()
    plain = plain_app.session_manager
    result: list[Any] = []
    plain_cpu = cpu_split(
        fixed_groups([plain_app], None),
        lambda: result.extend(create_many([(plain, None)] * per_node, threads)),
    )
    plain_total, plain_lat, plain_sids, errors = result
    report_errors("plain create_session calls", errors)
    print(f"  plain Application: {len(plain_sids)} sessions in {plain_total:.2f} s", flush=True)

    nodes = Nodes(endpoints, 10, everything)
    names = [f"n{i:02d}" for i in range(n_nodes)]
    started = time.perf_counter()
    for name in names:
        nodes.start(name)
    start_all = time.perf_counter() - started
    print(f"  {n_nodes} nodes started in {start_all:.2f} s", flush=True)
    try:
        jobs = [(nodes[name], name) for _ in range(per_node) for name in names]
        result = []
        before = etcd_counts(etcd.url)
        cluster_cpu = cpu_split(
            fixed_groups(list(nodes.apps.values()), ETCD_PID[0]),
            lambda: result.extend(create_many(jobs, threads)),
        )
        total, latencies, sids, errors = result
        during = etcd_per(before, etcd_counts(etcd.url), max(1, len(sids)))
        print(f"  etcd requests per session created: {during}", flush=True)
        NOTES.append(
            f"etcd requests per session created, {n_nodes} nodes x {per_node}, {threads} threads: {during}"
        )
        report_errors("create_session calls", errors)
        print(f"  created {len(sids)}/{len(jobs)} in {total:.2f} s", flush=True)
        n = max(1, len(sids))
        table.add(
            f"create {n_nodes} x {per_node} sessions ({threads} threads), per session (wall)",
            [total / n],
            [plain_total / max(1, len(plain_sids))],
            note=f"total {total:.2f} s; baseline: a plain Application, {per_node} sessions, "
            f"{plain_total:.2f} s in all" + (f"; {len(errors)} FAILED" if errors else ""),
        )
        table.add(
            f"  create_session latency, {n_nodes} nodes",
            latencies,
            plain_lat,
            note=f"per call, {threads} in flight; baseline: the plain Application's",
        )

        t0 = time.perf_counter()
        plain_kinds = kinds(plain_app)
        node_kinds = {name: kinds(nodes.apps[name]) for name in names}
        plain_mem = {kind: memory_of(pids) for kind, pids in plain_kinds.items()}
        node_mem = {
            name: {kind: memory_of(pids) for kind, pids in ks.items()} for name, ks in node_kinds.items()
        }
        etcd_mem = memory_of([etcd.pid] if etcd.pid else [])
        read_in = time.perf_counter() - t0
        complete = all(c for _, _, c in plain_mem.values()) and all(
            c for mem in node_mem.values() for _, _, c in mem.values()
        )
        processes = sum(len(p) for p in plain_kinds.values()) + sum(
            len(p) for ks in node_kinds.values() for p in ks.values()
        )
        print(
            f"  memory of {processes} processes read in {read_in:.1f} s"
            + ("" if complete else " (PSS NOT readable everywhere: PSS rows are partial)"),
            flush=True,
        )

        def total_of(mem: dict[str, tuple[int, int, bool]], index: int) -> int:
            return sum(values[index] for values in mem.values())

        for index, label in ((1, "PSS"), (0, "RSS")):
            per_node_mem = [total_of(node_mem[name], index) for name in names]
            counts = [len(node_kinds[name]["sessions"]) // 2 or 1 for name in names]
            plain_total_mem = total_of(plain_mem, index)
            plain_count = len(plain_kinds["sessions"]) // 2 or 1
            table.add(
                f"node memory, {label} (tree sum, {per_node} sessions)",
                per_node_mem,
                [plain_total_mem],
                fmt=fmt_mib,
                note=f"over the {n_nodes} nodes; baseline: the plain Application's tree",
            )
            table.add(
                f"  per session, {label} (tree sum / sessions)",
                [m / c for m, c in zip(per_node_mem, counts, strict=True)],
                [plain_total_mem / plain_count],
                fmt=fmt_mib,
            )
            table.add(
                f"  sessions' own processes, {label}, per session",
                [node_mem[name]["sessions"][index] / c for name, c in zip(names, counts, strict=True)],
                [plain_mem["sessions"][index] / plain_count],
                fmt=fmt_mib,
                note="SessionSupervisor + worker",
            )
            table.add(
                f"  agent, {label}",
                [node_mem[name]["registry"][index] for name in names],
                [plain_mem["registry"][index]],
                fmt=fmt_mib,
                note="baseline: the plain registry server",
            )
            if index == 1:
                table.add(
                    f"  root + session manager, {label}",
                    [node_mem[name]["root"][1] + node_mem[name]["manager"][1] for name in names],
                    [plain_mem["root"][1] + plain_mem["manager"][1]],
                    fmt=fmt_mib,
                )
        for label, cpu, count, wall in (
            ("plain Application", plain_cpu, len(plain_sids), plain_total),
            (f"{n_nodes} nodes", cluster_cpu, len(sids), total),
        ):
            text = ", ".join(f"{name} {fmt_time(seconds / max(1, count))}" for name, seconds in cpu.items())
            line = (
                f"CPU per session created, {label} ({count} sessions, {wall:.2f} s wall, "
                f"{sum(cpu.values()) / max(wall, 1e-9) / (os.cpu_count() or 1):.0%} of the CPUs, "
                f"the sessions' own processes not counted): {text}"
            )
            print(f"  {line}", flush=True)
            NOTES.append(line)
        NOTES.append(
            f"etcd itself at {len(sids)} sessions: RSS {fmt_mib(etcd_mem[0])}, PSS {fmt_mib(etcd_mem[1])}"
        )
        print(f"  etcd: RSS {fmt_mib(etcd_mem[0])}, PSS {fmt_mib(etcd_mem[1])}", flush=True)

        # list_sessions at this scale, vs the raw range read.
        prefix = nodes.keys.sessions
        handle = nodes[names[0]]
        base, target = [], []
        timed(handle.list_sessions)
        for _ in range(10):
            base.append(timed(lambda: store.range(prefix)))
            target.append(timed(handle.list_sessions))
        table.add(
            f"list_sessions ({len(sids)} sessions, {n_nodes} nodes)",
            target,
            base,
            note="baseline: one raw etcd range read of the same keys",
        )
        t0 = time.perf_counter()
        nodes.stop_all()
        table.add(
            f"stop {n_nodes} nodes ({per_node} sessions each)",
            [time.perf_counter() - t0],
            note="one run, one node after another",
        )
    finally:
        nodes.stop_all()
        plain_app.stop(timeout=60)


# ---------------------------------------------------------------------------------------- main

NOTES: list[str] = []
ETCD_PID: list[int | None] = [None]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and kills, TTL 3 s only")
    parser.add_argument("--reps", type=int, default=None, help="repetitions of the quick rows (default 30)")
    parser.add_argument(
        "--kill-reps", type=int, default=None, help="kills per TTL (default 7 for 3 s, 4 for 10 s)"
    )
    parser.add_argument("--ttls", default=None, help="lease TTLs of the kill rows, e.g. 3,10 (the default)")
    parser.add_argument("--per-node", type=int, default=300, help="sessions per node of the list rows")
    parser.add_argument("--nodes", type=int, default=10, help="nodes of the scale rows")
    parser.add_argument("--node-sessions", type=int, default=100, help="sessions per node of the scale rows")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating sessions")
    parser.add_argument(
        "--etcd-dir-in",
        default=None,
        help="the directory to make etcd's data directory in (default: the system's temporary one); "
        "/dev/shm shows what the disk's fsyncs cost",
    )
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (10 if args.quick else 30)
    ttls = [int(t) for t in (args.ttls or ("3" if args.quick else "3,10")).split(",")]
    if any(t < 3 for t in ttls):
        parser.error("--ttls: at least 3 s each")

    raise_fd_limit()
    version = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=True).stdout
    print(
        f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs; "
        f"etcd {version.split()[2]}",
        flush=True,
    )
    print(f"command: python benchmarks/bench_cluster.py {' '.join(sys.argv[1:])}".rstrip(), flush=True)
    started = time.perf_counter()
    table = Table()
    everything: list[Application] = []
    gc.collect()
    data_dir = tempfile.mkdtemp(prefix="bench-etcd-", dir=args.etcd_dir_in)
    print(f"etcd data directory: {data_dir}", flush=True)
    etcd = EtcdServer(data_dir, name="bench-etcd")
    try:
        etcd.start()
        ETCD_PID[0] = etcd.pid
        endpoints = [etcd.url]
        store = Store(endpoints, ETCD_TIMEOUT)

        # Rows 1 and 2: three nodes (the default TTL), and a plain Application for the local start.
        nodes = Nodes(endpoints, 10, everything)
        plain_app = Application(logging_config=QUIET)
        everything.append(plain_app)
        try:
            for name in "abc":
                nodes.start(name)
            plain_app.start()
            create_phase(table, nodes, plain_app.session_manager, store, etcd.url, reps)
            list_phase(table, nodes, store, args.per_node, args.threads, reps)
            t0 = time.perf_counter()
            nodes.stop_all()
            print(
                f"  3 nodes of {args.per_node} sessions stopped in {time.perf_counter() - t0:.2f} s",
                flush=True,
            )
        finally:
            nodes.stop_all()
            plain_app.stop(timeout=60)

        # Row 3: a node's death, for each TTL.
        for ttl in ttls:
            kills = (
                args.kill_reps if args.kill_reps is not None else (3 if args.quick else 7 if ttl <= 5 else 4)
            )
            kill_phase(table, endpoints, store, ttl, kills, everything, args.threads)

        # Row 4: many nodes on this machine.
        scale_phase(table, endpoints, everything, etcd, store, args.nodes, args.node_sessions, args.threads)
        store.close()
    finally:
        for app in reversed(everything):
            try:
                app.stop(timeout=60)
            except Exception as error:
                print(f"  !! stopping an Application failed: {error!r}", flush=True)
        etcd.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    left = descendants(os.getpid())
    print()
    print(
        f"results ({time.perf_counter() - started:.0f} s in all; medians and p90 over the runs; "
        "ratio = median / baseline median):"
    )
    print()
    table.print()
    print()
    for note in NOTES:
        print(f"note: {note}")
    if left:
        print(f"WARNING: {len(left)} processes left below this one: {left}")
    else:
        print("teardown: no process left below this one")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
