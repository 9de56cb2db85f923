"""
Test support for end-to-end tests: the real C{twistd -n chat} in a
subprocess, and line clients over real TCP sockets on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from twisted.logger import eventFromJSON, formatEvent

BIN = Path(sys.executable).parent
TIMEOUT = 15.0


class ChatServer:
    """
    C{twistd -n chat} listening on a free loopback port, started from
    C{directory}, with C{options}; its log is collected in C{log_lines}.
    More C{--port} options in C{options} add listeners, whose ports follow
    in C{ports}, in order; the ports of C{--web} listeners are in
    C{web_ports}, those of C{--irc} ones in C{irc_ports}, of C{--metrics} in
    C{metrics_ports}. Unless
    C{options} say otherwise, 127.0.0.1 is exempt from the per-address
    limits (every test client comes from it, and a test may connect more
    than --connection-rate times a minute).
    """

    def __init__(
        self,
        directory: Path,
        *options: str,
        port: str = "tcp:0:interface=127.0.0.1",
        launcher: tuple[str, ...] = (),
    ) -> None:
        """
        @param launcher: a command that runs the server's command line
            given after it (for example, one that hands it a listening
            socket as systemd does).
        """
        exempt = [] if "--exempt" in options else ["--exempt", "127.0.0.1"]
        command = [
            *launcher,
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "--logfile=-",
            "chat",
            "--port",
            port,
            *exempt,
            *options,
        ]
        self.process = subprocess.Popen(
            command, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.log_lines: list[str] = []
        # What the server wrote, as it wrote it (JSON with --log-format json).
        self.raw_lines: list[str] = []
        self.metrics_ports: list[int] = []
        self._listening = threading.Event()
        self._listeners = 1 + options.count("--port")
        self._web_listeners = options.count("--web")
        self._irc_listeners = options.count("--irc")
        self._metrics_listeners = options.count("--metrics")
        self.ports: list[int] = []
        self.web_ports: list[int] = []
        self.irc_ports: list[int] = []
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._listening.wait(TIMEOUT):
            self.stop()
            raise AssertionError("server did not start:\n" + self.log)

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.raw_lines.append(line)
            if line.startswith("{"):  # --log-format json: the text it stands for
                line = formatEvent(eventFromJSON(line)) or line
            self.log_lines.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                self.ports.append(int(match.group(1)))
            match = re.search(r"web client at https?://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.web_ports.append(int(match.group(1)))
            match = re.search(r"IRC at ircs?://127\.0\.0\.1:(\d+)/", line)
            if match:
                self.irc_ports.append(int(match.group(1)))
            match = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics", line)
            if match:
                self.metrics_ports.append(int(match.group(1)))
            counts = (
                len(self.ports),
                len(self.web_ports),
                len(self.irc_ports),
                len(self.metrics_ports),
            )
            expected = (
                self._listeners,
                self._web_listeners,
                self._irc_listeners,
                self._metrics_listeners,
            )
            if counts == expected:
                self._listening.set()

    @property
    def port(self) -> int:
        """
        The port of the first listener (the C{port} argument).
        """
        return self.ports[0]

    @property
    def log(self) -> str:
        """
        Everything the server logged so far.
        """
        return "\n".join(self.log_lines)

    def terminate(self, signal_number: int = signal.SIGTERM) -> None:
        """
        Send C{signal_number} (SIGTERM or SIGINT) and wait for a clean exit:
        twistd stops the reactor, logs "Main loop terminated.", then ends
        itself with the same signal (twistd reports the signal that
        stopped it).

        @raise AssertionError: the server exited some other way, or logged
            a traceback.
        """
        self.process.send_signal(signal_number)
        status = self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)  # the last of the log
        assert status == -signal_number, (status, self.log)
        assert "Main loop terminated." in self.log, self.log
        assert "Traceback" not in self.log, self.log

    def stop(self) -> None:
        """
        Make sure the server is gone.
        """
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)


class LineClient:
    """
    A raw TCP chat client that sends lines ending in C{newline} and records
    every line it receives; C{receive_buffer} (bytes) shrinks its socket's
    receive buffer, and C{segment_size} (bytes) the TCP segments it
    announces, which makes the server's kernel give the connection a send
    buffer like a remote client's (about 100 KiB for 1460) instead of the
    4 MiB it gives loopback peers.
    """

    def __init__(
        self,
        port: int,
        newline: bytes = b"\r\n",
        receive_buffer: int = 0,
        segment_size: int = 0,
    ) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(TIMEOUT)
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if segment_size:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment_size)
        self.sock.connect(("127.0.0.1", port))
        self.newline = newline
        self.received: list[str] = []
        self._buffer = b""
        self._next = 0

    def send(self, text: str) -> None:
        """
        Send one line.
        """
        self.sock.sendall(text.encode("utf-8") + self.newline)

    def _read_line(self) -> str | None:
        while b"\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        text = line.decode("utf-8")
        self.received.append(text)
        return text

    def expect(self, text: str) -> str:
        """
        Return the first line not yet returned that contains C{text},
        reading more from the server as needed.

        @raise AssertionError: the connection closed or timed out first.
        """
        while True:
            while self._next < len(self.received):
                line = self.received[self._next]
                self._next += 1
                if text in line:
                    return line
            try:
                if self._read_line() is None:
                    raise AssertionError(f"closed before {text!r}; got {self.received}")
            except TimeoutError:
                raise AssertionError(f"{text!r} not received; got {self.received}") from None

    def read_until_closed(self) -> list[str]:
        """
        Read until the server closes the connection; return the lines not
        yet returned by L{expect}.
        """
        while self._read_line() is not None:
            pass
        rest = self.received[self._next :]
        self._next = len(self.received)
        return rest

    def reset(self) -> None:
        """
        Drop the connection abruptly: close with a TCP reset.
        """
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """
        Close the socket if it is still open.
        """
        self.sock.close()


def register(
    server: ChatServer, nickname: str, receive_buffer: int = 0, segment_size: int = 0
) -> LineClient:
    """
    Connect to C{server} and register as C{nickname}; with
    C{receive_buffer} and C{segment_size}, first shrink the socket's
    receive buffer and TCP segments to that many bytes (see L{LineClient}).
    """
    client = LineClient(server.port, receive_buffer=receive_buffer, segment_size=segment_size)
    client.expect("*** Choose a nickname")
    client.send(nickname)
    client.expect(f"*** Welcome, {nickname}!")
    return client


def environment() -> dict[str, str]:
    """
    The environment for spawned programs: this virtual environment's
    commands first on PATH.
    """
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """
    Write a new self-signed certificate for C{localhost} and C{127.0.0.1},
    and its private key, into C{directory}; return their paths (key, cert).
    """
    import datetime
    import ipaddress

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
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
