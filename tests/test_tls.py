"""
End-to-end TLS: the real server with an ssl: listener next to a plain one,
a certificate made in the test, a Python TLS client and
C{twistedchat-client --tls}.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pexpect
from realserver import BIN, TIMEOUT, ChatServer, LineClient, environment, make_certificate


class TLSLineClient(LineClient):
    """
    A line client over TLS that trusts only C{cafile}.
    """

    def __init__(self, port: int, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.newline = b"\r\n"
        self.received = []
        self._buffer = b""
        self._next = 0


def test_tls_chat(tmp_path: Path) -> None:
    """
    A TLS listener given as ssl:PORT:privateKey=...:certKey=... serves chat;
    a TLS user and a plain TCP user on the same server talk to each other,
    and twistedchat-client --tls --cafile verifies the certificate and
    chats too.
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--port",
        "tcp:0:interface=127.0.0.1",
        port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        tls_port = server.port
        secure = TLSLineClient(tls_port, cert)
        secure.expect("*** Choose a nickname")
        secure.send("secure")
        secure.expect("*** Welcome, secure!")
        assert secure.sock.version() in ("TLSv1.2", "TLSv1.3")

        client = pexpect.spawn(
            str(BIN / "twistedchat-client"),
            [
                "--plain",
                "--tls",
                "--cafile",
                str(cert),
                "--nick",
                "tlsclient",
                "localhost",
                str(tls_port),
            ],
            timeout=TIMEOUT,
            env=environment(),
        )
        try:
            client.expect_exact("*** Welcome, tlsclient!")
            assert secure.expect("joined") == "*** tlsclient has joined"
            secure.send("over TLS")
            client.expect_exact("<secure> over TLS")
            client.sendline("/quit")
            client.expect(pexpect.EOF)
            client.close()
            assert client.exitstatus == 0
        finally:
            client.close(force=True)
        secure.close()
    finally:
        server.stop()


def test_client_rejects_untrusted_certificate(tmp_path: Path) -> None:
    """
    twistedchat-client --tls refuses a certificate it cannot verify, with a
    one-line error and exit status 1.
    """
    key, cert = make_certificate(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_ca = make_certificate(other)
    server = ChatServer(tmp_path, port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}")
    try:
        output, status = pexpect.run(
            f"{BIN / 'twistedchat-client'} --tls --cafile {wrong_ca} localhost {server.port}",
            withexitstatus=True,
            timeout=TIMEOUT,
            env=environment(),
        )
        text = output.decode().strip()
        assert status == 1
        assert text.startswith(f"twistedchat-client: TLS with localhost port {server.port} failed:")
        assert "Traceback" not in text
    finally:
        server.stop()


def test_silent_tls_connections_freeze_nobody(tmp_path: Path) -> None:
    """
    TCP connections to the TLS port that never send a byte (so their
    handshake never ends) do not hold up anyone else: users on the plain
    port chat on at once, even with --registration-timeout shorter than
    --sendq-timeout (which used to freeze the chat for good). Each silent
    connection is really closed after the registration timeout, though a
    clean TLS close cannot complete.
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--registration-timeout",
        "1",
        "--sendq-timeout",
        "3600",
        port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        tls_port, plain_port = server.ports
        silent = [socket.create_connection(("127.0.0.1", tls_port)) for _ in range(5)]
        alice = LineClient(plain_port)
        alice.expect("*** Choose a nickname")
        alice.send("alice")
        alice.expect("*** Welcome, alice!")
        bob = LineClient(plain_port)
        bob.expect("*** Choose a nickname")
        bob.send("bob")
        bob.expect("*** Welcome, bob!")
        for number in range(20):
            alice.send(f"line {number}")
            assert bob.expect("<alice>") == f"<alice> line {number}"
        for sock in silent:
            sock.settimeout(TIMEOUT)
            try:
                while sock.recv(65536):
                    pass  # a TLS alert, then the end
            except ConnectionResetError:
                pass  # aborted
            sock.close()
        assert server.log.count("registration timeout for") >= 5
        for client in (alice, bob):
            client.close()
    finally:
        server.stop()


def test_tls_handshake_in_progress_is_not_a_slow_reader(tmp_path: Path) -> None:
    """
    A TCP connection to the TLS port that never sends its handshake is not
    taken for a client that does not read (the TLS transport buffers the
    greeting and pauses until the handshake is done): even with a SendQ
    timeout shorter than the registration timeout it is closed by the
    registration timeout, never as "SendQ exceeded".
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--registration-timeout",
        "2",
        "--sendq-timeout",
        "0.5",
        port=f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        try:
            while silent.recv(65536):
                pass
        except ConnectionResetError:
            pass  # aborted: a TLS close cannot complete without a handshake
        silent.close()
        secure = TLSLineClient(server.port, cert)
        secure.expect("*** Choose a nickname")
        secure.close()
        assert "registration timeout for" in server.log
        assert "SendQ exceeded" not in server.log
    finally:
        server.stop()
