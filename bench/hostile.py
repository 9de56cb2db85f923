"""
Hostile connections against healthy users (issue 8, point 1): no
connection may stop the server reading from the others.

For every scenario the real server (twistd -n chat from --bin) starts
afresh with its default options, except for a plain TCP and a TLS
(ssl:, self-signed certificate) listener on free loopback ports, a new
SQLite --database in a temporary directory and --server-name bench.
Then, for --duration seconds:

- --healthy registered users each send a short line every second (under
  the default flood control of 2 lines/s after a burst of 10), carrying
  its send time; every healthy user reads everything, and each line's
  send-to-receive time is taken at every other healthy user;
- a new user connects every --join-interval seconds, waits for the
  nickname prompt, sends a nickname and takes the time from connecting to
  "*** Welcome", then leaves with /quit;
- the scenario's hostile connections do their worst:

  baseline            nothing hostile.
  silent-tls          a TCP connection to the TLS port that sends nothing,
                      not even a TLS ClientHello; a new one every 5 s, the
                      old ones kept open.
  non-reader          first 200 lines of 2,000 bytes are put in the
                      history (by 20 clients, each within the flood
                      burst); then a client with a 4 KiB receive buffer
                      and an Ethernet-sized TCP segment (1,460 bytes)
                      registers, sends "/history 200" 9 times (within the
                      flood burst; up to 3.6 MB) and never reads; a new
                      one as soon as the server cuts the last one off, or
                      after 10 s.
  streamers           ten connections, never registered, each sending
                      bytes without a newline as fast as the socket takes
                      them (from a separate process).
  silent-tls-timeout  20 silent connections to the TLS port at once, with
                      --registration-timeout 3: how many does the server
                      still hold open 8 s later?

Afterwards the hostile connections are closed and the healthy users keep
reading for up to --drain seconds, so that late lines count with their real
latency; a line still missing then is lost.

Every client socket is bound to its own loopback source address (healthy
users 127.1.x.y, hostile connections 127.2.x.y, new users 127.3.x.y,
history fillers 127.4.x.y; all of 127.0.0.0/8 is loopback on Linux) so
that the server's per-address limits never take two of them for one; all
connect to 127.0.0.1. The hostile connections' fate is read from the
kernel's TCP state (Linux TCP_INFO), without reading from them.

It prints a line per scenario and server (with what became of the hostile
connections, and how many "SendQ exceeded" and tracebacks the server
logged), then a table: healthy users' latency (p50, p99, max, ms), lines
lost, join time (p50, max, ms), failed joins and the server's RSS at the
end. A scenario passes when the healthy users' p99 latency and the slowest
join are under 250 ms, no line is lost and no join fails.

Usage:
    python bench/hostile.py                       # the server of this virtualenv
    python bench/hostile.py --bin /work/before/.venv/bin --label before
    python bench/hostile.py --label after --compare /work/before/.venv/bin \\
        --compare-label before --scenarios baseline,silent-tls
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import re
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path

from loadgen import BIN, Server

#: What the verdict holds healthy p99 latency and the slowest join to (ms).
LIMIT_MS = 250.0

#: Seconds between two lines of one healthy user.
SEND_INTERVAL = 1.0
#: Seconds a new user may take to join before its join counts as failed.
JOIN_TIMEOUT = 15.0

#: Seconds between two silent TLS connections in the silent-tls scenario.
SILENT_TLS_INTERVAL = 5.0
#: silent-tls-timeout: how many silent connections, the registration
#: timeout given to the server, and when (seconds after connecting) to
#: count the connections the server still holds open.
SILENT_TLS_BATCH = 20
SHORT_REGISTRATION_TIMEOUT = 3
SILENT_TLS_CHECK_AFTER = 8.0

#: The history the non-reader scenario starts from: as many lines as
#: /history shows at most (the default --history-max), of this many bytes,
#: sent by fillers of FILLER_LINES lines each (the default flood burst, so
#: no filler waits for flood control).
HISTORY_LINES = 200
HISTORY_LINE_BYTES = 2000
FILLER_LINES = 10
#: The non-reader's receive buffer (bytes), and the longest it is left
#: alone (seconds) before the next one registers.
NON_READER_BUFFER = 4096
NON_READER_INTERVAL = 10.0
#: The non-reader's TCP maximum segment size (bytes), as over Ethernet.
#: Over loopback's 64 KiB segments Linux sizes the server's send buffer
#: for the connection at 4 MiB at once, where a remote client that never
#: reads gets about 100 KiB: the kernel would take in all the output that
#: a remote client leaves waiting in the server.
NON_READER_MSS = 1460
#: "/history 200" requests the non-reader sends after its nickname (with
#: the nickname, the default flood burst of 10 lines). At first each
#: replays about 400 KB; the healthy users' chat pushes the long lines out
#: of the history at 10 lines a second, so after 20 s (the default
#: --duration) each still replays about 200 KB.
NON_READER_REQUESTS = 9

#: Connections in the streamers scenario, and bytes per send().
STREAMERS = 10
STREAM_CHUNK = b"x" * 65536

#: Groups of loopback source addresses: 127.<group>.x.y.
HEALTHY, HOSTILE, JOINER, FILLER = 1, 2, 3, 4

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
HEALTHY_LINE = re.compile(rb"hb (\d+) (\d+) (\d+)")
TCP_ESTABLISHED = 1  # tcpi_state in Linux's struct tcp_info

_next_index = {group: itertools.count() for group in (HEALTHY, HOSTILE, JOINER, FILLER)}


def source_address(group: int) -> str:
    """
    Return a loopback address of C{group} (127.C{group}.x.y) that no other
    client of this process has used.
    """
    index = next(_next_index[group])
    return f"127.{group}.{index // 254}.{index % 254 + 1}"


def connect(
    port: int,
    source: str,
    receive_buffer: int = 0,
    segment_size: int = 0,
    timeout: float = JOIN_TIMEOUT,
) -> socket.socket:
    """
    Connect to 127.0.0.1:C{port} from C{source}. C{receive_buffer} and
    C{segment_size} (bytes), when given, set the socket's receive buffer
    and the maximum segment size it announces before connecting. The
    socket is left blocking with C{timeout} seconds.
    """
    sock = socket.socket()
    try:
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if segment_size:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment_size)
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def server_closed(sock: socket.socket) -> bool:
    """
    Return whether the server has closed or reset C{sock}, from the
    kernel's TCP state (Linux C{TCP_INFO}), without reading from it: any
    state but ESTABLISHED means a FIN or an RST arrived.
    """
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != TCP_ESTABLISHED


def close_all(sockets: Sequence[socket.socket]) -> None:
    """
    Close every socket in C{sockets}.
    """
    for sock in sockets:
        sock.close()


def read_until(sock: socket.socket, marker: bytes, deadline: float) -> bytes:
    """
    Read from blocking C{sock} until C{marker} has arrived; return what
    was read.

    @param deadline: C{time.monotonic()} by which it must have arrived.
    @raise TimeoutError: it had not.
    @raise ConnectionError: the server closed the connection first.
    """
    data = b""
    while marker not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {marker!r} in time")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server before {marker!r}")
        data += chunk
    return data


def register(
    port: int, group: int, nickname: str, timeout: float = JOIN_TIMEOUT
) -> tuple[socket.socket, float]:
    """
    Join as C{nickname} from a new source address of C{group}: connect,
    wait for the nickname prompt, send the nickname, wait for
    "*** Welcome". Return the socket (blocking) and the seconds from
    starting to connect to the welcome.

    @raise OSError: (including C{TimeoutError} and C{ConnectionError}) the
        join failed or took longer than C{timeout} seconds.
    """
    start = time.monotonic()
    deadline = start + timeout
    sock = connect(port, source_address(group), timeout=timeout)
    try:
        read_until(sock, b"Choose a nickname", deadline)
        sock.sendall(nickname.encode() + b"\r\n")
        read_until(sock, b"*** Welcome", deadline)
    except OSError:
        sock.close()
        raise
    return sock, time.monotonic() - start


def quit_and_close(sock: socket.socket, timeout: float = 2.0) -> None:
    """
    Send /quit on C{sock}, read until the server closes it (at most
    C{timeout} seconds, so that nothing unread makes the close a reset),
    and close it.
    """
    try:
        sock.sendall(b"/quit\r\n")
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(65536):
                break
    except OSError:
        pass
    finally:
        sock.close()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """
    Write a new self-signed certificate for C{localhost} and its private
    key into C{directory}; return their paths (key, certificate). No
    client here completes a handshake: the server only needs something to
    load.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class ChatServer(Server):
    """
    C{twistd -n chat} from C{bin_dir} with default options but for a plain
    TCP listener (C{tcp_port}) and a TLS one (C{tls_port}) on free
    loopback ports, a new database and its certificate in C{directory},
    C{--server-name bench} and C{options}.
    """

    def __init__(self, bin_dir: Path, directory: Path, options: Sequence[str]) -> None:
        key, cert = make_certificate(directory)
        super().__init__(
            [
                str(bin_dir / "twistd"),
                "-n",
                "--pidfile=",
                "--logfile=-",
                "chat",
                "--port",
                "tcp:0:interface=127.0.0.1",
                "--port",
                f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                "--database",
                str(directory / "chat.sqlite3"),
                "--server-name",
                "bench",
                *options,
            ]
        )
        self.tcp_port, self.tls_port = self._listening_ports()

    def _listening_ports(self, timeout: float = 30) -> tuple[int, int]:
        """
        Wait until both listeners are logged; return their ports, in the
        order of the C{--port} options.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = [int(m.group(1)) for line in list(self.log) if (m := LISTENING.search(line))]
            if len(ports) >= 2:
                return ports[0], ports[1]
            time.sleep(0.05)
        self.stop()
        raise SystemExit("server did not open both listeners:\n" + "\n".join(self.log))

    def log_count(self, text: str) -> int:
        """
        Return how many lines of the server's log so far contain C{text}.
        """
        return sum(text in line for line in list(self.log))


def percentile(values: Sequence[float], fraction: float) -> float:
    """
    Return the nearest-rank percentile of C{values} (C{fraction} 0.99 for
    the 99th), or NaN when there are none.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class HealthyUsers:
    """
    C{count} registered users on C{port}, each sending a line every
    SEND_INTERVAL seconds that carries its sender, number and send time,
    and reading every line the others send.

    @ivar latencies_ms: send-to-receive time of every delivery, in ms.
    @ivar sent: lines sent.
    @ivar delivered: deliveries (a line reaching one other healthy user).
    @ivar cut_off: healthy users the server closed.
    """

    def __init__(self, port: int, count: int) -> None:
        self.sockets = [register(port, HEALTHY, f"h{index}")[0] for index in range(count)]
        for sock in self.sockets:
            sock.setblocking(False)
        self.latencies_ms: list[float] = []
        self.sent = 0
        self.delivered = 0
        self.cut_off = 0
        self._outgoing = [bytearray() for _ in self.sockets]
        self._incoming = [b"" for _ in self.sockets]
        self._sequence = [0 for _ in self.sockets]
        self._poller = select.epoll()
        self._by_fd = {sock.fileno(): index for index, sock in enumerate(self.sockets)}
        for fd in self._by_fd:
            self._poller.register(fd, select.EPOLLIN)

    @property
    def expected(self) -> int:
        """
        Deliveries owed so far: every line sent, to every other healthy
        user.
        """
        return self.sent * (len(self.sockets) - 1)

    def chat(self, seconds: float) -> None:
        """
        Send and read for C{seconds}; the users' first lines are spread
        over the first SEND_INTERVAL.
        """
        start = time.monotonic()
        due = [start + SEND_INTERVAL * i / len(self.sockets) for i in range(len(self.sockets))]
        end = start + seconds
        while (now := time.monotonic()) < end:
            for index, when in enumerate(due):
                if now >= when:
                    self._queue_line(index)
                    due[index] += SEND_INTERVAL
            self._flush()
            self._read(min(min(due), end) - now)

    def drain(self, seconds: float) -> None:
        """
        Read until every line sent has reached every other healthy user,
        or for C{seconds} at most.
        """
        end = time.monotonic() + seconds
        while self.delivered < self.expected and (now := time.monotonic()) < end:
            self._flush()
            self._read(end - now)

    def close(self) -> None:
        """
        Close every healthy user's connection.
        """
        self._poller.close()
        close_all(self.sockets)

    def _queue_line(self, index: int) -> None:
        self._outgoing[index] += b"hb %d %d %d\r\n" % (
            index,
            self._sequence[index],
            time.monotonic_ns(),
        )
        self._sequence[index] += 1
        self.sent += 1

    def _flush(self) -> None:
        for index, outgoing in enumerate(self._outgoing):
            if outgoing and self.sockets[index].fileno() in self._by_fd:
                try:
                    del outgoing[: self.sockets[index].send(outgoing)]
                except BlockingIOError:
                    pass

    def _read(self, timeout: float) -> None:
        for fd, _ in self._poller.poll(max(0.0, min(timeout, 0.05))):
            index = self._by_fd[fd]
            try:
                data = self.sockets[index].recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                self._poller.unregister(fd)
                del self._by_fd[fd]
                self.cut_off += 1
                continue
            now = time.monotonic_ns()
            *lines, self._incoming[index] = (self._incoming[index] + data).split(b"\r\n")
            for line in lines:
                match = HEALTHY_LINE.search(line)
                if match:
                    self.delivered += 1
                    self.latencies_ms.append((now - int(match.group(3))) / 1e6)


