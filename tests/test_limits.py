"""
Tests for the limits that keep one client from hurting others: SendQ,
flow control, flood control, connection limits, idle timeout, keepalive.
"""

from __future__ import annotations

from fakeclients import FakeClient, chatters, make_factory
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from zope.interface import implementer

from twistedchat.protocol import State


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


# SendQ


def test_output_queued_while_transport_full() -> None:
    """
    While the transport's buffer is full, output waits in the SendQ (and
    the sender waits after its first line); when it drains, the queued
    lines are written in order.
    """
    factory = make_factory(flood_rate=0)
    alice, bob = chatters(factory, "alice", "bob")
    stall(bob)
    alice.send(b"one\ntwo\n")
    assert bob.output() == b""
    assert bob.chat._output.queued == len(b"<alice> one\r\n")
    drain(bob)
    assert bob.lines() == ["<alice> one", "<alice> two"]
    assert bob.chat._output.queued == 0
    assert not factory.is_congested()


def test_sendq_exceeded() -> None:
    """
    A client whose queued output passes max_sendq bytes is cut off; the
    others see it leave with the reason "SendQ exceeded" and keep chatting.
    """
    factory = make_factory(max_sendq=4096, flood_rate=0)
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    stall(bob)
    for _ in range(100):
        factory.say(alice.chat, "x" * 100)
    assert bob.closed
    assert bob.transport.disconnected  # aborted, not flushed
    lines = carol.lines()
    assert "*** bob has left (SendQ exceeded)" in lines
    assert len(lines) == 101
    assert factory.nicknames() == ["alice", "carol"]
    assert not factory.is_congested()
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


# Flow control


def test_senders_pause_while_output_congested() -> None:
    """
    While some client's output is congested, a sender's next lines wait
    (its transport is paused); once the congestion drains they are
    processed in order and nothing is lost.
    """
    factory = make_factory(flood_rate=0)
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    stall(bob)
    alice.send(b"1\n2\n3\n")
    assert carol.lines() == ["<alice> 1"]
    assert alice.transport.producerState == "paused"
    drain(bob)
    assert alice.transport.producerState == "producing"
    assert carol.lines() == ["<alice> 2", "<alice> 3"]
    assert bob.lines() == ["<alice> 1", "<alice> 2", "<alice> 3"]


def test_congested_client_leaving_resumes_senders() -> None:
    """
    When the congested client goes away, paused senders resume.
    """
    factory = make_factory(flood_rate=0)
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    stall(bob)
    alice.send(b"1\n2\n")
    bob.transport.loseConnection()
    assert alice.transport.producerState == "producing"
    assert carol.lines() == ["<alice> 1", "*** bob has left (connection lost)", "<alice> 2"]


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
    assert alice.chat.state is State.CHATTING


@implementer(ITCPTransport)
class TCPStringTransport(StringTransportWithDisconnection):
    """
    A string transport that records TCP keepalive settings.
    """

    keepalive = False

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled


def test_tcp_keepalive() -> None:
    """
    TCP keepalive is turned on for each accepted TCP connection.
    """
    from twisted.internet.address import IPv4Address

    factory = make_factory()
    address = IPv4Address("TCP", "127.0.0.1", 4000)
    protocol = factory.buildProtocol(address)
    transport = TCPStringTransport(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    assert transport.keepalive


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
