"""
What the cluster keeps in etcd: the key layout, and values sealed with the cluster's secret.

Under the cluster's prefix:

- ``nodes/<node>``: a :class:`NodeRecord` (its endpoint, load and capacity), attached to the node's lease;
- ``sessions/<id>``: the owning node's name and the session's encoded ``SessionInfo``, attached to
  the owner's lease, so a dead node's sessions vanish with its lease;
- ``specs/<id>``: a :class:`SpecRecord` (the options to start it again) of each restartable session,
  attached to no lease: it outlives its node, so that another node can re-place the session.

Every value is a pickle behind an HMAC-SHA256 of it under a key derived from the secret: a node
unpickles nothing that a holder of the secret did not write, whoever else can write to etcd.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import pickle
from typing import Any

import attrs

from ..._keys import Key
from ..values import SessionOptions

__all__ = ["ClusterKeys", "NodeRecord", "SealError", "Sealer", "SpecRecord"]

_MAC = hashlib.sha256().digest_size


class SealError(ValueError):
    """A value in etcd does not carry the cluster's seal: written by someone without the secret."""


class Sealer:
    """
    Seals values with a key derived from the cluster's secret, each bound to the etcd key it is stored
    under, and opens only values sealed for that key: a sealed value copied to another key (a spec
    to another session id) does not open.
    """

    def __init__(self, secret: Key) -> None:
        self._key = secret.derive("otp-supervisor cluster entries")

    def _mac(self, key: bytes, payload: bytes) -> bytes:
        message = len(key).to_bytes(4, "big") + key + payload
        return hmac.new(self._key.material, message, hashlib.sha256).digest()

    def seal(self, key: bytes, value: Any) -> bytes:
        """*value* pickled, behind its seal for *key*."""
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return self._mac(key, payload) + payload

    def open(self, key: bytes, data: bytes) -> Any:
        """The value sealed in *data* for *key*; SealError if the seal is wrong (nothing is unpickled)."""
        mac, payload = data[:_MAC], data[_MAC:]
        if len(mac) != _MAC or not hmac.compare_digest(mac, self._mac(key, payload)):
            raise SealError("a cluster entry does not carry the cluster's seal for its key")
        return pickle.loads(payload)


@attrs.frozen
class NodeRecord:
    """A live node: where its endpoint listens, and its load (sessions it owns) and capacity."""

    node: str
    host: str
    port: int
    load: int
    capacity: int

    @property
    def ratio(self) -> float:
        return self.load / self.capacity


@attrs.frozen
class SpecRecord:
    """How to start a restartable session again elsewhere, and how often it has been placed."""

    session_id: str
    options: SessionOptions
    created_at: datetime.datetime
    incarnation: int
    restarts: int
    failures: int = 0
    """Re-placements of it that failed to start, in a row; it is given up after a few."""


@attrs.frozen
class ClusterKeys:
    """The key layout under one cluster's *prefix*."""

    prefix: str

    @property
    def nodes(self) -> bytes:
        return f"{self.prefix}nodes/".encode()

    @property
    def sessions(self) -> bytes:
        return f"{self.prefix}sessions/".encode()

    @property
    def specs(self) -> bytes:
        return f"{self.prefix}specs/".encode()

    def node(self, name: str) -> bytes:
        return self.nodes + name.encode()

    def session(self, session_id: str) -> bytes:
        return self.sessions + session_id.encode()

    def spec(self, session_id: str) -> bytes:
        return self.specs + session_id.encode()

    @staticmethod
    def last_part(key: bytes) -> str:
        """The node name or session id at the end of *key*."""
        return key.rsplit(b"/", 1)[-1].decode()
