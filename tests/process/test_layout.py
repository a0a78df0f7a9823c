"""
The package's layers, seen from a fresh interpreter: a client loads no engine module.

A handle travels to workers and other programs by pickle; unpickling it imports ``supervisor`` and the
handle's module, and that must not pull in the supervisor machinery (the engine, the session
processes). The import-linter contracts in ``pyproject.toml`` check the same statically; this checks
what really gets imported, and that the unpickled handles work.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from typing import Any

from supervisor import Application, ChildSpec, SupervisorHandle

from ..children import sleep_forever

HANG_TIMEOUT = 60.0
"""Seconds for the fresh interpreter; only reached if something hangs."""

ENGINE_MODULES = (
    "supervisor._engine",
    "supervisor.sessions.manager",
    "supervisor.sessions.publisher",
    "supervisor.sessions.registry_server",
    "supervisor.sessions.registry_writer",
    "supervisor.sessions.session",
)

_PROGRAM = """
import json, pickle, sys
handles = pickle.loads(sys.stdin.buffer.read())
results = {
    "children": [info.id for info in handles["tree"].which_children()],
    "sessions": [info.session_id for info in handles["sessions"].list_sessions()],
    "modules": sorted(name for name in sys.modules if name.startswith("supervisor")),
}
print(json.dumps(results))
"""


def loaded_in_fresh_interpreter(payload: bytes) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM], input=payload, capture_output=True, timeout=HANG_TIMEOUT, check=True
    )
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_unpickled_handles_work_without_loading_the_engine(start_tree: Any, app: Application) -> None:
    """A SupervisorHandle and a SessionManagerHandle unpickled elsewhere answer; no engine module loads."""
    tree: SupervisorHandle = start_tree([ChildSpec("worker", sleep_forever)])
    session_id = app.session_manager.create_session()
    payload = pickle.dumps({"tree": tree, "sessions": app.session_manager})

    result = loaded_in_fresh_interpreter(payload)

    assert result["children"] == ["worker"]
    assert [session_id] == result["sessions"]
    assert "supervisor.handle" in result["modules"]
    assert [name for name in result["modules"] if name.startswith(ENGINE_MODULES)] == []


def test_importing_the_package_loads_no_engine_module() -> None:
    """``import supervisor`` (every public name) loads neither the engine nor the session processes."""
    program = "import json, sys, supervisor; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, timeout=HANG_TIMEOUT, check=True
    )
    loaded = json.loads(done.stdout)

    assert "supervisor.sessions.application" in loaded
    assert [name for name in loaded if name.startswith(ENGINE_MODULES)] == []
