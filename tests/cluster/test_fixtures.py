"""The etcd test server and the TCP proxy, tested for real: etcd 3.4 over etcd3gw, and raw sockets."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import etcd3gw
import pytest
import requests
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError

from supervisor.testing import descendants

from .etcd_server import EtcdServer
from .tcp_proxy import TcpProxy

T = TypeVar("T")
EtcdClientFactory = Callable[..., etcd3gw.Etcd3Client]  # the etcd_client fixture

EVENTUALLY = 15.0  # seconds: an upper bound for what must happen "soon", generous for a loaded CI box
QUIET = 0.5  # seconds a test watches for something that must not happen


def eventually(attempt: Callable[[], T], timeout: float = EVENTUALLY) -> T:
    """Call *attempt* until it returns without raising (blocks up to *timeout*); then re-raise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what they point at."""
    found: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory's own fd, closed by now
            pass
    return found


def child_pids() -> set[int]:
    """Every process below this one, zombies included."""
    return {entry.pid for entry in descendants(os.getpid())}


# -- the etcd server ------------------------------------------------------------------------------


def test_put_and_get(etcd: EtcdServer, etcd_client: EtcdClientFactory) -> None:
    client = etcd_client(etcd.host, etcd.port)
    assert etcd.url == f"http://127.0.0.1:{etcd.port}"
    assert client.put("/test/key", "value")
    assert client.get("/test/key") == [b"value"]
    assert client.get("/test/absent") == []


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process *pid* listens on over TCP, from /proc (IPv6 as hex)."""
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{name}")
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                if table == "tcp":
                    address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.add((address, int(port, 16)))
    return found


def test_server_listens_on_loopback_only_and_logs_to_its_file(etcd: EtcdServer) -> None:
    assert etcd.host == "127.0.0.1"
    assert etcd.pid is not None
    assert listening_addresses(etcd.pid) == {("127.0.0.1", etcd.port), ("127.0.0.1", etcd.peer_port)}
    assert etcd.log_path.parent == etcd.data_dir
    assert (etcd.data_dir / "member").is_dir()
    assert f'"address":"127.0.0.1:{etcd.port}"' in etcd.log_path.read_text()


def test_lease_key_vanishes_after_its_ttl(etcd: EtcdServer, etcd_client: EtcdClientFactory) -> None:
    client = etcd_client(etcd.host, etcd.port)
    granted = time.monotonic()
    lease = client.lease(ttl=2)
    client.put("/test/leased", "v", lease=lease)
    client.put("/test/plain", "v")
    assert client.get("/test/leased") == [b"v"]

    def gone() -> None:
        assert client.get("/test/leased") == []

    eventually(gone)
    # etcd never expires a lease early: the key lived at least its TTL (measured from before the grant).
    assert time.monotonic() - granted >= 2.0
    assert client.get("/test/plain") == [b"v"]
    assert lease.refresh() == -1  # the lease is gone too


def test_restart_keeps_keys_leases_and_ports(etcd: EtcdServer, etcd_client: EtcdClientFactory) -> None:
    client = etcd_client(etcd.host, etcd.port)
    port, pid = etcd.port, etcd.pid
    lease = client.lease(ttl=60)
    client.put("/test/plain", "before")
    client.put("/test/leased", "before", lease=lease)

    etcd.restart()

    assert (etcd.port, etcd.url) == (port, f"http://127.0.0.1:{port}")
    assert etcd.pid != pid
    # The same client: its pooled connection died with the old process; requests opens another.
    assert client.get("/test/plain") == [b"before"]
    assert client.get("/test/leased") == [b"before"]
    assert lease.ttl() > 0


def test_kill_then_start_recovers_the_data(etcd: EtcdServer, etcd_client: EtcdClientFactory) -> None:
    client = etcd_client(etcd.host, etcd.port)
    client.put("/test/key", "committed")
    pid = etcd.pid
    assert pid is not None

    etcd.kill()

    assert not etcd.running
    assert pid not in child_pids()  # reaped: not even a zombie
    with pytest.raises(ConnectionFailedError):
        client.get("/test/key")
    etcd.start()
    assert client.get("/test/key") == [b"committed"]


def test_pause_makes_requests_time_out_and_resume_answers_them(
    etcd: EtcdServer, etcd_client: EtcdClientFactory
) -> None:
    client = etcd_client(etcd.host, etcd.port, timeout=1)
    client.put("/test/key", "v")

    etcd.pause()
    with pytest.raises(ConnectionTimeoutError):
        client.get("/test/key")
    etcd.resume()

    assert eventually(lambda: client.get("/test/key")) == [b"v"]


