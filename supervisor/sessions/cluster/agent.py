"""
The node agent: an Application's registry server when it is a node of a cluster.

It serves the registry protocol on the registry's socket, as the plain registry server does, so the
SessionManager and every client are unchanged: the SessionManager writes its sessions' entries here,
clients read them here. Beside its local table it:

- holds the node's lease in etcd and renews it every third of its TTL (the *keeper* thread), with
  the node's key (endpoint, load, capacity) attached to it;
- mirrors the local entries into etcd, each session's under the node's lease (the *writer* thread),
  every write and delete conditional on the node still owning the key;
- answers reads cluster-wide: ``snapshot`` is one range read of every session's entry, ``lookup``
  one read (the node's own sessions are answered from the local table, so a caller reads its own
  writes);
- creates, terminates, calls and casts for clients (``cluster_*`` methods): here, for its own
  sessions, through the local SessionManager; for another node's, through that node's agent over
  the node-to-node endpoint (``peer.py``);
- claims a session id with a create-if-absent transaction before starting it, so an id runs on one
  node at most;
- re-places the restartable sessions of dead nodes (the *watcher* sees a node's key deleted, the
  *replacer* claims each orphan by transaction: exactly once);
- fences: when it cannot renew its lease for half its TTL, it stops every local session, and kills
  the SessionManager if they are not all gone by 0.8 TTL after the last renewal it sent; it then
  rejoins with a new lease and no sessions once etcd answers again.

The agent is a leaf worker: it never forks, so it may and does run threads. It shares its fate with
the SessionManager (the Application's supervisor is rest_for_one in a cluster): if the agent dies,
the SessionManager and every session are stopped before a new agent starts, so no session outlives
the lease that announces it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ... import _child, _titles, _wire
from ..._addresses import SESSION_MANAGER_ID, TreeContext
from ..._procstat import parent_pid
from ..._transport import KeyMismatch
from ...errors import (
    AuthenticationError,
    CallTimeout,
    ClusterUnavailableError,
    DuplicateChildError,
    NoCapacityError,
    NodeNotFoundError,
    NodeUnreachableError,
    SessionNotFoundError,
)
from ...handle import SupervisorHandle
from ..client import SessionManagerHandle
from ..lease_guard import LeaseClock, lease_file
from ..registry import PUBLISHED
from ..registry_server import Table, serve_table
from ..values import Placement, SessionInfo, SessionOptions, SessionStatus
from . import peer
from .config import EtcdCluster
from .records import ClusterKeys, NodeRecord, Sealer, SpecRecord
from .store import Put, Store, StoreError

__all__ = ["FENCE_DEADLINE", "FENCE_START", "ClusterTable", "run_cluster_agent"]

log = logging.getLogger("supervisor.cluster")

FENCE_START = 0.5
"""Fencing starts when no renewal succeeded for this fraction of the TTL after the last one sent."""
FENCE_DEADLINE = 0.8
"""Every local session is gone by this fraction of the TTL after the last renewal sent."""
REPLACE_SPREAD = 0.5
"""Seconds a full node waits before claiming an orphan (an empty one: none), so the least loaded wins."""
REJOIN_PAUSE = 0.5
"""Seconds between tries to join (or rejoin) the cluster while etcd does not answer."""
MAX_REPLACE_FAILURES = 3
"""Failed starts in a row after which a re-placed session is given up."""
REPLACE_TIMEOUT = 60.0
"""Seconds a re-placed session is given to start before the replacer moves on to the next."""
FOREVER = 3600.0
"""The bound of a forwarded request given no timeout: an hour."""

_T = TypeVar("_T")


class ClusterTable(Table):
    """The local table, mirrored into etcd, answering reads cluster-wide; the agent's whole state."""

    METHODS = Table.METHODS | frozenset(
        {"cluster_create", "cluster_terminate", "cluster_call", "cluster_cast"}
    )

    def __init__(
        self, config: EtcdCluster, manager: SessionManagerHandle, app: SupervisorHandle, clock: LeaseClock
    ) -> None:
        super().__init__()
        self.clock = clock  # until when the sessions may run, for the SessionManager's switch
        self.config = config
        self.keys = ClusterKeys(config.prefix)
        self.store = Store(config.endpoints, config.etcd_timeout, config.etcd_tls)
        self.sealer = Sealer(config.secret)
        self.peer_key = config.secret.derive("otp-supervisor node-to-node")
        self.manager = manager
        self.app = app
        self.port = 0
        self.state = threading.Condition()  # guards everything below
        self.lease: int | None = None
        self.old_lease: int | None = None  # the lease of before a fence, revoked when etcd answers
        self.last_sent = 0.0  # monotonic: when the last successful renewal was sent
        # The sessions this node owns in etcd (their entries are on its lease), with their specs.
        self.owned: dict[str, SpecRecord | None] = {}
        self.reserved = 0  # claims under way, counted in the load before they are owned
        self.starting: dict[str, int] = {}  # sessions claimed and starting here, by the lease claimed on
        self.fence_stopping: set[str] = set()  # sessions the fence stops: their specs stay
        self.spec_unwritten: set[str] = set()  # new sessions whose spec waits for them to be ACTIVE
        self.timed_out: set[str] = set()  # starts whose create timed out: starting until they show
        self.suspect: dict[str, tuple[float, bool]] = {}  # claims of unknown outcome: id -> (when, new)
        self.spec_deletes: set[str] = set()  # ended sessions whose spec a fence kept from deleting
        self.leaving = False
        self.manager_pid: int | None = None  # the SessionManager, as the peer of its registry link
        self.dirty: set[str] = set()
        self.ending: set[str] = set()  # sessions over for good: their spec goes with their entry
        self.node_dirty = False
        self.in_flight: set[str] = set()  # the sessions the writer is writing now
        self.fencing = False  # from a fence until the local sessions are gone
        self.expired = False  # etcd answered a renewal: the lease is gone
        self.scan_wanted = threading.Event()
        self.watch: Any = None
        self.warned_at = -math.inf

    # ------------------------------------------------------------------ the registry protocol

    def put(self, key: str, value: bytes) -> None:
        with self.state:
            super().put(key, value)
            self._shown(key)
            if key != PUBLISHED:
                self._changed(key)

    def remove(self, key: str) -> None:
        with self.state:
            super().remove(key)
            if self.lease is None and key not in self.fence_stopping and key not in self.starting:
                self.spec_deletes.add(key)  # ended for good while fenced: done at the rejoin
            self.fence_stopping.discard(key)
            self._shown(key)
            self.ending.add(key)
            self._changed(key)
            self.state.notify_all()

    def replace_all(self, entries: dict[str, bytes]) -> None:
        with self.state:
            self.manager_pid = getattr(self.caller, "pid", None)  # only the SessionManager writes
            before = set(self.snapshot_local())
            super().replace_all(entries)
            after = set(self.snapshot_local())
            for key in before | after:
                self._changed(key)
            if before - after:
                self.scan_wanted.set()  # a new SessionManager: restartable sessions go elsewhere
            self.state.notify_all()

    def _shown(self, key: str) -> None:
        """A start that timed out has reached the table (or ended): the table guards it now."""
        if key in self.timed_out:
            self.timed_out.discard(key)
            self.starting.pop(key, None)
            self.state.notify_all()

    def _changed(self, key: str) -> None:
        if self.lease is not None:
            self.dirty.add(key)
            self.state.notify_all()

    def snapshot_local(self) -> dict[str, bytes]:
        local = super().snapshot()
        local.pop(PUBLISHED, None)
        return local

    def lookup(self, key: str) -> tuple[bytes | None, bool]:
        value, published = super().lookup(key)
        if value is not None or not published:
            return value, published
        try:
            found = self.store.get(self.keys.session(key))
        except StoreError as error:
            raise ClusterUnavailableError(f"etcd did not answer a read of session {key!r}: {error}") from None
        entry = self._entry(found.key, found.value) if found is not None else None
        if entry is None or entry[0] == self.config.node:
            return None, True  # ours and not in the local table: already gone here
        return entry[1], True

    def snapshot(self) -> dict[str, bytes]:
        local = super().snapshot()
        if PUBLISHED not in local:
            return local
        try:
            found, _ = self.store.range(self.keys.sessions)
        except StoreError as error:
            raise ClusterUnavailableError(f"etcd did not answer a read of the sessions: {error}") from None
        entries = dict(local)
        for item in found:
            entry = self._entry(item.key, item.value)
            if entry is not None and entry[0] != self.config.node:
                entries[ClusterKeys.last_part(item.key)] = entry[1]
        return entries

    def _entry(self, key: bytes, value: bytes) -> tuple[str, bytes] | None:
        try:
            node, info = self.sealer.open(key, value)
        except Exception as error:  # a SealError, or a value that does not unpickle
            log.warning("cluster: ignoring an entry in etcd: %s", error)
            return None
        return str(node), bytes(info)

    def node_info(self) -> tuple[str, float] | None:
        """This node's name, and how long past a request's own timeout the agent may take to answer."""
        return self.config.node, self.config.answer_slack

    # ------------------------------------------------------------------ client requests

    def cluster_create(
        self, session_id: str, options: SessionOptions, node: str | None, timeout: float | None
    ) -> str:
        """Place and start a session; return its id once it runs. Blocks as ``create_session``."""
        deadline = time.monotonic() + (FOREVER if timeout is None else timeout)
        target = self._place(node)
        if target.node == self.config.node:
            return self.create_here(session_id, options, None, _left(deadline, timeout))
        return str(
            self._forward(target, "create", lambda left: (session_id, options, None, left), deadline, timeout)
        )

    def cluster_terminate(self, session_id: str, timeout: float | None) -> None:
        if session_id in self.snapshot_local():
            self.terminate_here(session_id, timeout)
            return
        deadline = time.monotonic() + (FOREVER if timeout is None else timeout)
        owner = self._owner(session_id)
        self._forward(owner, "terminate", lambda left: (session_id, left), deadline, timeout)

    def cluster_call(
        self, session_id: str, child_id: str, request: Any, timeout: float | None, wait_for_restart: bool
    ) -> Any:
        deadline = time.monotonic() + (FOREVER if timeout is None else timeout)
        owner = self._owner(session_id)
        return self._forward(
            owner,
            "call",
            lambda left: (session_id, child_id, request, left, wait_for_restart),
            deadline,
            timeout,
        )

    def cluster_cast(self, session_id: str, child_id: str, message: Any, timeout: float | None) -> None:
        deadline = time.monotonic() + (FOREVER if timeout is None else timeout)
        owner = self._owner(session_id)
        self._forward(owner, "cast", lambda left: (session_id, child_id, message, left), deadline, timeout)

    # ------------------------------------------------------------------ requests from other nodes

    def handle_peer(self, operation: str, args: tuple[Any, ...]) -> Any:
        """Run a request another node's agent sent (in its connection's thread)."""
        if operation == "create":
            return self.create_here(*args)
        if operation == "terminate":
            return self.terminate_here(*args)
        if operation == "call":
            session_id, child_id, request, timeout, wait_for_restart = args
            return self.manager.call(
                session_id, child_id, request, timeout, wait_for_restart=wait_for_restart
            )
        if operation == "cast":
            session_id, child_id, message, timeout = args
            return self.manager.cast(session_id, child_id, message, timeout=timeout)
        raise ValueError(f"no node-to-node operation {operation!r}")

    def terminate_here(self, session_id: str, timeout: float | None) -> None:
        """
        Terminate a session of this node; return once it is gone here and its entry and spec from
        etcd.

        Raises:
            ClusterUnavailableError: it is gone here, but etcd did not take the deletion in time (it
                is written when etcd answers; until then the session is listed, and should this node
                lose its lease meanwhile, a restartable one may be re-placed).
        """
        self.manager.terminate_session(session_id, timeout=timeout)
        self.settle(session_id)
        with self.state:
            if self.lease is None or self.fencing:
                self.spec_deletes.add(session_id)
            if session_id in self.owned or session_id in self.spec_deletes:
                raise ClusterUnavailableError(
                    f"session {session_id!r} is stopped on node {self.config.node!r}, but etcd did not "
                    "take its deletion in time; it is deleted when etcd answers, unless another node has "
                    "re-placed it by then"
                )

    def settle(self, session_id: str) -> None:
        """
        Wait until the writer has written the session's last change to etcd, so that every node reads
        it; bounded by twice ``etcd_timeout`` (then the change is written later, when etcd answers).
        """
        deadline = time.monotonic() + 2 * self.config.etcd_timeout
        with self.state:
            self._wait_written(lambda: session_id in self.dirty or session_id in self.in_flight, deadline)

    def _wait_written(self, pending: Callable[[], bool], deadline: float) -> None:
        """Under the state: wait while *pending* and the node has a lease, until *deadline* at most."""
        while pending() and self.lease is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.state.wait(left)

    # ------------------------------------------------------------------ placing and claiming

    def _live_nodes(self) -> dict[str, NodeRecord]:
        try:
            found, _ = self.store.range(self.keys.nodes)
        except StoreError as error:
            raise ClusterUnavailableError(f"etcd did not answer a read of the nodes: {error}") from None
        nodes: dict[str, NodeRecord] = {}
        for item in found:
            try:
                record = self.sealer.open(item.key, item.value)
            except Exception as error:
                log.warning("cluster: ignoring a node entry in etcd: %s", error)
                continue
            if isinstance(record, NodeRecord):
                nodes[record.node] = record
        with self.state:
            if self.config.node in nodes:  # our own load, as it is now
                load = len(self.owned) + self.reserved
                nodes[self.config.node] = attrs.evolve(nodes[self.config.node], load=load)
        return nodes

    def _place(self, node: str | None) -> NodeRecord:
        with self.state:
            self._usable_lease()
        nodes = self._live_nodes()
        if node is not None:
            if node not in nodes:
                raise NodeNotFoundError(f"no live node of the cluster is named {node!r}", node)
            if nodes[node].load >= nodes[node].capacity:
                raise NoCapacityError(f"node {node!r} runs as many sessions as its capacity")
            return nodes[node]
        open_nodes = [record for record in nodes.values() if record.load < record.capacity]
        if not open_nodes:
            raise NoCapacityError(f"every live node of the cluster is full ({len(nodes)} nodes)")
        return min(open_nodes, key=lambda r: (r.ratio, r.node != self.config.node, r.node))

    def create_here(
        self,
        session_id: str,
        options: SessionOptions,
        placement: Placement | None,
        timeout: float | None,
        spec_revision: int = 0,
    ) -> str:
        """
        Claim *session_id* in etcd for this node and start the session here; its id once it runs.

        A new session (*placement* None) claims an id nobody has; a re-placement claims an orphan
        whose spec is still at *spec_revision*. Blocks until the session is ready or has failed.

        Raises:
            ClusterUnavailableError: not part of the cluster now, or etcd did not answer.
            ValueError: the id is taken (a re-placement: another node claimed it first).
            StartError, CallTimeout: as ``create_session``; the claim is withdrawn.
        """
        deadline = time.monotonic() + (FOREVER if timeout is None else timeout)
        now = datetime.datetime.now(datetime.timezone.utc)
        placement = placement or Placement(self.config.node, 1, 0, now)
        restartable = options.restart.value != "temporary"
        spec = (
            SpecRecord(
                session_id, options, placement.created_at or now, placement.incarnation, placement.restarts
            )
            if restartable
            else None
        )
        info = SessionInfo(
            session_id=session_id,
            pid=None,
            status=SessionStatus.INITIALIZING,
            created_at=placement.created_at or now,
            restarts=placement.restarts,
            metadata=options.metadata,
            children=(),
            node=self.config.node,
            incarnation=placement.incarnation,
        )
        with self.state:
            lease = self._usable_lease()
            load = len(self.owned) + self.reserved + 1
            if load > self.config.capacity:
                raise NoCapacityError(f"node {self.config.node!r} runs as many sessions as its capacity")
            self.reserved += 1
        try:
            self._claim(session_id, info, spec, spec_revision, lease, load)
        finally:
            with self.state:
                self.reserved -= 1
        try:
            self.manager._start_session(session_id, options, placement, _left(deadline, timeout))
        except CallTimeout:
            with self.state:  # it may still start: a fence must wait for it, or kill it with the manager
                self.timed_out.add(session_id)
            raise  # the claim stays, and goes with the session if it fails
        except DuplicateChildError:
            raise  # the id already runs here: its claim and spec are that session's
        except BaseException:
            with self.state:  # the claim goes: the entry (if the start left none), and a new one's spec
                fenced = self.lease != lease
                if not spec_revision:
                    self.ending.add(session_id)
                self._changed(session_id)
            if fenced and not spec_revision:
                self._withdraw(session_id, lease)
            elif spec_revision and spec is not None and not fenced:
                self._count_failure(spec)
            raise
        finally:
            with self.state:  # a fence waits for this: a start it cannot see yet is one it must stop
                if session_id not in self.timed_out:
                    self.starting.pop(session_id, None)
                self.state.notify_all()
        with self.state:
            fenced = self.lease != lease
        if fenced:  # during the start: the fence stops it (it waited for this start to end)
            if not spec_revision:
                self._withdraw(session_id, lease)
            raise ClusterUnavailableError(
                f"node {self.config.node!r} lost its lease while session {session_id!r} started; "
                "it is stopped here"
            )
        self.settle(session_id)  # every node now reads it ACTIVE
        with self.state:
            unwritten = session_id in self.spec_unwritten
        if unwritten:
            raise ClusterUnavailableError(
                f"session {session_id!r} runs on node {self.config.node!r}, but etcd did not take its spec "
                "in time: it is written when etcd answers, and until then the session is not restartable "
                "on another node (should this node lose its lease first, the session ends with it)"
            )
        return session_id

    def _usable_lease(self) -> int:
        """The lease, while the node is in the cluster; else ClusterUnavailableError. Under the state."""
        if self.lease is None or self.fencing or self.leaving:
            raise ClusterUnavailableError(
                f"node {self.config.node!r} is not part of the cluster now (etcd does not answer, it is "
                "rejoining after fencing itself, or it is stopping)"
            )
        return self.lease

    def _claim(
        self,
        session_id: str,
        info: SessionInfo,
        spec: SpecRecord | None,
        spec_revision: int,
        lease: int,
        load: int,
    ) -> None:
        """
        Claim *session_id* for this node in one transaction: its entry on the lease, its spec, and the
        node's new load (the next placement, on any node, sees it). A claim whose answer was lost is
        read back: it is this node's if the entry is on this node's lease.

        Raises:
            ValueError: the id is another node's (or the orphan was claimed first).
            ClusterUnavailableError: etcd did not answer, or the node was fenced meanwhile (withdrawn).
        """
        key = self.keys.session(session_id)
        with self.state:
            if session_id in self.owned or session_id in self.snapshot_local():
                raise ValueError(f"session id {session_id!r} is taken in the cluster")
        puts = [
            Put(key, self._sealed_entry(info), lease),
            Put(self.keys.node(self.config.node), self._sealed_record(load), lease),
        ]
        if spec is not None and spec_revision:  # a re-placement: its spec, one placement on
            puts.append(Put(self.keys.spec(session_id), self.sealer.seal(self.keys.spec(session_id), spec)))
        # A new session's spec is written once it is ACTIVE (the writer): a create that fails, or
        # that a fence interrupts, leaves nothing another node could start.
        unchanged = [(self.keys.spec(session_id), spec_revision)] if spec_revision else []
        try:
            try:
                claimed, _ = self.store.transaction(absent=[key], unchanged=unchanged, puts=puts)
            except StoreError:
                claimed = False
            if not claimed:
                found = self.store.get(key)  # a claim sent twice, or one whose answer was lost
                if found is None:
                    self._suspect(session_id, new=not spec_revision)
                    raise ClusterUnavailableError(f"etcd did not take the claim of {session_id!r}")
                if found.lease != lease:
                    raise ValueError(f"session id {session_id!r} is taken in the cluster")
        except StoreError as error:
            self._suspect(session_id, new=not spec_revision)
            raise ClusterUnavailableError(
                f"etcd did not answer the claim of {session_id!r}: {error}"
            ) from None
        with self.state:
            if self.lease == lease and not self.fencing:
                self.owned[session_id] = spec  # the claim wrote the node's new load
                self.starting[session_id] = lease
                if spec is not None and not spec_revision:
                    self.spec_unwritten.add(session_id)
                self.state.notify_all()
                return
        # Fenced while claiming: the claim is on a lease that is going; nothing may start on it, and
        # a new session's spec must not outlive the failed create (a re-placement's stays).
        if not spec_revision:
            self._withdraw(session_id, lease)
        raise ClusterUnavailableError(
            f"node {self.config.node!r} lost its lease while claiming {session_id!r}"
        )

    def _suspect(self, session_id: str, *, new: bool) -> None:
        """A claim of unknown outcome: the writer deletes it later if it was applied on this lease."""
        with self.state:
            self.suspect[session_id] = (time.monotonic(), new)

    def _withdraw(self, session_id: str, lease: int) -> None:
        """
        Take back the claim of a new session whose create failed because the node was fenced: its
        entry (if still on the old *lease*) and its spec now if etcd answers, else at the rejoin
        (unless another node has claimed the id by then).
        """
        key = self.keys.session(session_id)
        try:
            done, _ = self.store.transaction(leased=[(key, lease)], deletes=[key, self.keys.spec(session_id)])
            if done:
                return
            found = self.store.get(key)
            if found is not None and found.lease != lease:
                return  # claimed again since, by a node that owns it now
        except StoreError:
            pass
        with self.state:
            self.spec_deletes.add(session_id)

    def _count_failure(self, spec: SpecRecord) -> None:
        """
        A re-placement failed to start: its spec stays for another node to try, but after
        ``MAX_REPLACE_FAILURES`` failures in a row the session is given up (its spec deleted).
        """
        key = self.keys.spec(spec.session_id)
        try:
            found = self.store.get(key)
            if found is None:
                return
            failures = spec.failures + 1
            if failures >= MAX_REPLACE_FAILURES:
                log.error(
                    "cluster: session %r failed to start %d times; it is given up", spec.session_id, failures
                )
                self.store.transaction(unchanged=[(key, found.mod_revision)], deletes=[key])
            else:
                again = self.sealer.seal(key, attrs.evolve(spec, failures=failures))
                self.store.transaction(unchanged=[(key, found.mod_revision)], puts=[Put(key, again)])
        except StoreError as error:
            log.warning("cluster: could not count a failed start of %r: %s", spec.session_id, error)

    def _sealed_entry(self, info: SessionInfo) -> bytes:
        return self.sealer.seal(self.keys.session(info.session_id), (self.config.node, _wire.dumps(info)))

    def _sealed_record(self, load: int) -> bytes:
        return self.sealer.seal(self.keys.node(self.config.node), self._record(load))

    def _owner(self, session_id: str) -> NodeRecord:
        try:
            found = self.store.get(self.keys.session(session_id))
        except StoreError as error:
            raise ClusterUnavailableError(f"etcd did not answer a read of {session_id!r}: {error}") from None
        entry = self._entry(found.key, found.value) if found is not None else None
        if entry is None:
            raise SessionNotFoundError(f"no live session with id {session_id!r}", session_id)
        node = entry[0]
        record = self._live_nodes().get(node)
        if record is None:
            raise NodeUnreachableError(
                f"session {session_id!r} is listed on node {node!r}, which is not live in the cluster", node
            )
        return record

    def _forward(
        self,
        target: NodeRecord,
        operation: str,
        args_for: Callable[[float | None], tuple[Any, ...]],
        deadline: float,
        timeout: float | None,
    ) -> Any:
        """
        Send *operation* to *target*'s agent, with the arguments *args_for* makes of the time left of
        the caller's *timeout* (None stays None), and return its answer. Blocks until *deadline*, plus
        the time the owner may take to have etcd take its writes.
        """
        connect_deadline = min(deadline, time.monotonic() + self.config.node_timeout)
        try:
            return peer.request(
                (target.host, target.port),
                self.peer_key,
                operation,
                args_for(_left(deadline, timeout)),
                connect_deadline=connect_deadline,
                # The owner's own bound expires first, with its own error; then its etcd writes.
                deadline=deadline + 1.0 + 8 * self.config.etcd_timeout,
                tls=self.config.tls,
                keepalive=self.config.node_timeout,
            )
        except KeyMismatch as error:
            raise AuthenticationError(
                f"node {target.node!r} does not hold this cluster's secret ({error})"
            ) from None
        except (OSError, EOFError) as error:
            if getattr(error, "delivered", False):
                raise CallTimeout(
                    f"node {target.node!r} did not answer {operation!r} in time; it may have run it"
                ) from None
            raise NodeUnreachableError(
                f"node {target.node!r} at {target.host}:{target.port} did not answer within "
                f"{self.config.node_timeout} s ({type(error).__name__}: {error}); "
                f"{operation!r} was not delivered",
                target.node,
            ) from None

    # ------------------------------------------------------------------ the keeper: lease and fencing

    def keep(self) -> None:
        """
        The keeper thread: join, then renew the lease every third of its TTL, retrying a failed renewal
        at once; rejoin after a fence. Never returns. Fencing is the watchdog's (:meth:`guard`), so a
        renewal that blocks cannot delay it.
        """
        ttl = self.config.ttl
        interval = ttl / 3
        while True:
            lease = self.lease
            if lease is None:
                if self.fencing or not self.join():
                    time.sleep(REJOIN_PAUSE)
                continue
            time.sleep(max(0.0, self.last_sent + interval - time.monotonic()))
            sent = time.monotonic()
            try:
                left = self.store.keepalive(lease, timeout=min(self.config.etcd_timeout, ttl / 6))
            except StoreError as error:
                log.warning("cluster: node %r could not renew its lease: %s", self.config.node, error)
                time.sleep(min(0.2, interval / 4))
                continue
            with self.state:
                if self.lease != lease:
                    continue  # fenced while the renewal was on its way: it counts for nothing
                if left <= 0:
                    self.expired = True  # etcd says so: the watchdog fences at once
                else:
                    self.last_sent = sent
                    self.clock.write(sent + ttl * FENCE_DEADLINE)  # the SessionManager's switch
                    self.node_dirty = True
                self.state.notify_all()

    def guard(self) -> None:
        """
        The watchdog thread: fence when no renewal has succeeded for ``FENCE_START`` of the TTL after
        the last one sent, or etcd said the lease expired. Never returns; waits on the state, no polling.
        """
        ttl = self.config.ttl
        while True:
            with self.state:
                while True:
                    if self.lease is not None:
                        if self.expired:
                            why = "its lease has expired in etcd"
                            break
                        late = time.monotonic() - self.last_sent
                        if late >= ttl * FENCE_START:
                            why = f"no renewal of its lease succeeded for {late:.1f} s"
                            break
                        self.state.wait(ttl * FENCE_START - late)
                    else:
                        self.state.wait()
            self._fence(why)

    def join(self) -> bool:
        """Join the cluster with a new lease; False if etcd did not answer (bounded) or sessions remain."""
        with self.state:
            if self.snapshot_local() or self.starting or self.leaving:
                return False  # sessions of before a fence are still stopping, or the node is stopping
            spec_deletes = set(self.spec_deletes)
        lease = 0
        try:
            if self.old_lease is not None:
                # Its sessions are gone: their entries may go now rather than at the lease's expiry.
                self.store.revoke(self.old_lease)
                self.old_lease = None
            for session_id in spec_deletes:  # ended before the fence: unless re-placed meanwhile
                self.store.transaction(
                    absent=[self.keys.session(session_id)], deletes=[self.keys.spec(session_id)]
                )
                with self.state:
                    self.spec_deletes.discard(session_id)
            sent = time.monotonic()
            lease = self.store.grant(self.config.ttl)
            # The name is claimed like a session id: while another lease holds it (a live node of the
            # same name, or this node's previous incarnation whose lease has not expired yet), wait.
            record = Put(self.keys.node(self.config.node), self._sealed_record(0), lease)
            joined, _ = self.store.transaction(absent=[record.key], puts=[record])
            if not joined:
                found = self.store.get(record.key)  # a claim whose answer was lost is ours
                joined = found is not None and found.lease == lease
            if not joined:
                self.store.revoke(lease)
                self._warn_name_taken()
                return False
        except StoreError as error:
            log.debug("cluster: node %r cannot join yet: %s", self.config.node, error)
            if lease:
                with contextlib.suppress(StoreError):
                    self.store.revoke(lease)
            return False
        with self.state:
            if self.leaving:
                return False
            self.lease, self.last_sent, self.fencing, self.expired = lease, sent, False, False
            self.spec_unwritten.clear()
            self.clock.write(sent + self.config.ttl * FENCE_DEADLINE)
            self.owned.clear()
            self.dirty.clear()
            self.ending.clear()
            self.node_dirty = True
            self.state.notify_all()
        log.info("cluster: node %r joined with lease %x", self.config.node, lease)
        self._restart_watch()
        self.scan_wanted.set()
        return True

    def _warn_name_taken(self) -> None:
        now = time.monotonic()
        if now - self.warned_at > 10:
            self.warned_at = now
            log.warning(
                "cluster: node name %r is held by another lease (another live node of that name, or this "
                "node's previous run until its lease expires); joining once it is free",
                self.config.node,
            )

    def _record(self, load: int) -> NodeRecord:
        host = self.config.advertised_host
        return NodeRecord(self.config.node, host, self.port, load, self.config.capacity)

    def _fence(self, why: str) -> None:
        """
        Stop every local session by 0.8 TTL after the last renewal sent, killing the SessionManager
        (and so every session) if any is left then; return once the local table is empty. Sessions
        that ended for good keep their spec deletions for the rejoin.
        """
        deadline = self.last_sent + self.config.ttl * FENCE_DEADLINE
        log.error("cluster: node %r fences itself: %s; stopping its sessions", self.config.node, why)
        with self.state:
            self.old_lease, self.lease = self.lease, None
            self.fencing = True
            self.spec_deletes |= self.ending
            self.owned.clear()
            self.spec_unwritten.clear()
            self.dirty.clear()
            self.ending.clear()
            self.state.notify_all()
        self._restart_watch()
        stopping: set[str] = set()
        while True:
            with self.state:
                local = set(self.snapshot_local())
                if not local and not self.starting:
                    self.fencing = False  # the keeper may rejoin now
                    self.fence_stopping.clear()
                    self.state.notify_all()
                    return
                self.fence_stopping |= local - stopping
            for session_id in local - stopping:  # a start in flight may add one: it is stopped too
                stopping.add(session_id)
                threading.Thread(target=self._stop_quietly, args=(session_id, deadline), daemon=True).start()
            if time.monotonic() < deadline:
                with self.state:
                    self.state.wait(max(0.0, min(0.1, deadline - time.monotonic())))  # removals notify
                continue
            self._kill_manager()
            with self.state:
                self.state.wait(0.1)

    def _stop_quietly(self, session_id: str, deadline: float) -> None:
        try:
            self.manager.terminate_session(session_id, timeout=max(0.0, deadline - time.monotonic()))
        except Exception as error:
            log.warning("cluster: fencing: session %r not stopped in time: %s", session_id, error)

    def _kill_manager(self) -> None:
        """
        SIGKILL the SessionManager: its sessions die with it (their parent-death signal). Its pid is
        the peer of its registry link (checked to be the agent's sibling), else asked of the root.
        """
        pid = self.manager_pid
        if pid is None or parent_pid(pid) != os.getppid():
            try:
                pid = self.app.which_child(SESSION_MANAGER_ID, timeout=0.5).pid
            except Exception as error:
                log.error("cluster: fencing: the SessionManager's pid is unknown: %s", error)
                return
        if pid is None:
            return
        log.error("cluster: fencing: killing the SessionManager (pid %d) and its sessions", pid)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            if parent_pid(pid) != os.getppid():
                return  # the pid was reused meanwhile: the pidfd now pins another process
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)
        with self.state:  # its entries: a new SessionManager replaces them all (with none)
            super().replace_all({PUBLISHED: b"1"} if PUBLISHED in super().snapshot() else {})
            for session_id in self.timed_out:  # their starts died with it
                self.starting.pop(session_id, None)
            self.timed_out.clear()
            self.state.notify_all()

    def leave(self) -> None:
        """
        Leave the cluster as the Application stops: write what is pending (its sessions were stopped,
        so their entries and specs go), then revoke the lease. Bounded by three ``etcd_timeout``.
        """
        deadline = time.monotonic() + 2 * self.config.etcd_timeout
        with self.state:
            self.leaving = True  # no claim, no rejoin from now on
            self._wait_written(lambda: bool(self.dirty or self.in_flight), deadline)
            lease, self.lease = self.lease, None
        if lease is not None:
            try:
                self.store.revoke(
                    lease, timeout=max(0.1, deadline + self.config.etcd_timeout - time.monotonic())
                )
            except StoreError as error:
                log.warning("cluster: node %r left without revoking its lease: %s", self.config.node, error)

    # ------------------------------------------------------------------ the writer: local -> etcd

    def write(self) -> None:
        """The writer thread: bring etcd up to date with the local table; never returns."""
        while True:
            with self.state:
                self.in_flight = set()
                self.state.notify_all()
                while not (self.dirty or self.node_dirty) or self.lease is None:
                    self.state.wait()
                lease = self.lease
                dirty, self.dirty = self.dirty, set()
                node_dirty, self.node_dirty = self.node_dirty, False
                self.in_flight = dirty
            try:
                for session_id in sorted(dirty):
                    self._sync(session_id, lease)
                self._sweep_suspects(lease)
                if node_dirty:
                    with self.state:
                        load = len(self.owned)
                    self.store.put(self.keys.node(self.config.node), self._sealed_record(load), lease)
            except StoreError as error:
                log.warning("cluster: etcd did not take node %r's writes: %s", self.config.node, error)
                with self.state:
                    if self.lease == lease:
                        self.dirty |= dirty
                        self.node_dirty = self.node_dirty or node_dirty
                time.sleep(0.2)

    def _sweep_suspects(self, lease: int) -> None:
        """Delete the claims of unknown outcome that etcd applied after all, once they are old enough."""
        with self.state:
            ripe = [
                (session_id, new)
                for session_id, (when, new) in self.suspect.items()
                if time.monotonic() - when > 2 * self.config.etcd_timeout
                and session_id not in self.owned
                and session_id not in self.starting
            ]
        for session_id, _new in ripe:
            key = self.keys.session(session_id)
            self.store.transaction(leased=[(key, lease)], deletes=[key])
            with self.state:
                self.suspect.pop(session_id, None)

    def _sync(self, session_id: str, lease: int) -> None:
        """
        Write one session's local state to etcd: its entry, or its deletion (and its spec's, if it
        ended for good). Every write is conditional on the entry being on this node's lease, so it
        is idempotent: one whose answer was lost can be sent again.
        """
        with self.state:
            if self.lease != lease or session_id not in self.owned:
                return  # not ours in etcd (a session of before a fence, or never claimed)
            spec = self.owned[session_id]
            value = super().snapshot().get(session_id)
            ending = session_id in self.ending
        key = self.keys.session(session_id)
        if value is None:
            deletes = [key] + ([self.keys.spec(session_id)] if ending else [])
            done, _ = self.store.transaction(leased=[(key, lease)], deletes=deletes)
            if not done and ending and self.store.get(key) is None:
                # Already gone (a delete whose answer was lost took the spec with it; or its entry
                # went with an old lease): the spec goes if it is still there and no node has the id.
                self.store.transaction(absent=[key], deletes=[self.keys.spec(session_id)])
            with self.state:
                if session_id not in super().snapshot():
                    self.owned.pop(session_id, None)
                    self.spec_unwritten.discard(session_id)
                    self.ending.discard(session_id)
                    self.node_dirty = True
            return
        info = _wire.loads(value)
        puts = [Put(key, self.sealer.seal(key, (self.config.node, value)), lease)]
        started = isinstance(info, SessionInfo) and info.status is SessionStatus.ACTIVE
        with self.state:
            unwritten = session_id in self.spec_unwritten
        if unwritten and not started:
            spec_now = None  # a new session's spec waits for it to be ACTIVE
        elif (
            spec is not None
            and isinstance(info, SessionInfo)
            and (unwritten or info.restarts != spec.restarts or (spec.failures and started))
        ):
            spec_now = attrs.evolve(spec, restarts=info.restarts, failures=0 if started else spec.failures)
        else:
            spec_now = None
        if spec_now is not None:
            spec_key = self.keys.spec(session_id)
            puts.append(Put(spec_key, self.sealer.seal(spec_key, spec_now)))
        done, _ = self.store.transaction(leased=[(key, lease)], puts=puts)
        with self.state:
            if not done:
                log.error("cluster: session %r's entry is no longer on this node's lease", session_id)
                self.owned.pop(session_id, None)
            elif session_id in self.owned and spec_now is not None:
                self.owned[session_id] = spec_now
                self.spec_unwritten.discard(session_id)

    # ------------------------------------------------------------------ re-placing dead nodes' sessions

    def _restart_watch(self) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            watch.close()

    def follow(self) -> None:
        """
        The watcher thread: any deletion under the cluster's prefix (a node's key, a session's entry:
        a lease expired) asks the replacer for a scan for orphans; never returns.
        """
        prefix = self.config.prefix.encode()
        while True:
            if self.lease is None:
                time.sleep(REJOIN_PAUSE)
                continue
            try:
                _, revision = self.store.range(self.keys.nodes, keys_only=True)
                self.watch = self.store.watch(prefix, revision + 1)
                self.scan_wanted.set()  # anything missed while not watching
                for kind, _key in self.watch:
                    if kind == "DELETE":
                        self.scan_wanted.set()
            except StoreError as error:
                log.debug("cluster: the watch of the cluster ended: %s", error)
                time.sleep(REJOIN_PAUSE)

    def replace(self) -> None:
        """The replacer thread: claim and start orphans (restartable sessions of no node); never returns."""
        while True:
            self.scan_wanted.wait()
            self.scan_wanted.clear()
            if self.lease is None:
                continue
            try:
                self._replace_orphans()
            except (StoreError, ClusterUnavailableError) as error:
                log.warning("cluster: the scan for orphaned sessions failed: %s", error)
                time.sleep(REJOIN_PAUSE)
                self.scan_wanted.set()

    def _replace_orphans(self) -> None:
        specs, _ = self.store.range(self.keys.specs, keys_only=True)
        live, _ = self.store.range(self.keys.sessions, keys_only=True)
        running = {ClusterKeys.last_part(item.key) for item in live}
        for listed in specs:
            session_id = ClusterKeys.last_part(listed.key)
            if session_id in running or session_id in self.starting:
                continue
            item = self.store.get(listed.key)  # only an orphan's spec is read whole
            if item is None:
                continue
            try:
                spec = self.sealer.open(item.key, item.value)
            except Exception as error:
                log.warning("cluster: cannot read the spec of session %r: %s", session_id, error)
                continue
            with self.state:
                load = len(self.owned)
            if load >= self.config.capacity:
                return
            time.sleep(REPLACE_SPREAD * load / self.config.capacity)  # the least loaded node claims first
            placement = Placement(self.config.node, spec.incarnation + 1, spec.restarts + 1, spec.created_at)
            try:
                self.create_here(
                    session_id, spec.options, placement, REPLACE_TIMEOUT, spec_revision=item.mod_revision
                )
            except ValueError:
                continue  # another node claimed it first
            except ClusterUnavailableError as error:
                log.warning("cluster: stopped re-placing sessions: %s", error)
                return  # fenced, stopping, or etcd away: the next scan goes on
            except Exception as error:
                log.error(
                    "cluster: re-placing session %r failed (its start is counted): %s", session_id, error
                )
                continue
            log.info("cluster: node %r re-placed session %r", self.config.node, session_id)


