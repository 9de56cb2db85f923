"""
Tests for L{twistedchat.history} and history in the chat: storage, schema
upgrades, start-up errors, replay on joining and /history.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from fakeclients import FakeClient, chatters, make_factory
from twisted.internet import reactor
from twisted.internet.task import Clock

from twistedchat.database import SCHEMA_VERSION, DatabaseError, make_pool, open_database
from twistedchat.events import Action, ChatLine, Joined, Left, NicknameChanged, PrivateMessage
from twistedchat.history import History, Record, load_recent


def open_history(path: str, keep: int) -> list[Record]:
    """
    Open the database at C{path} as start-up does; return its last C{keep}
    public events.
    """
    (recent,) = open_database(path, lambda connection: load_recent(connection, keep))
    return recent


def memory_history(clock: Clock, cap: int = 200) -> History:
    """
    A history kept in memory only, as with C{--database :memory:}.
    """
    return History(None, clock, cap=cap)


def test_new_database_gets_schema(tmp_path: Path) -> None:
    """
    open_history creates the schema in a new file and records its version.
    """
    path = tmp_path / "new.sqlite3"
    assert open_history(str(path), 20) == []
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_newer_schema_refused(tmp_path: Path) -> None:
    """
    A database from a newer twistedchat stops start-up with one line naming
    the file.
    """
    path = tmp_path / "future.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 99")
    connection.close()
    with pytest.raises(DatabaseError, match=f"^cannot use the database {path}: schema version 99"):
        open_history(str(path), 20)


def test_corrupt_database_refused(tmp_path: Path) -> None:
    """
    A file that is not a database stops start-up with one line naming it.
    """
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(DatabaseError) as error:
        open_history(str(path), 20)
    assert str(error.value) == f"cannot use the database {path}: file is not a database"


def test_unopenable_database_refused(tmp_path: Path) -> None:
    """
    A path that cannot be opened stops start-up with one line naming it.
    """
    path = tmp_path / "no" / "such" / "dir.sqlite3"
    with pytest.raises(DatabaseError, match=f"^cannot use the database {path}: "):
        open_history(str(path), 20)


@pytest_twisted.ensureDeferred
async def test_events_reach_disk_and_come_back(tmp_path: Path) -> None:
    """
    Recorded events are written in a batch, in a pool thread, and read back
    in order at the next start-up, private messages included.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    clock.advance(1_700_000_000)
    history = History(make_pool(path, reactor), clock)
    events = [
        Joined("alice"),
        ChatLine("alice", "hello"),
        Action("alice", "waves"),
        PrivateMessage("alice", "bob", "secret"),
        NicknameChanged("alice", "alicia"),
        Left("alicia", "bye"),
    ]
    for event in events:
        history.record(event)
        clock.advance(1)
    await history.stop()
    rows = sqlite3.connect(path).execute("SELECT kind, text FROM events ORDER BY id").fetchall()
    assert [kind for kind, _ in rows] == ["join", "chat", "action", "private", "nick", "leave"]
    again = open_history(path, 20)
    assert [record.event for record in again] == events
    assert again[1] == Record(1_700_000_001.0, ChatLine("alice", "hello"))


@pytest_twisted.ensureDeferred
async def test_retention_prunes_old_events(tmp_path: Path) -> None:
    """
    With a retention of N days, pruning deletes events older than that.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    history = History(make_pool(path, reactor), clock, retention=1)
    history.record(ChatLine("alice", "old"))
    clock.advance(2 * 86400)
    history.record(ChatLine("alice", "new"))
    await history.flush()
    await history.prune()
    await history.stop()
    rows = sqlite3.connect(path).execute("SELECT text FROM events").fetchall()
    assert rows == [("new",)]


def test_replay_on_join() -> None:
    """
    A user who registers sees the last history_on_join public lines, each
    marked with its UTC time, between notices, after the welcome; live
    lines follow with nothing missing or repeated.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    factory = make_factory(clock, history=memory_history(clock), history_on_join=3)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"one\n/me two\n")
    bob.send(b"/msg alice private\nthree\n")
    carol = FakeClient(factory)
    carol.output()
    carol.send(b"carol\n")
    alice.send(b"four\n")
    lines = carol.lines()
    assert lines[0].startswith("*** Welcome, carol!")
    assert lines[1:] == [
        "*** The last 3 lines said here:",
        "[2023-11-14 22:13:20 UTC] <alice> one",
        "[2023-11-14 22:13:20 UTC] * alice two",
        "[2023-11-14 22:13:20 UTC] <bob> three",
        "*** End of history.",
        "<alice> four",
    ]


def test_history_command() -> None:
    """
    /history N shows the last N public lines, capped at the history's
    size; without history the user is told so.
    """
    clock = Clock()
    factory = make_factory(clock, history=memory_history(clock, cap=2), history_on_join=0)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"a\nb\nc\n")
    bob.output()
    bob.send(b"/history 10\n")
    assert bob.lines() == [
        "*** The last 2 lines said here:",
        "[1970-01-01 00:00:00 UTC] <alice> b",
        "[1970-01-01 00:00:00 UTC] <alice> c",
        "*** End of history.",
    ]
    bob.send(b"/history x\n")
    assert bob.lines() == ["!!! Usage: /history [N], N from 1 to 2"]
    (dave,) = chatters(make_factory(), "dave")
    dave.send(b"/history\n")
    assert dave.lines() == ["!!! This server keeps no history."]


def test_nothing_to_replay() -> None:
    """
    With an empty history the first user sees no history notices; /history
    then shows their own join.
    """
    clock = Clock()
    factory = make_factory(clock, history=memory_history(clock))
    alice = FakeClient(factory)
    alice.output()
    alice.send(b"alice\n")
    assert len(alice.lines()) == 1
    alice.send(b"/history\n")
    assert alice.lines() == [
        "*** The last line said here:",
        "[1970-01-01 00:00:00 UTC] *** alice has joined",
        "*** End of history.",
    ]


