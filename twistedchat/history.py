"""
History: every chat line, action, join, leave, nickname change, topic
change, kick, mode change and private message, with a UTC timestamp, in
SQLite or PostgreSQL (L{twistedchat.database}); the most recent ones of
each room, and of the private messages, also in memory for replay.

Each event belongs to one room, named by its key
(L{twistedchat.nicknames.nickname_key} of the room's name), or, for a
private message, to none. An event seen in several rooms (a quit, a
nickname change) is recorded once in each of them; a quit stays a quit
(L{Left} with no room) when it is read back. Recording an event gives it
its id (L{twistedchat.events.Event.id}), one for all its rooms, larger for
later events, across restarts and crashes, and its time. Ids are not
contiguous: each start numbers from above every id a crash may have
handed out unwritten, and above the clock in microseconds (L{first_id}).

Replay and C{/history} count the conversation: a room's chat lines and
actions and, when asked for, the private messages the viewer may see. The notices (joins, leaves,
nickname changes, topic changes, kicks, mode changes) that happened among
the lines shown come with them, but never more notices than lines asked
for, and they are kept apart in memory, room by room, so a storm of joins
and leaves cannot push the conversation out, and a flood in one room
cannot push out another room's.

The recent events are read at start-up (L{load_recent}, through
L{twistedchat.database.open_database}). While the server runs, writes go
through Twisted's C{adbapi} (a thread pool), so the reactor never waits
for the disk; they are batched every half second, so what a user saw is
on disk within a second (WAL journal; a killed server loses at most the
last batch). One batch is written at a time, in order. A batch that could
not be written (the database locked by another process for longer than
L{twistedchat.database.BUSY_TIMEOUT}, a full disk) is kept and tried again
with the next one; at most L{MAX_UNWRITTEN} events wait so, and beyond
that the oldest are dropped, and logged. A room that no longer exists is
forgotten in memory (L{History.forget}); its events stay on disk, where a
new room of the same name never reaches them: a room's pages and
searches start after the last event id before it was created
(L{twistedchat.rooms.Room.since}).

Older events are read from disk, in a pool thread too, a page at a time
(L{History.page}: those before an event id, for scrolling up), and found
by searching what was said (L{History.search}, SQLite's FTS5 full-text
index, or PostgreSQL's C{tsvector} one). Both first hand the pool the
events not yet written, so that they see everything recorded before they
were asked.

In a cluster (docs/cluster.md, section 7.3), the node an event started
on records it with its room's sequence number and epoch
(L{History.record}'s C{seq} and C{epoch}); the others only keep it in
memory (L{History.observe}), and read back what they missed from the
database (L{History.gap}). PostgreSQL ignores a row whose room and event
it holds already, so a batch written twice (its commit's reply lost) adds
nothing.

Private messages are stored for their two participants' own replay: they
are shown only to a viewer who proved (with a password) that they own the
sender's or the recipient's registered nickname, and never to anyone
else.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeAlias, TypeVar

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from twistedchat import postgres
from twistedchat.database import PRIVATE_PLACE, Dialect, Query, dialect_of, place_token
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
    Renderable,
    TopicChanged,
)
from twistedchat.nicknames import nickname_key

_T = TypeVar("_T")

#: Seconds between batched writes.
FLUSH_INTERVAL = 0.5

#: The most events kept in memory while the database cannot be written,
#: to be written once it can; when more arrive, the oldest are dropped.
#: Ten thousand rows are one or two megabytes, and minutes of a busy chat.
MAX_UNWRITTEN = 10_000

#: The largest event id SQLite can hold (a signed 64-bit integer): a page
#: before a larger id is a page of the latest events.
MAX_EVENT_ID = 2**63 - 1

#: The events a replay counts: what was said.
_CONVERSATION = (ChatLine, Action, PrivateMessage)


def is_conversation(event: Event) -> bool:
    """
    Return whether C{event} is something said (a chat line, an action, a
    private message), which replays count, rather than a notice (a join, a
    leave, a nickname change, a topic change, a kick, a mode change).
    """
    return isinstance(event, _CONVERSATION)


#: A row of the events table: at, kind, nickname, target, text, room (the
#: room key, or C{None} for a private message), event (the event's id),
#: seq and epoch (where a cluster numbered it, or C{None}).
Row: TypeAlias = tuple[
    float, str, str, str | None, str | None, str | None, int, int | None, str | None
]


@dataclass
class Record(Renderable):
    """
    One stored event, when it happened (seconds since the epoch, UTC) and
    the key of the room it happened in (C{None} for a private message). A
    front end renders it once for everyone it replays it to (see
    L{Renderable.render}).

    The event carries its id and time (L{Event.id}, L{Event.at}), read
    from disk too. A quit (L{Left} with no room) is recorded in each room
    its participant was in: its record's room is that room, its event's
    room stays C{""}, live and read back alike.

    @ivar seq: the room's sequence number a cluster gave the event (read
        back by L{History.gap}); C{None} otherwise.
    """

    at: float
    event: Event
    room: str | None = None
    seq: int | None = None


#: An event kept in memory: its number in the order of events, and it.
_Kept: TypeAlias = tuple[int, Record]


def _row(record: Record, seq: int | None = None, epoch: str | None = None) -> Row:
    """
    Turn C{record} into a row of the events table, numbered C{seq} in
    the epoch C{epoch} by a cluster (or not: C{None}).

    @raise TypeError: events of this type are not stored.
    """
    return (*_columns(record), seq, epoch)


def _columns(
    record: Record,
) -> tuple[float, str, str, str | None, str | None, str | None, int]:
    """
    Return the columns of C{record}'s row in the events table, but seq
    and epoch.

    @raise TypeError: events of this type are not stored.
    """
    at, event, room = record.at, record.event, record.room
    match event:
        case ChatLine(sender=sender, text=text):
            return (at, "chat", sender, None, text, room, event.id)
        case Action(sender=sender, text=text):
            return (at, "action", sender, None, text, room, event.id)
        case Joined(nickname=nickname):
            return (at, "join", nickname, None, None, room, event.id)
        case Left(nickname=nickname, reason=reason, room=""):
            return (at, "quit", nickname, None, reason, room, event.id)
        case Left(nickname=nickname, reason=reason):
            return (at, "leave", nickname, None, reason, room, event.id)
        case NicknameChanged(old=old, new=new):
            return (at, "nick", old, new, None, room, event.id)
        case TopicChanged(nickname=nickname, topic=topic):
            return (at, "topic", nickname, None, topic, room, event.id)
        case Kicked(operator=operator, nickname=nickname, reason=reason):
            return (at, "kick", operator, nickname, reason, room, event.id)
        case ModeChanged(operator=operator, change=change, target=target):
            return (at, "mode", operator, target or None, change, room, event.id)
        case PrivateMessage(sender=sender, recipient=recipient, text=text):
            return (at, "private", sender, recipient, text, None, event.id)
    raise TypeError(f"{event!r} is not stored")


def _record(
    at: float,
    kind: str,
    nickname: str,
    target: str | None,
    text: str | None,
    room: str | None,
    event_id: int | None = None,
    seq: int | None = None,
) -> Record:
    """
    Turn a row of the events table back into a L{Record}, whose event
    carries the row's event id (C{0} if it has none) and time, and which
    carries its C{seq}. A room
    event gets the room key as its room's name (the name as created is not
    stored with it); a quit (kind C{quit}) gets none, as it had live, and
    its record keeps the room. A quit stored before schema version 5 is a
    C{leave}, and comes back as a part.

    @raise ValueError: C{kind} is unknown.
    """
    event: Event
    name = room or ""
    match kind:
        case "chat":
            event = ChatLine(nickname, text or "", name)
        case "action":
            event = Action(nickname, text or "", name)
        case "join":
            event = Joined(nickname, name)
        case "leave":
            event = Left(nickname, text or "", name)
        case "quit":
            event = Left(nickname, text or "")
        case "nick":
            event = NicknameChanged(nickname, target or "")
        case "topic":
            event = TopicChanged(name, nickname, text or "")
        case "kick":
            event = Kicked(name, nickname, target or "", text or "")
        case "mode":
            event = ModeChanged(name, nickname, text or "", target or "")
        case "private":
            event = PrivateMessage(nickname, target or "", text or "")
            room = None
        case _:
            raise ValueError(f"unknown event kind {kind!r}")
    event.id = event_id or 0
    event.at = at
    return Record(at, event, room, seq)


#: What L{load_recent} reads: by room (C{NULL} for private messages; rows
#: stored before rooms, with no room, are the default room's), the last
#: C{:keep} conversation events and, of the notices after the oldest of
#: them (after none if fewer than C{:keep}), the last C{:keep}.
_LOAD_RECENT_SQLITE = """
WITH placed AS (
    SELECT id, at, kind, nickname, target, text, event,
        coalesce(event, id) AS position,
        CASE WHEN kind = 'private' THEN NULL ELSE coalesce(room, :default_room) END AS room,
        kind IN ('chat', 'action', 'private') AS said  -- conversation; the rest are notices
    FROM events
),
lines AS (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY room ORDER BY position DESC, id DESC) AS newest
        FROM placed WHERE said
    ) WHERE newest <= :keep
),
starts AS (
    SELECT room, min(position) AS after FROM lines GROUP BY room HAVING count(*) = :keep
),
notices AS (
    SELECT * FROM (
        SELECT placed.*,
            ROW_NUMBER() OVER (PARTITION BY placed.room ORDER BY position DESC, id DESC) AS newest
        FROM placed LEFT JOIN starts ON starts.room = placed.room
        WHERE NOT said AND position > coalesce(starts.after, 0)
    ) WHERE newest <= :keep
)
SELECT at, kind, nickname, target, text, room, event FROM (
    SELECT position, id, at, kind, nickname, target, text, room, event FROM lines
    UNION ALL
    SELECT position, id, at, kind, nickname, target, text, room, event FROM notices
)
ORDER BY position, id
"""

_LOAD_RECENT = Query(_LOAD_RECENT_SQLITE, postgres.LOAD_RECENT)


def load_recent(connection: Any, keep: int, default_room: str) -> list[Record]:
    """
    Read, at start-up, what L{History} keeps in memory: for each room, the
    last C{keep} conversation events (chat lines, actions) and, of the
    notices (joins, leaves, nickname changes, topic changes, kicks, mode
    changes) since the oldest of them, the last C{keep}; and the last
    C{keep} private messages. All of them oldest first, in the order they
    were stored.

    One query, with window functions (SQLite 3.25 or later), so that each
    room's conversation is found however many notices followed it, and
    however many rooms there are. It ranks every row, so it takes time in
    proportion to the table (a few seconds for a million events).

    @param connection: an open C{sqlite3} or psycopg connection.
    @param keep: how many of each to read (C{--history-max}).
    @param default_room: the key of the room that events stored before
        rooms existed (schema version 3) happened in.
    """
    if keep <= 0:
        return []
    query = _LOAD_RECENT.text(dialect_of(connection))
    rows = connection.execute(query, {"keep": keep, "default_room": default_room})
    return [_record(*row) for row in rows]


def first_id(stored: int, clock: IReactorTime, unwritten: int | None) -> int:
    """
    Return the id of the first event a history starting now records: one
    more than the largest of the ids that may have been handed out before
    (to be larger for later events, across restarts, so that a front end
    that drops an event whose id it has seen never drops a new one) and
    of the clock's microseconds. Ids are then not contiguous: they jump at
    every start.

    With a database, the ids handed out before are the largest stored,
    C{stored}, and those of the events not yet written when the server
    stopped, which a crash loses: at most C{unwritten} of them, as
    L{History.record} drops the oldest beyond that, rows being written
    included. Those it dropped were handed out too, and are not bounded;
    nor are ids without a database, where nothing is stored. The clock
    covers both: the ids of a run grow by one an event, and so stay below
    the microseconds of any later start unless a run recorded a million
    events a second. In microseconds, ids stay below 2**53, exact as
    JavaScript numbers, until the year 2255.

    @param stored: the largest event id stored, or read back (C{0} for
        none).
    @param clock: gives the time, in seconds since the epoch.
    @param unwritten: with a database, the most events that may wait to be
        written (L{MAX_UNWRITTEN}); C{None} without one.
    """
    after = stored if unwritten is None else stored + unwritten
    return max(after, int(clock.seconds() * 1_000_000)) + 1


_LAST_EVENT_ID = Query("SELECT max(id) FROM last_event", postgres.LAST_EVENT_ID)


def last_event_id(connection: Any) -> int:
    """
    Read, at start-up, the largest event id ever stored (schema version 4's
    C{last_event} table), which pruning does not lower: pass it to
    L{History} as C{last_id}, so that event ids go on growing even if every
    event was pruned.

    @param connection: an open C{sqlite3} or psycopg connection to a
        database of the current schema (see
        L{twistedchat.database.open_database}).
    """
    row = connection.execute(_LAST_EVENT_ID.text(dialect_of(connection))).fetchone()
    return int(row[0] or 0)


class _RoomEvents:
    """
    The recent events of one room in memory, numbered in the order of
    events: the last C{cap} conversation events and, apart from them, the
    last C{cap} notices.
    """

    __slots__ = ("conversation", "notices")

    def __init__(self, cap: int) -> None:
        self.conversation: deque[_Kept] = deque(maxlen=cap)
        self.notices: deque[_Kept] = deque(maxlen=cap)


class History:
    """
    The chat's history: the recent events in memory, everything on disk.

    In memory, for each room, the last C{cap} conversation events (chat
    lines, actions) and, apart from them, the last C{cap} notices (joins,
    leaves, nickname changes, topic changes, kicks, mode changes), so that
    notices never push the conversation out; and the last C{cap} private
    messages. Every event kept is numbered in the order of events, so
    that what is kept apart can be replayed in order.

    @ivar cap: how many recent conversation events of a room are kept in
        memory and can be replayed (the most C{/history} shows).
    """

    _log = Logger()

    def __init__(
        self,
        pool: ConnectionPool | None,
        clock: IReactorTime,
        recent: Iterable[Record] = (),
        cap: int = 200,
        retention: float = 0,
        max_unwritten: int = MAX_UNWRITTEN,
        last_id: int = 0,
        default_room: str | None = None,
    ) -> None:
        """
        @param pool: the pool from L{twistedchat.database.make_pool}, or C{None} to keep the
            recent events in memory only (C{--database :memory:}).
        @param recent: the recent events read at start-up (L{load_recent}), oldest first;
            each knows its room, and its event its id.
        @param retention: days to keep events for; C{0} keeps them forever.
        @param max_unwritten: the most events kept while the database cannot be
            written (L{MAX_UNWRITTEN}); at least 1.
        @param last_id: the largest event id ever stored (L{last_event_id}).
            Events are numbered (see L{first_id}) after it, after every id in
            C{recent}, with a database after C{max_unwritten} more (the ids a
            crash may have handed out but not written), and after the
            clock's microseconds.
        @param default_room: the key of the room that events stored before rooms
            existed happened in (see L{load_recent}); the factory sets it
            (L{twistedchat.factory.ChatFactory}), else none.
        @raise ValueError: a record of C{recent} is a room event with no room.
        """
        self.cap = cap
        self.default_room = default_room
        self._pool = pool
        self._dialect = dialect_of(pool) if pool is not None else Dialect.SQLITE
        self._clock = clock
        self._sequence = 0
        self._rooms: dict[str, _RoomEvents] = {}
        self._private: deque[_Kept] = deque(maxlen=cap)
        stored = last_id
        for record in recent:
            self._remember(record)
            stored = max(stored, record.event.id)
        self._retention = retention
        # Rows not yet on disk, oldest first; those being written are in
        # _batch. Together they are at most _max_unwritten.
        self._max_unwritten = max(1, max_unwritten)
        unwritten = self._max_unwritten if pool is not None else None
        self._last_id = first_id(stored, clock, unwritten) - 1
        self._unwritten: deque[Row] = deque()
        self._batch: list[Row] = []
        self._writing = False
        self._idle: list[Deferred[None]] = []
        self._failures = 0
        self._dropped = 0
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = clock
        self._pruner = LoopingCall(self.prune)
        self._pruner.clock = clock

    @property
    def last_id(self) -> int:
        """
        The id of the last event recorded (L{Event.id}), or, before any
        was, the number the next one comes after: every event recorded
        from now on gets a larger id. A room records it when it is created
        (L{twistedchat.rooms.Room.since}).
        """
        return self._last_id

    def backlog(self) -> tuple[int, float]:
        """
        Return how many events wait to be written to the database, and
        how long the oldest of them has waited, in seconds (C{0.0} if
        none).
        """
        count = len(self._batch) + len(self._unwritten)
        if not count:
            return 0, 0.0
        oldest = self._batch[0] if self._batch else self._unwritten[0]
        return count, max(self._clock.seconds() - oldest[0], 0.0)

    def start(self) -> None:
        """
        Start writing batches every L{FLUSH_INTERVAL} seconds and, with a
        retention, pruning old events every hour.
        """
        self._flusher.start(FLUSH_INTERVAL, now=False)
        if self._retention:
            self._pruner.start(3600, now=True)

    def stop(self) -> Deferred[None]:
        """
        Stop the periodic work, let a write under way end, try once more
        to write everything not yet written, and close the pool. What still
        cannot be written is lost, and logged.

        @return: fires once the last batch is on disk, or could not be
            written; never fails.
        """
        for call in (self._flusher, self._pruner):
            if call.running:
                call.stop()
        d = self._when_idle()
        d.addCallback(lambda _: self.flush())
        if self._pool is not None:
            pool = self._pool

            def close(_: object) -> None:
                lost = len(self._unwritten)
                if lost or self._dropped:
                    self._log.error(
                        "Stopping with {lost} history events not written; {dropped} more"
                        " were dropped earlier",
                        lost=lost,
                        dropped=self._dropped,
                    )
                pool.close()

            d.addCallback(close)
        return d

    def record(
        self,
        event: Event,
        room: str | None = None,
        seq: int | None = None,
        epoch: str | None = None,
    ) -> None:
        """
        Remember C{event} as happening now in the room C{room}; it reaches
        the disk with the next batch.

        The first time it sees C{event}, it gives it its id and time
        (L{Event.id}: one more than the last, L{last_id}; L{Event.at}:
        now). An event seen in several rooms (a quit, L{Left} with no room,
        or a L{NicknameChanged}) is recorded once for each room its
        participant was in; the same event object may be recorded so in
        several rooms, and keeps one id and one time.

        If L{MAX_UNWRITTEN} events are already waiting to be written, the
        oldest not being written now is dropped; the first drop logs a
        warning, and the next successful write logs how many were dropped.

        @param room: the key of the room it happened in
            (L{twistedchat.nicknames.nickname_key} of its name); C{None}
            for a private message, and only for one.
        @param seq: in a cluster, the room's sequence number of the event
            (docs/cluster.md, section 11.2), stored for L{gap}; C{None}
            otherwise.
        @param epoch: in a cluster, the epoch C{seq} was numbered in;
            C{None} otherwise.
        @raise ValueError: C{event} is a private message and C{room} is not
            C{None}, or the other way round.
        """
        _check_room(event, room, "recorded")
        self.stamp(event)
        record = Record(event.at, event, room, seq)
        self._remember(record)
        if self._pool is None:
            return
        self._unwritten.append(_row(record, seq, epoch))
        if len(self._unwritten) + len(self._batch) > self._max_unwritten:
            self._unwritten.popleft()
            if not self._dropped:
                self._log.warn(
                    "History cannot be written and {limit} events are waiting:"
                    " dropping the oldest until it can",
                    limit=self._max_unwritten,
                )
            self._dropped += 1

    def observe(self, event: Event, room: str | None) -> None:
        """
        Remember C{event}, which happened in the room C{room} on another
        node of a cluster, in memory for replay, as L{record} does, but do
        not write it: the node it started on does. It keeps the id and
        time it came with; later events this history numbers get larger
        ids.

        @param room: as for L{record}.
        @raise ValueError: C{event} is a private message and C{room} is not
            C{None}, or the other way round.
        """
        _check_room(event, room, "observed")
        self._remember(Record(event.at, event, room))
        self._last_id = max(self._last_id, event.id)

    def gap(self, room: str, epoch: str, after: int, before: int | None) -> Deferred[list[Record]]:
        """
        Return the stored events of the room whose key is C{room} that a
        cluster numbered in C{epoch} with a sequence number above C{after}
        and below C{before}, in the order of their numbers, each
        L{Record} carrying its number (L{Record.seq}): what a node missed
        (docs/cluster.md, section 11.2). Read after everything recorded
        here so far is written (see L{_read}).

        @param after: the last sequence number the node delivered.
        @param before: the first it holds, or C{None} for no upper bound.
        @return: fires with the records (none without a database); fails
            if the database cannot be read.
        """
        if self._pool is None:
            return succeed([])
        parameters = {"room": room, "epoch": epoch, "after": after, "before": before}
        return self._read(_gap, self._dialect, parameters)

    def stamp(self, event: Event) -> None:
        """
        Give C{event} its id (one more than the last) and its time (now),
        unless it has them: L{record} does, and so does an event that is
        shown but not stored (a nickname change seen by nobody but its
        user).
        """
        if not event.id:
            self._last_id += 1
            event.id = self._last_id
            event.at = self._clock.seconds()

    def _remember(self, record: Record) -> None:
        """
        Keep C{record} in memory for replay, with its room's events or the
        private messages, numbered in the order of events.

        @raise ValueError: C{record} is a room event with no room.
        """
        self._sequence += 1
        if isinstance(record.event, PrivateMessage):
            self._private.append((self._sequence, record))
            return
        if record.room is None:
            raise ValueError(f"{record!r} happened in no room")
        events = self._rooms.get(record.room)
        if events is None:
            events = self._rooms[record.room] = _RoomEvents(self.cap)
        kept = events.conversation if is_conversation(record.event) else events.notices
        kept.append((self._sequence, record))

    def retain(self, rooms: Mapping[str, int]) -> None:
        """
        Forget the events kept in memory of every room but C{rooms}, and
        those of each of C{rooms} that came before its current life: at
        start-up, the events read from disk of rooms that no longer exist,
        or that vanished before a kept room of the same name was created.
        They stay on disk.

        @param rooms: for each room that exists, by key, the last event id
            before it was created (L{twistedchat.rooms.Room.since}): its
            events are those with a larger id.
        """
        for room in [room for room in self._rooms if room not in rooms]:
            del self._rooms[room]
        for room, events in self._rooms.items():
            since = rooms[room]
            for kept in (events.conversation, events.notices):
                while kept and kept[0][1].event.id <= since:
                    kept.popleft()

    def forget(self, room: str) -> None:
        """
        Forget the events of the room whose key is C{room} kept in memory,
        when the room no longer exists; they stay on disk. A room never
        seen is ignored.
        """
        self._rooms.pop(room, None)

    def recent(
        self,
        count: int,
        room: str | None,
        viewer: str | None = None,
        since: float = 0.0,
        private: bool = False,
    ) -> list[Record]:
        """
        Return, oldest first, the last C{count} conversation events that
        the viewer may see: the chat lines and actions of C{room} and, if
        C{private}, the private messages C{viewer} sent or received from
        C{since} on; and among them the most recent notices of C{room}
        (joins, leaves, nickname changes, topic changes, kicks, mode
        changes), at most C{count} too. None older than the retention.

        The notices are those since the oldest conversation event returned,
        or, if fewer than C{count} were found, since the oldest chat line or
        action of C{room} kept if C{cap} of them are: before it, the room's
        conversation was forgotten.

        Only the newest events are looked at, newest first, until C{count}
        are found: a join asks for this.

        @param count: how many conversation events, at most (callers keep
            it at most C{cap}).
        @param room: the room's key; C{None} for no room (with C{private},
            only private messages).
        @param viewer: the nickname key of the account the viewer proved
            it owns, or C{None}, who sees no private messages.
        @param since: seconds since the epoch: when the viewer's account
            was registered. Before that the nickname was anyone's, so its
            private messages were someone else's.
        @param private: whether to include the private messages C{viewer}
            may see.
        """
        if count <= 0:
            return []
        oldest = self._oldest()
        events = self._rooms.get(room) if room is not None else None
        sources: list[Iterator[_Kept]] = []
        if events is not None:
            sources.append(reversed(events.conversation))
        if private and viewer is not None:
            sources.append(self._visible_private(viewer, since))
        # Newest first, stopping at count: every joiner asks for this.
        newest_first = heapq.merge(*sources, key=lambda kept: kept[0], reverse=True)
        lines = list(islice((kept for kept in newest_first if kept[1].at >= oldest), count))
        if len(lines) >= count:
            start = lines[-1][0]
        elif events is not None and len(events.conversation) == events.conversation.maxlen:
            # The room's older conversation was forgotten: so are the
            # notices among it.
            start = events.conversation[0][0] if events.conversation else 0
        else:
            start = 0
        notices: list[_Kept] = []
        if events is not None:
            for sequence, record in reversed(events.notices):
                if sequence < start or len(notices) >= count:
                    break
                if record.at >= oldest:
                    notices.append((sequence, record))
        return [record for _, record in sorted(lines + notices, key=lambda kept: kept[0])]

    def _oldest(self) -> float:
        """
        Return the time (seconds since the epoch) of the oldest event the
        retention keeps; C{0} for no retention.
        """
        return self._clock.seconds() - self._retention * 86400 if self._retention else 0.0

    def page(self, room: str, before: int, count: int, after: int = 0) -> Deferred[list[Record]]:
        """
        Return the C{count} events of the room whose key is C{room} that
        came last before the event with the id C{before}, oldest first, for
        scrolling up: chat lines, actions and notices, no private messages;
        none older than the retention, nor than the room's current life
        (C{after}).

        With a database, they are read from it, in a pool thread, after
        everything recorded so far is written (see L{_read}); events stored
        before rooms existed are the C{default_room}'s. Without one, they
        come from memory, and reach back only as far as it does.

        @param before: an event id; C{1} or less finds nothing; above
            L{MAX_EVENT_ID} (what SQLite can hold), the latest events.
        @param count: how many events, at most; C{0} or less finds none.
        @param after: an event id: only events with a larger one are
            returned. A room passes the last id before it was created
            (L{twistedchat.rooms.Room.since}), so that a room of the same
            name that vanished before does not hand on its events.
        @return: fires with the records; fails if the database cannot be
            read.
        """
        if count <= 0 or before <= 1 or before <= after + 1:
            return succeed([])
        before = min(before, MAX_EVENT_ID)
        oldest = self._oldest()
        if self._pool is None:
            events = self._rooms.get(room)
            if events is None:
                return succeed([])
            newest_first = heapq.merge(
                reversed(events.conversation),
                reversed(events.notices),
                key=lambda kept: kept[0],
                reverse=True,
            )
            found = islice(
                (
                    record
                    for _, record in newest_first
                    if after < record.event.id < before and record.at >= oldest
                ),
                count,
            )
            return succeed(list(found)[::-1])
        parameters = {
            "room": room,
            "default_room": self.default_room,
            "before": before,
            "after": after,
            "count": count,
            "oldest": oldest,
        }
        return self._read(_page, self._dialect, parameters)

    def search(
        self,
        text: str,
        room: str | None,
        viewer: str | None = None,
        since: float = 0.0,
        count: int = 20,
        after: int = 0,
    ) -> Deferred[list[Record]]:
        """
        Return, newest first, the last C{count} chat lines and actions of
        the room whose key is C{room} that match C{text}, with the private
        messages C{viewer} sent or received from C{since} on that match it
        (the visibility rule of L{recent}); none older than the retention,
        and none of the room's older than its current life (C{after}).

        A record matches when it holds every word of C{text} (SQLite FTS5,
        its C{unicode61} tokenizer: case and diacritics do not matter),
        each taken literally (see L{search_words}). It is read from the
        database, in a pool thread, after everything recorded so far is
        written (see L{_read}); events stored before rooms existed are the
        C{default_room}'s. The index holds where each row was said (see
        L{twistedchat.database.place_token}), so that only the rows of the
        room, and private messages if there is a viewer, are read.

        @param room: a room's key; C{None} for private messages only.
        @param viewer: the nickname key of the account the viewer proved
            it owns, or C{None}, who sees no private messages.
        @param since: seconds since the epoch: when the viewer's account was
            registered.
        @param count: how many records, at most.
        @param after: an event id: only the room's chat lines and actions
            with a larger one are found (as for L{page}); private messages
            keep their own rule.
        @raise NoSearch: the history is kept in memory only.
        @raise ValueError: C{text} holds no word.
        @return: fires with the records; fails if the database cannot be
            read.
        """
        if self._pool is None:
            raise NoSearch("Search needs a database; this server keeps its history in memory only.")
        plain = _words(text)
        words = search_words(text)
        if count <= 0:
            return succeed([])
        places = []
        if room is not None:
            places.append(place_token(room))
            if room == self.default_room:
                places.append(place_token(None))
        if viewer is not None:
            places.append(PRIVATE_PLACE)
        if not places:
            return succeed([])
        # FTS5 column filters (U{https://www.sqlite.org/fts5.html}): the words
        # typed are looked for in the text only, never in the place.
        where = " OR ".join(f'place : "{place}"' for place in places)
        in_text = " AND ".join(f"text : {word}" for word in words)
        query = f"({where}) AND {in_text}"
        if self._dialect is Dialect.POSTGRESQL:
            # The words as they are: plainto_tsquery and phraseto_tsquery
            # read no syntax, and the query says where (see postgres.SEARCH).
            query = " ".join(plain)
        parameters = {
            "query": query,
            "words": plain,
            "room": room,
            "default_room": self.default_room,
            "after": after,
            "private": viewer is not None,
            "since": since,
            "oldest": self._oldest(),
        }
        return self._read(_search, self._dialect, parameters, viewer, count)

    def _read(self, read: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Run C{read(cursor, *args)} in the pool's thread once every event
        recorded so far has been handed to it to write, so that it sees
        them: after a write under way ends, start one of what waits, then
        queue the read. SQLite's pool has one connection, whose thread runs
        what it is given in order, so the read runs after that write;
        PostgreSQL's has two, so there the read waits for that write to
        end. A write that fails keeps its events for later, and the read
        does not see them.

        @return: fires with what C{read} returns, or fails with its error.
        """
        pool = self._pool
        assert pool is not None

        def run(_: object = None) -> Deferred[_T]:
            written = self.flush()
            if self._dialect is Dialect.POSTGRESQL:
                return written.addCallback(lambda _: pool.runInteraction(read, *args))
            d: Deferred[_T] = pool.runInteraction(read, *args)
            return d

        # Not chained to a Deferred that has fired already: a front end
        # tells by .called whether to wait for the answer.
        if not self._writing:
            return run()
        return self._when_idle().addCallback(run)

    def _visible_private(self, viewer: str, since: float) -> Iterator[_Kept]:
        """
        Yield, newest first, the private messages kept that the nickname
        key C{viewer} sent or received from C{since} (seconds since the
        epoch) on.
        """
        for sequence, record in reversed(self._private):
            event = record.event
            assert isinstance(event, PrivateMessage)
            if record.at >= since and viewer in (
                nickname_key(event.sender),
                nickname_key(event.recipient),
            ):
                yield sequence, record

    def flush(self) -> Deferred[None]:
        """
        Write every event not yet written, oldest first, in one
        transaction, in a thread.

        Only one write is under way at a time: while one is, start none and
        return a L{Deferred} that fires when it ends (what waits goes with
        the next flush). If the write fails, its events are kept, ahead of
        newer ones, for the next flush; the first failure in a row is
        logged, and so is the write that ends the run of failures.

        @return: fires when the write ends, written or not; never fails.
        """
        if self._writing:
            return self._when_idle()
        if self._pool is None or not self._unwritten:
            return succeed(None)
        batch = self._batch = list(self._unwritten)
        self._unwritten.clear()
        self._writing = True
        d: Deferred[None] = self._pool.runInteraction(_insert, self._dialect, batch)
        d.addCallbacks(self._written, self._not_written)
        d.addBoth(self._idle_now)
        return d

    def _written(self, _: object) -> None:
        """
        The batch is on disk: log the end of a run of failures and of
        drops.
        """
        if self._failures:
            self._log.info(
                "Wrote {count} history events after {failures} failed attempts",
                count=len(self._batch),
                failures=self._failures,
            )
            self._failures = 0
        if self._dropped:
            self._log.warn(
                "Dropped {dropped} history events that could not be written",
                dropped=self._dropped,
            )
            self._dropped = 0
        self._batch = []

    def _not_written(self, failure: Any) -> None:
        """
        The batch could not be written: keep it, ahead of what came since,
        for the next flush.
        """
        if not self._failures:
            self._log.failure(
                "Could not write {count} history events; keeping them to try again",
                failure,
                count=len(self._batch),
            )
        self._failures += 1
        self._unwritten.extendleft(reversed(self._batch))
        self._batch = []

    def _idle_now(self, _: object) -> None:
        """
        The write has ended: tell whoever waits for it.
        """
        self._writing = False
        waiting, self._idle = self._idle, []
        for d in waiting:
            d.callback(None)

    def _when_idle(self) -> Deferred[None]:
        """
        Return a L{Deferred} that fires when no write is under way.
        """
        if not self._writing:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        return d

    def prune(self) -> Deferred[None]:
        """
        Delete events older than the retention, in a thread.
        """
        if self._pool is None:
            return succeed(None)
        cutoff = self._clock.seconds() - self._retention * 86400
        d: Deferred[None] = self._pool.runOperation(_PRUNE.text(self._dialect), (cutoff,))
        d.addErrback(self._failed, "prune history")
        return d

    def _failed(self, failure: Any, what: str) -> None:
        self._log.failure("could not {what}", failure, what=what)


