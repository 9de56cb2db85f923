"""
Persistent rooms: the rooms whose operators include a registered account
keep their topic, operators and bans across restarts.

They are read at start-up (L{load_rooms}, through
L{twistedchat.database.open_database}), like the accounts. While the
server runs, L{RoomStore} writes each change through the database's
C{adbapi} pool, so the reactor never waits for the disk. Each write
starts once the one before has ended (SQLite's pool has one connection
anyway; PostgreSQL's has two): writes reach the database in the order they
were asked for, and the last one asked for is the one that stays.

A write that fails (the database locked by another process for longer
than L{twistedchat.database.BUSY_TIMEOUT}, a full disk) is logged and not
retried: the room goes on in memory as it is, and the next change to it
writes all of it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.logger import Logger

from twistedchat import postgres
from twistedchat.database import Dialect, Query, dialect_of

_LOAD_OPERATORS = Query(
    "SELECT room_key, account_key FROM room_operators", postgres.LOAD_ROOM_OPERATORS
)
_LOAD_BANS = Query("SELECT room_key, kind, key FROM room_bans", postgres.LOAD_ROOM_BANS)
_LOAD_ROOMS = Query(
    "SELECT key, name, topic, topic_by, topic_at, topic_locked, since FROM rooms",
    postgres.LOAD_ROOMS,
)
_DELETE_ROOM = Query("DELETE FROM rooms WHERE key = ?", postgres.DELETE_ROOM)
_DELETE_OPERATORS = Query(
    "DELETE FROM room_operators WHERE room_key = ?", postgres.DELETE_ROOM_OPERATORS
)
_DELETE_BANS = Query("DELETE FROM room_bans WHERE room_key = ?", postgres.DELETE_ROOM_BANS)
_INSERT_ROOM = Query(
    "INSERT INTO rooms (key, name, topic, topic_by, topic_at, topic_locked, since)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)",
    postgres.INSERT_ROOM,
)
_INSERT_OPERATOR = Query(
    "INSERT INTO room_operators (room_key, account_key) VALUES (?, ?)",
    postgres.INSERT_ROOM_OPERATOR,
)
_INSERT_BAN = Query(
    "INSERT INTO room_bans (room_key, kind, key) VALUES (?, ?, ?)", postgres.INSERT_ROOM_BAN
)


@dataclass(frozen=True)
class StoredRoom:
    """
    What is kept of a persistent room.

    @ivar key: L{twistedchat.nicknames.nickname_key} of C{name}.
    @ivar name: the room's name, as created (C{#lobby}).
    @ivar topic: the topic; C{""} for none.
    @ivar topic_by: the nickname of who set the topic.
    @ivar topic_at: when the topic was set, in seconds since the epoch
        (UTC); C{0.0} if never.
    @ivar topic_locked: whether only operators may set the topic (mode
        C{+t}).
    @ivar operators: the keys of the accounts that are the room's
        operators.
    @ivar bans: who is banned, as C{(kind, key)}: kind C{"account"} with an
        account's key, or C{"nickname"} with a nickname's skeleton.
    @ivar since: the last event id recorded before the room was created
        (L{twistedchat.rooms.Room.since}); C{0} for a room stored before
        schema version 5, whose history then reaches back to the first
        event of its key.
    """

    key: str
    name: str
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    topic_locked: bool = False
    operators: frozenset[str] = frozenset()
    bans: frozenset[tuple[str, str]] = frozenset()
    since: int = 0


def load_rooms(connection: Any) -> dict[str, StoredRoom]:
    """
    Read every persistent room, by key (at start-up).

    @param connection: an open C{sqlite3} or psycopg connection to a
        database of the current schema (see
        L{twistedchat.database.open_database}).
    """
    dialect = dialect_of(connection)
    operators: dict[str, set[str]] = {}
    for room_key, account_key in connection.execute(_LOAD_OPERATORS.text(dialect)):
        operators.setdefault(room_key, set()).add(account_key)
    bans: dict[str, set[tuple[str, str]]] = {}
    for room_key, kind, key in connection.execute(_LOAD_BANS.text(dialect)):
        bans.setdefault(room_key, set()).add((kind, key))
    return {
        key: StoredRoom(
            key=key,
            name=name,
            topic=topic,
            topic_by=topic_by,
            topic_at=topic_at,
            topic_locked=bool(topic_locked),
            operators=frozenset(operators.get(key, ())),
            bans=frozenset(bans.get(key, ())),
            since=since,
        )
        for key, name, topic, topic_by, topic_at, topic_locked, since in connection.execute(
            _LOAD_ROOMS.text(dialect)
        )
    }


class RoomStore:
    """
    Writes the persistent rooms to the database, each change in a
    transaction of its own, in the order asked for (see the module's
    docstring).
    """

    _log = Logger()

    def __init__(self, pool: ConnectionPool | None) -> None:
        """
        @param pool: the pool from L{twistedchat.database.make_pool}, whose
            one connection makes writes happen in the order asked for; or
            C{None} to keep nothing (C{--database :memory:}).
        """
        self._pool = pool
        self._dialect = dialect_of(pool) if pool is not None else Dialect.SQLITE
        # One write at a time, in the order asked for.
        self._writing = DeferredLock()

    def save(self, room: StoredRoom) -> Deferred[None]:
        """
        Replace what is stored of C{room} (its row, operators and bans) with
        C{room}, in one transaction, in the pool's thread.

        @return: fires once it is written, or could not be; never fails (a
            failure is logged).
        """
        if self._pool is None:
            return succeed(None)
        d: Deferred[None] = self._writing.run(self._pool.runInteraction, _save, self._dialect, room)
        d.addErrback(self._failed, "save", room.key)
        return d

    def forget(self, key: str) -> Deferred[None]:
        """
        Delete what is stored of the room whose key is C{key} (it is no
        longer persistent, or no longer exists), in one transaction, in the
        pool's thread. A room not stored is ignored.

        @return: fires once it is deleted, or could not be; never fails (a
            failure is logged).
        """
        if self._pool is None:
            return succeed(None)
        d: Deferred[None] = self._writing.run(
            self._pool.runInteraction, _forget, self._dialect, key
        )
        d.addErrback(self._failed, "forget", key)
        return d

    def _failed(self, failure: Any, what: str, key: str) -> None:
        self._log.failure("Could not {what} the room {key}", failure, what=what, key=key)


def _forget(cursor: Any, dialect: Dialect, key: str) -> None:
    """
    Delete the room whose key is C{key}, its operators and its bans (runs in
    a pool thread, in the transaction C{runInteraction} commits).
    """
    cursor.execute(_DELETE_ROOM.text(dialect), (key,))
    cursor.execute(_DELETE_OPERATORS.text(dialect), (key,))
    cursor.execute(_DELETE_BANS.text(dialect), (key,))


def _save(cursor: Any, dialect: Dialect, room: StoredRoom) -> None:
    """
    Replace the stored room C{room}, its operators and its bans (runs in a
    pool thread, in the transaction C{runInteraction} commits).
    """
    _forget(cursor, dialect, room.key)
    cursor.execute(
        _INSERT_ROOM.text(dialect),
        (
            room.key,
            room.name,
            room.topic,
            room.topic_by,
            room.topic_at,
            # An integer for SQLite, as ever; a boolean for PostgreSQL.
            int(room.topic_locked) if dialect is Dialect.SQLITE else room.topic_locked,
            room.since,
        ),
    )
    cursor.executemany(
        _INSERT_OPERATOR.text(dialect),
        [(room.key, account) for account in sorted(room.operators)],
    )
    cursor.executemany(
        _INSERT_BAN.text(dialect),
        [(room.key, kind, key) for kind, key in sorted(room.bans)],
    )
