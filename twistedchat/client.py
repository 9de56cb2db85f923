"""
C{twistedchat-client}: a terminal client that prints what arrives while
the user types, with Twisted's standard I/O and no threads.

Usage: C{twistedchat-client [--nick NAME] [--tls [--cafile CA.pem]] [HOST] [PORT]}.

On a terminal it runs full-screen (L{twistedchat.screen}); when standard
input or output is not a terminal (a pipe, a script, a bot), it prints
lines as they come and sends lines as they are typed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import (
    IConsumer,
    IHalfCloseableProtocol,
    IPushProducer,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust
from twisted.internet.stdio import StandardIO
from twisted.internet.task import react
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from twistedchat.sanitize import clean_line


class Options(usage.Options):
    """
    Command line of C{twistedchat-client}.
    """

    synopsis = "Usage: twistedchat-client [options] [HOST] [PORT]"
    longdesc = (
        "Chat on a twistedchat server: type a line and press Enter to send "
        "it; /help lists the server's commands; /quit or Ctrl-D leaves."
    )
    optParameters = [
        ["nick", None, None, "Nickname to register with as soon as connected."],
        [
            "cafile",
            None,
            None,
            "With --tls: trust the CA certificates in this PEM file instead of the system's.",
        ],
    ]
    optFlags = [
        ["tls", None, "Connect over TLS and verify the server's certificate and name."],
        [
            "plain",
            None,
            "Print lines as they come and send lines as typed, even on a terminal "
            "(the full-screen client is for terminals; pipes always get plain lines).",
        ],
    ]

    def parseArgs(self, host: str = "127.0.0.1", port: str = "12345") -> None:
        self["host"] = host
        try:
            self["port"] = int(port)
        except ValueError:
            raise usage.UsageError(f"PORT must be a number, not {port!r}.") from None
        if not 0 < self["port"] < 65536:
            raise usage.UsageError(f"PORT must be from 1 to 65535, not {port}.")

    def postOptions(self) -> None:
        if self["cafile"] is not None:
            if not self["tls"]:
                raise usage.UsageError("--cafile goes with --tls.")
            try:
                self["cafile"] = Certificate.loadPEM(Path(self["cafile"]).read_bytes())
            except OSError as e:
                raise usage.UsageError(
                    f"Cannot read --cafile {self['cafile']}: {e.strerror}."
                ) from None
            except Exception as e:
                raise usage.UsageError(
                    f"--cafile {self['cafile']} holds no PEM certificate ({e})."
                ) from None


class ServerConnection(LineReceiver):
    """
    The connection to the chat server: prints each line received on the
    terminal, with control characters removed, so a misbehaving server
    cannot act on the user's terminal either. Once L{print_to} has named
    the terminal, the connection reads from the server only as fast as the
    terminal takes the lines.

    @ivar closed: fires with C{None} when the connection closes.
    @ivar reason: why it closed (a L{Failure}), once it has.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(self, terminal: Any, nickname: str | None) -> None:
        self._terminal = terminal
        self._nickname = nickname
        self.closed: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self._producing_for: IConsumer | None = None

    def connectionMade(self) -> None:
        if self._nickname is not None:
            self.send_line(self._nickname.encode("utf-8", "surrogateescape"))

    def print_to(self, terminal: IConsumer) -> None:
        """
        Print each line received from now on to C{terminal}, and read from
        the server only while C{terminal} keeps up.

        The connection's transport becomes C{terminal}'s streaming
        producer (Twisted's producer/consumer API, L{IConsumer}):
        L{StandardIO} pauses it, so nothing more is read from the socket,
        while more than its C{bufferSize} (64 KiB) waits to be written to
        standard output, for instance while the terminal is stopped with
        Ctrl-S or nobody reads the pipe; it resumes it once everything is
        written. What the server sends meanwhile waits in the kernel's
        socket buffers and then the server's, so the client's memory stays
        bounded. Over TLS the transport is a C{TLSMemoryBIOProtocol},
        which passes the pause on to the TCP transport under it.
        L{connectionLost} unregisters the producer again.

        Call this once connected. If the terminal's output closes first,
        L{StandardIO} stops the producer, which closes the connection.

        @param terminal: where lines go; L{StandardIO} in
            C{twistedchat-client}.
        """
        self._terminal = terminal
        if self.reason is None:
            terminal.registerProducer(IPushProducer(self.transport), True)
            self._producing_for = terminal

    def lineReceived(self, line: bytes) -> None:
        self._terminal.write(clean_line(line).encode("utf-8") + b"\n")

    def lineLengthExceeded(self, line: bytes) -> None:
        self._terminal.write(clean_line(line[:200]).encode("utf-8") + b"...\n")

    def send_line(self, line: bytes) -> None:
        """
        Send one line to the server, ending it with CRLF.
        """
        assert self.transport is not None
        self.transport.write(line + b"\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._buffer:
            self.lineReceived(self._buffer)
        if self._producing_for is not None:
            # While a producer is registered and paused, a ProcessWriter
            # that drains its buffer resumes the producer instead of
            # finishing loseConnection (twisted/internet/abstract.py,
            # FileDescriptor.doWrite), so the final flush and the exit
            # would never come.
            self._producing_for.unregisterProducer()
            self._producing_for = None
        self.reason = reason
        self.closed.callback(None)


@implementer(IHalfCloseableProtocol)
class Keyboard(LineReceiver):
    """
    Standard input: each line typed goes to the server; end of input
    (Ctrl-D) sends C{/quit}, while standard output stays open for the
    server's goodbye.

    @ivar output_closed: fires with C{None} when standard output has
        closed: after everything written to it was written out, once
        C{loseWriteConnection} was called, or when it failed.
    """

    delimiter = b"\n"

    def __init__(self, server: ServerConnection) -> None:
        self._server = server
        self.output_closed: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        self._server.send_line(line.rstrip(b"\r"))

    def readConnectionLost(self) -> None:
        assert self._server.transport is not None
        # Every Twisted transport has connected, but no interface declares it.
        if self._server.transport.connected:  # type: ignore[attr-defined]
            self._server.send_line(b"/quit")

    def writeConnectionLost(self) -> None:
        if not self.output_closed.called:
            self.output_closed.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.writeConnectionLost()


def client_endpoint(reactor: Any, options: Options) -> IStreamClientEndpoint:
    """
    The endpoint to the server the C{options} name: TCP, or TLS verifying
    the certificate with C{--tls}.
    """
    host, port = options["host"], options["port"]
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
    if options["tls"]:
        trust = options["cafile"] if options["cafile"] is not None else platformTrust()
        endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=trust), endpoint)
    return endpoint


