"""
Tests for the limits that keep one client from hurting others: SendQ,
a slow reader cut off alone, flood control, connection limits, idle timeout, keepalive.
"""

from __future__ import annotations

import socket

from fakeclients import FakeClient, chatters, make_factory
from twisted.internet.interfaces import INegotiated, ISystemHandle, ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import capturedLogs, formatEvent
from zope.interface import implementer

from twistedchat.protocol import (
    CLOSE_TIMEOUT,
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE,
    KEEPALIVE_INTERVAL,
    PROMPT,
    USER_TIMEOUT,
)
from twistedchat.session import State


def stall(client: FakeClient) -> None:
    """
    Make C{client}'s transport report a full buffer, as TCP does when the
    peer stops reading.
    """
    client.transport.producer.pauseProducing()


def drain(client: FakeClient) -> None:
    """
    Make C{client}'s transport report that its buffer drained.
    """
    client.transport.producer.resumeProducing()


@implementer(INegotiated)
class HandshakingTransport(StringTransportWithDisconnection):
    """
    A transport like Twisted's TLS transport (L{twisted.protocols.tls})
    during its handshake: it buffers what it is given, pausing its
    producer, until L{finish_handshake}; closing it does nothing until it
    is aborted (a handshake that never ends cannot close cleanly).
    """

    negotiatedProtocol = None
    handshake_done = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.buffered: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.handshake_done:
            super().write(data)
            return
        self.buffered.append(data)
        if self.producer is not None:
            self.producer.pauseProducing()

    def finish_handshake(self) -> None:
        """
        Complete the handshake as Twisted does: tell the protocol, send what
        was buffered, and resume the producer.
        """
        self.handshake_done = True
        self.protocol.handshakeCompleted()
        for data in self.buffered:
            super().write(data)
        self.producer.resumeProducing()

    def setTcpKeepAlive(self, enabled: bool) -> None:
        pass  # INegotiated is an ITCPTransport

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def loseConnection(self) -> None:
        self.disconnecting = True

    def abortConnection(self) -> None:
        self.disconnecting = False
        super().loseConnection()


# SendQ


def test_output_queued_while_transport_full() -> None:
    """
    While the transport's buffer is full, output waits in the SendQ; when
    it drains, the queued lines are written in order.
    """
    factory = make_factory(flood_rate=0)
    alice, bob = chatters(factory, "alice", "bob")
    stall(bob)
    alice.send(b"one\ntwo\n")
    assert bob.output() == b""
    assert bob.chat._output.queued == len(b"<alice> one\r\n<alice> two\r\n")
    drain(bob)
    assert bob.lines() == ["<alice> one", "<alice> two"]
    assert bob.chat._output.queued == 0


def test_sendq_exceeded() -> None:
    """
    A client whose queued output passes max_sendq bytes is cut off; the
    others see it leave with the reason "SendQ exceeded" and keep chatting.
    """
    factory = make_factory(max_sendq=4096, flood_rate=0)
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    stall(bob)
    for _ in range(100):
        alice.chat.session.say("x" * 100)
    lines = carol.lines()
    assert bob.closed
    assert bob.transport.disconnected  # aborted, not flushed
    assert "*** bob has left (SendQ exceeded)" in lines
    assert len(lines) == 101
    assert factory.nicknames() == ["alice", "carol"]
    alice.send(b"still here\n")
    assert carol.lines() == ["<alice> still here"]


def test_sendq_timeout() -> None:
    """
    A client whose output stays backed up for sendq_timeout seconds is cut
    off with "SendQ exceeded", even under max_sendq bytes.
    """
    clock = Clock()
    factory = make_factory(clock, sendq_timeout=10)
    alice, bob = chatters(factory, "alice", "bob")
    stall(bob)
    clock.advance(9.9)
    assert not bob.closed
    clock.advance(0.1)
    assert bob.closed
    assert alice.lines() == ["*** bob has left (SendQ exceeded)"]


def test_sendq_timeout_cancelled_by_draining() -> None:
    """
    A client whose output drains in time is not cut off.
    """
    clock = Clock()
    factory = make_factory(clock, sendq_timeout=10)
    alice, bob = chatters(factory, "alice", "bob")
    stall(bob)
    clock.advance(9)
    drain(bob)
    clock.advance(100)
    assert not bob.closed


