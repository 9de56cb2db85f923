"""
Tests for L{twistedchat.history} and history in the chat: storage, schema
upgrades, start-up errors, writes that fail and are retried, replay on
joining and /history, and what replay counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from fakeclients import FakeClient, chatters, make_factory
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, capturedLogs, formatEvent

from twistedchat.database import SCHEMA_VERSION, DatabaseError, make_pool, open_database
from twistedchat.events import (
    Action,
    ChatLine,
    Event,
    Joined,
    Kicked,
    Left,
    ModeChanged,
    NicknameChanged,
    PrivateMessage,
    TopicChanged,
)
from twistedchat.history import (
    FLUSH_INTERVAL,
    MAX_EVENT_ID,
    MAX_UNWRITTEN,
    History,
    Record,
    last_event_id,
    load_recent,
)

#: The key of the room the tests talk in, and of the default room.
LOBBY = "#lobby"


def open_history(path: str, keep: int, default_room: str = LOBBY) -> list[Record]:
    """
    Open the database at C{path} as start-up does; return what it keeps of
    each room's last C{keep} events and of the last C{keep} private
    messages.
    """
    (recent,) = open_database(path, lambda connection: load_recent(connection, keep, default_room))
    return recent


def record_all(history: History, events: Sequence[Event], room: str = LOBBY) -> None:
    """
    Record C{events} in C{history}, in order: private messages in no room,
    the others in C{room}.
    """
    for event in events:
        history.record(event, None if isinstance(event, PrivateMessage) else room)


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
        Joined("alice", LOBBY),
        ChatLine("alice", "hello", LOBBY),
        Action("alice", "waves", LOBBY),
        PrivateMessage("alice", "bob", "secret"),
        NicknameChanged("alice", "alicia"),
        Left("alicia", "bye", LOBBY),
    ]
    for event in events:
        record_all(history, [event])
        clock.advance(1)
    await history.stop()
    rows = sqlite3.connect(path).execute("SELECT kind, room FROM events ORDER BY id").fetchall()
    assert rows == [
        ("join", LOBBY),
        ("chat", LOBBY),
        ("action", LOBBY),
        ("private", None),
        ("nick", LOBBY),
        ("leave", LOBBY),
    ]
    again = open_history(path, 20)
    assert [record.event for record in again] == events
    assert [record.room for record in again] == [LOBBY, LOBBY, LOBBY, None, LOBBY, LOBBY]
    assert again[1] == Record(1_700_000_001.0, ChatLine("alice", "hello", LOBBY), LOBBY)


@pytest_twisted.ensureDeferred
async def test_retention_prunes_old_events(tmp_path: Path) -> None:
    """
    With a retention of N days, pruning deletes events older than that.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    history = History(make_pool(path, reactor), clock, retention=1)
    history.record(ChatLine("alice", "old"), LOBBY)
    clock.advance(2 * 86400)
    history.record(ChatLine("alice", "new"), LOBBY)
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
    assert bob.lines() == ["!!! Usage: /history [#ROOM] [N], N from 1 to 2"]
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
        "*** Nothing has been said here lately; who came and went:",
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
    history.record(ChatLine("alice", "old"), LOBBY)
    history.record(PrivateMessage("alice", "bob", "old secret"), None)
    clock.advance(2 * 86400)
    history.record(ChatLine("alice", "new"), LOBBY)
    replay = history.recent(10, LOBBY, "bob", private=True)
    assert [record.event for record in replay] == [ChatLine("alice", "new")]


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
    assert open_history(str(path), 20) == [Record(5.0, ChatLine("al", "hi", LOBBY), LOBBY)]
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


def stored_texts(path: str) -> list[str | None]:
    """
    The texts of the events in the database at C{path}, in the order
    written, read through a connection of its own.
    """
    connection = sqlite3.connect(path)
    try:
        return [text for (text,) in connection.execute("SELECT text FROM events ORDER BY id")]
    finally:
        connection.close()


def write_lock(path: str) -> sqlite3.Connection:
    """
    Hold the write lock of the database at C{path}, as another process
    would (BEGIN IMMEDIATE); roll back the returned connection to release
    it.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def messages(events: Sequence[LogEvent], level: LogLevel | None = None) -> list[str]:
    """
    The text of the captured log C{events} from L{History}, optionally only
    those of C{level}.
    """
    return [
        formatEvent(event)
        for event in events
        if event.get("log_namespace", "").startswith("twistedchat.history")
        and (level is None or event["log_level"] == level)
    ]


def file_history(tmp_path: Path, max_unwritten: int = MAX_UNWRITTEN) -> tuple[str, History]:
    """
    A new database in C{tmp_path} and a history writing to it through a
    real pool whose connection gives up on a locked database after 10 ms
    (fast, for tests), keeping at most C{max_unwritten} events unwritten.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    pool = make_pool(path, reactor, busy_timeout=0.01)
    return path, History(pool, Clock(), max_unwritten=max_unwritten)


@pytest_twisted.ensureDeferred
async def test_locked_database_batch_kept_and_retried_in_order(tmp_path: Path) -> None:
    """
    While another connection holds the write lock, a flush fails after the
    busy timeout; its events are kept, not lost, and the failure is logged
    once however many flushes fail. Once the lock is released the next
    flush writes them all, older before newer, and logs that writing
    resumed.
    """
    path, history = file_history(tmp_path)
    lock = write_lock(path)
    with capturedLogs() as events:
        history.record(ChatLine("alice", "one"), LOBBY)
        history.record(ChatLine("alice", "two"), LOBBY)
        await history.flush()
        history.record(ChatLine("alice", "three"), LOBBY)
        await history.flush()
        assert stored_texts(path) == []
        lock.execute("ROLLBACK")
        history.record(ChatLine("alice", "four"), LOBBY)
        await history.flush()
        assert stored_texts(path) == ["one", "two", "three", "four"]
        await history.stop()
    lock.close()
    assert messages(events, LogLevel.critical) == [
        "Could not write 2 history events; keeping them to try again"
    ]
    failure = next(event for event in events if "log_failure" in event)
    assert "database is locked" in str(failure["log_failure"].value)
    assert messages(events, LogLevel.info) == ["Wrote 4 history events after 2 failed attempts"]


