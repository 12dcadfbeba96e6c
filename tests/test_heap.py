"""A process of twotier's serves its socket reads' 256 KiB buffers from the heap
(``twotier.heap``): allocating and freeing one costs no fresh memory map, so no page
faults, where a bare interpreter maps, faults in and unmaps each one."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

#: What asyncio does for every read of a socket: ``recv`` into a new buffer of
#: ``max_size`` bytes, shrunk to what came; the minor page faults of 200 such reads.
_READS = """
import resource, socket, sys
if sys.argv[1] == "twotier":
    import twotier
ours, theirs = socket.socketpair()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    theirs.send(b"x" * 100)
    ours.recv(256 * 1024)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(which: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _READS, which], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_reads_buffers_come_from_the_heap() -> None:
    bare, served = _faults("bare"), _faults("twotier")
    assert bare >= 200  # a fresh map a read, faulted in
    assert served < bare / 20
