"""
Tests for L{twistedchat.workers}: C{--workers N}, a supervisor sharing its
listening sockets with N worker processes.

The unit tests drive L{Supervisor} with a fake process reactor and
L{inherited_endpoint} with real sockets on the real reactor; the
end-to-end tests start the real C{twistd -n chat --workers N}.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from realserver import BIN, TIMEOUT, ChatServer, LineClient, make_certificate
from servers import Redis, redis_server
from twisted.internet import defer, protocol
from twisted.internet import ssl as twisted_ssl
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ClientEndpoint,
    UNIXClientEndpoint,
    connectProtocol,
)
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.wire import Echo
from twisted.python import usage
from twisted.python.failure import Failure

from twistedchat.tap import Options, makeService
from twistedchat.workers import (
    FIRST_RESTART_DELAY,
    LONGEST_RESTART_DELAY,
    STOP_TIMEOUT,
    SUPERVISOR_VARIABLE,
    Supervisor,
    bind_listener,
    inherited_endpoint,
    metrics_description,
    parse_description,
    parse_inherit,
    twistd_arguments,
    worker_arguments,
    worker_path,
)

#: Options that let --workers pass option checks without a Redis server:
#: a supervisor does not connect to Redis, its workers do.

# -- descriptions and command lines


def test_parse_description() -> None:
    """
    Endpoint descriptions parse as Twisted's do: positional parameters get
    their endpoint's names, backslashes escape colons and equals signs,
    and a type or parameter --workers cannot share is refused.
    """
    assert parse_description("tcp:12345:interface=127.0.0.1:backlog=1024") == (
        "tcp",
        {"port": "12345", "interface": "127.0.0.1", "backlog": "1024"},
    )
    assert parse_description("ssl:6697:k.pem:certKey=c.pem") == (
        "ssl",
        {"port": "6697", "privateKey": "k.pem", "certKey": "c.pem"},
    )
    assert parse_description(r"unix:/tmp/a\:b\=c.sock:mode=600") == (
        "unix",
        {"address": "/tmp/a:b=c.sock", "mode": "600"},
    )
    assert parse_description(r"tcp6:port=7:interface=\:\:1") == (
        "tcp6",
        {"port": "7", "interface": "::1"},
    )
    for wrong in ("systemd:domain=INET:index=0", "tcp:1:bogus=2", "tcp:1:port=2", "tcp:"):
        with pytest.raises(ValueError):
            parse_description(wrong)


def test_parse_inherit() -> None:
    """
    --inherit takes FD:DESCRIPTION, the description keeping its own colons.
    """
    assert parse_inherit("3:tcp:0:interface=127.0.0.1") == (3, "tcp:0:interface=127.0.0.1")
    for wrong in ("tcp:0", "3", "3:", "x:tcp:1"):
        with pytest.raises(ValueError):
            parse_inherit(wrong)


def test_metrics_description() -> None:
    """
    Worker I serves metrics on the --metrics port plus I; port 0 stays any
    free port; a non-TCP description or a port past 65535 is refused.
    """
    assert metrics_description("tcp:9100:interface=127.0.0.1:backlog=1024", 2) == (
        "tcp:9102:interface=127.0.0.1:backlog=1024"
    )
    assert metrics_description("tcp:interface=127.0.0.1:port=9100", 1) == (
        "tcp:interface=127.0.0.1:port=9101"
    )
    assert metrics_description("tcp:0:interface=127.0.0.1", 3) == "tcp:0:interface=127.0.0.1"
    for wrong in ("unix:/tmp/m.sock", "tcp:65535", "tcp:interface=127.0.0.1"):
        with pytest.raises(ValueError):
            metrics_description(wrong, 1)


def test_worker_path() -> None:
    """
    Worker I's file is the parent's with -wI before its extension, absolute.
    """
    assert worker_path("/d/twistedchat.sqlite3", 0) == "/d/twistedchat-w0.sqlite3"
    assert worker_path("/d/chat", 2) == "/d/chat-w2"
    assert worker_path("chat.log", 1) == os.path.join(os.getcwd(), "chat-w1.log")


def test_twistd_arguments() -> None:
    """
    A worker never daemonizes nor writes a pid file; it logs to the
    inherited standard output when the parent logs there, else to a file of
    its own, or to syslog as the parent; it runs the parent's reactor.
    """
    base = ["--nodaemon", "--pidfile="]
    assert twistd_arguments({"nodaemon": 1, "logfile": "-"}, 0) == [*base, "--logfile=-"]
    assert twistd_arguments({"nodaemon": 1, "logfile": None}, 0) == [*base, "--logfile=-"]
    assert twistd_arguments({"nodaemon": 0, "logfile": "/var/log/chat.log"}, 1) == [
        *base,
        "--logfile=/var/log/chat-w1.log",
    ]
    assert twistd_arguments({"nodaemon": 0, "logfile": None}, 2) == [
        *base,
        f"--logfile={os.getcwd()}/twistd-w2.log",
    ]
    assert twistd_arguments({"syslog": 1, "prefix": "chat", "reactor": "poll"}, 0) == [
        *base,
        "--syslog",
        "--prefix=chat",
        "--reactor=poll",
    ]


def test_worker_arguments(tmp_path: Path, redis: Redis) -> None:
    """
    A worker runs twistd chat with the parent's chat command line, then
    --workers=1, its node name, its own SQLite file and metrics port.
    """
    database = str(tmp_path / "chat.sqlite3")
    argv = ["--workers", "3", *cluster(redis), "--database", database, "--node-name", "box"]
    options = Options()
    options.parseOptions([*argv, "--metrics", "tcp:9100:interface=127.0.0.1"])
    arguments = worker_arguments(options, 1)
    assert arguments[:2] == ["-c", "from twistedchat.workers import worker_main; worker_main()"]
    chat = arguments.index("chat")
    assert arguments[2:chat] == ["--nodaemon", "--pidfile=", "--logfile=-"]
    assert arguments[chat + 1 :] == [
        *argv,
        "--metrics",
        "tcp:9100:interface=127.0.0.1",
        "--workers=1",
        "--node-name=box_w1",
        f"--database={tmp_path}/chat-w1.sqlite3",
        "--metrics=tcp:9101:interface=127.0.0.1:backlog=1024",
    ]


def test_worker_arguments_shared_database() -> None:
    """
    An in-memory or PostgreSQL database is passed on as it is; a node name
    is shortened so that the worker's stays within 40 characters.
    """
    for database in (":memory:", "postgresql://chat@db/chat"):
        options = {"argv": [], "database": database, "node-name": "n" * 40, "metrics": None}
        arguments = worker_arguments(options, 12)
        assert f"--node-name={'n' * 36}_w12" in arguments
        assert not [a for a in arguments if a.startswith("--database=")]


def test_metrics_must_be_tcp_with_workers(redis: Redis) -> None:
    """
    --metrics with --workers needs a TCP port, one per worker.
    """
    for metrics in ("unix:/tmp/metrics.sock", "tcp:65534"):
        with pytest.raises(usage.UsageError, match="--metrics"):
            Options().parseOptions(["--workers", "3", *cluster(redis), "--metrics", metrics])


# -- the supervisor, with a fake process reactor


class FakeProcess:
    """
    A worker process that records the signals sent to it.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[Any] = []

    def signalProcess(self, signal_id: Any) -> None:
        self.signals.append(signal_id)


