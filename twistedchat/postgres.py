"""
PostgreSQL (C{--database postgresql://...}): its schema and their
upgrades, the start-up check, the C{adbapi} pool, and the PostgreSQL texts
of the queries that L{twistedchat.history}, L{twistedchat.accounts} and
L{twistedchat.roomstore} run (each beside its SQLite text, in a
L{twistedchat.database.Query}); docs/cluster.md, section 13.

The schema versions are SQLite's (L{twistedchat.database.SCHEMA_VERSION}),
step for step, so that a version number names the same tables on both; a
table C{schema_version} plays SQLite's C{PRAGMA user_version}. What
differs: full-text search is a generated C{tsvector} column with a GIN
index (C{'simple'} configuration, accents removed by C{unaccent}) instead
of FTS5; C{last_event} is kept by the writer (L{UPDATE_LAST_EVENT}, in the
insert's transaction) instead of a trigger; and C{(room, event)} is unique
(C{NULLS NOT DISTINCT}, PostgreSQL 15), so that a batch that was committed
but whose reply was lost can be written again without duplicates
(L{INSERT_EVENTS}, C{ON CONFLICT DO NOTHING}).

Start-up (L{open_database}) runs synchronously, before the reactor: it
connects, takes an advisory lock (L{LOCK}) so that nodes starting together
do not upgrade the schema twice, upgrades in one transaction, runs the
start-up readers, and lets go. Any failure is a
L{twistedchat.database.DatabaseError} of one line naming the database by
host, port and name, never by its password (L{describe}).

psycopg is imported only here, and only when a PostgreSQL URL is given, so
a server with SQLite does not need it installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.enterprise.adbapi import ConnectionPool

from twistedchat.database import SCHEMA_VERSION, DatabaseError

#: The key of the advisory lock held while the schema is checked and
#: upgraded at start-up (C{pg_advisory_lock}).
LOCK = 7423001

#: Seconds to wait for a connection before giving up (libpq's
#: C{connect_timeout}).
CONNECT_TIMEOUT = 5

#: Connections of the pool: C{History} writes one batch at a time, in
#: order, and the second connection lets a page or a search run beside a
#: write. After a PostgreSQL restart each connection fails its next
#: interaction once, and works again after (C{cp_reconnect}).
POOL_SIZE = 2


def describe(url: str) -> str:
    """
    Return C{url} as C{postgresql://HOST:PORT/DB}, for messages: without
    user, password or options (the port is 5432 unless given).
    """
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"postgresql://{host}:{port}/{unquote(parts.path.lstrip('/'))}"


def first_line(error: BaseException, url: str = "") -> str:
    """
    Return the first line of C{error}'s message (psycopg's can be two),
    with the password of C{url}, should it appear, hidden.
    """
    lines = str(error).strip().splitlines()
    line = lines[0].strip() if lines else type(error).__name__
    password = urlsplit(url).password if url else None
    if password:
        line = line.replace(password, "***").replace(unquote(password), "***")
    return line


def _error(url: str, error: BaseException) -> DatabaseError:
    return DatabaseError(f"cannot use the database {describe(url)}: {first_line(error, url)}")


#: The migrations, by schema version: what SQLite's do
#: (L{twistedchat.database._MIGRATIONS}), in PostgreSQL's terms.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,  -- seconds since the epoch, UTC
            kind TEXT NOT NULL,            -- chat, action, join, leave, nick, private, ...
            nickname TEXT NOT NULL,        -- who did it
            target TEXT,                   -- new nickname, or private message recipient
            text TEXT                      -- chat text, action, or leave reason
        )""",
        "CREATE INDEX events_at ON events (at)",
    ],
    2: [
        """CREATE TABLE accounts (
            nickname_key TEXT PRIMARY KEY,    -- twistedchat.nicknames.nickname_key
            nickname TEXT NOT NULL,           -- as registered
            password_hash TEXT NOT NULL,      -- Argon2id, PHC string format
            created_at DOUBLE PRECISION NOT NULL  -- seconds since the epoch, UTC
        )""",
    ],
    3: [
        "ALTER TABLE events ADD COLUMN room TEXT",
        "CREATE INDEX events_room ON events (room, id)",
        """CREATE TABLE rooms (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            topic TEXT NOT NULL DEFAULT '',
            topic_by TEXT NOT NULL DEFAULT '',
            topic_at DOUBLE PRECISION NOT NULL DEFAULT 0,
            topic_locked BOOLEAN NOT NULL DEFAULT false
        )""",
        """CREATE TABLE room_operators (
            room_key TEXT NOT NULL,
            account_key TEXT NOT NULL,
            PRIMARY KEY (room_key, account_key)
        )""",
        """CREATE TABLE room_bans (
            room_key TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('account', 'nickname')),
            key TEXT NOT NULL,
            PRIMARY KEY (room_key, kind, key)
        )""",
    ],
    4: [
        "ALTER TABLE events ADD COLUMN event BIGINT",
        "UPDATE events SET event = id",
        "CREATE INDEX events_room_event ON events (room, event)",
        # Kept by the writer (UPDATE_LAST_EVENT), not by a trigger.
        "CREATE TABLE last_event (id BIGINT NOT NULL)",
        "INSERT INTO last_event SELECT coalesce(max(event), 0) FROM events",
        # Full-text search over what was said: words lower-cased, accents
        # removed, neither stemmed nor dropped (as FTS5's unicode61
        # remove_diacritics 2). unaccent() is only STABLE; a generated
        # column needs an IMMUTABLE expression, hence the wrapper naming
        # its dictionary.
        "CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public",
        """CREATE FUNCTION chat_unaccent(text) RETURNS text
            LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
            AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$""",
        """ALTER TABLE events ADD COLUMN search tsvector GENERATED ALWAYS AS (
            CASE WHEN kind IN ('chat', 'action', 'private')
                THEN to_tsvector('simple', chat_unaccent(coalesce(text, ''))) END
        ) STORED""",
        "CREATE INDEX events_search ON events USING gin (search)",
    ],
    5: [
        "ALTER TABLE rooms ADD COLUMN since BIGINT NOT NULL DEFAULT 0",
        # One row per room and event, a private message's (room NULL)
        # included: a batch written twice adds nothing (INSERT_EVENTS).
        "DROP INDEX events_room_event",
        "CREATE UNIQUE INDEX events_room_event ON events (room, event) NULLS NOT DISTINCT",
    ],
    6: [
        # Where a cluster numbered the row: the room's sequence number and
        # the Redis epoch it was numbered in (NULL for a single server, and
        # for rows numbered while a node was detached); for gap-filling.
        "ALTER TABLE events ADD COLUMN seq BIGINT",
        "ALTER TABLE events ADD COLUMN epoch TEXT",
        "CREATE INDEX events_gap ON events (room, epoch, seq) WHERE seq IS NOT NULL",
    ],
}


