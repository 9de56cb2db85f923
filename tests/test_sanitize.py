"""
Tests for L{twistedchat.sanitize}.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistedchat.sanitize import clean_line


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"plain text", "plain text"),
        (b"\x1b[1;31mbold red\x1b[0m", "bold red"),
        (b"\x1b[2J\x1b[H", ""),
        (b"a\x1b]0;window title\x07b", "ab"),
        (b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
        (b"a\x1bPdevice control\x1b\\b", "ab"),
        (b"a\x1b(0b", "ab"),
        (b"a\x1b7b\x1b8", "ab"),
        (b"x\xc2\x9b2Jy", "xy"),
        (b"bell\x07 back\x08space del\x7f", "bell backspace del"),
        (b"tab\there", "tab here"),
        (b"cr\rlf", "crlf"),
        (b"\xe2\x80\xaeevil\xe2\x81\xa6", "evil"),
        (b"bad \xc3\x28 utf8", "bad \ufffd( utf8"),
        ("emoji 😀 漢字".encode(), "emoji 😀 漢字"),
        (b"unterminated \x1b]0;title", "unterminated "),
    ],
)
def test_clean_line(raw: bytes, text: str) -> None:
    """
    clean_line decodes UTF-8 (invalid bytes become U+FFFD), removes whole
    escape sequences and control strings, and removes other controls.
    """
    assert clean_line(raw) == text


@given(st.binary())
def test_no_control_characters_survive(raw: bytes) -> None:
    """
    Whatever the bytes, the result holds no C0, DEL, C1 or bidi control.
    """
    text = clean_line(raw)
    for char in text:
        code = ord(char)
        assert code >= 0x20 and not 0x7F <= code <= 0x9F
        assert not 0x202A <= code <= 0x202E and not 0x2066 <= code <= 0x2069