@pytest_twisted.ensureDeferred
async def test_one_write_at_a_time(tmp_path: Path) -> None:
    """
    While a batch is being written, a flush starts no second write: it
    waits for the first to end, and what was recorded since goes with the
    next flush, after it.
    """
    path, history = file_history(tmp_path)
    history.record(ChatLine("alice", "one"), LOBBY)
    first = history.flush()
    history.record(ChatLine("alice", "two"), LOBBY)
    second = history.flush()
    assert not second.called
    await second
    assert first.called
    assert stored_texts(path) == ["one"]
    await history.flush()
    assert stored_texts(path) == ["one", "two"]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_ticks_do_not_overlap_a_slow_write(tmp_path: Path) -> None:
    """
    A tick of the flush timer that comes while a write is still under way
    starts no second one; what was recorded meanwhile is written later.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    history = History(make_pool(path, reactor), clock)
    history.start()
    history.record(ChatLine("alice", "one"), LOBBY)
    clock.advance(FLUSH_INTERVAL)
    history.record(ChatLine("alice", "two"), LOBBY)
    clock.advance(FLUSH_INTERVAL)
    under_way = history.flush()
    assert not under_way.called
    await under_way
    assert stored_texts(path) == ["one"]
    await history.stop()
    assert stored_texts(path) == ["one", "two"]


@pytest_twisted.ensureDeferred
async def test_overflow_drops_oldest_and_logs_once(tmp_path: Path) -> None:
    """
    When more events wait to be written than the bound, the oldest are
    dropped: the first drop logs a warning, the others none, and the
    write that ends the episode logs how many were dropped. The newest
    events are written, in order.
    """
    path, history = file_history(tmp_path, max_unwritten=3)
    lock = write_lock(path)
    with capturedLogs() as events:
        history.record(ChatLine("alice", "1"), LOBBY)
        history.record(ChatLine("alice", "2"), LOBBY)
        await history.flush()
        for text in "345":
            history.record(ChatLine("alice", text), LOBBY)
        await history.flush()
        history.record(ChatLine("alice", "6"), LOBBY)
        lock.execute("ROLLBACK")
        await history.flush()
        await history.stop()
    lock.close()
    assert stored_texts(path) == ["4", "5", "6"]
    assert messages(events, LogLevel.warn) == [
        "History cannot be written and 3 events are waiting: dropping the oldest until it can",
        "Dropped 3 history events that could not be written",
    ]


@pytest_twisted.ensureDeferred
async def test_events_being_written_are_not_dropped(tmp_path: Path) -> None:
    """
    An overflow while a batch is being written drops the oldest event not
    in that batch; if the batch fails it is kept, ahead of the rest.
    """
    path, history = file_history(tmp_path, max_unwritten=3)
    lock = write_lock(path)
    history.record(ChatLine("alice", "1"), LOBBY)
    history.record(ChatLine("alice", "2"), LOBBY)
    writing = history.flush()
    history.record(ChatLine("alice", "3"), LOBBY)
    history.record(ChatLine("alice", "4"), LOBBY)
    await writing
    lock.execute("ROLLBACK")
    lock.close()
    await history.stop()
    assert stored_texts(path) == ["1", "2", "4"]


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_a_write_and_writes_the_rest(tmp_path: Path) -> None:
    """
    stop() lets a write under way end, then writes what came since and
    what an earlier failure kept.
    """
    path, history = file_history(tmp_path)
    lock = write_lock(path)
    history.record(ChatLine("alice", "kept"), LOBBY)
    await history.flush()
    lock.execute("ROLLBACK")
    lock.close()
    history.record(ChatLine("alice", "one"), LOBBY)
    history.flush()
    history.record(ChatLine("alice", "two"), LOBBY)
    await history.stop()
    assert stored_texts(path) == ["kept", "one", "two"]


@pytest_twisted.ensureDeferred
async def test_stop_logs_what_could_not_be_written(tmp_path: Path) -> None:
    """
    If the database is still locked when the server stops, stop() tries
    once more, then logs how many events are lost, and still fires.
    """
    path, history = file_history(tmp_path, max_unwritten=2)
    lock = write_lock(path)
    with capturedLogs() as events:
        for text in "123":
            history.record(ChatLine("alice", text), LOBBY)
        await history.stop()
    lock.execute("ROLLBACK")
    lock.close()
    assert stored_texts(path) == []
    assert messages(events, LogLevel.error) == [
        "Stopping with 2 history events not written; 1 more were dropped earlier"
    ]


@pytest_twisted.ensureDeferred
async def test_unwritten_events_bounded_by_default(tmp_path: Path) -> None:
    """
    By default at most MAX_UNWRITTEN (ten thousand) events wait to be
    written: one more drops the oldest, with a warning.
    """
    path, history = file_history(tmp_path)
    assert MAX_UNWRITTEN == 10_000
    with capturedLogs() as events:
        for i in range(MAX_UNWRITTEN):
            history.record(ChatLine("alice", str(i)), LOBBY)
        assert messages(events) == []
        history.record(ChatLine("alice", "one more"), LOBBY)
        assert messages(events) == [
            "History cannot be written and 10000 events are waiting:"
            " dropping the oldest until it can"
        ]
        await history.stop()
    texts = stored_texts(path)
    assert (len(texts), texts[0], texts[-1]) == (MAX_UNWRITTEN, "1", "one more")


def storm(history: History, pairs: int, room: str = LOBBY) -> None:
    """
    Record C{pairs} joins and leaves of a spammer in C{history}, in the
    room C{room}.
    """
    for i in range(pairs):
        history.record(Joined(f"spam{i}", room), room)
        history.record(Left(f"spam{i}", "quit", room), room)


def test_join_storm_does_not_push_out_the_conversation() -> None:
    """
    After a few chat lines, 24,000 joins and leaves still leave those lines
    in the replay and in /history 200; the notices shown with them are the
    most recent ones, no more than the count asked for.
    """
    clock = Clock()
    history = memory_history(clock)
    said = [ChatLine("alice", "hello"), Action("bob", "waves"), ChatLine("carol", "hi")]
    record_all(history, said)
    storm(history, 12_000)
    for count in (20, 200):
        replay = [record.event for record in history.recent(count, LOBBY)]
        assert replay[:3] == said
        assert replay[3:] == [
            event
            for i in range(12_000 - count // 2, 12_000)
            for event in (Joined(f"spam{i}", LOBBY), Left(f"spam{i}", "quit", LOBBY))
        ]


def test_notices_among_the_lines_included_and_bounded() -> None:
    """
    recent(count) returns the last count conversation events and, of the
    notices since the oldest of them, at most count, the most recent;
    notices before it are not shown.
    """
    clock = Clock()
    history = memory_history(clock)
    events: list[Event] = [
        ChatLine("al", "1"),
        Joined("bo"),
        ChatLine("al", "2"),
        NicknameChanged("bo", "bob"),
        Joined("cy"),
        Action("al", "3"),
        Left("cy", "quit"),
    ]
    record_all(history, events)
    assert [record.event for record in history.recent(2, LOBBY)] == [
        ChatLine("al", "2"),
        Joined("cy"),
        Action("al", "3"),
        Left("cy", "quit"),
    ]
    assert [record.event for record in history.recent(3, LOBBY)] == [
        ChatLine("al", "1"),
        ChatLine("al", "2"),
        NicknameChanged("bo", "bob"),
        Joined("cy"),
        Action("al", "3"),
        Left("cy", "quit"),
    ]
    assert [record.event for record in history.recent(10, LOBBY)] == events
    assert history.recent(0, LOBBY) == []


def test_only_visible_private_messages_count() -> None:
    """
    A private message counts toward recent(count) only for a viewer who may
    see it; for anyone else the line before it is shown instead.
    """
    clock = Clock()
    history = memory_history(clock)
    record_all(
        history,
        [ChatLine("al", "1"), PrivateMessage("al", "bob", "psst"), ChatLine("al", "2")],
    )
    for viewer in (None, "cy"):
        assert [record.event for record in history.recent(2, LOBBY, viewer, private=True)] == [
            ChatLine("al", "1"),
            ChatLine("al", "2"),
        ]
    assert [record.event for record in history.recent(2, LOBBY, "bob", private=True)] == [
        PrivateMessage("al", "bob", "psst"),
        ChatLine("al", "2"),
    ]


def test_notices_forgotten_with_the_conversation_they_were_among() -> None:
    """
    When a room's older conversation has left memory (cap reached),
    notices from before its oldest line kept are not replayed, even to a
    viewer who sees fewer lines than asked for; private messages do not
    count as the room's conversation.
    """
    clock = Clock()
    history = memory_history(clock, cap=2)
    record_all(
        history,
        [
            Joined("old"),
            ChatLine("al", "1"),
            Joined("bo"),
            ChatLine("al", "2"),
            PrivateMessage("al", "cy", "psst"),
            ChatLine("al", "3"),
        ],
    )
    assert [record.event for record in history.recent(3, LOBBY)] == [
        ChatLine("al", "2"),
        ChatLine("al", "3"),
    ]
    assert [record.event for record in history.recent(3, LOBBY, "cy", private=True)] == [
        ChatLine("al", "2"),
        PrivateMessage("al", "cy", "psst"),
        ChatLine("al", "3"),
    ]


def test_join_storm_replay_on_join() -> None:
    """
    A user who joins after a join and quit storm is still shown the lines
    said before it, with the most recent joins and leaves among them.
    """
    clock = Clock()
    factory = make_factory(clock, history=memory_history(clock), history_on_join=3)
    (alice,) = chatters(factory, "alice")
    alice.send(b"before the storm\n")
    for _ in range(300):
        (spammer,) = chatters(factory, "spammer")
        spammer.send(b"/quit\n")
    carol = FakeClient(factory)
    carol.output()
    carol.send(b"carol\n")
    replayed = [line.split("] ", 1)[1] for line in carol.lines() if line.startswith("[")]
    assert replayed == [
        "<alice> before the storm",
        "*** spammer has left (quit)",
        "*** spammer has joined",
        "*** spammer has left (quit)",
    ]


@pytest_twisted.ensureDeferred
async def test_restart_after_join_storm_keeps_the_conversation(tmp_path: Path) -> None:
    """
    At start-up, load_recent reads the last keep conversation lines however
    many joins and leaves followed them, and the last keep notices since
    the oldest of those lines, in order.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    history = History(make_pool(path, reactor), Clock())
    history.record(Joined("early", LOBBY), LOBBY)
    lines = [ChatLine("alice", str(i), LOBBY) for i in range(30)]
    record_all(history, lines)
    storm(history, 2_500)
    await history.stop()

    again = [record.event for record in open_history(path, 20)]
    assert again[:20] == lines[10:]
    assert again[20:] == [
        event
        for i in range(2_490, 2_500)
        for event in (Joined(f"spam{i}", LOBBY), Left(f"spam{i}", "quit", LOBBY))
    ]
    few = [record.event for record in open_history(path, 40)]
    assert few[:30] == lines
    assert len(few) == 30 + 40
    restarted = History(None, Clock(), open_history(path, 20), cap=20)
    assert [record.event for record in restarted.recent(5, LOBBY)][:5] == lines[-5:]


