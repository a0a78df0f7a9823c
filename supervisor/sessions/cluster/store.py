"""
The node agent's view of etcd: a few bounded requests over etcd's JSON gateway (``etcd3gw``).

Every method makes one HTTP request to one endpoint (trying the next endpoint when one refuses the
connection), bounded by the cluster's ``etcd_timeout``, and raises :class:`StoreError` when etcd does
not answer or answers with an error. Keys and values are bytes (the gateway carries them base64). A
request that timed out may still have been applied: callers make every write idempotent or compare
before they write (transactions). Each thread uses its own HTTP session; ``requests`` sessions are not
meant to be shared across threads.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import etcd3gw
import requests
import urllib3

from .config import TlsFiles

__all__ = ["KeyValue", "Put", "Store", "StoreError", "Watch", "prefix_end"]


class StoreError(Exception):
    """etcd did not answer in time, refused the connection, or answered with an error."""


@attrs.frozen
class KeyValue:
    """One key of a range read, with its revisions and lease."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@attrs.frozen
class Put:
    """A put inside a transaction; *lease* 0 for none."""

    key: bytes
    value: bytes
    lease: int = 0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes a range read of *prefix* cover every key that starts with it."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _key_value(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=_unb64(item.get("key")),
        value=_unb64(item.get("value")),
        create_revision=int(item.get("create_revision", 0)),
        mod_revision=int(item.get("mod_revision", 0)),
        lease=int(item.get("lease", 0)),
    )


def _not_sent(error: requests.exceptions.RequestException) -> bool:
    """True if *error* means the request never reached etcd (no connection was made)."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(error, requests.exceptions.ConnectionError) or not error.args:
        return False
    reason = getattr(error.args[0], "reason", None)  # urllib3's MaxRetryError wraps why it failed
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def _revision(answer: dict[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))


class Store:
    """Bounded requests to etcd; usable from any thread of one process (not across a fork)."""

    def __init__(self, endpoints: Sequence[str], timeout: float, tls: TlsFiles | None = None) -> None:
        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        self.tls = tls
        self._local = threading.local()
        self._preferred = 0

    def close(self) -> None:
        """Close this thread's HTTP connections."""
        clients: list[etcd3gw.Etcd3Client] | None = getattr(self._local, "clients", None)
        for client in clients or ():
            client.session.close()
        self._local.clients = None

    # ------------------------------------------------------------------ plumbing

    def _clients(self) -> list[etcd3gw.Etcd3Client]:
        clients: list[etcd3gw.Etcd3Client] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = []
            for url in self.endpoints:
                parts = urllib.parse.urlsplit(url)
                session = requests.Session()
                session.trust_env = False  # etcd is reached directly, never through $http_proxy
                if self.tls is not None:
                    session.verify = self.tls.cafile
                    session.cert = (self.tls.certfile, self.tls.keyfile)
                clients.append(
                    etcd3gw.Etcd3Client(
                        host=parts.hostname or "127.0.0.1",
                        port=parts.port or (443 if parts.scheme == "https" else 2379),
                        protocol=parts.scheme,
                        timeout=self.timeout,
                        api_path="/v3/",
                        session=session,
                    )
                )
            self._local.clients = clients
        return clients

    def post(
        self, path: str, payload: dict[str, Any], timeout: float | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        """
        POST *payload* to the gateway's *path* (``"/kv/range"``...); its JSON answer. Blocks *timeout*
        seconds at most in all (by default the store's) over every endpoint tried, for a read or a
        renewal; a write may take up to twice that (its connects share the time, its answer has all
        that is left).

        An endpoint that refuses or does not accept the connection is skipped for the next one; one
        that took the request but did not answer in time is skipped too if the request is
        *idempotent* (a read, a renewal), else the request fails: it may have been applied.
        """
        clients = self._clients()
        first = self._preferred
        deadline = time.monotonic() + (timeout or self.timeout)
        last_error: BaseException | None = None
        for step in range(len(clients)):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            index = (first + step) % len(clients)
            client = clients[index]
            share = left / (len(clients) - step)  # a hung endpoint leaves time for the next ones
            # A write that reached an endpoint is not sent to the next: only its connect is shared.
            limit: float | tuple[float, float] = share if idempotent else (share, left)
            try:
                response = client.session.post(client.get_url(path), json=payload, timeout=limit)
            except requests.exceptions.RequestException as error:
                self._preferred = (index + 1) % len(clients)
                if idempotent or _not_sent(error):
                    last_error = error  # the next endpoint may answer
                    continue
                raise StoreError(f"etcd at {self.endpoints[index]} did not answer: {error}") from error
            if response.status_code != 200:
                if idempotent and response.status_code >= 500:  # a member without a leader, say
                    self._preferred = (index + 1) % len(clients)
                    last_error = StoreError(f"{response.status_code} {response.text[:200]}")
                    continue
                raise StoreError(
                    f"etcd at {self.endpoints[index]} refused {path}: {response.status_code} "
                    f"{response.text[:200]}"
                )
            self._preferred = index
            try:
                answer: dict[str, Any] = response.json()
            except ValueError as error:
                raise StoreError(f"etcd at {self.endpoints[index]} answered {path} with no JSON") from error
            return answer
        raise StoreError(f"no etcd endpoint answered ({', '.join(self.endpoints)}): {last_error}") from (
            last_error
        )

    # ------------------------------------------------------------------ leases

    def grant(self, ttl: int) -> int:
        """A new lease of *ttl* seconds; its id."""
        answer = self.post("/lease/grant", {"TTL": ttl, "ID": 0})
        if "ID" not in answer:
            raise StoreError(f"etcd granted no lease: {answer}")
        return int(answer["ID"])

    def keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew *lease*; its TTL in seconds, or -1 if it has expired (or never existed)."""
        answer = self.post("/lease/keepalive", {"ID": lease}, timeout, idempotent=True)
        result = answer.get("result", answer)
        return int(result.get("TTL", -1))

    def revoke(self, lease: int, timeout: float | None = None) -> None:
        """Revoke *lease*: every key attached to it is deleted now (an unknown lease is no error)."""
        try:
            self.post("/kv/lease/revoke", {"ID": lease}, timeout)
        except StoreError as error:
            if "not found" not in str(error):
                raise

    # ------------------------------------------------------------------ keys

    def get(self, key: bytes) -> KeyValue | None:
        """The key's value and revisions, or None."""
        answer = self.post("/kv/range", {"key": _b64(key)}, idempotent=True)
        kvs = answer.get("kvs") or ()
        return _key_value(kvs[0]) if kvs else None

    def range(self, prefix: bytes, keys_only: bool = False) -> tuple[list[KeyValue], int]:
        """Every key under *prefix* in one read, and the store's revision at that read."""
        payload: dict[str, Any] = {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))}
        if keys_only:
            payload["keys_only"] = True
        answer = self.post("/kv/range", payload, idempotent=True)
        return [_key_value(item) for item in answer.get("kvs") or ()], _revision(answer)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        """Put *value* under *key*, attached to *lease* (0: none); the store's revision after it."""
        payload: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            payload["lease"] = lease
        return _revision(self.post("/kv/put", payload))

    def delete(self, *keys: bytes) -> None:
        """Delete each of *keys* (one request each; a missing key is not an error)."""
        for key in keys:
            self.post("/kv/deleterange", {"key": _b64(key)})

    def transaction(
        self,
        absent: Sequence[bytes] = (),
        unchanged: Sequence[tuple[bytes, int]] = (),
        puts: Sequence[Put] = (),
        deletes: Sequence[bytes] = (),
        leased: Sequence[tuple[bytes, int]] = (),
    ) -> tuple[bool, int]:
        """
        Apply *puts* and *deletes* atomically if every key of *absent* does not exist, every key of
        *unchanged* still has its mod revision, and every key of *leased* exists attached to its
        lease: ``(True, revision)`` if applied (the revision its writes have), ``(False, revision)``
        if a comparison failed.
        """
        compare: list[dict[str, Any]] = [
            {"key": _b64(key), "result": "EQUAL", "target": "CREATE", "create_revision": 0} for key in absent
        ]
        compare += [
            {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}
            for key, revision in unchanged
        ]
        compare += [
            {"key": _b64(key), "result": "EQUAL", "target": "LEASE", "lease": lease} for key, lease in leased
        ]
        success: list[dict[str, Any]] = []
        for put in puts:
            request: dict[str, Any] = {"key": _b64(put.key), "value": _b64(put.value)}
            if put.lease:
                request["lease"] = put.lease
            success.append({"request_put": request})
        success += [{"request_delete_range": {"key": _b64(key)}} for key in deletes]
        answer = self.post("/kv/txn", {"compare": compare, "success": success, "failure": []})
        # The gateway leaves "succeeded" out of its answer when the comparison failed.
        return bool(answer.get("succeeded", False)), _revision(answer)

    def watch(self, prefix: bytes, start_revision: int, deletes_only: bool = True) -> Watch:
        """
        A stream of the changes under *prefix* from *start_revision* on; see :class:`Watch`. Blocks
        until etcd accepted the watch (bounded).
        """
        clients = self._clients()
        client = clients[self._preferred % len(clients)]
        create: dict[str, Any] = {
            "key": _b64(prefix),
            "range_end": _b64(prefix_end(prefix)),
            "start_revision": start_revision,
        }
        if deletes_only:
            create["filters"] = ["NOPUT"]
        try:
            response = client.session.post(
                client.get_url("/watch"),
                json={"create_request": create},
                stream=True,
                timeout=(self.timeout, None),
            )
        except requests.exceptions.RequestException as error:
            raise StoreError(f"etcd did not start a watch: {error}") from error
        if response.status_code != 200:
            response.close()
            raise StoreError(f"etcd refused a watch: {response.status_code}")
        return Watch(response)


