"""How ``_wire`` encodes what refers to ``__main__``: by reference when the receiver defines it too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    from supervisor import _wire

    def top_level():
        return "top"

    class TopLevel:
        pass

    if __name__ == "__main__":
        def guarded():
            return "guarded"

        guarded_global = 41

        def uses_top_level_only():
            return top_level()

        encodings = {
            "top_level": _wire.dumps(top_level),
            "instance": _wire.dumps(TopLevel()),
            "guarded": _wire.dumps(guarded),
            "lambda": _wire.dumps(lambda: guarded_global + 1),
            "mixed": _wire.dumps((top_level, guarded)),
        }
        for name, data in encodings.items():
            print(name, "value" if b"dill" in data else "reference")
    """
)


def test_main_functions_go_by_reference_only_when_the_receiver_defines_them(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    output = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    encodings = dict(line.split() for line in output.splitlines())
    assert encodings == {
        "top_level": "reference",
        "instance": "reference",
        "guarded": "value",
        "lambda": "value",
        "mixed": "value",
    }
