"""The README's demo command runs to the end: ``python -m supervisor demo``."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_to_the_end_and_leaves_no_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "== Part 1: a supervision tree ==" in out
    assert "== Part 2: sessions ==" in out
    # A session's server answers, crashes under a monitor, and answers again after its restart.
    assert "turn 2 (write the tests)" in out
    assert "ServerDown: exception builtins.RuntimeError: the context server was told to crash" in out
    assert "the monitor reports: exception builtins.RuntimeError" in out
    assert "turn 1 (start again)" in out
    assert "stopped; processes left: none" in out
    assert out.rstrip().endswith("stopped.")
    # The sessions are printed below the SessionManager, each through its own session's handle.
    assert out.count("context        worker") == 2  # the third session was killed
