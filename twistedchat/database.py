"""
The SQLite database: schema and its upgrades, the start-up check, and the
C{adbapi} pool that every later access goes through.

Start-up opens the database synchronously (L{open_database}), before the
reactor runs: it checks the file, upgrades the schema and reads what the
server keeps in memory, and stops start-up with L{DatabaseError} (one line
naming the file) if the file cannot be used. While the server runs, every
query goes through Twisted's C{adbapi} (a thread pool), so the reactor
never waits for the disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.enterprise.adbapi import ConnectionPool

#: The schema this code writes; older databases are upgraded on start-up
#: (C{PRAGMA user_version} holds the version of a database).
SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,        -- seconds since the epoch, UTC
            kind TEXT NOT NULL,      -- chat, action, join, leave, nick, private
            nickname TEXT NOT NULL,  -- who did it
            target TEXT,             -- new nickname, or private message recipient
            text TEXT                -- chat text, action, or leave reason
        )""",
        "CREATE INDEX events_at ON events (at)",
    ],
    2: [
        """CREATE TABLE accounts (
            nickname_key TEXT PRIMARY KEY,  -- twistedchat.nicknames.nickname_key
            nickname TEXT NOT NULL,         -- as registered
            password_hash TEXT NOT NULL,    -- Argon2id, PHC string format
            created_at REAL NOT NULL        -- seconds since the epoch, UTC
        )""",
    ],
}


class DatabaseError(Exception):
    """
    The database cannot be used; C{str()} is one line naming the
    file.
    """


def upgrade(connection: sqlite3.Connection) -> int:
    """
    Bring the schema of C{connection}'s database up to L{SCHEMA_VERSION}.

    @return: the version the database had.
    @raise DatabaseError: the database is newer than this code.
    """
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"schema version {version} is newer than this twistedchat's ({SCHEMA_VERSION})"
        )
    with connection:
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {step}")
    return version


def open_database(path: str, *readers: Callable[[sqlite3.Connection], Any]) -> list[Any]:
    """
    Check and upgrade the database at C{path}, synchronously (at start-up,
    before the reactor runs), and return what each of C{readers} reads from
    it.

    @param readers: functions that read what the server keeps in memory
        (recent history, accounts) from an open connection.
    @raise DatabaseError: the file cannot be opened, is not a database, is
        corrupt or is too new; the message is one line naming the file.
    """
    try:
        connection = sqlite3.connect(path)
        try:
            (check,) = connection.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            configure(connection)
            return [read(connection) for read in readers]
        finally:
            connection.close()
    except (sqlite3.Error, DatabaseError) as e:
        raise DatabaseError(f"cannot use the database {path}: {e}") from None


def configure(connection: sqlite3.Connection) -> None:
    """
    Set up every new connection: WAL journal, and the schema (which an
    in-memory database only gets here).
    """
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    upgrade(connection)


def make_pool(path: str, reactor: Any = None) -> ConnectionPool:
    """
    Return an C{adbapi} pool with one connection (SQLite has one writer) to
    the database at C{path}, in WAL mode.
    """
    return ConnectionPool(
        "sqlite3",
        path,
        check_same_thread=False,
        cp_min=1,
        cp_max=1,
        cp_openfun=configure,
        cp_reactor=reactor,
    )
