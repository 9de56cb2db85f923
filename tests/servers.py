"""
Throwaway servers for the cluster's tests (docs/cluster.md, section 16.2):
a real C{redis-server} and a real PostgreSQL cluster, each on a free
loopback port, with its data in a temporary directory, started and
stopped by the test. Debian's packages provide them (C{.ci/run} installs
C{redis-server} and C{postgresql}); their system services are never used.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Seconds a server has to start, or to stop.
TIMEOUT = 15.0


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server on port {port} did not start") from None
            time.sleep(0.05)


@dataclass
class Redis:
    """
    A C{redis-server} on 127.0.0.1 C{port}, its data in memory only.
    """

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """
        Start it and wait until it accepts connections.
        """
        server = shutil.which("redis-server")
        if server is None:
            raise AssertionError("redis-server is not installed (Debian: redis-server)")
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_listening(self.port, self.process)

    def kill(self) -> None:
        """
        Kill it (SIGKILL): what it held is lost, as when Redis crashes.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(TIMEOUT)

    def restart(self) -> None:
        """
        Kill it and start it again on the same port, empty.
        """
        self.kill()
        self.start()


@contextmanager
def redis_server(directory: Path) -> Iterator[Redis]:
    """
    A throwaway C{redis-server}, stopped (and its files removed) after.
    """
    directory.mkdir(parents=True, exist_ok=True)
    redis = Redis(free_port(), directory)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


def _postgres_bin(name: str) -> str:
    """
    The path of the PostgreSQL program C{name}: on C{PATH}, or where
    Debian keeps it (C{/usr/lib/postgresql/VERSION/bin}).
    """
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise AssertionError(f"PostgreSQL's {name} is not installed (Debian: postgresql)")
    return found


@dataclass
class Postgres:
    """
    A PostgreSQL cluster on 127.0.0.1 C{port}, trusting local connections
    as the C{postgres} user, its socket and data in C{directory}.
    """

    port: int
    directory: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        # initdb and the server refuse to run as root.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def create(self) -> None:
        """
        Make the cluster's data directory.
        """
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        """
        Start the server and wait until it accepts connections.
        """
        options = f"-k {self.directory} -p {self.port} -c listen_addresses=127.0.0.1"
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-w",
            "-l", str(self.directory / "log"), "start",
        )  # fmt: skip

    def stop(self) -> None:
        """
        Stop the server at once (as a crash would).
        """
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """
    A throwaway PostgreSQL cluster, stopped and removed after. Its
    directory is a new one under /tmp, which the C{postgres} user can
    reach (pytest's are the test user's alone).
    """
    directory = Path(tempfile.mkdtemp(prefix="twistedchat-postgres-"))
    os.chmod(directory, 0o755)
    postgres = Postgres(free_port(), directory)
    postgres.create()
    postgres.start()
    try:
        yield postgres
    finally:
        try:
            postgres.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(directory, ignore_errors=True)