def test_rooms_kept_apart() -> None:
    """
    recent(count, room) returns only that room's lines and notices, in
    order; a room where nothing happened has nothing to replay.
    """
    history = memory_history(Clock())
    history.record(Joined("al", "#a"), "#a")
    history.record(ChatLine("al", "in a", "#a"), "#a")
    history.record(Joined("bo", "#b"), "#b")
    history.record(ChatLine("bo", "in b", "#b"), "#b")
    history.record(TopicChanged("#a", "al", "all about a"), "#a")
    history.record(Action("bo", "waves", "#b"), "#b")
    assert [record.event for record in history.recent(10, "#a")] == [
        Joined("al", "#a"),
        ChatLine("al", "in a", "#a"),
        TopicChanged("#a", "al", "all about a"),
    ]
    assert [record.event for record in history.recent(10, "#b")] == [
        Joined("bo", "#b"),
        ChatLine("bo", "in b", "#b"),
        Action("bo", "waves", "#b"),
    ]
    assert {record.room for record in history.recent(10, "#b")} == {"#b"}
    assert history.recent(10, "#c") == []


def test_flood_in_one_room_keeps_another_rooms_lines() -> None:
    """
    A flood of lines, joins and leaves in one room, far beyond cap, pushes
    out none of another room's lines or notices.
    """
    history = memory_history(Clock(), cap=3)
    quiet: list[Event] = [ChatLine("al", "hello", "#quiet"), Joined("bo", "#quiet")]
    record_all(history, quiet, "#quiet")
    for i in range(1_000):
        history.record(ChatLine("spammer", str(i), "#busy"), "#busy")
    storm(history, 1_000, "#busy")
    assert [record.event for record in history.recent(3, "#quiet")] == quiet
    busy = [record.event for record in history.recent(3, "#busy")]
    assert busy[:3] == [ChatLine("spammer", str(i), "#busy") for i in (997, 998, 999)]
    assert len(busy) == 3 + 3


