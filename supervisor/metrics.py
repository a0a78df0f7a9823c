"""
Prometheus metrics of a running tree, gathered from its events and its supervisors' state.

Needs the ``metrics`` extra (``pip install 'otp-supervisor[metrics]'``, which installs
prometheus-client); importing ``supervisor`` alone never imports prometheus_client.

:func:`collect` follows a tree from the process that calls it (never from a supervisor process: no
thread is added to any of them). It subscribes to the tree's events (``handle.events(subtree=True)``)
and reads them in a background thread of this process, counting restarts and supervisors that gave
up; the gauges (which child is up, since when, how many sessions in each status) are read from the
supervisors (``which_children``, ``list_sessions``) when the registry is scraped. Nothing polls the
children. While anything collects, :func:`~supervisor.call` in this process times its calls into
``otp_supervisor_call_duration_seconds``. :func:`serve` also serves the metrics over HTTP;
``Application(metrics_port=...)`` does that for an Application.

===========================================  =======  ===================  ==========================
metric                                       type     labels               from
===========================================  =======  ===================  ==========================
``otp_supervisor_child_restarts_total``      counter  tree, child, reason  ``restarted`` events
``otp_supervisor_child_up``                  gauge    tree, child          ``which_children`` (RUNNING)
``otp_supervisor_child_start_time_seconds``  gauge    tree, child          ``which_children``
``otp_supervisor_intensity_reached_total``   counter  tree, supervisor     ``intensity_reached`` events
``otp_supervisor_sessions``                  gauge    tree, status         ``list_sessions``
``otp_supervisor_events_lost_total``         counter  tree                 ``lost`` events
``otp_supervisor_call_duration_seconds``     histo.   outcome              this process's ``call()``s
===========================================  =======  ===================  ==========================
"""

from __future__ import annotations

import collections
import os
import selectors
import socket
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any, Protocol

try:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "supervisor.metrics needs prometheus-client, which the 'metrics' extra installs: "
        "pip install 'otp-supervisor[metrics]'"
    ) from error

from ._addresses import SESSION_MANAGER_ID
from .errors import SupervisorError
from .handle import SupervisorHandle
from .info import ChildInfo, ChildState
from .messaging import client as _client
from .messaging.events import DEFAULT_BUFFER, Event, EventStream
from .specs import ChildType

__all__ = [
    "CALL_DURATION_BUCKETS",
    "SCRAPE_TIMEOUT",
    "SESSION_STATUSES",
    "ApplicationLike",
    "MetricsServer",
    "SessionsSource",
    "TreeMetrics",
    "collect",
    "serve",
]

PREFIX = "otp_supervisor"
SCRAPE_TIMEOUT = 5.0
"""Seconds a scrape waits, at most, for each supervisor (and the registry) it asks."""
SESSION_STATUSES = ("initializing", "active", "terminating")
"""The values of :class:`~supervisor.SessionStatus`, each a sample of the sessions gauge (0 when none)."""
CALL_DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    float("inf"),
)
"""The call-duration histogram's buckets, in seconds: a local call takes tens of microseconds."""
_MAX_PENDING = 10_000  # exits awaiting their restart that are remembered (temporary children never have one)

_CALL_DURATIONS = Histogram(
    f"{PREFIX}_call_duration_seconds",
    "Duration of the call()s this process made while metrics were collected, by how each ended.",
    ["outcome"],
    registry=None,
    buckets=CALL_DURATION_BUCKETS,
)


def _observe_call(seconds: float, outcome: str) -> None:
    _CALL_DURATIONS.labels(outcome).observe(seconds)


class SessionsSource(Protocol):
    """What the sessions gauge reads: a :class:`~supervisor.SessionManagerHandle`."""

    def list_sessions(self, *, timeout: float | None = None) -> Sequence[Any]: ...


class ApplicationLike(Protocol):
    """What :func:`collect` takes from an :class:`~supervisor.Application`."""

    @property
    def supervisor(self) -> SupervisorHandle: ...

    @property
    def session_manager(self) -> SessionsSource: ...


# ---------------------------------------------------------------------- one tree