# Flow control: a slow reader is its own problem


def test_stalled_client_does_not_pause_senders() -> None:
    """
    While one client's output is congested, senders keep being read and
    everyone else gets their lines at once; the stalled client's lines
    wait in its own SendQ and arrive, in order, when it drains.
    """
    factory = make_factory(flood_rate=0)
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    stall(bob)
    alice.send(b"1\n2\n3\n")
    assert alice.transport.producerState == "producing"
    assert carol.lines() == ["<alice> 1", "<alice> 2", "<alice> 3"]
    assert bob.output() == b""
    drain(bob)
    assert bob.lines() == ["<alice> 1", "<alice> 2", "<alice> 3"]


def test_sendq_counts_the_transports_buffer() -> None:
    """
    Once the transport says it is full of what the SendQ handed it, what
    it may still hold (at most what it was handed since it last said it
    had sent everything, and at most its 64 KiB buffer plus the last
    write) counts towards --max-sendq and is logged with the cut-off, so
    the log's byte count is true.
    """
    factory = make_factory(max_sendq=200_000, flood_rate=0)
    alice, bob = chatters(factory, "alice", "bob")
    line = b"<alice> " + b"x" * 1000 + b"\r\n"
    for count in (70, 10):  # two writes: 70 lines, then 10
        for _ in range(count):
            alice.chat.session.say("x" * 1000)
        bob.output()
    stall(bob)
    output = bob.chat._output
    assert output.in_transport == 64 * 1024 + 10 * len(line)
    assert output.waiting == output.in_transport
    with capturedLogs() as events:
        while not bob.chat._closed:
            alice.chat.session.say("x" * 1000)
    (event,) = [e for e in events if "bytes waiting" in formatEvent(e)]
    assert event["waiting"] > 200_000
    assert event["waiting"] == event["queued"] + event["in_transport"]


def test_tls_handshake_is_not_congestion() -> None:
    """
    Twisted's TLS transport buffers the greeting and pauses its producer
    until the handshake is done. That is not congestion: no SendQ timer
    runs, nobody else is affected, and the greeting goes out once the
    handshake is done; after it, a full transport is congestion again.
    """
    clock = Clock()
    factory = make_factory(clock, sendq_timeout=10, flood_rate=0)
    alice, bob = chatters(factory, "alice", "bob")
    client = FakeClient(factory, transport=HandshakingTransport)
    assert client.output() == b""  # the greeting is flushed, and buffered
    clock.advance(30)  # three SendQ timeouts, half the registration timeout
    assert not client.closed
    assert client.output() == b""
    alice.send(b"still chatting\n")
    assert bob.lines() == ["<alice> still chatting"]
    client.transport.finish_handshake()
    assert client.lines()[-1] == "*** " + PROMPT
    client.send(b"carol\n")
    client.output()  # the welcome, handed to the transport
    stall(client)
    clock.advance(10)
    assert client.closed


def test_registration_timeout_aborts_a_close_that_hangs() -> None:
    """
    A connection that has not registered in time is closed, and aborted
    CLOSE_TIMEOUT seconds later if the close did not complete (a silent
    TLS connection whose handshake never ends cannot close cleanly).
    """
    clock = Clock()
    factory = make_factory(clock, registration_timeout=3)
    client = FakeClient(factory, transport=HandshakingTransport)
    clock.advance(3)
    assert client.transport.disconnecting
    assert client.transport.connected
    clock.advance(CLOSE_TIMEOUT)
    assert not client.transport.connected
    assert factory.connection_count() == 0


# Flood control


def test_flood_control_delays_in_order() -> None:
    """
    After flood_burst lines, a client's further lines are processed at
    flood_rate lines per second, in order, none dropped; reading is paused
    meanwhile.
    """
    clock = Clock()
    factory = make_factory(clock, flood_rate=2, flood_burst=3)
    alice, bob = chatters(factory, "alice", "bob")
    clock.advance(10)  # a full bucket
    alice.send(b"".join(b"%d\n" % i for i in range(1, 8)))
    assert bob.lines() == ["<alice> 1", "<alice> 2", "<alice> 3"]
    assert alice.transport.producerState == "paused"
    clock.advance(0.5)
    assert bob.lines() == ["<alice> 4"]
    clock.advance(0.5)
    assert bob.lines() == ["<alice> 5"]
    clock.advance(1)
    assert bob.lines() == ["<alice> 6", "<alice> 7"]
    clock.advance(10)
    assert alice.transport.producerState == "producing"