class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor whose spawnProcess records the call and returns a
    L{FakeProcess}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(self, processProtocol: Any, executable: str, args: Any, **kw: Any) -> Any:
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append(
            dict(protocol=processProtocol, executable=executable, args=args, process=process, **kw)
        )
        return process


def end(spawned: dict[str, Any], reason: Exception) -> None:
    """
    Tell the supervisor that the C{spawned} process ended for C{reason}.
    """
    spawned["protocol"].processEnded(Failure(reason))


def start(
    reactor: ProcessReactor, descriptions: list[str], workers: int = 3
) -> tuple[Supervisor, list[Any]]:
    """
    Start a supervisor of C{workers} workers sharing C{descriptions}; return
    it and the list its log events go to.
    """
    supervisor = Supervisor(
        reactor,
        descriptions,
        workers,
        lambda index: ["worker", str(index)],
        executable="/bin/python",
        environment={"HOME": "/home/chat"},
        path="/srv",
    )
    with capturedLogs() as events:
        supervisor.privilegedStartService()
        supervisor.startService()
    return supervisor, events


def messages(events: list[Any]) -> list[str]:
    """
    The text of C{events}.
    """
    return [formatEvent(event) for event in events]


def test_supervisor_binds_once_and_spawns_workers(tmp_path: Path) -> None:
    """
    The supervisor binds each listener once and starts each worker as
    EXECUTABLE ARGUMENTS --inherit FD:DESCRIPTION..., the listeners on
    descriptors 3, 4, ... after the shared standard input and outputs, in
    the given directory, with its own pid in the environment.
    """
    reactor = ProcessReactor()
    path = tmp_path / "chat.sock"
    descriptions = ["tcp:0:interface=127.0.0.1:backlog=5", f"unix:{path}"]
    supervisor, events = start(reactor, descriptions)
    assert len(reactor.spawned) == 3
    first = reactor.spawned[0]
    fds = first["childFDs"]
    assert [fds[0], fds[1], fds[2]] == [0, 1, 2]
    assert sorted(fds) == [0, 1, 2, 3, 4]
    assert first["executable"] == "/bin/python"
    assert first["args"] == [
        "/bin/python",
        "worker",
        "0",
        "--inherit",
        f"3:{descriptions[0]}",
        "--inherit",
        f"4:{descriptions[1]}",
    ]
    assert first["path"] == "/srv"
    assert first["env"] == {"HOME": "/home/chat", SUPERVISOR_VARIABLE: str(os.getpid())}
    assert {s["childFDs"][3] for s in reactor.spawned} == {fds[3]}
    assert fcntl.fcntl(fds[3], fcntl.F_GETFL) & os.O_NONBLOCK
    tcp = socket.socket(fileno=os.dup(fds[3]))
    assert tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    with socket.create_connection(tcp.getsockname(), timeout=TIMEOUT):
        pass  # queued by the kernel for a worker to accept
    tcp.close()
    assert path.exists()
    assert [m for m in messages(events) if m.startswith("worker")] == [
        "worker 0 started (pid 1000)",
        "worker 1 started (pid 1001)",
        "worker 2 started (pid 1002)",
    ]
    stopped = supervisor.stopService()
    for spawned in reactor.spawned:
        end(spawned, ProcessTerminated(signal=signal.SIGTERM))
    assert stopped.called
    assert not path.exists()
    with pytest.raises(OSError):
        os.fstat(fds[3])


