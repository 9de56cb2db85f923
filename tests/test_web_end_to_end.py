"""
End-to-end tests of C{--web}: the real C{twistd -n chat} serves the page's
files over real HTTP with the security headers, and refuses WebSocket
upgrades from other origins. The browser itself is driven in
C{test_browser}.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from realserver import TIMEOUT, ChatServer, make_certificate
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request, TextMessage

from twistedchat.protocol import CLOSE_TIMEOUT
from twistedchat.web import SECURITY_HEADERS, STATIC


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """
    One real server with a telnet and a web listener, for the module.
    """
    directory = tmp_path_factory.mktemp("web")
    server = ChatServer(directory, "--database", ":memory:", "--web", "tcp:0:interface=127.0.0.1")
    yield server
    server.terminate()


def get(
    server: ChatServer, path: str, headers: dict[str, str] | None = None
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.web_ports[0], timeout=15)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


@pytest.mark.parametrize(
    "path, name, content_type",
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "style.css", "text/css; charset=utf-8"),
    ],
)
def test_page_files_served(server: ChatServer, path: str, name: str, content_type: str) -> None:
    """
    The page and its files are served as they are in the package, with
    their content type and charset, and every security header.
    """
    response, body = get(server, path)
    assert response.status == 200
    assert body == (STATIC / name).read_bytes()
    assert response.getheader("Content-Type") == content_type
    for header, value in SECURITY_HEADERS.items():
        assert response.getheader(header.decode()) == value.decode()


def test_every_script_is_a_file(server: ChatServer) -> None:
    """
    The page has no inline script or style, which its
    Content-Security-Policy would block: each script is a module file.
    """
    _, body = get(server, "/")
    page = body.decode()
    assert "<style" not in page and " style=" not in page
    assert '<script type="module" src="' in page
    assert page.count("<script") == page.count(' src="')


def test_websocket_from_another_origin_refused(server: ChatServer) -> None:
    """
    A WebSocket upgrade whose Origin is another site's is answered 403;
    one from the page's own origin switches protocols (101).
    """
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    response, body = get(server, "/ws", {**upgrade, "Origin": "http://evil.example"})
    assert response.status == 403
    connection = http.client.HTTPConnection("127.0.0.1", server.web_ports[0], timeout=15)
    origin = f"http://127.0.0.1:{server.web_ports[0]}"
    connection.request("GET", "/ws", headers={**upgrade, "Origin": origin})
    response = connection.getresponse()
    assert response.status == 101
    connection.close()


def test_no_directory_listing(server: ChatServer, tmp_path: Path) -> None:
    """
    Paths outside the page's files answer 404, never a listing or a file
    from elsewhere.
    """
    for path in ("/nothing", "/../pyproject.toml", "/%2e%2e/web.py"):
        response, _ = get(server, path)
        assert response.status in (400, 404), path


class TLSWebSocket:
    """
    A WebSocket client over TLS on a real socket, with C{wsproto}.

    @ivar received: every C{wsproto} event received so far.
    """

    def __init__(self, port: int, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="localhost", target="/ws")))
        self.received: list[Any] = []

    def send(self, value: dict[str, Any]) -> None:
        """
        Send C{value} as one JSON text message.
        """
        self.sock.sendall(self.ws.send(TextMessage(json.dumps(value))))

    def read_until(self, done: Callable[[], bool]) -> None:
        """
        Read until C{done()} is true, or to the end of the stream.
        """
        while not done():
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.received.extend(self.ws.events())
            if not data:
                return

    def has_text(self, text: str) -> bool:
        """
        Whether a text message holding C{text} was received.
        """
        return any(text in getattr(event, "data", "") for event in self.received)

    def seconds_to_close(self) -> float:
        """
        Read to the end of the stream and return how long it took.
        """
        started = time.monotonic()
        self.read_until(lambda: False)
        self.sock.close()
        return time.monotonic() - started

    def close_code(self) -> int | None:
        """
        The code of the close frame received, if any.
        """
        codes = [event.code for event in self.received if isinstance(event, CloseConnection)]
        return codes[0] if codes else None


def test_websocket_over_tls_closes_at_once(tmp_path: Path) -> None:
    """
    Over an ssl: --web listener, the browser protocol works, and /quit
    closes the connection as soon as the goodbye is sent: the TLS
    transport is not held open by the HTTP channel, which stays its
    producer after the upgrade (it would otherwise be aborted after
    CLOSE_TIMEOUT seconds).
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--database",
        ":memory:",
        "--web",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        client = TLSWebSocket(server.web_ports[0], cert)
        client.read_until(lambda: client.has_text("nickname_wanted"))
        client.send({"type": "nickname", "nickname": "tls"})
        client.read_until(lambda: client.has_text("welcome"))
        client.send({"type": "line", "text": "/quit"})
        assert client.seconds_to_close() < CLOSE_TIMEOUT / 2
        assert client.close_code() == 1000
    finally:
        server.terminate()


def test_refused_websocket_over_tls_closes_at_once(tmp_path: Path) -> None:
    """
    A WebSocket refused by the connection limits over TLS gets its error
    and close code 1013, and the connection closes at once, not after
    CLOSE_TIMEOUT seconds.
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--database",
        ":memory:",
        "--connection-rate",
        "1",
        "--exempt",
        "192.0.2.0/24",
        "--web",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        first = TLSWebSocket(server.web_ports[0], cert)
        first.read_until(lambda: first.has_text("nickname_wanted"))
        refused = TLSWebSocket(server.web_ports[0], cert)
        assert refused.seconds_to_close() < CLOSE_TIMEOUT / 2
        assert refused.has_text("Too many connections")
        assert refused.close_code() == 1013
        first.sock.close()
    finally:
        server.terminate()


def test_connections_over_the_limit_dropped_over_tls(tmp_path: Path) -> None:
    """
    Over an ssl: --web listener, a connection beyond the HTTP connection
    limit of an address is dropped at once, as over TCP (Twisted's TLS
    factory would keep a refused connection open if the site refused it
    with None), with nothing in the log but a line saying so.
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--max-per-ip",
        "1",
        "--exempt",
        "192.0.2.0/24",
        "--database",
        ":memory:",
        "--web",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        port = server.web_ports[0]
        allowed = [socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) for _ in range(4)]
        over = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            assert over.recv(1) == b""
        except ConnectionResetError:
            pass  # dropped, as expected
        allowed[0].settimeout(0.5)
        with pytest.raises(socket.timeout):
            allowed[0].recv(1)  # still open, waiting for its handshake
        for sock in [*allowed, over]:
            sock.close()
    finally:
        server.terminate()
    assert "refused a web connection from 127.0.0.1" in server.log
