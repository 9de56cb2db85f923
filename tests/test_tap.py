"""
Tests for L{twistedchat.tap}: options and the service they build.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeclients import FakeClient
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from twistedchat.factory import ChatFactory
from twistedchat.protocol import ChatTelnetTransport
from twistedchat.tap import Options, makeService
from twistedchat.web import BoundedInputFactory, ChatWebSocketResource


def parse(*argv: str) -> Options:
    """
    Parse C{argv} as C{twistd chat} would, with an in-memory database
    unless C{argv} names one.
    """
    options = Options()
    if "--database" not in argv:
        argv = ("--database", ":memory:", *argv)
    options.parseOptions(list(argv))
    return options


def test_defaults() -> None:
    """
    With no options the server listens on tcp:12345 with the documented
    defaults.
    """
    options = parse()
    assert options["port"] == ["tcp:12345:backlog=1024"]
    assert options["max-nick-length"] == 16
    assert options["max-line-length"] == 2048
    assert options["registration-timeout"] == 60.0
    assert options["motd"] is None
    assert not options["random-nicknames"]
    assert not options["log-messages"]


def test_ports() -> None:
    """
    --port takes a bare number (tcp:N) or an endpoint description, and may
    be given several times; TCP listeners get a listen backlog of 1024
    unless they set their own.
    """
    options = parse(
        "--port",
        "2000",
        "--port",
        "tcp:2001:interface=127.0.0.1",
        "-p",
        "unix:/tmp/x.sock",
        "--port",
        "tcp6:2002:backlog=10",
    )
    assert options["port"] == [
        "tcp:2000:backlog=1024",
        "tcp:2001:interface=127.0.0.1:backlog=1024",
        "unix:/tmp/x.sock",
        "tcp6:2002:backlog=10",
    ]


def test_web_options() -> None:
    """
    --web takes a port number or an endpoint description, like --port, and
    --web-origin an origin; both may be given several times.
    """
    options = parse(
        "--web",
        "8080",
        "--web",
        "unix:/tmp/web.sock",
        "--web-origin",
        "https://chat.example.org/",
        "--web-origin",
        "http://localhost:3000",
    )
    assert options["web"] == [
        "tcp:8080:backlog=1024",
        "unix:/tmp/web.sock",
    ]
    assert options["web-origin"] == ["https://chat.example.org", "http://localhost:3000"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--web", "bogus:1"], "--web bogus:1: not a port number or endpoint description"),
        (["--web-origin", "chat.example.org"], "--web-origin chat.example.org: not an origin"),
        (["--web-origin", "https://x/path"], "--web-origin https://x/path: not an origin"),
        (["--port", "bogus:1"], "--port bogus:1: not a port number or endpoint description"),
        (["--port", "tcp:notaport"], "--port tcp:notaport: not a port number"),
        (["--max-nick-length", "8"], "--max-nick-length must be from 9 to 64, not 8."),
        (["--max-nick-length", "x"], "--max-nick-length takes a number, not 'x'."),
        (["--max-line-length", "10"], "--max-line-length must be from 80 to 1048576, not 10."),
        (["--registration-timeout", "0"], "--registration-timeout must be from 1 to 86400, not 0."),
        (
            ["--motd", "@/nonexistent/motd.txt"],
            "--motd @/nonexistent/motd.txt: cannot read the MOTD file",
        ),
        (["--database", ""], "--database needs a file name, or :memory:"),
        (["--exempt", "10.0.0.0/33"], "--exempt 10.0.0.0/33: not an IP network"),
        (["--reserved-nicknames", "ok 9lives"], "--reserved-nicknames 9lives: A nickname starts"),
        (["--flood-bytes", "-1"], "--flood-bytes must be from 0 to"),
    ],
)
def test_bad_options(argv: list[str], message: str) -> None:
    """
    Each bad value stops parsing with a UsageError sentence naming the
    option.
    """
    with pytest.raises(usage.UsageError) as error:
        parse(*argv)
    assert str(error.value).startswith(message)


def test_hardening_options() -> None:
    """
    The flood, throttle, exemption and reserved-nickname options reach the
    factory; their defaults are those documented in the README.
    """
    factory = makeService(parse(), MemoryReactorClock()).services[0].factory
    assert (factory.flood_bytes, factory.flood_byte_burst) == (8192, 32768)
    assert factory.reserved_nicknames == ("NickServ", "ChanServ", "admin", "root", "operator")
    assert factory.connection_throttle.limit == 10
    assert factory.connection_throttle.ban == 600
    assert not factory.exemptions
    options = parse(
        "--flood-bytes",
        "0",
        "--reserved-nicknames",
        "Boss, Oper",
        "--exempt",
        "10.0.0.0/8",
        "--exempt",
        "2001:db8::/32",
        "--connection-rate",
        "0",
        "--max-registrations",
        "7",
    )
    factory = makeService(options, MemoryReactorClock()).services[0].factory
    assert factory.flood_bytes == 0
    assert factory.reserved_nicknames == ("Boss", "Oper")
    assert factory.exemptions.covers("10.1.2.3")
    assert factory.exemptions.covers("2001:db8::7")
    assert not factory.exemptions.covers("192.0.2.1")
    assert factory.connection_throttle.limit == 0
    assert factory.registrations.per_hour == 7


def test_motd_text_and_file(tmp_path: Path) -> None:
    """
    --motd takes text, or @FILE; control characters are removed.
    """
    assert parse("--motd", "hello\x1b[31m")["motd"] == "hello"
    motd = tmp_path / "motd.txt"
    motd.write_bytes(b"line one\r\nline \x07two\n")
    assert parse("--motd", f"@{motd}")["motd"] == "line one\nline two"


def test_make_service_listens_on_every_port() -> None:
    """
    makeService listens on every --port with one shared ChatFactory built
    from the options.
    """
    reactor = MemoryReactorClock()
    options = parse(
        "--port",
        "2000",
        "--port",
        "tcp:2001:interface=127.0.0.1",
        "--port",
        "unix:/tmp/chat.sock",
        "--max-line-length",
        "100",
        "--random-nicknames",
        "--server-name",
        "example",
    )
    service = makeService(options, reactor)
    service.startService()
    assert [(port, backlog, interface) for port, _, backlog, interface in reactor.tcpServers] == [
        (2000, 1024, ""),
        (2001, 1024, "127.0.0.1"),
    ]
    assert [address for address, *_ in reactor.unixServers] == ["/tmp/chat.sock"]
    factories = {id(factory) for _, factory, *_ in reactor.tcpServers + reactor.unixServers}
    assert len(factories) == 1
    factory = reactor.tcpServers[0][1]
    assert isinstance(factory, ChatFactory)
    assert factory.protocol is ChatTelnetTransport
    assert factory.clock is reactor
    assert factory.max_line_length == 100
    assert factory.random_nicknames
    assert factory.server_name == "example"


def test_make_service_serves_the_web() -> None:
    """
    makeService listens on every --web with the web site, whose WebSocket
    shares the telnet listeners' ChatFactory.
    """
    reactor = MemoryReactorClock()
    options = parse("--port", "2000", "--web", "tcp:8080:interface=127.0.0.1", "--web", "8081")
    service = makeService(options, reactor)
    service.startService()
    ports = {port: factory for port, factory, *_ in reactor.tcpServers}
    assert sorted(ports) == [2000, 8080, 8081]
    assert isinstance(ports[8080], BoundedInputFactory)
    assert ports[8080] is ports[8081]
    root = ports[8080].wrappedFactory.resource
    websocket = root.getStaticEntity(b"ws")
    assert isinstance(websocket, ChatWebSocketResource)
    assert websocket.factory.chat is ports[2000]


def test_stop_service_shuts_the_chat_down() -> None:
    """
    Stopping the service tells connected users the server is shutting down.
    """
    reactor = MemoryReactorClock()
    service = makeService(parse("--port", "2000"), reactor)
    service.startService()
    factory = reactor.tcpServers[0][1]
    client = FakeClient(factory).register("alice")
    service.stopService()
    assert client.lines() == ["*** server shutting down"]
    assert client.closed