class Joiners:
    """
    A new user joining on C{port} every C{interval} seconds, each in its
    own thread, until C{stop_joining}.

    @ivar times_ms: how long each successful join took, in ms.
    @ivar failures: why each join that failed or took longer than
        JOIN_TIMEOUT failed.
    """

    def __init__(self, port: int, interval: float) -> None:
        self.port = port
        self.interval = interval
        self.times_ms: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawner = threading.Thread(target=self._spawn, daemon=True)
        self._spawner.start()

    def stop_joining(self) -> None:
        """
        Start no more joins.
        """
        self._stop.set()
        self._spawner.join()

    def wait(self) -> None:
        """
        Wait for the joins under way (JOIN_TIMEOUT seconds at most).
        """
        for thread in self._threads:
            thread.join()

    def _spawn(self) -> None:
        for number in itertools.count():
            thread = threading.Thread(target=self._join, args=(f"j{number}",), daemon=True)
            thread.start()
            self._threads.append(thread)
            if self._stop.wait(self.interval):
                return

    def _join(self, nickname: str) -> None:
        try:
            sock, seconds = register(self.port, JOINER, nickname)
        except OSError as e:
            self.failures.append(str(e) or type(e).__name__)
            return
        self.times_ms.append(seconds * 1000)
        quit_and_close(sock)


