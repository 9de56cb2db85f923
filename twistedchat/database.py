"""
The database: SQLite's schema and its upgrades, the start-up check, and
the C{adbapi} pool that every later access goes through; and, for a
C{--database} that is a URL (C{postgresql://...}), the same through
L{twistedchat.postgres}. L{open_database} and L{make_pool} take either.

Each query has two texts, SQLite's and PostgreSQL's (a L{Query}); the code
that runs it picks the one of the L{Dialect} of its connection or pool
(L{dialect_of}), so one code path serves both.

Start-up opens the database synchronously (L{open_database}), before the
reactor runs: it checks the file, upgrades the schema and reads what the
server keeps in memory, and stops start-up with L{DatabaseError} (one line
naming the file) if the file cannot be used. While the server runs, every
query goes through Twisted's C{adbapi} (a thread pool), so the reactor
never waits for the disk.

The database holds private messages and password hashes, so its file and
SQLite's C{-wal} and C{-shm} files beside it are readable and writable by
the server's user only (mode C{0600}, whatever the umask): L{protect}
creates the file with that mode before SQLite opens it, and SQLite's unix
VFS gives the C{-wal} and C{-shm} files it creates the mode of the database
file. An existing file readable by other users is tightened, with a
warning in the log.

A connection that finds the database locked by another writer (another
process, or a backup) waits up to L{BUSY_TIMEOUT} seconds for it; only
C{adbapi}'s pool threads ever wait, never the reactor.
"""

from __future__ import annotations

import enum
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.enterprise.adbapi import ConnectionPool
from twisted.logger import Logger

#: The schema this code writes; older databases are upgraded on start-up
#: (C{PRAGMA user_version} holds the version of a database).
SCHEMA_VERSION = 6

#: Seconds a connection waits for another writer's lock before a query
#: fails with "database is locked" (C{sqlite3.connect}'s C{timeout}, that
#: is SQLite's C{busy_timeout}).
BUSY_TIMEOUT = 5.0

#: The mode of the database file and of its C{-wal} and C{-shm} files.
FILE_MODE = 0o600

_log = Logger()

#: The place token of private messages in the full-text index (schema
#: version 5): see L{place_token}.
PRIVATE_PLACE = "private"

#: The SQL expression of the place token of an events row named C{row}
#: in the full-text index (schema version 5): see L{place_token}.
_PLACE = (
    f"CASE WHEN {{row}}.kind = 'private' THEN '{PRIVATE_PLACE}'"
    " WHEN {row}.room IS NULL THEN 'none'"
    " ELSE 'r' || lower(hex({row}.room)) END"
)


