"""
Flood control at the wire: when a connection may read, for every front
end alike.

A front end reads no more from its socket, and holds back what it has
already read, while the session's flood control by lines says to wait
(L{twistedchat.session.ChatSession.flood_wait}) and while a command checks
a password; it only stops reading while the connection is over its budget
of bytes (C{--flood-bytes}, C{--flood-byte-burst}), since what was read is
already paid for. The kernel's TCP buffers then hold the sender back: no
input is dropped or reordered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from twistedchat.throttles import TokenBucket

#: Shared by every gate that is open (each frozenset() call makes a new
#: object).
_OPEN: frozenset[str] = frozenset()


class Reader(Protocol):
    """
    What an L{InputGate} pauses: a transport, as a push producer of what
    it reads.
    """

    def pauseProducing(self) -> None:
        """Stop reading from the socket."""

    def resumeProducing(self) -> None:
        """Read from the socket again."""


class InputGate:
    """
    Pauses one connection's reading for flood control by lines, its byte
    budget and password checks, and says when input read meanwhile may be
    handled again.

    The reasons are C{"flood"}, C{"bytes"} and C{"password"}; reading
    resumes once there are none. Every reason but C{"bytes"} also holds
    input back: the gate calls C{hold(True)} when the first such reason
    starts and C{hold(False)} when the last one ends, and the front end
    handles what it holds then (which may pause the gate again).
    """

    def __init__(
        self,
        clock: IReactorTime,
        reader: Reader,
        flood_wait: Callable[[], float],
        hold: Callable[[bool], None],
        byte_rate: float = 0,
        byte_burst: float = 0,
    ) -> None:
        """
        @param clock: the chat's clock.
        @param reader: the transport to pause and resume.
        @param flood_wait: counts one line against the session's flood
            control and returns the seconds to wait before the next
            (L{twistedchat.session.ChatSession.flood_wait}).
        @param hold: told C{True} when input must be held back, C{False}
            when it may be handled again.
        @param byte_rate: bytes per second of the byte budget; C{0} for
            none.
        @param byte_burst: bytes the budget allows at once.
        """
        self._clock = clock
        self._reader = reader
        self._flood_wait = flood_wait
        self._hold = hold
        self._bytes = TokenBucket(byte_rate, byte_burst, clock.seconds()) if byte_rate else None
        self._reasons = _OPEN
        self._holding = False
        self._timers: dict[str, IDelayedCall] = {}
        self._stopped = False

    @property
    def holding(self) -> bool:
        """
        Whether input must be held back (flood control or a password
        check), rather than handled.
        """
        return self._holding

    def line_handled(self) -> None:
        """
        Count a line (or a message) just handled against flood control,
        and hold input back for as long as it says.
        """
        wait = self._flood_wait()
        if wait and "flood" not in self._reasons:
            self._pause("flood", wait)

    def bytes_received(self, count: int) -> None:
        """
        Charge C{count} bytes that arrived to the byte budget, and stop
        reading while it is overdrawn. Bytes already read are still
        handled, so at most one read (Twisted reads 64 KiB at a time) goes
        beyond the budget.
        """
        if self._bytes is None or self._stopped:
            return
        wait = self._bytes.take(count, self._clock.seconds())
        if wait and "bytes" not in self._reasons:
            self._pause("bytes", wait)

    def wait_for(self, done: Deferred[None] | None) -> None:
        """
        Hold input back until C{done} (a command checking a password, or
        reading the database) fires; C{None} or a fired one holds nothing.
        """
        if done is not None and not done.called:
            self._pause("password")
            done.addBoth(lambda _: self._resume("password"))

    def stop(self) -> None:
        """
        The connection is closing: cancel the timers, and resume nothing
        from now on.
        """
        self._stopped = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def _pause(self, reason: str, wait: float | None = None) -> None:
        """
        Stop reading for C{reason}, for C{wait} seconds or until
        L{_resume}.
        """
        if not self._reasons:
            self._reader.pauseProducing()
        self._reasons = self._reasons | {reason}
        if wait is not None:
            self._timers[reason] = self._clock.callLater(wait, self._resume, reason)
        if reason != "bytes" and not self._holding:
            self._holding = True
            self._hold(True)

    def _resume(self, reason: str) -> None:
        self._reasons = self._reasons - {reason}
        self._timers.pop(reason, None)
        if self._stopped or self._reasons - {"bytes"}:
            return
        if self._holding:
            self._holding = False
            self._hold(False)  # may pause again
        if not self._reasons and not self._stopped:
            self._reader.resumeProducing()
