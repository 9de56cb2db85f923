"""
Rooms: their names, their members, and their moderation state.

Room names follow IRC channel names (RFC 2812 section 1.3): C{#} and up
to 49 more characters, none of them a space, a comma, a colon (the
channel-mask separator), BEL, NUL, CR or LF. They are compared with the
nickname case mapping (RFC 2812 section 2.2, L{nickname_key}), so an IRC
front end maps them one to one onto channels.

A L{Room} holds who is in it and what its operators decided (topic, the
C{+t} mode, operators, bans). The rules for changing them live in
L{twistedchat.factory.ChatFactory}.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twistedchat.nicknames import nickname_key, nickname_skeleton

if TYPE_CHECKING:
    from twistedchat.factory import IParticipant
    from twistedchat.roomstore import StoredRoom

#: The longest room name, in characters, C{#} included (RFC 2812 section 1.3).
MAX_ROOM_NAME_LENGTH = 50

#: The most bans a room keeps (IRC servers' MAXLIST is about 100).
MAX_BANS = 100

_ROOM_NAME = re.compile(r"#[^\x00-\x20\x7f-\x9f,:]+\Z")


class RoomError(ValueError):
    """
    A room command was refused. C{str()} is a sentence saying why, fit to
    show the user; C{room} is the room name it was about.
    """

    def __init__(self, room: str, message: str) -> None:
        super().__init__(message)
        self.room = room


class InvalidRoomName(RoomError):
    """The name is no room name (RFC 2812 section 1.3)."""


class NoSuchRoom(RoomError):
    """No room has this name."""


class NotInRoom(RoomError):
    """The user (or the nickname named) is not in the room."""


class NotOperator(RoomError):
    """The user is not an operator of the room, or not a server operator."""


class AlreadyInRoom(RoomError):
    """The user named is in the room already."""


class BannedFromRoom(RoomError):
    """The user is banned from the room."""


def room_key(name: str) -> str:
    """
    Return the form of room name C{name} used to compare rooms: two names
    are the same room exactly when their keys are equal.
    """
    return nickname_key(name)


def clean_name(name: str) -> str:
    """
    Return C{name} without its control, format and separator characters,
    to quote it in an error.
    """
    return "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")


def validate_room_name(name: str) -> None:
    """
    Check C{name} against RFC 2812 section 1.3 (C{#} and 1 to 49 more
    characters, no space, comma, colon, BEL, NUL, CR or LF), and, stricter,
    against every control, format and separator character (Unicode
    categories C and Z), so a room name never carries a terminal escape
    or an invisible character, whichever front end it came from.

    @raise InvalidRoomName: with a sentence saying what is wrong.
    """
    if len(name) > MAX_ROOM_NAME_LENGTH:
        raise InvalidRoomName(
            name[:MAX_ROOM_NAME_LENGTH],
            f"A room name can be at most {MAX_ROOM_NAME_LENGTH} characters long.",
        )
    if _ROOM_NAME.match(name) is None or any(
        unicodedata.category(char)[0] in "CZ" for char in name
    ):
        raise InvalidRoomName(
            name,
            f"{clean_name(name) or 'That'} is no room name: a room name starts with # and "
            "has no spaces, commas, colons or control characters.",
        )


@dataclass(eq=False)
class Room:
    """
    One room.

    @ivar name: the name as it was created (C{#Lobby}).
    @ivar key: L{room_key} of the name.
    @ivar members: the participants in it, in the order they joined
        (a dict used as an ordered set).
    @ivar topic: its topic; C{""} for none.
    @ivar topic_by: the nickname that set the topic.
    @ivar topic_at: when, in seconds since the epoch.
    @ivar topic_locked: mode C{+t}: only operators may set the topic.
    @ivar operators: members who are operators for as long as they are
        connected (they had proved no account when they were made one).
    @ivar operator_accounts: keys of the accounts that are operators of
        the room whenever their owner is in it.
    @ivar bans: C{("account", key)} pairs (an account's nickname key) or
        C{("nickname", skeleton)} pairs (L{nickname_skeleton}, so that a
        ban covers look-alikes): who may not join.
    @ivar permanent: the room stays when its last member leaves (the
        default room, and rooms an account operates: see L{persistent}).
    @ivar since: where the room's current life starts: the last event id
        (L{twistedchat.events.Event.id}) recorded before it was created
        (L{twistedchat.history.History.last_id}). Its history pages and
        searches show only events with a larger id, so that a room that
        vanished hands nothing on to a new room of the same name. C{0} for
        the default room, whose history is continuous; a kept room (see
        L{persistent}) keeps its own across restarts (L{stored}).
    """

    name: str
    key: str = ""
    members: dict[IParticipant, None] = field(default_factory=dict)
    topic: str = ""
    topic_by: str = ""
    topic_at: float = 0.0
    topic_locked: bool = False
    operators: set[IParticipant] = field(default_factory=set)
    operator_accounts: set[str] = field(default_factory=set)
    bans: set[tuple[str, str]] = field(default_factory=set)
    permanent: bool = False
    since: int = 0

    def __post_init__(self) -> None:
        if not self.key:
            self.key = room_key(self.name)

    @property
    def persistent(self) -> bool:
        """
        Whether the room is kept across restarts: an account is one of its
        operators.
        """
        return bool(self.operator_accounts)

    def is_banned(self, nickname: str, account: str | None) -> bool:
        """
        Return whether someone called C{nickname}, who proved they own the
        account with key C{account} (or C{None}), is banned from the room.
        """
        return ("nickname", nickname_skeleton(nickname)) in self.bans or (
            account is not None and ("account", account) in self.bans
        )

    def stored(self) -> StoredRoom:
        """
        Return what is kept of the room across restarts.
        """
        from twistedchat.roomstore import StoredRoom

        return StoredRoom(
            key=self.key,
            name=self.name,
            topic=self.topic,
            topic_by=self.topic_by,
            topic_at=self.topic_at,
            topic_locked=self.topic_locked,
            operators=frozenset(self.operator_accounts),
            bans=frozenset(self.bans),
            since=self.since,
        )

    @classmethod
    def restored(cls, stored: StoredRoom) -> Room:
        """
        Return the room that C{stored} keeps, with no members.
        """
        return cls(
            name=stored.name,
            key=stored.key,
            topic=stored.topic,
            topic_by=stored.topic_by,
            topic_at=stored.topic_at,
            topic_locked=stored.topic_locked,
            operator_accounts=set(stored.operators),
            bans=set(stored.bans),
            since=stored.since,
        )
