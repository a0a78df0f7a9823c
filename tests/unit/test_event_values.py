"""The values event streams yield, and the checks a handle makes before it subscribes."""

from __future__ import annotations

import datetime
import pickle

import pytest

from supervisor import Event, ExitReason, SessionEvent
from supervisor.messaging.events import EVENT_KINDS, MAX_BUFFER, check_buffer
from supervisor.sessions.events import SESSION_EVENT_KINDS

AT = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


class TestValues:
    def test_event_kinds_are_the_documented_five(self) -> None:
        assert {"started", "exited", "restarted", "intensity_reached", "lost"} == EVENT_KINDS

    def test_session_event_kinds_are_the_documented_five(self) -> None:
        assert {"created", "active", "down", "terminated", "lost"} == SESSION_EVENT_KINDS

    @pytest.mark.parametrize(
        "value",
        [
            Event("exited", "root/a", 42, ExitReason.killed(), AT),
            Event("lost", "root", 7, None, AT, count=12),
            SessionEvent("down", "sid", 42, ExitReason.shutdown(), AT),
        ],
        ids=lambda v: f"{type(v).__name__}-{v.kind}",
    )
    def test_values_are_frozen_and_pickle_to_equal_values(self, value: object) -> None:
        assert pickle.loads(pickle.dumps(value)) == value
        with pytest.raises(AttributeError):
            value.kind = "started"  # type: ignore[attr-defined]

    def test_an_unknown_kind_is_refused(self) -> None:
        with pytest.raises(ValueError, match="kind"):
            Event("respawned", "root/a", 1, None, AT)
        with pytest.raises(ValueError, match="kind"):
            SessionEvent("started", "sid", 1, None, AT)


class TestBuffer:
    @pytest.mark.parametrize("good", [1, 1000, MAX_BUFFER])
    def test_a_good_buffer_is_kept(self, good: int) -> None:
        assert check_buffer(good) == good

    @pytest.mark.parametrize("bad", [0, -1, MAX_BUFFER + 1])
    def test_a_buffer_out_of_range_is_a_value_error_naming_it(self, bad: int) -> None:
        with pytest.raises(ValueError, match=r"'buffer' must be from 1 to"):
            check_buffer(bad)

    @pytest.mark.parametrize("bad", [1.0, "10", True, None])
    def test_a_buffer_that_is_no_int_is_a_type_error_naming_it(self, bad: object) -> None:
        with pytest.raises(TypeError, match="'buffer' must be an int"):
            check_buffer(bad)
