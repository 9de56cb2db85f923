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
from collections import Counter

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from twistedchat.accounts import Accounts, make_portal
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
from twistedchat.history import History
from twistedchat.nicknames import (
    NicknameInUse,
    nickname_key,
    random_nickname,
    validate_nickname,
)
from twistedchat.sendq import Flusher


class NicknameRegistered(ValueError):
    """
    The nickname belongs to an account, and its password was not given.
    """


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
    @ivar flusher: writes every connection's queued output once per
        reactor iteration.
    @ivar max_sendq: bytes of output that may wait for one slow client
        before it is cut off ("SendQ exceeded").
    @ivar sendq_timeout: seconds a client's output may stay congested
        before it is cut off ("SendQ exceeded"), so that a client that
        stopped reading cannot hold up everyone for good.
    @ivar flood_rate: lines per second a client may send once its burst is
        used up; C{0} turns flood control off.
    @ivar flood_burst: lines a client may send at once.
    @ivar max_clients: connections allowed at once; C{0} means no limit.
    @ivar max_per_ip: connections allowed at once from one address;
        C{0} means no limit.
    @ivar idle_timeout: seconds a registered client may stay silent before
        it is disconnected; C{0} means never.
    @ivar history: where events are stored and replayed from, or C{None}.
    @ivar history_on_join: how many past events a user sees on joining.
    @ivar accounts: the registered nicknames, or C{None} for none.
    @ivar portal: the C{twisted.cred} portal that checks their passwords.
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
        max_sendq: int = 1024 * 1024,
        sendq_timeout: float = 10.0,
        flood_rate: float = 2.0,
        flood_burst: int = 10,
        max_clients: int = 10000,
        max_per_ip: int = 10,
        idle_timeout: float = 0.0,
        history: History | None = None,
        history_on_join: int = 20,
        accounts: Accounts | None = None,
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
        self.max_sendq = max_sendq
        self.sendq_timeout = sendq_timeout
        self.flood_rate = flood_rate
        self.flood_burst = flood_burst
        self.max_clients = max_clients
        self.max_per_ip = max_per_ip
        self.idle_timeout = idle_timeout
        self.history = history
        self.history_on_join = history_on_join
        self.accounts = accounts
        self.portal = make_portal(accounts) if accounts is not None else None
        self._rng = rng if rng is not None else random.SystemRandom()
        self._connections: dict[IParticipant, str | None] = {}
        self._per_host: Counter[str] = Counter()
        self._participants: dict[str, IParticipant] = {}
        self._congested: set[IParticipant] = set()
        self._drain_waiters: list[Deferred[None]] = []
        self._closing: Deferred[None] | None = None
        self.flusher = Flusher(clock)

    # Connections

    def admission(self, host: str | None) -> str | None:
        """
        Decide whether a new connection from C{host} may come in.

        @param host: the peer's IP address, or C{None} where there is none
            (a UNIX socket), which only C{max_clients} limits.
        @return: C{None} to let it in, or a sentence saying why not.
        """
        if self._closing is not None:
            return "The server is shutting down."
        if self.max_clients and len(self._connections) >= self.max_clients:
            return f"The server is full ({self.max_clients} connections); try again later."
        if host is not None and self.max_per_ip and self._per_host[host] >= self.max_per_ip:
            return f"Too many connections from {host} (at most {self.max_per_ip}); try again later."
        return None

    def connected(self, participant: IParticipant, host: str | None = None) -> None:
        """
        Note a new connection from C{host} (an IP address, or C{None}); it
        is not in the chat until L{register}. Call L{admission} first.
        """
        self._connections[participant] = host
        if host is not None:
            self._per_host[host] += 1

    def disconnected(self, participant: IParticipant, reason: str) -> None:
        """
        Forget a connection that has closed; if it was registered, announce
        that it left for C{reason}.
        """
        self.leave(participant, reason)
        if participant not in self._connections:
            return
        host = self._connections.pop(participant)
        if host is not None:
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]
        self.drained(participant)
        closing = self._closing
        if closing is not None and not closing.called and not self._connections:
            closing.callback(None)

    def connection_count(self, host: str | None = None) -> int:
        """
        Return how many connections are open, in all or from C{host}.
        """
        return len(self._connections) if host is None else self._per_host[host]

    # Flow control

    def congested(self, participant: IParticipant) -> None:
        """
        Note that C{participant} cannot take output as fast as it comes:
        until every congested participant has drained, L{is_congested} is
        true and senders should pause (see L{when_drained}).
        """
        self._congested.add(participant)

    def drained(self, participant: IParticipant) -> None:
        """
        Note that C{participant} takes output again (or is gone); once no
        participant is congested, wake everyone waiting in L{when_drained}.
        """
        self._congested.discard(participant)
        if not self._congested and self._drain_waiters:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def is_congested(self) -> bool:
        """
        Return whether some participant's output is backed up, so that
        senders should stop reading input for now.
        """
        return bool(self._congested)

    def when_drained(self) -> Deferred[None]:
        """
        Return a L{Deferred} that fires once no participant is congested.
        """
        if not self._congested:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drain_waiters.append(waiter)
        return waiter

    # Participants

    def nicknames(self) -> list[str]:
        """
        Return the nicknames of everyone registered, sorted
        case-insensitively.
        """
        return sorted((p.nickname for p in self._participants.values()), key=nickname_key)

    def is_joined(self, participant: IParticipant) -> bool:
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
        return random_nickname(_Taken(self._participants, self.accounts), self._rng)

    def _check_account(self, nickname: str, identified: bool) -> None:
        if not identified and self.accounts is not None and self.accounts.is_registered(nickname):
            raise NicknameRegistered(nickname)

    def register(self, participant: IParticipant, nickname: str, identified: bool = False) -> None:
        """
        Put C{participant} into the chat as C{nickname} and announce it to
        everyone else.

        @param identified: whether the participant proved it owns
            C{nickname}'s account (checked through L{portal}).
        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameInUse: someone else has it.
        @raise NicknameRegistered: it is registered and not C{identified}.
        """
        validate_nickname(nickname, self.max_nick_length)
        key = nickname_key(nickname)
        if key in self._participants:
            raise NicknameInUse(nickname)
        self._check_account(nickname, identified)
        participant.nickname = nickname
        self._participants[key] = participant
        self._publish(Joined(nickname), exclude=participant)

    def rename(self, participant: IParticipant, new: str, identified: bool = False) -> None:
        """
        Change a registered participant's nickname to C{new} and announce it
        to everyone else. A change of case only is allowed.

        @param identified: whether the participant proved it owns C{new}'s
            account, if it has one.
        @raise twistedchat.nicknames.InvalidNickname: C{new} breaks the
            nickname rules.
        @raise NicknameInUse: someone else has it.
        @raise NicknameRegistered: it is registered and not C{identified}.
        """
        validate_nickname(new, self.max_nick_length)
        old = participant.nickname
        assert old is not None
        key = nickname_key(new)
        if self._participants.get(key, participant) is not participant:
            raise NicknameInUse(new)
        self._check_account(new, identified or key == nickname_key(old))
        if new == old:
            return
        del self._participants[nickname_key(old)]
        self._participants[key] = participant
        participant.nickname = new
        self._log.info("{old} is now known as {new}", old=old, new=new)
        self._publish(NicknameChanged(old, new), exclude=participant)

    def leave(self, participant: IParticipant, reason: str) -> None:
        """
        Take C{participant} out of the chat, if it is in, and announce that
        it left for C{reason}, unless the server is shutting down.
        """
        if not self.is_joined(participant):
            return
        nickname = participant.nickname
        assert nickname is not None
        del self._participants[nickname_key(nickname)]
        self._log.info("{nickname} quit ({reason})", nickname=nickname, reason=reason)
        if self._closing is None:
            self._publish(Left(nickname, reason))

    # Talking

    def say(self, sender: IParticipant, text: str) -> None:
        """
        Send a chat line from C{sender} to everyone else.
        """
        if self.log_messages:
            self._log.info("<{nickname}> {text}", nickname=sender.nickname, text=text)
        self._publish(ChatLine(sender.nickname, text), exclude=sender)

    def act(self, sender: IParticipant, text: str) -> None:
        """
        Send an action (C{/me}) from C{sender} to everyone else.
        """
        if self.log_messages:
            self._log.info("* {nickname} {text}", nickname=sender.nickname, text=text)
        self._publish(Action(sender.nickname, text), exclude=sender)

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
        message = PrivateMessage(sender.nickname, target.nickname, text)
        if self.history is not None:
            self.history.record(message)
        target.deliver(message)
        return target.nickname

    def _publish(self, event: Event, exclude: IParticipant | None = None) -> None:
        """
        Store C{event} in the history, if any, and broadcast it.
        """
        if self.history is not None:
            self.history.record(event)
        self.broadcast(event, exclude)

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


class _Taken:
    """
    The nickname keys a random nickname must avoid: those online and those
    registered.
    """

    def __init__(self, online: dict[str, IParticipant], accounts: Accounts | None) -> None:
        self._online = online
        self._accounts = accounts

    def __contains__(self, key: object) -> bool:
        return key in self._online or (self._accounts is not None and key in self._accounts)
