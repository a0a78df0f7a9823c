"""
Fixtures for tests against a real etcd: ``etcd`` (a server of the test's own), ``etcd_proxy`` (a
:class:`~tests.cluster.tcp_proxy.TcpProxy` in front of it) and ``etcd_client`` (etcd3gw clients that
are closed after the test).

These tests need the ``etcd`` executable (Debian: ``apt-get install etcd-server``; ``.ci/run``
installs it). Without it they fail, loudly: they are never skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import etcd3gw
import pytest
import requests

from .etcd_server import EtcdServer
from .tcp_proxy import TcpProxy

EtcdClientFactory = Callable[..., etcd3gw.Etcd3Client]


@pytest.fixture(scope="session", autouse=True)
def etcd_installed() -> str:
    """The etcd executable's path; fails every test here (never skips) when there is none."""
    path = shutil.which("etcd")
    if path is None:
        pytest.fail(
            "etcd is not on PATH: the tests in tests/cluster run a real etcd server. Install it "
            "(Debian/Ubuntu: sudo apt-get install etcd-server; .ci/run does this) and run again.",
            pytrace=False,
        )
    return path


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    """A running etcd of this test's own (data and log under tmp_path), stopped after the test."""
    with EtcdServer(data_dir=tmp_path / "etcd") as server:
        yield server


@pytest.fixture
def etcd_proxy(etcd: EtcdServer) -> Iterator[TcpProxy]:
    """A TCP proxy forwarding to the ``etcd`` fixture's client port, closed after the test."""
    with TcpProxy(etcd.host, etcd.port) as proxy:
        yield proxy


@pytest.fixture
def etcd_client() -> Iterator[EtcdClientFactory]:
    """
    ``etcd_client(host, port, timeout=5.0)``: an etcd3gw client, closed when the test ends.

    Its HTTP session ignores proxy settings from the environment (``http_proxy``), so it talks to
    127.0.0.1 directly, and knows the API path (``/v3/``, etcd 3.4) instead of asking ``/version``.
    """
    sessions: list[requests.Session] = []

    def connect(host: str, port: int, timeout: float = 5.0) -> etcd3gw.Etcd3Client:
        session = requests.Session()
        session.trust_env = False
        sessions.append(session)
        return etcd3gw.client(host=host, port=port, timeout=timeout, api_path="/v3/", session=session)

    yield connect
    for session in sessions:
        session.close()
