"""
History: every chat line, action, join, leave and nickname change, with a
UTC timestamp, in SQLite; the most recent ones also in memory for replay.

The recent events are read at start-up (L{load_recent}, through
L{twistedchat.database.open_database}). While the server runs, writes go
through Twisted's C{adbapi} (a thread pool), so the reactor never waits
for the disk; they are batched every half second, so what a user saw is
on disk within a second (WAL journal; a killed server loses at most the
last batch).

Private messages are stored for their two participants' own replay: they
are shown only to a viewer who proved (with a password) that they own the
sender's or the recipient's registered nickname, and never to anyone
else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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
    Left,
    NicknameChanged,
    PrivateMessage,
    Renderable,
)
from twistedchat.nicknames import nickname_key

#: Seconds between batched writes.
FLUSH_INTERVAL = 0.5


@dataclass
class Record(Renderable):
    """
    One stored event and when it happened (seconds since the epoch, UTC).
    A front end renders it once for everyone it replays it to (see
    L{Renderable.render}).
    """

    at: float
    event: Event


def _row(record: Record) -> tuple[float, str, str, str | None, str | None]:
    """
    Turn C{record} into a row of the events table.
    """
    at, event = record.at, record.event
    match event:
        case ChatLine(sender=sender, text=text):
            return (at, "chat", sender, None, text)
        case Action(sender=sender, text=text):
            return (at, "action", sender, None, text)
        case Joined(nickname=nickname):
            return (at, "join", nickname, None, None)
        case Left(nickname=nickname, reason=reason):
            return (at, "leave", nickname, None, reason)
        case NicknameChanged(old=old, new=new):
            return (at, "nick", old, new, None)
        case PrivateMessage(sender=sender, recipient=recipient, text=text):
            return (at, "private", sender, recipient, text)
    raise TypeError(f"{event!r} is not stored")


def _record(at: float, kind: str, nickname: str, target: str | None, text: str | None) -> Record:
    """
    Turn a row of the events table back into a L{Record}.
    """
    event: Event
    match kind:
        case "chat":
            event = ChatLine(nickname, text or "")
        case "action":
            event = Action(nickname, text or "")
        case "join":
            event = Joined(nickname)
        case "leave":
            event = Left(nickname, text or "")
        case "nick":
            event = NicknameChanged(nickname, target or "")
        case "private":
            event = PrivateMessage(nickname, target or "", text or "")
        case _:
            raise ValueError(f"unknown event kind {kind!r}")
    return Record(at, event)


def load_recent(connection: Any, keep: int) -> list[Record]:
    """
    Read the last C{keep} events, private messages included, oldest first
    (at start-up).
    """
    rows = connection.execute(
        "SELECT at, kind, nickname, target, text FROM events ORDER BY id DESC LIMIT ?",
        (keep,),
    ).fetchall()
    return [_record(*row) for row in reversed(rows)]


class History:
    """
    The chat's history: the recent events in memory, everything on disk.

    @ivar cap: how many recent events are kept in memory and can be
        replayed (the most C{/history} shows).
    """

    _log = Logger()

    def __init__(
        self,
        pool: ConnectionPool | None,
        clock: IReactorTime,
        recent: Iterable[Record] = (),
        cap: int = 200,
        retention: float = 0,
    ) -> None:
        """
        @param pool: the pool from L{twistedchat.database.make_pool}, or C{None} to keep the
            recent events in memory only (C{--database :memory:}).
        @param recent: the recent events read at start-up, oldest first.
        @param retention: days to keep events for; C{0} keeps them forever.
        """
        self.cap = cap
        self._pool = pool
        self._clock = clock
        self._recent: deque[Record] = deque(recent, maxlen=cap)
        self._pending: list[Record] = []
        self._retention = retention
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
        Stop the periodic work, write what is pending and close the pool.

        @return: fires once the last batch is on disk.
        """
        for call in (self._flusher, self._pruner):
            if call.running:
                call.stop()
        d = self.flush()
        if self._pool is not None:
            pool = self._pool
            d.addBoth(lambda result: (pool.close(), result)[1])
        return d

    def record(self, event: Event) -> None:
        """
        Remember C{event} as happening now; it reaches the disk with the
        next batch.
        """
        record = Record(self._clock.seconds(), event)
        self._pending.append(record)
        self._recent.append(record)

    def recent(self, count: int, viewer: str | None = None, since: float = 0.0) -> list[Record]:
        """
        Return the last C{count} events (at most C{cap}) that C{viewer} may
        see, oldest first: every public event, and the private messages
        C{viewer} sent or received from C{since} on; none older than the
        retention.

        @param viewer: the nickname key of the account the viewer proved
            it owns, or C{None}, who sees no private messages.
        @param since: seconds since the epoch: when the viewer's account
            was registered. Before that the nickname was anyone's, so its
            private messages were someone else's.
        """
        oldest = self._clock.seconds() - self._retention * 86400 if self._retention else 0
        visible: list[Record] = []
        # Newest first, stopping at count: every joiner asks for this.
        for record in reversed(self._recent):
            if len(visible) >= count:
                break
            event = record.event
            if record.at >= oldest and (
                not isinstance(event, PrivateMessage)
                or (
                    record.at >= since
                    and viewer in (nickname_key(event.sender), nickname_key(event.recipient))
                )
            ):
                visible.append(record)
        visible.reverse()
        return visible

    def flush(self) -> Deferred[None]:
        """
        Write the pending events in one transaction, in a thread.
        """
        if not self._pending or self._pool is None:
            self._pending = []
            return succeed(None)
        rows = [_row(record) for record in self._pending]
        self._pending = []
        d = self._pool.runInteraction(_insert, rows)
        d.addErrback(self._failed, "write history")
        return d

    def prune(self) -> Deferred[None]:
        """
        Delete events older than the retention, in a thread.
        """
        if self._pool is None:
            return succeed(None)
        cutoff = self._clock.seconds() - self._retention * 86400
        d = self._pool.runOperation("DELETE FROM events WHERE at < ?", (cutoff,))
        d.addErrback(self._failed, "prune history")
        return d

    def _failed(self, failure: Any, what: str) -> None:
        self._log.failure("could not {what}", failure, what=what)


def _insert(cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    """
    Insert C{rows} into the events table (runs in a pool thread).
    """
    cursor.executemany(
        "INSERT INTO events (at, kind, nickname, target, text) VALUES (?, ?, ?, ?, ?)", rows
    )
