"""Reads from a socket served from the heap, not from fresh memory maps.

asyncio reads a socket into a new 256 KiB buffer (``max_size``) and shrinks it; glibc's
malloc maps a block that large with ``mmap`` and unmaps it when freed, unless its threshold
has moved above it, which glibc does by itself the first time a mapped block is freed
(mallopt(3): the threshold is dynamic). A process that has not freed one yet (a Lambda
function that never imports SQLAlchemy, whose import happens to) paid an ``mmap``, page
faults and a ``munmap`` for every read of a database's or a cache's answer: strace counted
25,000 of each for 12,000 reads by key on asyncpg, and those reads ran a quarter slower
(benchmarks/README.md). Freeing one mapped block at start moves the threshold for good.
Elsewhere than glibc this costs one allocation and does nothing else.
"""

#: Above the read buffer, within glibc's dynamic ceiling (32 MiB on 64-bit systems).
_BLOCK = 1 << 20


def settle() -> None:
    """Free one mapped block, so that glibc serves blocks up to its size from the heap."""
    block = bytearray(_BLOCK)
    del block