def _check_room(event: Event, room: str | None, what: str) -> None:
    """
    @raise ValueError: C{event} is a private message and C{room} is not
        C{None}, or the other way round.
    """
    if isinstance(event, PrivateMessage) != (room is None):
        where = "in no room" if room is None else f"in the room {room!r}"
        raise ValueError(f"{event!r} cannot be {what} {where}")


_PRUNE = Query("DELETE FROM events WHERE at < ?", postgres.PRUNE)

_INSERT = Query(
    "INSERT INTO events (at, kind, nickname, target, text, room, event, seq, epoch)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    postgres.INSERT_EVENTS,
)


def _insert(cursor: Any, dialect: Dialect, rows: list[Row]) -> None:
    """
    Insert C{rows} into the events table (runs in a pool thread, in the
    transaction C{runInteraction} commits). In PostgreSQL, a row whose
    room and event are stored already is left out, and C{last_event} is
    raised here (SQLite's trigger does it).
    """
    cursor.executemany(_INSERT.text(dialect), rows)
    if dialect is Dialect.POSTGRESQL and rows:
        cursor.execute(postgres.UPDATE_LAST_EVENT, (max(row[6] for row in rows),))


class NoSearch(ValueError):
    """
    The history cannot be searched: it is kept in memory only. C{str()} is
    a sentence fit to show a user.
    """


