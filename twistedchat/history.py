"""
History: every chat line, action, join, leave, nickname change, topic
change, kick, mode change and private message, with a UTC timestamp, in
SQLite; the most recent ones of each room, and of the private messages,
also in memory for replay.

Each event belongs to one room, named by its key
(L{twistedchat.nicknames.nickname_key} of the room's name), or, for a
private message, to none. An event seen in several rooms (a quit, a
nickname change) is recorded once in each of them.

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
forgotten in memory (L{History.forget}); its events stay on disk.

Private messages are stored for their two participants' own replay: they
are shown only to a viewer who proved (with a password) that they own the
sender's or the recipient's registered nickname, and never to anyone
else.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeAlias

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

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

#: Seconds between batched writes.
FLUSH_INTERVAL = 0.5

#: The most events kept in memory while the database cannot be written,
#: to be written once it can; when more arrive, the oldest are dropped.
#: Ten thousand rows are one or two megabytes, and minutes of a busy chat.
MAX_UNWRITTEN = 10_000

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
#: room key, or C{None} for a private message).
Row: TypeAlias = tuple[float, str, str, str | None, str | None, str | None]


@dataclass
class Record(Renderable):
    """
    One stored event, when it happened (seconds since the epoch, UTC) and
    the key of the room it happened in (C{None} for a private message). A
    front end renders it once for everyone it replays it to (see
    L{Renderable.render}).
    """

    at: float
    event: Event
    room: str | None = None


#: An event kept in memory: its number in the order of events, and it.
_Kept: TypeAlias = tuple[int, Record]


def _row(record: Record) -> Row:
    """
    Turn C{record} into a row of the events table.

    @raise TypeError: events of this type are not stored.
    """
    at, event, room = record.at, record.event, record.room
    match event:
        case ChatLine(sender=sender, text=text):
            return (at, "chat", sender, None, text, room)
        case Action(sender=sender, text=text):
            return (at, "action", sender, None, text, room)
        case Joined(nickname=nickname):
            return (at, "join", nickname, None, None, room)
        case Left(nickname=nickname, reason=reason):
            return (at, "leave", nickname, None, reason, room)
        case NicknameChanged(old=old, new=new):
            return (at, "nick", old, new, None, room)
        case TopicChanged(nickname=nickname, topic=topic):
            return (at, "topic", nickname, None, topic, room)
        case Kicked(operator=operator, nickname=nickname, reason=reason):
            return (at, "kick", operator, nickname, reason, room)
        case ModeChanged(operator=operator, change=change, target=target):
            return (at, "mode", operator, target or None, change, room)
        case PrivateMessage(sender=sender, recipient=recipient, text=text):
            return (at, "private", sender, recipient, text, None)
    raise TypeError(f"{event!r} is not stored")


def _record(
    at: float,
    kind: str,
    nickname: str,
    target: str | None,
    text: str | None,
    room: str | None,
) -> Record:
    """
    Turn a row of the events table back into a L{Record}. A room event
    gets the room key as its room's name (the name as created is not
    stored with it).

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
        case "nick":
            event = NicknameChanged(nickname, target or "")
        case "topic":
            event = TopicChanged(name, nickname, text or "")
        case "kick":
            event = Kicked(name, nickname, target or "", text or "")
        case "mode":
            event = ModeChanged(name, nickname, text or "", target or "")
        case "private":
            return Record(at, PrivateMessage(nickname, target or "", text or ""))
        case _:
            raise ValueError(f"unknown event kind {kind!r}")
    return Record(at, event, room)


