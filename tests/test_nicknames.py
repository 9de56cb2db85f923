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
    nickname_skeleton,
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


@pytest.mark.parametrize(
    "group",
    [
        ["alice", "aIice", "al1ce", "a|ice", "a\\ice", "ALICE", "AlIcE", "AL1CE", "aiice"],
        ["bob", "b0b", "BOB", "bOb", "B0B"],
        ["Guest1234", "GuestI234", "guestl234", "GUEST|234"],
        ["[foo]", "{f0o}", "{FOO]"],
    ],
)
def test_look_alikes_share_a_skeleton(group: list[str]) -> None:
    """
    Nicknames that differ only by look-alike characters (I l 1 | \\, and
    O o 0) or by case have the same skeleton.
    """
    assert {nickname_skeleton(nickname) for nickname in group} == {nickname_skeleton(group[0])}


@pytest.mark.parametrize(
    "first, second",
    [("alice", "alive"), ("bob", "bobby"), ("Guest1234", "Guest1235"), ("rn", "m"), ("a-b", "a_b")],
)
def test_different_nicknames_have_different_skeletons(first: str, second: str) -> None:
    """
    Nicknames that differ by other characters have different skeletons.
    """
    assert nickname_skeleton(first) != nickname_skeleton(second)


nicknames = st.text(st.sampled_from("aAbBiIlL1|\\oO0[]{}~^`_-"), max_size=12)


@given(nicknames, st.randoms())
def test_skeleton_is_a_function_of_the_key(nickname: str, rng: random.Random) -> None:
    """
    Nicknames with equal keys (any RFC 2812 case variant) have equal
    skeletons, so a skeleton can be computed from a stored key; and the
    skeleton of a skeleton is itself.
    """
    variant = "".join(
        char.translate(str.maketrans("{}|^", "[]\\~")).upper() if rng.random() < 0.5 else char
        for char in nickname
    )
    assert nickname_key(variant) == nickname_key(nickname)
    skeleton = nickname_skeleton(nickname)
    assert nickname_skeleton(variant) == skeleton == nickname_skeleton(nickname_key(nickname))
    assert nickname_skeleton(skeleton) == skeleton
