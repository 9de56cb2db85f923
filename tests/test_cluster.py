"""
Tests for twistedchat.cluster: several nodes, each a L{ChatFactory} with a
L{RedisCluster}, in this process, sharing the chat through a real
C{redis-server} (tests/servers.py). txredisapi runs on the global reactor,
so these tests run on it too (pytest-twisted) and wait for what crosses
Redis by polling with a deadline.

The end-to-end tests with real twistd nodes are in
test_cluster_end_to_end.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from fakeclients import make_factory
from hypothesis import given
from hypothesis import strategies as st
from servers import Postgres, Redis, postgres_server, redis_server
from test_session import Recorder, connect
from twisted.internet import reactor
from twisted.internet.task import deferLater

from twistedchat.cluster import (
    RedisAddress,
    RedisCluster,
    RemoteParticipant,
    decode_event,
    encode_event,
    parse_redis_url,
    probe_redis,
)
from twistedchat.database import make_pool, open_database
from twistedchat.events import (
    Action,
    ChatLine,
    Error,
    Joined,
    Kicked,
    Killed,
    Left,
    NicknameChanged,
    Notice,
    PrivateMessage,
    TopicChanged,
)
from twistedchat.factory import ChatFactory
from twistedchat.history import History
from twistedchat.session import Refused

#: Seconds anything may take to cross Redis in these tests.
DEADLINE = 10.0


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


async def until(
    condition: Callable[[], object], what: str = "", deadline: float = DEADLINE
) -> None:
    """
    Wait, on the real reactor, until C{condition()} is true.
    """
    end = reactor.seconds() + deadline
    while not condition():
        if reactor.seconds() > end:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await deferLater(reactor, 0.01, lambda: None)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def shared_database(postgres: Postgres) -> str:
    """
    A new PostgreSQL database on C{postgres}, with twistedchat's schema;
    its URL.
    """
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    open_database(postgres.url(name))
    return postgres.url(name)


class Cluster:
    """
    Nodes of one cluster (their own key prefix in the shared Redis), and
    the users connected to them; L{close} ends them all.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.prefix = f"t{uuid.uuid4().hex[:8]}:"
        self.nodes: list[ChatFactory] = []
        self.users: list[Recorder] = []
        self.histories: list[History] = []

    async def node(
        self, name: str, database: str = "", timeout: float = 5.0, **options: Any
    ) -> ChatFactory:
        """
        Start a node called C{name}, with its history in the PostgreSQL
        C{database} if given, and wait until it joined.
        """
        history = History(make_pool(database, reactor) if database else None, reactor)
        if database:
            history.start()
            self.histories.append(history)
        factory = make_factory(reactor, history=history, flood_rate=0, **options)
        cluster = RedisCluster(
            factory,
            RedisAddress(port=self.redis.port),
            name,
            prefix=self.prefix,
            lease=2.0,
            shared_history=bool(database),
            timeout=timeout,
        )
        factory.cluster = cluster
        cluster.start()
        self.nodes.append(factory)
        await until(lambda: not cluster.detached, f"{name} to join")
        return factory

    async def pair(self, database: str = "") -> tuple[ChatFactory, ChatFactory, Recorder, Recorder]:
        """
        Start nodes a and b (with the shared C{database} if given), alice
        on a and bob on b, and wait until each node knows the other's.
        """
        a, b = await self.node("a", database), await self.node("b", database)
        alice, bob = self.user(a, "alice"), self.user(b, "bob")
        await until(lambda: knows(a, "bob") and knows(b, "alice"), "both to be known")
        return a, b, alice, bob

    async def cut(self, factory: ChatFactory) -> None:
        """
        Drop C{factory}'s subscription to Redis (as Redis does to a
        subscriber too slow to read) and wait until it has detached.
        """
        cluster = cluster_of(factory)
        link = cluster._link
        assert link is not None and link.subscriber is not None
        link.subscriber.transport.abortConnection()
        await until(lambda: cluster.detached, "the node to detach")

    async def crash(self, factory: ChatFactory) -> None:
        """
        Stop C{factory}'s node as C{kill -9} does: no goodbye, no more
        lease renewals, its connections to Redis closed.
        """
        lost = cluster_of(factory)
        lost._stopping = True
        lost._renewal.stop()
        assert lost._link is not None
        await lost._link.close()
        self.nodes.remove(factory)

    def user(self, factory: ChatFactory, nickname: str) -> Recorder:
        """
        Connect C{nickname} to C{factory}'s node.
        """
        user = connect(factory)
        user.session.choose_nickname(nickname)
        self.users.append(user)
        return user

    async def close(self) -> None:
        for user in self.users:
            if not user.closed:
                user.session.connection_lost()
        for factory in self.nodes:
            cluster = factory.cluster
            assert isinstance(cluster, RedisCluster)
            await cluster.stop()
        for history in self.histories:
            await history.stop()


