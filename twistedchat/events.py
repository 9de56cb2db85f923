"""
What happens in the chat, as plain objects that know nothing about any wire
format.

The shared state (L{twistedchat.factory.ChatFactory}) creates one event for
each thing that happens and hands the same object to every participant that
should see it. A front end turns an event into bytes with L{Event.render},
which keeps the result, so a broadcast is formatted and encoded once per
wire format, not once per recipient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Renderable:
    """
    Something shown to many participants alike, which keeps the bytes each
    wire format made of it, so that it is formatted once, not once per
    recipient.

    @ivar _rendered: bytes already produced, by renderer.
    """

    _rendered: dict[Callable[[Any], bytes], bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def render(self, renderer: Callable[[Any], bytes]) -> bytes:
        """
        Return C{renderer(self)}, calling C{renderer} only the first time
        for this object.

        @param renderer: turns this object into the bytes of one wire
            format.
        """
        try:
            return self._rendered[renderer]
        except KeyError:
            data = self._rendered[renderer] = renderer(self)
            return data


@dataclass
class Event(Renderable):
    """
    Base class of everything a participant can be told about.

    A chat event gets its id and time when the history records it
    (L{twistedchat.history.History.record}), before anyone is told, so
    that it is the same live, replayed and found by a search; an event
    recorded in several rooms (a quit, a nickname change) keeps one of
    each. Neither is an argument of C{__init__}, nor compared: plain class
    attributes, set on the instance, rather than dataclass fields, so that
    a subclass such as L{TopicIs} may have a field of its own called
    C{at}.

    @ivar id: the event's number: positive, larger for later events, across
        restarts; C{0} for an event not recorded (a reply, or no history).
    @ivar at: when it happened, in seconds since the epoch (UTC); C{0.0}
        for an event not recorded.
    """

    id = 0
    at = 0.0


@dataclass
class ChatLine(Event):
    """
    C{sender} said C{text} in C{room} (its name as created); as a
    C{notice} (an IRC NOTICE: never to be answered automatically, RFC 2812
    section 3.3.2), or a plain line.
    """

    sender: str
    text: str
    room: str = ""
    notice: bool = False


@dataclass
class Action(Event):
    """C{sender} did C{text} (C{/me}) in C{room}."""

    sender: str
    text: str
    room: str = ""


@dataclass
class PrivateMessage(Event):
    """
    C{sender} said C{text} to C{recipient} only: as a C{notice} (see
    L{ChatLine}), or as an C{action} (C{/me}), or a plain message.
    """

    sender: str
    recipient: str
    text: str
    notice: bool = False
    action: bool = False


@dataclass
class Ctcp(Event):
    """
    A CTCP C{payload} (C{VERSION}, C{PING 123}, ...: the text between the
    C{\\x01} bytes) from C{sender} to C{recipient}, a query, or the C{reply}
    to one: passed between IRC users, shown to nobody else, not recorded.
    """

    sender: str
    recipient: str
    payload: str
    reply: bool = False


@dataclass
class Joined(Event):
    """C{nickname} has joined C{room}."""

    nickname: str
    room: str = ""


@dataclass
class Left(Event):
    """
    C{nickname} has left C{room} (C{/part}) for C{reason}; or, with no
    C{room} (C{""}), the chat itself, seen in every room they were in.
    """

    nickname: str
    reason: str
    room: str = ""


@dataclass
class NicknameChanged(Event):
    """The participant called C{old} is now called C{new}."""

    old: str
    new: str


@dataclass
class TopicChanged(Event):
    """C{nickname} set the topic of C{room} to C{topic} (C{""}: cleared)."""

    room: str
    nickname: str
    topic: str


@dataclass
class Kicked(Event):
    """The operator C{operator} removed C{nickname} from C{room}, for C{reason}."""

    room: str
    operator: str
    nickname: str
    reason: str


@dataclass
class ModeChanged(Event):
    """
    The operator C{operator} changed a mode of C{room}: C{change} is
    C{"+o"}/C{"-o"} (operator) or C{"+b"}/C{"-b"} (ban) with the nickname
    C{target}, or C{"+t"}/C{"-t"} (only operators set the topic) with no
    target (C{""}).
    """

    room: str
    operator: str
    change: str
    target: str = ""


@dataclass
class Ghosted(Event):
    """
    Told only to the connection that held C{nickname}: a connection that
    gave the nickname's password has taken it over, and this one closes.
    """

    nickname: str


@dataclass
class Killed(Event):
    """
    Told only to the connection being closed: the server operator
    C{operator} disconnected it, for C{reason} (C{/kill}).
    """

    operator: str
    reason: str


@dataclass
class ServerShutdown(Event):
    """The server is shutting down; the connection closes next."""


# Replies: told only to the participant whose command they answer, through
# its front end's reply() (see twistedchat.session.IFrontEnd).


@dataclass
class Notice(Event):
    """Information for this participant only: C{text}, a sentence."""

    text: str


@dataclass
class Error(Event):
    """A command was refused or failed: C{text}, a sentence, says why."""

    text: str


@dataclass
class NicknameWanted(Event):
    """The participant has no nickname yet and should choose one."""


@dataclass
class PasswordWanted(Event):
    """C{nickname} is registered: its password is needed to take it."""

    nickname: str


@dataclass
class Welcome(Event):
    """
    The participant is in the chat as C{nickname}; C{online} is how many
    are online and their nicknames, sorted (C{[]} when there are too many
    to list: see L{twistedchat.factory.ChatFactory.online_summary}); C{room}
    is the room they were put in (the default room), or C{None} if they
    are banned from it. (The telnet front end shows the welcome only; the
    others say what C{room} says, as for L{RoomJoined}.)
    """

    nickname: str
    online: tuple[int, list[str]]
    room: RoomJoined | None = field(default=None, compare=False)


@dataclass
class PrivateMessageSent(Event):
    """The participant's private message C{text} went to C{recipient}."""

    recipient: str
    text: str