def test_global_event_recorded_in_each_room() -> None:
    """
    A quit and a nickname change, recorded once for each room the user was
    in (the same event object each time), are replayed in each of those
    rooms, with the room they were recorded in.
    """
    history = memory_history(Clock())
    renamed = NicknameChanged("al", "alan")
    quit = Left("alan", "bye")
    for event in (renamed, quit):
        for room in ("#a", "#b"):
            history.record(event, room)
    for room in ("#a", "#b"):
        replay = history.recent(10, room)
        assert [record.event for record in replay] == [renamed, quit]
        assert [record.room for record in replay] == [room, room]


def test_private_messages_only_when_asked_and_only_for_their_viewer() -> None:
    """
    Private messages are in recent() only with private=True, only for a
    viewer whose nickname key sent or received them (whatever the case of
    the nicknames), only from since on, and are merged in order with the
    room's lines; with no room, recent() returns only them.
    """
    clock = Clock()
    history = memory_history(clock)
    history.record(ChatLine("al", "1", LOBBY), LOBBY)
    clock.advance(10)
    history.record(PrivateMessage("Al", "BOB", "psst"), None)
    history.record(ChatLine("al", "2", LOBBY), LOBBY)
    history.record(PrivateMessage("cy", "al", "not for bob"), None)

    def texts(
        room: str | None, viewer: str | None = None, since: float = 0.0, private: bool = False
    ) -> list[str]:
        """
        The texts of what recent(10, ...) returns.
        """
        said = []
        for record in history.recent(10, room, viewer, since, private):
            assert isinstance(record.event, (ChatLine, PrivateMessage))
            said.append(record.event.text)
        return said

    assert texts(LOBBY) == ["1", "2"]
    assert texts(LOBBY, "bob") == ["1", "2"]
    assert texts(LOBBY, "bob", private=True) == ["1", "psst", "2"]
    assert texts(LOBBY, "bob", 11.0, private=True) == ["1", "2"]
    assert texts(LOBBY, None, private=True) == ["1", "2"]
    assert texts(None, "bob", private=True) == ["psst"]
    assert texts(None, "al", private=True) == ["psst", "not for bob"]
    assert texts(None, "bob") == []
    assert texts(None, "dee", private=True) == []


def test_forget_drops_a_rooms_events_from_memory(tmp_path: Path) -> None:
    """
    forget(room) drops that room's events from memory, and only them; a
    room never seen is ignored; a room of the same name made later starts
    with no history.
    """
    history = memory_history(Clock())
    history.record(ChatLine("al", "gone", "#a"), "#a")
    history.record(ChatLine("al", "kept", "#b"), "#b")
    history.record(PrivateMessage("al", "bo", "kept too"), None)
    history.forget("#a")
    history.forget("#never")
    assert history.recent(10, "#a") == []
    assert [record.event for record in history.recent(10, "#b")] == [ChatLine("al", "kept", "#b")]
    assert len(history.recent(10, None, "bo", private=True)) == 1
    history.record(Joined("cy", "#a"), "#a")
    assert [record.event for record in history.recent(10, "#a")] == [Joined("cy", "#a")]


def test_record_refuses_an_event_in_the_wrong_place() -> None:
    """
    A private message cannot be recorded in a room, nor a room event in no
    room: either would be replayed where it did not happen.
    """
    history = memory_history(Clock())
    with pytest.raises(ValueError, match="cannot be recorded in the room '#a'"):
        history.record(PrivateMessage("al", "bo", "psst"), "#a")
    with pytest.raises(ValueError, match="cannot be recorded in no room"):
        history.record(ChatLine("al", "hi", "#a"))
    assert history.recent(10, "#a", "bo", private=True) == []


