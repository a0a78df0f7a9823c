"""
The session tree, ``Application``: a supervisor whose children are the registry server and the
SessionManager.

The Application's supervisor (one_for_one; its intensity is an option, 3 restarts in 5 s by
default) has two children: the registry server (a table holding ``session_id → SessionInfo``) and the
SessionManager (a DynamicSupervisor of sessions keeping their ids, the registry's only writer). Each
session is a SessionSupervisor process with the session's children.
Their start functions are named entry points, so starting an Application loads no engine module here.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._addresses import REGISTRY_ID, SESSION_MANAGER_ID
from .._entrypoint import EntryPoint
from .._published import KIND_APPLICATION, check_name
from .._root import check_environment, start_tree
from ..handle import SupervisorHandle, deadline_from
from ..specs import ChildSpec, ChildType, DynamicSupervisorSpec, Restart, Shutdown, StartMode, Strategy
from .client import SessionManagerHandle
from .cluster.config import EtcdCluster
from .values import positive_seconds

if TYPE_CHECKING:
    from ..metrics import MetricsServer

__all__ = ["MANAGER_SHUTDOWN", "Application"]

MANAGER_SHUTDOWN = 0.3
"""
In a cluster, the SessionManager's shutdown time as a fraction of the lease's TTL: a stop of the node,
or its agent's death (the Application's supervisor is rest_for_one), gives the sessions this long to
end before they are killed, which is before the lease the agent last renewed can expire (a renewal is
at most half a TTL old while the agent lives: past that, it fences).
"""

_RUN_REGISTRY = EntryPoint("supervisor.sessions.registry_server", "run_registry_server")
_RUN_AGENT = EntryPoint("supervisor.sessions.cluster.entry", "run_cluster_agent")
_RUN_MANAGER = EntryPoint("supervisor.sessions.manager", "run_session_manager")


class Application:
    """
    The session tree: a supervisor with the registry server and the SessionManager.

    ``with Application() as app:`` starts the tree and stops it on exit. It never outlives the process
    that started it. :meth:`child_spec` puts the same tree inside a tree of your own.

    Args:
        max_restarts, max_seconds: the SessionManager's restart intensity (for sessions created with
            restart TRANSIENT or PERMANENT).
        root_max_restarts, root_max_seconds: the restart intensity of the Application's own
            supervisor, which restarts the registry server and the SessionManager: more than
            *root_max_restarts* of their restarts within *root_max_seconds* stop the whole
            Application (its sessions included), as :meth:`Supervisor.start`'s intensity does.
        registry_timeout: how long registry readers wait for a restarting registry server: finite
            seconds > 0.
        logging_config: as for :meth:`Supervisor.start` (a dict, or None).
        env: as for :meth:`Supervisor.start`: the whole environment of every process of the
            Application (its supervisor, the registry, the SessionManager, every session), nothing
            of the caller's; by default (None) they inherit the caller's. A session's own
            ``create_session(env=...)`` then replaces ``os.environ`` in that session's processes.
        name: publish the Application under this name for the same user's tools (``otp-supervisor
            sessions list --tree NAME``), as :meth:`Supervisor.start`'s *name*; None (the default)
            publishes nothing. Starting it raises ``ValueError`` if a running tree has the name.
        metrics_port: serve the Application's Prometheus metrics (``supervisor.metrics``; needs the
            ``metrics`` extra) at ``http://metrics_host:metrics_port/metrics`` from a thread of the
            process that calls :meth:`start`, until :meth:`stop`; 0 picks a free port (see
            :attr:`metrics_port`). None (the default): no metrics. Their ``tree`` label is *name*, or
            ``root`` without one.
        metrics_host: the address the metrics are served on; ``127.0.0.1`` by default.
        cluster: an :class:`~supervisor.EtcdCluster` to make this Application a node of a cluster
            whose session registry is etcd (see ``docs/cluster.md``; needs the ``cluster`` extra);
            None (the default): a registry of its own, on this machine.

    Raises:
        TypeError, ValueError: a bad argument, named; nothing is started.
    """

    def __init__(
        self,
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        root_max_restarts: int = 3,
        root_max_seconds: float = 5.0,
        registry_timeout: float = 5.0,
        logging_config: dict[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        name: str | None = None,
        cluster: EtcdCluster | None = None,
    ) -> None:
        self._cluster = _check_cluster(cluster)
        self._env = check_environment(env)
        self._name = None if name is None else check_name(name)
        self._metrics_address = _metrics_address(metrics_port, metrics_host)
        self._metrics: MetricsServer | None = None
        self._manager_spec = DynamicSupervisorSpec(max_restarts=max_restarts, max_seconds=max_seconds)
        self._root_intensity = _intensity(root_max_restarts, root_max_seconds)
        self._registry_timeout = positive_seconds("registry_timeout", registry_timeout)
        if logging_config is not None and not isinstance(logging_config, dict):
            raise TypeError(
                f"'logging_config' must be a dict (for logging.config.dictConfig) or None "
                f"(got {logging_config!r} that is a {type(logging_config).__name__})"
            )
        self._logging_config = logging_config
        self._handle: SupervisorHandle | None = None

    @staticmethod
    def children(
        manager_spec: DynamicSupervisorSpec | None = None,
        cluster: EtcdCluster | None = None,
        registry_timeout: float = 5.0,
    ) -> list[ChildSpec]:
        """
        The Application supervisor's children: the registry server (in a cluster, the node agent),
        then the SessionManager.
        """
        registry = (
            ChildSpec(REGISTRY_ID, _RUN_REGISTRY, start_mode=StartMode.NOTIFY)
            if cluster is None
            else ChildSpec(
                REGISTRY_ID, _RUN_AGENT, args=(cluster, registry_timeout), start_mode=StartMode.NOTIFY
            )
        )
        return [
            registry,
            ChildSpec(
                SESSION_MANAGER_ID,
                _RUN_MANAGER,
                args=(manager_spec or DynamicSupervisorSpec(), cluster is not None),
                type=ChildType.SUPERVISOR,
                start_mode=StartMode.NOTIFY,
                # In a cluster its sessions must be gone before the lease of a dead agent can expire.
                shutdown=Shutdown.INFINITY if cluster is None else cluster.ttl * MANAGER_SHUTDOWN,
            ),
        ]

    @classmethod
    def child_spec(
        cls,
        id: str = "application",
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        root_max_restarts: int = 3,
        root_max_seconds: float = 5.0,
        cluster: EtcdCluster | None = None,
    ) -> ChildSpec:
        """
        The Application as a nested supervisor child of your own tree; see :meth:`session_manager_in`.

        The intensities and *cluster* are as for :class:`Application`; *root_max_restarts* and
        *root_max_seconds* are the nested Application supervisor's.
        """
        _check_cluster(cluster)
        manager_spec = DynamicSupervisorSpec(max_restarts=max_restarts, max_seconds=max_seconds)
        restarts, seconds = _intensity(root_max_restarts, root_max_seconds)
        strategy = Strategy.ONE_FOR_ONE if cluster is None else Strategy.REST_FOR_ONE
        return ChildSpec.supervisor(
            id, cls.children(manager_spec, cluster), strategy, restarts, seconds, restart=Restart.PERMANENT
        )

    @staticmethod
    def session_manager_in(
        handle: SupervisorHandle, child_id: str = "application", registry_timeout: float = 5.0
    ) -> SessionManagerHandle:
        """
        The SessionManager of the Application child *child_id* of the supervisor *handle*. Blocks for
        one call to *handle* and one read of the Application's registry (whether it is a node of a
        cluster, and its name), *registry_timeout* seconds at most.

        Raises:
            TypeError, ValueError: *registry_timeout* is not finite seconds > 0; nothing is asked.
            RegistryUnavailableError: the registry did not answer in time.
        """
        positive_seconds("registry_timeout", registry_timeout)
        nested = handle.child_supervisor(child_id)
        sessions = SessionManagerHandle(nested._address, nested.path, nested._authkey, registry_timeout)
        return sessions.discover_node()

    def start(self) -> Application:
        """
        Start the tree; blocks until the registry and the SessionManager are ready, and, with
        *metrics_port*, until the metrics are served.

        Raises:
            ImportError: *metrics_port* was given without the ``metrics`` extra; nothing is started.
            OSError: the metrics address cannot be bound; the tree is stopped again.
        """
        if self._handle is not None:
            raise RuntimeError("this Application was already started")
        if self._metrics_address is not None:
            from .. import metrics  # here: only an Application with metrics imports prometheus_client
        if self._cluster is not None and importlib.util.find_spec("etcd3gw") is None:
            raise ImportError(
                "an Application in a cluster needs the 'cluster' extra: pip install 'otp-supervisor[cluster]'"
            )
        restarts, seconds = self._root_intensity
        self._handle = start_tree(
            self.children(self._manager_spec, self._cluster, self._registry_timeout),
            # In a cluster the SessionManager and its sessions share the agent's fate: a session must
            # not outlive the agent that holds the lease announcing it (see docs/cluster.md).
            Strategy.ONE_FOR_ONE if self._cluster is None else Strategy.REST_FOR_ONE,
            restarts,
            seconds,
            logging_config=self._logging_config,
            env=self._env,
            name=self._name,
            published_kind=KIND_APPLICATION,
        )
        if self._metrics_address is not None:
            host, port = self._metrics_address
            try:
                self._metrics = metrics.serve(self, port, host, tree=self._name)
            except BaseException:
                self._handle.stop()
                raise
        return self

    def stop(self, timeout: float | None = None) -> None:
        """
        Stop every session and the tree; idempotent. Blocks as :meth:`SupervisorHandle.stop` does.

        Raises:
            TypeError, ValueError: *timeout* is not finite seconds >= 0 or None (checked even when
                the Application is not started).
        """
        deadline_from("timeout", timeout)
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._handle is not None:
            self._handle.stop(timeout)

    @property
    def metrics_port(self) -> int | None:
        """The port the metrics are served on (the one chosen for ``metrics_port=0``); None if none."""
        return None if self._metrics is None else self._metrics.port

    @property
    def supervisor(self) -> SupervisorHandle:
        """The Application's root supervisor handle."""
        if self._handle is None:
            raise RuntimeError("the Application is not started")
        return self._handle

    @property
    def session_manager(self) -> SessionManagerHandle:
        """A client handle for the SessionManager (picklable; usable from any process)."""
        handle = self.supervisor
        node = None if self._cluster is None else self._cluster.node
        slack = 0.0 if self._cluster is None else self._cluster.answer_slack
        return SessionManagerHandle(
            handle._address, handle.path, handle._authkey, self._registry_timeout, node, slack=slack
        )

    def __enter__(self) -> Application:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _metrics_address(port: object, host: object) -> tuple[str, int] | None:
    """``(host, port)`` to serve metrics on, None for none; checked here so errors name these arguments."""
    if port is None:
        return None
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(
            f"'metrics_port' must be an int from 0 to 65535 or None "
            f"(got {port!r} that is a {type(port).__name__})"
        )
    if not 0 <= port <= 65535:
        raise ValueError(f"'metrics_port' must be an int from 0 to 65535 or None (got {port!r})")
    if not isinstance(host, str):
        raise TypeError(
            f"'metrics_host' must be a str, an address to listen on "
            f"(got {host!r} that is a {type(host).__name__})"
        )
    if not host:
        raise ValueError("'metrics_host' must be an address to listen on (got '')")
    return host, port


