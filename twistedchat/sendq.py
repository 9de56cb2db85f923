"""
SendQ: the bounded output queue of each connection, flushed once per
reactor iteration.

Output for a connection collects in its L{SendQueue} and is handed to the
transport in one write per reactor iteration (L{Flusher}), so a burst of
broadcasts costs each recipient one write, not one per line.

Twisted's TCP transport accepts every write and buffers it in memory; it
only tells a registered streaming producer when its buffer passes its
C{bufferSize} (64 KiB) and when it has drained (Twisted's "Producers and
Consumers" howto). L{SendQueue} is that producer: while the transport says
it is full, output stays queued here, counted in bytes, so the server can
cut off a client whose queue passes the SendQ limit, as IRC servers do
(ngIRCd, Ergo, InspIRCd), instead of growing without bound.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime
from zope.interface import implementer

#: Bytes of output after which a queue is flushed at once rather than at
#: the end of the reactor iteration: the transport's own C{bufferSize}.
FLUSH_AT = 64 * 1024


class Flusher:
    """
    Flushes every L{SendQueue} that has output, once per reactor iteration
    (C{callLater(0)} runs before the reactor next waits for I/O).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._due: list[SendQueue] = []

    def schedule(self, queue: SendQueue) -> None:
        """
        Flush C{queue} at the start of the next reactor iteration.
        """
        if not self._due:
            self._clock.callLater(0, self._flush)
        self._due.append(queue)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for queue in due:
            queue.flush()


class SendQueueOwner(Protocol):
    """
    What a L{SendQueue} tells the connection it belongs to.
    """

    def sendq_congested(self) -> None:
        """
        The transport's buffer filled up: output now waits in the queue.
        """

    def sendq_drained(self) -> None:
        """
        The transport's buffer drained and everything queued went to it.
        """

    def sendq_exceeded(self) -> None:
        """
        More than the limit waits in the queue.
        """


@implementer(IPushProducer)
class SendQueue:
    """
    Output of one connection, registered with its transport as a streaming
    producer.

    @ivar congested: whether the transport's buffer is full, so that
        output waits here until it drains.
    @ivar queued: bytes waiting here (not counting the transport's own
        buffer, which takes at most one flush beyond its 64 KiB before it
        says it is full).
    """

    def __init__(
        self,
        consumer: IConsumer,
        flusher: Flusher,
        limit: int,
        owner: SendQueueOwner,
    ) -> None:
        """
        @param consumer: the transport to write to.
        @param flusher: schedules L{flush} once per reactor iteration.
        @param limit: the most bytes that may wait here while the transport
            is congested; more calls C{owner.sendq_exceeded}.
        @param owner: the connection, told when output congests, drains or
            exceeds C{limit}.
        """
        self._consumer = consumer
        self._flusher = flusher
        self._limit = limit
        self._owner = owner
        self._pending: list[bytes] = []
        self._scheduled = False
        self._reported = False
        self.congested = False
        self.queued = 0
        consumer.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        """
        Queue C{data}. It is sent at the next flush, or at once when 64 KiB
        have collected; while the transport is congested it waits, and more
        than the limit waiting calls C{owner.sendq_exceeded}.
        """
        self._pending.append(data)
        self.queued += len(data)
        if self.congested:
            if self.queued > self._limit:
                self._owner.sendq_exceeded()
        elif self.queued >= FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._flusher.schedule(self)

    def flush(self) -> None:
        """
        Hand everything queued to the transport now, unless its buffer is
        full.
        """
        self._scheduled = False
        if self.congested or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self.queued = 0
        self._consumer.write(data)

    def close(self) -> None:
        """
        Hand everything queued to the transport and unregister from it, as
        the connection is about to close. (Twisted's TLS transport does not
        close while a producer is registered.)
        """
        self.congested = False
        self.flush()
        self._consumer.unregisterProducer()

    def clear(self) -> None:
        """
        Throw away everything queued (the connection is being cut off).
        """
        self._pending.clear()
        self.queued = 0

    # IPushProducer, called by the transport.

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: keep output here from now on.
        """
        self.congested = True
        if not self._reported:
            self._reported = True
            self._owner.sendq_congested()

    def resumeProducing(self) -> None:
        """
        The transport's buffer has drained: hand it what is queued.
        """
        self.congested = False
        self.flush()
        if not self.congested and self._reported:
            self._reported = False
            self._owner.sendq_drained()

    def stopProducing(self) -> None:
        """
        The connection is gone: forget what is queued.
        """
        self.clear()
