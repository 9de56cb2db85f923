"""
History: every chat line, action, join, leave and nickname change, with a
UTC timestamp, in SQLite; the most recent ones also in memory for replay.

Replay and C{/history} count the conversation: chat lines, actions and
the private messages the viewer may see. The notices (joins, leaves,
nickname changes) that happened among the lines shown come with them, but
never more notices than lines asked for, and they are kept apart in
memory, so a storm of joins and leaves cannot push the conversation out.

The recent events are read at start-up (L{load_recent}, through
L{twistedchat.database.open_database}). While the server runs, writes go
through Twisted's C{adbapi} (a thread pool), so the reactor never waits
for the disk; they are batched every half second, so what a user saw is
on disk within a second (WAL journal; a killed server loses at most the
last batch). One batch is written at a time, in order. A batch that could
not be written (the database locked by another process for longer than
L{twistedchat.database.BUSY_TIMEOUT}, a full disk) is kept and tried again
with the next one; at most L{MAX_UNWRITTEN} events wait so, and beyond
that the oldest are dropped, and logged.

Private messages are stored for their two participants' own replay: they
are shown only to a viewer who proved (with a password) that they own the
sender's or the recipient's registered nickname, and never to anyone
else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
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
    Left,
    NicknameChanged,
    PrivateMessage,
    Renderable,
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
    leave, a nickname change).
    """
    return isinstance(event, _CONVERSATION)


#: Their kinds in the events table; the others (join, leave, nick) are
#: notices.
_CONVERSATION_KINDS = ("chat", "action", "private")

#: A row of the events table: at, kind, nickname, target, text.
Row: TypeAlias = tuple[float, str, str, str | None, str | None]


@dataclass
class Record(Renderable):
    """
    One stored event and when it happened (seconds since the epoch, UTC).
    A front end renders it once for everyone it replays it to (see
    L{Renderable.render}).
    """

    at: float
    event: Event


def _row(record: Record) -> Row:
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
    Read, at start-up, what L{History} keeps in memory: the last C{keep}
    conversation events (chat lines, actions and private messages) and,
    of the notices (joins, leaves, nickname changes) since the oldest of
    them, the last C{keep}; oldest first.

    Two queries, so that the conversation is found however many notices
    followed it.

    @param connection: an open C{sqlite3} connection.
    @param keep: how many of each to read (C{--history-max}).
    """
    if keep <= 0:
        return []
    kinds = ", ".join("?" * len(_CONVERSATION_KINDS))
    lines = connection.execute(
        "SELECT id, at, kind, nickname, target, text FROM events"
        f" WHERE kind IN ({kinds}) ORDER BY id DESC LIMIT ?",
        (*_CONVERSATION_KINDS, keep),
    ).fetchall()
    after = lines[-1][0] if len(lines) == keep else 0
    notices = connection.execute(
        "SELECT id, at, kind, nickname, target, text FROM events"
        f" WHERE kind NOT IN ({kinds}) AND id > ? ORDER BY id DESC LIMIT ?",
        (*_CONVERSATION_KINDS, after, keep),
    ).fetchall()
    return [_record(*row[1:]) for row in sorted(lines + notices)]


class History:
    """
    The chat's history: the recent events in memory, everything on disk.

    In memory, the last C{cap} conversation events (chat lines, actions,
    private messages) and, apart from them, the last C{cap} notices (joins,
    leaves, nickname changes), so that notices never push the
    conversation out.

    @ivar cap: how many recent conversation events are kept in memory and
        can be replayed (the most C{/history} shows).
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
        @param recent: the recent events read at start-up (L{load_recent}), oldest first.
        @param retention: days to keep events for; C{0} keeps them forever.
        @param max_unwritten: the most events kept while the database cannot be
            written (L{MAX_UNWRITTEN}); at least 1.
        """
        self.cap = cap
        self._pool = pool
        self._clock = clock
        self._sequence = 0
        self._conversation: deque[tuple[int, Record]] = deque(maxlen=cap)
        self._notices: deque[tuple[int, Record]] = deque(maxlen=cap)
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

    def record(self, event: Event) -> None:
        """
        Remember C{event} as happening now; it reaches the disk with the
        next batch.

        If L{MAX_UNWRITTEN} events are already waiting to be written, the
        oldest not being written now is dropped; the first drop logs a
        warning, and the next successful write logs how many were dropped.
        """
        record = Record(self._clock.seconds(), event)
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
        Keep C{record} in memory for replay, numbered in the order of
        events.
        """
        self._sequence += 1
        kept = self._conversation if is_conversation(record.event) else self._notices
        kept.append((self._sequence, record))

    def recent(self, count: int, viewer: str | None = None, since: float = 0.0) -> list[Record]:
        """
        Return, oldest first, the last C{count} conversation events (at
        most C{cap}) that C{viewer} may see: chat lines, actions, and the
        private messages C{viewer} sent or received from C{since} on; and
        among them the most recent notices (joins, leaves, nickname
        changes), at most C{count} too. None older than the retention.

        The notices are those since the oldest conversation event returned,
        or, if fewer than C{count} were found, since the oldest one kept.

        @param viewer: the nickname key of the account the viewer proved
            it owns, or C{None}, who sees no private messages.
        @param since: seconds since the epoch: when the viewer's account
            was registered. Before that the nickname was anyone's, so its
            private messages were someone else's.
        """
        if count <= 0:
            return []
        oldest = self._clock.seconds() - self._retention * 86400 if self._retention else 0
        lines: list[tuple[int, Record]] = []
        # Newest first, stopping at count: every joiner asks for this.
        for sequence, record in reversed(self._conversation):
            if len(lines) >= count:
                break
            event = record.event
            if record.at >= oldest and (
                not isinstance(event, PrivateMessage)
                or (
                    record.at >= since
                    and viewer in (nickname_key(event.sender), nickname_key(event.recipient))
                )
            ):
                lines.append((sequence, record))
        if len(lines) >= count:
            start = lines[-1][0]
        elif len(self._conversation) == self._conversation.maxlen:
            # Older conversation was forgotten: so are the notices among it.
            start = self._conversation[0][0]
        else:
            start = 0
        notices: list[tuple[int, Record]] = []
        for sequence, record in reversed(self._notices):
            if sequence < start or len(notices) >= count:
                break
            if record.at >= oldest:
                notices.append((sequence, record))
        return [record for _, record in sorted(lines + notices, key=lambda pair: pair[0])]

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
        d = self._pool.runOperation("DELETE FROM events WHERE at < ?", (cutoff,))
        d.addErrback(self._failed, "prune history")
        return d

    def _failed(self, failure: Any, what: str) -> None:
        self._log.failure("could not {what}", failure, what=what)


def _insert(cursor: Any, rows: list[Row]) -> None:
    """
    Insert C{rows} into the events table (runs in a pool thread).
    """
    cursor.executemany(
        "INSERT INTO events (at, kind, nickname, target, text) VALUES (?, ?, ?, ?, ?)", rows
    )
