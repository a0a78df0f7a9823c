"""
Errors that say what happened (issue 7, items 25-28), through the public API and real processes.

Bad input is refused in the calling process, naming the option, before anything is sent or started:
each case checks the error's type, that its message names the option (or the child and its start
function), and that the process table holds no new process. Start functions of ``__main__`` (a
script's lambdas, closures and functions defined under the guard; a ``python -c`` program's
functions) run; a script without ``if __name__ == "__main__":`` fails with a message naming the
guard; a ``logging_config`` without ``disable_existing_loggers`` still gets the library's reports.
Scripts run in a subprocess from ``tmp_path``; ``HANG_TIMEOUT`` only guards against hangs.
"""

from __future__ import annotations

import importlib
import os
import resource
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor import (
    MIN_MEMORY_BYTES,
    Application,
    ChildSpec,
    LimitCeilings,
    Restart,
    SessionOptions,
    SupervisorError,
    SupervisorGoneError,
    UnreadableRequestError,
)
from supervisor.testing import descendants, wait_gone
from tests.children import HANG_TIMEOUT, Unpicklable, crash, sleep_with

from .helpers import settle

MAX_LIMIT = 2**63 - 1
NOFILE_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def live_descendants() -> set[int]:
    return {entry.pid for entry in descendants(os.getpid())}


@pytest.fixture(scope="module")
def app() -> Iterator[Application]:
    """One Application for the module's option cases (started before each test's leftover check)."""
    with Application() as application:
        yield application


def run_script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the Python script *path* in a new interpreter; blocks until it exits (HANG_TIMEOUT)."""
    return subprocess.run(
        [sys.executable, str(path), *args],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        cwd=path.parent,
    )


def write_script(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    return path


# ---------------------------------------------------------------------- item 25: session options

BAD_SESSION_OPTIONS: list[Any] = [
    pytest.param({"env": {"A=B": "1"}}, ValueError, "env", id="env-name-with-equals"),
    pytest.param({"env": {"A\0B": "1"}}, ValueError, "env", id="env-name-with-nul"),
    pytest.param({"env": {"": "1"}}, ValueError, "env", id="env-empty-name"),
    pytest.param({"env": {"A": "1\0"}}, ValueError, "env", id="env-value-with-nul"),
    pytest.param({"max_memory_bytes": 1000}, ValueError, "max_memory_bytes", id="memory-below-64MiB"),
    pytest.param({"max_memory_bytes": 2**64}, ValueError, "max_memory_bytes", id="memory-beyond-rlim_t"),
    pytest.param({"max_cpu_seconds": 2**63}, ValueError, "max_cpu_seconds", id="cpu-beyond-rlim_t"),
    pytest.param(
        {"max_open_files": NOFILE_HARD + 1}, ValueError, "max_open_files", id="open-files-above-hard-limit"
    ),
    pytest.param({"max_open_files": 2.5}, TypeError, "max_open_files", id="open-files-a-float"),
]


@pytest.mark.parametrize(("options", "error", "name"), BAD_SESSION_OPTIONS)
def test_a_bad_session_option_is_refused_in_the_caller_naming_it(
    app: Application, options: dict[str, Any], error: type[Exception], name: str
) -> None:
    """create_session raises TypeError/ValueError naming the option; no process, no entry, no child."""
    sessions = app.session_manager
    before = live_descendants()

    with pytest.raises(error, match=f"'{name}'") as caught:
        sessions.create_session(**options)

    assert not isinstance(caught.value, SupervisorError)
    assert sessions.list_sessions() == []
    assert sessions.supervisor.which_children() == []
    assert live_descendants() == before


def test_a_limit_above_the_hard_limit_names_the_ceiling(app: Application) -> None:
    """The message of a limit over the hard limit gives the ceiling, so the caller can fix it."""
    with pytest.raises(ValueError, match=f"at most {NOFILE_HARD}.*RLIMIT_NOFILE"):
        app.session_manager.create_session(max_open_files=NOFILE_HARD + 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(min_size=1, max_size=8).map(lambda text: text + "=")
    | st.text(max_size=8).map(lambda text: "\0" + text),
    value=st.text(max_size=8),
)
def test_any_env_name_with_equals_or_nul_is_a_value_error(name: str, value: str) -> None:
    """SessionOptions refuses every env name holding "=" or NUL, naming 'env'."""
    with pytest.raises(ValueError, match="'env'"):
        SessionOptions(env={name: value})


@settings(max_examples=60, deadline=None)
@given(
    option=st.sampled_from(["max_memory_bytes", "max_cpu_seconds", "max_open_files"]),
    value=st.integers(max_value=0) | st.integers(min_value=MAX_LIMIT + 1),
)
def test_any_limit_outside_the_platforms_range_is_a_value_error(option: str, value: int) -> None:
    """A limit below 1 or beyond 2**63 - 1 raises ValueError naming the option."""
    with pytest.raises(ValueError, match=f"'{option}'"):
        SessionOptions(**{option: value})


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_limit_within_its_ceiling_is_accepted(data: st.DataObject) -> None:
    """Every int from the option's minimum to its ceiling is accepted as given."""
    ceilings = LimitCeilings.current()
    option, minimum = data.draw(
        st.sampled_from(
            [("max_memory_bytes", MIN_MEMORY_BYTES), ("max_cpu_seconds", 1), ("max_open_files", 1)]
        )
    )
    value = data.draw(st.integers(min_value=minimum, max_value=getattr(ceilings, option)))

    assert getattr(SessionOptions(**{option: value}), option) == value


