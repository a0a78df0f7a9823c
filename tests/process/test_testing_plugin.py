"""
The pytest plugin as a user meets it: test files run by pytest in a subprocess (pytester), where the
plugin is loaded by its ``pytest11`` entry point and nothing else.

Each inner test writes the pids it saw to a file; the outer test reads them and checks with the OS
that what the fixtures started is gone once the inner run is over.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.testing import wait_gone

pytest_plugins = ["pytester"]

RUN_TIMEOUT = 180.0
"""Seconds an inner pytest run may take; only reached if something hangs."""
DOCS = Path(__file__).resolve().parents[2] / "docs"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest on the pytester directory in a fresh interpreter, as a user's ``pytest`` would."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=RUN_TIMEOUT)


def seen(pytester: pytest.Pytester) -> dict[str, list[int]]:
    """What the inner runs wrote: pids by name, from one JSON object per line of ``seen.jsonl``."""
    found: dict[str, list[int]] = {}
    path = pytester.path / "seen.jsonl"
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        found.setdefault(entry["name"], []).extend(entry["pids"])
    return found


RECORD = """
import json, os
from pathlib import Path

def record(name, pids):
    with open(Path(__file__).parent / "seen.jsonl", "a") as out:
        out.write(json.dumps({"name": name, "pids": pids}) + "\\n")
"""


def test_the_plugin_is_loaded_by_its_entry_point(pytester: pytest.Pytester) -> None:
    """Without any conftest or ``-p``, pytest knows the fixtures, the marker and the options."""
    fixtures = run(pytester, "--fixtures")
    fixtures.stdout.fnmatch_lines(["*supervisor_leftover_check*", "*supervisor_tree*", "*application*"])
    markers = run(pytester, "--markers")
    markers.stdout.fnmatch_lines(["*no_leftovers(enabled=True)*"])
    options = run(pytester, "--help")
    options.stdout.fnmatch_lines(["*--supervisor-no-leftovers*", "*supervisor_stop_timeout*"])


def test_supervisor_tree_stops_every_tree_after_the_test_pass_or_fail(pytester: pytest.Pytester) -> None:
    """Trees the factory started (from a list, a SupervisorSpec, a DynamicSupervisor) end at teardown."""
    pytester.makepyfile(
        test_trees=RECORD
        + """
import signal
from supervisor import ChildSpec, Strategy, SupervisorSpec
from supervisor.testing import descendants
from supervisor.testing.children import wait_forever

def own(name):                          # a module-level start function of the test file itself
    wait_forever()

def tree_pids(handle):
    return [handle.pid] + [e.pid for e in descendants(handle.pid)]

def test_a_list_of_children(supervisor_tree):
    tree = supervisor_tree([ChildSpec("a", wait_forever), ChildSpec("b", own, args=("b",))],
                           Strategy.ONE_FOR_ALL, max_restarts=1)
    assert [info.id for info in tree.which_children()] == ["a", "b"]
    record("list", tree_pids(tree))

def test_a_spec_and_a_dynamic_supervisor_then_a_failure(supervisor_tree):
    spec = SupervisorSpec([ChildSpec("w", wait_forever)], Strategy.REST_FOR_ONE, 2, 3.0)
    tree = supervisor_tree(spec)
    pool = supervisor_tree.dynamic(max_children=2)
    pool.start_child(ChildSpec("job", wait_forever))
    record("spec", tree_pids(tree) + tree_pids(pool))
    assert False, "the trees are stopped all the same"

def test_a_spec_takes_no_flags(supervisor_tree):
    import pytest
    spec = SupervisorSpec([ChildSpec("w", wait_forever)])
    with pytest.raises(TypeError, match="only logging_config and env"):
        supervisor_tree(spec, max_restarts=5)
