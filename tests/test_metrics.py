"""
Tests for L{twistedchat.metrics}: what the chat counts where it happens,
and the metrics L{ChatCollector} makes of it, read with
C{prometheus_client}'s own exposition and parser.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fakeclients import FakeClient, make_factory
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_irc import IRCClient
from test_session import accounts_chat, connect
from twisted.internet.task import Clock

from twistedchat.factory import ChatFactory
from twistedchat.metrics import ChatCollector, _query, snapshot


def scrape(factory: ChatFactory) -> dict[str, float]:
    """
    The metrics of C{factory} as Prometheus reads them: each sample's
    value by name (with its labels).
    """
    registry = CollectorRegistry()
    registry.register(ChatCollector(lambda: snapshot(factory)))
    return samples(generate_latest(registry).decode())


def samples(text: str) -> dict[str, float]:
    """
    Parse Prometheus' text format with prometheus_client's own parser:
    each sample's value by name, with its labels (C{name{k=v}}).
    """
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_connections_users_rooms_lines_and_deliveries() -> None:
    """
    Connections are counted by front end; users and rooms as they are; a
    line sent counts once as received and once per recipient delivered.
    """
    factory = make_factory(Clock(), flood_rate=0)
    alice = FakeClient(factory).register("alice")
    FakeClient(factory, 50001).register("bob")
    IRCClient(factory, 50002).register("carol")
    before = scrape(factory)
    alice.send(b"hello\r\n")
    after = scrape(factory)
    assert after["twistedchat_connections{front_end=telnet}"] == 2
    assert after["twistedchat_connections{front_end=irc}"] == 1
    assert after["twistedchat_connections{front_end=websocket}"] == 0
    assert (after["twistedchat_users"], after["twistedchat_rooms"]) == (3, 1)
    received = "twistedchat_lines_received_total"
    assert after[received] == before[received] + 1
    deliveries = "twistedchat_deliveries_total"
    assert after[deliveries] == before[deliveries] + 2  # bob and carol
    assert after["twistedchat_cluster_detached"] == 0  # a single server never is


def test_limits_and_passwords_counted() -> None:
    """
    A SendQ cut-off, a line delayed by flood control, a wrong password and
    a registration timeout are each counted.
    """
    clock = Clock()
    factory = make_factory(clock, max_sendq=4096, flood_rate=1, flood_burst=1)
    alice = FakeClient(factory).register("alice")
    bob = FakeClient(factory, 50001).register("bob")
    bob.transport.producer.pauseProducing()
    for _ in range(60):
        alice.chat.session.say("x" * 100)
    alice.send(b"one\r\ntwo\r\n")
    connect(factory)
    clock.advance(factory.registration_timeout)
    counts = factory.counts
    assert (counts.sendq_cutoffs, counts.registration_timeouts) == (1, 1)
    assert counts.flood_delays >= 1
    accounts = accounts_chat()
    user, holder = connect(accounts), connect(accounts)
    holder.session.choose_nickname("dave")
    holder.session.register_account("correct-horse")
    user.session.choose_nickname("dave", "wrong-horse")
    accounts.clock.advance(1)  # type: ignore[attr-defined]
    assert accounts.counts.wrong_passwords == 1
    assert scrape(accounts)["twistedchat_wrong_passwords_total"] == 1


def test_health_query_quotes_the_path(tmp_path: Path) -> None:
    """
    The health check reads the database file whatever its name holds
    (?, #, %), and fails once the file is gone rather than creating one.
    """
    for name in ("a?x.db", "b#c.db", "d%20e.db"):
        path = tmp_path / name
        sqlite3.connect(path).close()
        _query(str(path))
        path.unlink()
        with pytest.raises(sqlite3.Error):
            _query(str(path))
        assert sorted(p.name for p in tmp_path.iterdir()) == []