def cluster_of(factory: ChatFactory) -> RedisCluster:
    cluster = factory.cluster
    assert isinstance(cluster, RedisCluster)
    return cluster


def said(user: Recorder, kind: type[Any] = ChatLine) -> list[Any]:
    return [event for event in user.delivered if isinstance(event, kind)]


def texts(user: Recorder) -> list[str]:
    return [event.text for event in said(user)]


def knows(factory: ChatFactory, nickname: str) -> bool:
    return factory.online(nickname) is not None


async def shared_room(
    name: str, first: tuple[ChatFactory, Recorder], second: tuple[ChatFactory, Recorder]
) -> None:
    """
    The user of C{first} creates the room C{name}; the user of C{second}
    joins it once their node has heard of it (as a user who saw it in
    /rooms would), and both nodes have both in it.
    """
    (here, creator), (there, joiner) = first, second
    creator.session.line(f"/join {name}")
    await until(lambda: name in [room.name for room in there.rooms()], f"{name} on the other node")
    joiner.session.line(f"/join {name}")
    await until(
        lambda: here.online(joiner.session.nickname) in here.room(name).members,
        f"the join of {name}",
    )


@pytest_twisted.ensureDeferred
async def test_line_crosses_nodes_once_with_one_id(redis: Redis) -> None:
    """
    A line said on node A reaches the room's members on node B and on A
    itself once each, with the same id; the sender does not get it back.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice, carol = cluster.user(a, "alice"), cluster.user(a, "carol")
        bob = cluster.user(b, "bob")
        await until(lambda: knows(a, "bob") and knows(b, "alice") and knows(b, "carol"))
        alice.session.line("hello everyone")
        await until(lambda: texts(bob) and texts(carol), "the line")
        (to_bob,), (to_carol,) = said(bob), said(carol)
        assert to_bob.text == "hello everyone" and to_bob.sender == "alice"
        assert to_bob.id == to_carol.id != 0
        assert texts(alice) == []
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_order_of_lines_is_the_same_on_every_node(redis: Redis) -> None:
    """
    Lines said at once on two nodes reach every member in one order, the
    same on both nodes, numbered with growing ids.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice, bob = cluster.user(a, "alice"), cluster.user(b, "bob")
        watch_a, watch_b = cluster.user(a, "watcha"), cluster.user(b, "watchb")
        await until(lambda: all(knows(f, n) for f in (a, b) for n in ("alice", "bob", "watcha")))
        for i in range(30):
            alice.session.line(f"a{i}")
            bob.session.line(f"b{i}")
        await until(lambda: len(said(watch_a)) == 60 and len(said(watch_b)) == 60, "60 lines")
        assert texts(watch_a) == texts(watch_b)
        ids = [event.id for event in said(watch_a)]
        assert ids == sorted(ids) and len(set(ids)) == 60
        assert [t for t in texts(watch_a) if t.startswith("a")] == [f"a{i}" for i in range(30)]
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_nickname_held_on_one_node_is_refused_on_another(redis: Redis) -> None:
    """
    A nickname online on node A, or one that looks like it, cannot be
    taken on node B; once its holder quits, it can.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice = cluster.user(a, "alice")
        await until(lambda: knows(b, "alice"))
        other = connect(b)
        cluster.users.append(other)
        with pytest.raises(Refused, match="alice is taken"):
            other.session.choose_nickname("alice")
        with pytest.raises(Refused, match="looks too much like alice"):
            other.session.choose_nickname("aIice")
        alice.session.quit()
        alice.session.connection_lost()
        await until(lambda: not knows(b, "alice"))
        other.session.choose_nickname("alice")
        assert b.online("alice") is other.session
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_nickname_race_is_settled_in_redis(redis: Redis) -> None:
    """
    Two nodes handing out one nickname in the same instant (before either
    heard of the other's): Redis's claim decides, and the loser is renamed
    to a free nickname and told why.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        first, second = cluster.user(a, "dave"), cluster.user(b, "dave")
        await until(
            lambda: first.session.nickname != second.session.nickname,
            "one of them to be renamed",
        )
        loser = first if first.session.nickname != "dave" else second
        notices = [e.text for e in loser.replies_of(Notice)]
        assert any("took dave first" in text for text in notices), loser.replies
        winner = second if loser is first else first
        await until(lambda: a.online("dave") is not None and b.online("dave") is not None)
        await until(lambda: knows(a, loser.session.nickname) and knows(b, loser.session.nickname))
        assert winner.session.nickname == "dave"
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_rooms_members_topics_and_names_are_shared(redis: Redis) -> None:
    """
    A room created on node A, with its topic, shows on node B; a user on
    B who joins it is seen joining on A and is in /names on both; /rooms
    on B counts members on both nodes.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        alice.session.line("/join #tea")
        alice.session.line("/topic #tea Earl Grey only")
        await until(lambda: "#tea" in [r.name for r in b.rooms()] and b.room("#tea").topic)
        bob.session.line("/join #tea")
        await until(lambda: any(e.room == "#tea" for e in said(alice, Joined)), "bob's join")
        assert sorted(m.nickname for m in a.room("#tea").members) == ["alice", "bob"]
        assert sorted(m.nickname for m in b.room("#tea").members) == ["alice", "bob"]
        assert b.room("#tea").topic == "Earl Grey only"
        # The creator is its operator on both nodes.
        assert b.is_operator(b.online("alice"), b.room("#tea"))
        bob.session.line("in the tea room")
        await until(lambda: "in the tea room" in texts(alice))
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_private_messages_kicks_and_kills_reach_other_nodes(redis: Redis) -> None:
    """
    A private message, a kick and a /kill by an operator on node A reach
    their target on node B; the others see the kick and the quit.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        alice.session.line("/msg bob psst")
        await until(lambda: said(bob, PrivateMessage), "the private message")
        (message,) = said(bob, PrivateMessage)
        assert (message.sender, message.text) == ("alice", "psst") and message.id
        await shared_room("#den", (a, alice), (b, bob))
        alice.session.line("/kick #den bob out")
        await until(lambda: said(bob, Kicked), "the kick")
        await until(lambda: "#den" not in bob.session.rooms)
        assert said(bob, Kicked)[0].reason == "out"
        # A server operator's /kill, through the factory (accounts aside).
        a.server_operators = frozenset({"alice"})
        a.is_server_operator = lambda participant: participant.nickname == "alice"  # type: ignore[method-assign]
        a.kill(a.online("alice"), "bob", "enough")
        await until(lambda: said(bob, Killed), "bob killed")
        await until(lambda: bob.closed, "bob's connection closed")
        await until(lambda: not knows(b, "bob") and not knows(a, "bob"))
        assert any(e.nickname == "bob" and "killed" in e.reason for e in said(alice, Left))
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_lost_node_users_leave_within_the_lease(redis: Redis) -> None:
    """
    A node that stops answering (its process killed) is announced lost
    by the others within its lease: its users leave with "node lost", and
    their nicknames are free again.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice = cluster.user(a, "alice")
        cluster.user(b, "bob")
        await until(lambda: knows(a, "bob") and knows(b, "alice"))
        await cluster.crash(b)
        await until(
            lambda: [e for e in said(alice, Left) if e.nickname == "bob"],
            "bob's node to be lost",
            deadline=10,
        )
        (left,) = [e for e in said(alice, Left) if e.nickname == "bob"]
        assert left.reason == "node lost: b" and not knows(a, "bob")
        again = cluster.user(a, "bob")
        assert a.online("bob") is again.session
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_redis_restart_detaches_and_rejoins(redis: Redis) -> None:
    """
    When Redis restarts (its data lost), each node tells its users the
    link is down, keeps serving them, then says it is back; nicknames
    are claimed again and lines cross again.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice, bob = cluster.user(a, "alice"), cluster.user(b, "bob")
        carol = cluster.user(a, "carol")
        await until(lambda: knows(a, "bob") and knows(b, "alice"))
        redis.restart()
        await until(lambda: cluster_of(a).detached and cluster_of(b).detached, "detached")
        alice.session.line("still here")
        assert "still here" in texts(carol)
        await until(lambda: not cluster_of(a).detached and not cluster_of(b).detached, "back")
        for user in (alice, bob):
            notices = [e.text for e in user.replies_of(Notice)]
            assert any("link to the other servers is down" in n for n in notices)
            assert any("link to the other servers is back" in n for n in notices)
        bob.session.line("after the restart")
        await until(lambda: "after the restart" in texts(alice))
        held = await cluster_of(a)._link.commands.execute_command(  # type: ignore[union-attr]
            "HKEYS", cluster.prefix + "nicks"
        )
        assert sorted(held) == ["alice", "bob", "carol"]
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_away_and_nickname_changes_reach_other_nodes(redis: Redis) -> None:
    """
    A user going away and changing nickname on one node is seen so by
    the members of their rooms on the other.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        alice.session.line("/away lunch")
        await until(lambda: b.online("alice").away == "lunch")  # type: ignore[union-attr]
        alice.session.line("/nick alicia")
        await until(lambda: said(bob, NicknameChanged), "the nickname change")
        assert knows(b, "alicia") and not knows(b, "alice")
        assert isinstance(b.online("alicia"), RemoteParticipant)
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_topic_and_operator_changes_apply_on_every_node(redis: Redis) -> None:
    """
    +t and /op on one node bind on the other: a member on node B who is
    no operator cannot set a +t topic until made one on node A.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        await shared_room("#ops", (a, alice), (b, bob))
        alice.session.line("/mode #ops +t")
        await until(lambda: b.room("#ops").topic_locked)
        bob.session.line("/topic #ops mine")
        assert any("operators" in error for error in bob.errors())
        alice.session.line("/op #ops bob")
        await until(lambda: b.is_operator(b.online("bob"), b.room("#ops")))
        bob.session.line("/topic #ops mine now")
        await until(lambda: any(e.topic == "mine now" for e in said(alice, TopicChanged)))
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_lines_missed_while_the_link_was_down_are_filled_from_the_history(
    redis: Redis, postgres: Postgres
) -> None:
    """
    Lines said on node A while node B's subscription to Redis was cut
    reach B's users once B is back, from the shared history, in order,
    none twice, before the lines said after.
    """
    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        alice.session.line("before")
        await until(lambda: texts(bob) == ["before"])
        await cluster.cut(b)
        for i in range(20):
            alice.session.line(f"missed {i}")
        await until(lambda: not cluster_of(b).detached, "b to come back")
        alice.session.line("after")
        expected = ["before"] + [f"missed {i}" for i in range(20)] + ["after"]
        await until(lambda: texts(bob) == expected, f"all lines, got {texts(bob)}")
    finally:
        await cluster.close()


def test_events_round_trip() -> None:
    """
    Every event that crosses the cluster comes back equal from its
    encoding.
    """
    for event in (
        ChatLine("alice", "hi", "#a", True),
        Action("alice", "waves", "#a"),
        PrivateMessage("alice", "bob", "psst", False, True),
        Joined("bob", "#a"),
        Left("bob", "bye", ""),
        Kicked("#a", "alice", "bob", "out"),
        Error("no"),
    ):
        kind, fields = encode_event(event)
        assert decode_event(kind, json.loads(json.dumps(fields))) == event


@given(
    st.one_of(st.text(), st.sampled_from(["ChatLine", "Joined", "Welcome", "Room", "Left"])),
    st.dictionaries(
        st.sampled_from(["sender", "text", "room", "notice", "nickname", "x", "_rendered"]),
        st.one_of(st.text(), st.booleans(), st.integers(), st.none(), st.lists(st.text())),
    ),
)
def test_decoding_accepts_only_the_events_it_knows(name: str, fields: dict[str, Any]) -> None:
    """
    Decoding builds nothing but the allowed events with text and flag
    fields: anything else is a ValueError, never another exception.
    """
    try:
        event = decode_event(name, fields)
    except ValueError:
        return
    assert type(event).__name__ == name
    assert name in ("ChatLine", "Joined", "Left")


@given(
    st.one_of(
        st.binary(),
        st.text(),
        st.recursive(
            st.one_of(st.none(), st.booleans(), st.integers(), st.text()),
            lambda children: st.one_of(st.lists(children), st.dictionaries(st.text(), children)),
        ).map(json.dumps),
    )
)
def test_received_never_raises(message: Any) -> None:
    """
    Whatever arrives on a channel, the node logs and drops what it cannot
    use, and never raises.
    """
    factory = make_factory(history=History(None, reactor))
    cluster = RedisCluster(factory, RedisAddress(port=1), "x")
    cluster.received(message)
    if isinstance(message, str):
        cluster.received(json.dumps({"v": 1, "type": "ChatLine", "e": message, "rooms": 3}))


def test_redis_urls() -> None:
    """
    C{--cluster} takes redis://[:PASSWORD@]HOST[:PORT][/DB] and
    unix:/PATH; anything else is refused with a sentence.
    """
    assert parse_redis_url("redis://127.0.0.1:7000/2") == RedisAddress("127.0.0.1", 7000, "", 2)
    assert parse_redis_url("redis://:s%40cret@h") == RedisAddress("h", 6379, "", 0, "s@cret")
    assert parse_redis_url("unix:/run/redis.sock").path == "/run/redis.sock"
    for bad in ("http://x", "redis://", "redis://h:x", "redis://h/db", "unix:relative"):
        with pytest.raises(ValueError):
            parse_redis_url(bad)


def test_probe_names_the_address_when_redis_is_not_there() -> None:
    """
    The start-up check fails with one line naming the address and why.
    """
    with pytest.raises(OSError) as raised:
        probe_redis(RedisAddress(port=1), timeout=2)
    assert str(raised.value) == "cannot reach Redis at 127.0.0.1:1: Connection refused"


def test_probe_passes_when_redis_answers(redis: Redis) -> None:
    """
    The start-up check passes against a real Redis.
    """
    probe_redis(RedisAddress(port=redis.port))


@pytest_twisted.ensureDeferred
async def test_private_message_to_another_node_while_detached_is_refused(redis: Redis) -> None:
    """
    While Redis cannot be reached, a private message to someone on another
    node is refused with a sentence saying so; one to someone on the same
    node still arrives.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice, carol = cluster.user(a, "alice"), cluster.user(a, "carol")
        cluster.user(b, "bob")
        await until(lambda: knows(a, "bob"))
        redis.kill()
        await until(lambda: cluster_of(a).detached, "a to detach")
        alice.session.line("/msg bob are you there")
        assert alice.errors()[-1] == "bob is on another server, which cannot be reached now."
        alice.session.line("/msg carol still here")
        assert [m.text for m in said(carol, PrivateMessage)] == ["still here"]
    finally:
        redis.start()
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_metrics_show_the_link_to_redis(redis: Redis) -> None:
    """
    twistedchat_cluster_detached is 0 while the node reaches Redis and 1
    while it cannot.
    """
    from test_metrics import scrape

    cluster = Cluster(redis)
    try:
        a = await cluster.node("a")
        assert scrape(a)["twistedchat_cluster_detached"] == 0
        redis.kill()
        await until(lambda: cluster_of(a).detached, "a to detach")
        assert scrape(a)["twistedchat_cluster_detached"] == 1
    finally:
        redis.start()
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_joining_a_room_heard_only_elsewhere_replays_its_history(
    redis: Redis, postgres: Postgres
) -> None:
    """
    A user who joins a room where nobody on their node was (so the node
    did not hear its lines) gets its recent lines replayed from the shared
    history, as on a single server; /history shows them too.
    """
    from twistedchat.events import HistoryReplay

    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        alice.session.line("/join #tea")
        for i in range(3):
            alice.session.line(f"tea {i}")
        await until(lambda: "#tea" in [room.name for room in b.rooms()])
        bob.session.line("/join #tea")
        await until(lambda: bob.replies_of(HistoryReplay), "the replay")
        (replay,) = bob.replies_of(HistoryReplay)
        shown = [r.event.text for r in replay.records if isinstance(r.event, ChatLine)]
        assert shown == ["tea 0", "tea 1", "tea 2"]
        alice.session.line("tea 3")
        await until(lambda: "tea 3" in texts(bob))
        bob.session.line("/history")
        await until(lambda: len(bob.replies_of(HistoryReplay)) == 2)
        last = bob.replies_of(HistoryReplay)[-1]
        shown = [r.event.text for r in last.records if isinstance(r.event, ChatLine)]
        assert shown == ["tea 0", "tea 1", "tea 2", "tea 3"]
    finally:
        await cluster.close()


# Races and faults found by reviewing the cluster: each test states the
# behaviour a correct cluster shows.


@pytest_twisted.ensureDeferred
async def test_concurrent_topic_changes_converge(redis: Redis) -> None:
    """
    Two members on two nodes setting a room's topic at the same moment:
    afterwards both nodes show one and the same topic (whichever Redis
    ordered last), not each the other's.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        await shared_room("#t", (a, alice), (b, bob))
        alice.session.line("/topic #t one")
        bob.session.line("/topic #t two")
        await until(
            lambda: len(said(alice, TopicChanged)) >= 2 and len(said(bob, TopicChanged)) >= 2,
            "both topic changes",
        )
        # Each node applies a change as it delivers it: now, both have.
        assert a.room("#t").topic == b.room("#t").topic
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_rename_race_leaves_no_ghost_member(redis: Redis) -> None:
    """
    Two users on two nodes taking one new nickname at the same moment:
    once the claims settle, every room member in each node's mirror is
    someone that node knows as online (no one left behind in a room under
    a name nobody has).
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        alice.session.line("/nick zed")
        bob.session.line("/nick zed")
        await until(lambda: alice.session.nickname != bob.session.nickname, "one renamed")
        loser = alice if alice.session.nickname != "zed" else bob
        await until(
            lambda: (
                knows(a, loser.session.nickname)
                and knows(b, loser.session.nickname)
                and knows(a, "zed")
                and knows(b, "zed")
            ),
            "the mirrors to settle",
        )
        await until(
            lambda: all(
                factory.is_joined(member)
                for factory in (a, b)
                for room in factory.rooms()
                for member in room.members
            ),
            "every member of every room to be online",
        )
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_remote_quit_does_not_remove_a_local_namesake(redis: Redis) -> None:
    """
    Two nodes hand out one nickname at the same moment and the one on node
    B quits at once: the user holding it on node A stays in the chat (or
    is renamed), never left connected but out of the chat and its rooms.
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        watcher = cluster.user(b, "watcher")
        await until(lambda: knows(a, "watcher"))
        here = cluster.user(a, "dave")
        there = cluster.user(b, "dave")
        there.session.quit()
        there.session.connection_lost()
        # Node B's quit crosses before the line it publishes next.
        watcher.session.line("after the quit")
        await until(lambda: "after the quit" in texts(here), "the line after the quit")
        assert not here.closed
        assert a.is_joined(here.session), "dave on node A is connected but out of the chat"
        assert here.session.rooms, "dave on node A was taken out of every room"
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_line_said_just_before_parting_comes_back(redis: Redis) -> None:
    """
    A line said in a room by its last member on a node, just before they
    part, while that node waits for another subscription: it reaches the
    other node, and the origin is left with nothing pending (it records
    it in the history when it comes back).
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        await shared_room("#x", (a, alice), (b, bob))
        # Joining a new room makes node A wait for its subscription.
        alice.session.line("/join #y")
        a.say(alice.session, a.room("#x"), "bye")
        alice.session.line("/part #x")
        await until(lambda: "bye" in texts(bob), "the line on node B")
        await until(lambda: cluster_of(a)._pending == {}, "the line to come back to node A")
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_room_left_while_detached_has_no_false_gap(redis: Redis) -> None:
    """
    A node's last member of a room leaves it while the node is detached;
    later, with the link back, someone there joins it again: the lines
    said after they joined reach them with no "could not be recovered"
    notice for lines said while nobody there was in the room.
    """
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        await shared_room("#x", (a, alice), (b, bob))
        bob.session.line("one")
        await until(lambda: "one" in texts(alice))
        await cluster.cut(a)
        alice.session.line("/part #x")
        await until(lambda: not cluster_of(a).detached, "a to come back")
        await until(lambda: a.online("bob") is not None and b.online("alice") is not None)
        bob.session.line("two")
        bob.session.line("three")
        await until(lambda: cluster_of(b)._pending == {}, "two and three to be published")
        alice.session.line("/join #x")
        await until(lambda: b.online("alice") in b.room("#x").members)
        bob.session.line("four")
        await until(lambda: "four" in texts(alice), "the line after the join")
        notices = [e.text for e in alice.replies_of(Notice)]
        assert not [n for n in notices if "could not be recovered" in n], notices
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_nickname_freed_while_detached_is_free_again(redis: Redis) -> None:
    """
    A user quits on node A while A is detached; once A is back, the
    nickname can be taken on node B (Redis no longer holds it for A).
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        alice = cluster.user(a, "alice")
        cluster.user(b, "bob")
        await until(lambda: knows(a, "bob") and knows(b, "alice"))
        await cluster.cut(a)
        alice.session.quit()
        alice.session.connection_lost()
        await until(lambda: not cluster_of(a).detached, "a to come back")
        await until(lambda: not knows(b, "alice"), "b to forget alice")
        again = cluster.user(b, "alice")
        commands = cluster_of(b)._link.commands  # type: ignore[union-attr]

        async def holder() -> object:
            return await commands.execute_command("HGET", cluster.prefix + "nicks", "alice")

        node = cluster_of(b).node
        end = reactor.seconds() + DEADLINE
        while await holder() != node:
            assert reactor.seconds() < end, "node B never got alice in Redis"
            assert again.session.nickname == "alice", again.replies_of(Notice)
        assert again.session.nickname == "alice", [e.text for e in again.replies_of(Notice)]
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_crowded_rooms_stay_quiet_across_nodes(redis: Redis) -> None:
    """
    In a room with more members than quiet_joins_above, counting every
    node's, a join on one node is announced on none.
    """
    cluster = Cluster(redis)
    try:
        a = await cluster.node("a", quiet_joins_above=2)
        b = await cluster.node("b", quiet_joins_above=2)
        alice = cluster.user(a, "alice")
        cluster.user(a, "carol")
        bob = cluster.user(b, "bob")
        await until(lambda: len(b.default_room.members) == 3 and len(a.default_room.members) == 3)
        alice.delivered.clear()
        cluster.user(b, "dave")
        bob.session.line("after dave")  # node B publishes it after dave's join
        await until(lambda: "after dave" in texts(alice), "the line after dave's join")
        assert knows(a, "dave")
        assert [e for e in alice.delivered if isinstance(e, Joined)] == []
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_redis_that_stops_answering_is_taken_for_down(redis: Redis) -> None:
    """
    Redis that keeps the connection open but answers nothing (CLIENT
    PAUSE, as a network partition looks) is taken for down after
    its timeout: the node detaches, serves its users alone,
    and joins again once Redis answers.
    """
    import subprocess

    cluster = Cluster(redis)
    try:
        a = await cluster.node("a", timeout=1.0)
        alice, carol = cluster.user(a, "alice"), cluster.user(a, "carol")
        subprocess.run(
            ["redis-cli", "-p", str(redis.port), "CLIENT", "PAUSE", "5000", "ALL"],
            check=True,
            capture_output=True,
        )
        alice.session.line("anyone?")  # a command that gets no answer
        await until(lambda: cluster_of(a).detached, "a to detach", deadline=15)
        assert "anyone?" in texts(carol)  # shown here meanwhile
        await until(lambda: not cluster_of(a).detached, "a to come back", deadline=20)
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_concurrent_unban_and_reban_converge(redis: Redis) -> None:
    """
    Two operators on two nodes lift one ban at the same moment, and the
    one on node B bans again at once: afterwards both nodes hold the same
    bans (whatever Redis ordered last on each ban), not one each.
    """
    from twistedchat.events import ModeChanged

    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair()
        await shared_room("#b", (a, alice), (b, bob))
        alice.session.line("/op #b bob")
        await until(lambda: b.is_operator(b.online("bob"), b.room("#b")), "bob to be op")
        alice.session.line("/ban #b xavier")
        await until(lambda: b.room("#b").bans == a.room("#b").bans != set(), "the ban on B")
        alice.delivered.clear()
        bob.delivered.clear()
        # One reactor turn: neither node has heard the other's yet.
        alice.session.line("/unban #b xavier")
        bob.session.line("/unban #b xavier")
        bob.session.line("/ban #b xavier")
        await until(
            lambda: len(said(alice, ModeChanged)) == 3 and len(said(bob, ModeChanged)) == 3,
            "the three changes on both nodes",
        )
        await until(
            lambda: cluster_of(a)._pending == {} and cluster_of(b)._pending == {},
            "every change to come back",
        )
        assert a.room("#b").bans == b.room("#b").bans, (a.room("#b").bans, b.room("#b").bans)
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_line_heard_while_history_loads_is_not_shown_twice(
    redis: Redis, postgres: Postgres
) -> None:
    """
    A user joins a room nobody on their node was in; a line said there
    while its history is still being read reaches them live, and the
    replay that follows does not show it to them a second time.
    """
    from twistedchat.events import HistoryReplay

    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        alice.session.line("/join #tea")
        await until(lambda: "#tea" in [room.name for room in b.rooms()])
        alice.session.line("tea 0")
        bob.session.line("/join #tea")
        # Node B listens in #tea, and is still reading its history.
        await until(lambda: "#tea" in cluster_of(b)._subscribed and cluster_of(b)._gates == 0)
        assert "#tea" in cluster_of(b)._loads, "the history was read already"
        alice.session.line("live")
        await until(lambda: "live" in texts(bob), "the live line")
        await until(lambda: bob.replies_of(HistoryReplay), "the replay")
        (replay,) = bob.replies_of(HistoryReplay)
        replayed = [r.event.text for r in replay.records if isinstance(r.event, ChatLine)]
        shown = texts(bob) + replayed
        assert shown.count("live") == 1, shown
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_lines_filled_after_a_gap_are_in_history_too(
    redis: Redis, postgres: Postgres
) -> None:
    """
    Lines node B missed while its subscription was cut, and delivered to
    its users from the shared history once back, are in B's history too:
    /history there shows them between the lines before and after.
    """
    from twistedchat.events import HistoryReplay

    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        alice.session.line("before")
        await until(lambda: texts(bob) == ["before"])
        await cluster.cut(b)
        for i in range(3):
            alice.session.line(f"missed {i}")
        await until(lambda: not cluster_of(b).detached, "b to come back")
        alice.session.line("after")
        expected = ["before", "missed 0", "missed 1", "missed 2", "after"]
        await until(lambda: texts(bob) == expected, f"all lines, got {texts(bob)}")
        bob.session.line("/history")
        await until(lambda: bob.replies_of(HistoryReplay), "the history")
        replay = bob.replies_of(HistoryReplay)[-1]
        shown = [r.event.text for r in replay.records if isinstance(r.event, ChatLine)]
        assert shown == expected, shown
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_history_after_an_outage_shows_what_the_other_side_said(
    redis: Redis, postgres: Postgres
) -> None:
    """
    What was said on node A while Redis was down (seen only there) is in
    /history on node B once the link is back, as its notice promises.
    """
    from twistedchat.events import HistoryReplay

    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        redis.restart()
        await until(lambda: cluster_of(a).detached and cluster_of(b).detached, "detached")
        alice.session.line("said during the outage")
        await until(lambda: not cluster_of(a).detached and not cluster_of(b).detached, "back")
        bob.session.line("/history")

        def shown() -> list[str]:
            replays = bob.replies_of(HistoryReplay)
            if not replays:
                return []
            return [r.event.text for r in replays[-1].records if isinstance(r.event, ChatLine)]

        await until(lambda: "said during the outage" in shown(), "the line in /history")
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_users_of_a_lost_node_leave_in_the_history(redis: Redis, postgres: Postgres) -> None:
    """
    When a node is lost, its users' leaving ("node lost") is shown once on
    every other node and kept in the shared history, once.
    """
    from twistedchat.events import HistoryReplay

    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a", database), await cluster.node("b", database)
        c = await cluster.node("c", database)
        alice, carol = cluster.user(a, "alice"), cluster.user(c, "carol")
        cluster.user(b, "bob")
        await until(lambda: all(knows(n, "bob") for n in (a, c)) and knows(b, "alice"))
        await cluster.crash(b)
        await until(lambda: not knows(a, "bob") and not knows(c, "bob"), "bob lost", deadline=15)

        def reasons(user: Recorder) -> list[str]:
            return [e.reason for e in said(user, Left) if e.nickname == "bob"]

        await until(lambda: reasons(alice) and reasons(carol), "bob's leave on both nodes")
        assert reasons(alice) == reasons(carol) == ["node lost: b"]
        alice.session.line("/history")

        def leaves() -> list[str]:
            replays = alice.replies_of(HistoryReplay)
            if not replays:
                return []
            records = replays[-1].records
            return [r.event.reason for r in records if isinstance(r.event, Left)]

        await until(lambda: "node lost: b" in leaves(), "the leave in /history")
        assert leaves().count("node lost: b") == 1
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_users_of_a_node_whose_lease_lapsed_stay_in_the_chat(redis: Redis) -> None:
    """
    A node that is alive but renewed its lease late (busy, as with
    thousands of registrations at once) is reaped by another node; when
    it renews again it says who its users are, and afterwards every node,
    itself included, has them in the chat: the reaper's quits for them do
    not take them out of their own node (where they are still connected).
    """
    cluster = Cluster(redis)
    try:
        a, b = await cluster.node("a"), await cluster.node("b")
        cluster.user(a, "alice")
        bob = cluster.user(b, "bob")
        await until(lambda: knows(a, "bob") and knows(b, "alice"))
        late = cluster_of(b)
        late._renewal.stop()  # alive and linked, but its lease lapses
        await until(lambda: not knows(a, "bob"), "bob's node to be reaped", deadline=15)
        await until(lambda: cluster_of(a)._pending == {}, "the reaper's quits to go out")
        # Published after the quits on the same connection and channel:
        # once B knows dave, B has handled the quit of bob.
        cluster.user(a, "dave")
        await until(lambda: knows(b, "dave"), "dave on B")
        # bob is still connected to B: B must not have taken him out.
        assert b.online("bob") is bob.session, "B dropped its own connected user"
        late._renewal.start(late.lease / 3, now=True)
        await until(
            lambda: knows(a, "bob") and knows(b, "bob"),
            f"bob back everywhere (on B: {knows(b, 'bob')}, on A: {knows(a, 'bob')})",
        )
        assert not bob.closed
        assert b.online("bob") is bob.session
    finally:
        await cluster.close()


def _history_texts(user: Recorder) -> list[str]:
    from twistedchat.events import HistoryReplay

    replays = user.replies_of(HistoryReplay)
    if not replays:
        return []
    return [r.event.text for r in replays[-1].records if isinstance(r.event, ChatLine)]


@pytest_twisted.ensureDeferred
async def test_line_said_during_a_nodes_outage_keeps_its_place_in_history(
    redis: Redis, postgres: Postgres
) -> None:
    """
    A line said on node A while only A's link was down (numbered from the
    reserve A took when it joined) comes, in A's /history once the link
    is back, after the lines said before the outage, not before them.
    """
    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        bob.session.line("before")
        await until(lambda: "before" in texts(alice))
        await cluster.cut(a)
        alice.session.line("during")
        await until(lambda: not cluster_of(a).detached, "a to come back")
        await until(lambda: not cluster_of(a)._loads, "a's history reloaded")
        bob.session.line("after")
        await until(lambda: "after" in texts(alice))
        alice.session.line("/history")
        await until(lambda: "after" in _history_texts(alice), "the history")
        assert _history_texts(alice) == ["before", "during", "after"], _history_texts(alice)
    finally:
        await cluster.close()


@pytest_twisted.ensureDeferred
async def test_line_said_during_one_nodes_outage_is_in_history_on_the_other(
    redis: Redis, postgres: Postgres
) -> None:
    """
    As the README promises ("/history on every node shows them
    afterwards"): a line said on node A while only A's link was down is
    in /history on node B, whose link never went down, once A is back.
    """
    database = shared_database(postgres)
    cluster = Cluster(redis)
    try:
        a, b, alice, bob = await cluster.pair(database)
        await cluster.cut(a)
        alice.session.line("during")
        await until(lambda: not cluster_of(a).detached, "a to come back")
        alice.session.line("after")
        await until(lambda: "after" in texts(bob))
        bob.session.line("/history")
        await until(lambda: "after" in _history_texts(bob), "the history")
        assert "during" in _history_texts(bob), _history_texts(bob)
    finally:
        await cluster.close()