#: What L{load_recent} reads: by room (C{NULL} for private messages; rows
#: stored before rooms, with no room, are the default room's), the last
#: C{:keep} conversation events and, of the notices after the oldest of
#: them (after none if fewer than C{:keep}), the last C{:keep}.
_LOAD_RECENT = """
WITH placed AS (
    SELECT id, at, kind, nickname, target, text,
        CASE WHEN kind = 'private' THEN NULL ELSE coalesce(room, :default_room) END AS room,
        kind IN ('chat', 'action', 'private') AS said  -- conversation; the rest are notices
    FROM events
),
lines AS (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY room ORDER BY id DESC) AS newest
        FROM placed WHERE said
    ) WHERE newest <= :keep
),
starts AS (
    SELECT room, min(id) AS after FROM lines GROUP BY room HAVING count(*) = :keep
),
notices AS (
    SELECT * FROM (
        SELECT placed.*, ROW_NUMBER() OVER (PARTITION BY placed.room ORDER BY id DESC) AS newest
        FROM placed LEFT JOIN starts ON starts.room = placed.room
        WHERE NOT said AND id > coalesce(starts.after, 0)
    ) WHERE newest <= :keep
)
SELECT at, kind, nickname, target, text, room FROM (
    SELECT id, at, kind, nickname, target, text, room FROM lines
    UNION ALL
    SELECT id, at, kind, nickname, target, text, room FROM notices
)
ORDER BY id
"""


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

    @param connection: an open C{sqlite3} connection.
    @param keep: how many of each to read (C{--history-max}).
    @param default_room: the key of the room that events stored before
        rooms existed (schema version 3) happened in.
    """
    if keep <= 0:
        return []
    rows = connection.execute(_LOAD_RECENT, {"keep": keep, "default_room": default_room})
    return [_record(*row) for row in rows]


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
    ) -> None:
        """
        @param pool: the pool from L{twistedchat.database.make_pool}, or C{None} to keep the
            recent events in memory only (C{--database :memory:}).
        @param recent: the recent events read at start-up (L{load_recent}), oldest first;
            each knows its room.
        @param retention: days to keep events for; C{0} keeps them forever.
        @param max_unwritten: the most events kept while the database cannot be
            written (L{MAX_UNWRITTEN}); at least 1.
        @raise ValueError: a record of C{recent} is a room event with no room.
        """
        self.cap = cap
        self._pool = pool
        self._clock = clock
        self._sequence = 0
        self._rooms: dict[str, _RoomEvents] = {}
        self._private: deque[_Kept] = deque(maxlen=cap)
        for record in recent:
            self._remember(record)
        self._retention = retention
        # Rows not yet on disk, oldest first; those being written are in
        # _batch. Together they are at most _max_unwritten.
        self._max_unwritten = max(1, max_unwritten)
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

    def record(self, event: Event, room: str | None = None) -> None:
        """
        Remember C{event} as happening now in the room C{room}; it reaches
        the disk with the next batch.

        An event seen in several rooms (a quit, L{Left} with no room, or a
        L{NicknameChanged}) is recorded once for each room its participant
        was in; the same event object may be recorded so in several rooms.

        If L{MAX_UNWRITTEN} events are already waiting to be written, the
        oldest not being written now is dropped; the first drop logs a
        warning, and the next successful write logs how many were dropped.

        @param room: the key of the room it happened in
            (L{twistedchat.nicknames.nickname_key} of its name); C{None}
            for a private message, and only for one.
        @raise ValueError: C{event} is a private message and C{room} is not
            C{None}, or the other way round.
        """
        if isinstance(event, PrivateMessage) != (room is None):
            where = "in no room" if room is None else f"in the room {room!r}"
            raise ValueError(f"{event!r} cannot be recorded {where}")
        record = Record(self._clock.seconds(), event, room)
        self._remember(record)
        if self._pool is None:
            return
        self._unwritten.append(_row(record))
        if len(self._unwritten) + len(self._batch) > self._max_unwritten:
            self._unwritten.popleft()
            if not self._dropped:
                self._log.warn(
                    "History cannot be written and {limit} events are waiting:"
                    " dropping the oldest until it can",
                    limit=self._max_unwritten,
                )
            self._dropped += 1

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

    def retain(self, rooms: Iterable[str]) -> None:
        """
        Forget the events kept in memory of every room but C{rooms} (keys):
        at start-up, those of rooms that no longer exist, which were read
        from disk with the others; they stay on disk.
        """
        keep = set(rooms)
        for room in [room for room in self._rooms if room not in keep]:
            del self._rooms[room]

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
        oldest = self._clock.seconds() - self._retention * 86400 if self._retention else 0
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
        d: Deferred[None] = self._pool.runInteraction(_insert, batch)
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
        d: Deferred[None] = self._pool.runOperation("DELETE FROM events WHERE at < ?", (cutoff,))
        d.addErrback(self._failed, "prune history")
        return d

    def _failed(self, failure: Any, what: str) -> None:
        self._log.failure("could not {what}", failure, what=what)


def _insert(cursor: Any, rows: list[Row]) -> None:
    """
    Insert C{rows} into the events table (runs in a pool thread).
    """
    cursor.executemany(
        "INSERT INTO events (at, kind, nickname, target, text, room) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