def place_token(room: str | None) -> str:
    """
    Return the token that the full-text index (C{events_text}, schema
    version 5) holds, in its C{place} column, for the chat lines and
    actions of the room whose key is C{room}: C{r} followed by the
    hexadecimal UTF-8 of the key, one token whatever characters the key
    has; or, for C{None}, C{none}, the token of the rows stored before
    rooms. A private message's is L{PRIVATE_PLACE}, which no room's can
    be.
    """
    if room is None:
        return "none"
    return "r" + room.encode("utf-8").hex()


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
    3: [
        # Rooms. Events of kinds topic (nickname set the topic to text),
        # kick (nickname, an operator, removed target for the reason text)
        # and mode (nickname, an operator, made the change text, such as
        # +o, with target, or with none) are stored from this version on.
        # room: the room key (nickname_key of its name); NULL for a private
        # message, and for an event stored before rooms (the default room's).
        "ALTER TABLE events ADD COLUMN room TEXT",
        "CREATE INDEX events_room ON events (room, id)",
        # Persistent rooms: those whose operators include a registered
        # account keep their topic, operators and bans across restarts.
        """CREATE TABLE rooms (
            key TEXT PRIMARY KEY,                 -- twistedchat.nicknames.nickname_key of name
            name TEXT NOT NULL,                   -- as created
            topic TEXT NOT NULL DEFAULT '',       -- '' for none
            topic_by TEXT NOT NULL DEFAULT '',    -- nickname that set it
            topic_at REAL NOT NULL DEFAULT 0,     -- seconds since the epoch, UTC
            topic_locked INTEGER NOT NULL DEFAULT 0  -- 1: only operators set it (+t)
        )""",
        """CREATE TABLE room_operators (
            room_key TEXT NOT NULL,     -- rooms.key
            account_key TEXT NOT NULL,  -- accounts.nickname_key
            PRIMARY KEY (room_key, account_key)
        )""",
        """CREATE TABLE room_bans (
            room_key TEXT NOT NULL,  -- rooms.key
            kind TEXT NOT NULL CHECK (kind IN ('account', 'nickname')),
            key TEXT NOT NULL,       -- an account's nickname_key, a nickname's nickname_skeleton
            PRIMARY KEY (room_key, kind, key)
        )""",
    ],
    4: [
        # Event ids (twistedchat.events.Event.id): one per event, shared by
        # its rows when it happened in several rooms (a quit, a nickname
        # change), larger for later events; rows stored before are
        # numbered by their row id. The index serves "room R, event id
        # below X, newest first" (twistedchat.history.History.page).
        "ALTER TABLE events ADD COLUMN event INTEGER",
        "UPDATE events SET event = id",
        "CREATE INDEX events_room_event ON events (room, event)",
        # The largest event id ever stored, so that numbering goes on
        # after it even once pruning has deleted every row.
        "CREATE TABLE last_event (id INTEGER NOT NULL)",
        "INSERT INTO last_event SELECT coalesce(max(event), 0) FROM events",
        """CREATE TRIGGER events_last_event AFTER INSERT ON events
            WHEN new.event > (SELECT id FROM last_event)
            BEGIN UPDATE last_event SET id = new.event; END""",
        # Full-text search (SQLite FTS5) over what was said: the text of
        # chat lines, actions and private messages, not of notices. An
        # external-content table: the text is stored once, in events, and
        # the triggers keep the index in step as rows are added and pruned
        # (rows are never updated).
        """CREATE VIRTUAL TABLE events_text USING fts5(
            text, content='events', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TRIGGER events_text_insert AFTER INSERT ON events
            WHEN new.kind IN ('chat', 'action', 'private')
            BEGIN INSERT INTO events_text (rowid, text) VALUES (new.id, new.text); END""",
        """CREATE TRIGGER events_text_delete AFTER DELETE ON events
            WHEN old.kind IN ('chat', 'action', 'private')
            BEGIN
                INSERT INTO events_text (events_text, rowid, text)
                VALUES ('delete', old.id, old.text);
            END""",
        """INSERT INTO events_text (rowid, text)
            SELECT id, text FROM events WHERE kind IN ('chat', 'action', 'private')""",
    ],
    5: [
        # A quit (twistedchat.events.Left with no room) is stored, once in
        # each room its participant was in, as kind quit from this version
        # on; before, it was a leave, as a part is, and stays one.
        #
        # Where a kept room's current life began: the last event id before
        # it was created (twistedchat.rooms.Room.since). Its pages and
        # searches show nothing older, so that a room of the same name that
        # vanished before does not hand its lines on.
        "ALTER TABLE rooms ADD COLUMN since INTEGER NOT NULL DEFAULT 0",
        # The full-text index again, contentless now, with the place of
        # each row in a column of its own, so that a search of one room
        # finds only that room's rows in the index instead of reading
        # every match of every room: place is the token 'r' followed by the
        # hexadecimal UTF-8 of the room key (one token, whatever the key
        # holds; lower case, as the tokenizer folds it), 'none' for a chat
        # line or action stored before rooms (the default room's), and
        # 'private' for a private message. The triggers compute it from the
        # row, the same way when the row is added and when it is deleted.
        "DROP TRIGGER events_text_insert",
        "DROP TRIGGER events_text_delete",
        "DROP TABLE events_text",
        """CREATE VIRTUAL TABLE events_text USING fts5(
            text, place, content='',
            tokenize='unicode61 remove_diacritics 2'
        )""",
        f"""CREATE TRIGGER events_text_insert AFTER INSERT ON events
            WHEN new.kind IN ('chat', 'action', 'private')
            BEGIN
                INSERT INTO events_text (rowid, text, place)
                VALUES (new.id, new.text, {_PLACE.format(row="new")});
            END""",
        f"""CREATE TRIGGER events_text_delete AFTER DELETE ON events
            WHEN old.kind IN ('chat', 'action', 'private')
            BEGIN
                INSERT INTO events_text (events_text, rowid, text, place)
                VALUES ('delete', old.id, old.text, {_PLACE.format(row="old")});
            END""",
        f"""INSERT INTO events_text (rowid, text, place)
            SELECT id, text, {_PLACE.format(row="events")} FROM events
            WHERE kind IN ('chat', 'action', 'private')""",
    ],
    6: [
        # Where a cluster numbered the row (docs/cluster.md, section 11.2):
        # its room's sequence number and the epoch it was numbered in.
        # A single server never fills them; they are here so that a
        # version number names one schema in SQLite and PostgreSQL.
        "ALTER TABLE events ADD COLUMN seq INTEGER",
        "ALTER TABLE events ADD COLUMN epoch TEXT",
    ],
}


class Dialect(enum.Enum):
    """
    The SQL a connection speaks: SQLite's (C{?} and C{:name} parameters)
    or PostgreSQL's through psycopg (C{%s} and C{%(name)s}).
    """

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class Query:
    """
    One query in both dialects: the same columns, and the same parameters
    in the same order (or by the same names).
    """

    sqlite: str
    postgresql: str

    def text(self, dialect: Dialect) -> str:
        """
        Return the text of the query in C{dialect}.
        """
        return self.sqlite if dialect is Dialect.SQLITE else self.postgresql


def dialect_of(database: Any) -> Dialect:
    """
    Return the dialect of C{database}: an C{adbapi} pool from L{make_pool},
    or a connection a start-up reader is given (C{sqlite3}'s, or
    psycopg's).
    """
    if isinstance(database, ConnectionPool):
        return Dialect.SQLITE if database.dbapiName == "sqlite3" else Dialect.POSTGRESQL
    return Dialect.SQLITE if isinstance(database, sqlite3.Connection) else Dialect.POSTGRESQL


