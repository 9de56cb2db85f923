"""
SendQ: the bounded output queue of one connection.

Twisted's TCP transport accepts every write and buffers it in memory; it
only tells a registered streaming producer when its buffer passes its
C{bufferSize} (64 KiB) and when it has drained (Twisted's "Producers and
Consumers" howto). L{SendQueue} is that producer: once the transport says
it is full, further output waits here, counted in bytes, so the server can
cut off a client whose queue passes the SendQ limit, as IRC servers do
(ngIRCd, Ergo, InspIRCd), instead of growing without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IConsumer, IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class SendQueue:
    """
    Output of one connection, registered with its transport as a streaming
    producer.

    @ivar congested: whether the transport's buffer is full, so that
        output waits in this queue.
    @ivar queued: bytes waiting in this queue (not counting the
        transport's own buffer of up to about 64 KiB).
    """

    def __init__(
        self,
        consumer: IConsumer,
        limit: int,
        on_congested: Callable[[], None],
        on_drained: Callable[[], None],
        on_exceeded: Callable[[], None],
    ) -> None:
        """
        @param consumer: the transport to write to.
        @param limit: the most bytes that may wait here; one more calls
            C{on_exceeded}.
        @param on_congested: called when the transport's buffer fills up.
        @param on_drained: called when everything queued has been handed to
            the transport and its buffer has room again.
        @param on_exceeded: called when more than C{limit} bytes wait.
        """
        self._consumer = consumer
        self._limit = limit
        self._on_congested = on_congested
        self._on_drained = on_drained
        self._on_exceeded = on_exceeded
        self._queue: deque[bytes] = deque()
        self._reported = False
        self.congested = False
        self.queued = 0
        consumer.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        """
        Send C{data} now if the transport has room, else queue it.
        """
        if not self.congested:
            self._consumer.write(data)
            return
        self._queue.append(data)
        self.queued += len(data)
        if self.queued > self._limit:
            self._on_exceeded()

    def clear(self) -> None:
        """
        Throw away everything queued (the connection is being cut off).
        """
        self._queue.clear()
        self.queued = 0

    # IPushProducer, called by the transport.

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: queue output from now on.
        """
        self.congested = True
        if not self._reported:
            self._reported = True
            self._on_congested()

    def resumeProducing(self) -> None:
        """
        The transport's buffer has drained: hand it queued output until it
        is full again or the queue is empty.
        """
        self.congested = False
        queue, write = self._queue, self._consumer.write
        while queue and not self.congested:
            data = queue.popleft()
            self.queued -= len(data)
            write(data)
        if not self.congested and self._reported:
            self._reported = False
            self._on_drained()

    def stopProducing(self) -> None:
        """
        The connection is gone: forget what is queued.
        """
        self.clear()