def test_stop_ends_a_paused_server(tmp_path: Path) -> None:
    server = EtcdServer(data_dir=tmp_path / "etcd", stop_timeout=EVENTUALLY)
    with server:
        pid = server.pid
        server.pause()
        server.stop()
        assert not server.running
        assert pid not in child_pids()


def test_a_temporary_data_dir_is_removed_and_a_given_one_kept(tmp_path: Path) -> None:
    with EtcdServer() as made:
        made_dir = made.data_dir
        assert made_dir.is_dir()
    assert not made_dir.exists()

    given = tmp_path / "given"
    with EtcdServer(data_dir=given) as server:
        assert server.data_dir == given
    assert (given / "member").is_dir()


def test_a_failed_start_raises_with_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    before = child_pids()
    server = EtcdServer(data_dir=tmp_path / "etcd", start_timeout=EVENTUALLY)
    server.data_dir.mkdir()
    (server.data_dir / "member").write_text("not a directory")  # etcd refuses this data directory
    with pytest.raises(RuntimeError, match="etcd exited") as failure:
        server.start()
    assert "log" in str(failure.value)
    assert not server.running
    assert child_pids() == before


# -- through the proxy ----------------------------------------------------------------------------


def test_get_through_the_proxy(
    etcd: EtcdServer, etcd_proxy: TcpProxy, etcd_client: EtcdClientFactory
) -> None:
    direct = etcd_client(etcd.host, etcd.port)
    proxied = etcd_client(*etcd_proxy.address)
    assert etcd_proxy.url == f"http://127.0.0.1:{etcd_proxy.port}"
    assert etcd_proxy.target == (etcd.host, etcd.port)
    direct.put("/test/key", "v")
    assert proxied.get("/test/key") == [b"v"]
    proxied.put("/test/other", "w")
    assert direct.get("/test/other") == [b"w"]


def test_blackhole_times_out_and_heal_restores(
    etcd: EtcdServer, etcd_proxy: TcpProxy, etcd_client: EtcdClientFactory
) -> None:
    proxied = etcd_client(*etcd_proxy.address, timeout=1)
    proxied.put("/test/key", "v")
    assert proxied.get("/test/key") == [b"v"]  # a pooled connection is open through the proxy

    etcd_proxy.cut("blackhole")
    assert etcd_proxy.mode == "blackhole"
    for client in (proxied, etcd_client(*etcd_proxy.address, timeout=1)):  # pooled, then a new one
        started = time.monotonic()
        with pytest.raises(ConnectionTimeoutError):  # silent: a timeout, not a refused connection
            client.get("/test/key")
        # The timeout is 1 s; a retry or a hang would take 2 s or more (slack for a loaded box).
        assert time.monotonic() - started < 1.9

    etcd_proxy.heal()
    assert eventually(lambda: proxied.get("/test/key")) == [b"v"]
    proxied.put("/test/key", "after")
    assert proxied.get("/test/key") == [b"after"]


def test_reset_fails_fast_and_heal_restores(
    etcd: EtcdServer, etcd_proxy: TcpProxy, etcd_client: EtcdClientFactory
) -> None:
    proxied = etcd_client(*etcd_proxy.address, timeout=10)
    proxied.put("/test/key", "v")

    etcd_proxy.cut("reset")
    assert etcd_proxy.mode == "reset"
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError):
        proxied.get("/test/key")
    assert time.monotonic() - started < 5  # refused at once, far below the 10 s timeout
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(etcd_proxy.address, timeout=5).close()

    etcd_proxy.heal()
    assert eventually(lambda: proxied.get("/test/key")) == [b"v"]


def test_cut_can_switch_modes(etcd: EtcdServer, etcd_proxy: TcpProxy, etcd_client: EtcdClientFactory) -> None:
    proxied = etcd_client(*etcd_proxy.address, timeout=1)
    modes = [etcd_proxy.mode]
    etcd_proxy.cut("reset")
    etcd_proxy.cut("blackhole")
    modes.append(etcd_proxy.mode)
    with pytest.raises(ConnectionTimeoutError):
        proxied.get("/test/key")
    etcd_proxy.cut("reset")
    modes.append(etcd_proxy.mode)
    with pytest.raises(ConnectionFailedError):
        proxied.get("/test/key")
    etcd_proxy.heal()
    etcd_proxy.heal()  # healing an open proxy changes nothing
    modes.append(etcd_proxy.mode)
    assert modes == ["open", "blackhole", "reset", "open"]
    assert eventually(lambda: proxied.get("/test/key")) == []
    with pytest.raises(ValueError, match="cut mode"):
        etcd_proxy.cut("drop")  # type: ignore[arg-type]


