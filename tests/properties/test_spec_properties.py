"""Properties of ChildSpec and SupervisorSpec over generated fields."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import ChildSpec, ChildType, Shutdown, Strategy, SupervisorSpec

from ..strategies import (
    INVALID_FLAGS,
    child_spec_kwargs,
    child_spec_lists,
    child_specs,
    invalid_child_field,
    max_restarts_values,
    max_seconds_values,
    strategies,
)


@given(child_spec_kwargs())
def test_valid_fields_build_a_spec_with_defaults_filled(kwargs: dict[str, Any]) -> None:
    """Any valid fields build a spec that keeps them, with shutdown filled in by type and ints made floats."""
    built = ChildSpec(**kwargs)

    assert kwargs["id"] == built.id
    assert kwargs["start"] is built.start
    assert tuple(kwargs.get("args", ())) == built.args
    assert dict(kwargs.get("kwargs", {})) == built.kwargs
    shutdown = kwargs.get("shutdown")
    if shutdown is None:
        expected = Shutdown.INFINITY if built.type is ChildType.SUPERVISOR else 5.0
        assert expected == built.shutdown
    elif isinstance(shutdown, Shutdown):
        assert shutdown is built.shutdown
    else:
        assert float(shutdown) == built.shutdown
        assert float is type(built.shutdown)
    for name in ("restart", "type", "start_mode", "start_timeout"):
        if name in kwargs:
            assert kwargs[name] == getattr(built, name)


@given(child_spec_kwargs(), invalid_child_field())
def test_one_invalid_field_raises_its_error_naming_it(
    kwargs: dict[str, Any], invalid: tuple[str, type[Exception], Any]
) -> None:
    """Replacing any one field with a bad value raises the error class for it, and the message names it."""
    name, error, value = invalid
    kwargs[name] = value

    try:
        ChildSpec(**kwargs)
    except (TypeError, ValueError) as raised:
        assert error is type(raised)
        assert f"'{name}'" in str(raised)
    else:
        raise AssertionError(f"ChildSpec accepted {name}={value!r}")


@given(child_specs)
def test_child_spec_pickles_to_an_equal_spec(built: ChildSpec) -> None:
    """Every valid spec survives pickling unchanged."""
    assert built == pickle.loads(pickle.dumps(built))


@given(child_spec_lists(), strategies, max_restarts_values, max_seconds_values)
def test_valid_supervisor_spec_builds_and_pickles(
    kids: list[ChildSpec], strategy: Any, max_restarts: int, max_seconds: float
) -> None:
    """
    Children with unique ids and valid flags build a SupervisorSpec that pickles unchanged; but
    simple_one_for_one takes exactly one, its template (OTP's bad_start_spec).
    """
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(kids) != 1:
        with pytest.raises(ValueError, match="'children' must be exactly one ChildSpec"):
            SupervisorSpec(children=kids, strategy=strategy)
        return
    built = SupervisorSpec(
        children=kids, strategy=strategy, max_restarts=max_restarts, max_seconds=max_seconds
    )

    assert tuple(kids) == built.children
    assert built == pickle.loads(pickle.dumps(built))


@given(child_spec_lists(max_size=4).filter(bool), st.data())
def test_a_repeated_id_is_rejected(kids: list[ChildSpec], data: st.DataObject) -> None:
    """Adding a second child with an existing id anywhere in the list raises ValueError naming it."""
    twin = data.draw(st.sampled_from(kids))
    position = data.draw(st.integers(min_value=0, max_value=len(kids)))
    kids.insert(position, twin)

    try:
        SupervisorSpec(children=kids)
    except ValueError as raised:
        assert "'children'" in str(raised)
        assert repr(twin.id) in str(raised)
    else:
        raise AssertionError("SupervisorSpec accepted a repeated id")


@given(st.data())
def test_one_invalid_flag_raises_its_error_naming_it(data: st.DataObject) -> None:
    """A bad strategy, max_restarts or max_seconds raises the error class for it, naming the flag."""
    name = data.draw(st.sampled_from(sorted(INVALID_FLAGS)))
    error, values = data.draw(st.sampled_from(INVALID_FLAGS[name]))
    value = data.draw(values)

    try:
        SupervisorSpec(children=[], **{name: value})
    except (TypeError, ValueError) as raised:
        assert error is type(raised)
        assert f"'{name}'" in str(raised)
    else:
        raise AssertionError(f"SupervisorSpec accepted {name}={value!r}")


@given(child_spec_lists(max_size=3), strategies, max_restarts_values, max_seconds_values)
def test_nested_supervisor_carries_its_spec(
    kids: list[ChildSpec], strategy: Any, max_restarts: int, max_seconds: float
) -> None:
    """ChildSpec.supervisor keeps exactly the children and flags it was given (sofo: one, else refused)."""
    if strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(kids) != 1:
        with pytest.raises(ValueError, match="'children' must be exactly one ChildSpec"):
            ChildSpec.supervisor("sub", kids, strategy, max_restarts, max_seconds)
        return
    built = ChildSpec.supervisor("sub", kids, strategy, max_restarts, max_seconds)

    assert SupervisorSpec(kids, strategy, max_restarts, max_seconds) == built.nested
    assert built == pickle.loads(pickle.dumps(built))