def search_words(text: str) -> list[str]:
    """
    Turn what a user typed into SQLite FTS5 strings, one for each word,
    each taken literally; side by side, they find the texts holding every
    word (FTS5's implicit AND).

    Each word (split on white space) becomes an FTS5 string, in double
    quotes, a double quote in it doubled. So nothing a user types is FTS5
    syntax: not C{"}, C{*}, C{^}, C{:}, parentheses, C{AND}, C{OR}, C{NOT}
    or C{NEAR} (U{https://www.sqlite.org/fts5.html#full_text_query_syntax},
    section 3). A word of punctuation only holds no token, and matches nothing.
    A NUL character, which would end the query early for FTS5, separates
    words; text that is not valid Unicode (a lone surrogate) has it
    replaced.

    @raise ValueError: C{text} holds no word.
    """
    return ['"' + word.replace('"', '""') + '"' for word in _words(text)]


def _words(text: str) -> list[str]:
    """
    Return the words of C{text}, split on white space and on NUL
    characters, what is not valid Unicode replaced (see L{search_words}).

    @raise ValueError: C{text} holds no word.
    """
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\0", " ")
    words = text.split()
    if not words:
        raise ValueError("Search for what? Give a word or more.")
    return words


#: The rows of a page (L{History.page}): the room's newest before an id,
#: and those stored before rooms for the default room; then the newest
#: of both. Each part uses the index on (room, event).
_PAGE_SQLITE = """
SELECT at, kind, nickname, target, text, :room, event FROM (
    SELECT * FROM (
        SELECT at, kind, nickname, target, text, event FROM events
        WHERE room = :room AND event < :before AND event > :after
            AND at >= :oldest AND kind != 'private'
        ORDER BY event DESC LIMIT :count
    )
    UNION ALL
    SELECT * FROM (
        SELECT at, kind, nickname, target, text, event FROM events
        WHERE room IS NULL AND :room = :default_room
            AND event < :before AND event > :after AND at >= :oldest AND kind != 'private'
        ORDER BY event DESC LIMIT :count
    )
)
ORDER BY event DESC LIMIT :count
"""

