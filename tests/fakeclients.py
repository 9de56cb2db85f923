"""
Test support: chat connections driven over StringTransport, with no
sockets and a fake clock.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from twistedchat.factory import ChatFactory
from twistedchat.protocol import ChatProtocol, ChatTelnetTransport


def make_factory(clock: Clock | None = None, **options: Any) -> ChatFactory:
    """
    Return a L{ChatFactory} on C{clock} (a new L{Clock} if C{None}) that
    builds telnet connections, with seeded randomness and, unless
    C{options} say otherwise, no per-address connection limit or
    connection throttle (all fake clients come from 127.0.0.1).
    """
    options.setdefault("max_per_ip", 0)
    options.setdefault("connection_rate", 0)
    factory = ChatFactory(clock or Clock(), rng=random.Random(1234), **options)
    factory.protocol = ChatTelnetTransport
    return factory


class FakeClient:
    """
    One connection to C{factory} over a L{StringTransportWithDisconnection}
    (or the subclass C{transport}).
    """

    def __init__(
        self,
        factory: ChatFactory,
        port: int = 50000,
        host: str = "127.0.0.1",
        transport: type[StringTransportWithDisconnection] = StringTransportWithDisconnection,
    ) -> None:
        self.factory = factory
        address = IPv4Address("TCP", host, port)
        self.protocol = factory.buildProtocol(address)
        self.transport = transport(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    @property
    def chat(self) -> ChatProtocol:
        """
        The L{ChatProtocol} inside the telnet layer.
        """
        return self.protocol.protocol

    def send(self, data: bytes) -> None:
        """
        Feed C{data} to the server as if it arrived from the network.
        """
        self.protocol.dataReceived(data)

    def output(self) -> bytes:
        """
        Let the server flush its output (the reactor turning once), then
        return and forget everything it wrote.
        """
        self.factory.clock.advance(0)
        data = self.transport.value()
        self.transport.clear()
        return data

    def lines(self) -> list[str]:
        """
        Return and forget what the server wrote, as lines without their
        CRLF. Fails if the output does not end with a whole line.
        """
        data = self.output()
        if not data:
            return []
        assert data.endswith(b"\r\n"), data
        return data[:-2].decode("utf-8").split("\r\n")

    def register(self, nickname: str) -> FakeClient:
        """
        Choose C{nickname} at the prompt and forget the output so far.
        """
        self.send(nickname.encode() + b"\r\n")
        assert self.chat.nickname == nickname, self.lines()
        self.output()
        return self

    @property
    def closed(self) -> bool:
        """
        Whether the server has closed this connection.
        """
        return not self.transport.connected


def chatters(factory: ChatFactory, *nicknames: str) -> list[FakeClient]:
    """
    Connect and register one client per nickname; forget all output so far.
    """
    clients = [FakeClient(factory, 50000 + i).register(n) for i, n in enumerate(nicknames)]
    for client in clients:
        client.output()
    return clients