"""
    )
    result = run(pytester)

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_a_spec_and_a_dynamic_supervisor_then_a_failure FAILED*"])
    pids = seen(pytester)
    assert len(pids["list"]) == 3  # the root and its two workers
    assert len(pids["spec"]) == 4  # two roots, a worker each
    assert wait_gone(pids["list"] + pids["spec"], timeout=30) == []


def test_application_is_stopped_with_its_sessions_after_the_test(pytester: pytest.Pytester) -> None:
    """``application(**options)`` returns a started Application; it and its sessions end with the test."""
    pytester.makepyfile(
        test_sessions=RECORD
        + """
from supervisor import Application, ChildSpec, SessionStatus
from supervisor.testing import descendants
from supervisor.testing.children import wait_forever

def test_sessions(application):
    app = application(max_restarts=5, registry_timeout=10.0)
    assert isinstance(app, Application)
    sessions = app.session_manager
    sid = sessions.create_session(children=[ChildSpec("w", wait_forever)], metadata={"user": "me"})
    assert sessions.get_session_info(sid).status is SessionStatus.ACTIVE
    root = app.supervisor.pid
    record("app", [root] + [e.pid for e in descendants(root)])
"""
    )
    result = run(pytester)

    result.assert_outcomes(passed=1)
    pids = seen(pytester)["app"]
    assert len(pids) >= 5  # the root, the registry, the SessionManager, the session and its worker
    assert wait_gone(pids, timeout=30) == []


LEAVES = """
import os, subprocess, sys
import pytest

def leave_a_process(name):
    # It ends by itself when this pytest exits (its stdin closes).
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    record(name, [child.pid])

KEPT = []   # a Popen that is collected reaps its process: these are not

def leave_a_zombie(name):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    KEPT.append(child)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)   # exited, not reaped
    record(name, [child.pid])
"""


def test_no_leftovers_marker_fails_a_test_that_leaves_a_process_or_a_zombie(
    pytester: pytest.Pytester,
) -> None:
    """A marked test that leaves a process or a zombie errors at teardown, naming it; others pass."""
    pytester.makepyfile(
        test_leftovers=RECORD
        + LEAVES
        + """
from supervisor import ChildSpec
from supervisor.testing.children import wait_with_grandchild

@pytest.mark.no_leftovers
def test_leaves_a_process():
    leave_a_process("process")

@pytest.mark.no_leftovers
def test_leaves_a_zombie():
    leave_a_zombie("zombie")

@pytest.mark.no_leftovers
def test_a_tree_from_the_fixture_is_stopped_before_the_check(supervisor_tree, application):
    supervisor_tree([ChildSpec("w", wait_with_grandchild)])
    application().session_manager.create_session(children=[ChildSpec("w", wait_with_grandchild)])

def test_unmarked_is_not_checked():
    leave_a_process("unmarked")
"""
    )
    result = run(pytester)

    result.assert_outcomes(passed=4, errors=2)  # a teardown error is reported beside the pass
    pids = seen(pytester)
    leftover, zombie = pids["process"][0], pids["zombie"][0]
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_process*",
            f"*test_leaves_a_process left 1 process(es) behind: pid {leftover} (*python*, state *",
            "*ERROR at teardown of test_leaves_a_zombie*",
            f"*test_leaves_a_zombie left 1 process(es) behind: pid {zombie} (*, zombie, *",
        ]
    )
    assert "test_a_tree_from_the_fixture_is_stopped_before_the_check PASSED" in result.stdout.str()
    assert wait_gone(pids["process"] + pids["unmarked"], timeout=30) == []


def test_the_ini_option_and_the_flag_check_every_test_unless_exempted(pytester: pytest.Pytester) -> None:
    """``supervisor_no_leftovers = true`` or ``--supervisor-no-leftovers`` checks every test; the marker
    with False exempts one."""
    pytester.makepyfile(
        test_everywhere=RECORD
        + LEAVES
        + """
def test_checked():
    leave_a_process("checked")