_PAGE = Query(_PAGE_SQLITE, postgres.PAGE)


def _page(cursor: Any, dialect: Dialect, parameters: dict[str, Any]) -> list[Record]:
    """
    Read a page of a room's events (runs in a pool thread); see
    L{History.page}.
    """
    cursor.execute(_PAGE.text(dialect), parameters)
    rows = cursor.fetchall()
    return [_record(*row) for row in reversed(rows)]


#: The rows that match a search (L{History.search}), newest first (the
#: full-text index's row order, which is the order of events): the room's
#: chat lines and actions after the event id C{:after}, and, if
#: C{:private}, private messages from C{:since} on, which L{_search} then
#: filters by viewer. The query itself finds only the rows of the room,
#: and private messages if asked for, in the index; the conditions here
#: say so again, and add the times and ids.
_SEARCH_SQLITE = """
SELECT e.at, e.kind, e.nickname, e.target, e.text,
    CASE WHEN e.kind = 'private' THEN NULL ELSE coalesce(e.room, :default_room) END,
    e.event
FROM events_text JOIN events AS e ON e.id = events_text.rowid
WHERE events_text MATCH :query
    AND e.at >= :oldest
    AND (
        (e.kind IN ('chat', 'action') AND e.event > :after
            AND (e.room = :room OR (e.room IS NULL AND :room = :default_room)))
        OR (e.kind = 'private' AND :private AND e.at >= :since)
    )
ORDER BY events_text.rowid DESC
"""