@pytest_twisted.ensureDeferred
async def test_topic_kick_and_mode_reach_disk_and_come_back(tmp_path: Path) -> None:
    """
    Topic changes, kicks and mode changes (with a target or none) are
    stored as kinds topic, kick and mode in their room, come back at the
    next start-up with the room key as their room, and are notices: they
    do not count as lines.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    history = History(make_pool(path, reactor), Clock())
    events: list[Event] = [
        TopicChanged("#ops", "al", "the topic"),
        TopicChanged("#ops", "al", ""),
        Kicked("#ops", "al", "bo", "flooding"),
        ModeChanged("#ops", "al", "+o", "cy"),
        ModeChanged("#ops", "al", "+t"),
    ]
    record_all(history, events, "#ops")
    assert [record.event for record in history.recent(2, "#ops")] == events[-2:]
    await history.stop()
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT kind, nickname, target, text, room FROM events ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    assert rows == [
        ("topic", "al", None, "the topic", "#ops"),
        ("topic", "al", None, "", "#ops"),
        ("kick", "al", "bo", "flooding", "#ops"),
        ("mode", "al", "cy", "+o", "#ops"),
        ("mode", "al", None, "+t", "#ops"),
    ]
    again = open_history(path, 20)
    assert [record.event for record in again] == events
    assert {record.room for record in again} == {"#ops"}


def version_2_database(path: Path) -> sqlite3.Connection:
    """
    Create, at C{path}, a database of schema version 2 (from before rooms)
    and return a connection to it.
    """
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,"
        " nickname TEXT NOT NULL, target TEXT, text TEXT)"
    )
    connection.execute("CREATE INDEX events_at ON events (at)")
    connection.execute(
        "CREATE TABLE accounts (nickname_key TEXT PRIMARY KEY, nickname TEXT NOT NULL,"
        " password_hash TEXT NOT NULL, created_at REAL NOT NULL)"
    )
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    return connection


@pytest_twisted.ensureDeferred
async def test_load_recent_per_room_with_old_rows_in_the_default_room(tmp_path: Path) -> None:
    """
    load_recent reads, for each room, its last keep lines and the notices
    since the oldest of them (at most keep), however busy the other rooms
    were, and the last keep private messages; oldest first, in the order
    stored. Rows stored before rooms belong to the default room; private
    messages to none; a quit comes back as a quit, in the room it was
    recorded in. A history built from them replays each room.
    """
    path = tmp_path / "chat.sqlite3"
    old = version_2_database(path)
    old.executemany(
        "INSERT INTO events (at, kind, nickname, target, text) VALUES (?, ?, ?, ?, ?)",
        [
            (1, "chat", "al", None, "old 1"),
            (2, "join", "bo", None, None),
            (3, "private", "al", "bo", "old secret"),
            (4, "chat", "al", None, "old 2"),
        ],
    )
    old.commit()
    old.close()
    assert [record.room for record in open_history(str(path), 2, "#old")] == [
        "#old",
        "#old",
        None,
        "#old",
    ]
    history = History(make_pool(str(path), reactor), Clock())
    history.record(Left("bo", "bye"), "#old")
    history.record(Joined("cy", "#quiet"), "#quiet")
    history.record(ChatLine("cy", "quiet 1", "#quiet"), "#quiet")
    for i in range(5):
        history.record(ChatLine("dee", f"busy {i}", "#busy"), "#busy")
        history.record(PrivateMessage("dee", "cy", f"secret {i}"), None)
    storm(history, 5, "#busy")
    history.record(ChatLine("cy", "quiet 2", "#quiet"), "#quiet")
    await history.stop()

    recent = open_history(str(path), 2, "#old")
    old_room: list[Event] = [
        ChatLine("al", "old 1", "#old"),
        Joined("bo", "#old"),
        ChatLine("al", "old 2", "#old"),
        Left("bo", "bye"),
    ]
    # The join in #quiet came before the oldest of its last two lines.
    assert [(record.room, record.event) for record in recent] == [
        *(("#old", event) for event in old_room),
        ("#quiet", ChatLine("cy", "quiet 1", "#quiet")),
        ("#busy", ChatLine("dee", "busy 3", "#busy")),
        (None, PrivateMessage("dee", "cy", "secret 3")),
        ("#busy", ChatLine("dee", "busy 4", "#busy")),
        (None, PrivateMessage("dee", "cy", "secret 4")),
        ("#busy", Joined("spam4", "#busy")),
        ("#busy", Left("spam4", "quit", "#busy")),
        ("#quiet", ChatLine("cy", "quiet 2", "#quiet")),
    ]
    restarted = History(None, Clock(), recent, cap=2)
    assert [record.event for record in restarted.recent(2, "#quiet", "cy", private=True)] == [
        PrivateMessage("dee", "cy", "secret 4"),
        ChatLine("cy", "quiet 2", "#quiet"),
    ]
    assert [record.event for record in restarted.recent(2, "#old")] == old_room


# Event ids and times


def test_recorded_events_get_increasing_ids_and_times() -> None:
    """
    record() gives each event, the first time it sees it, an id one more
    than the last, in a history kept in memory from one more than the
    clock's microseconds when it was made (last_id until then), and the
    time it was recorded; a later event gets a larger id. A reply that is
    never recorded keeps id 0 and time 0.0, and neither counts in
    comparisons.
    """
    clock = Clock()
    clock.advance(1_000)
    history = memory_history(clock)
    assert history.last_id == 1_000_000_000
    first, second = ChatLine("al", "one", LOBBY), ChatLine("al", "two", LOBBY)
    history.record(first, LOBBY)
    clock.advance(2.5)
    history.record(second, LOBBY)
    assert (first.id, first.at) == (1_000_000_001, 1_000.0)
    assert (second.id, second.at) == (1_000_000_002, 1_002.5)
    assert history.last_id == second.id
    assert first == ChatLine("al", "one", LOBBY)
    assert "id" not in repr(first)
    assert (Left("al", "").id, Left("al", "").at) == (0, 0.0)


def test_event_in_several_rooms_keeps_one_id_and_time() -> None:
    """
    A quit or a nickname change recorded in each room its participant was
    in keeps the id and time it got in the first, and every room's record
    holds the same event; the next event gets the next id.
    """
    clock = Clock()
    history = memory_history(clock)
    quit, rename = Left("al", "bye"), NicknameChanged("bo", "bob")
    history.record(quit, "#a")
    clock.advance(1)
    history.record(quit, "#b")
    history.record(rename, "#a")
    history.record(rename, "#b")
    assert (quit.id, quit.at, rename.id, rename.at) == (1, 0.0, 2, 1.0)
    for room in ("#a", "#b"):
        records = history.recent(10, room)
        assert [record.event for record in records] == [quit, rename]
        assert [(record.event.id, record.at) for record in records] == [(1, 0.0), (2, 1.0)]
        assert records[0].event is quit


@pytest_twisted.ensureDeferred
async def test_ids_go_on_after_a_restart(tmp_path: Path) -> None:
    """
    Events are stored with their ids; after a restart from the same SQLite
    file, the records read back carry their event's id and time, and new
    events are numbered after the largest id stored, so ids keep growing
    across restarts. A quit in two rooms is stored once in each, with one
    id.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    history = History(make_pool(path, reactor), clock)
    quit = Left("al", "bye")
    clock.advance(100)
    record_all(history, [ChatLine("al", "hi", LOBBY), PrivateMessage("al", "bo", "psst")])
    history.record(quit, LOBBY)
    history.record(quit, "#dev")
    await history.stop()
    rows = sqlite3.connect(path).execute("SELECT event, room FROM events ORDER BY id").fetchall()
    first = MAX_UNWRITTEN + 1
    assert rows == [(first, LOBBY), (first + 1, None), (first + 2, LOBBY), (first + 2, "#dev")]

    recent = open_history(path, 20)
    assert [(record.event.id, record.event.at) for record in recent] == [
        (first, 100.0),
        (first + 1, 100.0),
        (first + 2, 100.0),
        (first + 2, 100.0),
    ]
    restarted = History(make_pool(path, reactor), Clock(), recent)
    later = ChatLine("bo", "back", LOBBY)
    restarted.record(later, LOBBY)
    assert later.id == first + 2 + MAX_UNWRITTEN + 1
    await restarted.stop()
    (again,) = [r for r in open_history(path, 20) if r.event == later]
    assert (again.event.id, again.at) == (later.id, 0.0)


