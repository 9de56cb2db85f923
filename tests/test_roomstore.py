"""
Tests for L{twistedchat.roomstore}: persistent rooms written through a
real C{adbapi} pool to a real SQLite file, and read back as start-up
does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest_twisted
from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.logger import LogLevel, capturedLogs, formatEvent

from twistedchat.database import BUSY_TIMEOUT, make_pool, open_database
from twistedchat.roomstore import RoomStore, StoredRoom, load_rooms

#: A persistent room with everything that is kept of one.
OPS = StoredRoom(
    key="#ops",
    name="#Ops",
    topic="Servers and such",
    topic_by="Alice",
    topic_at=1_700_000_000.5,
    topic_locked=True,
    operators=frozenset({"alice", "bob"}),
    bans=frozenset({("account", "mallory"), ("nickname", "troll")}),
    since=1_700_000_000_000_123,
)


def stored_rooms(path: str) -> dict[str, StoredRoom]:
    """
    The rooms stored in the database at C{path}, read as start-up does.
    """
    (rooms,) = open_database(path, load_rooms)
    return rooms


def new_store(
    tmp_path: Path, busy_timeout: float = BUSY_TIMEOUT
) -> tuple[str, ConnectionPool, RoomStore]:
    """
    A new database in C{tmp_path}, a real pool to it whose connection waits
    C{busy_timeout} seconds for a locked database, and a store writing
    through that pool; the test closes the pool.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    pool = make_pool(path, reactor, busy_timeout=busy_timeout)
    return path, pool, RoomStore(pool)


def test_no_rooms_stored(tmp_path: Path) -> None:
    """
    A new database has no persistent rooms.
    """
    assert stored_rooms(str(tmp_path / "chat.sqlite3")) == {}


@pytest_twisted.ensureDeferred
async def test_saved_rooms_come_back(tmp_path: Path) -> None:
    """
    Saved rooms, with their topic, who set it and when, whether it is
    locked, their operators and bans, and where their life starts (the
    last event id before they were created), are read back at start-up,
    by key; a room with only defaults comes back with them.
    """
    path, pool, store = new_store(tmp_path)
    plain = StoredRoom(key="#plain", name="#Plain", operators=frozenset({"carol"}))
    try:
        assert await store.save(OPS) is None
        await store.save(plain)
    finally:
        pool.close()
    assert stored_rooms(path) == {"#ops": OPS, "#plain": plain}


@pytest_twisted.ensureDeferred
async def test_save_replaces_the_room(tmp_path: Path) -> None:
    """
    Saving a room again replaces all that was stored of it: operators and
    bans no longer in it are gone, the topic is the new one; other rooms
    are left alone.
    """
    path, pool, store = new_store(tmp_path)
    other = StoredRoom(key="#other", name="#other", operators=frozenset({"alice"}))
    changed = StoredRoom(
        key="#ops",
        name="#Ops",
        topic="",
        operators=frozenset({"bob"}),
        bans=frozenset({("nickname", "troll")}),
    )
    try:
        await store.save(OPS)
        await store.save(other)
        await store.save(changed)
    finally:
        pool.close()
    assert stored_rooms(path) == {"#ops": changed, "#other": other}


@pytest_twisted.ensureDeferred
async def test_forget_deletes_the_room(tmp_path: Path) -> None:
    """
    forget(key) deletes the room, its operators and its bans, and nothing
    of other rooms; forgetting a room never stored does nothing.
    """
    path, pool, store = new_store(tmp_path)
    other = StoredRoom(key="#other", name="#other", operators=frozenset({"alice"}))
    try:
        await store.save(OPS)
        await store.save(other)
        assert await store.forget("#ops") is None
        await store.forget("#never")
    finally:
        pool.close()
    assert stored_rooms(path) == {"#other": other}
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("SELECT * FROM room_operators").fetchall() == [
            ("#other", "alice")
        ]
        assert connection.execute("SELECT * FROM room_bans").fetchall() == []
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_writes_happen_in_the_order_asked_for(tmp_path: Path) -> None:
    """
    Writes asked for one after the other, without waiting, reach the
    database in that order: save, forget, save leaves the last save; save,
    save, forget leaves nothing.
    """
    path, pool, store = new_store(tmp_path)
    last = StoredRoom(key="#ops", name="#ops", topic="last", operators=frozenset({"carol"}))
    gone = StoredRoom(key="#gone", name="#gone", operators=frozenset({"carol"}))
    try:
        await gatherResults(
            [
                store.save(OPS),
                store.save(gone),
                store.forget("#ops"),
                store.save(gone),
                store.save(last),
                store.forget("#gone"),
            ]
        )
    finally:
        pool.close()
    assert stored_rooms(path) == {"#ops": last}


@pytest_twisted.ensureDeferred
async def test_failed_write_is_logged_and_does_not_fail(tmp_path: Path) -> None:
    """
    A write that cannot be done (another connection holds the write lock
    for longer than the busy timeout) is logged with the room's key and
    the reason, and its Deferred fires with None all the same; nothing is
    stored.
    """
    path, pool, store = new_store(tmp_path, busy_timeout=0.01)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with capturedLogs() as events:
            assert await store.save(OPS) is None
            assert await store.forget("#ops") is None
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        pool.close()
    failures = [event for event in events if event["log_level"] == LogLevel.critical]
    assert [formatEvent(event) for event in failures] == [
        "Could not save the room #ops",
        "Could not forget the room #ops",
    ]
    assert all("database is locked" in str(event["log_failure"].value) for event in failures)
    assert stored_rooms(path) == {}


@pytest_twisted.ensureDeferred
async def test_without_a_database_nothing_is_kept() -> None:
    """
    With no pool (--database :memory:), save and forget do nothing and
    fire at once with None.
    """
    store = RoomStore(None)
    saved = store.save(OPS)
    forgotten = store.forget("#ops")
    assert saved.called and forgotten.called
    assert await saved is None
    assert await forgotten is None
