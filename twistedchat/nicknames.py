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
# The look-alike classes of nickname_skeleton, closed under _CASE_MAP: each
# character maps to the first of its class.
_LOOK_ALIKES = ("lLiI1|\\", "oO0")
_SKELETON_MAP = {
    **_CASE_MAP,
    **{ord(char): ord(chars[0]) for chars in _LOOK_ALIKES for char in chars},
}

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
    Someone else already has this nickname (compared case-insensitively),
    or one that looks like it.

    @ivar like: what it looks like when it is not the same nickname: the
        nickname someone has, or C{"a registered nickname"}; C{""} when it
        is the same.
    """

    def __init__(self, nickname: str, like: str = "") -> None:
        super().__init__(nickname)
        self.like = like

    def sentence(self, nickname: str) -> str:
        """
        Say, for a user who asked for C{nickname}, that it is taken, and
        what it looks like if that is why.
        """
        if self.like:
            return f"The nickname {nickname} is taken: it looks too much like {self.like}."
        return f"The nickname {nickname} is taken."


def nickname_key(nickname: str) -> str:
    """
    Return the form of C{nickname} used to compare nicknames: two nicknames
    are the same exactly when their keys are equal (RFC 2812 section 2.2).
    """
    return nickname.translate(_CASE_MAP)


def nickname_skeleton(nickname: str) -> str:
    """
    Return the form of C{nickname} used to find look-alike nicknames: two
    nicknames whose skeletons are equal are confusable, so a server should
    not let both be used by different people.

    This is the idea of the skeleton of Unicode Technical Standard #39,
    "Unicode Security Mechanisms", section 4 ("Confusable Detection"):
    map every character to a prototype of the characters it can be
    mistaken for, and compare the results. Nicknames are ASCII (RFC 2812
    section 2.3.1), so the table is small: C{I} (capital i), C{l} (small
    L), C{1} and C{|}, and C{\\}, which RFC 2812 case mapping makes equal
    to C{|}, look alike; so do C{O}, C{o} and C{0}. Case differences are
    then removed as in L{nickname_key}.

    The skeleton is a function of the key: nicknames with equal keys have
    equal skeletons, so C{alice}, C{ALICE}, C{aIice} and C{al1ce} all
    match. That forces the look-alike classes to be closed under case
    mapping: C{I} looks like C{l} and is the same letter as C{i}, and C{l}
    is the same letter as C{L}, so C{i}, C{I}, C{l}, C{L}, C{1}, C{|} and
    C{\\} all share one prototype. The price is a few false alarms
    (C{Lisa} and C{Ilsa}, C{Ali} and C{All} are confusable); the gain is
    that a server can compute the skeleton from any spelling of a
    nickname, such as a stored key. Ergo, an IRC server, also refuses
    nicknames whose skeleton is taken, but computes its Unicode skeleton
    before case folding, so in Ergo the skeleton is not a function of the
    folded nickname and must be kept apart from it (C{Skeleton} in
    C{irc/strings.go}).

    @param nickname: a nickname (any string is accepted).
    @return: a string that is not itself a nickname and must never be
        shown; only compare it.
    """
    return nickname.translate(_SKELETON_MAP)


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
