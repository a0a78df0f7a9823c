"""EtcdCluster's checks, the seal on the cluster's entries, and the key layout."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import Application, EtcdCluster
from supervisor.sessions.cluster.records import ClusterKeys, NodeRecord, Sealer, SealError
from supervisor.sessions.cluster.store import prefix_end

SECRET = b"0123456789abcdef0123456789abcdef"


def make(**changes: object) -> EtcdCluster:
    options: dict[str, object] = {"endpoints": ["http://127.0.0.1:2379"], "node": "node-a", "secret": SECRET}
    options.update(changes)
    return EtcdCluster(**options)  # type: ignore[arg-type]


def test_defaults_are_the_documented_ones() -> None:
    config = make()
    assert (config.lease_ttl, config.capacity, config.listen, config.prefix) == (
        10,
        500,
        ("127.0.0.1", 0),
        "/otp-supervisor/",
    )
    assert config.endpoints == ("http://127.0.0.1:2379",)
    assert config.advertised_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("endpoints", [], TypeError),
        ("endpoints", ["127.0.0.1:2379"], ValueError),
        ("endpoints", ["ftp://host:1"], ValueError),
        ("endpoints", ["http://host:99999"], ValueError),
        ("endpoints", ["http://host:2379/v3"], ValueError),
        ("endpoints", [2379], TypeError),
        ("node", "", ValueError),
        ("node", "local", ValueError),
        ("node", "a/b", ValueError),
        ("node", 7, TypeError),
        ("secret", b"short", ValueError),
        ("secret", "a str secret of enough length", TypeError),
        ("lease_ttl", 1, ValueError),
        ("lease_ttl", 2.5, ValueError),
        ("lease_ttl", float("inf"), ValueError),
        ("lease_ttl", True, TypeError),
        ("capacity", 0, ValueError),
        ("capacity", 1.5, TypeError),
        ("listen", ("127.0.0.1",), TypeError),
        ("listen", ("127.0.0.1", 70000), ValueError),
        ("listen", ("0.0.0.0", 0), ValueError),
        ("prefix", "no-slashes", ValueError),
        ("etcd_timeout", 0, ValueError),
        ("node_timeout", "1", TypeError),
        ("tls", "cert.pem", TypeError),
    ],
)
def test_a_bad_argument_is_named(name: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"'{name}'|'advertise'"):
        make(**{name: value})


def test_a_wildcard_listen_address_needs_an_advertised_host() -> None:
    assert make(listen=("0.0.0.0", 7000), advertise="10.0.0.5").advertised_host == "10.0.0.5"


def test_the_secret_is_held_as_a_key_never_shown_and_the_config_pickles() -> None:
    config = make()
    assert "0123" not in repr(config)
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and copy.secret == config.secret


def test_application_refuses_a_cluster_that_is_not_an_etcd_cluster() -> None:
    with pytest.raises(TypeError, match="'cluster'"):
        Application(cluster={"endpoints": ["http://127.0.0.1:2379"]})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'cluster'"):
        Application.child_spec(cluster="etcd")  # type: ignore[arg-type]


@given(st.binary(max_size=200))
def test_a_sealed_value_opens_only_with_the_same_secret_key_and_bytes(payload: bytes) -> None:
    sealer = Sealer(make().secret)
    key = b"/p/specs/s1"
    sealed = sealer.seal(key, payload)
    assert sealer.open(key, sealed) == payload
    with pytest.raises(SealError):
        Sealer(make(secret=b"another secret of 32 bytes......").secret).open(key, sealed)
    with pytest.raises(SealError):
        sealer.open(b"/p/specs/s2", sealed)  # copied under another key: refused
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(SealError):
        sealer.open(key, bytes(tampered))
    with pytest.raises(SealError):
        sealer.open(key, pickle.dumps(payload))  # unsealed: never unpickled


def test_keys_live_under_the_prefix() -> None:
    keys = ClusterKeys("/p/")
    assert keys.node("a") == b"/p/nodes/a"
    assert keys.session("s1") == b"/p/sessions/s1"
    assert keys.spec("s1") == b"/p/specs/s1"
    assert ClusterKeys.last_part(keys.session("s1")) == "s1"
    assert NodeRecord("a", "h", 1, 5, 10).ratio == 0.5


@given(st.binary(min_size=1, max_size=20))
def test_prefix_end_bounds_exactly_the_keys_with_the_prefix(prefix: bytes) -> None:
    end = prefix_end(prefix)
    if prefix.rstrip(b"\xff") == b"":
        assert end == b"\0"  # etcd's "every key from the start key on"
    else:
        assert prefix < end and prefix + b"\xff" * 5 < end
        assert end <= prefix.rstrip(b"\xff")[:-1] + bytes([prefix.rstrip(b"\xff")[-1] + 1])
