"""
Tests for L{twistedchat.client}: the connection to the server reads only
as fast as standard output takes the lines (Twisted's producer/consumer
API), checked against Twisted's real L{StandardIO} on a pipe, over TLS,
and end to end with a server that floods a real C{twistedchat-client}
whose standard output nobody reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from realserver import BIN, TIMEOUT, environment, make_certificate
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IConsumer
from twisted.internet.main import CONNECTION_DONE
from twisted.internet.protocol import Factory
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.stdio import StandardIO
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from twistedchat.client import Keyboard, ServerConnection

# 100 bytes a line, as the server sends it; the client prints it without CR.
LINE = b"<flood> " + b"x" * 90 + b"\r\n"
PRINTED = LINE.rstrip(b"\r\n") + b"\n"
# More than StandardIO's write buffer (FileDescriptor.bufferSize, 64 KiB).
OVER_BUFFER = 1000


@dataclass
class Terminal:
    """
    Twisted's real L{StandardIO} writing to a pipe, watched by a
    L{MemoryReactor} so that the test plays the reactor's part.
    """

    stdio: StandardIO
    reactor: MemoryReactor
    output: int

    def drain(self) -> tuple[bytes, object]:
        """
        Write everything L{stdio} buffered to the pipe and read it back,
        calling C{doWrite} as the reactor would while the writer is
        watched for writability.

        @return: the bytes read from the pipe, and what the last
            C{doWrite} returned (C{CONNECTION_DONE} asks the reactor to
            close standard output).
        """
        [writer] = self.reactor.getWriters()
        printed = b""
        result = None
        for _ in range(1000):
            if writer not in self.reactor.getWriters():
                return printed, result
            result = writer.doWrite()
            try:
                while chunk := os.read(self.output, 1 << 20):
                    printed += chunk
            except BlockingIOError:
                pass
        raise AssertionError("standard output never drained")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    """
    A L{Terminal}: the standard I/O of C{twistedchat-client}, on pipes.
    """
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    os.set_blocking(stdout_read, False)
    reactor = MemoryReactor()
    stdio = StandardIO(Keyboard(ServerConnection(None, None)), stdin_read, stdout_write, reactor)
    yield Terminal(stdio, reactor, stdout_read)
    for fd in (stdin_read, stdin_write, stdout_read, stdout_write):
        with contextlib.suppress(OSError):
            os.close(fd)


def connect(terminal: IConsumer) -> tuple[ServerConnection, StringTransport]:
    """
    A L{ServerConnection} on a L{StringTransport} standing for the
    socket, printing to C{terminal}.
    """
    server = ServerConnection(None, None)
    sock = StringTransport()
    server.makeConnection(sock)
    server.print_to(terminal)
    return server, sock


def test_transport_is_terminal_producer() -> None:
    """
    The connection's transport is registered on the terminal as a
    streaming producer, so the terminal's pause and resume stop and
    restart reading from the socket; when the connection closes, the last
    unterminated line is printed and the producer is unregistered.
    """
    screen = StringTransport()
    server, sock = connect(screen)
    assert screen.producer is sock
    assert screen.streaming is True

    screen.producer.pauseProducing()
    assert sock.producerState == "paused"
    screen.producer.resumeProducing()
    assert sock.producerState == "producing"

    server.dataReceived(b"*** one\r\n*** bye")
    server.connectionLost(Failure(ConnectionDone()))
    assert screen.value() == b"*** one\n*** bye\n"
    assert screen.producer is None


def test_full_standard_output_pauses_socket(terminal: Terminal) -> None:
    """
    Twisted's L{StandardIO} pauses the socket once more than 64 KiB waits
    to be written to standard output, and resumes it when all of it has
    been written; nothing is lost.
    """
    server, sock = connect(terminal.stdio)
    server.dataReceived(LINE * 600)
    assert sock.producerState == "producing"
    server.dataReceived(LINE * (OVER_BUFFER - 600))
    assert sock.producerState == "paused"

    printed, _ = terminal.drain()
    assert sock.producerState == "producing"
    assert printed == PRINTED * OVER_BUFFER


def test_close_while_paused_flushes_and_closes(terminal: Terminal) -> None:
    """
    When the server closes the connection while standard output is
    blocked, the last lines still reach standard output, and standard
    output then closes instead of waiting for a producer that will never
    produce again; only then does the keyboard report it closed (the
    client exits on that).
    """
    server, sock = connect(terminal.stdio)
    keyboard = terminal.stdio.protocol
    assert isinstance(keyboard, Keyboard)
    server.dataReceived(LINE * OVER_BUFFER + b"*** Goodbye.")
    assert sock.producerState == "paused"
    server.connectionLost(Failure(ConnectionDone()))
    terminal.stdio.loseWriteConnection()
    assert not keyboard.output_closed.called

    [writer] = terminal.reactor.getWriters()
    printed, result = terminal.drain()
    assert printed == PRINTED * OVER_BUFFER + b"*** Goodbye.\n"
    assert result is CONNECTION_DONE
    writer.connectionLost(Failure(result))
    assert keyboard.output_closed.called


def test_standard_output_closed_stops_socket(terminal: Terminal) -> None:
    """
    When standard output goes away, L{StandardIO} stops the producer:
    the client hangs up instead of reading what nobody will see.
    """
    server, sock = connect(terminal.stdio)
    os.close(terminal.output)
    server.dataReceived(b"*** nobody reads this\r\n")
    [writer] = terminal.reactor.getWriters()
    result = writer.doWrite()
    assert isinstance(result, BaseException)
    writer.connectionLost(Failure(result))
    assert sock.producerState == "stopped"


def test_tls_pause_reaches_socket() -> None:
    """
    Over TLS the connection's transport is a C{TLSMemoryBIOProtocol}; as
    the terminal's producer it passes pause and resume on to the TCP
    transport under it, so reading from the socket stops there too.
    """
    server = ServerConnection(None, None)
    factory = TLSMemoryBIOFactory(optionsForClientTLS("localhost"), True, Factory())
    tls = factory.protocol(factory, server)
    sock = StringTransport()
    tls.makeConnection(sock)
    assert server.transport is tls
    screen = StringTransport()
    server.print_to(screen)
    assert screen.producer is tls

    screen.producer.pauseProducing()
    assert sock.producerState == "paused"
    screen.producer.resumeProducing()
    assert sock.producerState == "producing"


# End to end: a flooding server and the real twistedchat-client.

CHUNK = LINE * 640
FLOOD_BYTES = 200 * 1024 * 1024
FLOOD_SECONDS = 10.0
STALL_SECONDS = 1.0


@dataclass
class Flood:
    """
    What happened when a server flooded a client.

    @ivar sent: bytes the server sent, whole lines.
    @ivar stalled: the socket took nothing for C{STALL_SECONDS}.
    @ivar seconds: how long the flood lasted.
    @ivar idle_rss: the client's resident memory in bytes when connected.
    @ivar peak_rss: its peak resident memory in bytes (C{VmHWM}) by the
        end of the flood.
    @ivar printed: everything the client wrote to standard output.
    @ivar status: the client's exit status.
    """

    sent: int
    stalled: bool
    seconds: float
    idle_rss: int
    peak_rss: int
    printed: bytes = field(repr=False)
    status: int


def memory(pid: int, figure: str) -> int:
    """
    One memory figure (C{VmRSS}, C{VmHWM}) of process C{pid}, in bytes,
    from C{/proc/PID/status}.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == figure:
            return int(value.split()[0]) * 1024
    raise AssertionError(f"no {figure} for process {pid}")