# Hostile behaviours. Each runs in its own thread from when the healthy
# users start chatting until `stop` is set, then closes its connections
# and returns a short note on what it saw.


def silent_tls(server: ChatServer, stop: threading.Event) -> str:
    """
    Open a connection to the TLS port that sends nothing every
    SILENT_TLS_INTERVAL seconds, keeping the old ones open.
    """
    sockets: list[socket.socket] = []
    try:
        while True:
            sockets.append(connect(server.tls_port, source_address(HOSTILE)))
            if stop.wait(SILENT_TLS_INTERVAL):
                break
        still_open = sum(not server_closed(sock) for sock in sockets)
        return f"silent TLS: {len(sockets)} opened, {still_open} still open at the end"
    finally:
        close_all(sockets)


def silent_tls_batch(server: ChatServer, stop: threading.Event) -> str:
    """
    Open SILENT_TLS_BATCH silent connections to the TLS port at once and
    count those the server still holds open SILENT_TLS_CHECK_AFTER
    seconds later.
    """
    sockets = [connect(server.tls_port, source_address(HOSTILE)) for _ in range(SILENT_TLS_BATCH)]
    try:
        waited = time.monotonic()
        stop.wait(SILENT_TLS_CHECK_AFTER)
        waited = time.monotonic() - waited
        still_open = sum(not server_closed(sock) for sock in sockets)
        stop.wait()
        return (
            f"silent TLS: {still_open} of {len(sockets)} still open {waited:.1f} s after "
            f"connecting (--registration-timeout {SHORT_REGISTRATION_TIMEOUT})"
        )
    finally:
        close_all(sockets)


