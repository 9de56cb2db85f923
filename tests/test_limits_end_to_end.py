"""
End-to-end tests of the limits with the real server over TCP on
127.0.0.1: a client that stops reading, resets and half-closes.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from realserver import ChatServer, LineClient, register


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    """
    A running server with a small SendQ, a short SendQ timeout and no
    flood control, stopped after the test.
    """
    running = ChatServer(
        tmp_path,
        "--max-sendq",
        "65536",
        "--sendq-timeout",
        "2",
        "--flood-rate",
        "0",
        "--flood-bytes",
        "0",
    )
    yield running
    running.stop()


def test_stalled_reader_cut_off_others_get_everything(server: ChatServer) -> None:
    """
    A client that never reads while others chat is cut off with "SendQ
    exceeded"; the reading client gets every line, in order. (The sender
    keeps at most 100 lines ahead of the reader: nobody waits for the
    stalled client, so a sender without flood control can outrun a slow
    reader too, which would then be cut off in its turn.)
    """
    reader = register(server, "reader")
    stalled = register(server, "stalled", receive_buffer=4096, segment_size=1460)
    reader.expect("*** stalled has joined")
    sender = register(server, "sender")
    reader.expect("*** sender has joined")
    count = 3000
    lines = [f"line {i:05d} " + "x" * 1000 for i in range(count)]
    window = threading.Semaphore(100)

    def send_all() -> None:
        for line in lines:
            window.acquire()
            sender.send(line)

    thread = threading.Thread(target=send_all)
    thread.start()
    try:
        received = []
        left = None
        while len(received) < count:
            line = reader.expect("")
            if line.startswith("<sender> "):
                received.append(line[len("<sender> ") :])
                window.release()
            elif "has left" in line:
                left = line
        if left is None:
            left = reader.expect("has left")
    finally:
        thread.join(30)
    assert received == lines
    assert left == "*** stalled has left (SendQ exceeded)"
    assert "SendQ exceeded for" in server.log
    with pytest.raises(ConnectionResetError):
        stalled.read_until_closed()
    for client in (reader, sender, stalled):
        client.close()


def test_reset_mid_line_and_half_close(server: ChatServer) -> None:
    """
    A client that resets in the middle of a line, and one that sends a line
    and then half-closes, leave no entry behind and never break delivery to
    the others; the half-closed client's last line still arrives.
    """
    alice = register(server, "alice")
    resetter = register(server, "resetter")
    alice.expect("*** resetter has joined")
    resetter.sock.sendall(b"half a li")
    resetter.reset()
    assert alice.expect("has left") == "*** resetter has left (connection lost)"

    closer = register(server, "closer")
    alice.expect("*** closer has joined")
    closer.send("last words")
    closer.sock.shutdown(socket.SHUT_WR)
    assert alice.expect("<closer>") == "<closer> last words"
    assert alice.expect("has left") == "*** closer has left (connection lost)"

    waiting = LineClient(server.port)
    waiting.expect("*** Choose a nickname")
    waiting.sock.sendall(b"nick")
    waiting.reset()

    alice.send("/who")
    assert alice.expect("#lobby") == "*** 1 user in #lobby: alice"
    bob = register(server, "bob")
    bob.send("hello")
    assert alice.expect("<bob>") == "<bob> hello"
    for client in (alice, bob, closer):
        client.close()


def test_non_reader_freezes_nobody(tmp_path: Path) -> None:
    """
    A client that registers after long lines are in the history and then
    never reads does not hold up anyone, even with a SendQ timeout of an
    hour: the others get every line at once, and the non-reader is cut off
    when its SendQ (counting what the transport holds) passes
    --max-sendq, with a true byte count in the log.
    """
    server = ChatServer(
        tmp_path,
        "--max-sendq",
        "65536",
        "--sendq-timeout",
        "3600",
        "--flood-rate",
        "0",
        "--flood-bytes",
        "0",
    )
    try:
        reader = register(server, "reader")
        sender = register(server, "sender")
        for number in range(20):
            sender.send(f"long line {number} " + "x" * 2000)
            reader.expect(f"long line {number}")
        stalled = register(server, "stalled", receive_buffer=4096, segment_size=1460)
        reader.expect("*** stalled has joined")
        for number in range(300):
            sender.send(f"more {number} " + "y" * 1000)
            assert reader.expect("<sender> more").startswith(f"<sender> more {number} ")
        assert "*** stalled has left (SendQ exceeded)" in reader.received
        (logged,) = [line for line in server.log_lines if "SendQ exceeded for" in line]
        waiting = int(re.search(r"(\d+) bytes waiting", logged).group(1))
        assert waiting > 65536
        for client in (reader, sender, stalled):
            client.close()
    finally:
        server.stop()


def test_pipelined_password_after_a_ghost(tmp_path: Path) -> None:
    """
    A user whose old connection still holds their registered nickname
    reconnects with a client that sends "alice CRLF password CRLF" at
    once: the password takes the nickname over, the old connection is
    closed as "ghosted", and the password appears nowhere: not as a
    nickname, not as chat, not in the log, not in the history.
    """
    password = "sunflower-42"
    server = ChatServer(tmp_path, "--flood-rate", "0", "--log-messages")
    try:
        bob = register(server, "bob")
        old = register(server, "alice")
        old.send(f"/register {password}")
        old.expect("is now registered to you")
        new = LineClient(server.port)
        new.sock.sendall(f"alice\r\n{password}\r\n".encode())
        new.expect("*** Welcome, alice!")
        assert old.expect("taken it over") == (
            "*** Someone who gave the password of alice has taken it over; goodbye."
        )
        old.read_until_closed()
        assert bob.expect("has left") == "*** alice has left (ghosted)"
        assert bob.expect("has joined") == "*** alice has joined"
        new.send("back again")
        assert bob.expect("<alice>") == "<alice> back again"
        new.send("/quit")
        new.read_until_closed()
        bob.send("/quit")
        bob.read_until_closed()
        server.terminate()
        everything = "\n".join(bob.received + new.received + old.received) + server.log
        everything += (tmp_path / "twistedchat.sqlite3").read_bytes().decode("latin-1")
        assert password not in everything
    finally:
        server.stop()