def _left(deadline: float, timeout: float | None) -> float | None:
    """What is left of a caller's *timeout* (None: no bound) at its *deadline*."""
    return None if timeout is None else max(0.0, deadline - time.monotonic())


def _thread(target: Callable[[], None], name: str) -> None:
    """
    Run *target* in a daemon thread; if it ever ends, by an error or not, the agent exits at once:
    an agent missing its keeper, watchdog or writer must not hold a lease (the Application's
    supervisor then restarts it, with the SessionManager and its sessions).
    """

    def run() -> None:
        try:
            target()
        except BaseException:
            log.critical("cluster: the agent's %s thread failed; the agent exits", name, exc_info=True)
        else:
            log.critical("cluster: the agent's %s thread ended; the agent exits", name)
        os._exit(70)

    threading.Thread(target=run, name=name, daemon=True).start()


def run_cluster_agent(tree: TreeContext, config: EtcdCluster, registry_timeout: float = 5.0) -> None:
    """
    The start of the node agent at *tree* (the registry's place in the Application); never returns.

    Ready once it serves the registry and the node-to-node endpoint; it joins the cluster from its
    keeper thread (not before it is ready: the Application starts while etcd is away, and its
    sessions wait for the join). Its process title says ``agent`` and its path.
    """
    _titles.set_title("agent", tree.shown_path)
    app = tree.parent()
    manager = SessionManagerHandle(
        app.address, app.path, tree.authkey, registry_timeout, config.node, forward=False
    )
    app_handle = SupervisorHandle(app.address, tree.authkey, app.path)
    clock = LeaseClock(lease_file(os.path.dirname(tree.address), app.path), create=True)
    table = ClusterTable(config, manager, app_handle, clock)
    server = peer.PeerServer(config.listen, table.peer_key, table.handle_peer, config.tls)
    table.port = server.port
    server.start()
    serve_table(tree, table)
    table.join()  # once, bounded: in the usual case the node is in the cluster when it is ready
    for target, name in (
        (table.keep, "cluster-keeper"),
        (table.guard, "cluster-watchdog"),
        (table.write, "cluster-writer"),
        (table.follow, "cluster-watcher"),
        (table.replace, "cluster-replacer"),
    ):
        _thread(target, name)
    _child.notify_ready()
    try:
        while True:
            signal.pause()  # SIGTERM raises ShutdownExit here
    finally:
        table.leave()