class FloodServer:
    """
    A server on 127.0.0.1, in a thread, for one client: once told to
    L{start}, it sends L{LINE} as fast as the socket takes it, until
    C{FLOOD_BYTES} are sent, C{FLOOD_SECONDS} pass, or the socket takes
    nothing for C{STALL_SECONDS}. On L{close} it finishes the line it was
    sending and closes the connection (with a TLS close_notify if TLS).
    """

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.port: int = self._listener.getsockname()[1]
        self.connected = threading.Event()
        self.flooded = threading.Event()
        self._start = threading.Event()
        self._close = threading.Event()
        self.sent = 0
        self.stalled = False
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def start(self) -> None:
        """
        Start flooding.
        """
        self._start.set()

    def close(self) -> None:
        """
        Close the connection and wait for the thread to end.
        """
        self._start.set()
        self._close.set()
        self._thread.join(TIMEOUT)
        self._listener.close()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection:
                if self._tls is not None:
                    connection.settimeout(TIMEOUT)
                    connection = self._tls.wrap_socket(connection, server_side=True)
                self.connected.set()
                if self._start.wait(TIMEOUT) and not self._close.is_set():
                    pending = self._flood(connection)
                else:
                    pending = memoryview(b"")
                self.flooded.set()
                self._close.wait(TIMEOUT)
                connection.settimeout(TIMEOUT)
                connection.sendall(pending)
                self.sent += len(pending)
                if isinstance(connection, ssl.SSLSocket):
                    connection.unwrap()
        except BaseException as e:
            self.error = e
        finally:
            self.connected.set()
            self.flooded.set()

    def _flood(self, connection: socket.socket) -> memoryview:
        """
        Send until a limit is reached; return what is left of the chunk
        being sent, which L{close} sends before closing.
        """
        connection.setblocking(False)
        began = time.monotonic()
        pending = memoryview(b"")
        while self.sent < FLOOD_BYTES and time.monotonic() - began < FLOOD_SECONDS:
            if not pending:
                pending = memoryview(CHUNK)
            _, writable, _ = select.select([], [connection], [], STALL_SECONDS)
            if not writable:
                self.stalled = True
                break
            try:
                count = connection.send(pending)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                continue
            self.sent += count
            pending = pending[count:]
        self.seconds = time.monotonic() - began
        return pending