def upgrade(connection: Any) -> int:
    """
    Bring the schema of the psycopg C{connection}'s database up to
    L{SCHEMA_VERSION}, in the transaction it has open (the caller
    commits).

    @return: the version the database had.
    @raise DatabaseError: the database is newer than this code.
    @raise psycopg.Error: a statement failed.
    """
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    version = int(row[0]) if row and row[0] is not None else 0
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"schema version {version} is newer than this twistedchat's ({SCHEMA_VERSION})"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[step]:
            connection.execute(statement)
    if version < SCHEMA_VERSION:
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
    return version


def open_database(url: str, *readers: Callable[[Any], Any]) -> list[Any]:
    """
    Check and upgrade the PostgreSQL database at C{url}, synchronously (at
    start-up, before the reactor runs), under the advisory lock L{LOCK},
    and return what each of C{readers} reads from it (each is given the
    psycopg connection, in one transaction).

    @raise DatabaseError: it cannot be reached, does not exist, is newer
        than this code, or the C{unaccent} extension cannot be created;
        the message is one line naming the database (L{describe}), never
        its password.
    """
    try:
        import psycopg
    except ImportError as e:
        raise _error(url, e) from None
    try:
        connection = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT)
        try:
            # A session lock: it outlives the transactions below.
            connection.execute(f"SELECT pg_advisory_lock({LOCK})")
            try:
                upgrade(connection)
                connection.commit()
                return [read(connection) for read in readers]
            finally:
                if not connection.broken:
                    connection.rollback()
                    connection.execute(f"SELECT pg_advisory_unlock({LOCK})")
                    connection.commit()
        finally:
            connection.close()
    except (psycopg.Error, DatabaseError) as e:
        raise _error(url, e) from None


