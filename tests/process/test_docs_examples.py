"""
Every runnable example in the docs runs: each ```python block with a ``__main__`` guard, as a script
(and the README's cluster example). A cluster's example gets an etcd of its own and a key file.

The expected line of each example (its ``# ...`` comment after a ``print``) is not checked word for
word; the example must run to the end (exit status 0) and print what the check below names.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.etcd_server import EtcdServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def runnable_examples() -> list[pytest.ParameterSet]:
    examples = []
    for page in sorted(DOCS.glob("*.md")):
        for number, block in enumerate(_BLOCK.findall(page.read_text()), start=1):
            if 'if __name__ == "__main__":' in block:
                examples.append(pytest.param(block, id=f"{page.name}#{number}"))
    readme = DOCS.parent / "README.md"
    for number, block in enumerate(_BLOCK.findall(readme.read_text()), start=1):
        if "EtcdCluster(" in block and 'if __name__ == "__main__":' in block:
            examples.append(pytest.param(block, id=f"README.md#{number}"))
    return examples


EXPECTED = {
    "class Conversation": ["2", "4"],
    "Accounts": [
        "('error', \"no account 'bob'\")",
        "crashed: exception builtins.ValueError: overdrawn",
        "('ok', 9)",
    ],
    "Barrier": ["['go', 'go']", "bye"],
    "Context": ["True"],
    "watch(ref)": ["killed (SIGKILL)"],
    "tree.jsonl": ["child_terminated root/api/handler exception 0", "shutdown root/api/handler exception 1"],
    "tree.events(subtree=True)": ["exited root/api/handler killed (SIGKILL)", "restarted root/api/handler -"],
    "sessions.events()": ["['created', 'active', 'down', 'terminated']"],
}


@pytest.mark.parametrize("source", runnable_examples())
def test_the_example_runs(source: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    with contextlib.ExitStack() as stack:
        if "EtcdCluster(" in source:  # a cluster's example: an etcd of its own, and the key file
            etcd = stack.enter_context(EtcdServer(data_dir=tmp_path / "etcd"))
            source = source.replace("http://127.0.0.1:2379", etcd.url)
            (tmp_path / "cluster.key").write_bytes(os.urandom(32))
        script.write_text(source)
        _run_example(script, source, tmp_path)


def _run_example(script: Path, source: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )

    assert result.returncode == 0, result.stdout + result.stderr
    for marker, lines in EXPECTED.items():
        if marker in source:
            for line in lines:
                assert line in result.stdout.splitlines(), (line, result.stdout)


def test_the_messaging_page_has_runnable_examples() -> None:
    ids = [param.id for param in runnable_examples()]
    assert sum(1 for i in ids if i is not None and i.startswith("messaging.md")) >= 5
