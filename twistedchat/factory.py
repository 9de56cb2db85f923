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

import math
import random
from collections import Counter
from collections.abc import Iterable

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
    Ghosted,
    Joined,
    Left,
    NicknameChanged,
    PrivateMessage,
    ServerShutdown,
)
from twistedchat.history import History
from twistedchat.nicknames import (
    InvalidNickname,
    NicknameInUse,
    nickname_key,
    nickname_skeleton,
    random_nickname,
    validate_nickname,
)
from twistedchat.sendq import Flusher
from twistedchat.throttles import (
    ConnectionThrottle,
    Exemptions,
    PasswordFailures,
    RegistrationLimit,
    address_group,
)


class NicknameRegistered(ValueError):
    """
    The nickname belongs to an account, and its password was not given.
    """


class NicknameReserved(InvalidNickname):
    """
    The nickname, or one that looks like it, is reserved by the server
    (C{--reserved-nicknames}); nobody can take it.
    """


#: Nicknames nobody may take unless the server is told otherwise: those
#: of IRC services and of people users might trust.
DEFAULT_RESERVED_NICKNAMES = ("NickServ", "ChanServ", "admin", "root", "operator")


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
        stopped reading does not hold memory for good.
    @ivar flood_rate: lines per second a client may send once its burst is
        used up; C{0} turns flood control by lines off.
    @ivar flood_burst: lines a client may send at once.
    @ivar flood_bytes: bytes per second a client may send once its byte
        burst is used up, telnet negotiation included; C{0} turns flood
        control by bytes off.
    @ivar flood_byte_burst: bytes a client may send at once.
    @ivar max_clients: connections allowed at once; C{0} means no limit.
    @ivar max_per_ip: connections allowed at once from one address group
        (an IPv4 address, or an IPv6 /64: L{address_group}); C{0} means no
        limit.
    @ivar exemptions: networks that no per-address limit applies to.
    @ivar connection_throttle: connection attempts per address group
        (C{connection_rate} a minute, then a ban of C{connection_ban}
        seconds).
    @ivar password_failures: wrong passwords per account and per address
        group, across connections, with growing delays.
    @ivar registrations: account registrations per address group per hour
        (C{max_registrations}).
    @ivar idle_timeout: seconds a registered client may stay silent before
        it is disconnected; C{0} means never.
    @ivar history: where events are stored and replayed from, or C{None}.
    @ivar history_on_join: how many past events a user sees on joining.
    @ivar accounts: the registered nicknames, or C{None} for none.
    @ivar portal: the C{twisted.cred} portal that checks their passwords.
    @ivar reserved_nicknames: nicknames nobody may take, nor any that looks
        like one of them (see L{nickname_skeleton}).
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
        flood_bytes: int = 8192,
        flood_byte_burst: int = 32768,
        max_clients: int = 10000,
        max_per_ip: int = 10,
        exemptions: Exemptions | None = None,
        connection_rate: int = 10,
        connection_ban: float = 600.0,
        max_registrations: int = 3,
        idle_timeout: float = 0.0,
        history: History | None = None,
        history_on_join: int = 20,
        accounts: Accounts | None = None,
        reserved_nicknames: Iterable[str] = DEFAULT_RESERVED_NICKNAMES,
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
        self.flood_bytes = flood_bytes
        self.flood_byte_burst = flood_byte_burst
        self.max_clients = max_clients
        self.max_per_ip = max_per_ip
        self.exemptions = exemptions if exemptions is not None else Exemptions()
        self.connection_throttle = ConnectionThrottle(clock, connection_rate, 60.0, connection_ban)
        self.password_failures = PasswordFailures(clock)
        self.registrations = RegistrationLimit(clock, max_registrations)
        self.idle_timeout = idle_timeout
        self.history = history
        self.history_on_join = history_on_join
        self.accounts = accounts
        self.portal = make_portal(accounts) if accounts is not None else None
        self.reserved_nicknames = tuple(reserved_nicknames)
        self._reserved = frozenset(nickname_skeleton(n) for n in self.reserved_nicknames)
        self._rng = rng if rng is not None else random.SystemRandom()
        self._connections: dict[IParticipant, str | None] = {}
        self._per_host: Counter[str] = Counter()
        self._participants: dict[str, IParticipant] = {}
        # The nickname key of everyone registered, by nickname skeleton.
        self._skeletons: dict[str, str] = {}
        self._closing: Deferred[None] | None = None
        self.flusher = Flusher(clock)

    # Connections

    def group_of(self, host: str | None) -> str | None:
        """
        Return what per-address limits count C{host} (an IP address, or
        C{None}) as: its address group (L{address_group}: the address, or
        an IPv6 address's /64), or C{None} if no such limit applies to it
        (a UNIX socket, or an address in L{exemptions}).
        """
        if host is None or self.exemptions.covers(host):
            return None
        return address_group(host)

    def admission(self, host: str | None) -> str | None:
        """
        Decide whether a new connection from C{host} may come in, and count
        it as an attempt from its address group (see L{group_of}).

        @param host: the peer's IP address, or C{None} where there is none
            (a UNIX socket), which only C{max_clients} limits.
        @return: C{None} to let it in, or a sentence saying why not.
        """
        if self._closing is not None:
            return "The server is shutting down."
        group = self.group_of(host)
        wait = self.connection_throttle.attempt(group)
        if wait is not None:
            return (
                f"Too many connections from {group} in a short time; "
                f"try again in {math.ceil(wait)} seconds."
            )
        if self.max_clients and len(self._connections) >= self.max_clients:
            return f"The server is full ({self.max_clients} connections); try again later."
        if group is not None and self.max_per_ip and self._per_host[group] >= self.max_per_ip:
            return (
                f"Too many connections from {group} (at most {self.max_per_ip}); try again later."
            )
        return None

    def connected(self, participant: IParticipant, host: str | None = None) -> None:
        """
        Note a new connection from C{host} (an IP address, or C{None}); it
        is not in the chat until L{register}. Call L{admission} first.
        """
        group = self.group_of(host)
        self._connections[participant] = group
        if group is not None:
            self._per_host[group] += 1

    def disconnected(self, participant: IParticipant, reason: str) -> None:
        """
        Forget a connection that has closed; if it was registered, announce
        that it left for C{reason}.
        """
        self.leave(participant, reason)
        if participant not in self._connections:
            return
        group = self._connections.pop(participant)
        if group is not None:
            self._per_host[group] -= 1
            if not self._per_host[group]:
                del self._per_host[group]
        closing = self._closing
        if closing is not None and not closing.called and not self._connections:
            closing.callback(None)

    def connection_count(self, host: str | None = None) -> int:
        """
        Return how many connections are open, in all or from C{host}'s
        address group.
        """
        if host is None:
            return len(self._connections)
        return self._per_host[address_group(host)]

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
        return random_nickname(_Taken(self), self._rng)

    def is_taken(self, key: str) -> bool:
        """
        Return whether the nickname with key C{key} (see L{nickname_key}),
        or one that looks like it, is online, registered or reserved. A
        random nickname, which has no look-alike letters, uses this.
        """
        skeleton = nickname_skeleton(key)
        return (
            key in self._participants
            or skeleton in self._skeletons
            or skeleton in self._reserved
            or (self.accounts is not None and self.accounts.is_taken(key))
        )

    def _claim(self, participant: IParticipant, nickname: str, identified: bool) -> None:
        """
        Check that C{participant} may take C{nickname}, and if it proved it
        owns C{nickname}'s account while another connection holds it, close
        that connection as "ghosted" (IRC services' REGAIN).

        A nickname that differs from an online or registered one only by
        look-alike characters counts as taken (UTS #39 skeletons, as Ergo
        does), so nobody can pass as C{alice} with C{aIice}.

        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it or one that looks like it.
        @raise NicknameRegistered: it is registered and not C{identified}.
        """
        validate_nickname(nickname, self.max_nick_length)
        key, skeleton = nickname_key(nickname), nickname_skeleton(nickname)
        if skeleton in self._reserved:
            raise NicknameReserved(f"The nickname {nickname} is reserved.")
        registered = self.accounts is not None and self.accounts.is_registered(nickname)
        if registered and not identified:
            raise NicknameRegistered(nickname)
        holder = self._participants.get(key)
        if holder is not None and holder is not participant and not registered:
            raise NicknameInUse(nickname)
        look_alike = self._skeletons.get(skeleton, key)
        if look_alike != key and self._participants[look_alike] is not participant:
            raise NicknameInUse(nickname)
        if self.accounts is not None and self.accounts.is_confusable(nickname):
            raise NicknameInUse(nickname)
        if holder is not None and holder is not participant:
            self._ghost(holder)

    def _ghost(self, holder: IParticipant) -> None:
        """
        Close the connection C{holder}, whose nickname a connection that
        gave its password is taking: tell it why, and the others that it
        left as "ghosted".
        """
        self._log.info("{nickname} ghosted", nickname=holder.nickname)
        holder.deliver(Ghosted(holder.nickname))
        self.leave(holder, "ghosted")
        holder.disconnect()

    def _add(self, participant: IParticipant, nickname: str) -> None:
        participant.nickname = nickname
        self._participants[nickname_key(nickname)] = participant
        self._skeletons[nickname_skeleton(nickname)] = nickname_key(nickname)

    def _remove(self, participant: IParticipant) -> None:
        nickname = participant.nickname
        assert nickname is not None
        del self._participants[nickname_key(nickname)]
        skeleton = nickname_skeleton(nickname)
        if self._skeletons.get(skeleton) == nickname_key(nickname):
            del self._skeletons[skeleton]

    def register(self, participant: IParticipant, nickname: str, identified: bool = False) -> None:
        """
        Put C{participant} into the chat as C{nickname} and announce it to
        everyone else. If it proved it owns C{nickname}'s account and
        another connection holds the nickname, that one is closed as
        "ghosted" first.

        @param identified: whether the participant proved it owns
            C{nickname}'s account (checked through L{portal}).
        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it, or one that looks like it.
        @raise NicknameRegistered: it is registered and not C{identified}.
        """
        self._claim(participant, nickname, identified)
        self._add(participant, nickname)
        self._publish(Joined(nickname), exclude=participant)

    def rename(self, participant: IParticipant, new: str, identified: bool = False) -> None:
        """
        Change a registered participant's nickname to C{new} and announce it
        to everyone else. A change of case only is allowed.

        @param identified: whether the participant proved it owns C{new}'s
            account, if it has one; another connection holding C{new} is
            then closed as "ghosted".
        @raise twistedchat.nicknames.InvalidNickname: C{new} breaks the
            nickname rules.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it, or one that looks like it.
        @raise NicknameRegistered: it is registered and not C{identified}.
        """
        old = participant.nickname
        assert old is not None
        self._claim(participant, new, identified or nickname_key(new) == nickname_key(old))
        if new == old:
            return
        self._remove(participant)
        self._add(participant, new)
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
        self._remove(participant)
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
    The nickname keys a random nickname must avoid (L{ChatFactory.is_taken}).
    """

    def __init__(self, factory: ChatFactory) -> None:
        self._factory = factory

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._factory.is_taken(key)