def test_flood_bucket_refills() -> None:
    """
    A client that pauses between bursts gets its burst back.
    """
    clock = Clock()
    factory = make_factory(clock, flood_rate=1, flood_burst=2)
    alice, bob = chatters(factory, "alice", "bob")
    clock.advance(5)
    alice.send(b"a\nb\n")
    clock.advance(5)
    alice.send(b"c\nd\n")
    assert bob.lines() == ["<alice> a", "<alice> b", "<alice> c", "<alice> d"]


def test_flood_rate_zero_disables() -> None:
    """
    With flood_rate 0 a client may send any number of lines at once.
    """
    factory = make_factory(flood_rate=0)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"x\n" * 500)
    assert len(bob.lines()) == 500
    assert alice.transport.producerState == "producing"


# Connection limits


def test_max_per_ip() -> None:
    """
    A connection beyond max_per_ip from one address gets one line saying
    why and is closed; other addresses still get in, and a freed slot can
    be used again.
    """
    factory = make_factory(max_per_ip=2)
    first = FakeClient(factory, 1)
    FakeClient(factory, 2)
    third = FakeClient(factory, 3)
    assert third.lines() == [
        "!!! Too many connections from 127.0.0.1 (at most 2); try again later."
    ]
    assert third.closed
    assert factory.connection_count("127.0.0.1") == 2
    other = FakeClient(factory, 4, host="10.0.0.2")
    assert not other.closed
    first.transport.loseConnection()
    assert not FakeClient(factory, 5).closed


def test_max_clients() -> None:
    """
    A connection beyond max_clients gets one line saying why and is closed.
    """
    factory = make_factory(max_clients=2)
    FakeClient(factory, 1, host="10.0.0.1")
    FakeClient(factory, 2, host="10.0.0.2")
    third = FakeClient(factory, 3, host="10.0.0.3")
    assert third.lines() == ["!!! The server is full (2 connections); try again later."]
    assert third.closed
    assert factory.connection_count() == 2


def test_zero_disables_connection_limits() -> None:
    """
    max_clients 0 and max_per_ip 0 mean no limit.
    """
    factory = make_factory(max_clients=0, max_per_ip=0)
    clients = [FakeClient(factory, port) for port in range(50)]
    assert not any(client.closed for client in clients)


# Idle timeout and keepalive


def test_idle_timeout() -> None:
    """
    With idle_timeout, a registered client that sends nothing for that long
    is told why and disconnected, and the others see "idle timeout"; each
    line it sends restarts the count.
    """
    clock = Clock()
    factory = make_factory(clock, idle_timeout=60)
    alice, bob = chatters(factory, "alice", "bob")
    clock.advance(50)
    alice.send(b"still here\n")
    bob.send(b"me too\n")
    clock.advance(50)
    assert not alice.closed
    bob.send(b"and me\n")
    clock.advance(10)
    assert alice.lines()[-1] == "!!! No input for 60 seconds; goodbye."
    assert alice.closed
    assert bob.lines()[-1] == "*** alice has left (idle timeout)"
    assert not bob.closed


def test_no_idle_timeout_by_default() -> None:
    """
    Without idle_timeout, a registered client may stay silent forever.
    """
    clock = Clock()
    factory = make_factory(clock)
    (alice,) = chatters(factory, "alice")
    clock.advance(0)  # the output flush
    assert clock.getDelayedCalls() == []
    assert alice.chat.session.state is State.CHATTING


@implementer(ITCPTransport, ISystemHandle)
class TCPStringTransport(StringTransportWithDisconnection):
    """
    A string transport that records TCP keepalive settings, over a real
    (unconnected) TCP socket.
    """

    keepalive = False
    nodelay = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.socket = socket.socket()

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def getHandle(self) -> socket.socket:
        return self.socket


