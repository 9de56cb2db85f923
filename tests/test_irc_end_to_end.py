"""
End-to-end tests of C{--irc}: the real C{twistd -n chat} and a real IRC
client library, the C{irc} package from PyPI, with a telnet user in the
same rooms.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import irc.client
import irc.connection
import pytest
from realserver import TIMEOUT, ChatServer, LineClient, make_certificate


@pytest.fixture
def server(tmp_path: Any) -> Iterator[ChatServer]:
    """
    A real server with a telnet and an IRC listener.
    """
    server = ChatServer(tmp_path, "--database", ":memory:", "--irc", "tcp:0:interface=127.0.0.1")
    yield server
    server.terminate()


class IRCUser:
    """
    One connection of the C{irc} package's client, recording every event.
    """

    def __init__(self, port: int, nickname: str, **login: Any) -> None:
        """
        Connect as C{nickname}; C{login} are C{ServerConnection.connect}'s
        C{password}, C{sasl_login} and C{connect_factory}.
        """
        self.reactor = irc.client.Reactor()
        self.events: list[irc.client.Event] = []
        self.reactor.add_global_handler("all_events", lambda _, event: self.events.append(event))
        self.connection = self.reactor.server().connect("127.0.0.1", port, nickname, **login)

    def wait_for(self, done: Callable[[], bool]) -> None:
        """
        Run the client until C{done()}, for at most the test timeout.
        """
        deadline = time.monotonic() + TIMEOUT
        while not done():
            assert time.monotonic() < deadline, [(e.type, e.arguments) for e in self.events]
            self.reactor.process_once(0.1)

    def seen(self, kind: str, text: str = "") -> bool:
        """
        Whether an event of C{kind} holding C{text} in its arguments came.
        """
        return any(
            event.type == kind and text in " ".join(map(str, event.arguments))
            for event in self.events
        )


def test_irc_client_and_telnet_user_talk(server: ChatServer) -> None:
    """
    A real IRC client registers (001), is in #lobby, exchanges lines with a
    telnet user both ways, joins a second channel with a topic, and quits;
    the telnet user sees it leave.
    """
    alice = IRCUser(server.irc_ports[0], "alice")
    alice.wait_for(lambda: alice.seen("welcome"))
    alice.wait_for(lambda: alice.seen("endofnames"))
    bob = LineClient(server.port)
    bob.send("bob")
    bob.expect("*** Welcome")
    alice.wait_for(
        lambda: (
            alice.seen("join")
            and any(e.type == "join" and e.source.nick == "bob" for e in alice.events)
        )
    )
    alice.connection.privmsg("#lobby", "hello from a real IRC client")
    assert bob.expect("<alice>") == "<alice> hello from a real IRC client"
    bob.send("hello back from telnet")
    alice.wait_for(lambda: alice.seen("pubmsg", "hello back from telnet"))
    alice.connection.join("#dev")
    alice.wait_for(lambda: any(e.type == "join" and e.target == "#dev" for e in alice.events))
    alice.connection.topic("#dev", "releases")
    alice.wait_for(lambda: alice.seen("topic", "releases"))
    alice.connection.quit("bye now")
    assert bob.expect("*** alice") == "*** alice has left (bye now)"


def test_accounts_channels_and_kick(tmp_path: Any) -> None:
    """
    Over a real server with accounts: alice registers her nickname with
    NickServ (900) and reconnects with SASL PLAIN (903, and she is alice);
    a wrong SASL password fails (904) and that client, refused alice, is
    registered under another nickname; alice and carol share two
    channels, NAMES shows alice as operator of #dev, and alice kicks
    carol, which both see.
    """
    server = ChatServer(
        tmp_path, "--database", str(tmp_path / "chat.db"), "--irc", "tcp:0:interface=127.0.0.1"
    )
    try:
        port = server.irc_ports[0]
        first = IRCUser(port, "alice")
        first.wait_for(lambda: first.seen("welcome"))
        first.connection.privmsg("NickServ", "REGISTER correct-horse")
        first.wait_for(lambda: first.seen("loggedin"))
        first.connection.quit("reconnecting")
        alice = IRCUser(port, "alice", password="correct-horse", sasl_login="alice")
        alice.wait_for(lambda: alice.seen("welcome"))
        assert alice.seen("saslsuccess") and alice.connection.get_nickname() == "alice"
        mallory = IRCUser(port, "alice", password="wrong-horse", sasl_login="alice")
        mallory.wait_for(lambda: mallory.seen("saslfail"))
        mallory.wait_for(lambda: mallory.seen("nicknameinuse"))
        mallory.connection.nick("mallory")
        mallory.wait_for(lambda: mallory.seen("welcome"))
        carol = IRCUser(port, "carol")
        carol.wait_for(lambda: carol.seen("welcome"))
        alice.connection.join("#dev,#ops")
        alice.wait_for(lambda: alice.seen("endofnames", "#ops"))
        carol.connection.join("#dev,#ops")
        carol.wait_for(lambda: carol.seen("endofnames", "#ops"))
        carol.connection.names(["#dev"])
        carol.wait_for(
            lambda: sum(e.type == "namreply" and "#dev" in e.arguments for e in carol.events) == 2
        )
        names = [
            e.arguments[-1].split()
            for e in carol.events
            if e.type == "namreply" and "#dev" in e.arguments
        ]
        assert names[-1] == ["@alice", "carol"]
        alice.connection.kick("#dev", "carol", "testing")
        carol.wait_for(lambda: carol.seen("kick", "testing"))
        alice.wait_for(lambda: alice.seen("kick", "testing"))
        carol.connection.privmsg("#ops", "still here")
        alice.wait_for(lambda: alice.seen("pubmsg", "still here"))
    finally:
        server.terminate()


def test_irc_over_tls(tmp_path: Path) -> None:
    """
    --irc ssl:...: the irc package's client connects over TLS, verifying
    the certificate, registers, talks with a telnet user and quits, and
    the server closes the TLS connection at once.
    """
    key, cert = make_certificate(tmp_path)
    server = ChatServer(
        tmp_path,
        "--database",
        ":memory:",
        "--irc",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    try:
        context = ssl.create_default_context(cafile=str(cert))
        wrap = functools.partial(context.wrap_socket, server_hostname="localhost")
        alice = IRCUser(
            server.irc_ports[0], "alice", connect_factory=irc.connection.Factory(wrapper=wrap)
        )
        alice.wait_for(lambda: alice.seen("welcome"))
        bob = LineClient(server.port)
        bob.send("bob")
        bob.expect("*** Welcome")
        alice.connection.privmsg("#lobby", "over TLS")
        assert bob.expect("<alice>") == "<alice> over TLS"
        alice.connection.quit("bye")
        alice.wait_for(lambda: alice.seen("disconnect"))
        assert bob.expect("*** alice") == "*** alice has left (bye)"
    finally:
        server.terminate()