def flood(command: list[str], tls: ssl.SSLContext | None = None) -> Flood:
    """
    Run C{command} + [HOST, PORT] against a L{FloodServer} with its
    standard output on a pipe that is not read during the flood; then
    close the connection and read the pipe to the end. The client is
    killed if it is still running at the end.

    @param command: the client's command line, without HOST and PORT.
    @param tls: the server's TLS context, if the client uses TLS.
    """
    server = FloodServer(tls)
    output, output_write = os.pipe()
    # The smallest pipe (one page), so that at the end more waits in the
    # client's buffer than the pipe can take at once.
    fcntl.fcntl(output_write, fcntl.F_SETPIPE_SZ, 4096)
    try:
        client = subprocess.Popen(
            [*command, "localhost" if tls else "127.0.0.1", str(server.port)],
            stdin=subprocess.PIPE,
            stdout=output_write,
            env=environment(),
        )
    finally:
        os.close(output_write)
    stdout = open(output, "rb")  # closed in the finally below
    printed: list[bytes] = []
    reader = threading.Thread(target=lambda: printed.append(stdout.read()), daemon=True)
    try:
        assert server.connected.wait(TIMEOUT), "the client did not connect"
        assert server.error is None, server.error
        idle_rss = memory(client.pid, "VmRSS")
        server.start()
        assert server.flooded.wait(FLOOD_SECONDS + TIMEOUT), "the flood did not end"
        assert server.error is None, server.error
        peak_rss = memory(client.pid, "VmHWM")
        reader.start()
        server.close()
        assert server.error is None, server.error
        reader.join(TIMEOUT)
        assert printed, "the client did not finish writing its output"
        status = client.wait(TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        server.close()
        assert client.stdin is not None
        client.stdin.close()
        stdout.close()
    return Flood(
        server.sent, server.stalled, server.seconds, idle_rss, peak_rss, printed[0], status
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_flood_while_output_blocked(tmp_path: Path, use_tls: bool) -> None:
    """
    A server floods a real twistedchat-client whose standard output is a
    pipe nobody reads: the client stops reading from the socket, so the
    flood stalls after a few megabytes (what the kernel's socket buffers
    hold), far below its 200 MB, and the client's resident memory grows
    by less than 10 MB (before the client paused the socket: by 240 MB in
    10 s). Once the pipe is read, every line the server sent comes
    out, and the client exits with status 0 when the server closes.
    """
    command = [str(BIN / "twistedchat-client")]
    context = None
    if use_tls:
        key, cert = make_certificate(tmp_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        command += ["--tls", "--cafile", str(cert)]

    result = flood(command, context)

    assert result.stalled, result
    assert result.sent < 64 * 1024 * 1024, result
    assert result.peak_rss - result.idle_rss < 10 * 1024 * 1024, result
    assert result.status == 0, result
    assert result.sent % len(LINE) == 0
    assert result.printed == PRINTED * (result.sent // len(LINE))