def is_url(database: str) -> bool:
    """
    Return whether C{database} (the C{--database} value) is a PostgreSQL
    URL (C{postgresql://} or C{postgres://}) rather than a SQLite file.
    """
    return re.match(r"postgres(ql)?://", database) is not None


def describe(database: str) -> str:
    """
    Return how messages name C{database}: a SQLite file as given, a
    PostgreSQL URL as C{postgresql://HOST:PORT/DB}, without its user or
    password.
    """
    if not is_url(database):
        return database
    from twistedchat import postgres

    return postgres.describe(database)


def is_duplicate(error: BaseException) -> bool:
    """
    Return whether C{error} is a database's refusal of a row whose key is
    taken (an integrity error, in SQLite or PostgreSQL).
    """
    if isinstance(error, sqlite3.IntegrityError):
        return True
    module = type(error).__module__ or ""
    if module.startswith("psycopg"):
        import psycopg

        return isinstance(error, psycopg.IntegrityError)
    return False


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
    version: int
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"schema version {version} is newer than this twistedchat's ({SCHEMA_VERSION})"
        )
    with connection:
        # One transaction for every step: sqlite3 opens none by itself
        # before DDL, and a half-done upgrade would not start again.
        connection.execute("BEGIN")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {step}")
    return version


def protect(path: str) -> None:
    """
    Make sure the database file at C{path} exists and that only its owner
    can read or write it, before SQLite opens it.

    A missing file is created empty with mode L{FILE_MODE} (C{0600}), which
    SQLite then gives to the C{-wal} and C{-shm} files it creates beside
    it. An existing database file, C{-wal} or C{-shm} file that other users
    may read or write loses those permissions (the owner's are kept), and
    a warning naming it and both modes is logged: it holds private
    messages and password hashes. If that C{chmod} is not allowed (the file
    is someone else's), a warning is logged and the file is used as it is.
    C{":memory:"} and C{""} (SQLite's private temporary database) touch
    nothing on disk.

    @param path: the database file's name, as given to C{sqlite3.connect}.
    @raise OSError: the file cannot be created or opened (for example, its
        directory does not exist).
    """
    if path in (":memory:", ""):
        return
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE))
    for name in (path, path + "-wal", path + "-shm"):
        try:
            mode = os.stat(name).st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            try:
                os.chmod(name, mode & 0o700)
            except OSError as e:
                _log.warn(
                    "{name} can be read or written by other users (mode {mode:04o}),"
                    " and cannot be changed: {error}",
                    name=name,
                    mode=mode,
                    error=e.strerror,
                )
            else:
                _log.warn(
                    "{name} could be read or written by other users (mode {mode:04o});"
                    " it is now mode {new:04o}",
                    name=name,
                    mode=mode,
                    new=mode & 0o700,
                )


def open_database(path: str, *readers: Callable[[Any], Any]) -> list[Any]:
    """
    Check and upgrade the database at C{path}, synchronously (at start-up,
    before the reactor runs), and return what each of C{readers} reads from
    it. The file is created, or its mode tightened, by L{protect} first.

    A PostgreSQL URL (L{is_url}) is opened by
    L{twistedchat.postgres.open_database} instead, under an advisory lock.

    @param path: a SQLite file, C{:memory:}, or a URL
        C{postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DB}.
    @param readers: functions that read what the server keeps in memory
        (recent history, accounts) from an open connection (C{sqlite3}'s
        or psycopg's: both have C{execute}; see L{dialect_of}).
    @raise DatabaseError: the file cannot be opened, is not a database, is
        corrupt or is too new; PostgreSQL cannot be reached, the database
        does not exist or is too new; the message is one line naming the
        file, or the server and database (never the password).
    """
    if is_url(path):
        from twistedchat import postgres

        return postgres.open_database(path, *readers)
    try:
        protect(path)
    except OSError as e:
        raise DatabaseError(f"cannot use the database {path}: {e.strerror}") from None
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
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


def make_pool(path: str, reactor: Any = None, busy_timeout: float = BUSY_TIMEOUT) -> ConnectionPool:
    """
    Return an C{adbapi} pool with one connection (SQLite has one writer) to
    the database at C{path}, in WAL mode. The file is created, or its mode
    tightened, by L{protect} first.

    For a PostgreSQL URL (L{is_url}), the pool of
    L{twistedchat.postgres.make_pool}: two connections that reconnect
    after a failure; C{busy_timeout} does not apply.

    @param busy_timeout: seconds the pool's thread waits for another
        writer's lock before a query fails with "database is locked".
    @raise DatabaseError: the file cannot be created or opened; the message
        is one line naming the file.
    """
    if is_url(path):
        from twistedchat import postgres

        return postgres.make_pool(path, reactor)
    try:
        protect(path)
    except OSError as e:
        raise DatabaseError(f"cannot use the database {path}: {e.strerror}") from None
    return ConnectionPool(
        "sqlite3",
        path,
        timeout=busy_timeout,
        check_same_thread=False,
        cp_min=1,
        cp_max=1,
        cp_openfun=configure,
        cp_reactor=reactor,
    )
