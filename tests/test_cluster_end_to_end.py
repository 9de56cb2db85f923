"""
End-to-end tests of a cluster: real C{twistd -n chat} nodes started with
C{--cluster}, one real C{redis-server} and one real PostgreSQL
(tests/servers.py), and real clients over TCP: what a user sees when
nodes and Redis come and go.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import irc.client
import psycopg
import pytest
from realserver import BIN, ChatServer, LineClient, register
from servers import Postgres, Redis, postgres_server, redis_server

#: Seconds of a node's lease in these tests: a killed node's users are
#: announced lost within it and a third more.
LEASE = 2


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


class Nodes:
    """
    Cluster nodes sharing one Redis (under their own key prefix) and one
    PostgreSQL database.
    """

    def __init__(self, directory: Path, redis: Redis, postgres: Postgres) -> None:
        self.directory = directory
        self.redis = redis
        self.prefix = f"e{uuid.uuid4().hex[:8]}:"
        database = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {database}")
        self.database = postgres.url(database)
        self.servers: dict[str, ChatServer] = {}

    def start(self, name: str, *options: str) -> ChatServer:
        """
        Start the node called C{name} and wait until it listens and has
        joined the cluster.
        """
        server = ChatServer(
            self.directory,
            "--cluster",
            f"redis://127.0.0.1:{self.redis.port}/0",
            "--cluster-prefix",
            self.prefix,
            "--cluster-lease",
            str(LEASE),
            "--node-name",
            name,
            "--database",
            self.database,
            *options,
        )
        self.servers[name] = server
        wait_for(lambda: "joined" in server.log and "cluster: node" in server.log, server)
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def wait_for(condition: object, server: ChatServer, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out; log:\n" + server.log)
        time.sleep(0.05)


@pytest.fixture
def nodes(tmp_path: Path, redis: Redis, postgres: Postgres) -> Iterator[Nodes]:
    made = Nodes(tmp_path, redis, postgres)
    try:
        yield made
    finally:
        made.stop()


def test_users_on_three_nodes_chat_in_two_rooms(nodes: Nodes) -> None:
    """
    Alice, bob and carol, each on their own node, see each other's lines
    in the default room and in a second room, and everyone in /names; a
    nickname held on one node is refused on another.
    """
    one, two, three = nodes.start("one"), nodes.start("two"), nodes.start("three")
    alice, bob, carol = register(one, "alice"), register(two, "bob"), register(three, "carol")
    alice.expect("carol has joined")
    alice.send("hello from one")
    bob.expect("<alice> hello from one")
    carol.expect("<alice> hello from one")
    carol.send("hello from three")
    alice.expect("<carol> hello from three")
    bob.expect("<carol> hello from three")
    alice.send("/join #tea")
    alice.expect("You joined #tea")
    # As a user would, bob joins a room he has seen: two has heard of it.
    deadline = time.monotonic() + 10
    bob.send("/rooms")
    while "#tea" not in bob.expect("#"):
        assert time.monotonic() < deadline, bob.received
        bob.send("/rooms")
    bob.send("/join #tea")
    alice.expect("bob has joined")
    bob.send("/msg #tea tea time")
    alice.expect("tea time")
    carol.send("/names #tea")
    assert carol.expect("in #tea:").endswith("2 users in #tea: @alice, bob")
    bob.send("/names #lobby")
    assert bob.expect("in #lobby:").endswith("3 users in #lobby: alice, bob, carol")
    other = LineClient(three.port)
    other.expect("Choose a nickname")
    other.send("alice")
    other.expect("The nickname alice is taken")
    for client in (alice, bob, carol, other):
        client.close()


def test_node_killed_its_users_leave_and_come_back_elsewhere(nodes: Nodes) -> None:
    """
    A node killed with kill -9: within its lease the users on the other
    nodes see its users leave ("node lost"); a user of that node
    reconnects to another node and keeps their nickname.
    """
    one, two = nodes.start("one"), nodes.start("two")
    alice, bob = register(one, "alice"), register(two, "bob")
    alice.expect("bob has joined")
    two.process.send_signal(signal.SIGKILL)
    two.process.wait(10)
    started = time.monotonic()
    assert "bob has left (node lost: two)" in alice.expect("bob has left")
    assert time.monotonic() - started < LEASE * 4 / 3 + 2
    again = register(one, "bob")
    again.send("I am back")
    alice.expect("<bob> I am back")
    for client in (alice, bob, again):
        client.close()


def test_redis_restart_mid_chat(nodes: Nodes) -> None:
    """
    Redis restarts while users chat: each is told the link is down,
    chat on their own node goes on, they are told when it is back, and
    lines cross nodes again.
    """
    one, two = nodes.start("one"), nodes.start("two")
    alice, bob = register(one, "alice"), register(two, "bob")
    carol = register(one, "carol")
    alice.expect("bob has joined")
    nodes.redis.restart()
    alice.expect("link to the other servers is down")
    bob.expect("link to the other servers is down")
    alice.send("only on one")
    carol.expect("<alice> only on one")
    alice.expect("link to the other servers is back")
    bob.expect("link to the other servers is back")
    bob.send("across again")
    alice.expect("<bob> across again")
    carol.expect("<bob> across again")
    for client in (alice, bob, carol):
        client.close()


def test_history_comes_back_from_postgresql_after_every_node_restarts(nodes: Nodes) -> None:
    """
    What was said on two nodes is replayed, from PostgreSQL, to a user
    joining after every node was stopped and started again.
    """
    one, two = nodes.start("one"), nodes.start("two")
    alice, bob = register(one, "alice"), register(two, "bob")
    alice.expect("bob has joined")
    alice.send("said on one")
    bob.expect("<alice> said on one")
    bob.send("said on two")
    alice.expect("<bob> said on two")
    alice.close()
    bob.close()
    one.terminate()
    two.terminate()
    three = nodes.start("three")
    carol = register(three, "carol")
    carol.expect("said on one")
    carol.expect("said on two")
    carol.close()


def test_irc_and_telnet_users_on_different_nodes(nodes: Nodes) -> None:
    """
    An IRC client on one node and a telnet user on another talk in one
    room: the front ends need nothing of their own for a cluster.
    """
    one = nodes.start("one")
    two = nodes.start("two", "--irc", "tcp:0:interface=127.0.0.1")
    alice = register(one, "alice")
    reactor = irc.client.Reactor()
    heard: list[str] = []
    joined: list[str] = []
    connection = reactor.server().connect("127.0.0.1", two.irc_ports[0], "bob")
    connection.add_global_handler("pubmsg", lambda c, e: heard.append(e.arguments[0]))
    connection.add_global_handler("join", lambda c, e: joined.append(e.target))
    deadline = time.monotonic() + 15
    while not joined:
        reactor.process_once(0.05)
        assert time.monotonic() < deadline, "bob did not join"
    alice.expect("bob has joined")
    alice.send("hi bob")
    while "hi bob" not in heard:
        reactor.process_once(0.05)
        assert time.monotonic() < deadline, heard
    connection.privmsg("#lobby", "hi alice")
    reactor.process_once(0.05)
    alice.expect("<bob> hi alice")
    connection.close()
    alice.close()


def test_unreachable_redis_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """
    A node whose Redis does not answer does not start: one line names
    the address and why.
    """
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "chat",
            "--port",
            "tcp:0",
            "--cluster",
            "redis://127.0.0.1:1/0",
            "--database",
            str(tmp_path / "chat.db"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("--cluster: cannot reach Redis at 127.0.0.1:1: Connection refused."), last


def redis_command(redis: Redis, *words: str) -> str:
    """
    Run one Redis command with redis-cli; its output.
    """
    return subprocess.run(
        ["redis-cli", "-p", str(redis.port), *words],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


def test_lines_a_node_missed_are_filled_from_postgresql(nodes: Nodes) -> None:
    """
    When Redis drops one node's subscription (CLIENT KILL, as it does to a
    subscriber whose output buffer overflows), the lines said meanwhile on
    another node still reach that node's users, in order, none twice,
    from the shared history.
    """
    one, two = nodes.start("one"), nodes.start("two")
    alice, bob = register(one, "alice"), register(two, "bob")
    alice.expect("bob has joined")
    alice.send("before")
    bob.expect("<alice> before")
    node = re.search(r"cluster: node (two-[0-9a-f]+) joined", two.log)
    assert node is not None, two.log
    clients = redis_command(nodes.redis, "CLIENT", "LIST")
    (ident,) = re.findall(rf"id=(\d+) .*name=tc-{node.group(1)}-sub ", clients)
    redis_command(nodes.redis, "CLIENT", "KILL", "ID", ident)
    for i in range(20):
        alice.send(f"line {i}")
    alice.send("after")
    lines = [bob.expect("<alice> ") for _ in range(21)]
    assert lines == [f"<alice> line {i}" for i in range(20)] + ["<alice> after"]
    alice.close()
    bob.close()


def test_postgresql_restart_loses_no_history(nodes: Nodes, postgres: Postgres) -> None:
    """
    PostgreSQL stops while users chat on two nodes: chat goes on, and once
    it is back, what was said meanwhile is in the shared history.
    """
    one, two = nodes.start("one"), nodes.start("two")
    alice, bob = register(one, "alice"), register(two, "bob")
    alice.expect("bob has joined")
    postgres.stop()
    try:
        alice.send("while the database was down")
        bob.expect("<alice> while the database was down")
        bob.send("me too")
        alice.expect("<bob> me too")
    finally:
        postgres.start()
    deadline = time.monotonic() + 30
    wanted = {"while the database was down", "me too"}
    while True:
        try:
            with psycopg.connect(nodes.database) as connection:
                rows = connection.execute(
                    "SELECT text, count(*) FROM events WHERE kind = 'chat' GROUP BY text"
                ).fetchall()
        except psycopg.OperationalError:
            rows = []
        stored = dict(rows)
        if wanted <= set(stored):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    assert all(stored[text] == 1 for text in wanted), stored  # written once
    for client in (alice, bob):
        client.close()


def test_workers_on_one_machine_share_the_chat(nodes: Nodes) -> None:
    """
    twistd chat --workers 2 with --cluster: two users who landed on
    different workers, behind the one port, talk to each other.
    """
    from test_workers import connections_of, start_workers, worker_pids

    server = start_workers(
        nodes.directory,
        2,
        "--cluster",
        f"redis://127.0.0.1:{nodes.redis.port}/0",
        "--cluster-prefix",
        nodes.prefix,
        "--database",
        nodes.database,
    )
    nodes.servers["workers"] = server
    wait_for(lambda: server.log.count("cluster: node") >= 4, server)  # joining, joined x2
    pids = list(worker_pids(server).values())
    clients: list[LineClient] = []
    by_worker: dict[int, LineClient] = {}
    deadline = time.monotonic() + 15
    while len(by_worker) < 2:
        assert time.monotonic() < deadline, "every connection went to one worker"
        before = {pid: connections_of(pid, server.port) for pid in pids}
        client = LineClient(server.port)
        client.expect("Choose a nickname")
        clients.append(client)
        for pid in pids:
            if connections_of(pid, server.port) > before[pid]:
                by_worker.setdefault(pid, client)
    first, second = by_worker.values()
    first.send("alice")
    first.expect("Welcome, alice")
    second.send("bob")
    second.expect("Welcome, bob")
    first.expect("bob has joined")
    first.send("hello across workers")
    second.expect("<alice> hello across workers")
    for client in clients:
        client.close()
