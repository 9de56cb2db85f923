"""
Line framing shared by the telnet and IRC front ends: Twisted's
L{LineReceiver}, except that a line longer than C{MAX_LENGTH} bytes is
reported and thrown away up to its end, and the connection stays usable
(L{LineReceiver} would close it).
"""

from __future__ import annotations

from twisted.protocols.basic import LineReceiver


class BoundedLineReceiver(LineReceiver):
    """
    A L{LineReceiver} that survives an over-long line: L{line_too_long} is
    called once for it, and what follows up to the next delimiter is
    dropped, however many reads it takes to arrive.
    """

    # Set while the rest of an over-long line is being thrown away; with
    # the end of what was thrown away, which may hold the start of a
    # delimiter of several bytes.
    _discarding = False
    _discarded_tail = b""
    # Input that followed an over-long line in the same read.
    _after_long_line = b""

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines (L{LineReceiver.dataReceived}), skipping
        the rest of an over-long line.
        """
        while True:
            if self._discarding:
                data = self._discarded_tail + data
                end = data.find(self.delimiter)
                if end == -1:
                    self._discarded_tail = data[len(data) - len(self.delimiter) + 1 :]
                    return
                self._discarding = False
                self._discarded_tail = b""
                data = data[end + len(self.delimiter) :]
            LineReceiver.dataReceived(self, data)
            data, self._after_long_line = self._after_long_line, b""
            if not data:
                return

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Report the over-long line and skip to its end.

        @param line: what L{LineReceiver} had buffered: the start of the
            long line, and everything after it if its end was received.
        """
        self.line_too_long()
        end = line.find(self.delimiter)
        if end == -1:
            self._discarding = True
            self._discarded_tail = line[len(line) - len(self.delimiter) + 1 :]
        else:
            self._after_long_line = line[end + len(self.delimiter) :]

    def hold(self, holding: bool) -> None:
        """
        Stop handling the lines already received, or handle them again
        (L{twistedchat.flood.InputGate}'s C{hold}): they wait in
        L{LineReceiver}'s buffer meanwhile; handling them may hold again.
        """
        self.paused = holding
        if not holding:
            self.dataReceived(b"")

    def skip_line(self) -> None:
        """
        Throw away what arrives up to the next delimiter.
        """
        self._discarding = True

    def line_too_long(self) -> None:
        """
        A line longer than C{MAX_LENGTH} bytes arrived; override to say so.
        """
