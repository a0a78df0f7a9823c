"""
Reading another process's memory, for the trust-boundary tests: does a process hold some bytes?

Every readable region listed in ``/proc/<pid>/maps`` is read through ``/proc/<pid>/mem`` (allowed for
a process's ancestors, which the tests are), in chunks that overlap by the length of what is looked
for, so nothing is missed at a chunk's edge. Only descendants of the test process are read.
"""

from __future__ import annotations

import os

_CHUNK = 1 << 22
_UNREADABLE = ("[vvar]", "[vsyscall]", "[vvar_vclock]")


def readable_regions(pid: int) -> list[tuple[int, int]]:
    """The (start, end) addresses of every readable mapping of *pid*."""
    regions = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in _UNREADABLE):
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            regions.append((start, end))
    return regions


def holds(pid: int, secret: bytes) -> bool:
    """True if the bytes *secret* occur anywhere in the readable memory of *pid*."""
    assert len(secret) >= 16, "too short to tell a key from chance"
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for start, end in readable_regions(pid):
            offset = start
            while offset < end:
                size = min(_CHUNK + len(secret) - 1, end - offset)
                try:
                    data = os.pread(fd, size, offset)
                except OSError:
                    break  # a region that went away, or that the kernel will not show
                if secret in data:
                    return True
                offset += _CHUNK
    finally:
        os.close(fd)
    return False