@pytest_twisted.ensureDeferred
async def test_ids_go_on_after_everything_was_pruned(tmp_path: Path) -> None:
    """
    Pruning every stored event does not lower the largest event id ever
    stored (last_event_id, from the database's last_event table): a
    history given it as last_id numbers new events after it, though no
    event is left to read.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    history = History(make_pool(path, reactor), clock, retention=1)
    lines = [ChatLine("al", f"line {i}", LOBBY) for i in range(3)]
    record_all(history, lines)
    await history.flush()
    clock.advance(2 * 86400)
    await history.prune()
    await history.stop()
    recent, last = open_database(path, lambda c: load_recent(c, 20, LOBBY), last_event_id)
    assert (recent, last) == ([], lines[-1].id)
    restarted = History(None, Clock(), recent, last_id=last)
    event = ChatLine("al", "again", LOBBY)
    restarted.record(event, LOBBY)
    assert event.id == last + 1


def test_last_id_and_recent_ids_both_count() -> None:
    """
    Numbering goes on after the larger of last_id and the ids of the
    recent records.
    """
    loaded = ChatLine("al", "old", LOBBY)
    loaded.id = 7
    history = History(None, Clock(), [Record(0.0, loaded, LOBBY)], last_id=5)
    event = ChatLine("al", "new", LOBBY)
    history.record(event, LOBBY)
    assert event.id == 8


# Pages of older events


def numbered_chat(history: History, clock: Clock, count: int, room: str = LOBBY) -> list[Event]:
    """
    Record C{count} chat lines in C{room}, one a second, each followed by a
    private message that no page shows; return the lines.
    """
    lines: list[Event] = []
    for i in range(count):
        line = ChatLine("al", f"line {i}", room)
        history.record(line, room)
        history.record(PrivateMessage("al", "bo", f"secret {i}"), None)
        lines.append(line)
        clock.advance(1)
    return lines


def test_page_from_memory() -> None:
    """
    Without a database, page() returns from memory, oldest first, the last
    count events of the room (lines and notices, no private messages)
    whose id is below before; none for an id of 1 or less, or a count of
    0, or a room never seen.
    """
    clock = Clock()
    history = memory_history(clock)
    lines = numbered_chat(history, clock, 3)
    join = Joined("cy", LOBBY)
    history.record(join, LOBBY)
    lines += numbered_chat(history, clock, 2)
    everything = [*lines[:3], join, *lines[3:]]

    def page(before: int, count: int, room: str = LOBBY) -> list[Event]:
        d = history.page(room, before, count)
        return [record.event for record in d.result]

    assert page(1000, 10) == everything
    assert page(lines[3].id, 2) == [lines[2], join]
    assert page(everything[-1].id, 2) == [join, lines[3]]
    assert page(join.id, 10) == lines[:3]
    assert page(lines[0].id, 10) == []
    assert page(1, 10) == page(1000, 0) == page(1000, 10, "#nowhere") == []


def file_history_on(tmp_path: Path, clock: Clock, **options: Any) -> tuple[str, History]:
    """
    A new database in C{tmp_path} and a history on C{clock} writing to it
    through a real pool, the default room being C{LOBBY}.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    history = History(make_pool(path, reactor), clock, default_room=LOBBY, **options)
    return path, history