def test_supervisor_restarts_with_backoff() -> None:
    """
    A worker that exits is started again after 1 s, then 2 s, 4 s, ... at
    most 30 s for exits in a row; a worker that ran for 30 s or more
    starts again after 1 s.
    """
    reactor = ProcessReactor()
    supervisor, _ = start(reactor, ["tcp:0:interface=127.0.0.1"], workers=1)
    delays = []
    with capturedLogs() as events:
        for _ in range(7):
            end(reactor.spawned[-1], ProcessTerminated(signal=signal.SIGKILL))
            count = len(reactor.spawned)
            waited = 0.0
            while len(reactor.spawned) == count:
                reactor.advance(0.5)
                waited += 0.5
            delays.append(waited)
    assert delays == [FIRST_RESTART_DELAY, 2, 4, 8, 16, LONGEST_RESTART_DELAY, 30]
    assert messages(events)[:2] == [
        "worker 0 exited on signal 9 (SIGKILL); restarting in 1 s",
        "worker 0 started (pid 1001)",
    ]
    reactor.advance(LONGEST_RESTART_DELAY)
    with capturedLogs() as events:
        end(reactor.spawned[-1], ProcessDone(0))
    assert messages(events) == ["worker 0 exited with status 0; restarting in 1 s"]
    supervisor.stopService()