class Watch:
    """
    The changes etcd streams for one watch: iterate it for ``(kind, key)`` pairs (kind ``"PUT"`` or
    ``"DELETE"``). Iteration blocks until etcd sends something; :meth:`close` from another thread
    ends it (the iterator then raises StoreError, as it does when etcd goes away).
    """

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def close(self) -> None:
        """End the stream; does not block."""
        raw = getattr(self._response, "raw", None)
        connection = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
        sock = getattr(getattr(connection, "sock", None), "shutdown", None)
        if sock is not None:
            try:
                sock(2)
            except OSError:
                pass
        self._response.close()

    def _lines(self) -> Iterator[bytes]:
        buffer = b""
        for data in self._response.iter_content(chunk_size=None):
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            yield from (line for line in lines if line.strip())
        if buffer.strip():
            yield buffer

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        try:
            for line in self._lines():
                chunk = json.loads(line)
                if "error" in chunk:
                    raise StoreError(f"etcd ended the watch: {chunk['error']}")
                result = chunk.get("result", {})
                if result.get("canceled"):
                    raise StoreError(f"etcd canceled the watch: {result.get('cancel_reason', '')}")
                for event in result.get("events") or ():
                    yield event.get("type", "PUT"), _unb64(event.get("kv", {}).get("key"))
        except (requests.exceptions.RequestException, OSError, ValueError, AttributeError) as error:
            raise StoreError(f"the watch ended: {error}") from error
        raise StoreError("etcd closed the watch")