def _check_cluster(cluster: object) -> EtcdCluster | None:
    if cluster is not None and not isinstance(cluster, EtcdCluster):
        raise TypeError(
            f"'cluster' must be an EtcdCluster or None (got {cluster!r} that is a {type(cluster).__name__})"
        )
    return cluster


def _intensity(root_max_restarts: object, root_max_seconds: object) -> tuple[int, float]:
    """The Application supervisor's intensity, checked here so that errors name these arguments."""
    if not isinstance(root_max_restarts, int) or isinstance(root_max_restarts, bool):
        raise TypeError(
            f"'root_max_restarts' must be an int >= 0 (got {root_max_restarts!r} "
            f"that is a {type(root_max_restarts).__name__})"
        )
    if root_max_restarts < 0:
        raise ValueError(f"'root_max_restarts' must be an int >= 0 (got {root_max_restarts!r})")
    if not isinstance(root_max_seconds, (int, float)) or isinstance(root_max_seconds, bool):
        raise TypeError(
            f"'root_max_seconds' must be seconds > 0 (got {root_max_seconds!r} "
            f"that is a {type(root_max_seconds).__name__})"
        )
    if not math.isfinite(root_max_seconds) or root_max_seconds <= 0:
        raise ValueError(f"'root_max_seconds' must be finite seconds > 0 (got {root_max_seconds!r})")
    return root_max_restarts, float(root_max_seconds)
