"""
End-to-end tests: the real C{twistd -n chat}, real TCP clients on
127.0.0.1, the real C{telnet} program and C{twistedchat-client} driven
through pexpect.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pexpect
import pytest
from realserver import BIN, TIMEOUT, ChatServer, LineClient, environment

T = TypeVar("T")


def wait_for(condition: Callable[[], T]) -> T:
    """
    Poll C{condition} (a file another process writes) until it returns
    something true, for at most TIMEOUT seconds; return that.
    """
    deadline = time.monotonic() + TIMEOUT
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the daemon")
        time.sleep(0.05)
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    """
    A running C{twistd -n chat} with a MOTD, stopped after the test.
    """
    running = ChatServer(
        tmp_path,
        "--motd",
        "Welcome to the test server",
        "--server-name",
        "e2e",
        "--history-on-join",
        "0",
    )
    yield running
    running.stop()


def join(server: ChatServer, nickname: str, newline: bytes = b"\r\n") -> LineClient:
    """
    Connect to C{server}, check the greeting, and register as C{nickname}.
    """
    client = LineClient(server.port, newline)
    client.expect("*** This is e2e, running twistedchat")
    client.expect("- Welcome to the test server")
    client.expect("*** Choose a nickname")
    client.send(nickname)
    client.expect(f"*** Welcome, {nickname}!")
    return client


def terminal_client(server: ChatServer, nickname: str) -> pexpect.spawn:
    """
    Start twistedchat-client on a terminal in plain line mode (--plain),
    registering as C{nickname}.
    """
    return pexpect.spawn(
        str(BIN / "twistedchat-client"),
        ["--plain", "--nick", nickname, "127.0.0.1", str(server.port)],
        timeout=TIMEOUT,
        env=environment(),
    )


def test_whole_session(server: ChatServer) -> None:
    """
    Three clients (one ending lines with a bare LF, as nc does) join,
    chat, send a private message, rename, list users, act, quit, drop, and
    see the server shut down on SIGTERM; each sees exactly what it should,
    and the log records the session without the private text.
    """
    alice = join(server, "alice")
    bob = join(server, "bob", newline=b"\n")
    assert alice.expect("***") == "*** bob has joined"
    carol = join(server, "carol")
    assert alice.expect("***") == "*** carol has joined"
    assert bob.expect("***") == "*** carol has joined"

    alice.send("hello everyone")
    assert bob.expect("<") == "<alice> hello everyone"
    assert carol.expect("<") == "<alice> hello everyone"

    bob.send("/msg CAROL meet me at 5")
    assert carol.expect("*bob*") == "*bob* meet me at 5"
    assert bob.expect("->") == "-> *carol* meet me at 5"

    carol.send("/nick caroline")
    assert carol.expect("***") == "*** You are now known as caroline (was carol)."
    assert alice.expect("***") == "*** carol is now known as caroline"
    assert bob.expect("***") == "*** carol is now known as caroline"

    alice.send("/who")
    assert alice.expect("#lobby") == "*** 3 users in #lobby: alice, bob, caroline"

    bob.send("/me waves")
    assert alice.expect("waves") == "* bob waves"
    assert carol.expect("waves") == "* bob waves"

    carol.send("/quit see you")
    assert carol.read_until_closed() == ["*** Goodbye."]
    assert alice.expect("has left") == "*** caroline has left (see you)"
    assert bob.expect("has left") == "*** caroline has left (see you)"

    bob.reset()
    assert alice.expect("has left") == "*** bob has left (connection lost)"

    server.terminate()
    assert alice.read_until_closed() == ["*** server shutting down"]

    greeting = [
        "*** This is e2e, running twistedchat 0.1.0.",
        "- Welcome to the test server",
        "*** Choose a nickname (or send an empty line for a random one):",
    ]
    assert alice.received == greeting + [
        "*** Welcome, alice! 1 user online: alice. Type /help for the commands.",
        "*** bob has joined",
        "*** carol has joined",
        "*** carol is now known as caroline",
        "*** 3 users in #lobby: alice, bob, caroline",
        "* bob waves",
        "*** caroline has left (see you)",
        "*** bob has left (connection lost)",
        "*** server shutting down",
    ]
    assert bob.received == greeting + [
        "*** Welcome, bob! 2 users online: alice, bob. Type /help for the commands.",
        "*** carol has joined",
        "<alice> hello everyone",
        "-> *carol* meet me at 5",
        "*** carol is now known as caroline",
        "*** caroline has left (see you)",
    ]
    assert carol.received == greeting + [
        "*** Welcome, carol! 3 users online: alice, bob, carol. Type /help for the commands.",
        "<alice> hello everyone",
        "*bob* meet me at 5",
        "*** You are now known as caroline (was carol).",
        "* bob waves",
        "*** Goodbye.",
    ]

    log = server.log
    assert "registered as alice" in log
    assert "private message from bob to carol, 12 characters" in log
    assert "meet me" not in log
    assert "carol is now known as caroline" in log
    assert "caroline quit (see you)" in log
    assert "bob quit (connection lost)" in log
    for client in (alice, bob, carol):
        client.close()


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_shutdown_on_signal(tmp_path: Path, signal_name: str) -> None:
    """
    On SIGINT or SIGTERM every connection, registered or still at the
    prompt, gets "*** server shutting down" before it closes.
    """
    server = ChatServer(tmp_path)
    try:
        alice = LineClient(server.port)
        alice.send("alice")
        alice.expect("*** Welcome, alice!")
        waiting = LineClient(server.port)
        waiting.expect("*** Choose a nickname")
        server.terminate(getattr(signal, signal_name))
        assert alice.read_until_closed() == ["*** server shutting down"]
        assert waiting.read_until_closed() == ["*** server shutting down"]
    finally:
        server.stop()


def test_daemon(tmp_path: Path) -> None:
    """
    Without -n, twistd detaches, writes its pid file and log file, serves
    chat, and stops on SIGTERM from the pid in the pid file.
    """
    pidfile, logfile = tmp_path / "chat.pid", tmp_path / "chat.log"
    subprocess.run(
        [
            str(BIN / "twistd"),
            f"--pidfile={pidfile}",
            f"--logfile={logfile}",
            "chat",
            "--port",
            "tcp:0:interface=127.0.0.1",
        ],
        cwd=tmp_path,
        check=True,
        timeout=TIMEOUT,
    )
    pid = 0
    try:
        log = wait_for(
            lambda: (
                logfile.exists() and "listening on" in logfile.read_text() and logfile.read_text()
            )
        )
        pid = wait_for(
            lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text())
        )
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", log).group(1))
        client = LineClient(port)
        client.send("daemonuser")
        client.expect("*** Welcome, daemonuser!")
        os.kill(pid, signal.SIGTERM)
        assert client.read_until_closed() == ["*** server shutting down"]
        wait_for(lambda: not pidfile.exists())
    finally:
        if pid and pidfile.exists():
            os.kill(pid, signal.SIGKILL)


def test_registration_timeout_real(tmp_path: Path) -> None:
    """
    A real connection that never chooses a nickname is told why and closed
    after --registration-timeout seconds.
    """
    server = ChatServer(tmp_path, "--registration-timeout", "1")
    try:
        client = LineClient(server.port)
        assert client.read_until_closed()[-1] == "!!! No nickname chosen within 1 seconds; goodbye."
    finally:
        server.stop()


def test_telnet(server: ChatServer) -> None:
    """
    The real telnet program can register and chat both ways; telnet's
    own commands (an interrupt, "are you there") never reach others as
    text; /quit closes the session.
    """
    if shutil.which("telnet") is None:
        pytest.fail("telnet is not installed: .ci/run installs the Debian package telnet")
    eve = join(server, "eve")
    telnet = pexpect.spawn(
        "telnet", ["127.0.0.1", str(server.port)], timeout=TIMEOUT, env=environment()
    )
    try:
        telnet.expect_exact("*** Choose a nickname")
        telnet.sendline("dave")
        telnet.expect_exact("*** Welcome, dave! 2 users online: dave, eve.")
        assert eve.expect("***") == "*** dave has joined"

        eve.send("hi dave")
        telnet.expect_exact("<eve> hi dave")
        telnet.sendline("hello eve")
        assert eve.expect("<") == "<dave> hello eve"

        for command in ("send ip", "send ayt", "send brk"):
            telnet.sendcontrol("]")
            telnet.expect_exact("telnet>")
            telnet.sendline(command)
            telnet.sendline(f"after {command}")
            assert eve.expect("<") == f"<dave> after {command}"

        telnet.sendline("/quit")
        telnet.expect_exact("*** Goodbye.")
        telnet.expect(pexpect.EOF)
        assert eve.expect("has left") == "*** dave has left (quit)"
    finally:
        telnet.close(force=True)
        eve.close()


def test_terminal_client(server: ChatServer) -> None:
    """
    twistedchat-client registers with --nick, prints what arrives, sends
    what is typed, and exits with status 0 on /quit.
    """
    grace = join(server, "grace")
    client = terminal_client(server, "frank")
    try:
        client.expect_exact("*** Welcome, frank! 2 users online: frank, grace.")
        assert grace.expect("***") == "*** frank has joined"
        grace.send("hi frank")
        client.expect_exact("<grace> hi frank")
        client.sendline("hi grace")
        assert grace.expect("<") == "<frank> hi grace"
        client.sendline("/quit bye")
        client.expect_exact("*** Goodbye.")
        client.expect(pexpect.EOF)
        client.close()
        assert client.exitstatus == 0
        assert grace.expect("has left") == "*** frank has left (bye)"
    finally:
        client.close(force=True)
        grace.close()


def test_terminal_client_end_of_input(server: ChatServer) -> None:
    """
    Ctrl-D (end of input) in twistedchat-client quits the chat and exits
    with status 0.
    """
    ivy = join(server, "ivy")
    client = terminal_client(server, "jack")
    try:
        client.expect_exact("*** Welcome, jack!")
        client.sendeof()
        client.expect_exact("*** Goodbye.")
        client.expect(pexpect.EOF)
        client.close()
        assert client.exitstatus == 0
        assert ivy.expect("has left") == "*** jack has left (quit)"
    finally:
        client.close(force=True)
        ivy.close()


def test_terminal_client_server_closes(server: ChatServer) -> None:
    """
    twistedchat-client prints the shutdown notice and exits with status 0
    when the server goes away.
    """
    client = terminal_client(server, "henry")
    try:
        client.expect_exact("*** Welcome, henry!")
        server.terminate()
        client.expect_exact("*** server shutting down")
        client.expect(pexpect.EOF)
        client.close()
        assert client.exitstatus == 0
    finally:
        client.close(force=True)


def test_terminal_client_refused() -> None:
    """
    twistedchat-client reports a refused connection on one line, without
    a traceback, and exits with status 1.
    """
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    output, status = pexpect.run(
        f"{BIN / 'twistedchat-client'} 127.0.0.1 {port}",
        withexitstatus=True,
        timeout=TIMEOUT,
        env=environment(),
    )
    text = output.decode().strip()
    assert status == 1
    assert text.startswith(f"twistedchat-client: cannot connect to 127.0.0.1 port {port}:")
    assert "refused" in text
    assert "\n" not in text