@dataclass
class RoomJoined(Event):
    """
    The participant is in C{room} now (or was already: C{already}); its
    topic and its members' nicknames, in the order they joined (C{[]} when
    the room is too crowded to list: more than C{quiet_joins_above}, as
    for L{Welcome}); C{count} of them (C{-1}: as many as C{members}); and
    which of them are its C{operators}.
    """

    room: str
    topic: str
    members: list[str]
    already: bool = False
    count: int = -1
    operators: list[str] = field(default_factory=list)


@dataclass
class RoomParted(Event):
    """The participant left C{room}."""

    room: str


@dataclass
class CurrentRoom(Event):
    """Plain lines go to C{room} now (C{""}: the participant is in none)."""

    room: str


@dataclass
class Names(Event):
    """
    The nicknames in C{room}, operators marked in C{operators}, and those
    away in C{away}.
    """

    room: str
    nicknames: list[str]
    operators: list[str]
    away: list[str] = field(default_factory=list)


@dataclass
class Away(Event):
    """
    C{nickname} is away, saying C{text}: the reply to a private message
    sent to them while away.
    """

    nickname: str
    text: str


@dataclass
class AwaySet(Event):
    """
    The user is now marked as away with C{text}, or back (C{""}): the
    reply to setting it.
    """

    text: str


@dataclass
class AwayChanged(Event):
    """
    C{nickname} went away saying C{text}, or came back (C{""}): delivered
    (not recorded) to everyone sharing a room with them.
    """

    nickname: str
    text: str


@dataclass
class Invited(Event):
    """
    C{inviter}, in C{room}, invites the user C{nickname} to join it:
    delivered to that user only, not recorded.
    """

    inviter: str
    nickname: str
    room: str


@dataclass
class WhoIs(Event):
    """
    What others may know of the user C{nickname}: the C{rooms} they are in
    (names), those of them where they are an operator (C{operator_of}),
    their C{away} text (C{""} if not away), the C{account} they proved
    they own (its nickname key, or C{""}), and whether they are a
    C{server_operator}.
    """

    nickname: str
    rooms: list[str]
    operator_of: list[str]
    away: str
    account: str
    server_operator: bool


@dataclass
class RoomSummary:
    """One room as C{/rooms} lists it."""

    name: str
    members: int
    topic: str


@dataclass
class RoomList(Event):
    """Every room, sorted by name."""

    rooms: list[RoomSummary]


@dataclass
class TopicIs(Event):
    """
    The topic of C{room}: C{""} for none; set by C{by} at C{at} (seconds
    since the epoch: a field of this reply, which is never recorded, in
    place of L{Event.at}).
    """

    room: str
    topic: str
    by: str
    at: float


@dataclass
class HistoryReplay(Event):
    """
    Past events shown to the participant, oldest first: C{records} (each a
    L{twistedchat.history.Record}) of C{room}, with the private messages
    C{viewer} (the key of the account they proved they own, or C{None})
    may see among them. C{asked}: they asked for it (C{/history}, or a
    page of older events), rather than getting it on joining. C{before}:
    for a page of older events (L{twistedchat.session.ChatSession.history_page}),
    the event id it ends before; C{None} for the most recent events.
    """

    room: str
    records: list[Any]
    viewer: str | None
    asked: bool
    before: int | None = None


@dataclass
class SearchResults(Event):
    """
    The answer to a search (L{twistedchat.session.ChatSession.search}) for
    C{query} (the text as the user gave it) in C{room} (its name):
    C{records} (each a L{twistedchat.history.Record}), newest first, the
    room's chat lines and actions and the private messages C{viewer} (the
    key of the account the user proved they own, or C{None}) may see that
    match it. C{[]}: none did.
    """

    query: str
    room: str
    records: list[Any]
    viewer: str | None
