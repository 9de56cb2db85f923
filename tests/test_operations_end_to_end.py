"""
End-to-end tests of what operators run twistedchat with, against the real
C{twistd -n chat}: a configuration file reloaded on SIGHUP while clients
stay connected, Prometheus metrics and the health check, JSON logs, and
systemd socket activation.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from realserver import TIMEOUT, ChatServer, LineClient, register
from test_metrics import samples

ACTIVATE = Path(__file__).parent / "socket_activation.py"


def wait_for_log(server: ChatServer, text: str) -> None:
    """
    Wait until the server has logged a line holding C{text}.
    """
    deadline = time.monotonic() + TIMEOUT
    while not any(text in line for line in server.log_lines):
        assert time.monotonic() < deadline, server.log
        time.sleep(0.05)


def metrics(server: ChatServer) -> dict[str, float]:
    """
    Scrape the server's /metrics, parsed with prometheus_client's own
    parser: each sample's value by name (and labels, C{name{k=v}}).
    """
    url = f"http://127.0.0.1:{server.metrics_ports[0]}/metrics"
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return samples(response.read().decode())


def health(server: ChatServer) -> tuple[int, str]:
    """
    GET /healthz: the status code and the body.
    """
    url = f"http://127.0.0.1:{server.metrics_ports[0]}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_sighup_reloads_while_clients_stay(tmp_path: Path) -> None:
    """
    kill -HUP with a changed configuration file: the connected users stay
    and go on chatting; the next connection gets the new MOTD, and the new
    connection limit applies; a changed listener is logged as ignored
    until restart.
    """
    config = tmp_path / "chat.toml"
    config.write_text('motd = "first MOTD"\nmax-clients = 100\nweb-origin = []\n')
    server = ChatServer(tmp_path, "--config", str(config), "--database", ":memory:")
    try:
        alice = LineClient(server.port)
        assert alice.expect("first MOTD").endswith("first MOTD")
        alice.expect("*** Choose a nickname")
        alice.send("alice")
        alice.expect("*** Welcome, alice!")
        config.write_text(
            'motd = "second MOTD"\nmax-clients = 2\nweb-origin = ["https://chat.example.org"]\n'
        )
        server.process.send_signal(signal.SIGHUP)
        wait_for_log(server, f"reloaded {config}: max-clients, motd")
        assert f"web-origin changed in {config}: ignored until restart" in server.log
        bob = LineClient(server.port)
        assert bob.expect("MOTD").endswith("second MOTD")
        bob.expect("*** Choose a nickname")
        bob.send("bob")
        bob.expect("*** Welcome, bob!")
        alice.send("still here")
        assert bob.expect("<alice>") == "<alice> still here"
        carol = LineClient(server.port)
        assert "The server is full" in carol.expect("full")
    finally:
        server.terminate()


def test_metrics_and_health(tmp_path: Path) -> None:
    """
    /metrics, parsed with prometheus_client's parser, counts connections by
    front end, users and rooms, and its counters of lines received and
    deliveries move when users chat; /healthz answers 200 while the
    database answers, and 503 once its file is gone.
    """
    server = ChatServer(
        tmp_path,
        "--database",
        str(tmp_path / "chat.db"),
        "--metrics",
        "tcp:0:interface=127.0.0.1",
    )
    try:
        before = metrics(server)
        alice, bob = register(server, "alice"), register(server, "bob")
        alice.send("hello")
        bob.expect("<alice> hello")
        after = metrics(server)
        assert after["twistedchat_connections{front_end=telnet}"] == 2
        assert after["twistedchat_users"] == 2
        assert after["twistedchat_rooms"] == 1
        assert (
            after["twistedchat_lines_received_total"]
            >= before["twistedchat_lines_received_total"] + 1
        )
        assert after["twistedchat_deliveries_total"] > before["twistedchat_deliveries_total"]
        assert health(server) == (200, "ok\n")
        os.remove(tmp_path / "chat.db")
        status, body = health(server)
        assert status == 503 and body.startswith("database does not answer"), body
    finally:
        server.terminate()


def test_json_logs(tmp_path: Path) -> None:
    """
    --log-format json: every line the server logs is one JSON object
    (twisted.logger's format); no chat text or password is in them.
    """
    server = ChatServer(tmp_path, "--database", str(tmp_path / "chat.db"), "--log-format", "json")
    try:
        alice = register(server, "alice")
        alice.send("/register correct-horse-battery")
        alice.expect("registered")
        alice.send("a secret chat line")
        alice.send("/quit")
        alice.expect("Goodbye")
        wait_for_log(server, "alice quit (quit)")
    finally:
        server.terminate()
    assert server.raw_lines
    events = [json.loads(line) for line in server.raw_lines]
    assert all(isinstance(event, dict) and "log_namespace" in event for event in events)
    assert not any("secret chat line" in line for line in server.raw_lines)
    assert not any("correct-horse-battery" in line for line in server.raw_lines)


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """
    --port systemd:domain=INET:index=0 serves the socket systemd hands
    over (LISTEN_FDS), as a .socket unit does: users connect and chat.
    """
    server = ChatServer(
        tmp_path,
        "--database",
        ":memory:",
        port="systemd:domain=INET:index=0",
        launcher=(sys.executable, str(ACTIVATE)),
    )
    try:
        alice, bob = register(server, "alice"), register(server, "bob")
        alice.send("activated")
        assert bob.expect("<alice>") == "<alice> activated"
    finally:
        server.terminate()
