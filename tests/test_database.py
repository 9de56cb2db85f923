"""
Tests for L{twistedchat.database}: the modes of the database files, the
busy timeout of its connections, the rooms schema (version 3), event
ids and the full-text index (version 4), and quits, rooms' lives and the
full-text index by place (version 5). Other schema upgrades and
start-up errors are tested with the history, in C{test_history.py}, and
searching in C{test_search.py}.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent

from twistedchat import database
from twistedchat.database import (
    _MIGRATIONS,
    BUSY_TIMEOUT,
    SCHEMA_VERSION,
    make_pool,
    open_database,
    place_token,
    protect,
    upgrade,
)


def mode(path: Path | str) -> int:
    """
    The permission bits of the file at C{path}.
    """
    return os.stat(path).st_mode & 0o777


@pytest.fixture
def umask_022() -> Iterator[None]:
    """
    Run the test with the usual umask, 022, under which new files are
    readable by every local user unless created otherwise.
    """
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_new_database_and_its_wal_and_shm_are_private(tmp_path: Path, umask_022: None) -> None:
    """
    open_database creates a new database file with mode 0600 under umask
    022, and SQLite creates the -wal and -shm files beside it with the
    same mode.
    """
    path = tmp_path / "chat.sqlite3"
    open_database(str(path))
    assert mode(path) == 0o600
    connection = sqlite3.connect(path)
    try:
        connection.execute("INSERT INTO events (at, kind, nickname) VALUES (0, 'join', 'al')")
        connection.commit()
        assert {suffix: mode(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")} == {
            "": 0o600,
            "-wal": 0o600,
            "-shm": 0o600,
        }
    finally:
        connection.close()


def test_make_pool_creates_a_private_file(tmp_path: Path, umask_022: None) -> None:
    """
    make_pool alone, without open_database first, also creates the file
    with mode 0600 before SQLite opens it.
    """
    path = tmp_path / "pool.sqlite3"
    pool = make_pool(str(path), reactor)
    try:
        assert mode(path) == 0o600
    finally:
        pool.close()


def test_existing_wide_files_tightened_and_logged(tmp_path: Path, umask_022: None) -> None:
    """
    An existing database, -wal and -shm file readable by other users
    (0644, as SQLite creates them itself under umask 022) become 0600,
    with one warning for each naming the file and both modes; the
    database's content is kept.
    """
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE kept (x)")
    old.commit()
    names = [str(path), f"{path}-wal", f"{path}-shm"]
    assert [mode(name) for name in names] == [0o644] * 3
    try:
        with capturedLogs() as events:
            protect(str(path))
        assert [mode(name) for name in names] == [0o600] * 3
        assert [formatEvent(event) for event in events] == [
            f"{name} could be read or written by other users (mode 0644); it is now mode 0600"
            for name in names
        ]
    finally:
        old.close()
    open_database(str(path))
    assert mode(path) == 0o600
    assert sqlite3.connect(path).execute("SELECT count(*) FROM kept").fetchone() == (0,)


def test_private_files_left_alone(tmp_path: Path) -> None:
    """
    A database file that is already private keeps its mode, and nothing is
    logged.
    """
    path = tmp_path / "chat.sqlite3"
    path.touch(0o600)
    os.chmod(path, 0o600)
    with capturedLogs() as events:
        open_database(str(path))
    assert mode(path) == 0o600
    assert list(events) == []


def test_file_that_cannot_be_tightened_is_used_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    If the mode of a wide file cannot be changed (it is another user's),
    a warning says so, and the database is used as it is.
    """
    path = tmp_path / "theirs.sqlite3"
    path.touch()
    os.chmod(path, 0o664)

    def refuse(name: str, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted", name)

    monkeypatch.setattr(os, "chmod", refuse)
    with capturedLogs() as events:
        open_database(str(path))
    assert [formatEvent(event) for event in events] == [
        f"{path} can be read or written by other users (mode 0664), and cannot be changed:"
        " Operation not permitted"
    ]
    assert mode(path) == 0o664


def test_memory_database_touches_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    ':memory:' creates no file, in the working directory or anywhere.
    """
    monkeypatch.chdir(tmp_path)
    assert open_database(":memory:", lambda connection: 1) == [1]
    protect(":memory:")
    assert list(tmp_path.iterdir()) == []


def test_open_database_waits_for_a_busy_database() -> None:
    """
    The start-up connection waits BUSY_TIMEOUT seconds (a few) for another
    writer's lock instead of failing at once.
    """
    (timeout,) = open_database(
        ":memory:", lambda connection: connection.execute("PRAGMA busy_timeout").fetchone()
    )
    assert timeout == (int(BUSY_TIMEOUT * 1000),)
    assert 1 <= BUSY_TIMEOUT <= 10


@pytest_twisted.ensureDeferred
async def test_pool_connections_wait_for_a_busy_database(tmp_path: Path) -> None:
    """
    The pool's connection waits BUSY_TIMEOUT seconds for another writer's
    lock (in its thread, not the reactor's), or as long as make_pool is
    told.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    for pool, expected in (
        (make_pool(path, reactor), BUSY_TIMEOUT),
        (make_pool(path, reactor, 0.25), 0.25),
    ):
        try:
            rows = await pool.runQuery("PRAGMA busy_timeout")
            assert rows == [(int(expected * 1000),)]
        finally:
            pool.close()


def columns(connection: sqlite3.Connection, table: str) -> list[str]:
    """
    The names of the columns of C{table}, in order.
    """
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def test_new_database_has_the_rooms_schema(tmp_path: Path) -> None:
    """
    A new database has the rooms schema (version 3, kept by later
    versions): its events have a room, indexed with their id, and the
    tables of persistent rooms, their operators and their bans exist,
    empty; a ban's kind is 'account' or 'nickname'.
    """
    path = tmp_path / "chat.sqlite3"
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert "room" in columns(connection, "events")
        assert [row[2] for row in connection.execute("PRAGMA index_info(events_room)")] == [
            "room",
            "id",
        ]
        assert columns(connection, "rooms") == [
            "key",
            "name",
            "topic",
            "topic_by",
            "topic_at",
            "topic_locked",
            "since",
        ]
        assert columns(connection, "room_operators") == ["room_key", "account_key"]
        assert columns(connection, "room_bans") == ["room_key", "kind", "key"]
        connection.execute("INSERT INTO rooms (key, name) VALUES ('#a', '#A')")
        assert connection.execute("SELECT * FROM rooms").fetchall() == [
            ("#a", "#A", "", "", 0.0, 0, 0)
        ]
        connection.execute("INSERT INTO room_bans VALUES ('#a', 'nickname', 'al')")
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO room_bans VALUES ('#a', 'address', '10.0.0.1')")
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute("INSERT INTO room_operators VALUES ('#a', 'al'), ('#a', 'al')")
    finally:
        connection.close()


def test_upgrade_from_version_2_keeps_rows(tmp_path: Path) -> None:
    """
    A database of schema version 2 is upgraded to the current version on
    start-up: its events (now with no room, and their row id as event id)
    and accounts are kept, and the rooms tables are added, empty.
    """
    path = tmp_path / "v2.sqlite3"
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
    connection.execute(
        "INSERT INTO events (at, kind, nickname, text) VALUES (5, 'chat', 'al', 'hi')"
    )
    connection.execute("INSERT INTO accounts VALUES ('al', 'Al', '$argon2id$...', 7)")
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    connection.close()
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert connection.execute("SELECT * FROM events").fetchall() == [
            (1, 5.0, "chat", "al", None, "hi", None, 1, None, None)
        ]
        assert connection.execute("SELECT * FROM accounts").fetchall() == [
            ("al", "Al", "$argon2id$...", 7.0)
        ]
        for table in ("rooms", "room_operators", "room_bans"):
            assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    finally:
        connection.close()


def test_new_database_has_event_ids_and_a_search_index(tmp_path: Path) -> None:
    """
    Schema version 4: events have an event id, indexed with their room;
    last_event holds the largest event id ever stored, which inserts
    raise and deletes do not lower; the full-text index holds the text of
    chat lines, actions and private messages, not of notices (a quit is
    one), and loses a row's text when the row is deleted.
    """
    path = tmp_path / "chat.sqlite3"
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert SCHEMA_VERSION == 6
        assert "event" in columns(connection, "events")
        index = connection.execute("PRAGMA index_info(events_room_event)").fetchall()
        assert [row[2] for row in index] == ["room", "event"]
        assert connection.execute("SELECT id FROM last_event").fetchall() == [(0,)]
        connection.executemany(
            "INSERT INTO events (at, kind, nickname, target, text, room, event)"
            " VALUES (0, ?, 'al', ?, ?, ?, ?)",
            [
                ("chat", None, "apple pie", "#a", 1),
                ("action", None, "eats apple", "#a", 2),
                ("private", "bo", "apple secret", None, 3),
                ("leave", None, "apple", "#a", 4),
                ("quit", None, "apple", "#a", 4),
                ("topic", None, "apple", "#a", 5),
                ("nick", "bob", None, "#a", 6),
                ("nick", "bob", None, "#b", 6),
            ],
        )
        assert connection.execute("SELECT id FROM last_event").fetchall() == [(6,)]

        def found() -> list[int]:
            query = "SELECT rowid FROM events_text WHERE events_text MATCH 'apple' ORDER BY rowid"
            return [row for (row,) in connection.execute(query)]

        assert found() == [1, 2, 3]
        connection.execute("DELETE FROM events WHERE event IN (1, 6)")
        assert found() == [2, 3]
        assert connection.execute("SELECT id FROM last_event").fetchall() == [(6,)]
        connection.execute("INSERT INTO events_text (events_text) VALUES ('integrity-check')")
    finally:
        connection.close()


def version_3_database(path: Path) -> None:
    """
    Create, at C{path}, a database of schema version 3 holding a chat
    line from before rooms, a private message, a join and a chat line.
    """
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,
            nickname TEXT NOT NULL, target TEXT, text TEXT, room TEXT);
        CREATE INDEX events_at ON events (at);
        CREATE INDEX events_room ON events (room, id);
        CREATE TABLE accounts (nickname_key TEXT PRIMARY KEY, nickname TEXT NOT NULL,
            password_hash TEXT NOT NULL, created_at REAL NOT NULL);
        CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '', topic_by TEXT NOT NULL DEFAULT '',
            topic_at REAL NOT NULL DEFAULT 0, topic_locked INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE room_operators (room_key TEXT NOT NULL, account_key TEXT NOT NULL,
            PRIMARY KEY (room_key, account_key));
        CREATE TABLE room_bans (room_key TEXT NOT NULL, kind TEXT NOT NULL
            CHECK (kind IN ('account', 'nickname')), key TEXT NOT NULL,
            PRIMARY KEY (room_key, kind, key));
        INSERT INTO events (at, kind, nickname, target, text, room) VALUES
            (1, 'chat', 'al', NULL, 'old hello', NULL),
            (2, 'private', 'al', 'bo', 'hello secret', NULL),
            (3, 'join', 'bo', NULL, NULL, '#dev'),
            (4, 'chat', 'bo', NULL, 'hello dev', '#dev');
        PRAGMA user_version = 3;
        """
    )
    connection.commit()
    connection.close()


def test_upgrade_from_version_3_numbers_and_indexes_old_rows(tmp_path: Path) -> None:
    """
    A database of schema version 3 is upgraded on start-up: each old
    row's event id is its row id, last_event is the largest of them, and
    the text of its chat lines, actions and private messages is in the
    full-text index.
    """
    path = tmp_path / "v3.sqlite3"
    version_3_database(path)
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert connection.execute("SELECT id, event FROM events").fetchall() == [
            (1, 1),
            (2, 2),
            (3, 3),
            (4, 4),
        ]
        assert connection.execute("SELECT id FROM last_event").fetchall() == [(4,)]
        found = connection.execute(
            "SELECT rowid FROM events_text WHERE events_text MATCH 'hello' ORDER BY rowid"
        ).fetchall()
        assert found == [(1,), (2,), (4,)]
        connection.execute("INSERT INTO events_text (events_text) VALUES ('integrity-check')")
    finally:
        connection.close()


def test_upgrade_from_version_4_indexes_the_place_of_each_row(tmp_path: Path) -> None:
    """
    A database of schema version 4 is upgraded to version 5 on start-up:
    its rows are kept as they were (a quit stored as a leave stays one),
    its kept rooms start their life at 0 (their whole history), and its
    full-text index is made again with the place of each row: the room's
    token, none for a line from before rooms, private for a private
    message; rows added and deleted later keep it in step.
    """
    path = tmp_path / "v4.sqlite3"
    version_3_database(path)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("INSERT INTO rooms (key, name) VALUES ('#dev', '#Dev')")
        connection.execute(
            "INSERT INTO events (at, kind, nickname, text, room)"
            " VALUES (5, 'leave', 'bo', 'x', '#dev')"
        )
    connection.close()
    # Version 4, as this code's migrations up to it make it.
    connection = sqlite3.connect(path)
    with connection:
        for statement in _MIGRATIONS[4]:
            connection.execute(statement)
        connection.execute("PRAGMA user_version = 4")
    connection.close()
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,) == (6,)
        assert connection.execute("SELECT key, since FROM rooms").fetchall() == [("#dev", 0)]
        assert connection.execute("SELECT kind FROM events WHERE id = 5").fetchall() == [("leave",)]

        def found(query: str) -> list[int]:
            sql = "SELECT rowid FROM events_text WHERE events_text MATCH ? ORDER BY rowid"
            return [row for (row,) in connection.execute(sql, (query,))]

        assert found("hello") == [1, 2, 4]
        assert found('place : "none" AND hello') == [1]
        assert found('place : "private" AND hello') == [2]
        assert found(f'place : "{place_token("#dev")}" AND hello') == [4]
        connection.execute(
            "INSERT INTO events (at, kind, nickname, text, room, event)"
            " VALUES (6, 'chat', 'cy', 'hello again', '#dev', 6)"
        )
        connection.execute("DELETE FROM events WHERE id = 4")
        assert found(f'place : "{place_token("#dev")}" AND hello') == [6]
        connection.execute("INSERT INTO events_text (events_text) VALUES ('integrity-check')")
    finally:
        connection.close()


def test_place_tokens() -> None:
    """
    A room's place token is r and the hexadecimal UTF-8 of its key, the
    same as the triggers compute in SQL, one token of the index's
    tokenizer whatever the key holds; rows from before rooms have none.
    """
    connection = sqlite3.connect(":memory:")
    upgrade(connection)
    for room in ("#lobby", "#sécret-Ω", '#a"b', "#ŉ"):
        token = place_token(room)
        sql = "SELECT 'r' || lower(hex(?))"
        assert connection.execute(sql, (room,)).fetchone() == (token,)
        assert token[0] == "r" and token[1:].isalnum() and token.isascii()
    assert place_token(None) == "none"
    connection.close()


def test_failed_upgrade_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    An upgrade that fails part-way (a step's last statement fails, or the
    server is killed) leaves the database as it was, at its old version,
    so the next start can upgrade it again: every step runs in one
    transaction, DDL included.
    """
    path = tmp_path / "chat.sqlite3"
    connection = sqlite3.connect(path)
    upgrade(connection)
    broken = {**database._MIGRATIONS}
    broken[SCHEMA_VERSION + 1] = [
        "ALTER TABLE rooms ADD COLUMN extra INTEGER",
        "INSERT INTO no_such_table VALUES (1)",
    ]
    monkeypatch.setattr(database, "_MIGRATIONS", broken)
    monkeypatch.setattr(database, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(sqlite3.OperationalError):
        upgrade(connection)
    columns = [row[1] for row in connection.execute("PRAGMA table_info(rooms)")]
    assert "extra" not in columns
    assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    connection.close()


def test_version_6_adds_the_cluster_numbering(tmp_path: Path) -> None:
    """
    Schema version 6 adds events.seq and events.epoch, empty for the rows
    already stored (a single server never fills them): a database of
    version 5 is upgraded, its rows kept.
    """
    path = tmp_path / "v5.sqlite3"
    connection = sqlite3.connect(path)
    with connection:
        for step in range(1, 6):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
        connection.execute("PRAGMA user_version = 5")
        connection.execute(
            "INSERT INTO events (at, kind, nickname, text, room, event)"
            " VALUES (5, 'chat', 'al', 'hi', '#dev', 9)"
        )
    connection.close()
    open_database(str(path))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone() == (6,)
        assert {"seq", "epoch"} <= set(columns(connection, "events"))
        assert connection.execute("SELECT event, seq, epoch FROM events").fetchall() == [
            (9, None, None)
        ]
    finally:
        connection.close()
