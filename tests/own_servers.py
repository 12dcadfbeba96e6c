"""Servers of a test's own (own port, own data), that it may kill, freeze, restart or
configure as it likes (TLS): the shared services are never touched."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.pki import Pki
from twotier.bench.target import free_port


def _wait_for(probe: list[str], server: str) -> None:
    """Until ``probe`` succeeds (the server answers), for 30 s at most."""
    for _ in range(150):
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"own {server} did not start")


class _OwnProcess:
    """A server process the test may signal (freeze, thaw) and kill."""

    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)


class OwnRedis(_OwnProcess):
    """A redis-server of the test's own, that the test may kill, freeze and restart."""

    def __init__(self, workdir: Path, pki: Pki | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.pki = pki  # with one: TLS only, on self.port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.pki is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.pki.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                server,
                *self._listen(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            probe = subprocess.run(
                ["redis-cli", "-p", str(self.port), *self._client_args(), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def _listen(self) -> list[str]:
        if self.pki is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.pki.server_cert),
            "--tls-key-file",
            str(self.pki.server_key),
            "--tls-ca-cert-file",
            str(self.pki.ca),
            "--tls-auth-clients",
            "no",
        ]

    def _client_args(self) -> list[str]:
        return [] if self.pki is None else ["--tls", "--cacert", str(self.pki.ca)]


class OwnMariaDB:
    """A mariadbd of the test's own (own datadir, own port) that the test may crash; with
    ``binlog``, logging rows whole, as the change-log follower needs."""

    def __init__(self, workdir: Path, pki: Pki | None = None, *, binlog: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.pki = pki  # with one: TLS required on TCP
        self.binlog = binlog
        self.process: subprocess.Popen[bytes] | None = None
        made = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={workdir / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
        if made.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {made.stdout!r} {made.stderr!r}")

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/superhero_db"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.workdir / 'data'}",
                f"--socket={self.workdir / 'sock'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                *self._log(),
                "--innodb-buffer-pool-size=64M",
                *self._tls(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(
            ["mariadb-admin", f"--socket={self.workdir / 'sock'}", "-uroot", "ping"], "mariadbd"
        )

    def _log(self) -> list[str]:
        if not self.binlog:
            return ["--skip-log-bin"]
        return [
            f"--log-bin={self.workdir / 'binlog'}",
            "--server-id=1",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
        ]

    def _tls(self) -> list[str]:
        if self.pki is None:
            return []
        return [
            f"--ssl-ca={self.pki.ca}",
            f"--ssl-cert={self.pki.server_cert}",
            f"--ssl-key={self.pki.server_key}",
            "--require-secure-transport=ON",
        ]

    def crash(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL: no clean shutdown; InnoDB must recover
            self.process.wait(timeout=30)
            self.process = None


class OwnPostgres(_OwnProcess):
    """A PostgreSQL cluster of the test's own (``initdb`` as the postgres user, its own
    port and socket directory), with ``wal_level=logical`` for the change-log follower."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").iterdir())
        self.bin = versions[-1] / "bin"
        self.port = free_port()
        # Under /tmp, not the test's tmp_path: the postgres user must reach it.
        self.workdir = Path(tempfile.mkdtemp(prefix="twotier-pg-"))
        shutil.chown(self.workdir, "postgres", "postgres")
        self.data = self.workdir / "data"
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "--auth=trust",
                "--no-sync",
                "-U",
                "postgres",
            ],
            capture_output=True,
            check=True,
            timeout=120,
            user="postgres",
            group="postgres",
        )
        # The superuser is trusted (the tests connect as it without a password); any other
        # user proves its password, as a follower's own user must.
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        shutil.chown(hba, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/superhero_db"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.workdir}",
                "-c",
                "wal_level=logical",
                "-c",
                "max_replication_slots=8",
                "-c",
                "max_wal_senders=8",
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=32MB",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user="postgres",  # the process itself, so that killing it stops the server
            group="postgres",
        )
        _wait_for(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], "postgres"
        )

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


#: dynalite, as ``make test-services`` installs it (package.json).
DYNALITE = Path(__file__).parent.parent / "node_modules" / ".bin" / "dynalite"
_DYNALITE_TABLE_MS = ["--createTableMs", "50", "--deleteTableMs", "50", "--updateTableMs", "50"]


class OwnDynamoDB(_OwnProcess):
    """A DynamoDB of the test's own: moto in server mode (``tests.moto_serial``) or, with
    ``dynalite``, dynalite (an independent implementation, on Node). A process the test may
    freeze, thaw and kill (its tables live in its memory: a kill loses them)."""

    def __init__(self, *, dynalite: bool = False) -> None:
        self.port = free_port()
        self.dynalite = dynalite
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, table_prefix: str = "") -> str:
        return (
            f"dynamodb://?endpoint_url={self.endpoint}&region=us-east-1&table_prefix={table_prefix}"
        )

    def start(self) -> None:
        command = (
            # Tables take 50 ms to create, change or delete (DynamoDB: seconds): the
            # store's waits run, quickly.
            [str(DYNALITE), "--port", str(self.port), *_DYNALITE_TABLE_MS]
            if self.dynalite
            else [sys.executable, "-m", "tests.moto_serial", str(self.port)]
        )
        self.process = subprocess.Popen(
            command,
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start") from None
                time.sleep(0.1)
