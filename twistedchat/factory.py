"""
The shared chat state: who is online, joining, leaving, renaming, and
broadcast.

L{ChatFactory} knows nothing about sockets or wire formats. It talks to
each connection through L{IParticipant} (deliver an event, disconnect), the
way Twisted Words separates C{IGroup}/C{IUser} from C{IRCUser}, so other
front ends (web, IRC) can share the same state later. Which protocol it
builds is wired in by L{twistedchat.tap}.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from twistedchat.events import (
    Action,
    ChatLine,
    Event,
    Joined,
    Left,
    NicknameChanged,
    PrivateMessage,
    ServerShutdown,
)
from twistedchat.nicknames import (
    NicknameInUse,
    nickname_key,
    random_nickname,
    validate_nickname,
)


class NoSuchNickname(LookupError):
    """
    Nobody online has the nickname given (compared case-insensitively).
    """


class IParticipant(Interface):
    """
    One connection as the shared state sees it, whatever its wire format.
    """

    nickname = Attribute(
        "The participant's nickname (C{str}), or C{None} before registration."
        " Set only by L{ChatFactory}."
    )

    def deliver(event: Event) -> None:
        """
        Show C{event} to this participant. Must not raise.
        """

    def disconnect() -> None:
        """
        Close the connection once what was delivered so far has been sent.
        """


class ChatFactory(ServerFactory):
    """
    Shared state of one chat server: every connection, the registered
    participants by nickname, and the rules for joining, renaming,
    talking and leaving.

    @ivar clock: the reactor's clock (tests pass a L{task.Clock}).
    @ivar max_nick_length: the longest nickname allowed, in characters.
    @ivar max_line_length: the longest input line, in bytes, without its
        line ending; front ends set C{LineReceiver.MAX_LENGTH} from it.
    @ivar motd: the message of the day, or C{None}.
    @ivar random_nicknames: give each connection a random nickname at once
        instead of asking for one.
    @ivar registration_timeout: seconds a connection may take to choose a
        nickname before it is closed.
    @ivar log_messages: also log the text of chat lines and actions.
    @ivar server_name: the name the greeting shows.
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        *,
        server_name: str = "twistedchat",
        max_nick_length: int = 16,
        max_line_length: int = 2048,
        motd: str | None = None,
        random_nicknames: bool = False,
        registration_timeout: float = 60.0,
        log_messages: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock
        self.server_name = server_name
        self.max_nick_length = max_nick_length
        self.max_line_length = max_line_length
        self.motd = motd
        self.random_nicknames = random_nicknames
        self.registration_timeout = registration_timeout
        self.log_messages = log_messages
        self._rng = rng if rng is not None else random.SystemRandom()
        self._connections: set[IParticipant] = set()
        self._participants: dict[str, IParticipant] = {}
        self._closing: Deferred[None] | None = None

    # Connections

    def connected(self, participant: IParticipant) -> None:
        """
        Note a new connection; it is not in the chat until L{register}.
        """
        self._connections.add(participant)

    def disconnected(self, participant: IParticipant, reason: str) -> None:
        """
        Forget a connection that has closed; if it was registered, announce
        that it left for C{reason}.
        """
        self.leave(participant, reason)
        self._connections.discard(participant)
        closing = self._closing
        if closing is not None and not closing.called and not self._connections:
            closing.callback(None)

    # Participants

    def nicknames(self) -> list[str]:
        """
        Return the nicknames of everyone registered, sorted
        case-insensitively.
        """
        return sorted((p.nickname for p in self._participants.values()), key=nickname_key)

    def is_registered(self, participant: IParticipant) -> bool:
        """
        Return whether C{participant} is in the chat.
        """
        nickname = participant.nickname
        return (
            nickname is not None and self._participants.get(nickname_key(nickname)) is participant
        )

    def free_random_nickname(self) -> str:
        """
        Return a random nickname such as C{Guest4821} that nobody has.
        """
        return random_nickname(self._participants, self._rng)

    def register(self, participant: IParticipant, nickname: str) -> None:
        """
        Put C{participant} into the chat as C{nickname} and announce it to
        everyone else.

        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameInUse: someone else has it.
        """
        validate_nickname(nickname, self.max_nick_length)
        key = nickname_key(nickname)
        if key in self._participants:
            raise NicknameInUse(nickname)
        participant.nickname = nickname
        self._participants[key] = participant
        self.broadcast(Joined(nickname), exclude=participant)

    def rename(self, participant: IParticipant, new: str) -> None:
        """
        Change a registered participant's nickname to C{new} and announce it
        to everyone else. A change of case only is allowed.

        @raise twistedchat.nicknames.InvalidNickname: C{new} breaks the
            nickname rules.
        @raise NicknameInUse: someone else has it.
        """
        validate_nickname(new, self.max_nick_length)
        old = participant.nickname
        assert old is not None
        key = nickname_key(new)
        if self._participants.get(key, participant) is not participant:
            raise NicknameInUse(new)
        if new == old:
            return
        del self._participants[nickname_key(old)]
        self._participants[key] = participant
        participant.nickname = new
        self._log.info("{old} is now known as {new}", old=old, new=new)
        self.broadcast(NicknameChanged(old, new), exclude=participant)

    def leave(self, participant: IParticipant, reason: str) -> None:
        """
        Take C{participant} out of the chat, if it is in, and announce that
        it left for C{reason}, unless the server is shutting down.
        """
        if not self.is_registered(participant):
            return
        nickname = participant.nickname
        assert nickname is not None
        del self._participants[nickname_key(nickname)]
        self._log.info("{nickname} quit ({reason})", nickname=nickname, reason=reason)
        if self._closing is None:
            self.broadcast(Left(nickname, reason))

    # Talking

    def say(self, sender: IParticipant, text: str) -> None:
        """
        Send a chat line from C{sender} to everyone else.
        """
        if self.log_messages:
            self._log.info("<{nickname}> {text}", nickname=sender.nickname, text=text)
        self.broadcast(ChatLine(sender.nickname, text), exclude=sender)

    def act(self, sender: IParticipant, text: str) -> None:
        """
        Send an action (C{/me}) from C{sender} to everyone else.
        """
        if self.log_messages:
            self._log.info("* {nickname} {text}", nickname=sender.nickname, text=text)
        self.broadcast(Action(sender.nickname, text), exclude=sender)

    def private_message(self, sender: IParticipant, recipient: str, text: str) -> str:
        """
        Send C{text} from C{sender} to the participant called C{recipient}
        only. The text is logged only with C{log_messages}.

        @return: the recipient's nickname as they spell it.
        @raise NoSuchNickname: nobody online is called C{recipient}.
        """
        target = self._participants.get(nickname_key(recipient))
        if target is None:
            raise NoSuchNickname(recipient)
        self._log.info(
            "private message from {sender} to {recipient}, {length} characters",
            sender=sender.nickname,
            recipient=target.nickname,
            length=len(text),
        )
        target.deliver(PrivateMessage(sender.nickname, target.nickname, text))
        return target.nickname

    def broadcast(self, event: Event, exclude: IParticipant | None = None) -> None:
        """
        Deliver C{event} to every registered participant but C{exclude}.
        """
        for participant in list(self._participants.values()):
            if participant is not exclude:
                participant.deliver(event)

    # Shutting down

    def shutdown(self, timeout: float = 5.0) -> Deferred[None]:
        """
        Tell every connection, registered or not, that the server is
        shutting down, and close them all.

        @param timeout: seconds to wait for the connections to close.
        @return: a L{Deferred} that fires with C{None} once every connection
            has closed, or after C{timeout} seconds.
        """
        if not self._connections:
            return succeed(None)
        if self._closing is None:
            self._closing = Deferred()
            self._closing.addTimeout(timeout, self.clock, lambda result, t: None)
            event = ServerShutdown()
            connections = list(self._connections)
            for participant in connections:
                participant.deliver(event)
            for participant in connections:
                participant.disconnect()
        return self._closing
