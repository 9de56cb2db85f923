"""
Nickname rules, shared by every front end.

The grammar is RFC 2812 section 2.3.1, so that a later IRC front end can
share nicknames with telnet users::

    nickname = ( letter / special ) *( letter / digit / special / "-" )
    special  = "[" / "]" / "\\" / "`" / "_" / "^" / "{" / "|" / "}"

Nicknames are compared case-insensitively with the IRC case mapping of
RFC 2812 section 2.2: besides A-Z/a-z, the characters ``[]\\~`` are the
upper-case forms of ``{}|^``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Container

_SPECIAL = r"\[\]\\`_^{|}"
_NICKNAME = re.compile(rf"[A-Za-z{_SPECIAL}][A-Za-z0-9{_SPECIAL}-]*\Z")
_CASE_MAP = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")

#: The shortest maximum nickname length a server may set: RFC 2812 section
#: 1.2.1 gives nine characters, and random nicknames (C{Guest1234}) need it.
MINIMUM_MAX_LENGTH = 9


class InvalidNickname(ValueError):
    """
    A nickname breaks the grammar or the length limit. C{str()} of the
    exception is a sentence saying why, fit to show the user.
    """


class NicknameInUse(ValueError):
    """
    Someone else already has this nickname (compared case-insensitively).
    """


def nickname_key(nickname: str) -> str:
    """
    Return the form of C{nickname} used to compare nicknames: two nicknames
    are the same exactly when their keys are equal (RFC 2812 section 2.2).
    """
    return nickname.translate(_CASE_MAP)


def validate_nickname(nickname: str, max_length: int) -> None:
    """
    Check C{nickname} against the RFC 2812 grammar and C{max_length}
    (characters).

    @raise InvalidNickname: with a sentence saying what is wrong.
    """
    if not nickname:
        raise InvalidNickname("A nickname cannot be empty.")
    if len(nickname) > max_length:
        raise InvalidNickname(f"A nickname can be at most {max_length} characters long.")
    if _NICKNAME.match(nickname) is None:
        raise InvalidNickname(
            "A nickname starts with a letter or one of [ ] \\ ` _ ^ { | } "
            "and goes on with letters, digits, those characters or -; "
            "no spaces."
        )


def random_nickname(taken: Container[str], rng: random.Random) -> str:
    """
    Return a nickname such as C{Guest4821} whose key is not in C{taken}.

    @param taken: keys (see L{nickname_key}) of the nicknames in use.
    @param rng: the source of randomness (tests pass a seeded one).
    @return: C{"Guest"} and four digits, or more digits once most four-digit
        ones are taken; at most nine characters while fewer than 9,000 are
        in use.
    """
    digits = 4
    while True:
        for _ in range(20):
            candidate = f"Guest{rng.randrange(10 ** (digits - 1), 10**digits)}"
            if nickname_key(candidate) not in taken:
                return candidate
        digits += 1
