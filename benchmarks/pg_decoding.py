"""How the PostgreSQL follower should read logical decoding, chosen by measurement (issue 15):
polling ``pg_logical_slot_*_binary_changes`` on an ordinary connection (what twotier does,
every 50 ms while quiet) against the streaming replication protocol (``START_REPLICATION``
on a replication connection, psycopg2's ``LogicalReplicationConnection``: no async Python
driver speaks it; asyncpg and psycopg 3 do not).

A PostgreSQL cluster of its own (``wal_level=logical``, as the tests'), one table in a
publication, one writer committing single-row updates at a steady rate and noting when
each commit returned. Each reader decodes with ``pgoutput`` from a slot of its own, on a
thread of its own, and notes when each commit message arrives; commits arrive in commit
order, so the n-th arrival is the n-th commit. Figures: the delivery lag (arrival minus the
commit's return), and the CPU each way costs — the reader's thread and its server backend
(walsender or ordinary), from the kernel's counts.

    .venv/bin/python benchmarks/pg_decoding.py --rate 200 --seconds 30 \
        --out benchmarks/results/pg-decoding

Run from the repository's root (it borrows the tests' own-server helper).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.own_servers import OwnPostgres

PUBLICATION = "bench_pub"
_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a server backend so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


class Reader:
    """One way of reading the slot, on a thread: arrival times of commit messages."""

    def __init__(self, name: str, dsn: str, slot: str) -> None:
        self.name = name
        self.dsn = dsn
        self.slot = slot
        self.arrivals: list[float] = []
        self.cpu = 0.0
        self.server_cpu = 0.0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        raise NotImplementedError

    def commits_in(self, payloads: list[bytes]) -> None:
        now = time.time()
        self.arrivals.extend(now for payload in payloads if payload[:1] == b"C")


class Polling(Reader):
    def __init__(self, dsn: str, slot: str, interval: float) -> None:
        super().__init__(f"poll every {interval * 1000:g} ms", dsn, slot)
        self.interval = interval

    def run(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        cursor = conn.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
        server_start, start = _backend_cpu(pid), _thread_cpu()
        self.ready.set()
        while not self.stop.is_set():
            # get (not peek): a consumed change is not decoded again, as twotier's
            # advance-after-save amounts to at a steady state.
            cursor.execute(
                "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL, "
                "'proto_version', '1', 'publication_names', %s)",
                (self.slot, PUBLICATION),
            )
            rows = cursor.fetchall()
            self.commits_in([bytes(row[0]) for row in rows])
            if not rows:
                time.sleep(self.interval)
        self.cpu, self.server_cpu = _thread_cpu() - start, _backend_cpu(pid) - server_start
        conn.close()


class Streaming(Reader):
    def __init__(self, dsn: str, slot: str) -> None:
        super().__init__("stream (START_REPLICATION)", dsn, slot)

    def run(self) -> None:
        conn = psycopg2.connect(
            self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        )
        cursor = conn.cursor()
        cursor.start_replication(
            slot_name=self.slot,
            decode=False,
            options={"proto_version": "1", "publication_names": PUBLICATION},
        )
        pid = conn.get_backend_pid()
        server_start, start = _backend_cpu(pid), _thread_cpu()
        self.ready.set()

        def consume(message: Any) -> None:
            self.commits_in([bytes(message.payload)])
            message.cursor.send_feedback(flush_lsn=message.data_start)
            if self.stop.is_set():
                raise StopIteration

        with contextlib.suppress(StopIteration):  # how consume_stream is told to end
            cursor.consume_stream(consume, keepalive_interval=1)
        self.cpu, self.server_cpu = _thread_cpu() - start, _backend_cpu(pid) - server_start
        conn.close()


def measure(dsn: str, rate: float, seconds: float) -> list[dict[str, Any]]:
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute("DROP TABLE IF EXISTS bench_rows")
    cursor.execute("CREATE TABLE bench_rows (id int PRIMARY KEY, n bigint NOT NULL)")
    cursor.execute("ALTER TABLE bench_rows REPLICA IDENTITY FULL")
    cursor.execute("INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, 1000) g")
    cursor.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE bench_rows")
    makers: list[Callable[[str], Reader]] = [
        lambda slot: Polling(dsn, slot, 0.05),
        lambda slot: Polling(dsn, slot, 0.01),
        lambda slot: Streaming(dsn, slot),
    ]
    readers = []
    for number, make in enumerate(makers):
        slot = f"bench_slot_{number}"
        cursor.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        readers.append(make(slot))
    threads = [threading.Thread(target=r.run, daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    for reader in readers:
        reader.ready.wait(30)
    commits: list[float] = []
    interval = 1 / rate
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    number = 0
    while time.monotonic() < deadline:
        number += 1
        cursor.execute("UPDATE bench_rows SET n = n + 1 WHERE id = %s", (number % 1000 + 1,))
        commits.append(time.time())
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    time.sleep(1.0)  # the last commits arrive
    for reader in readers:
        reader.stop.set()
    cursor.execute("UPDATE bench_rows SET n = n + 1 WHERE id = 1")  # wakes the stream
    for thread in threads:
        thread.join(30)
    results = []
    for reader in readers:
        arrived = reader.arrivals[: len(commits)]
        lags = sorted((a - c) * 1000 for a, c in zip(arrived, commits, strict=False))
        results.append(
            {
                "reader": reader.name,
                "commits": len(commits),
                "arrived": len(arrived),
                "p50_ms": round(statistics.median(lags), 2),
                "p99_ms": round(lags[int(len(lags) * 0.99) - 1], 2),
                "max_ms": round(lags[-1], 2),
                "reader_cpu_s": round(reader.cpu, 3),
                "server_cpu_s": round(reader.server_cpu, 3),
            }
        )
    for number in range(len(makers)):
        cursor.execute("SELECT pg_drop_replication_slot(%s)", (f"bench_slot_{number}",))
    admin.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200, help="commits per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--out", type=Path, help="a folder for the JSON figures")
    args = parser.parse_args()
    server = OwnPostgres()
    server.start()
    try:
        dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=postgres"
        results = measure(dsn, args.rate, args.seconds)
    finally:
        server.remove()
    print(f"{args.rate:g} commits/s for {args.seconds:g} s")
    print(f"{'reader':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu s':>7} {'server s':>9}")
    for row in results:
        print(
            f"{row['reader']:<28} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} "
            f"{row['reader_cpu_s']:>7} {row['server_cpu_s']:>9}"
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pg-decoding.json").write_text(
            json.dumps({"rate": args.rate, "seconds": args.seconds, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