# ---------------------------------------------------------------------- item 25: Application and stop

BAD_APPLICATION_OPTIONS: list[Any] = [
    pytest.param({"registry_timeout": "x"}, TypeError, "registry_timeout", id="registry-timeout-a-str"),
    pytest.param({"registry_timeout": True}, TypeError, "registry_timeout", id="registry-timeout-a-bool"),
    pytest.param(
        {"registry_timeout": float("nan")}, ValueError, "registry_timeout", id="registry-timeout-nan"
    ),
    pytest.param({"registry_timeout": 0}, ValueError, "registry_timeout", id="registry-timeout-zero"),
    pytest.param({"logging_config": "debug"}, TypeError, "logging_config", id="logging-config-a-str"),
]


@pytest.mark.parametrize(("options", "error", "name"), BAD_APPLICATION_OPTIONS)
def test_a_bad_application_option_is_refused_when_built(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    """Application(...) raises TypeError/ValueError naming the option; nothing is started."""
    before = live_descendants()

    with pytest.raises(error, match=f"'{name}'"):
        Application(**options)

    assert live_descendants() == before


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        pytest.param(float("nan"), ValueError, id="nan"),
        pytest.param(-1.0, ValueError, id="negative"),
        pytest.param("1", TypeError, id="a-str"),
    ],
)
def test_a_bad_stop_timeout_is_refused_even_before_the_application_starts(
    timeout: Any, error: type[Exception]
) -> None:
    """Application().stop(timeout=...) checks its timeout, named, started or not."""
    with pytest.raises(error, match="'timeout'"):
        Application().stop(timeout=timeout)


def test_a_bad_registry_timeout_for_a_nested_application_is_refused(start_tree: Any) -> None:
    """session_manager_in(registry_timeout=-1) raises ValueError naming it before asking the tree."""
    handle = start_tree([])

    with pytest.raises(ValueError, match="'registry_timeout'"):
        Application.session_manager_in(handle, "application", registry_timeout=-1)


# ---------------------------------------------------------------------- item 26: start functions


def test_an_unpicklable_start_argument_is_refused_naming_the_child_and_function(start_tree: Any) -> None:
    """start_child raises TypeError naming the child, its start function and why, before sending."""
    handle = start_tree([])
    before = live_descendants()

    with pytest.raises(TypeError, match=r"'unsendable'.*tests\.children\.sleep_with.*Unpicklable does not"):
        handle.start_child(ChildSpec("unsendable", sleep_with, args=(Unpicklable(),)))

    assert handle.which_children() == []
    assert live_descendants() == before


def test_a_request_the_supervisor_cannot_unpickle_raises_unreadable_naming_why(
    start_tree: Any, tmp_path: Path
) -> None:
    """A start function from a module the root cannot import: UnreadableRequestError, tree unharmed."""
    handle = start_tree([])
    module_name = f"late_module_{uuid.uuid4().hex}"
    (tmp_path / f"{module_name}.py").write_text("def work():\n    pass\n")
    sys.path.insert(0, str(tmp_path))  # after the root was spawned: its sys.path lacks it
    try:
        module = importlib.import_module(module_name)
        with pytest.raises(UnreadableRequestError, match=rf"'late'.*{module_name}\.work") as caught:
            handle.start_child(ChildSpec("late", module.work))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module_name, None)

    assert not isinstance(caught.value, SupervisorGoneError)
    assert "ModuleNotFoundError" in caught.value.why
    assert handle.which_children() == []
    assert handle.start_child(ChildSpec("after", sleep_with)) is not None