_SEARCH = Query(_SEARCH_SQLITE, postgres.SEARCH)


def _search(
    cursor: Any, dialect: Dialect, parameters: dict[str, Any], viewer: str | None, count: int
) -> list[Record]:
    """
    Find what matches a search (runs in a pool thread); see
    L{History.search}. Rows are read newest first until C{count} visible
    ones are found.
    """
    found: list[Record] = []
    cursor.execute(_SEARCH.text(dialect), parameters)
    for row in iter(cursor.fetchone, None):
        record = _record(*row)
        event = record.event
        if isinstance(event, PrivateMessage) and viewer not in (
            nickname_key(event.sender),
            nickname_key(event.recipient),
        ):
            continue
        found.append(record)
        if len(found) >= count:
            break
    return found


#: The rows of a gap (L{History.gap}), in the order of their numbers.
_GAP = Query(
    """
SELECT at, kind, nickname, target, text, room, event, seq FROM events
WHERE room = :room AND epoch = :epoch AND seq > :after
    AND (:before IS NULL OR seq < :before)
ORDER BY seq
""",
    postgres.GAP,
)


def _gap(cursor: Any, dialect: Dialect, parameters: dict[str, Any]) -> list[Record]:
    """
    Read the rows of a gap (runs in a pool thread); see L{History.gap}.
    """
    cursor.execute(_GAP.text(dialect), parameters)
    return [_record(*row) for row in cursor.fetchall()]
