"""The key helpers (``supervisor._keys``): zeroable keys, derivation, pickling, keep_only."""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import pickletools
from typing import Any

import pytest

from supervisor import _keys
from supervisor._keys import KEY_SIZE, Key, carried_by, keep_only
from supervisor._root import check_environment


class Holder:
    """An object of the user's that carries a key in an attribute (as a handle does)."""

    def __init__(self, key: Key) -> None:
        self.key = key


class TestKey:
    def test_a_random_key_has_32_bytes_and_differs_from_the_next(self) -> None:
        """Key.random() gives KEY_SIZE random bytes, different each time."""
        first, second = Key.random(), Key.random()
        assert KEY_SIZE == len(first) == 32
        assert first != second

    def test_a_key_never_shows_in_its_repr(self) -> None:
        """The repr says whether the key is zeroed, never its bytes."""
        key = Key(b"k" * 32)
        assert repr(key) == "<Key>"
        key.zero()
        assert repr(key) == "<Key: zeroed>"

    def test_zero_overwrites_the_bytes_in_place(self) -> None:
        """zero() overwrites the very bytearray that HMAC reads, so every holder loses the key."""
        key = Key(b"k" * 32)
        material = key.material
        key.zero()
        assert key.is_zeroed
        assert material == bytearray(32)

    def test_derive_is_hmac_sha256_of_the_label(self) -> None:
        """A session's key is HMAC-SHA256(tree key, its path); the tree key is unchanged."""
        tree = Key(b"t" * 32)
        derived = tree.derive("root/session_manager/abc")
        assert (
            bytes(derived.material)
            == hmac.new(b"t" * 32, b"root/session_manager/abc", hashlib.sha256).digest()
        )
        assert tree == Key(b"t" * 32)

    def test_a_key_pickles_as_a_bytearray_and_round_trips(self) -> None:
        """A key pickles as a bytearray (loaded straight into one) and unpickles into a new equal Key."""
        key = Key(b"p" * 32)
        data = pickle.dumps(key, protocol=pickle.HIGHEST_PROTOCOL)
        copy = pickle.loads(data)
        assert "BYTEARRAY8" in {op.name for op, _, _ in pickletools.genops(data)}
        assert b"p" * 32 not in data.replace(bytes(key.material), b"")  # once, in the bytearray
        assert copy == key and copy is not key

    def test_a_key_is_read_from_and_written_to_a_pipe(self) -> None:
        """write_to and read_from move the key's bytes through a descriptor; a short read is EOFError."""
        key = Key.random()
        reader, writer = os.pipe()
        try:
            key.write_to(writer)
            assert Key.read_from(reader) == key
            os.write(writer, b"short")
            os.close(writer)
            writer = -1
            with pytest.raises(EOFError):
                Key.read_from(reader)
        finally:
            os.close(reader)
            if writer != -1:
                os.close(writer)

    def test_a_key_is_not_hashable(self) -> None:
        """Keys compare by their bytes, which zeroing changes, so they have no hash."""
        with pytest.raises(TypeError):
            hash(Key(b"h" * 32))


@pytest.fixture
def own_keys_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """keep_only sees only the keys a test makes, not those of handles alive elsewhere in this process."""
    monkeypatch.setattr(_keys, "_held", {})


@pytest.mark.usefixtures("own_keys_only")
class TestKeepOnly:
    def test_carried_by_finds_the_keys_an_object_would_pickle(self) -> None:
        """Keys inside containers and attributes are found, and those in a lambda's closure (dill)."""
        first, second, third = Key(b"1" * 32), Key(b"2" * 32), Key(b"3" * 32)
        found = carried_by(([Holder(first)], {"k": second}, lambda: third))
        assert {id(key) for key in found} == {id(first), id(second), id(third)}

    def test_keep_only_zeroes_every_key_but_its_own_and_the_given(self) -> None:
        """keep_only(own, carriers) zeroes every other key this process holds."""
        own, given, other = Key(b"o" * 32), Key(b"g" * 32), Key(b"x" * 32)
        keep_only(own, (Holder(given),))
        assert not own.is_zeroed
        assert not given.is_zeroed
        assert other.is_zeroed

    def test_keep_only_none_zeroes_every_key(self) -> None:
        """A worker given no key keeps none."""
        keys = [Key(bytes([n]) * 32) for n in range(1, 4)]
        keep_only(None)
        assert all(key.is_zeroed for key in keys)


class TestCheckEnvironment:
    def test_none_means_inherit(self) -> None:
        """None is kept: the root inherits the caller's environment."""
        assert check_environment(None) is None

    def test_a_mapping_is_copied_into_a_dict(self) -> None:
        """A valid mapping comes back as a new dict of the same items."""
        env: dict[str, Any] = {"A": "1", "B": ""}
        checked = check_environment(env)
        assert checked == env and checked is not env

    @pytest.mark.parametrize(
        ("env", "error"),
        [
            ({"A=B": "1"}, ValueError),
            ({"": "1"}, ValueError),
            ({"A": "\0"}, ValueError),
            ({b"A": "1"}, TypeError),
        ],
    )
    def test_a_bad_environment_names_env(self, env: Any, error: type[Exception]) -> None:
        """Each bad name or value raises, naming 'env' and the bad item."""
        with pytest.raises(error, match="'env'"):
            check_environment(env)
