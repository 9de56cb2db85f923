"""
The shared chat state: who is online, the rooms and their moderation,
joining, leaving, renaming, and the one fan-out path every message takes.

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
from collections.abc import Collection, Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from twistedchat.accounts import Accounts, IAccount, make_portal
from twistedchat.counts import Counts
from twistedchat.events import (
    Action,
    AwayChanged,
    ChatLine,
    Ctcp,
    Event,
    Ghosted,
    Invited,
    Joined,
    Kicked,
    Killed,
    Left,
    ModeChanged,
    NicknameChanged,
    PrivateMessage,
    ServerShutdown,
    TopicChanged,
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
from twistedchat.rooms import (
    MAX_BANS,
    AlreadyInRoom,
    BannedFromRoom,
    NoSuchRoom,
    NotInRoom,
    NotOperator,
    Room,
    RoomError,
    room_key,
    validate_room_name,
)
from twistedchat.roomstore import RoomStore, StoredRoom
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
    account = Attribute(
        "The L{IAccount} the participant proved it owns (the avatar the portal"
        " returned), or C{None}."
    )
    rooms = Attribute(
        "The rooms the participant is in: a C{dict} of L{Room} by room key."
        " Changed only by L{ChatFactory}."
    )
    away = Attribute(
        'What the participant said when going away (C{str}), or C{""} if not'
        " away. Set only by L{ChatFactory}."
    )
    echo = Attribute(
        "Whether the participant is delivered its own chat lines, actions and"
        " private messages (C{bool}), as everyone else gets them, with their"
        " id and time: a front end that shows them only once the server has"
        " them (WebSocket) sets it; telnet does not."
    )

    def deliver(event: Event) -> None:
        """
        Show C{event} to this participant. Must not raise.
        """

    def notify(text: str) -> None:
        """
        Tell this participant only C{text}, from the server (a
        L{twistedchat.events.Notice}): that the cluster's link is down, or
        that it lost its nickname. Must not raise.
        """

    def disconnect() -> None:
        """
        Close the connection once what was delivered so far has been sent.
        """


class ICluster(Interface):
    """
    How a node shares the chat with the other nodes of a cluster: the seam
    between L{ChatFactory}, which checks every rule against what it knows,
    and the way events reach other nodes (docs/cluster.md, section 10).
    L{LocalCluster} is a single server; L{twistedchat.cluster.RedisCluster}
    shares the chat through Redis.
    """

    detached = Attribute(
        "Whether this node cannot reach the other nodes now (C{bool});"
        " always C{False} for a single server."
    )

    def start() -> Deferred[None]:
        """
        Join the cluster; fires once joined (or at once, alone).
        """

    def stop() -> Deferred[None]:
        """
        Leave the cluster, after L{ChatFactory.shutdown}.
        """

    def publish(
        event: Event,
        rooms: tuple[Room, ...],
        exclude: IParticipant | None,
        quiet: Collection[str],
        store: bool,
        subject: IParticipant | None,
        change: dict[str, Any] | None,
    ) -> None:
        """
        Store C{event} in the history of C{rooms} (if C{store}), and deliver
        it once to each of their members but C{exclude}, on every node;
        rooms whose keys are in C{quiet} only learn of it (membership).

        @param subject: the participant it is about (who joined, left, was
            kicked, changed nickname or went away), if any.
        @param change: what it changed in its room (see L{ChatFactory._publish}).
        """

    def private_message(
        message: PrivateMessage, sender: IParticipant, recipient: IParticipant
    ) -> None:
        """
        Store C{message} and deliver it to C{recipient}, and to C{sender}
        too if it asked for its own (C{echo}).
        """

    def remembers(room: str) -> bool:
        """
        Whether this node's history in memory holds what was said lately
        in the room with key C{room} (a node that had nobody there did not
        hear it).
        """

    def load_history(room: str) -> Deferred[int | None]:
        """
        Read the room C{room}'s recent history again from the shared
        database into memory, after which L{remembers} it; fires with the
        id of the first of its events delivered here meanwhile, or C{None}.
        """

    def registered(participant: IParticipant) -> None:
        """
        C{participant}, on this node, has just taken its nickname.
        """

    def renamed(participant: IParticipant, old: str) -> None:
        """
        C{participant}, on this node, has just changed nickname from C{old}.
        """

    def left(participant: IParticipant) -> None:
        """
        C{participant}, on this node, has just left the chat.
        """

    def entered(participant: IParticipant, room: Room) -> None:
        """
        C{participant} has just entered C{room}.
        """

    def exited(participant: IParticipant, room: Room) -> None:
        """
        C{participant} has just left C{room}.
        """


@implementer(ICluster)
class LocalCluster:
    """
    A single server: every event is stored and delivered at once, here.
    """

    detached = False

    def __init__(self, factory: ChatFactory) -> None:
        self._factory = factory

    def start(self) -> Deferred[None]:
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def publish(
        self,
        event: Event,
        rooms: tuple[Room, ...],
        exclude: IParticipant | None,
        quiet: Collection[str],
        store: bool,
        subject: IParticipant | None,
        change: dict[str, Any] | None,
    ) -> None:
        if quiet:
            rooms = tuple(room for room in rooms if room.key not in quiet)
        history = self._factory.history
        if store and history is not None:
            for room in rooms:
                history.record(event, room.key)
        self._factory._fan_out(event, everyone_in(rooms), exclude)

    def private_message(
        self, message: PrivateMessage, sender: IParticipant, recipient: IParticipant
    ) -> None:
        history = self._factory.history
        if history is not None:
            history.record(message)
        if sender.echo and sender is not recipient:
            self._factory._fan_out(message, (recipient, sender))
        else:
            self._factory._fan_out(message, (recipient,))

    def remembers(self, room: str) -> bool:
        return True

    def load_history(self, room: str) -> Deferred[int | None]:
        return succeed(None)

    def registered(self, participant: IParticipant) -> None:
        pass

    def renamed(self, participant: IParticipant, old: str) -> None:
        pass

    def left(self, participant: IParticipant) -> None:
        pass

    def entered(self, participant: IParticipant, room: Room) -> None:
        pass

    def exited(self, participant: IParticipant, room: Room) -> None:
        pass


def everyone_in(rooms: tuple[Room, ...]) -> Iterable[IParticipant]:
    """
    Return the members of C{rooms}, each once.
    """
    if len(rooms) == 1:
        return rooms[0].members
    if not rooms:
        return ()
    members: dict[IParticipant, None] = {}
    for room in rooms:
        members.update(room.members)
    return members


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
    @ivar default_room: the room everyone is put in on registration; it
        never vanishes.
    @ivar quiet_joins_above: in a room with more members than this, joins
        and leaves are not announced.
    @ivar max_rooms_per_user: rooms one participant may be in at once
        (IRC's CHANLIMIT); C{0} means no limit.
    @ivar max_rooms: rooms that may exist at once, kept ones included;
        C{0} means no limit.
    @ivar server_operators: keys of the accounts that are operators in
        every room and may C{/kill} (C{--oper}).
    @ivar room_store: where rooms operated by an account are kept across
        restarts, or C{None}.
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
        default_room: str = "#lobby",
        quiet_joins_above: int = 250,
        max_rooms_per_user: int = 20,
        max_rooms: int = 10000,
        server_operators: Iterable[str] = (),
        stored_rooms: Iterable[StoredRoom] = (),
        room_store: RoomStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """
        @param stored_rooms: the rooms kept across restarts (read at
            start-up by L{twistedchat.roomstore.load_rooms}), each with
            where its life started (L{Room.since}), stored when it was
            created.
        @param server_operators: the nicknames of the server operators'
            accounts.
        @raise twistedchat.rooms.InvalidRoomName: C{default_room} is no room
            name.
        """
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
        #: How this node shares the chat with others: L{LocalCluster} alone,
        #: or a L{twistedchat.cluster.RedisCluster} (C{--cluster}).
        self.cluster: ICluster = LocalCluster(self)
        #: What has happened since the start, for --metrics.
        self.counts = Counts()
        self.quiet_joins_above = quiet_joins_above
        self.max_rooms_per_user = max_rooms_per_user
        self.max_rooms = max_rooms
        self.server_operators = frozenset(nickname_key(n) for n in server_operators)
        self.room_store = room_store
        self._rooms: dict[str, Room] = {}
        self._stored: set[str] = set()
        for stored in stored_rooms:
            self._rooms[stored.key] = Room.restored(stored)
            self._stored.add(stored.key)
        validate_room_name(default_room)
        self.default_room = self._rooms.setdefault(room_key(default_room), Room(default_room))
        self.default_room.permanent = True
        # The default room's history is continuous, even if it was a kept
        # room of another life before it became the default room.
        self.default_room.since = 0
        if history is not None:
            # Rooms that vanished before the restart stay on disk only, and
            # so do the lives of kept rooms before they were created.
            history.retain({key: room.since for key, room in self._rooms.items()})
            history.default_room = self.default_room.key

    def connections_by_front_end(self) -> Counter[str]:
        """
        Return how many connections are open, by the C{kind} of their front
        end (C{telnet}, C{websocket}, C{irc}).
        """
        return Counter(
            getattr(getattr(participant, "front_end", None), "kind", "other")
            for participant in self._connections
        )

    def user_count(self) -> int:
        """
        Return how many registered users are online.
        """
        return len(self._participants)

    def room_count(self) -> int:
        """
        Return how many rooms exist.
        """
        return len(self._rooms)

    def reconfigure(self, **settings: Any) -> None:
        """
        Take new settings while running (C{SIGHUP}): each keyword is an
        argument of C{__init__} that a running server can change
        (C{motd}, C{max_clients}, C{flood_rate}, C{connection_rate},
        C{reserved_nicknames}, C{server_operators}, ...). They apply to
        what happens from now on: new connections, the next line, the next
        password; nobody is disconnected.

        @raise TypeError: a setting that cannot change while running.
        """
        for name, value in settings.items():
            if name == "connection_rate":
                self.connection_throttle.limit = value
            elif name == "connection_ban":
                self.connection_throttle.ban = value
            elif name == "max_registrations":
                self.registrations.per_hour = value
            elif name == "reserved_nicknames":
                self.reserved_nicknames = tuple(value)
                self._reserved = frozenset(nickname_skeleton(n) for n in self.reserved_nicknames)
            elif name == "server_operators":
                self.server_operators = frozenset(nickname_key(n) for n in value)
            elif name in _RECONFIGURABLE:
                setattr(self, name, value)
            else:
                raise TypeError(f"{name} cannot change while the server runs")

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
        Return how many connections are open, in all or, as C{max_per_ip}
        counts them, from C{host}'s address group (L{group_of}: none from
        an exempt address).
        """
        if host is None:
            return len(self._connections)
        group = self.group_of(host)
        return 0 if group is None else self._per_host[group]

    # Participants

    def nicknames(self) -> list[str]:
        """
        Return the nicknames of everyone registered, sorted
        case-insensitively.
        """
        return sorted((p.nickname for p in self._participants.values()), key=nickname_key)

    def online_summary(self) -> tuple[int, list[str]]:
        """
        Return how many are online and, unless there are more than
        C{quiet_joins_above} (a list that long helps nobody, and sorting
        it for each of thousands of users joining at once would cost
        seconds), their nicknames sorted case-insensitively; else C{[]}.
        """
        count = len(self._participants)
        return count, self.nicknames() if count <= self.quiet_joins_above else []

    def participant(self, nickname: str) -> IParticipant:
        """
        Return the registered participant called C{nickname} (compared
        case-insensitively).

        @raise NoSuchNickname: nobody online is called that.
        """
        try:
            return self._participants[nickname_key(nickname)]
        except KeyError:
            raise NoSuchNickname(nickname) from None

    def online(self, nickname: str) -> IParticipant | None:
        """
        Return the registered participant called C{nickname} (compared
        case-insensitively), or C{None} if nobody online is called that.
        """
        return self._participants.get(nickname_key(nickname))

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

    def _claim(
        self,
        participant: IParticipant,
        nickname: str,
        account: IAccount | None,
        same: bool = False,
    ) -> None:
        """
        Check that C{participant} may take C{nickname}, and if it proved it
        owns C{nickname}'s account while another connection holds it, close
        that connection as "ghosted" (IRC services' REGAIN).

        A nickname that differs from an online or registered one only by
        look-alike characters counts as taken (UTS #39 skeletons, as Ergo
        does), so nobody can pass as C{alice} with C{aIice}.

        @param account: the account C{participant} proved it owns (the
            avatar C{twisted.cred} returned), or C{None}.
        @param same: C{nickname} is C{participant}'s own nickname in
            another case, which it may take whoever owns it.
        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it or one that looks like it.
        @raise NicknameRegistered: it is registered to another account than
            C{account}.
        """
        validate_nickname(nickname, self.max_nick_length)
        key, skeleton = nickname_key(nickname), nickname_skeleton(nickname)
        if skeleton in self._reserved:
            raise NicknameReserved(f"The nickname {nickname} is reserved.")
        registered = self.accounts is not None and self.accounts.is_registered(nickname)
        if registered and not same and (account is None or account.nickname_key != key):
            raise NicknameRegistered(nickname)
        holder = self._participants.get(key)
        if holder is not None and holder is not participant and not registered:
            raise NicknameInUse(nickname)
        look_alike = self._skeletons.get(skeleton, key)
        if look_alike != key and self._participants[look_alike] is not participant:
            raise NicknameInUse(nickname, like=self._participants[look_alike].nickname)
        if self.accounts is not None and self.accounts.is_confusable(nickname):
            raise NicknameInUse(nickname, like="a registered nickname")
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

    def register(
        self, participant: IParticipant, nickname: str, account: IAccount | None = None
    ) -> Room | None:
        """
        Put C{participant} into the chat as C{nickname}, and into the
        default room unless it is banned from it, announcing it there. If it
        proved it owns C{nickname}'s account and another connection holds
        the nickname, that one is closed as "ghosted" first.

        @param account: the account C{participant} proved it owns: the
            avatar the portal returned for its password, or C{None}.
        @return: the default room, or C{None} if it is banned from it.
        @raise twistedchat.nicknames.InvalidNickname: C{nickname} breaks
            the rules of L{twistedchat.nicknames.validate_nickname}.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it, or one that looks like it.
        @raise NicknameRegistered: it is registered to another account.
        """
        self._claim(participant, nickname, account)
        participant.account = account
        self._add(participant, nickname)
        self.cluster.registered(participant)
        room = self.default_room
        if room.is_banned(nickname, _key(account)) and not self.is_server_operator(participant):
            return None
        self._enter(participant, room)
        return room

    def rename(self, participant: IParticipant, new: str, account: IAccount | None = None) -> None:
        """
        Change a registered participant's nickname to C{new} and announce it
        to everyone who shares a room with it. A change of case only is
        allowed.

        @param account: the account the participant proved it owns, if
            any; if it is C{new}'s, another connection holding C{new} is
            closed as "ghosted".
        @raise twistedchat.nicknames.InvalidNickname: C{new} breaks the
            nickname rules.
        @raise NicknameReserved: it, or one that looks like it, is reserved.
        @raise NicknameInUse: someone else has it, or one that looks like it.
        @raise NicknameRegistered: it is registered to another account.
        @raise twistedchat.rooms.BannedFromRoom: it is banned from a room
            the participant is in.
        """
        old = participant.nickname
        assert old is not None
        for room in participant.rooms.values():
            if room.is_banned(new, _key(account)) and not self.is_server_operator(participant):
                raise BannedFromRoom(
                    room.name, f"The nickname {new} is banned from {room.name}, where you are."
                )
        self._claim(participant, new, account, same=nickname_key(new) == nickname_key(old))
        if new == old:
            return
        self._remove(participant)
        self._add(participant, new)
        self.cluster.renamed(participant, old)
        self._log.info("{old} is now known as {new}", old=old, new=new)
        event = NicknameChanged(old, new)
        self._publish(event, *participant.rooms.values(), exclude=participant, subject=participant)
        if participant.echo:
            # A front end that shows its user's own events learns the new
            # nickname as the others do, even in no room.
            if self.history is not None:
                self.history.stamp(event)
            self._fan_out(event, (participant,))

    def leave(self, participant: IParticipant, reason: str) -> None:
        """
        Take C{participant} out of the chat and its rooms, if it is in, and
        announce that it left for C{reason} in each room it was in that
        announces leaves, unless the server is shutting down.
        """
        if not self.is_joined(participant):
            return
        nickname = participant.nickname
        assert nickname is not None
        self._remove(participant)
        self.cluster.left(participant)
        self._log.info("{nickname} quit ({reason})", nickname=nickname, reason=reason)
        rooms = list(participant.rooms.values())
        quiet = {room.key for room in rooms if self._quiet(room)}
        for room in rooms:
            self._exit(participant, room)
        # Not in a room that vanished as it left; nowhere while shutting down.
        quiet.update(r.key for r in rooms if self._closing is not None or r.key not in self._rooms)
        self._publish(Left(nickname, reason), *rooms, quiet=quiet, subject=participant)

    # Rooms

    def rooms(self) -> list[Room]:
        """
        Return every room, sorted by name (case-insensitively).
        """
        return sorted(self._rooms.values(), key=lambda room: room.key)

    def room(self, name: str) -> Room:
        """
        Return the room called C{name}.

        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.NoSuchRoom: there is no such room.
        """
        validate_room_name(name)
        room = self._rooms.get(room_key(name))
        if room is None:
            raise NoSuchRoom(name, f"There is no room {name}; /rooms lists them.")
        return room

    def room_of(self, participant: IParticipant, name: str) -> Room:
        """
        Return the room called C{name}, which C{participant} must be in.

        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.NotInRoom: it is not in that room (or
            there is none).
        """
        validate_room_name(name)
        room: Room | None = participant.rooms.get(room_key(name))
        if room is None:
            raise NotInRoom(name, f"You are not in {name}; /join {name} joins it.")
        return room

    def is_server_operator(self, participant: IParticipant) -> bool:
        """
        Return whether C{participant} proved it owns an account named with
        C{--oper}.
        """
        account = participant.account
        return account is not None and account.nickname_key in self.server_operators

    def is_operator(self, participant: IParticipant, room: Room) -> bool:
        """
        Return whether C{participant} is an operator of C{room}: made one
        while connected, or through the account it proved it owns, or as a
        server operator.
        """
        return (
            participant in room.operators
            or _key(participant.account) in room.operator_accounts
            or self.is_server_operator(participant)
        )

    def _quiet(self, room: Room) -> bool:
        """
        Return whether C{room} has so many members that joins and leaves
        are not announced there (C{quiet_joins_above}).
        """
        return len(room.members) > self.quiet_joins_above

    def _enter(self, participant: IParticipant, room: Room) -> None:
        """
        Put C{participant} into C{room} and announce it to the others
        unless the room is too crowded for that.
        """
        room.members[participant] = None
        participant.rooms[room.key] = room
        self.cluster.entered(participant, room)
        quiet = {room.key} if self._quiet(room) else set()
        event = Joined(participant.nickname, room.name)
        self._publish(event, room, exclude=participant, quiet=quiet, subject=participant)

    def _exit(self, participant: IParticipant, room: Room) -> None:
        """
        Take C{participant} out of C{room}, without a word; a room left
        empty vanishes unless it is kept (see L{Room.permanent},
        L{Room.persistent}).
        """
        room.members.pop(participant, None)
        room.operators.discard(participant)
        participant.rooms.pop(room.key, None)
        if not room.members and not room.permanent and not room.persistent:
            if self._rooms.get(room.key) is room:
                del self._rooms[room.key]
            if self.history is not None:
                self.history.forget(room.key)
        self.cluster.exited(participant, room)

    def join(self, participant: IParticipant, name: str) -> Room:
        """
        Put C{participant} into the room called C{name}, creating it, with
        C{participant} as its operator, if there is none; announce it to
        the room's members unless the room is too crowded for that.

        @return: the room.
        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.BannedFromRoom: it is banned from the room.
        @raise twistedchat.rooms.RoomError: it is in C{max_rooms_per_user}
            rooms already, or the room would be new and there are
            C{max_rooms}.
        """
        validate_room_name(name)
        key = room_key(name)
        room = self._rooms.get(key)
        if room is not None and key in participant.rooms:
            return room
        if self.max_rooms_per_user and len(participant.rooms) >= self.max_rooms_per_user:
            raise RoomError(
                name, f"You are in {self.max_rooms_per_user} rooms already; /part one first."
            )
        if room is None and self.max_rooms and len(self._rooms) >= self.max_rooms:
            raise RoomError(name, f"There are {self.max_rooms} rooms already; join one of them.")
        if room is None:
            # Its history starts now: a room of this name that vanished
            # hands nothing on (see Room.since).
            since = self.history.last_id if self.history is not None else 0
            room = self._rooms[key] = Room(name, key, since=since)
            self._log.info(
                "{nickname} created the room {room}", nickname=participant.nickname, room=name
            )
            if participant.account is not None:
                room.operator_accounts.add(participant.account.nickname_key)
                self._save(room)
            else:
                room.operators.add(participant)
        elif room.is_banned(participant.nickname, _key(participant.account)):
            if not self.is_server_operator(participant):
                raise BannedFromRoom(room.name, f"You are banned from {room.name}.")
        self._enter(participant, room)
        return room

    def part(self, participant: IParticipant, name: str, reason: str) -> Room:
        """
        Take C{participant} out of the room called C{name}, telling the
        other members unless the room is too crowded for that.

        @return: the room it left.
        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.NotInRoom: it is not in that room.
        """
        room = self.room_of(participant, name)
        quiet = {room.key} if self._quiet(room) else set()
        event = Left(participant.nickname, reason, room.name)
        self._publish(event, room, exclude=participant, quiet=quiet, subject=participant)
        self._exit(participant, room)
        return room

    # Moderation

    def _operated(self, operator: IParticipant, name: str) -> Room:
        """
        Return the room called C{name}, of which C{operator} must be a
        member and an operator.

        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.NotInRoom: C{operator} is not in it.
        @raise twistedchat.rooms.NotOperator: it is no operator there.
        """
        room = self.room_of(operator, name)
        if not self.is_operator(operator, room):
            raise NotOperator(room.name, f"You are not an operator of {room.name}.")
        return room

    def _member(self, room: Room, nickname: str) -> IParticipant:
        """
        Return the member of C{room} called C{nickname}.

        @raise twistedchat.rooms.NotInRoom: nobody in C{room} is called that.
        """
        target = self._participants.get(nickname_key(nickname))
        if target is None or target not in room.members:
            raise NotInRoom(room.name, f"Nobody called {nickname} is in {room.name}.")
        return target

    def _moderated(
        self,
        operator: IParticipant,
        room: Room,
        event: Event,
        what: str,
        save: bool = True,
        subject: IParticipant | None = None,
        change: dict[str, Any] | None = None,
    ) -> None:
        """
        Log what C{operator} did, keep the room's new state if it is kept
        across restarts (C{save}), and tell every member of C{room} with
        C{event} (about C{subject}, changing C{change}: see L{_publish}).
        """
        self._log.info(
            "operator {operator} in {room}: {what}",
            operator=operator.nickname,
            room=room.name,
            what=what,
        )
        if save:
            self._save(room)
        self._publish(event, room, subject=subject, change=change)

    def set_topic(self, participant: IParticipant, name: str, topic: str) -> Room:
        """
        Set the topic of the room called C{name} to C{topic} (C{""} clears
        it) and tell its members, C{participant} included.

        @return: the room.
        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.NotInRoom: C{participant} is not in it.
        @raise twistedchat.rooms.NotOperator: the room is C{+t} and
            C{participant} is no operator there.
        """
        room = self.room_of(participant, name)
        if room.topic_locked and not self.is_operator(participant, room):
            raise NotOperator(room.name, f"Only operators set the topic of {room.name}.")
        nickname = participant.nickname
        assert nickname is not None
        self._log.info(
            "{nickname} set the topic of {room}{by_operator}",
            nickname=nickname,
            room=room.name,
            by_operator=" (as operator)" if self.is_operator(participant, room) else "",
        )
        room.topic, room.topic_by, room.topic_at = topic, nickname, self.clock.seconds()
        self._save(room)
        change = {"topic": topic, "topic_by": nickname, "topic_at": room.topic_at}
        self._publish(TopicChanged(room.name, nickname, topic), room, change=change)
        return room

    def set_mode(self, operator: IParticipant, name: str, change: str) -> Room:
        """
        Turn the room mode C{+t} (only operators set the topic) on or off:
        C{change} is C{"+t"} or C{"-t"}.

        @raise ValueError: C{change} is neither.
        @raise twistedchat.rooms.RoomError: see L{_operated}, or the room
            has that mode already.
        """
        if change not in ("+t", "-t"):
            raise ValueError(change)
        room = self._operated(operator, name)
        if room.topic_locked == (change == "+t"):
            raise RoomError(room.name, f"{room.name} is {change} already.")
        room.topic_locked = change == "+t"
        event = ModeChanged(room.name, operator.nickname, change)
        self._moderated(operator, room, event, change, change={"locked": room.topic_locked})
        return room

    def kick(self, operator: IParticipant, name: str, nickname: str, reason: str) -> None:
        """
        Remove the member called C{nickname} from the room called C{name},
        telling every member why (the one kicked included).

        @raise twistedchat.rooms.RoomError: C{operator} is not an operator
            of the room (see L{_operated}), or nobody called C{nickname}
            is in it.
        """
        room = self._operated(operator, name)
        target = self._member(room, nickname)
        if target is operator:
            raise RoomError(room.name, f"/kick is for others; /part {room.name} leaves it.")
        event = Kicked(room.name, operator.nickname, target.nickname, reason)
        what = f"kicked {target.nickname} ({reason})"
        self._moderated(operator, room, event, what, save=False, subject=target)
        self._exit(target, room)

    def ban(self, operator: IParticipant, name: str, nickname: str, reason: str) -> None:
        """
        Ban C{nickname} from the room called C{name}: the account of the
        one who has it, if they proved they own one, else the nickname
        (registered nicknames are their account). A nickname ban covers its
        look-alikes too (L{nickname_skeleton}: C{b0b} for C{bob}). A member
        who is banned is also removed from the room. Every member is told.

        @raise twistedchat.nicknames.InvalidNickname: C{nickname} is no
            nickname.
        @raise twistedchat.rooms.RoomError: see L{_operated}.
        """
        room = self._operated(operator, name)
        validate_nickname(nickname, self.max_nick_length)
        target = self._participants.get(nickname_key(nickname))
        if target is not None and target.account is not None:
            ban = ("account", target.account.nickname_key)
        elif self.accounts is not None and self.accounts.is_registered(nickname):
            ban = ("account", nickname_key(nickname))
        else:
            ban = ("nickname", nickname_skeleton(nickname))
        shown = target.nickname if target is not None else nickname
        if ban[0] == "account" and ban[1] != nickname_key(shown):
            # /unban takes the account's name, which the operator may not
            # know otherwise.
            shown = f"{shown} (account {ban[1]})"
        if ban in room.bans:
            raise RoomError(room.name, f"{shown} is banned from {room.name} already.")
        if len(room.bans) >= MAX_BANS:
            raise RoomError(
                room.name, f"{room.name} has {MAX_BANS} bans already; /unban some first."
            )
        room.bans.add(ban)
        event = ModeChanged(room.name, operator.nickname, "+b", shown)
        what = f"banned {shown} ({ban[0]} {ban[1]})"
        self._moderated(operator, room, event, what, change={"bans_add": [list(ban)]})
        # Every connection the ban covers: one account may be online twice.
        for member in list(room.members):
            banned = room.is_banned(member.nickname, _key(member.account))
            if banned and not self.is_server_operator(member):
                why = reason or "banned"
                kicked = Kicked(room.name, operator.nickname, member.nickname, why)
                self._publish(kicked, room, subject=member)
                self._exit(member, room)

    def unban(self, operator: IParticipant, name: str, nickname: str) -> None:
        """
        Lift the bans on C{nickname} in the room called C{name}: as a
        nickname, as an account, and on the account of whoever is online
        as C{nickname}; tell every member.

        @raise twistedchat.rooms.RoomError: see L{_operated}, or
            C{nickname} is not banned there.
        """
        room = self._operated(operator, name)
        key = nickname_key(nickname)
        bans = {("account", key), ("nickname", nickname_skeleton(nickname))}
        target = self._participants.get(key)
        if target is not None and target.account is not None:
            bans.add(("account", target.account.nickname_key))
        bans &= room.bans
        if not bans:
            raise RoomError(room.name, f"{nickname} is not banned from {room.name}.")
        room.bans -= bans
        event = ModeChanged(room.name, operator.nickname, "-b", nickname)
        change = {"bans_remove": [list(ban) for ban in sorted(bans)]}
        self._moderated(operator, room, event, f"unbanned {nickname}", change=change)

    def set_operator(
        self, operator: IParticipant, name: str, nickname: str, operator_now: bool
    ) -> None:
        """
        Make the member called C{nickname} an operator of the room called
        C{name} (C{operator_now} true: C{/op}), through its account if it
        proved it owns one, or no longer one (C{/deop}); tell every member.

        @raise twistedchat.rooms.RoomError: see L{_operated}; nobody
            called C{nickname} is in the room; or it changes nothing (an
            operator already, or not one to take back: a server operator
            is one in every room).
        """
        room = self._operated(operator, name)
        target = self._member(room, nickname)
        account = _key(target.account)
        if operator_now and self.is_operator(target, room):
            raise RoomError(room.name, f"{target.nickname} is an operator of {room.name} already.")
        made = target in room.operators or account in room.operator_accounts
        if not operator_now and target is operator and made:
            # Operators through an account count while offline too.
            if not room.operator_accounts - {account} and not any(
                m is not target and self.is_operator(m, room) for m in room.members
            ):
                raise RoomError(
                    room.name,
                    f"You are the last operator of {room.name}; /op someone else first.",
                )
        if not operator_now and not made:
            if self.is_server_operator(target):
                why = "a server operator, an operator in every room"
            else:
                why = f"not an operator of {room.name}"
            raise RoomError(room.name, f"{target.nickname} is {why}.")
        made_now: dict[str, Any]
        if operator_now:
            if account is not None:
                room.operator_accounts.add(account)
                made_now = {"op_accounts_add": [account]}
            else:
                room.operators.add(target)
                made_now = {"ops_add": [target.nickname]}
        else:
            room.operators.discard(target)
            room.operator_accounts.discard(account)
            made_now = {"ops_remove": [target.nickname]}
            if account is not None:
                made_now["op_accounts_remove"] = [account]
        change = "+o" if operator_now else "-o"
        event = ModeChanged(room.name, operator.nickname, change, target.nickname)
        self._moderated(operator, room, event, f"{change} {target.nickname}", change=made_now)

    def kill(self, operator: IParticipant, nickname: str, reason: str) -> None:
        """
        Disconnect the participant called C{nickname} (C{/kill}): tell it
        who did it and why, and everyone in its rooms that it left, "killed
        by OPERATOR: REASON".

        @raise twistedchat.rooms.NotOperator: C{operator} is no server
            operator.
        @raise NoSuchNickname: nobody online is called C{nickname}.
        """
        if not self.is_server_operator(operator):
            raise NotOperator("", "Only server operators can /kill.")
        target = self.participant(nickname)
        self._log.info(
            "server operator {operator} killed {nickname}: {reason}",
            operator=operator.nickname,
            nickname=target.nickname,
            reason=reason,
        )
        target.deliver(Killed(operator.nickname, reason))
        self.leave(target, f"killed by {operator.nickname}: {reason}")
        target.disconnect()

    def _save(self, room: Room) -> None:
        """
        Keep C{room}'s topic, operators and bans across restarts while an
        account is one of its operators; forget them once none is.
        """
        if self.room_store is None:
            return
        if room.persistent:
            self._stored.add(room.key)
            self.room_store.save(room.stored())
        elif room.key in self._stored:
            self._stored.discard(room.key)
            self.room_store.forget(room.key)

    # Talking

    def say(self, sender: IParticipant, room: Room, text: str, notice: bool = False) -> None:
        """
        Send a chat line (a C{notice} if so) from C{sender} to the other
        members of C{room}, and to C{sender} too if it asked for its own
        (C{echo}).
        """
        if self.log_messages:
            self._log.info(
                "{room} <{nickname}> {text}", room=room.name, nickname=sender.nickname, text=text
            )
        event = ChatLine(sender.nickname, text, room.name, notice)
        self._publish(event, room, exclude=None if sender.echo else sender)

    def act(self, sender: IParticipant, room: Room, text: str) -> None:
        """
        Send an action (C{/me}) from C{sender} to the other members of
        C{room}, and to C{sender} too if it asked for its own (C{echo}).
        """
        if self.log_messages:
            self._log.info(
                "{room} * {nickname} {text}", room=room.name, nickname=sender.nickname, text=text
            )
        event = Action(sender.nickname, text, room.name)
        self._publish(event, room, exclude=None if sender.echo else sender)

    def private_message(
        self,
        sender: IParticipant,
        recipient: str,
        text: str,
        notice: bool = False,
        action: bool = False,
    ) -> str:
        """
        Send C{text} (a C{notice} or an C{action} if so) from C{sender} to
        the participant called C{recipient} only, and, if it asked for its
        own (C{echo}), to C{sender} too (once, if it is its own recipient).
        The text is logged only with C{log_messages}.

        @return: the recipient's nickname as they spell it.
        @raise NoSuchNickname: nobody online is called C{recipient}.
        """
        target = self.participant(recipient)
        self._log.info(
            "private message from {sender} to {recipient}, {length} characters",
            sender=sender.nickname,
            recipient=target.nickname,
            length=len(text),
        )
        message = PrivateMessage(sender.nickname, target.nickname, text, notice, action)
        self.cluster.private_message(message, sender, target)
        nickname: str = target.nickname
        return nickname

    def ctcp(self, sender: IParticipant, recipient: str, payload: str, reply: bool) -> None:
        """
        Pass a CTCP C{payload} (a query, or the C{reply} to one) from
        C{sender} to the participant called C{recipient}, and to C{sender}
        too if it asked for its own (C{echo}): a L{Ctcp} event, not
        recorded, which front ends other than IRC show nothing of.

        @raise NoSuchNickname: nobody online is called C{recipient}.
        """
        target = self.participant(recipient)
        assert sender.nickname is not None and target.nickname is not None
        event = Ctcp(sender.nickname, target.nickname, payload, reply)
        self._fan_out(
            event, (target, sender) if sender.echo and sender is not target else (target,)
        )

    def invite(self, inviter: IParticipant, name: str, nickname: str) -> str:
        """
        Invite the participant called C{nickname} to the room called
        C{name}, which C{inviter} is in: an L{Invited} event for them
        only. Rooms have no invitation-only mode, so it is only a word.

        @return: the invited user's nickname as they spell it.
        @raise twistedchat.rooms.NotInRoom: C{inviter} is not in the room.
        @raise NoSuchNickname: nobody online is called C{nickname}.
        @raise twistedchat.rooms.AlreadyInRoom: they are in the room.
        """
        room = self.room_of(inviter, name)
        target = self.participant(nickname)
        assert inviter.nickname is not None and target.nickname is not None
        if room.key in target.rooms:
            raise AlreadyInRoom(room.name, f"{target.nickname} is in {room.name} already.")
        invited: str = target.nickname
        self._fan_out(Invited(inviter.nickname, invited, room.name), (target,))
        return invited

    def set_away(self, participant: IParticipant, text: str) -> None:
        """
        Mark C{participant} as away with C{text}, or back with C{""}, and
        tell everyone sharing a room with it (an L{AwayChanged}, not
        recorded: it is a state, not something said).
        """
        if participant.away == text:
            return
        participant.away = text
        nickname = participant.nickname
        assert nickname is not None
        rooms = tuple(participant.rooms.values())
        event = AwayChanged(nickname, text)
        self._publish(event, *rooms, exclude=participant, store=False, subject=participant)

    def _publish(
        self,
        event: Event,
        *rooms: Room,
        exclude: IParticipant | None = None,
        quiet: Collection[str] = (),
        store: bool = True,
        subject: IParticipant | None = None,
        change: dict[str, Any] | None = None,
    ) -> None:
        """
        Store C{event} in the history of each of C{rooms}, if any, and
        deliver it once to each of their members but C{exclude}, through
        the cluster (L{ICluster.publish}).

        @param quiet: keys of those of C{rooms} where it is neither stored
            nor shown (a join in a crowded room), only known to the cluster.
        @param store: whether it goes into the history (an away change
            does not).
        @param subject: the participant it is about, if any (who joined,
            left, was kicked, changed nickname or went away).
        @param change: what it changed in its one room, for the other
            nodes' mirrors: C{topic} (with C{topic_by}, C{topic_at}),
            C{locked}, C{bans_add} and C{bans_remove} (lists of ban pairs),
            C{ops_add} and C{ops_remove} (nicknames of operators for their
            connection's life), C{op_accounts_add} and
            C{op_accounts_remove} (account keys).
        """
        self.cluster.publish(event, rooms, exclude, quiet, store, subject, change)

    def _fan_out(
        self, event: Event, recipients: Iterable[IParticipant], exclude: IParticipant | None = None
    ) -> None:
        """
        Deliver C{event} to each of C{recipients} but C{exclude}: the one
        path every message takes to its recipients, one call per
        recipient.
        """
        recipients = list(recipients)
        delivered = len(recipients)
        for participant in recipients:
            if participant is not exclude:
                participant.deliver(event)
            else:
                delivered -= 1
        self.counts.deliveries += delivered

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


def _key(account: IAccount | None) -> str | None:
    """
    Return the key of C{account}, or C{None} for none.
    """
    return None if account is None else account.nickname_key


#: Settings L{ChatFactory.reconfigure} sets as they are.
_RECONFIGURABLE = frozenset(
    {
        "motd",
        "max_line_length",
        "registration_timeout",
        "max_sendq",
        "sendq_timeout",
        "flood_rate",
        "flood_burst",
        "flood_bytes",
        "flood_byte_burst",
        "max_clients",
        "max_per_ip",
        "idle_timeout",
        "history_on_join",
        "quiet_joins_above",
        "max_rooms_per_user",
        "max_rooms",
        "random_nicknames",
        "log_messages",
        "exemptions",
    }
)