def make_pool(url: str, reactor: Any = None) -> ConnectionPool:
    """
    Return an C{adbapi} pool of L{POOL_SIZE} psycopg connections to the
    database at C{url}, which reconnect after a failure (C{cp_reconnect}).
    Nothing connects until the first query.
    """
    return ConnectionPool(
        "psycopg",
        url,
        connect_timeout=CONNECT_TIMEOUT,
        cp_min=1,
        cp_max=POOL_SIZE,
        cp_reconnect=True,
        cp_reactor=reactor,
    )


def check(url: str) -> None:
    """
    Connect to the database at C{url} on a new connection and run
    C{SELECT 1} (for C{/healthz}; blocks, so run it in a thread).

    @raise DatabaseError: it does not answer; the message is the first
        line of psycopg's, without the password.
    """
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as connection:
            connection.execute("SELECT 1").fetchone()
    except psycopg.Error as e:
        raise DatabaseError(first_line(e, url)) from None


# The PostgreSQL texts of the queries; their SQLite texts are beside
# them where they are used, and both are explained there.

#: twistedchat.history.load_recent.
LOAD_RECENT = """
WITH placed AS (
    SELECT id, at, kind, nickname, target, text, event,
        coalesce(event, id) AS position,
        CASE WHEN kind = 'private' THEN NULL
            ELSE coalesce(room, %(default_room)s::text) END AS room,
        kind IN ('chat', 'action', 'private') AS said
    FROM events
),
lines AS (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY room ORDER BY position DESC, id DESC) AS newest
        FROM placed WHERE said
    ) AS ranked WHERE newest <= %(keep)s
),
starts AS (
    SELECT room, min(position) AS after FROM lines GROUP BY room HAVING count(*) = %(keep)s
),
notices AS (
    SELECT * FROM (
        SELECT placed.*,
            ROW_NUMBER() OVER (PARTITION BY placed.room ORDER BY position DESC, id DESC) AS newest
        FROM placed LEFT JOIN starts ON starts.room = placed.room
        WHERE NOT said AND position > coalesce(starts.after, 0)
    ) AS ranked WHERE newest <= %(keep)s
)
SELECT at, kind, nickname, target, text, room, event FROM (
    SELECT position, id, at, kind, nickname, target, text, room, event FROM lines
    UNION ALL
    SELECT position, id, at, kind, nickname, target, text, room, event FROM notices
) AS kept
ORDER BY position, id
"""

#: twistedchat.history.last_event_id.
LAST_EVENT_ID = "SELECT max(id) FROM last_event"