class _Families:
    """The metric families of one scrape, every tree's samples added to them."""

    def __init__(self) -> None:
        self.restarts = CounterMetricFamily(
            f"{PREFIX}_child_restarts",
            "Automatic restarts of a child (id path), by the kind of exit reason that led to each.",
            labels=["tree", "child", "reason"],
        )
        self.up = GaugeMetricFamily(
            f"{PREFIX}_child_up", "1 while the child is RUNNING, else 0.", labels=["tree", "child"]
        )
        self.start_time = GaugeMetricFamily(
            f"{PREFIX}_child_start_time_seconds",
            "Unix time at which the child's current process was started.",
            labels=["tree", "child"],
        )
        self.intensity = CounterMetricFamily(
            f"{PREFIX}_intensity_reached",
            "Times a supervisor (id path) reached its restart intensity and gave up.",
            labels=["tree", "supervisor"],
        )
        self.sessions = GaugeMetricFamily(
            f"{PREFIX}_sessions", "Live sessions, by status.", labels=["tree", "status"]
        )
        self.lost = CounterMetricFamily(
            f"{PREFIX}_events_lost",
            "Events the collector missed because it did not keep up (the counters are short by as many).",
            labels=["tree"],
        )

    def all(self) -> list[Metric]:
        return [self.restarts, self.up, self.start_time, self.intensity, self.sessions, self.lost]