@pytest_twisted.ensureDeferred
async def test_page_from_the_database_sees_unwritten_events(tmp_path: Path) -> None:
    """
    With a database, page() reads it, after writing the events not yet
    written (nothing was flushed here), in order: oldest first, the last
    count of the room with an id below before, notices included, private
    messages and other rooms' events not; each record carries its event's
    id and time.
    """
    clock = Clock()
    path, history = file_history_on(tmp_path, clock)
    lines = numbered_chat(history, clock, 5)
    numbered_chat(history, clock, 2, "#dev")
    join = Joined("cy", LOBBY)
    history.record(join, LOBBY)
    assert stored_texts(path) == []
    page = await history.page(LOBBY, join.id + 1, 3)
    assert [record.event for record in page] == [lines[3], lines[4], join]
    assert [(record.event.id, record.at) for record in page] == [
        (event.id, event.at) for event in (lines[3], lines[4], join)
    ]
    assert {record.room for record in page} == {LOBBY}
    older = await history.page(LOBBY, page[0].event.id, 100)
    assert [record.event for record in older] == lines[:3]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_page_waits_for_a_write_under_way(tmp_path: Path) -> None:
    """
    A page asked for while a batch is being written sees both that batch
    and the events recorded since, which are written before it is read.
    """
    clock = Clock()
    _, history = file_history_on(tmp_path, clock)
    first = numbered_chat(history, clock, 2)
    writing = history.flush()
    later = numbered_chat(history, clock, 2)
    reading = history.page(LOBBY, later[-1].id + 1, 10)
    assert not writing.called
    page = await reading
    assert [record.event for record in page] == first + later
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_page_of_old_rows_and_the_retention(tmp_path: Path) -> None:
    """
    Rows stored before rooms (no room, not private) are the default
    room's in a page, merged with its newer events in id order, and no
    other room's; nothing older than the retention is returned.
    """
    path = tmp_path / "chat.sqlite3"
    old = version_2_database(path)
    old.executemany(
        "INSERT INTO events (at, kind, nickname, target, text) VALUES (?, ?, ?, ?, ?)",
        [(1, "chat", "al", None, "old"), (2, "private", "al", "bo", "old secret")],
    )
    old.commit()
    old.close()
    recent = open_history(str(path), 20)
    clock = Clock()
    clock.advance(86400 + 10)
    kept = History(make_pool(str(path), reactor), clock, recent, retention=1, default_room=LOBBY)
    new = ChatLine("al", "new", LOBBY)
    kept.record(new, LOBBY)
    page = await kept.page(LOBBY, new.id + 1, 10)
    assert [(record.event, record.room) for record in page] == [(new, LOBBY)]
    await kept.stop()
    forever = History(make_pool(str(path), reactor), clock, default_room=LOBBY)
    page = await forever.page(LOBBY, new.id + 1, 10)
    assert [(record.event, record.room, record.event.id) for record in page] == [
        (ChatLine("al", "old", LOBBY), LOBBY, 1),
        (new, LOBBY, new.id),
    ]
    assert await forever.page("#dev", new.id + 1, 10) == []
    await forever.stop()


@pytest_twisted.ensureDeferred
async def test_page_before_beyond_64_bit_integers(tmp_path: Path) -> None:
    """
    A page before an id larger than SQLite's integers hold (2**63 - 1,
    MAX_EVENT_ID) is a page of the latest events, read from the database
    (where such an id would raise OverflowError) and from memory alike.
    """
    clock = Clock()
    _, history = file_history_on(tmp_path, clock)
    lines = numbered_chat(history, clock, 3)
    for before in (MAX_EVENT_ID, MAX_EVENT_ID + 1, 2**64, 10**30):
        page = await history.page(LOBBY, before, 2)
        assert [record.event for record in page] == lines[1:]
    await history.stop()
    in_memory = memory_history(clock)
    lines = numbered_chat(in_memory, clock, 3)
    assert [record.event for record in in_memory.page(LOBBY, 10**30, 2).result] == lines[1:]


# A room's current life


def test_page_after_an_id_from_memory() -> None:
    """
    page() with after returns, from memory, only the events with an id
    larger than after (a room's current life), notices too; none if
    before is at most one more than after.
    """
    clock = Clock()
    history = memory_history(clock)
    old = numbered_chat(history, clock, 2)
    since = history.last_id
    join = Joined("cy", LOBBY)
    history.record(join, LOBBY)
    new = numbered_chat(history, clock, 2)

    def page(before: int, after: int) -> list[Event]:
        return [record.event for record in history.page(LOBBY, before, 10, after).result]

    assert page(10**9, 0) == [*old, join, *new]
    assert page(10**9, since) == [join, *new]
    assert page(new[1].id, since) == [join, new[0]]
    assert page(join.id, since) == page(since + 1, since) == []


@pytest_twisted.ensureDeferred
async def test_page_after_an_id_from_the_database(tmp_path: Path) -> None:
    """
    page() with after reads, from the database, only the events with an
    id larger than after, notices too; the older ones stay there.
    """
    clock = Clock()
    _, history = file_history_on(tmp_path, clock)
    old = numbered_chat(history, clock, 2)
    since = history.last_id
    join = Joined("cy", LOBBY)
    history.record(join, LOBBY)
    new = numbered_chat(history, clock, 2)
    page = await history.page(LOBBY, MAX_EVENT_ID, 10, since)
    assert [record.event for record in page] == [join, *new]
    page = await history.page(LOBBY, MAX_EVENT_ID, 10)
    assert [record.event for record in page] == [*old, join, *new]
    assert await history.page(LOBBY, join.id, 10, since) == []
    await history.stop()


