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

from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

#: Bytes of output after which a queue is flushed at once rather than at
#: the end of the reactor iteration: the transport's own C{bufferSize}.
FLUSH_AT = 64 * 1024

#: Bytes a Twisted transport buffers before it pauses its producer
#: (C{twisted.internet.abstract.FileDescriptor.bufferSize}).
TRANSPORT_BUFFER = 64 * 1024


class Flusher:
    """
    Flushes every L{SendQueue} that has output, once per reactor iteration
    (C{callLater(0)} runs before the reactor next waits for I/O).
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._due: list[SendQueue] = []

    def schedule(self, queue: SendQueue) -> None:
        """
        Flush C{queue} at the start of the next reactor iteration.
        """
        if not self._due:
            self.clock.callLater(0, self._flush)
        self._due.append(queue)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for queue in due:
            try:
                queue.flush()
            except Exception:
                # One connection's failure must not leave the others'
                # output unsent.
                self._log.failure("Could not flush a connection's output")


class SendQueueOwner(Protocol):
    """
    What a L{SendQueue} tells the connection it belongs to.
    """

    def sendq_exceeded(self) -> None:
        """
        More than the limit waits for the client (L{SendQueue.waiting}),
        or the transport stayed congested for longer than the timeout.
        """


@implementer(IPushProducer)
class SendQueue:
    """
    Output of one connection, registered with its transport as a streaming
    producer.

    What waits for the client is counted in two places: bytes queued here,
    and bytes already handed to the transport that it has not sent yet.
    Twisted's transports do not say how much they buffer, only that they
    are full (C{pauseProducing}, when their buffer passes C{bufferSize},
    64 KiB) and that they have sent everything (C{resumeProducing}). Since
    nothing is handed over while the transport is full, its buffer holds at
    most C{bufferSize} plus the last write when it says so; that bound is
    what L{waiting} counts for it, so the SendQ limit and the log's byte
    count include it.

    A pause during a TLS handshake is not congestion: Twisted's TLS
    transport buffers what it is given until the handshake is done and
    pauses its producer meanwhile, but the client is not behind on
    anything. The owner says when the handshake is done (L{handshaking};
    Twisted tells it through L{twisted.internet.interfaces.IHandshakeListener}).
    Nor is a pause before anything was handed over.

    @ivar handshaking: whether the transport is a TLS one whose handshake
        is not done yet.
    @ivar congested: whether the transport is full of bytes this queue
        handed it, so that output waits here until it drains.
    @ivar queued: bytes waiting here.
    @ivar in_transport: bytes handed to the transport that it may not have
        sent yet, counted while it is congested (an upper bound, see
        above); C{0} otherwise.
    """

    def __init__(
        self,
        consumer: IConsumer,
        flusher: Flusher,
        limit: int,
        owner: SendQueueOwner,
        handshaking: bool = False,
        timeout: float = 0.0,
    ) -> None:
        """
        @param consumer: the transport to write to.
        @param flusher: schedules L{flush} once per reactor iteration.
        @param limit: the most bytes (L{waiting}) that may wait for the
            client while the transport is congested; more calls
            C{owner.sendq_exceeded}.
        @param owner: the connection, told when its output exceeds
            C{limit} or stays congested for C{timeout} seconds.
        @param handshaking: whether C{consumer} is a TLS transport whose
            handshake is not done yet.
        @param timeout: seconds the transport may stay congested before
            C{owner.sendq_exceeded} is called; C{0} for no limit.
        """
        self._consumer = consumer
        self._flusher = flusher
        self._limit = limit
        self._owner = owner
        self._timeout = timeout
        self._timer: IDelayedCall | None = None
        self._pending: list[bytes] = []
        self._scheduled = False
        # Whether the transport asked to pause (full, or TLS handshaking).
        self._paused = False
        # Bytes handed over since the transport last said it sent
        # everything, and the size of the last write.
        self._handed = 0
        self._last_write = 0
        self.handshaking = handshaking
        self.congested = False
        self.queued = 0
        self.in_transport = 0
        consumer.registerProducer(self, True)

    @property
    def waiting(self) -> int:
        """
        Bytes waiting for the client: queued here, plus what the congested
        transport may still hold.
        """
        return self.queued + self.in_transport

    def write(self, data: bytes) -> None:
        """
        Queue C{data}. It is sent at the next flush, or at once when 64 KiB
        have collected; while the transport is paused it waits, and more
        than the limit waiting while congested calls
        C{owner.sendq_exceeded}.
        """
        self._pending.append(data)
        self.queued += len(data)
        if self._paused:
            if self.congested and self.queued + self.in_transport > self._limit:
                self._owner.sendq_exceeded()
        elif self.queued >= FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._flusher.schedule(self)

    def flush(self) -> None:
        """
        Hand everything queued to the transport now, unless it asked to
        pause.
        """
        self._scheduled = False
        if self._paused or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self.queued = 0
        self._handed += len(data)
        self._last_write = len(data)
        self._consumer.write(data)

    def close(self) -> None:
        """
        Hand everything queued to the transport and unregister from it, as
        the connection is about to close. (Twisted's TLS transport does not
        close while a producer is registered.)
        """
        self._paused = False
        self.flush()
        self._consumer.unregisterProducer()

    def clear(self) -> None:
        """
        Throw away everything queued (the connection is being cut off, or
        is gone), and stop timing congestion.
        """
        self._pending.clear()
        self.queued = 0
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # IPushProducer, called by the transport.

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full, or it cannot send yet (a TLS
        handshake): keep output here from now on. It is congestion only if
        this queue handed it bytes it has not sent, after any handshake.
        """
        self._paused = True
        if self._handed and not self.congested and not self.handshaking:
            self.congested = True
            self.in_transport = min(self._handed, TRANSPORT_BUFFER + self._last_write)
            if self._timeout:
                self._timer = self._flusher.clock.callLater(
                    self._timeout, self._owner.sendq_exceeded
                )

    def resumeProducing(self) -> None:
        """
        The transport has sent everything (or finished its handshake): hand
        it what is queued.
        """
        self._paused = False
        self._handed = 0
        self.in_transport = 0
        if self.congested:
            self.congested = False
            self._cancel_timer()
        self.flush()

    def stopProducing(self) -> None:
        """
        The connection is gone: forget what is queued.
        """
        self.clear()