def test_tcp_keepalive() -> None:
    """
    TCP keepalive is turned on for each accepted TCP connection, with
    probes after a minute of silence every 15 seconds, and unacknowledged
    data times out after two minutes (keepalive does not probe while data
    is unacknowledged), so a vanished peer is noticed within two minutes;
    and Nagle's algorithm is off (TCP_NODELAY), so a line is not held back
    waiting for the acknowledgement of the one before.
    """
    factory = make_factory()
    client = FakeClient(factory, transport=TCPStringTransport)
    transport = client.transport
    assert transport.keepalive and transport.nodelay
    with transport.socket as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_COUNT
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT
    assert KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT <= 120
    assert USER_TIMEOUT <= 120_000


# Faults


def test_disconnect_during_registration_leaves_nothing() -> None:
    """
    A client that disconnects at the prompt leaves no trace in the shared
    state.
    """
    factory = make_factory(max_per_ip=10)
    client = FakeClient(factory)
    client.send(b"half a nick")
    client.transport.loseConnection()
    assert factory.connection_count() == 0
    assert factory.connection_count("127.0.0.1") == 0
    assert factory.nicknames() == []


# Limits per address group, across connections


def test_connection_attempts_throttled_then_banned() -> None:
    """
    More than connection_rate connection attempts a minute from one
    address get one line saying how long to wait and are closed, for
    connection_ban seconds; other addresses still get in.
    """
    clock = Clock()
    factory = make_factory(clock, connection_rate=10, connection_ban=600)
    for port in range(10):
        FakeClient(factory, port).transport.loseConnection()
    banned = FakeClient(factory, 10)
    assert banned.lines() == [
        "!!! Too many connections from 127.0.0.1 in a short time; try again in 600 seconds."
    ]
    assert banned.closed
    assert not FakeClient(factory, 11, host="192.0.2.1").closed
    clock.advance(599)
    assert FakeClient(factory, 12).closed
    clock.advance(1)
    assert not FakeClient(factory, 13).closed


def test_ipv6_limits_count_the_slash_64() -> None:
    """
    Per-address limits count an IPv6 address's /64 network as one
    address (Ergo's default), so one customer's many addresses share a
    limit.
    """
    from twisted.internet.address import IPv6Address

    factory = make_factory(max_per_ip=2)
    clients = []
    for suffix in ("1", "2", "3"):
        address = IPv6Address("TCP", f"2001:db8:1:2::{suffix}", 4000)
        protocol = factory.buildProtocol(address)
        transport = StringTransportWithDisconnection(peerAddress=address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        clients.append(transport)
    assert (
        clients[2]
        .value()
        .endswith(
            b"!!! Too many connections from 2001:db8:1:2::/64 (at most 2); try again later.\r\n"
        )
    )
    assert factory.connection_count("2001:db8:1:2::ffff") == 2


def test_exempt_network_lifts_per_address_limits() -> None:
    """
    Addresses in an exempt network are not throttled nor limited per
    address.
    """
    from twistedchat.throttles import Exemptions

    factory = make_factory(max_per_ip=1, connection_rate=1, exemptions=Exemptions(["127.0.0.0/8"]))
    clients = [FakeClient(factory, port) for port in range(20)]
    assert not any(client.closed for client in clients)
    assert FakeClient(factory, 99, host="192.0.2.1").closed is False
    assert FakeClient(factory, 98, host="192.0.2.1").closed


def test_cut_off_announced_after_the_line_that_caused_it() -> None:
    """
    When a line overflows one client's SendQ in the middle of its
    broadcast, everyone else still sees that line before the client's
    "has left", the order the history keeps.
    """
    factory = make_factory(max_sendq=2000, flood_rate=0, flood_bytes=0)
    alice, bob, carol, dave = chatters(factory, "alice", "bob", "carol", "dave")
    stall(carol)
    alice.send(b"y" * 2000 + b"\n")
    line = "<alice> " + "y" * 2000
    assert bob.lines() == [line, "*** carol has left (SendQ exceeded)"]
    assert dave.lines() == [line, "*** carol has left (SendQ exceeded)"]
    assert carol.closed


def test_input_to_a_refused_connection_is_ignored() -> None:
    """
    A connection refused at admission (here: the server is full) that
    keeps sending while its close is pending, even an over-long line, is
    ignored without an error.
    """
    factory = make_factory(max_clients=1)
    FakeClient(factory, 1)
    refused = FakeClient(factory, 2, transport=HandshakingTransport)
    refused.send(b"x" * 20000 + b"\nhello\n")
    assert refused.transport.buffered == [
        b"!!! The server is full (1 connections); try again later.\r\n"
    ]
