"""
End-to-end tests of the limits with the real server over TCP on
127.0.0.1: a client that stops reading, resets and half-closes.
"""

from __future__ import annotations

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
        tmp_path, "--max-sendq", "65536", "--sendq-timeout", "2", "--flood-rate", "0"
    )
    yield running
    running.stop()


def test_stalled_reader_cut_off_others_get_everything(server: ChatServer) -> None:
    """
    A client that never reads while others chat is cut off with "SendQ
    exceeded"; the reading client gets every line, in order.
    """
    reader = register(server, "reader")
    stalled = register(server, "stalled", receive_buffer=4096)
    reader.expect("*** stalled has joined")
    sender = register(server, "sender")
    reader.expect("*** sender has joined")
    count = 3000
    lines = [f"line {i:05d} " + "x" * 1000 for i in range(count)]
    thread = threading.Thread(target=lambda: [sender.send(line) for line in lines])
    thread.start()
    try:
        received = []
        left = None
        while len(received) < count:
            line = reader.expect("")
            if line.startswith("<sender> "):
                received.append(line[len("<sender> ") :])
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
    assert alice.expect("online") == "*** 1 user online: alice"
    bob = register(server, "bob")
    bob.send("hello")
    assert alice.expect("<bob>") == "<bob> hello"
    for client in (alice, bob, closer):
        client.close()
