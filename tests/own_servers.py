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


def redis_tls_listen(pki: Pki, port: int) -> list[str]:
    """A redis-server's arguments to listen on ``port`` with TLS only, its certificate
    from ``pki`` (clients are not asked for one)."""
    return [
        *("--port", "0", "--tls-port", str(port)),
        *("--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key)),
        *("--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no"),
    ]


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

    def __init__(
        self, workdir: Path, pki: Pki | None = None, *, user: tuple[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.pki = pki  # with one: TLS only, on self.port
        # With one: that user alone may connect (its password), the default user is off.
        self.user = user
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
                *self._users(),
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
        return redis_tls_listen(self.pki, self.port)

    def _users(self) -> list[str]:
        if self.user is None:
            return []
        name, password = self.user
        return [
            "--user",
            "default",
            "off",
            "--user",
            name,
            "on",
            f">{password}",
            "~*",
            "&*",
            "+@all",
        ]

    def _client_args(self) -> list[str]:
        tls = [] if self.pki is None else ["--tls", "--cacert", str(self.pki.ca)]
        if self.user is None:
            return tls
        return [*tls, "--user", self.user[0], "--pass", self.user[1], "--no-auth-warning"]


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


def cluster_ports(count: int) -> list[int]:
    """``count`` free ports for Redis Cluster nodes: each below 55536, because a node's
    cluster bus listens on its port + 10000, which must be free too."""
    import random

    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 55000)
        if port in ports or port + 10000 in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


class OwnRedisCluster:
    """A Redis Cluster of the test's own: ``primaries`` primaries with ``replicas`` replicas
    each, one redis-server process per node on free ports (nothing on disk but each node's
    ``nodes.conf``). Nodes may be killed and started again; slots may be moved. With a
    ``pki``, every link is TLS: clients', the cluster bus and replication."""

    def __init__(
        self, workdir: Path, *, primaries: int = 3, replicas: int = 1, pki: Pki | None = None
    ) -> None:
        self.workdir = workdir
        self.pki = pki
        self.shape = (primaries, replicas)
        self.ports = cluster_ports(primaries * (1 + replicas))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        if self.pki is not None:
            return f"rediss+cluster://127.0.0.1:{self.ports[0]}?ssl_ca_certs={self.pki.ca}"
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _listen(self, port: int) -> list[str]:
        if self.pki is None:
            return ["--port", str(port)]
        return [
            *redis_tls_listen(self.pki, port),
            *("--tls-cluster", "yes", "--tls-replication", "yes"),
        ]

    def _client_args(self) -> list[str]:
        return [] if self.pki is None else ["--tls", "--cacert", str(self.pki.ca)]

    def start(self) -> None:
        for i in range(len(self.ports)):
            # A port free when picked may be taken by the time the node binds it (another
            # test's server): pick another.
            while not self.start_node(self.ports[i]):
                self.ports[i] = cluster_ports(1)[0]
        _, replicas = self.shape
        made = subprocess.run(
            [
                "redis-cli",
                *self._client_args(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if made.returncode:
            raise RuntimeError(f"redis-cli --cluster create failed: {made.stdout}{made.stderr}")
        self.wait_until_ok()

    def start_node(self, port: int) -> bool:
        """Start the node on ``port`` (again, after a kill: it keeps its ``nodes.conf``);
        False if it could not (its port, or its bus port, taken)."""
        node_dir = self.workdir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                "redis-server",
                *self._listen(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                # A primary silent for 1 s is failed: failovers in a test's time.
                "--cluster-node-timeout",
                "1000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(node_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(150):
            if self.processes[port].poll() is not None:
                del self.processes[port]
                return False
            if self.cli(port, "ping").strip() == "PONG":
                return True
            time.sleep(0.2)
        raise RuntimeError("own redis cluster node did not start")

    def cli(self, port: int, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), *self._client_args(), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        return done.stdout

    def nodes(self) -> list[dict[str, str]]:
        """The cluster's nodes as a live node sees them: id, port, role, primary's id."""
        for port in self.ports:
            if port in self.processes:
                lines = self.cli(port, "cluster", "nodes").splitlines()
                if lines:
                    break
        found = []
        for line in lines:
            fields = line.split()
            address, flags = fields[1], fields[2].split(",")
            found.append(
                {
                    "id": fields[0],
                    "port": address.split("@")[0].rsplit(":", 1)[1],
                    "role": "primary" if "master" in flags else "replica",
                    "failed": "fail" in flags or "fail?" in flags,
                    "primary": fields[3],
                    "slots": " ".join(fields[8:]),
                }
            )
        return found  # type: ignore[return-value]

    def primaries(self) -> list[int]:
        return sorted(
            int(node["port"])
            for node in self.nodes()
            if node["role"] == "primary" and not node["failed"] and node["slots"]
        )

    def owner(self, slot: int) -> int:
        """The port of the primary that owns ``slot`` now."""
        for node in self.nodes():
            for part in node["slots"].split():
                if part.startswith("["):
                    continue  # a slot being moved: its owner is listed apart
                first, _, last = part.partition("-")
                if int(first) <= slot <= int(last or first):
                    return int(node["port"])
        raise LookupError(f"no node owns slot {slot}")

    def wait_until_ok(self, timeout: float = 60) -> None:
        """Until every live node says the cluster is ok and sees every slot covered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [self.cli(port, "cluster", "info") for port in self.processes]
            # A replica that has not finished its first sync would not take over (its data
            # counts as too old): wait for every replica's link too.
            links = [self.cli(port, "info", "replication") for port in self.processes]
            if (
                all("cluster_state:ok" in state for state in states)
                and all("cluster_slots_ok:16384" in state for state in states)
                and all("role:master" in link or "master_link_status:up" in link for link in links)
            ):
                return
            time.sleep(0.2)
        raise RuntimeError("own redis cluster did not become ok")

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def wait_for_failover(self, dead: int, timeout: float = 60) -> int:
        """Until a replica of the killed primary ``dead`` has taken its slots; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            primaries = self.primaries()
            if dead not in primaries and len(primaries) == self.shape[0]:
                self.wait_until_ok(timeout=max(1.0, deadline - time.monotonic()))
                new = set(primaries) - {dead}
                return max(new, key=lambda port: port in self.processes)
            time.sleep(0.2)
        raise RuntimeError(f"no replica took over from {dead}")

    def move_slots(self, slots: range, source: int, target: int) -> None:
        """Move ``slots`` from the primary on ``source`` to the one on ``target`` key by key,
        as ``redis-cli --cluster reshard`` does (MIGRATING/IMPORTING, then MIGRATE)."""
        ids = {int(node["port"]): node["id"] for node in self.nodes()}
        for slot in slots:
            self.cli(target, "cluster", "setslot", str(slot), "importing", ids[source])
            self.cli(source, "cluster", "setslot", str(slot), "migrating", ids[target])
            while True:
                keys = self.cli(source, "cluster", "getkeysinslot", str(slot), "100").split()
                if not keys:
                    break
                self.cli(
                    source, "migrate", "127.0.0.1", str(target), "", "0", "5000", "keys", *keys
                )
            # The importing side first: once the source lets go, the slot must have an owner.
            for port in (target, source, *(p for p in self.processes if p not in (target, source))):
                self.cli(port, "cluster", "setslot", str(slot), "node", ids[target])

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
