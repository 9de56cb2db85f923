"""
History, accounts and kept rooms in PostgreSQL (C{--database
postgresql://...}, L{twistedchat.postgres}), against a real server: one
throwaway PostgreSQL cluster for the whole run (L{servers.postgres_server}),
a database of its own for each test.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_twisted
from argon2 import PasswordHasher
from realserver import BIN, TIMEOUT, ChatServer, LineClient, register
from servers import Postgres, free_port, postgres_server
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from twistedchat import accounts as accounts_module
from twistedchat import history as history_module
from twistedchat import postgres
from twistedchat import roomstore as roomstore_module
from twistedchat.accounts import AccountError, Accounts, load_accounts
from twistedchat.database import (
    SCHEMA_VERSION,
    DatabaseError,
    Dialect,
    Query,
    describe,
    make_pool,
    open_database,
)
from twistedchat.events import ChatLine, Event, Joined, Left, PrivateMessage
from twistedchat.history import History, Record, last_event_id, load_recent
from twistedchat.metrics import Health
from twistedchat.roomstore import RoomStore, StoredRoom, load_rooms

LOBBY = "#lobby"
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(scope="session")
def server() -> Iterator[Postgres]:
    """
    One throwaway PostgreSQL cluster for every test of the run.
    """
    with postgres_server() as running:
        yield running


@pytest.fixture
def url(server: Postgres) -> str:
    """
    The URL of a new, empty database of its own on the shared server.
    """
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(server.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server.url(name)


def rows(url: str, query: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """
    Run C{query} on a connection of its own and return its rows.
    """
    with psycopg.connect(url) as connection:
        return connection.execute(query, parameters).fetchall()


def execute(url: str, *statements: str) -> None:
    """
    Run C{statements} in one transaction on a connection of its own.
    """
    with psycopg.connect(url) as connection:
        for statement in statements:
            connection.execute(statement)


def events(records: list[Record]) -> list[Event]:
    """
    The events of C{records}, in order.
    """
    return [record.event for record in records]


# The schema


def test_schema_created_in_an_empty_database(url: str) -> None:
    """
    Opening an empty database creates the current schema: its version in
    schema_version, the tables of every step, the seq and epoch of
    version 6, the search column; opening it again changes nothing.
    """
    open_database(url)
    open_database(url)
    assert rows(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)] == [(6,)]
    tables = {
        name for (name,) in rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert tables == {
        "events",
        "accounts",
        "rooms",
        "room_operators",
        "room_bans",
        "last_event",
        "schema_version",
    }
    columns = {
        name
        for (name,) in rows(
            url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'events'"
        )
    }
    assert {"room", "event", "seq", "epoch", "search"} <= columns
    assert rows(url, "SELECT id FROM last_event") == [(0,)]


def test_upgrade_from_version_3_keeps_rows(url: str) -> None:
    """
    A database of schema version 3 is upgraded step by step to the
    current one on start-up: its rows are kept, numbered by their row id,
    found by search, and last_event holds the largest.
    """
    execute(url, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    execute(url, *(s for step in (1, 2, 3) for s in postgres.MIGRATIONS[step]))
    execute(
        url,
        "INSERT INTO schema_version VALUES (3)",
        "INSERT INTO events (at, kind, nickname, text, room) VALUES (5, 'chat', 'al', 'Café', 'x')",
        "INSERT INTO rooms (key, name) VALUES ('#dev', '#Dev')",
    )
    (recent, last, rooms) = open_database(
        url, lambda c: load_recent(c, 20, LOBBY), last_event_id, load_rooms
    )
    assert rows(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert [(record.room, record.event.id) for record in recent] == [("x", 1)]
    assert last == 1
    assert rooms["#dev"].since == 0
    found = rows(url, "SELECT id FROM events WHERE search @@ plainto_tsquery('simple', 'cafe')")
    assert found == [(1,)]


def test_schema_too_new_is_refused(url: str) -> None:
    """
    A database whose schema is newer than this code stops start-up with
    one line naming the database and both versions.
    """
    open_database(url)
    execute(url, "UPDATE schema_version SET version = 7")
    with pytest.raises(DatabaseError) as raised:
        open_database(url)
    port = url.split(":")[2].split("/")[0]
    name = url.rsplit("/", 1)[1]
    assert str(raised.value) == (
        f"cannot use the database postgresql://127.0.0.1:{port}/{name}:"
        " schema version 7 is newer than this twistedchat's (6)"
    )


def test_unreachable_server_is_one_line_without_the_password() -> None:
    """
    PostgreSQL not listening stops start-up with one line naming the
    server and database, and the first line of psycopg's message; never
    the password.
    """
    port = free_port()
    url = f"postgresql://chat:s3cret-pw@127.0.0.1:{port}/chat"
    with pytest.raises(DatabaseError) as raised:
        open_database(url)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"cannot use the database postgresql://127.0.0.1:{port}/chat: connection failed"
    )
    assert "s3cret" not in message
    assert describe(url) == f"postgresql://127.0.0.1:{port}/chat"


def test_missing_database_is_one_line(server: Postgres) -> None:
    """
    A database that does not exist stops start-up with one line saying
    so.
    """
    with pytest.raises(DatabaseError) as raised:
        open_database(server.url("no_such_db"))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"cannot use the database postgresql://127.0.0.1:{server.port}/")
    assert 'database "no_such_db" does not exist' in message


def test_unaccent_not_creatable_is_one_line(server: Postgres, url: str) -> None:
    """
    A role that may not create the unaccent extension (not the owner of
    the database) stops start-up with one line saying so.
    """
    role = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
    execute(url, f"GRANT CREATE ON SCHEMA public TO {role}")
    as_role = url.replace("postgres@", f"{role}@")
    with pytest.raises(DatabaseError) as raised:
        open_database(as_role)
    message = str(raised.value)
    assert "\n" not in message
    assert "permission denied" in message and "unaccent" in message


def query_parameters(text: str, dialect: Dialect) -> list[str]:
    """
    The parameters of the query C{text}, in order: names, or C{?} for
    each positional one.
    """
    if dialect is Dialect.SQLITE:
        return [m.group(1) or "?" for m in re.finditer(r"(?<!:):(\w+)|\?", text)]
    return [m.group(1) or "?" for m in re.finditer(r"%\((\w+)\)s|%s", text)]


def test_both_texts_of_each_query_agree() -> None:
    """
    Each query has a SQLite and a PostgreSQL text with the same
    parameters (by name, or as many positional ones; the search's
    PostgreSQL text also takes its words apart) and does the same thing
    (SELECT, INSERT, ...).
    """
    queries = [
        value
        for module in (history_module, accounts_module, roomstore_module)
        for value in vars(module).values()
        if isinstance(value, Query)
    ]
    assert len(queries) >= 20
    for query in queries:
        sqlite = query_parameters(query.sqlite, Dialect.SQLITE)
        postgresql = query_parameters(query.postgresql, Dialect.POSTGRESQL)
        # Only the search reads its words apart (see postgres.SEARCH).
        assert set(postgresql) - {"words"} == set(sqlite), query
        if "?" in sqlite:
            assert sqlite == postgresql, query
        assert query.sqlite.split()[0] == query.postgresql.split()[0], query


# History


def make_history(url: str, clock: Clock | None = None, **options: Any) -> History:
    """
    A history writing to the database at C{url} through a real pool,
    the default room being C{LOBBY}.
    """
    open_database(url)
    return History(make_pool(url, reactor), clock or Clock(), default_room=LOBBY, **options)


@pytest_twisted.ensureDeferred
async def test_history_round_trip(url: str) -> None:
    """
    Events recorded are written by flush, then read back by load_recent
    (at start-up), page, search and gap, with their ids, times, rooms,
    and, for gap, the sequence numbers a cluster gave them, in order;
    last_event_id is the largest id written.
    """
    clock = Clock()
    clock.advance(1_000)
    history = make_history(url, clock)
    said: list[tuple[Event, str | None, int | None, str | None]] = [
        (Joined("al", LOBBY), LOBBY, 1, "e1"),
        (ChatLine("al", "Crème brûlée at the café", LOBBY), LOBBY, 2, "e1"),
        (ChatLine("bo", "cafe? creme!", LOBBY), LOBBY, 3, "e1"),
        (ChatLine("bo", "café in dev", "#dev"), "#dev", 1, "e1"),
        (PrivateMessage("al", "bo", "café tomorrow?"), None, None, None),
        (ChatLine("al", "numbered in another epoch", LOBBY), LOBBY, 1, "e2"),
        (Left("bo", "bye", LOBBY), LOBBY, 4, "e1"),
    ]
    for event, room, seq, epoch in said:
        history.record(event, room, seq=seq, epoch=epoch)
        clock.advance(1)
    await history.flush()
    assert history.backlog() == (0, 0.0)
    (recent, last) = open_database(url, lambda c: load_recent(c, 20, LOBBY), last_event_id)
    assert events(recent) == [event for event, *_ in said]
    assert [(r.at, r.room, r.event.id) for r in recent] == [
        (1_000.0 + i, room, event.id) for i, (event, room, *_) in enumerate(said)
    ]
    assert last == said[-1][0].id
    page = await history.page(LOBBY, said[-1][0].id, 3)
    assert events(page) == [said[1][0], said[2][0], said[5][0]]
    found = await history.search("CAFÉ crème", LOBBY)
    assert events(found) == [said[2][0], said[1][0]]
    assert events(await history.search("cafe", "#dev")) == [said[3][0]]
    assert events(await history.search("cafe", LOBBY, "bo")) == [
        said[4][0],
        said[2][0],
        said[1][0],
    ]
    gap = await history.gap(LOBBY, "e1", 1, 4)
    assert events(gap) == [said[1][0], said[2][0]]
    assert [record.seq for record in gap] == [2, 3]
    assert events(await history.gap(LOBBY, "e1", 2, None)) == [said[2][0], said[6][0]]
    assert events(await history.gap(LOBBY, "e2", 0, None)) == [said[5][0]]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_a_batch_written_twice_adds_nothing(url: str) -> None:
    """
    Rows already stored (the same room and event, a private message's
    with no room included) are left out when written again, as a batch
    whose commit's reply was lost is; the same event in another room is
    a row of its own.
    """
    history = make_history(url)
    quit = Left("al", "bye")
    private = PrivateMessage("al", "bo", "psst")
    batch: list[tuple[Event, str | None]] = [(quit, LOBBY), (quit, "#dev"), (private, None)]
    for _ in range(2):
        for event, room in batch:
            history.record(event, room)
        await history.flush()
    assert rows(url, "SELECT room, event FROM events ORDER BY id") == [
        (LOBBY, quit.id),
        ("#dev", quit.id),
        (None, private.id),
    ]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_observed_events_are_replayed_but_not_written(url: str) -> None:
    """
    An event observed (written by another node) is kept for replay, with
    its id, and never written; later events get larger ids.
    """
    history = make_history(url)
    elsewhere = ChatLine("al", "from node 2", LOBBY)
    elsewhere.id = history.last_id + 100
    elsewhere.at = 5.0
    history.observe(elsewhere, LOBBY)
    here = ChatLine("bo", "from here", LOBBY)
    history.record(here, LOBBY)
    await history.flush()
    assert events(history.recent(10, LOBBY)) == [elsewhere, here]
    assert here.id > elsewhere.id
    assert rows(url, "SELECT text FROM events") == [("from here",)]
    with pytest.raises(ValueError):
        history.observe(PrivateMessage("al", "bo", "x"), LOBBY)
    await history.stop()


@pytest.mark.parametrize(
    "text, found",
    [
        ("a OR b", []),
        ("a", [1]),
        ("NOT a", []),
        ('"hi"', [3]),
        ('said "hi', [3]),
        ("NEAR door", [3]),
        ("near", [3]),
        ("prefix*", []),
        ("prefixes*", [4]),
        ("*", []),
        ('"', []),
        ("text:a", []),
        ("WILDCARDS prefixes", [4]),
        ("Ça", [5]),
        ("ca va", [5]),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_words_are_taken_literally(url: str, text: str, found: list[int]) -> None:
    """
    As with SQLite (tests/test_search.py): operators, quotes, prefix
    marks and column filters a user types are words like any other, a
    word of punctuation only matches nothing; case and accents do not
    matter.
    """
    history = make_history(url)
    for n, said in enumerate(
        ["a", "b", 'she said "hi" NEAR the door', "prefixes are not wildcards", "ça va"], 1
    ):
        event = ChatLine("al", said, LOBBY)
        event.id = n
        history.record(event, LOBBY)
    records = await history.search(text, LOBBY)
    assert sorted(record.event.id for record in records) == found
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_history_survives_a_restart(url: str) -> None:
    """
    What one history wrote, and stopped, is read back at the next
    start (load_recent) and replayed by a new history, whose ids go on
    above the old ones.
    """
    history = make_history(url)
    lines = [ChatLine("al", f"line {i}", LOBBY) for i in range(3)]
    for line in lines:
        history.record(line, LOBBY)
    await history.stop()
    (recent, last) = open_database(url, lambda c: load_recent(c, 20, LOBBY), last_event_id)
    restarted = History(make_pool(url, reactor), Clock(), recent, last_id=last)
    assert [event.text for event in events(restarted.recent(10, LOBBY))] == [  # type: ignore[attr-defined]
        "line 0",
        "line 1",
        "line 2",
    ]
    following = ChatLine("bo", "after", LOBBY)
    restarted.record(following, LOBBY)
    assert following.id > lines[-1].id
    await restarted.stop()


@pytest_twisted.ensureDeferred
async def test_writes_after_a_postgresql_restart_are_retried(server: Postgres, url: str) -> None:
    """
    After PostgreSQL restarts, the pool's connections fail once each; the
    batches that failed are kept, in order, and written by a later flush,
    none lost or written twice.
    """
    history = make_history(url)
    first = ChatLine("al", "before", LOBBY)
    history.record(first, LOBBY)
    await history.flush()
    server.stop()
    server.start()
    later = [ChatLine("al", f"after {i}", LOBBY) for i in range(3)]
    for line in later:
        history.record(line, LOBBY)
    for _ in range(5):
        await history.flush()
        if history.backlog()[0] == 0:
            break
    assert history.backlog()[0] == 0
    stored = rows(url, "SELECT text FROM events ORDER BY id")
    assert stored == [("before",), ("after 0",), ("after 1",), ("after 2",)]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_unreadable_history_fails_the_read(url: str) -> None:
    """
    A page or search when PostgreSQL cannot be reached fails its
    Deferred (the session turns that into a sentence), and the events
    not written stay queued.
    """
    port = free_port()
    history = History(
        make_pool(f"postgresql://postgres@127.0.0.1:{port}/x", reactor),
        Clock(),
        default_room=LOBBY,
    )
    history.record(ChatLine("al", "hi", LOBBY), LOBBY)
    with pytest.raises(psycopg.OperationalError):
        await history.page(LOBBY, 2**40, 10)
    assert history.backlog()[0] == 1
    history._pool.close()  # type: ignore[union-attr]


# Accounts


@pytest_twisted.ensureDeferred
async def test_accounts_across_two_nodes(url: str) -> None:
    """
    An account registered through one Accounts is known to another on the
    same database once it refreshes that key; so is a changed password,
    and an account deleted; registering a nickname another node holds is
    refused as taken, and forgotten here.
    """
    (stored,) = open_database(url, load_accounts)
    assert stored == {}
    one = Accounts(make_pool(url, reactor), Clock(), hasher=CHEAP)
    two = Accounts(make_pool(url, reactor), Clock(), hasher=CHEAP)
    await one.register("Alice", "password1")
    assert not two.is_registered("alice")
    await two.refresh("alice")
    assert two.is_registered("alice") and two.is_taken("alice")
    assert await two.verify("alice", "password1")
    await one.change_password("alice", "password2")
    await two.refresh("alice")
    assert await two.verify("alice", "password2")
    await one.register("Bob", "password3")
    with pytest.raises(AccountError, match="registered already"):
        await two.register("Bob", "password4")
    assert not two.is_registered("bob")
    await two.refresh("bob")
    assert await two.verify("bob", "password3")
    execute(url, "DELETE FROM accounts WHERE nickname_key = 'alice'")
    await two.refresh("alice")
    assert not two.is_registered("alice") and not two.is_taken("alice")
    (stored,) = open_database(url, load_accounts)
    assert set(stored) == {"bob"}
    for accounts in (one, two):
        accounts._pool.close()  # type: ignore[union-attr]


# Kept rooms


@pytest_twisted.ensureDeferred
async def test_kept_rooms_save_and_load(url: str) -> None:
    """
    A kept room saved is read back at start-up as it was saved (topic,
    lock, operators, bans, since); saved again, the last save stays;
    forgotten, it is gone.
    """
    open_database(url)
    pool = make_pool(url, reactor)
    store = RoomStore(pool)
    room = StoredRoom(
        key="#dev",
        name="#Dev",
        topic="releases",
        topic_by="al",
        topic_at=5.0,
        topic_locked=True,
        operators=frozenset({"al", "bo"}),
        bans=frozenset({("account", "cy"), ("nickname", "dave")}),
        since=42,
    )
    other = StoredRoom(key="#ops", name="#ops")
    changes: list[Deferred[None]] = [
        store.save(StoredRoom(key="#dev", name="#Dev", topic="old")),
        store.save(room),
        store.save(other),
    ]
    for d in changes:
        await d
    (rooms,) = open_database(url, load_rooms)
    assert rooms == {"#dev": room, "#ops": other}
    await store.forget("#ops")
    (rooms,) = open_database(url, load_rooms)
    assert rooms == {"#dev": room}
    pool.close()


# /healthz


@pytest_twisted.ensureDeferred
async def test_health_checks_postgresql(url: str) -> None:
    """
    /healthz answers ok while PostgreSQL answers SELECT 1 on a new
    connection, and 503 with psycopg's first line when it cannot connect.
    """
    for database, code, body in [
        (url, 200, b"ok\n"),
        (f"postgresql://postgres:pw@127.0.0.1:{free_port()}/x", 503, b"database does not answer"),
    ]:
        request = DummyRequest([b""])
        finished = request.notifyFinish()
        Health(reactor, database).render_GET(request)  # type: ignore[arg-type]
        await finished
        assert (request.responseCode or 200) == code
        written = b"".join(request.written)
        assert written.startswith(body)
        assert b"\n" not in written.rstrip(b"\n")
        assert b"pw" not in written


# The real server


def test_real_server_replays_history_after_a_restart(url: str, tmp_path: Path) -> None:
    """
    twistd chat --database postgresql://... writes what was said within
    a second, stops cleanly (no traceback), and after a restart a new user
    is shown it as history.
    """
    server = ChatServer(tmp_path, "--database", url)
    try:
        alice, bob = register(server, "alice"), register(server, "bob")
        alice.send("said before the restart")
        assert bob.expect("<alice>") == "<alice> said before the restart"
        deadline = time.monotonic() + TIMEOUT
        query = "SELECT text FROM events WHERE kind = 'chat'"
        while rows(url, query) != [("said before the restart",)]:
            assert time.monotonic() < deadline, rows(url, query)
            time.sleep(0.05)  # polling another process's database, not the reactor
        alice.close()
        bob.close()
        server.terminate()
    finally:
        server.stop()
    restarted = ChatServer(tmp_path, "--database", url)
    try:
        carol = LineClient(restarted.port)
        carol.send("carol")
        assert carol.expect("said here") == "*** The last line said here:"
        history = [carol.expect("UTC]") for _ in range(3)]
        assert [line.split("] ", 1)[1] for line in history] == [
            "*** alice has joined",
            "*** bob has joined",
            "<alice> said before the restart",
        ]
        carol.close()
    finally:
        restarted.stop()


def test_real_server_refuses_to_start_without_postgresql(tmp_path: Path) -> None:
    """
    twistd chat with a PostgreSQL that is not listening exits at once,
    with one line naming the database, without its password, and no
    traceback.
    """
    port = free_port()
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "-n",
            "--pidfile=",
            "chat",
            "--database",
            f"postgresql://chat:s3cret@127.0.0.1:{port}/chat",
        ],  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "cannot use the database" in line]
    assert len(lines) == 1
    assert (
        f"cannot use the database postgresql://127.0.0.1:{port}/chat: connection failed"
        in (lines[0])
    )
    assert "s3cret" not in output
    assert "Traceback" not in output