MAIN_SCRIPTS = {
    "a-lambda-closing-over-a-local": """
        import pathlib, sys
        from supervisor import ChildSpec, Restart, StartMode, Supervisor, notify_ready

        if __name__ == "__main__":
            out = pathlib.Path(sys.argv[1])
            greeting = "ran in the child"
            with Supervisor.start([]) as tree:
                tree.start_child(ChildSpec(
                    "closure",
                    lambda: (out.write_text(greeting), notify_ready()),
                    restart=Restart.TEMPORARY,
                    start_mode=StartMode.NOTIFY,
                ))
            print(out.read_text())
        """,
    "a-function-and-a-class-defined-under-the-guard": """
        import pathlib, sys
        from supervisor import ChildSpec, Restart, StartMode, Supervisor, notify_ready

        if __name__ == "__main__":
            class Greeting:
                text = "ran in the child"

            def write(path, greeting):
                pathlib.Path(path).write_text(greeting.text)
                notify_ready()

            with Supervisor.start([]) as tree:
                tree.start_child(ChildSpec(
                    "guarded",
                    write,
                    args=(sys.argv[1], Greeting()),
                    restart=Restart.TEMPORARY,
                    start_mode=StartMode.NOTIFY,
                ))
            print(pathlib.Path(sys.argv[1]).read_text())
        """,
    "a-function-under-the-guard-using-a-guarded-global-as-an-initial-child": """
        import pathlib, sys
        from supervisor import ChildSpec, Restart, StartMode, Supervisor, notify_ready

        if __name__ == "__main__":
            greeting = "ran in the child"

            def write(path):
                pathlib.Path(path).write_text(greeting)
                notify_ready()

            spec = ChildSpec(
                "initial", write, args=(sys.argv[1],), restart=Restart.TEMPORARY, start_mode=StartMode.NOTIFY
            )
            with Supervisor.start([spec]):
                pass
            print(pathlib.Path(sys.argv[1]).read_text())
        """,
}


@pytest.mark.parametrize("source", list(MAIN_SCRIPTS.values()), ids=list(MAIN_SCRIPTS))
def test_a_start_function_of_a_main_script_runs_in_its_child(tmp_path: Path, source: str) -> None:
    """A __main__ lambda, or a function/class under the guard (at start or by start_child), runs."""
    out = tmp_path / "out.txt"

    done = run_script(write_script(tmp_path, source), str(out))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran in the child"


PYTHON_C_PROGRAM = """
import os, pathlib, sys
from supervisor import ChildSpec, Restart, StartMode, Supervisor, notify_ready

PREFIX = "from python -c"

def work(path):
    pathlib.Path(path).write_text(f"{PREFIX} in {os.getpid()}")
    notify_ready()

def spec(child_id, path):
    return ChildSpec(child_id, work, args=(path,), restart=Restart.TEMPORARY, start_mode=StartMode.NOTIFY)

with Supervisor.start([spec("at-start", sys.argv[1])]) as tree:
    tree.start_child(spec("later", sys.argv[2]))
"""


def test_a_function_defined_under_python_c_runs_with_its_globals(tmp_path: Path) -> None:
    """A python -c program's function, as a child at start and through start_child, sees its globals."""
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"

    done = subprocess.run(
        [sys.executable, "-c", PYTHON_C_PROGRAM, str(first), str(second)],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT,
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    assert first.read_text().startswith("from python -c in ")
    assert second.read_text().startswith("from python -c in ")


# ---------------------------------------------------------------------- item 27: the __main__ guard

UNGUARDED_STARTS = {
    "Supervisor.start": "from supervisor import Supervisor\nSupervisor.start([]).stop()\n",
    "Application": "from supervisor import Application\nwith Application():\n    pass\n",
}


@pytest.mark.parametrize("source", list(UNGUARDED_STARTS.values()), ids=list(UNGUARDED_STARTS))
def test_a_script_without_the_main_guard_fails_naming_the_guard(tmp_path: Path, source: str) -> None:
    """A script that starts a tree at import time gets SupervisorGoneError naming the missing guard."""
    done = run_script(write_script(tmp_path, source))

    last_line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    assert last_line.startswith("supervisor.errors.SupervisorGoneError")
    assert 'if __name__ == "__main__":' in last_line
    assert "spawned" in last_line
    assert str(tmp_path / "script.py") in last_line


# ---------------------------------------------------------------------- item 28: logging_config


def test_a_logging_config_without_disable_existing_loggers_still_gets_crash_reports(
    start_tree: Any, tmp_path: Path
) -> None:
    """A root-only dictConfig without the key: the supervisor's crash report reaches its file."""
    path = tmp_path / "root.log"
    config = {
        "version": 1,
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(path)}},
        "root": {"level": "INFO", "handlers": ["file"]},
    }
    handle = start_tree([], logging_config=config)

    pid = handle.start_child(ChildSpec("crasher", crash, args=("report me",), restart=Restart.TEMPORARY))
    assert pid is not None
    assert wait_gone([pid], HANG_TIMEOUT) == []
    settle(handle)

    text = path.read_text()
    assert "child_terminated" in text
    assert "report me" in text
