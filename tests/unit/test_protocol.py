"""The control protocol: private directory, socket paths, mutual authentication, messages."""

from __future__ import annotations

import datetime
import os
import pickle
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from supervisor import ChildSpec, ExitReason
from supervisor._addresses import make_private_dir, socket_path
from supervisor._protocol import (
    NEWS_EXITED,
    NEWS_KINDS,
    ChildAddress,
    CountChildren,
    DeleteChild,
    GetChildspec,
    Notice,
    RestartChild,
    StartChild,
    Stop,
    Subscribe,
    TerminateChild,
    WhichChild,
    WhichChildren,
)
from supervisor._transport import (
    ClientHandshake,
    KeyMismatch,
    ServerHandshake,
    accept_authenticated,
    connect,
    listen,
)

from .. import children

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
JOIN_TIMEOUT = 30.0
"""Seconds to wait for a helper thread; only reached if the protocol hangs."""


@pytest.fixture
def private_dir() -> Iterator[str]:
    path = make_private_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class InThread:
    """Run *function* on a thread; ``result()`` joins it and returns its value or raises its error."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(function,))
        self.thread.start()

    def _run(self, function: Callable[[], Any]) -> None:
        try:
            self.value = function()
        except BaseException as error:
            self.error = error

    def result(self) -> Any:
        self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), "protocol thread hung"
        if self.error is not None:
            raise self.error
        return self.value


class TestPrivateDirectory:
    def test_mode_is_0700(self, private_dir: str) -> None:
        """The tree's directory is a directory only its owner can enter."""
        info = os.stat(private_dir)

        assert stat.S_ISDIR(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()

    def test_each_tree_gets_its_own(self) -> None:
        """Two calls give two distinct directories."""
        first, second = make_private_dir(), make_private_dir()
        try:
            assert first != second
        finally:
            shutil.rmtree(first)
            shutil.rmtree(second)


class TestSocketPath:
    def test_is_stable(self, private_dir: str) -> None:
        """The same tree path always gives the same address, so a restarted supervisor keeps it."""
        assert socket_path(private_dir, "root/sub") == socket_path(private_dir, "root/sub")

    def test_is_distinct_per_tree_path(self, private_dir: str) -> None:
        """Different tree paths give different addresses."""
        paths = ["root", "root/a", "root/b", "root/a/b", "root/a/b/c", "root/ab"]

        addresses = {socket_path(private_dir, p) for p in paths}

        assert len(addresses) == len(paths)

    def test_lies_in_the_private_directory_and_fits_a_unix_socket(self, private_dir: str) -> None:
        """The address is inside the private directory and short enough for AF_UNIX, however deep the tree."""
        address = socket_path(private_dir, "root/" + "/".join(["a-long-child-id"] * 50))

        assert os.path.dirname(address) == private_dir
        assert len(address.encode()) < 108


class TestListen:
    def test_socket_file_is_owner_only(self, private_dir: str) -> None:
        """The listening socket file has mode 0600."""
        address = socket_path(private_dir, "root")
        server = listen(address)
        try:
            info = os.stat(address)
            assert stat.S_ISSOCK(info.st_mode)
            assert stat.S_IMODE(info.st_mode) == 0o600
        finally:
            server.close()

    def test_replaces_a_stale_socket_file(self, private_dir: str) -> None:
        """A file left at the address by a dead predecessor is replaced."""
        address = socket_path(private_dir, "root")
        listen(address).close()  # leaves its socket file behind

        server = listen(address)
        try:
            assert stat.S_ISSOCK(os.stat(address).st_mode)
        finally:
            server.close()


class TestAuthentication:
    def test_right_key_connects_both_ways(self, private_dir: str) -> None:
        """With the same key, both ends get a connection that carries pickled messages either way."""
        address = socket_path(private_dir, "root")
        server = listen(address)
        try:
            accepting = InThread(lambda: accept_authenticated(server, KEY))
            client = connect(address, KEY)
            served = accepting.result()
            assert served is not None
            try:
                client.send(WhichChildren())
                assert served.recv() == WhichChildren()
                served.send(("ok", []))
                assert client.recv() == ("ok", [])
            finally:
                client.close()
                served.close()
        finally:
            server.close()

    def test_wrong_key_is_refused_on_both_sides(self, private_dir: str) -> None:
        """A client with another key gets ConnectionError; the server returns None."""
        address = socket_path(private_dir, "root")
        server = listen(address)
        try:
            accepting = InThread(lambda: accept_authenticated(server, KEY))
            with pytest.raises(ConnectionError):
                connect(address, OTHER_KEY)
            assert accepting.result() is None
        finally:
            server.close()

    def test_client_refuses_a_server_without_the_key(self, private_dir: str) -> None:
        """A peer that plays the protocol but cannot prove the key is refused by the client."""
        address = socket_path(private_dir, "root")
        server = listen(address)

        def impostor() -> None:
            sock, _ = server.accept()
            with sock:
                sock.sendall(os.urandom(32))  # our nonce
                received = b""
                while len(received) < 64:  # the client's digest, then its nonce
                    chunk = sock.recv(64 - len(received))
                    assert chunk, "client hung up before sending its nonce"
                    received += chunk
                sock.sendall(os.urandom(32))  # a digest made without the key
                sock.recv(1)  # hold the line until the client has judged it

        try:
            serving = InThread(impostor)
            with pytest.raises(ConnectionError, match="does not hold"):
                connect(address, KEY)
            serving.result()
        finally:
            server.close()

    def test_client_that_hangs_up_is_refused(self, private_dir: str) -> None:
        """A client that closes during the handshake makes accept_authenticated return None."""
        address = socket_path(private_dir, "root")
        server = listen(address)
        try:
            accepting = InThread(lambda: accept_authenticated(server, KEY))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
                raw.connect(address)
            assert accepting.result() is None
        finally:
            server.close()

    def test_server_keeps_serving_after_a_refusal(self, private_dir: str) -> None:
        """After refusing a wrong key, the same listener authenticates the right one."""
        address = socket_path(private_dir, "root")
        server = listen(address)
        try:
            refusing = InThread(lambda: accept_authenticated(server, KEY))
            with pytest.raises(ConnectionError):
                connect(address, OTHER_KEY)
            assert refusing.result() is None

            accepting = InThread(lambda: accept_authenticated(server, KEY))
            client = connect(address, KEY)
            served = accepting.result()
            assert served is not None
            client.close()
            served.close()
        finally:
            server.close()

    def test_no_listener_is_file_not_found(self, private_dir: str) -> None:
        """Connecting where nothing listens raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            connect(socket_path(private_dir, "root"), KEY)


class TestClientHandshake:
    """The non-blocking client side (the registry's links) against the server's state machine."""

    @staticmethod
    def run(client_key: bytes, server_key: bytes) -> None:
        server = ServerHandshake(server_key)
        client = ClientHandshake(client_key)
        answer = client.feed(server.greeting[:10]) + client.feed(server.greeting[10:])
        assert not client.done
        reply = server.feed(answer)
        assert reply is not None
        assert client.feed(reply) == b""
        assert client.done

    def test_same_key_completes_in_pieces(self) -> None:
        """Fed the server's bytes in pieces, the client answers once and is done after the reply."""
        self.run(KEY, KEY)

    def test_wrong_key_is_a_key_mismatch(self) -> None:
        """A client with another key is refused by the server's state machine."""
        with pytest.raises(KeyMismatch):
            self.run(OTHER_KEY, KEY)

    def test_server_without_the_key_is_a_key_mismatch_on_the_client(self) -> None:
        """A server answering without the key is refused by the client."""
        server = ServerHandshake(OTHER_KEY)
        client = ClientHandshake(KEY)
        client.feed(server.greeting)
        with pytest.raises(KeyMismatch):
            client.feed(b"\0" * 32)


class TestMessages:
    @pytest.mark.parametrize(
        "request_",
        [
            StartChild(ChildSpec(id="db", start=children.sleep_forever, args=(1,))),
            TerminateChild("db"),
            RestartChild("db"),
            DeleteChild("db"),
            WhichChildren(),
            CountChildren(),
            ChildAddress("sub"),
            WhichChild("db"),
            GetChildspec("db"),
            Stop(),
            Subscribe(NEWS_KINDS, 10, nested=True),
            Notice(
                NEWS_EXITED,
                "db",
                42,
                datetime.datetime.now(datetime.timezone.utc),
                reason=ExitReason.killed(),
                restarting=True,
            ),
        ],
        ids=lambda r: type(r).__name__,
    )
    def test_requests_pickle_to_equal_values(self, request_: Any) -> None:
        """Every request type survives pickling unchanged."""
        assert pickle.loads(pickle.dumps(request_)) == request_

    def test_requests_of_different_types_differ(self) -> None:
        """Requests with the same child id but different types are not equal."""
        assert TerminateChild("db") != RestartChild("db")
