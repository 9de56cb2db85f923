"""
Property tests: arbitrary bytes from the network, split at arbitrary
points, never raise, frame the same way, and never put a control character
on another user's terminal.
"""

from __future__ import annotations

from fakeclients import FakeClient, chatters, make_factory
from hypothesis import given, settings
from hypothesis import strategies as st

TOKENS = [
    b"\n",
    b"\r\n",
    b"\r",
    b"\r\x00",
    b" ",
    b"\t",
    b"alice",
    b"bob",
    b"mallory",
    b"/msg bob ",
    b"/nick ",
    b"/me ",
    b"/who",
    b"/help",
    b"/quit",
    b".exit",
    b"//",
    b"\xff",
    b"\xff\xff",
    b"\xff\xf4",
    b"\xff\xfb\x01",
    b"\xff\xfa\x18\x00xterm\xff\xf0",
    b"\x1b[31m",
    b"\x1b]0;t\x07",
    b"\xc2\x9b",
    b"\xe2\x80\xae",
    b"\xc3",
    b"\x80",
    b"x" * 90,
    "é漢😀".encode(),
]

network_bytes = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.binary(max_size=20)), max_size=60
).map(b"".join)


def play(data: bytes, cuts: list[int]) -> tuple[bytes, bytes, bool]:
    """
    Connect an observer (registered as bob) and a new connection, feed
    C{data} to the new connection in pieces cut at C{cuts}, and return what
    the sender and the observer received and whether the sender was closed.
    """
    factory = make_factory(max_line_length=80, max_nick_length=9, flood_rate=0)
    (bob,) = chatters(factory, "bob")
    sender = FakeClient(factory)
    start = 0
    for cut in sorted(set(c for c in cuts if 0 < c < len(data))) + [len(data)]:
        if sender.closed:
            break
        sender.send(data[start:cut])
        start = cut
    return sender.output(), bob.output(), sender.closed


@settings(max_examples=1000, deadline=None)
@given(network_bytes, st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_arbitrary_input(data: bytes, cuts: list[int]) -> None:
    """
    For any bytes split anywhere: nothing raises, both sides see exactly
    what they see when the bytes arrive in one piece, and the observer's
    output is whole CRLF-terminated lines of UTF-8 with no control
    characters.
    """
    whole = play(data, [])
    assert play(data, cuts) == whole
    seen_by_other = whole[1]
    assert seen_by_other == b"" or seen_by_other.endswith(b"\r\n")
    for line in seen_by_other.split(b"\r\n"):
        text = line.decode("utf-8")
        assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in text), text
