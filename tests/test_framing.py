"""
Tests for L{twistedchat.framing}: over-long lines are reported once and
skipped to their end, however the bytes arrive.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twistedchat.framing import BoundedLineReceiver


class Lines(BoundedLineReceiver):
    """
    Records the lines and the over-long ones it gets.
    """

    delimiter = b"\n"
    MAX_LENGTH = 8

    def __init__(self, delimiter: bytes = b"\n") -> None:
        self.delimiter = delimiter
        self.lines: list[bytes] = []
        self.too_long = 0

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def line_too_long(self) -> None:
        self.too_long += 1


@given(
    st.lists(st.integers(min_value=1, max_value=50), max_size=10),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_long_line_skipped_however_split(cuts: list[int], delimiter: bytes) -> None:
    """
    Whatever reads the input arrives in, the short lines around an
    over-long one are received whole and in order, and the long one is
    reported once and never received; also with a delimiter of two bytes
    split between two reads.
    """
    data = delimiter.join([b"one", b"x" * 30, b"two", b"three", b""])
    receiver = Lines(delimiter)
    start = 0
    for cut in sorted(set(cuts)):
        receiver.dataReceived(data[start:cut])
        start = max(start, cut)
    receiver.dataReceived(data[start:])
    assert receiver.lines == [b"one", b"two", b"three"]
    assert receiver.too_long == 1