#: twistedchat.history: a batch of rows; one already stored (the same room
#: and event) is left as it is.
INSERT_EVENTS = (
    "INSERT INTO events (at, kind, nickname, target, text, room, event, seq, epoch)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)

#: twistedchat.history: the largest event id stored, kept by the writer.
UPDATE_LAST_EVENT = "UPDATE last_event SET id = GREATEST(id, %s)"

#: twistedchat.history.History.prune.
PRUNE = "DELETE FROM events WHERE at < %s"

#: twistedchat.history.History.page.
PAGE = """
SELECT at, kind, nickname, target, text, %(room)s::text, event FROM (
    (
        SELECT at, kind, nickname, target, text, event FROM events
        WHERE room = %(room)s::text AND event < %(before)s AND event > %(after)s
            AND at >= %(oldest)s AND kind != 'private'
        ORDER BY event DESC LIMIT %(count)s
    )
    UNION ALL
    (
        SELECT at, kind, nickname, target, text, event FROM events
        WHERE room IS NULL AND %(room)s::text = %(default_room)s::text
            AND event < %(before)s AND event > %(after)s AND at >= %(oldest)s
            AND kind != 'private'
        ORDER BY event DESC LIMIT %(count)s
    )
) AS found
ORDER BY event DESC LIMIT %(count)s
"""

#: twistedchat.history.History.search: every word of %(query)s (the
#: words, space-separated) as words (plainto_tsquery ANDs them and reads
#: no syntax), which the GIN index finds; then each word of %(words)s as a
#: phrase of its tokens (as FTS5 reads a quoted word), so that a word of
#: punctuation only, holding no token, matches nothing, as with FTS5.
SEARCH = """
SELECT e.at, e.kind, e.nickname, e.target, e.text,
    CASE WHEN e.kind = 'private' THEN NULL
        ELSE coalesce(e.room, %(default_room)s::text) END,
    e.event
FROM events AS e
WHERE e.search @@ plainto_tsquery('simple', chat_unaccent(%(query)s::text))
    AND e.search @@ ALL (
        SELECT phraseto_tsquery('simple', chat_unaccent(word))
        FROM unnest(%(words)s::text[]) AS word
    )
    AND e.at >= %(oldest)s
    AND (
        (e.kind IN ('chat', 'action') AND e.event > %(after)s
            AND (e.room = %(room)s::text
                OR (e.room IS NULL AND %(room)s::text = %(default_room)s::text)))
        OR (e.kind = 'private' AND %(private)s AND e.at >= %(since)s)
    )
ORDER BY coalesce(e.event, e.id) DESC, e.id DESC
"""

#: twistedchat.history.History.gap.
GAP = """
SELECT at, kind, nickname, target, text, room, event, seq FROM events
WHERE room = %(room)s::text AND epoch = %(epoch)s::text AND seq > %(after)s
    AND (%(before)s::bigint IS NULL OR seq < %(before)s::bigint)
ORDER BY seq
"""

#: twistedchat.accounts.load_accounts.
LOAD_ACCOUNTS = "SELECT nickname_key, password_hash, created_at FROM accounts"

#: twistedchat.accounts.Accounts.refresh.
LOAD_ACCOUNT = "SELECT password_hash, created_at FROM accounts WHERE nickname_key = %s"

#: twistedchat.accounts.Accounts.register.
INSERT_ACCOUNT = (
    "INSERT INTO accounts (nickname_key, nickname, password_hash, created_at)"
    " VALUES (%s, %s, %s, %s)"
)

#: twistedchat.accounts.Accounts.change_password.
UPDATE_PASSWORD = "UPDATE accounts SET password_hash = %s WHERE nickname_key = %s"

#: twistedchat.roomstore.load_rooms.
LOAD_ROOM_OPERATORS = "SELECT room_key, account_key FROM room_operators"
LOAD_ROOM_BANS = "SELECT room_key, kind, key FROM room_bans"
LOAD_ROOMS = "SELECT key, name, topic, topic_by, topic_at, topic_locked, since FROM rooms"

#: twistedchat.roomstore.RoomStore: forgetting a room.
DELETE_ROOM = "DELETE FROM rooms WHERE key = %s"
DELETE_ROOM_OPERATORS = "DELETE FROM room_operators WHERE room_key = %s"
DELETE_ROOM_BANS = "DELETE FROM room_bans WHERE room_key = %s"

#: twistedchat.roomstore.RoomStore: saving a room.
INSERT_ROOM = (
    "INSERT INTO rooms (key, name, topic, topic_by, topic_at, topic_locked, since)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
INSERT_ROOM_OPERATOR = "INSERT INTO room_operators (room_key, account_key) VALUES (%s, %s)"
INSERT_ROOM_BAN = "INSERT INTO room_bans (room_key, kind, key) VALUES (%s, %s, %s)"