# -- the proxy on raw sockets ---------------------------------------------------------------------


class EchoServer:
    """A target that echoes every connection back until the client's end, one thread per connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.received = 0
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._connections.append(connection)
            thread = threading.Thread(target=self._echo, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, connection: socket.socket) -> None:
        try:
            while data := connection.recv(65536):
                with self._lock:
                    self.received += len(data)
                connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._acceptor.join(EVENTUALLY)
        with self._lock:
            for connection in self._connections:
                connection.close()
        for thread in self._threads:
            thread.join(EVENTUALLY)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


def test_proxy_forwards_both_ways_with_bounded_buffers(echo: EchoServer) -> None:
    payload = os.urandom(8 * 1024 * 1024)  # far more than the proxy's and the kernel's buffers
    with TcpProxy("127.0.0.1", echo.port, buffer_size=16384) as proxy:
        client = socket.create_connection(proxy.address, timeout=EVENTUALLY)
        with client:

            def send() -> None:
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)  # the end is passed on: the echo server then ends too

            sender = threading.Thread(target=send)
            sender.start()
            chunks = []
            while chunk := client.recv(1 << 20):
                chunks.append(chunk)
            sender.join(EVENTUALLY)
        assert b"".join(chunks) == payload


def test_blackhole_keeps_connections_open_and_silent(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        old = socket.create_connection(proxy.address, timeout=EVENTUALLY)
        old.sendall(b"ping")
        assert old.recv(4) == b"ping"

        proxy.cut("blackhole")
        new = socket.create_connection(proxy.address, timeout=EVENTUALLY)  # accepted...
        for sock in (old, new):
            sock.sendall(b"lost")
            sock.settimeout(QUIET)
            with pytest.raises(socket.timeout):  # ...and silent: no answer, no end, no reset
                sock.recv(4)
        assert echo.received == 4  # nothing passed through

        proxy.heal()
        for sock in (old, new):  # the held connections are dropped: an end or a reset
            sock.settimeout(EVENTUALLY)
            try:
                assert sock.recv(4) == b""
            except ConnectionResetError:
                pass
            sock.close()
        with socket.create_connection(proxy.address, timeout=EVENTUALLY) as fresh:
            fresh.sendall(b"pong")
            assert fresh.recv(4) == b"pong"


def test_reset_resets_connections_and_refuses_new_ones(echo: EchoServer) -> None:
    with TcpProxy("127.0.0.1", echo.port) as proxy:
        with socket.create_connection(proxy.address, timeout=EVENTUALLY) as old:
            old.sendall(b"ping")
            assert old.recv(4) == b"ping"
            proxy.cut("reset")
            with pytest.raises(ConnectionResetError):
                old.recv(4)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=EVENTUALLY)
        proxy.heal()
        with socket.create_connection(proxy.address, timeout=EVENTUALLY) as fresh:
            fresh.sendall(b"pong")
            assert fresh.recv(4) == b"pong"


def test_a_refused_target_resets_the_client() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections to it are refused
        with TcpProxy("127.0.0.1", port) as proxy, socket.create_connection(proxy.address) as client:
            client.settimeout(EVENTUALLY)
            with pytest.raises(ConnectionResetError):
                client.recv(1)


def test_proxy_controls_after_close_raise() -> None:
    proxy = TcpProxy("127.0.0.1", 9)
    proxy.close()
    proxy.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        proxy.cut("reset")


# -- nothing left behind --------------------------------------------------------------------------


def test_no_fd_or_process_left_behind(tmp_path: Path) -> None:
    def cycle(name: str) -> None:
        with EtcdServer(data_dir=tmp_path / name) as server, TcpProxy(server.host, server.port) as proxy:
            session = requests.Session()
            session.trust_env = False
            with session:
                client = etcd3gw.client(host=proxy.host, port=proxy.port, timeout=1, session=session)
                client.put("/test/key", "v")
                proxy.cut("blackhole")
                with pytest.raises(ConnectionTimeoutError):
                    client.get("/test/key")
                proxy.cut("reset")
                proxy.heal()
                server.restart()
                assert eventually(lambda: client.get("/test/key")) == [b"v"]
                server.pause()
                server.resume()
                server.kill()
                server.start()

    cycle("first")  # the first round may open what lives on (imports, caches)
    gc.collect()
    fds, children = open_fds(), child_pids()
    cycle("second")
    gc.collect()
    assert open_fds() == fds
    assert child_pids() == children
