"""
Tests for L{twistedchat.nicknames}.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistedchat.nicknames import (
    InvalidNickname,
    nickname_key,
    random_nickname,
    validate_nickname,
)


def test_case_mapping() -> None:
    """
    Keys fold ASCII case and the RFC 2812 pairs []\\~ and {}|^.
    """
    assert nickname_key("Foo[]\\~") == nickname_key("fOO{}|^")
    assert nickname_key("Ä") == "Ä"


@pytest.mark.parametrize(
    "nickname, message",
    [
        ("", "cannot be empty"),
        ("a" * 17, "at most 16 characters"),
        ("0day", "starts with a letter"),
        ("a b", "no spaces"),
    ],
)
def test_invalid(nickname: str, message: str) -> None:
    """
    validate_nickname raises InvalidNickname with a sentence saying why.
    """
    with pytest.raises(InvalidNickname, match=message):
        validate_nickname(nickname, 16)


@given(st.text(max_size=20))
def test_valid_nicknames_are_plain_ascii(nickname: str) -> None:
    """
    Any nickname that passes validation is printable ASCII without spaces.
    """
    try:
        validate_nickname(nickname, 16)
    except InvalidNickname:
        return
    assert nickname.isascii() and nickname.isprintable() and " " not in nickname


def test_random_nickname_is_free_and_valid() -> None:
    """
    random_nickname returns a valid GuestNNNN nickname whose key is not
    taken, even when most are.
    """
    rng = random.Random(5)
    taken = {nickname_key(f"Guest{n}") for n in range(1000, 9990)}
    nickname = random_nickname(taken, rng)
    assert nickname_key(nickname) not in taken
    validate_nickname(nickname, 16)
