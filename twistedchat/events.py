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
    """


@dataclass
class ChatLine(Event):
    """C{sender} said C{text} to everyone."""

    sender: str
    text: str


@dataclass
class Action(Event):
    """C{sender} did C{text} (C{/me}), seen by everyone."""

    sender: str
    text: str


@dataclass
class PrivateMessage(Event):
    """C{sender} said C{text} to C{recipient} only."""

    sender: str
    recipient: str
    text: str


@dataclass
class Joined(Event):
    """C{nickname} has joined the chat."""

    nickname: str


@dataclass
class Left(Event):
    """C{nickname} has left the chat, for C{reason}."""

    nickname: str
    reason: str


@dataclass
class NicknameChanged(Event):
    """The participant called C{old} is now called C{new}."""

    old: str
    new: str


@dataclass
class Ghosted(Event):
    """
    Told only to the connection that held C{nickname}: a connection that
    gave the nickname's password has taken it over, and this one closes.
    """

    nickname: str


@dataclass
class ServerShutdown(Event):
    """The server is shutting down; the connection closes next."""