def test_retain_forgets_what_came_before_a_rooms_life() -> None:
    """
    retain() keeps in memory, of each room that exists, only the events
    after the id it is given for it (where the room's current life
    starts), and nothing of a room not given: a room of the same name
    that vanished before leaves nothing to replay.
    """
    before = [
        ChatLine("al", "the code is 1234", "#secret"),
        Joined("bo", "#secret"),
        ChatLine("al", "lobby line", LOBBY),
        ChatLine("al", "gone", "#gone"),
    ]
    after = [Joined("mallory", "#secret"), ChatLine("mallory", "anyone?", "#secret")]
    rooms = ["#secret", "#secret", LOBBY, "#gone", "#secret", "#secret"]
    recent = []
    for number, (event, room) in enumerate(zip([*before, *after], rooms, strict=True), 1):
        event.id = number
        recent.append(Record(0.0, event, room))
    history = History(None, Clock(), recent)
    history.retain({LOBBY: 0, "#secret": len(before)})
    assert [record.event for record in history.recent(10, "#secret")] == after
    assert [record.event for record in history.recent(10, LOBBY)] == [before[2]]
    assert history.recent(10, "#gone") == []


# Event ids across crashes and restarts


@pytest_twisted.ensureDeferred
async def test_ids_after_a_crash_are_larger_than_any_handed_out(tmp_path: Path) -> None:
    """
    A server that crashes loses the events it had not written, whose ids
    it had handed out: at most MAX_UNWRITTEN of them. A history started
    from the same file numbers new events after the largest id stored
    plus MAX_UNWRITTEN, so above every id handed out before, even with a
    clock that gives no help (at 0): the bound is exact.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    pool = make_pool(path, reactor)
    history = History(pool, Clock())
    written = [ChatLine("al", f"written {i}", LOBBY) for i in range(3)]
    record_all(history, written)
    await history.flush()
    lost = [ChatLine("al", f"lost {i}", LOBBY) for i in range(MAX_UNWRITTEN)]
    record_all(history, lost)
    pool.close()  # The crash: nothing more is written.
    assert stored_texts(path) == [f"written {i}" for i in range(3)]

    recent, last = open_database(path, lambda c: load_recent(c, 20, LOBBY), last_event_id)
    assert last == written[-1].id
    restarted = History(make_pool(path, reactor), Clock(), recent, last_id=last)
    new = ChatLine("bo", "new", LOBBY)
    restarted.record(new, LOBBY)
    assert new.id == lost[-1].id + 1
    await restarted.stop()


@pytest_twisted.ensureDeferred
async def test_ids_after_a_crash_that_dropped_events(tmp_path: Path) -> None:
    """
    Events dropped because the database could not be written had their
    ids handed out too, beyond any bound on the unwritten ones: the
    clock's microseconds keep a history started later (here a second) above
    them all.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_history(path, 20)
    clock = Clock()
    clock.advance(1_700_000_000)
    pool = make_pool(path, reactor, busy_timeout=0.01)
    history = History(pool, clock, max_unwritten=3)
    lock = write_lock(path)
    handed_out = [ChatLine("al", f"line {i}", LOBBY) for i in range(10)]
    with capturedLogs():
        record_all(history, handed_out)
        await history.flush()
    lock.execute("ROLLBACK")
    lock.close()
    pool.close()  # The crash.
    assert stored_texts(path) == []

    clock.advance(1)
    recent, last = open_database(path, lambda c: load_recent(c, 20, LOBBY), last_event_id)
    restarted = History(make_pool(path, reactor), clock, recent, last_id=last, max_unwritten=3)
    new = ChatLine("bo", "new", LOBBY)
    restarted.record(new, LOBBY)
    assert new.id > handed_out[-1].id
    await restarted.stop()


def test_ids_without_a_database_grow_across_restarts() -> None:
    """
    Without a database nothing is stored: a history numbers events from
    the clock's microseconds, so one started after another stopped (here
    two milliseconds later, after a thousand events) numbers its events
    above all of the other's; ids stay below 2**53, exact as JavaScript
    numbers.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    first = memory_history(clock)
    handed_out = [ChatLine("al", f"line {i}", LOBBY) for i in range(1000)]
    record_all(first, handed_out)
    clock.advance(0.002)
    restarted = memory_history(clock)
    new = ChatLine("bo", "new", LOBBY)
    restarted.record(new, LOBBY)
    assert handed_out[-1].id < new.id < 2**53


# Quits


@pytest_twisted.ensureDeferred
async def test_a_quit_is_stored_and_read_back_as_a_quit(tmp_path: Path) -> None:
    """
    A quit (Left with no room), recorded in each room its participant was
    in, is stored there as kind quit, and comes back a quit (no room) in
    a page and at start-up, its record's room being the room; a part stays
    a leave and comes back a part. A quit's reason is not conversation:
    no search finds it.
    """
    clock = Clock()
    path, history = file_history_on(tmp_path, clock)
    quit, part = Left("al", "bye for now"), Left("bo", "bye then", "#dev")
    history.record(quit, LOBBY)
    history.record(quit, "#dev")
    history.record(part, "#dev")
    page = await history.page("#dev", MAX_EVENT_ID, 10)
    assert [(record.event, record.room) for record in page] == [(quit, "#dev"), (part, "#dev")]
    assert page[0].event.room == "" and page[0].event.id == quit.id
    assert await history.search("bye", LOBBY) == await history.search("bye", "#dev") == []
    await history.stop()
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT kind, room, event FROM events ORDER BY id").fetchall()
    connection.close()
    assert rows == [("quit", LOBBY, quit.id), ("quit", "#dev", quit.id), ("leave", "#dev", part.id)]
    recent = open_history(path, 20)
    assert [(record.event, record.event.room, record.room) for record in recent] == [
        (quit, "", LOBBY),
        (quit, "", "#dev"),
        (part, "#dev", "#dev"),
    ]
