"""
:class:`EtcdCluster`: how an Application joins a cluster of Applications that share one session
registry in etcd. A frozen value, checked when built; it imports nothing of etcd.
"""

from __future__ import annotations

import math
import numbers
import re
import urllib.parse
from typing import Any

import attrs

from ..._keys import Key

__all__ = ["EtcdCluster", "TlsFiles"]

MIN_SECRET_BYTES = 16
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _to_endpoints(value: Any) -> Any:
    return (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else value


def _check_endpoints(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, tuple) or not value:
        raise TypeError(f"'endpoints' must be a non-empty list of etcd URLs (got {value!r})")
    for url in value:
        if not isinstance(url, str):
            raise TypeError(f"'endpoints' must hold URL strings (got {url!r} that is a {type(url).__name__})")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'endpoints' must be http:// or https:// URLs with a host (got {url!r})")
        try:
            _ = parts.port
        except ValueError as error:
            raise ValueError(f"'endpoints' has a bad port in {url!r}: {error}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"'endpoints' must be bare URLs, scheme://host:port (got {url!r})")


def _check_node(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"'node' must be a str (got {value!r} that is a {type(value).__name__})")
    if not _NODE_NAME.match(value) or value == "local":
        raise ValueError(
            "'node' must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit, "
            f"and not 'local' (got {value!r})"
        )


def _check_ttl(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"'lease_ttl' must be seconds (got {value!r} that is a {type(value).__name__})")
    if not math.isfinite(value) or value < 2 or value != math.floor(value):
        raise ValueError(
            f"'lease_ttl' must be a whole number of seconds >= 2 (etcd grants whole seconds; got {value!r})"
        )


def _check_seconds(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(
            f"'{attribute.name}' must be seconds > 0 (got {value!r} that is a {type(value).__name__})"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{attribute.name}' must be finite seconds > 0 (got {value!r})")


def _check_capacity(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"'capacity' must be an int >= 1 (got {value!r} that is a {type(value).__name__})")
    if value < 1:
        raise ValueError(f"'capacity' must be an int >= 1 (got {value!r})")


def _to_key(value: Any) -> Any:
    return Key(value) if isinstance(value, (bytes, bytearray)) and not isinstance(value, Key) else value


def _check_secret(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Key):
        raise TypeError(f"'secret' must be bytes (got a {type(value).__name__})")
    if len(value) < MIN_SECRET_BYTES:
        raise ValueError(
            f"'secret' must be at least {MIN_SECRET_BYTES} random bytes, shared by every node "
            f"(got {len(value)} bytes)"
        )


def _to_address(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check_listen(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], int)
        or isinstance(value[1], bool)
    ):
        raise TypeError(f"'{attribute.name}' must be a (host, port) tuple (got {value!r})")
    if not value[0] or not 0 <= value[1] <= 65535:
        raise ValueError(f"'{attribute.name}' must be a host and a port from 0 to 65535 (got {value!r})")


def _check_advertise(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"'advertise' must be a host name or address, or None (got {value!r})")


def _check_prefix(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"'prefix' must be a str (got {value!r} that is a {type(value).__name__})")
    if not value.startswith("/") or not value.endswith("/") or "\0" in value:
        raise ValueError(f"'prefix' must start and end with '/' (got {value!r})")


@attrs.frozen
class TlsFiles:
    """
    TLS for the node-to-node endpoint: this node's certificate and key, and the CA file that signs
    every node's certificate (each side checks the other's). PEM file paths, read when used.
    """

    certfile: str
    keyfile: str
    cafile: str


def _check_tls(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, TlsFiles):
        raise TypeError(
            f"'{attribute.name}' must be a TlsFiles or None (got {value!r} that is a {type(value).__name__})"
        )


_check_etcd_tls = _check_tls


@attrs.frozen(repr=False)
class EtcdCluster:
    """
    Join an Application to a cluster whose session registry is etcd: ``Application(cluster=...)``.

    Args:
        endpoints: etcd's client URLs (its JSON gateway), tried in order, e.g.
            ``["http://127.0.0.1:2379"]``.
        node: this node's name, unique in the cluster (letters, digits, ``_.-``; not ``local``).
        lease_ttl: whole seconds >= 2: the node's lease, renewed every third of it. A node that
            cannot renew it stops its own sessions within it (fencing); a dead node's sessions are
            gone from the registry, and re-placed elsewhere, about this long after its death.
        capacity: how many sessions this node takes; placement picks the node with the lowest
            live sessions / capacity, and never one that is full.
        secret: at least 16 random bytes shared by every node: the key of the node-to-node
            endpoint (the same mutual handshake as the package's Unix sockets) and of the entries'
            seals in etcd (a node trusts an entry only if it carries the secret's MAC).
        listen: ``(host, port)`` the node-to-node TCP endpoint binds; loopback and a free port by
            default. Bind another address for machines to reach each other.
        advertise: the host other nodes connect to; by default the *listen* host (which must then
            not be a wildcard such as ``0.0.0.0``).
        tls: a :class:`TlsFiles` to run the node-to-node endpoint over TLS (mutual); None for plain
            TCP (authenticated by the secret, not encrypted).
        etcd_tls: a :class:`TlsFiles` for ``https://`` endpoints: etcd's server certificate is
            checked against its *cafile*, and *certfile*/*keyfile* are this node's client
            certificate; None: an https endpoint is checked against the default CA bundle, with no
            client certificate.
        prefix: the key prefix in etcd under which this cluster keeps everything.
        etcd_timeout: the bound of each request to etcd, in seconds.
        node_timeout: the bound of connecting to another node (connect and handshake), in seconds.

    Raises:
        TypeError, ValueError: a bad argument, named.
    """

    endpoints: tuple[str, ...] = attrs.field(converter=_to_endpoints, validator=_check_endpoints)
    node: str = attrs.field(validator=_check_node)
    secret: Key = attrs.field(converter=_to_key, validator=_check_secret, eq=False)
    lease_ttl: float = attrs.field(default=10, validator=_check_ttl)
    capacity: int = attrs.field(default=500, validator=_check_capacity)
    listen: tuple[str, int] = attrs.field(
        default=("127.0.0.1", 0), converter=_to_address, validator=_check_listen
    )
    advertise: str | None = attrs.field(default=None, validator=_check_advertise)
    tls: TlsFiles | None = attrs.field(default=None, validator=_check_tls)
    etcd_tls: TlsFiles | None = attrs.field(default=None, validator=_check_etcd_tls)
    prefix: str = attrs.field(default="/otp-supervisor/", validator=_check_prefix)
    etcd_timeout: float = attrs.field(default=2.0, validator=_check_seconds)
    node_timeout: float = attrs.field(default=2.0, validator=_check_seconds)

    def __attrs_post_init__(self) -> None:
        if self.advertise is None and self.listen[0] in ("0.0.0.0", "::", ""):
            raise ValueError(
                f"'advertise' must name the host other nodes reach when 'listen' is a wildcard "
                f"(got listen={self.listen!r})"
            )

    def __repr__(self) -> str:
        return (
            f"EtcdCluster(endpoints={list(self.endpoints)!r}, node={self.node!r}, lease_ttl={self.lease_ttl})"
        )

    @property
    def answer_slack(self) -> float:
        """
        Seconds the node's answer to a client may take beyond the request's own timeout: the reads of
        etcd that place a session or find its owner, the connection to the owner, and the wait for
        etcd to take the writes.
        """
        return self.node_timeout + 12 * self.etcd_timeout + 2.0

    @property
    def ttl(self) -> int:
        """The lease's TTL in whole seconds."""
        return int(self.lease_ttl)

    @property
    def advertised_host(self) -> str:
        """The host other nodes connect to."""
        return self.advertise or self.listen[0]
