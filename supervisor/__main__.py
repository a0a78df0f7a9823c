"""``python -m supervisor demo``: argument parsing only; the tour is in ``supervisor._demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor", description="OTP supervision trees for Python."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo", help="start a tree and a session Application, crash things, watch them recover"
    )
    parser.parse_args(argv)
    from ._demo import main as demo

    return demo()


if __name__ == "__main__":
    sys.exit(main())