class TreeMetrics:
    """
    The metrics of one tree, as :func:`collect` returns it: an event subscription read by a
    background thread of this process, and the state read at each scrape.

    Close it (or leave its ``with`` block) to stop collecting: it unsubscribes, ends its thread and
    leaves the registry. The tree is not affected.
    """

    def __init__(
        self,
        handle: SupervisorHandle,
        sessions: SessionsSource | None,
        tree: str,
        buffer: int,
        timeout: float | None,
    ) -> None:
        self.tree = tree
        self._handle = handle
        self._sessions = sessions
        self._lock = threading.Lock()  # the stream and the counts: the reader thread and scrapes
        self._restarts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._intensity: collections.Counter[str] = collections.Counter()
        self._lost = 0
        self._pending: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._nested: dict[str, SupervisorHandle] = {}
        self._stream: EventStream = handle.events(subtree=True, buffer=buffer, timeout=timeout)
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._read_events, name=f"otp-supervisor-metrics {tree}")
        self._thread.daemon = True  # a tree left unclosed must not hold the interpreter's exit
        self._thread.start()

    # ------------------------------------------------------------------ events

    def _read_events(self) -> None:
        """The background thread: count events as they arrive, until closed or the tree has ended."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self._stream.fileno(), selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                with self._lock:
                    if self._closed:
                        return
                    self._drain()
                    if self._stream.ended:
                        return

    def _drain(self) -> None:
        """Count every event readable now; holds the lock."""
        while True:
            try:
                event = self._stream.next_event(0)
            except SupervisorError:
                return
            if event is None:
                return
            self._count(event)

    def _count(self, event: Event) -> None:
        if event.kind == "exited":
            # The exit that leads to a restart is the first since the child last started (a failed
            # restart's own exits are part of the same restart).
            if event.path not in self._pending:
                self._pending[event.path] = event.reason.kind.value if event.reason else "unknown"
                if len(self._pending) > _MAX_PENDING:
                    self._pending.popitem(last=False)
        elif event.kind == "started":
            self._pending.pop(event.path, None)
        elif event.kind == "restarted":
            self._restarts[(event.path, self._pending.pop(event.path, "unknown"))] += 1
        elif event.kind == "intensity_reached":
            self._intensity[event.path] += 1
        elif event.kind == "lost":
            self._lost += event.count

    # ------------------------------------------------------------------ a scrape

    def add_to(self, families: _Families) -> None:
        """
        Add this tree's samples to *families*. Blocks for one ``which_children`` per supervisor of
        the tree (at most ``SCRAPE_TIMEOUT`` each) and ``list_sessions``, then counts the events
        they have sent meanwhile: a scrape made after a restart event was seen anywhere counts it.
        """
        with self._lock:
            if self._closed:
                return
            children = self._walk()
            sessions = self._list_sessions()
            self._drain()  # after the walk: every supervisor has sent what it saw before answering
            restarts = dict(self._restarts)
            intensity = dict(self._intensity)
            lost = self._lost
        tree = self.tree
        for (child, reason), count in sorted(restarts.items()):
            families.restarts.add_metric([tree, child, reason], count)
        for path, info in children:
            families.up.add_metric([tree, path], 1.0 if info.state is ChildState.RUNNING else 0.0)
            if info.started_at is not None:
                families.start_time.add_metric([tree, path], info.started_at.timestamp())
        for supervisor, count in sorted(intensity.items()):
            families.intensity.add_metric([tree, supervisor], count)
        if sessions is not None:
            by_status = collections.Counter(info.status.value for info in sessions)
            for status in (*SESSION_STATUSES, *sorted(set(by_status) - set(SESSION_STATUSES))):
                families.sessions.add_metric([tree, status], by_status[status])
        families.lost.add_metric([tree], lost)

    def _walk(self) -> list[tuple[str, ChildInfo]]:
        """Every child of the tree with its id path, asking each supervisor once; [] if the root is gone."""
        found: list[tuple[str, ChildInfo]] = []
        seen: set[str] = set()
        self._walk_one(self._handle, found, seen)
        for path in set(self._nested) - seen:
            del self._nested[path]  # a supervisor that is no longer in the tree
        return found

    def _walk_one(self, handle: SupervisorHandle, found: list[tuple[str, ChildInfo]], seen: set[str]) -> None:
        try:
            children = handle.which_children(timeout=SCRAPE_TIMEOUT)
        except SupervisorError:
            return  # gone, restarting, or not answering: its subtree is left out of this scrape
        for info in children:
            if info.id is None and info.pid is None:
                continue  # a child known by pid, without one now: nothing to name it by
            key: str | int
            if info.id is not None:
                key, path = info.id, f"{handle.path}/{info.id}"
            else:
                assert info.pid is not None
                key, path = info.pid, f"{handle.path}/#{info.pid}"
            found.append((path, info))
            if info.type is ChildType.SUPERVISOR and info.pid is not None:
                nested = self._nested_handle(handle, key, path)
                if nested is not None:
                    seen.add(path)
                    self._walk_one(nested, found, seen)

    def _nested_handle(self, parent: SupervisorHandle, key: str | int, path: str) -> SupervisorHandle | None:
        """A handle for the nested supervisor at *path* (kept across scrapes); None if it cannot be had."""
        nested = self._nested.get(path)
        if nested is not None:
            return nested
        try:
            nested = parent.child_supervisor(key, timeout=SCRAPE_TIMEOUT)
        except SupervisorError:
            return None
        if parent._scope == "" and parent.path.rpartition("/")[2] == SESSION_MANAGER_ID:
            # A session's supervisor serves with a key of its own, derived from the tree's.
            nested = nested._with_key(parent._authkey.derive(nested.path))
        self._nested[path] = nested
        return nested

    def _list_sessions(self) -> Sequence[Any] | None:
        if self._sessions is None:
            return None
        try:
            return self._sessions.list_sessions(timeout=SCRAPE_TIMEOUT)
        except SupervisorError:
            return None

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        """
        Stop collecting: leave the registry, end the thread, unsubscribe. Idempotent; blocks until
        the thread has ended (at most a scrape in progress).
        """
        _unregister(self)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._stream.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> TreeMetrics:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TreeMetrics {self.tree}: {'closed' if self._closed else 'collecting'}>"


# ---------------------------------------------------------------------- registries


class _Exporter(Collector):
    """The one collector of this module in a registry: every tree collected into it, and the calls."""

    def __init__(self) -> None:
        self.trees: list[TreeMetrics] = []

    def describe(self) -> Iterable[Metric]:
        return [*_Families().all(), *_CALL_DURATIONS.describe()]

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        for tree in list(self.trees):
            tree.add_to(families)
        return [*families.all(), *_CALL_DURATIONS.collect()]


_exporters: dict[CollectorRegistry, _Exporter] = {}
_exporters_lock = threading.Lock()


def _register(metrics: TreeMetrics, registry: CollectorRegistry) -> None:
    with _exporters_lock:
        exporter = _exporters.get(registry)
        if exporter is None:
            exporter = _Exporter()
            registry.register(exporter)  # ValueError if another collector has these names
            _exporters[registry] = exporter
        exporter.trees.append(metrics)
        _client.observe_calls(_observe_call)


def _unregister(metrics: TreeMetrics) -> None:
    with _exporters_lock:
        for registry, exporter in list(_exporters.items()):
            if metrics in exporter.trees:
                exporter.trees.remove(metrics)
                if not exporter.trees:
                    registry.unregister(exporter)
                    del _exporters[registry]
        if not _exporters:
            _client.observe_calls(None)


def collect(
    target: SupervisorHandle | ApplicationLike,
    *,
    sessions: SessionsSource | None = None,
    tree: str | None = None,
    registry: CollectorRegistry = REGISTRY,
    buffer: int = DEFAULT_BUFFER,
    timeout: float | None = None,
) -> TreeMetrics:
    """
    Collect the metrics of the tree *target* (a root or nested supervisor's handle, or an
    :class:`~supervisor.Application`) into *registry* (prometheus_client's default one unless given).

    Subscribes to the tree's events before it returns, so every restart after that is counted, and
    reads them in a background thread of this process. At each scrape of *registry*, the gauges are
    read from the supervisors (one ``which_children`` each) and, for an Application or with
    *sessions* (a :class:`~supervisor.SessionManagerHandle`), ``list_sessions``. While anything
    collects, this process's calls are timed. Several trees may be collected into one registry;
    the *tree* label (the handle's path, ``root``, by default) tells them apart.

    Blocks for the subscription (at most *timeout* seconds, if given, plus each nested supervisor's
    answer). *buffer* is the events the supervisors keep for a collector that falls behind
    (``otp_supervisor_events_lost_total`` counts those dropped past it).

    Raises:
        TypeError, ValueError: a bad *buffer* or *timeout*; nothing is subscribed.
        SupervisorGoneError, AuthenticationError, CallTimeout: as ``SupervisorHandle.events()``.
        ValueError: *registry* already has another collector of these metric names.
    """
    if isinstance(target, SupervisorHandle):
        handle = target
    else:
        handle = target.supervisor
        if sessions is None:
            sessions = target.session_manager
    if tree is not None and not isinstance(tree, str):
        raise TypeError(f"'tree' must be a str or None (got {tree!r} that is a {type(tree).__name__})")
    metrics = TreeMetrics(handle, sessions, handle.path if tree is None else tree, buffer, timeout)
    try:
        _register(metrics, registry)
    except BaseException:
        metrics.close()
        raise
    return metrics


# ---------------------------------------------------------------------- HTTP


class _MetricsHandler(BaseHTTPRequestHandler):
    """``GET /metrics`` (or ``/``): the registry in Prometheus's text format."""

    registry: CollectorRegistry = REGISTRY
    timeout = 10.0  # seconds a client may take to send its request: one slow client holds the server

    def do_GET(self) -> None:
        if self.path.partition("?")[0] not in ("/", "/metrics"):
            self.send_error(404, "metrics are at /metrics")
            return
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every few seconds is not worth a line on stderr."""


class _Server(HTTPServer):
    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), handler)


class MetricsServer:
    """
    An HTTP exporter of one tree's metrics, as :func:`serve` returns it: a registry of its own, the
    tree's :class:`TreeMetrics` and a server thread in this process answering ``GET /metrics``.

    Attributes:
        port: the port it listens on (the one chosen when 0 was asked).
        host: the address it listens on.
        metrics: the tree's :class:`TreeMetrics`.
        registry: the registry served.
    """

    def __init__(self, metrics: TreeMetrics, registry: CollectorRegistry, host: str, port: int) -> None:
        handler = type("_BoundMetricsHandler", (_MetricsHandler,), {"registry": registry})
        self._httpd = _Server(host, port, handler)
        self.metrics = metrics
        self.registry = registry
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._wake_r, self._wake_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"otp-supervisor-metrics-http {port}")
        self._thread.daemon = True
        self._thread.start()

    def _serve(self) -> None:
        """The server thread: one request at a time (each scrape reuses the same connections)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self._httpd.fileno(), selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                self._httpd.handle_request()

    def close(self) -> None:
        """Stop serving and collecting. Idempotent; blocks until a scrape in progress has been answered."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._httpd.server_close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.metrics.close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "serving"
        return f"<MetricsServer http://{self.host}:{self.port}/metrics: {state}>"


def serve(
    target: SupervisorHandle | ApplicationLike,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    sessions: SessionsSource | None = None,
    tree: str | None = None,
    buffer: int = DEFAULT_BUFFER,
) -> MetricsServer:
    """
    :func:`collect` the tree *target* into a registry of its own and serve it over HTTP at
    ``http://host:port/metrics`` from a thread of this process (port 0: any free port; see
    :attr:`MetricsServer.port`). Close the server to stop both. Blocks for the subscription.

    Raises:
        TypeError, ValueError: a bad *port* or *host* (or an argument :func:`collect` refuses).
        OSError: the address cannot be bound (the port is taken, say); nothing is left running.
    """
    check_port(port)
    check_host(host)
    registry = CollectorRegistry(auto_describe=True)
    metrics = collect(target, sessions=sessions, tree=tree, registry=registry, buffer=buffer)
    try:
        return MetricsServer(metrics, registry, host, port)
    except BaseException:
        metrics.close()
        raise


def check_port(port: object) -> int:
    """*port* if it is an int from 0 to 65535; TypeError or ValueError naming it."""
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(
            f"'port' must be an int from 0 to 65535 (got {port!r} that is a {type(port).__name__})"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"'port' must be an int from 0 to 65535 (got {port!r})")
    return port


def check_host(host: object) -> str:
    """*host* if it is a non-empty str; TypeError or ValueError naming it."""
    if not isinstance(host, str):
        raise TypeError(
            f"'host' must be a str, an address to listen on (got {host!r} that is a {type(host).__name__})"
        )
    if not host:
        raise ValueError("'host' must be an address to listen on (got '')")
    return host