async def run(reactor: Any, options: Options) -> None:
    """
    Connect to the server in C{options} and chat until the connection
    closes and everything received is written to standard output.

    @raise SystemExit: with code 1 when the connection cannot be made,
        after a one-line message on standard error.
    """
    host, port = options["host"], options["port"]
    stdout = sys.stdout.buffer
    server = ServerConnection(stdout, options["nick"])
    endpoint = client_endpoint(reactor, options)
    try:
        await connectProtocol(endpoint, server)
    except (ConnectError, DNSLookupError) as e:
        sys.stderr.write(f"twistedchat-client: cannot connect to {host} port {port}: {e}\n")
        raise SystemExit(1) from None
    keyboard = Keyboard(server)
    terminal = StandardIO(keyboard, reactor=reactor)
    server.print_to(terminal)
    await server.closed
    # Stopping the reactor drops what StandardIO has not yet written, so
    # wait until standard output has taken the last lines and closed.
    # Twisted types StandardIO as its Windows class; the POSIX one has this.
    terminal.loseWriteConnection()  # type: ignore[attr-defined]
    await keyboard.output_closed
    if server.reason is not None and server.reason.check(SSL.Error):
        sys.stderr.write(
            f"twistedchat-client: TLS with {host} port {port} failed: {server.reason.value}\n"
        )
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    """
    Entry point of the C{twistedchat-client} console script.
    """
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        sys.stderr.write(f"twistedchat-client: {e}\n{options}")
        raise SystemExit(2) from None
    if sys.stdin.isatty() and sys.stdout.isatty() and not options["plain"]:
        from twistedchat.screen import TLSFailed, run_screen

        async def screen(reactor: Any) -> None:
            host, port = options["host"], options["port"]
            endpoint = client_endpoint(reactor, options)
            try:
                await run_screen(reactor, endpoint, f"{host}:{port}", options["nick"])
            except (ConnectError, DNSLookupError) as e:
                sys.stderr.write(f"twistedchat-client: cannot connect to {host} port {port}: {e}\n")
                raise SystemExit(1) from None
            except TLSFailed as e:
                sys.stderr.write(f"twistedchat-client: TLS with {host} port {port} failed: {e}\n")
                raise SystemExit(1) from None

        react(lambda reactor: Deferred.fromCoroutine(screen(reactor)))
    else:  # a pipe, a script, a bot: plain lines
        react(lambda reactor: Deferred.fromCoroutine(run(reactor, options)))