def test_history_options(tmp_path: Path) -> None:
    """
    --database names the file (it is checked and upgraded while options are
    parsed); a bad file stops start-up with a usage error naming it; the
    history options are checked against each other.
    """
    from twisted.python import usage

    from twistedchat.tap import Options

    path = tmp_path / "chat.sqlite3"
    options = Options()
    options.parseOptions(["--database", str(path), "--history-retention", "30"])
    assert path.exists()
    assert options["history-recent"] == []
    assert options["history-retention"] == 30
    assert (options["history-on-join"], options["history-max"]) == (20, 200)
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"x" * 4096)
    with pytest.raises(usage.UsageError, match=f"^cannot use the database {bad}: "):
        Options().parseOptions(["--database", str(bad)])
    with pytest.raises(usage.UsageError, match="--history-on-join cannot be more than"):
        Options().parseOptions(
            ["--database", ":memory:", "--history-on-join", "50", "--history-max", "10"]
        )


def test_private_messages_replayed_only_to_their_identified_participants() -> None:
    """
    Private messages in the history are shown to a viewer who proved they
    own the sender's or the recipient's registered nickname (the sender
    sees it as sent), and to nobody else.
    """
    from test_accounts import CHEAP, in_this_thread

    from twistedchat.accounts import Accounts

    clock = Clock()
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=in_this_thread)
    factory = make_factory(
        clock, history=memory_history(clock), accounts=accounts, flood_rate=0, history_on_join=5
    )
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    alice.send(b"/register alice-password\n")
    bob.send(b"/register bob-password\n")
    alice.send(b"/msg bob meet at noon\n")
    for client in (alice, bob, carol):
        client.send(b"/quit\n")

    def replay(nickname: bytes, password: bytes | None) -> list[str]:
        client = FakeClient(factory)
        client.send(nickname + b"\n" + (password + b"\n" if password else b""))
        return [line.split("] ", 1)[1] for line in client.lines() if line.startswith("[")]

    assert "-> *bob* meet at noon" in replay(b"alice", b"alice-password")
    assert "*alice* meet at noon" in replay(b"bob", b"bob-password")
    assert not any("noon" in line for line in replay(b"carol", None))


def test_private_messages_before_registration_not_replayed() -> None:
    """
    Private messages sent to or by a nickname before it was registered are
    not replayed to the account's owner: until then the nickname was
    anyone's. Those sent after registration are.
    """
    from test_accounts import CHEAP, in_this_thread

    from twistedchat.accounts import Accounts

    clock = Clock()
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=in_this_thread)
    factory = make_factory(
        clock, history=memory_history(clock), accounts=accounts, flood_rate=0, history_on_join=5
    )
    alice, someone = chatters(factory, "alice", "bob")
    alice.send(b"/msg bob for the first bob only\n")
    someone.send(b"/msg alice from the first bob\n/quit\n")
    clock.advance(60)
    (bob,) = chatters(factory, "bob")
    bob.send(b"/register bob-password\n")
    clock.advance(1)
    alice.send(b"/msg bob for the owner\n")
    bob.send(b"/quit\n")

    client = FakeClient(factory)
    client.send(b"bob\nbob-password\n")
    replayed = [line for line in client.lines() if line.startswith("[")]
    assert [line.split("] ", 1)[1] for line in replayed if "*alice*" in line] == [
        "*alice* for the owner"
    ]
    client.send(b"/history 200\n")
    assert not any("first bob" in line for line in client.lines())
    assert "first bob" in " ".join(alice.lines())


def test_replay_respects_retention() -> None:
    """
    With a retention, lines older than it are no longer replayed, even
    before the database is pruned.
    """
    clock = Clock()
    history = History(None, clock, retention=1)
    history.record(ChatLine("alice", "old"))
    history.record(PrivateMessage("alice", "bob", "old secret"))
    clock.advance(2 * 86400)
    history.record(ChatLine("alice", "new"))
    assert [record.event for record in history.recent(10, "bob")] == [ChatLine("alice", "new")]


def test_schema_upgrade_from_version_1(tmp_path: Path) -> None:
    """
    A database of schema version 1 (history only) is upgraded on start-up:
    its events are kept and the accounts table is added.
    """
    path = tmp_path / "v1.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,"
        " nickname TEXT NOT NULL, target TEXT, text TEXT)"
    )
    connection.execute("CREATE INDEX events_at ON events (at)")
    connection.execute(
        "INSERT INTO events (at, kind, nickname, text) VALUES (5, 'chat', 'al', 'hi')"
    )
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    assert open_history(str(path), 20) == [Record(5.0, ChatLine("al", "hi"))]
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert connection.execute("SELECT count(*) FROM accounts").fetchone() == (0,)


def test_history_line_formatted_once_for_all_viewers() -> None:
    """
    A past event is formatted once and the same bytes replayed to every
    viewer who sees it alike; a private message replayed to its sender is
    shown as sent.
    """
    from twistedchat.protocol import render_history

    public = Record(0.0, ChatLine("alice", "hi"))
    first = render_history(public, None)
    assert first == b"[1970-01-01 00:00:00 UTC] <alice> hi\r\n"
    assert render_history(public, "bob") is first
    private = Record(60.0, PrivateMessage("alice", "bob", "psst"))
    assert render_history(private, "bob") == b"[1970-01-01 00:01:00 UTC] *alice* psst\r\n"
    assert render_history(private, "alice") == b"[1970-01-01 00:01:00 UTC] -> *bob* psst\r\n"