def test_supervisor_stop_kills_after_timeout() -> None:
    """
    Stopping sends SIGTERM to every worker, SIGKILL to those still running
    after the stop timeout, and fires once all have exited; a pending
    restart is cancelled.
    """
    reactor = ProcessReactor()
    supervisor, _ = start(reactor, ["tcp:0:interface=127.0.0.1"], workers=2)
    end(reactor.spawned[1], ProcessTerminated(exitCode=1))
    stopped = supervisor.stopService()
    first = reactor.spawned[0]
    assert first["process"].signals == ["TERM"]
    reactor.advance(STOP_TIMEOUT)
    assert first["process"].signals == ["TERM", "KILL"]
    assert not stopped.called
    end(first, ProcessTerminated(signal=signal.SIGKILL))
    assert stopped.called
    reactor.advance(LONGEST_RESTART_DELAY)
    assert len(reactor.spawned) == 2


def test_supervisor_forwards_signals() -> None:
    """
    forward(SIGHUP) sends SIGHUP to every running worker.
    """
    reactor = ProcessReactor()
    supervisor, _ = start(reactor, ["tcp:0:interface=127.0.0.1"], workers=2)
    supervisor.forward(signal.SIGHUP)
    assert [s["process"].signals for s in reactor.spawned] == [[signal.SIGHUP]] * 2
    supervisor.stopService()


def test_supervisor_port_in_use() -> None:
    """
    A listener that cannot be bound stops start-up with one log line
    naming it and the reason; no worker starts and nothing stays bound.
    """
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    reactor = ProcessReactor()
    with pytest.raises(SystemExit) as raised:
        start(reactor, ["tcp:0:interface=127.0.0.1", f"tcp:{port}:interface=127.0.0.1"])
    assert raised.value.code == 1
    assert not reactor.spawned
    busy.close()


def test_supervisor_port_in_use_logs_one_line() -> None:
    """
    The one line says which description failed and why.
    """
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    supervisor = Supervisor(ProcessReactor(), [f"tcp:{port}:interface=127.0.0.1"], 2, list)
    with capturedLogs() as events, pytest.raises(SystemExit):
        supervisor.privilegedStartService()
    busy.close()
    assert len(events) == 1
    assert f"tcp:{port}:interface=127.0.0.1: " in formatEvent(events[0])
    assert "Address already in use" in formatEvent(events[0])


def test_bind_unix_lock(tmp_path: Path) -> None:
    """
    A Unix listener takes PATH.lock as Twisted's does: a second bind of the
    same path while the first holds it is refused, and a stale socket file
    without a lock holder is replaced.
    """
    path = tmp_path / "chat.sock"
    first, lock = bind_listener(f"unix:{path}")
    with pytest.raises(Exception, match="lock"):
        bind_listener(f"unix:{path}")
    first.close()
    assert lock is not None
    lock.unlock()
    second, lock = bind_listener(f"unix:{path}")
    assert second.getsockname() == str(path)
    second.close()
    assert lock is not None
    lock.unlock()


# -- tap.py


def test_make_service_with_workers_runs_only_the_supervisor(tmp_path: Path, redis: Redis) -> None:
    """
    With --workers above 1, makeService builds only the supervisor: no
    chat, no listener in this process.
    """
    options = Options()
    database = str(tmp_path / "chat.sqlite3")
    options.parseOptions(
        ["--workers", "3", *cluster(redis), "--database", database, "--port", "2000"]
    )
    reactor = MemoryReactorClock()
    top = makeService(options, reactor)
    assert [type(service) for service in top] == [Supervisor]
    assert not reactor.tcpServers


def test_inherit_refuses_what_is_no_listening_socket() -> None:
    """
    --inherit, given by hand, names a listening socket or is refused.
    """
    read, write = os.pipe()
    try:
        for value in (f"{read}:tcp:2000", "999:tcp:2000", "tcp:2000"):
            with pytest.raises(usage.UsageError, match="--inherit"):
                Options().parseOptions(["--database", ":memory:", "--inherit", value])
    finally:
        os.close(read)
        os.close(write)


def test_make_service_adopts_inherited_sockets() -> None:
    """
    A listener whose description --inherit names is adopted from its
    descriptor (closed afterwards) instead of bound; the others are bound.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    fd = os.dup(sock.fileno())
    options = Options()
    options.parseOptions(
        [
            "--database",
            ":memory:",
            "--port",
            "tcp:2000",
            "--port",
            "tcp:2001",
            "--inherit",
            f"{fd}:tcp:2000:backlog=1024",
        ]
    )
    reactor = MemoryReactorClock()
    makeService(options, reactor).startService()
    assert [(fileno, family) for fileno, family, _ in reactor.adoptedPorts] == [
        (fd, socket.AF_INET)
    ]
    assert [port for port, *_ in reactor.tcpServers] == [2001]
    with pytest.raises(OSError):
        os.fstat(fd)
    sock.close()


# -- inherited_endpoint, on the real reactor


class Collect(protocol.Protocol):
    """
    Sends C{b"hello"} on connecting, and fires C{received} once the echo
    of it is in.
    """

    def __init__(self) -> None:
        self.received: defer.Deferred[bytes] = defer.Deferred()
        self._data = b""

    def connectionMade(self) -> None:
        self.transport.write(b"hello")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self._data += data
        if self._data == b"hello":
            self.received.callback(self._data)
            self.transport.loseConnection()  # type: ignore[union-attr]


def echo_factory() -> protocol.Factory:
    """
    A factory of echo servers.
    """
    return protocol.Factory.forProtocol(Echo)


def listening_fd(family: int, address: Any) -> tuple[int, Any]:
    """
    A duplicate descriptor of a new non-blocking listening socket bound to
    C{address}, and the address it got.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen()
    sock.setblocking(False)
    fd, bound = os.dup(sock.fileno()), sock.getsockname()
    sock.close()
    return fd, bound


@pytest_twisted.inlineCallbacks
def test_inherited_tcp() -> Any:
    """
    inherited_endpoint adopts an inherited TCP listening socket: a client
    connecting to its address reaches the factory; the descriptor is
    closed once adopted.
    """
    from twisted.internet import reactor

    fd, (host, port_number) = listening_fd(socket.AF_INET, ("127.0.0.1", 0))
    port = yield inherited_endpoint(reactor, "tcp:0:interface=127.0.0.1", fd).listen(echo_factory())
    try:
        with pytest.raises(OSError):
            os.fstat(fd)
        assert port.getHost().port == port_number
        client = Collect()
        yield connectProtocol(TCP4ClientEndpoint(reactor, host, port_number), client)
        assert (yield client.received) == b"hello"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_inherited_unix(tmp_path: Path) -> Any:
    """
    inherited_endpoint adopts an inherited Unix listening socket.
    """
    from twisted.internet import reactor

    path = str(tmp_path / "chat.sock")
    fd, _ = listening_fd(socket.AF_UNIX, path)
    port = yield inherited_endpoint(reactor, f"unix:{path}", fd).listen(echo_factory())
    try:
        client = Collect()
        yield connectProtocol(UNIXClientEndpoint(reactor, path), client)
        assert (yield client.received) == b"hello"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_inherited_tls(tmp_path: Path) -> Any:
    """
    For an ssl: description, inherited_endpoint serves TLS with the
    description's key and certificate: a client trusting only that
    certificate talks through it.
    """
    from twisted.internet import reactor

    key, cert = make_certificate(tmp_path)
    fd, (host, port_number) = listening_fd(socket.AF_INET, ("127.0.0.1", 0))
    description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    port = yield inherited_endpoint(reactor, description, fd).listen(echo_factory())
    try:
        trust = twisted_ssl.Certificate.loadPEM(cert.read_bytes())
        options = twisted_ssl.optionsForClientTLS("localhost", trust)
        client = Collect()
        yield connectProtocol(SSL4ClientEndpoint(reactor, host, port_number, options), client)
        assert (yield client.received) == b"hello"
    finally:
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_inherited_not_a_socket() -> Any:
    """
    listen fails when the descriptor is no listening socket, and closes it.
    """
    from twisted.internet import reactor

    read, write = os.pipe()
    with pytest.raises(OSError):
        yield inherited_endpoint(reactor, "tcp:0", read).listen(echo_factory())
    with pytest.raises(OSError):
        os.fstat(read)
    os.close(write)


# -- the real twistd chat --workers N, with a real Redis


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """
    A throwaway redis-server for this module's clusters.
    """
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


def cluster(redis: Redis) -> tuple[str, ...]:
    """
    Options joining a cluster of its own over C{redis} (a key prefix no
    other test uses).
    """
    return ("--cluster", redis.url, "--cluster-prefix", f"t{next(_PREFIXES)}:")


_PREFIXES = itertools.count()


def wait_for(condition: Callable[[], Any], what: str, server: ChatServer | None = None) -> Any:
    """
    Poll C{condition} until it returns something true, for at most
    C{TIMEOUT} seconds; return that.

    @raise AssertionError: it never did (with the server's log).
    """
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"{what}:\n" + (server.log if server else ""))


def worker_pids(server: ChatServer) -> dict[int, int]:
    """
    The pid of each worker, by index, as the supervisor last logged it.
    """
    pids = {}
    for line in list(server.log_lines):
        match = re.search(r"worker (\d+) started \(pid (\d+)\)", line)
        if match:
            pids[int(match.group(1))] = int(match.group(2))
    return pids


def start_workers(directory: Path, workers: int, *options: str, **kw: Any) -> ChatServer:
    """
    Start twistd chat --workers N and wait until every worker listens.
    """
    server = ChatServer(directory, "--workers", str(workers), *options, **kw)
    wait_for(
        lambda: sum("listening on" in line for line in list(server.log_lines)) == workers,
        "not every worker listens",
        server,
    )
    return server


def connections_of(pid: int, port: int) -> int:
    """
    How many established TCP connections to C{port} process C{pid} holds
    (its socket descriptors, matched against /proc/net/tcp).
    """
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(fields[9])
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            held.add(match.group(1))
    return len(held & established)


def greeted(port: int) -> LineClient:
    """
    A client connected to C{port} that has been greeted.
    """
    client = LineClient(port)
    client.expect("Choose a nickname")
    return client


def gone(pid: int) -> bool:
    """
    Whether process C{pid} no longer exists (nor is a zombie).
    """
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_connections_spread_over_workers(tmp_path: Path, redis: Redis) -> None:
    """
    twistd chat --workers 3 runs three workers on one port: 60 connections
    are spread over them (at least 5 each), each worker keeps its own
    SQLite file, and SIGTERM to the supervisor stops it and every worker
    cleanly.
    """
    server = start_workers(tmp_path, 3, *cluster(redis))
    try:
        pids = worker_pids(server)
        assert sorted(pids) == [0, 1, 2]
        # All at once, as a crowd arrives: a worker busy with one
        # connection leaves the next ones to the others.
        with ThreadPoolExecutor(6) as crowd:
            clients = list(crowd.map(lambda _: greeted(server.port), range(60)))
        counts = [connections_of(pid, server.port) for pid in pids.values()]
        assert sum(counts) == 60, counts
        assert min(counts) >= 5, counts
        for client in clients:
            client.close()
        assert sorted(p.name for p in tmp_path.glob("twistedchat-w*.sqlite3")) == [
            "twistedchat-w0.sqlite3",
            "twistedchat-w1.sqlite3",
            "twistedchat-w2.sqlite3",
        ]
        server.terminate()
        for index, pid in pids.items():
            assert f"worker {index} stopped on signal 15 (SIGTERM)" in server.log
            assert gone(pid), pid
    finally:
        server.stop()


def test_killed_worker_is_restarted(tmp_path: Path, redis: Redis) -> None:
    """
    A worker killed with SIGKILL is started again by the supervisor after
    1 s, and the port keeps accepting meanwhile.
    """
    server = start_workers(tmp_path, 3, *cluster(redis))
    try:
        killed = worker_pids(server)[1]
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: gone(killed), "the worker did not die", server)
        for _ in range(10):
            client = LineClient(server.port)
            client.expect("Choose a nickname")
            client.close()
        wait_for(lambda: worker_pids(server)[1] != killed, "the worker was not restarted", server)
        assert "worker 1 exited on signal 9 (SIGKILL); restarting in 1 s" in server.log
        wait_for(
            lambda: sum("listening on" in line for line in list(server.log_lines)) == 4,
            "the new worker does not listen",
            server,
        )
        server.terminate()
        assert all(gone(pid) for pid in worker_pids(server).values())
    finally:
        server.stop()


def test_port_in_use(tmp_path: Path, redis: Redis) -> None:
    """
    With --workers 3, a port already in use stops twistd at start-up with
    one line, before any worker starts.
    """
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = subprocess.run(
            [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "--logfile=-",
                "chat",
                *cluster(redis),
                "--workers",
                "3",
                "--port",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    finally:
        busy.close()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert [line for line in output.splitlines() if "Address already in use" in line] == [
        line for line in output.splitlines() if "Supervisor#critical" in line
    ]
    assert output.count("Address already in use") == 1, output
    assert "Traceback" not in output
    assert "started (pid" not in output


def test_tls_through_workers(tmp_path: Path, redis: Redis) -> None:
    """
    An ssl: listener shared by two workers serves chat over TLS.
    """
    key, cert = make_certificate(tmp_path)
    server = start_workers(
        tmp_path,
        2,
        *cluster(redis),
        port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        for number in range(4):
            client = LineClient.__new__(LineClient)
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            client.sock = context.wrap_socket(raw, server_hostname="localhost")
            client.newline, client.received, client._buffer, client._next = b"\r\n", [], b"", 0
            client.expect("Choose a nickname")
            client.send(f"secure{number}")
            client.expect(f"*** Welcome, secure{number}!")
            client.close()
        server.terminate()
    finally:
        server.stop()


def test_sighup_reaches_every_worker(tmp_path: Path, redis: Redis) -> None:
    """
    SIGHUP to the supervisor makes every worker reload its --config file.
    """
    config = tmp_path / "chat.toml"
    config.write_text('motd = "first"\n')
    server = start_workers(tmp_path, 2, *cluster(redis), "--config", str(config))
    try:
        wait_for(
            lambda: sum(line.endswith(" joined") for line in list(server.log_lines)) == 2,
            "not every worker joined the cluster (and handles SIGHUP)",
            server,
        )
        config.write_text('motd = "second"\n')
        server.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: sum("reloaded" in line for line in list(server.log_lines)) == 2,
            "not every worker reloaded",
            server,
        )
        assert "SIGHUP: passed on to 2 workers" in server.log
        server.terminate()
    finally:
        server.stop()


def test_oper_with_workers_needs_a_shared_database(tmp_path: Path, redis: Redis) -> None:
    """
    --oper with --workers and a SQLite file per worker is refused at
    start-up: no worker's file would hold the account.
    """
    options = Options()
    with pytest.raises(usage.UsageError, match="--oper with --workers needs"):
        options.parseOptions(
            ["--workers", "2", *cluster(redis), "--oper", "root2",
             "--database", str(tmp_path / "chat.db")]
        )  # fmt: skip
    assert not (tmp_path / "chat.db").exists()


def test_workers_refuse_a_redis_that_does_not_answer(tmp_path: Path) -> None:
    """
    With --workers, a Redis that is not there stops the supervisor at
    start-up with one line (after the usage text), before any worker is
    started, rather than every worker failing again and again.
    """
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "chat",
            "--workers",
            "2",
            "--cluster",
            "redis://127.0.0.1:1/0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "cannot reach Redis at 127.0.0.1:1" in result.stdout.splitlines()[-1]
    assert "started (pid" not in result.stdout + result.stderr


def test_workers_refuse_a_database_that_cannot_be_used(tmp_path: Path, redis: Redis) -> None:
    """
    With --workers and Redis there, a PostgreSQL database that does not
    answer stops the supervisor at start-up with one line naming it.
    """
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "chat",
            "--workers",
            "2",
            *cluster(redis),
            "--database",
            "postgresql://x@127.0.0.1:1/x",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    last = result.stdout.splitlines()[-1]
    assert "cannot use the database postgresql://127.0.0.1:1/x" in last, last