def fill_history(server: ChatServer) -> None:
    """
    Put HISTORY_LINES lines of HISTORY_LINE_BYTES bytes in the history,
    from fillers that each send FILLER_LINES (within the flood burst) and
    then quit; the server has taken every line when the last quit is
    answered.
    """
    for filler in range(HISTORY_LINES // FILLER_LINES):
        sock, _ = register(server.tcp_port, FILLER, f"f{filler}")
        for number in range(FILLER_LINES):
            text = b"f%d line %d " % (filler, number)
            sock.sendall(text.ljust(HISTORY_LINE_BYTES, b"x") + b"\r\n")
        quit_and_close(sock, timeout=JOIN_TIMEOUT)


def non_readers(server: ChatServer, stop: threading.Event) -> str:
    """
    Register a client that reads nothing after its welcome, with a
    NON_READER_BUFFER-byte receive buffer and an Ethernet-sized
    NON_READER_MSS, and have it ask for the history
    NON_READER_REQUESTS times; a new one as soon as the server cuts the
    last one off, or after NON_READER_INTERVAL seconds. The old ones stay
    connected.
    """
    sockets: list[socket.socket] = []
    try:
        while not stop.is_set():
            sock = connect(
                server.tcp_port, source_address(HOSTILE), NON_READER_BUFFER, NON_READER_MSS
            )
            request = b"/history %d\r\n" % HISTORY_LINES
            sock.sendall(b"n%d\r\n" % len(sockets))
            # Lines sent before the welcome would be ignored (issue 8).
            read_until(sock, b"*** Welcome", time.monotonic() + JOIN_TIMEOUT)
            sock.sendall(request * NON_READER_REQUESTS)
            sockets.append(sock)
            since = time.monotonic()
            while not stop.wait(0.1):
                if server_closed(sock) or time.monotonic() - since >= NON_READER_INTERVAL:
                    break
        cut_off = sum(server_closed(sock) for sock in sockets)
        return f"non-readers: {len(sockets)} registered, {cut_off} cut off by the server"
    finally:
        close_all(sockets)


def stream_without_newline(
    port: int, sources: list[str], stop: ProcessEvent, results: Connection
) -> None:
    """
    In a process of its own (so that it cannot slow the measuring threads
    down): connect from each of C{sources} to C{port} and send bytes with
    no newline on every connection as fast as the sockets take them,
    until C{stop}; then send C{results} the bytes sent and how many
    connections the server closed.
    """
    streams = [connect(port, source) for source in sources]
    for sock in streams:
        sock.setblocking(False)
    sent = closed = 0
    open_streams = list(streams)
    while open_streams and not stop.is_set():
        _, writable, _ = select.select([], open_streams, [], 0.1)
        for sock in writable:
            try:
                sent += sock.send(STREAM_CHUNK)
            except BlockingIOError:
                pass
            except OSError:
                open_streams.remove(sock)
                closed += 1
    results.send((sent, closed))
    close_all(streams)


def streamers(server: ChatServer, stop: threading.Event) -> str:
    """
    Run STREAMERS connections streaming bytes without a newline (see
    L{stream_without_newline}) until C{stop}.
    """
    context = multiprocessing.get_context("spawn")
    process_stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    sources = [source_address(HOSTILE) for _ in range(STREAMERS)]
    process = context.Process(
        target=stream_without_newline,
        args=(server.tcp_port, sources, process_stop, sending),
        daemon=True,
    )
    process.start()
    try:
        stop.wait()
        process_stop.set()
        if not receiving.poll(30):
            return "streamers: no report from the streaming process"
        sent, closed = receiving.recv()
        return f"streamers: {sent / 2**20:,.0f} MiB sent, {closed} of {STREAMERS} cut off"
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()


class Hostile:
    """
    Runs C{behaviour} (one of the functions above) in a thread.
    """

    def __init__(
        self, behaviour: Callable[[ChatServer, threading.Event], str], server: ChatServer
    ) -> None:
        self._stop = threading.Event()
        self._note = ""
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._note = behaviour(server, self._stop)
            except BaseException as e:
                self._error = e

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """
        Tell the behaviour to close its connections and stop (it does so
        in its own thread, without holding up the caller).
        """
        self._stop.set()

    def note(self) -> str:
        """
        Wait for the behaviour to finish; return its note.

        @raise BaseException: what the behaviour raised.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._note


@dataclass(frozen=True)
class Scenario:
    """
    One way of being hostile: C{prepare} runs before the healthy users
    join, C{hostile} while they chat; C{options} go to the server.
    """

    name: str
    hostile: Callable[[ChatServer, threading.Event], str] | None = None
    prepare: Callable[[ChatServer], None] | None = None
    options: tuple[str, ...] = ()


SCENARIOS = {
    scenario.name: scenario
    for scenario in [
        Scenario("baseline"),
        Scenario("silent-tls", silent_tls),
        Scenario("non-reader", non_readers, prepare=fill_history),
        Scenario("streamers", streamers),
        Scenario(
            "silent-tls-timeout",
            silent_tls_batch,
            options=("--registration-timeout", str(SHORT_REGISTRATION_TIMEOUT)),
        ),
    ]
}


@dataclass
class Result:
    """
    The figures of one scenario against one server.
    """

    scenario: str
    label: str
    latencies_ms: list[float]
    sent: int
    expected: int
    delivered: int
    joins_ms: list[float]
    join_failures: int
    rss_mib: float
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """
        Deliveries that never came.
        """
        return self.expected - self.delivered

    @property
    def latency_ms(self) -> tuple[float, float, float]:
        """
        The healthy users' p50, p99 and slowest send-to-receive time, in
        ms (NaN when nothing arrived).
        """
        latencies = self.latencies_ms
        return (
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            max(latencies, default=math.nan),
        )

    @property
    def join_ms(self) -> tuple[float, float]:
        """
        The median and slowest successful join, in ms (NaN when none
        succeeded).
        """
        return percentile(self.joins_ms, 0.5), max(self.joins_ms, default=math.nan)

    @property
    def verdict(self) -> str:
        """
        PASS when healthy p99 latency and the slowest join are under
        LIMIT_MS, with no line lost and no join failed; else FAIL.
        """
        passed = (
            self.latency_ms[1] < LIMIT_MS
            and self.join_ms[1] < LIMIT_MS
            and self.lost == 0
            and self.join_failures == 0
        )
        return "PASS" if passed else "FAIL"

    def line(self) -> str:
        """
        One line with every figure and note.
        """
        p50, p99, slowest = self.latency_ms
        join_p50, join_max = self.join_ms
        joins = len(self.joins_ms) + self.join_failures
        return (
            f"{self.scenario:18} {self.label:8} healthy p50 {p50:.1f} p99 {p99:.1f}"
            f" max {slowest:.1f} ms, {self.delivered:,}/{self.expected:,} delivered"
            f" ({self.sent} lines); joins p50 {join_p50:.1f} max {join_max:.1f} ms,"
            f" {self.join_failures}/{joins} failed; RSS {self.rss_mib:.1f} MiB;"
            f" {'; '.join(self.notes)} -> {self.verdict}"
        )


def run_scenario(scenario: Scenario, bin_dir: Path, label: str, args: argparse.Namespace) -> Result:
    """
    Start a fresh server from C{bin_dir}, run C{scenario} against it for
    C{args.duration} seconds, stop the server and return the figures.
    """
    with tempfile.TemporaryDirectory(prefix="twistedchat-hostile-") as directory:
        server = ChatServer(bin_dir, Path(directory), scenario.options)
        try:
            if scenario.prepare is not None:
                scenario.prepare(server)
            healthy = HealthyUsers(server.tcp_port, args.healthy)
            hostile = Hostile(scenario.hostile, server) if scenario.hostile else None
            joiners = Joiners(server.tcp_port, args.join_interval)
            healthy.chat(args.duration)
            joiners.stop_joining()
            if hostile is not None:
                hostile.stop()
            healthy.drain(args.drain)
            joiners.wait()
            notes = [hostile.note()] if hostile is not None else []
            rss_mib, _ = server.memory()
            healthy.close()
            notes.append(
                f"server log: {server.log_count('SendQ exceeded for')} SendQ exceeded, "
                f"{server.log_count('Traceback')} tracebacks"
            )
            if healthy.cut_off:
                notes.append(f"{healthy.cut_off} healthy users cut off")
            if joiners.failures:
                notes.append(f"first failed join: {joiners.failures[0]}")
        finally:
            server.stop()
    return Result(
        scenario=scenario.name,
        label=label,
        latencies_ms=healthy.latencies_ms,
        sent=healthy.sent,
        expected=healthy.expected,
        delivered=healthy.delivered,
        joins_ms=joiners.times_ms,
        join_failures=len(joiners.failures),
        rss_mib=rss_mib,
        notes=notes,
    )


def print_table(results: Sequence[Result]) -> None:
    """
    Print the summary table of C{results}.
    """
    print(
        f"\n{'scenario':18} {'server':8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5}"
        f" {'join p50':>9} {'join max':>9} {'join fail':>9} {'RSS MiB':>8}  verdict"
    )
    for result in results:
        p50, p99, slowest = result.latency_ms
        join_p50, join_max = result.join_ms
        print(
            f"{result.scenario:18} {result.label:8} {p50:>8.1f} {p99:>8.1f} {slowest:>8.1f}"
            f" {result.lost:>5} {join_p50:>9.1f} {join_max:>9.1f} {result.join_failures:>9}"
            f" {result.rss_mib:>8.1f}  {result.verdict}"
        )
    print(
        f"(healthy p50/p99/max: send-to-receive ms at every other healthy user; join: ms from "
        f"connecting to '*** Welcome'; PASS: p99 and join max under {LIMIT_MS:.0f} ms, "
        "nothing lost, no join failed)"
    )


def parse_arguments() -> argparse.Namespace:
    """
    Parse and check the command line.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bin",
        metavar="BIN",
        type=Path,
        default=BIN,
        help="virtualenv bin directory whose twistd runs the server (default: %(default)s, "
        "that of the Python running this script)",
    )
    parser.add_argument(
        "--label",
        metavar="NAME",
        help="name of the --bin server in the output (default: the directory above the "
        "virtualenv, e.g. 'before' for /work/before/.venv/bin)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="BIN",
        help="a second virtualenv bin directory: run every scenario against both servers, "
        "one after the other, and show them side by side",
    )
    parser.add_argument(
        "--compare-label",
        metavar="NAME",
        help="name of the --compare server in the output (default as --label)",
    )
    parser.add_argument(
        "--scenarios",
        metavar="LIST",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run, in order (default: %(default)s)",
    )
    parser.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        default=20,
        help="seconds the healthy users chat in each scenario (default: %(default)s)",
    )
    parser.add_argument(
        "--drain",
        metavar="SECONDS",
        type=float,
        default=15,
        help="seconds at most to wait afterwards for late lines, which then count as lost "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--healthy",
        metavar="N",
        type=int,
        default=10,
        help="healthy users, each sending a line a second (default: %(default)s)",
    )
    parser.add_argument(
        "--join-interval",
        metavar="SECONDS",
        type=float,
        default=1.5,
        help="seconds between two new users joining (default: %(default)s)",
    )
    args = parser.parse_args()
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(
            f"unknown scenarios {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}"
        )
    if args.healthy < 2:
        parser.error("--healthy must be at least 2: each line is timed at the other users")
    for directory in filter(None, [args.bin, args.compare]):
        if not (directory / "twistd").exists():
            parser.error(f"no twistd in {directory}")
    return args


def default_label(bin_dir: Path) -> str:
    """
    Name a server after the directory holding its virtualenv.
    """
    return bin_dir.absolute().parent.parent.name or str(bin_dir)


def main() -> None:
    args = parse_arguments()
    servers = [(args.bin, args.label or default_label(args.bin))]
    if args.compare is not None:
        servers.append((args.compare, args.compare_label or default_label(args.compare)))
    print(
        f"{args.healthy} healthy users, a line each per {SEND_INTERVAL:.0f} s; a new user every "
        f"{args.join_interval} s; {args.duration:.0f} s per scenario; servers: "
        + ", ".join(f"{label} ({bin_dir})" for bin_dir, label in servers),
        flush=True,
    )
    results = []
    for name in args.scenarios.split(","):
        for bin_dir, label in servers:
            result = run_scenario(SCENARIOS[name], bin_dir, label, args)
            results.append(result)
            print(result.line(), flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