@pytest.mark.no_leftovers(False)
def test_exempted():
    leave_a_process("exempted")

def test_clean():
    pass
"""
    )
    by_flag = run(pytester, "--supervisor-no-leftovers")
    by_flag.assert_outcomes(passed=3, errors=1)
    by_flag.stdout.fnmatch_lines(["*ERROR at teardown of test_checked*"])

    pytester.makeini("[pytest]\nsupervisor_no_leftovers = true\n")
    by_ini = run(pytester)
    by_ini.assert_outcomes(passed=3, errors=1)
    by_ini.stdout.fnmatch_lines(["*ERROR at teardown of test_checked*"])

    unchecked = run(pytester, "-p", "no:otp_supervisor")
    unchecked.assert_outcomes(passed=3)
    assert wait_gone(seen(pytester)["checked"] + seen(pytester)["exempted"], timeout=30) == []


def test_a_bad_stop_timeout_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """``supervisor_stop_timeout`` must be seconds >= 0: the run stops with the option named."""
    pytester.makeini("[pytest]\nsupervisor_stop_timeout = soon\n")
    pytester.makepyfile(test_x="def test_tree(supervisor_tree):\n    pass\n")
    result = run(pytester)
    assert result.ret != 0
    assert "supervisor_stop_timeout must be a number of seconds (got 'soon')" in result.stdout.str() + (
        result.stderr.str()
    )


def test_the_wait_helpers_in_a_users_test(pytester: pytest.Pytester) -> None:
    """``wait_restarted`` and ``wait_session_down`` in a user's tests: no sleep, the state is settled."""
    pytester.makepyfile(
        test_waits="""
import os, signal
import pytest
from supervisor import ChildSpec, ChildState, SessionNotFoundError
from supervisor.testing import wait_restarted, wait_session_down
from supervisor.testing.children import wait_forever

@pytest.mark.no_leftovers
def test_restart(supervisor_tree):
    tree = supervisor_tree([ChildSpec("w", wait_forever)])
    for _ in range(3):
        old = tree.which_child("w").pid
        os.kill(old, signal.SIGKILL)
        new = wait_restarted(tree, "w", old, timeout=30)
        info = tree.which_child("w")
        assert new != old and info.pid == new and info.state is ChildState.RUNNING

@pytest.mark.no_leftovers
def test_session_down(application):
    sessions = application().session_manager
    sid = sessions.create_session(children=[ChildSpec("w", wait_forever)])
    os.kill(sessions.get_session_pid(sid), signal.SIGKILL)
    wait_session_down(sessions, sid, timeout=30)
    with pytest.raises(SessionNotFoundError):
        sessions.get_session_info(sid)
    assert sessions.list_sessions() == []
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)


def _docs_test_files() -> dict[str, str]:
    """The test files shown in docs/testing.md: each ```python block whose first line is ``# test_*.py``."""
    files = {}
    for block in re.findall(r"```python\n(.*?)```", (DOCS / "testing.md").read_text(), re.DOTALL):
        first = block.splitlines()[0]
        named = re.fullmatch(r"# (test_\w+\.py)", first)
        if named:
            files[named.group(1)] = block
    return files


def test_the_test_files_of_docs_testing_md_pass(pytester: pytest.Pytester) -> None:
    """Every user test file shown in docs/testing.md runs and passes under the plugin."""
    files = _docs_test_files()
    assert files, "docs/testing.md shows no test file"
    for name, source in files.items():
        (pytester.path / name).write_text(source)
    result = run(pytester)
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes().get("passed", 0) >= 4


def test_importing_supervisor_testing_imports_neither_hypothesis_nor_pytest() -> None:
    """Hypothesis (and pytest) stay optional: only the strategies (and plugin) modules import them."""
    program = (
        "import json, sys, supervisor.testing, supervisor.testing.children; "
        "optional = ('hypothesis', 'pytest', '_pytest'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in optional)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []
