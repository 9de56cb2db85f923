"""
Several twistedchat nodes sharing one chat through Redis (C{--cluster};
the design is docs/cluster.md, what users get is the README's "Running
several nodes").

Every node keeps a mirror of the whole chat (who is online and on which
node, every room with its members, topic, modes, operators and bans) in
its own L{ChatFactory}, so that every rule is still checked at once,
against what the node knows. What changes the chat is published through
Redis, and every node applies what the others published to its mirror and
delivers it to its own users. Nicknames are also claimed atomically in
Redis, under a lease each node renews, so that two nodes never both hand
out one nickname for long and a dead node's nicknames free themselves.

Redis keys (C{P} is C{--cluster-prefix}, C{tc:} by default)::

    P epoch              random, set by the first node after Redis started
                         empty: a node that finds another one knows Redis
                         lost everything
    P event-id           the last event id handed out (INCR)
    P room:KEY:seq       the last sequence number of a room's chat lines
    P nodes              sorted set: node id -> lease expiry (Redis ms)
    P node:ID            hash: name, pid, started
    P node:ID:nicks      hash: nickname key -> skeleton, held by that node
    P nicks              hash: nickname key -> node id holding it
    P skels              hash: nickname skeleton -> nickname key
    P reaping:ID         set (30 s) by the node announcing ID as lost

Channels, and what crosses them (one JSON object per message)::

    P room:KEY    chat lines and actions of one room: published once,
                  received only by the nodes with members in the room
    P global      what every mirror needs: Registered, Joined, Left,
                  NicknameChanged, TopicChanged, ModeChanged, Kicked,
                  AwayChanged, Hello, NodeLost, NodeStopped, AccountChanged
    P node:ID     to one node: PrivateMessage, Deliver (any other event
                  for one of its users), Disconnect, NicknameLost, State

A message::

    {"id": 1795786882000123,     event id (Lua prepends it; absent: none)
     "seq": 42,                  the room's sequence number (chat lines)
     "v": 1,                     format version; others are dropped
     "o": "alpha-3f9c1a02",      origin node id
     "k": 17,                    origin's token for the event
     "type": "ChatLine",         an event class of twistedchat.events, or
                                 a control message above
     "at": 1795786882.117,       when (origin's clock), seconds
     "rooms": ["#lobby"],        room keys it concerns
     "q": [],                    of those, where it is only membership
     "n": true,                  stored in the history
     "sn": "beta-77aa0c1e",      the node of the participant it is about
                                 (who joined, left, was kicked, renamed)
     "s": {...},                 on a join, the room's state, for a node
                                 that does not know the room yet: name,
                                 since, topic, topic_by, topic_at, locked,
                                 ops (nicknames), op_accounts, bans,
                                 permanent
     "c": {...},                 what it changed in its room: topic,
                                 topic_by, topic_at, locked, bans_add,
                                 bans_remove, ops_add, ops_remove,
                                 op_accounts_add, op_accounts_remove
     "a": "alice", "w": "",      on a nickname change: account and away
     "e": {"sender": "alice", "text": "hi", ...}}   the event's fields

The origin delivers its own events when they come back from Redis, like
every other node, so a room's lines reach every member in one order (the
order of C{seq}), with the same ids everywhere, and every node applies
every room change in that order, its own again too, so all end alike.
Nothing another node sends is trusted: a message that is not what this
version publishes (a nickname or room name breaking the rules, a state of
the wrong shape) is logged and dropped before anything changes.

A connection that leaves a command unanswered and hears nothing for
C{timeout} seconds is sent a C{PING}; if still nothing comes back, the
link is dropped and the node serves its own users alone ("detached")
until both connections are back, then joins again: claims its users'
nicknames again, says who they are (C{Hello}; every other node answers
with its own, C{State}) and fills the gaps in its rooms' lines from the
shared history.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import socket
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, UNIXClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from zope.interface import implementer

from twistedchat import events as _events
from twistedchat.accounts import Account
from twistedchat.events import (
    Action,
    AwayChanged,
    ChatLine,
    Event,
    Joined,
    Kicked,
    Left,
    ModeChanged,
    NicknameChanged,
    Notice,
    PrivateMessage,
    TopicChanged,
)
from twistedchat.factory import ChatFactory, ICluster, IParticipant, everyone_in
from twistedchat.history import MAX_EVENT_ID
from twistedchat.nicknames import nickname_key, nickname_skeleton, validate_nickname
from twistedchat.rooms import Room, room_key, validate_room_name
from twistedchat.session import Refused

#: The wire format's version (C{"v"}).
VERSION = 1

#: The longest nickname any node may hand out (C{--max-nick-length}'s
#: upper bound): what another node says someone is called is checked
#: against the nickname rules with it.
MAX_NICKNAME = 64

#: Seconds a connection to Redis may leave a command unanswered, hearing
#: nothing at all, before the link counts as down.
COMMAND_TIMEOUT = 5.0

#: Seconds to wait for the history of a gap to be written by its origin,
#: and how often to look (the origin writes every 0.5 s).
GAP_PATIENCE = 5.0
GAP_RETRY = 0.5

#: The events that may cross the cluster, by class name: nothing else is
#: ever built from a message.
_EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        _events.ChatLine,
        _events.Action,
        _events.PrivateMessage,
        _events.Ctcp,
        _events.Joined,
        _events.Left,
        _events.NicknameChanged,
        _events.TopicChanged,
        _events.Kicked,
        _events.ModeChanged,
        _events.AwayChanged,
        _events.Invited,
        _events.Killed,
        _events.Ghosted,
        _events.Notice,
        _events.Error,
    )
}

_CONVERSATION = (ChatLine, Action)

# Scripts. Each runs atomically in Redis. Ids are spliced in as text,
# never decoded and encoded again: Redis's cjson would turn large ids
# into floats (docs/cluster.md, section 6).

#: Lua: C{now}, Redis's clock in milliseconds, so that node clocks do not
#: matter to leases.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: Lua: C{free(node, held)} frees the nicknames of C{node}'s hash C{held}
#: (key -> skeleton) that it still holds; KEYS[2] and KEYS[3] are the
#: nicks and skels hashes.
_FREE = """
local function free(node, held)
  local entries = redis.call('HGETALL', held)
  for i = 1, #entries, 2 do
    if redis.call('HGET', KEYS[2], entries[i]) == node then
      redis.call('HDEL', KEYS[2], entries[i])
      if redis.call('HGET', KEYS[3], entries[i + 1]) == entries[i] then
        redis.call('HDEL', KEYS[3], entries[i + 1])
      end
    end
  end
  return #entries / 2
end
"""

#: Lua numbers are doubles, which .. would write as 1.7953e+15: %d keeps
#: every id below 2**53 exact.
#: KEYS: event-id, room seq (or event-id again); ARGV: channel, body
#: (a JSON object without its "{"), "1" to number it in the room.
_PUBLISH = """
local id = redis.call('INCR', KEYS[1])
local head = '{"id":' .. string.format('%d', id)
local seq = 0
if ARGV[3] == '1' then
  seq = redis.call('INCR', KEYS[2])
  head = head .. ',"seq":' .. string.format('%d', seq)
end
redis.call('PUBLISH', ARGV[1], head .. ',' .. ARGV[2])
return {id, seq}
"""

#: KEYS: nicks, skels, nodes, my node's nicks; ARGV: nickname key,
#: skeleton, my node id, "1" to take it over from a live holder, the key
#: and skeleton of the nickname it replaces ("" for none).
#: Returns {"ok", the node that held it or ""}, or {"in_use" or "like",
#: the live node that holds it or one like it}.
_CLAIM = (
    _NOW
    + """
local function alive(node)
  local score = redis.call('ZSCORE', KEYS[3], node)
  return score and tonumber(score) > now
end
if ARGV[5] ~= '' and redis.call('HGET', KEYS[1], ARGV[5]) == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[5])
  redis.call('HDEL', KEYS[4], ARGV[5])
  if redis.call('HGET', KEYS[2], ARGV[6]) == ARGV[5] then
    redis.call('HDEL', KEYS[2], ARGV[6])
  end
end
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[3] and alive(holder) and ARGV[4] ~= '1' then
  return {'in_use', holder}
end
local like = redis.call('HGET', KEYS[2], ARGV[2])
if like and like ~= ARGV[1] then
  local other = redis.call('HGET', KEYS[1], like)
  if other and alive(other) then
    return {'like', other}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return {'ok', holder or ''}
"""
)

#: KEYS: nicks, skels, my node's nicks; ARGV: nickname key, skeleton,
#: my node id.
_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
    redis.call('HDEL', KEYS[2], ARGV[2])
  end
end
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

#: KEYS: nodes; ARGV: my node id, lease in ms. Returns 1 if the node was
#: alive (its lease renewed in time), else 0.
_RENEW = (
    _NOW
    + """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if score and tonumber(score) > now then return 1 end
return 0
"""
)

#: KEYS: nodes, nicks, skels; ARGV: prefix, my node id, global channel.
#: Announces (NodeLost) and forgets every node whose lease has lapsed.
_REAP = (
    _NOW
    + _FREE
    + """
local lost = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local reaped = {}
for _, node in ipairs(lost) do
  local mark = ARGV[1] .. 'reaping:' .. node
  if node ~= ARGV[2] and redis.call('SET', mark, ARGV[2], 'NX', 'PX', 30000) then
    free(node, ARGV[1] .. 'node:' .. node .. ':nicks')
    redis.call('ZREM', KEYS[1], node)
    redis.call('DEL', ARGV[1] .. 'node:' .. node, ARGV[1] .. 'node:' .. node .. ':nicks')
    redis.call('PUBLISH', ARGV[3],
      '{"v":1,"type":"NodeLost","o":"' .. ARGV[2] .. '","node":"' .. node .. '"}')
    table.insert(reaped, node)
  end
end
return reaped
"""
)

#: KEYS: nodes, nicks, skels, my node's hash, my node's nicks; ARGV: my
#: node id. A node leaving: every nickname it holds is free at once.
_LEAVE = (
    _FREE
    + """
local freed = free(ARGV[1], KEYS[5])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
return freed
"""
)

#: KEYS: event-id; ARGV: the least id to hand out next. Ids stay above
#: every id this node stored or numbered itself (after Redis lost its
#: data too).
_SEED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class Unreachable(Refused):
    """
    The user named is on another node, which this node cannot reach now.
    C{str()} is a sentence fit to show the user.
    """


@dataclass(frozen=True)
class RedisAddress:
    """
    Where Redis listens: C{host} and C{port}, or a Unix socket C{path};
    the database number C{db} and the C{password}, if any.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    db: int = 0
    password: str | None = None

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"


def parse_redis_url(url: str) -> RedisAddress:
    """
    Parse C{--cluster}'s C{redis://[:PASSWORD@]HOST[:PORT][/DB]} or
    C{unix:/PATH/redis.sock} (the forms of Redis's own clients; see
    U{https://www.iana.org/assignments/uri-schemes/prov/redis}).

    @raise ValueError: C{url} is neither; the message is a sentence.
    """
    if url.startswith("unix:"):
        path = url[len("unix:") :].removeprefix("//")
        if not path.startswith("/"):
            raise ValueError(f"{url}: a unix: address needs an absolute path.")
        return RedisAddress(path=path)
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ValueError(f"{url} is no Redis URL: redis://[:PASSWORD@]HOST[:PORT][/DB].")
    try:
        port = parts.port or 6379
        db = int(parts.path.strip("/") or 0)
    except ValueError:
        raise ValueError(f"{url}: the port and database must be numbers.") from None
    password = unquote(parts.password) if parts.password is not None else None
    return RedisAddress(parts.hostname, port, "", db, password)


def probe_redis(address: RedisAddress, timeout: float = 5.0) -> None:
    """
    Check, before the reactor runs, that Redis answers C{PING} at
    C{address} (after C{AUTH} and C{SELECT}); blocking, for start-up only.

    @raise OSError: it does not; the message names the address and why.
    """
    try:
        if address.path:
            connection = socket.socket(socket.AF_UNIX)
            connection.settimeout(timeout)
            connection.connect(address.path)
        else:
            connection = socket.create_connection((address.host, address.port), timeout)
        with connection:
            commands: list[tuple[str, ...]] = []
            if address.password is not None:
                commands.append(("AUTH", address.password))
            commands += [("SELECT", str(address.db)), ("PING",)]
            for words in commands:
                request = f"*{len(words)}\r\n" + "".join(
                    f"${len(w.encode())}\r\n{w}\r\n" for w in words
                )
                connection.sendall(request.encode())
                reply = connection.recv(512).split(b"\r\n", 1)[0].decode(errors="replace")
                if not reply.startswith("+"):
                    raise OSError(reply.lstrip("-") or "the connection was closed")
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise OSError(f"cannot reach Redis at {address}: {why}") from None


def node_id(name: str) -> str:
    """
    Return a new node id for a node called C{name}: C{NAME-XXXXXXXX}, 8
    random hex digits drawn at every start, so that a restarted node never
    inherits its former life's lease or nicknames.
    """
    return f"{name}-{secrets.token_hex(4)}"


def node_name(node: str) -> str:
    """
    Return the name part of the node id C{node}.
    """
    return node.rpartition("-")[0] or node


def encode_event(event: Event) -> tuple[str, dict[str, Any]]:
    """
    Return the class name and the fields of C{event}, one of the events
    that may cross the cluster.

    @raise KeyError: it is not one of them.
    """
    name = type(event).__name__
    if _EVENTS[name] is not type(event):
        raise KeyError(name)
    return name, {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.init}


def decode_event(name: object, fields: object) -> Event:
    """
    Rebuild the event C{encode_event} gave C{name} and C{fields} for.

    @raise ValueError: they are not such an event (an unknown type, a
        missing or extra field, a field that is not a C{str} or C{bool}).
    """
    cls = _EVENTS.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict):
        raise ValueError(f"no event: {name!r}")
    allowed = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key, value in fields.items():
        if key not in allowed or not isinstance(value, (str, bool)):
            raise ValueError(f"{name}: bad field {key!r}")
        if (allowed[key].type == "bool") != isinstance(value, bool):
            raise ValueError(f"{name}: bad field {key!r}")
    try:
        return cls(**fields)
    except TypeError as e:
        raise ValueError(f"{name}: {e}") from None


@implementer(IParticipant)
class RemoteParticipant:
    """
    Someone connected to another node, as this node's mirror holds them:
    in the rooms they are in, so that rules, C{/names} and C{/whois} see
    them; what is delivered to them goes to their node.
    """

    echo = False

    def __init__(self, cluster: RedisCluster, node: str, account: str | None, away: str) -> None:
        self.node = node
        self.nickname: str | None = None
        self.account = None if account is None else Account(account)
        self.away = away
        self.rooms: dict[str, Room] = {}
        self._cluster = cluster

    def deliver(self, event: Event) -> None:
        self._cluster.send_to(self, event)

    def notify(self, text: str) -> None:
        self._cluster.send_to(self, Notice(text))

    def disconnect(self) -> None:
        self._cluster.disconnect(self)

    def __repr__(self) -> str:
        return f"<RemoteParticipant {self.nickname} on {self.node}>"


def is_local(participant: IParticipant) -> bool:
    """
    Return whether C{participant} is connected to this node.
    """
    return type(participant) is not RemoteParticipant


def local_members(rooms: Iterable[Room]) -> list[IParticipant]:
    """
    Return the members of C{rooms} connected to this node, each once.
    """
    return [p for p in everyone_in(tuple(rooms)) if type(p) is not RemoteParticipant]


def _room_state(room: Room) -> dict[str, Any]:
    return {
        "name": room.name,
        "since": room.since,
        "topic": room.topic,
        "topic_by": room.topic_by,
        "topic_at": room.topic_at,
        "locked": room.topic_locked,
        "ops": sorted(p.nickname for p in room.operators if p.nickname is not None),
        "op_accounts": sorted(room.operator_accounts),
        "bans": sorted([kind, value] for kind, value in room.bans),
        "permanent": room.permanent,
    }


@dataclass
class _Pending:
    """
    An event this node published that has not come back from Redis yet:
    whom to deliver it to here, which rooms' history to store it in, and
    the rooms it was said in.
    """

    event: Event
    recipients: list[IParticipant]
    stored: list[str]
    rooms: list[str]


class _Link:
    """
    The node's two connections to Redis, through txredisapi (imported
    here only, so a single server never loads it): one for commands, one
    subscribed to channels. txredisapi reconnects both with backoff; the
    cluster hears when each comes and goes.
    """

    def __init__(self, cluster: RedisCluster, address: RedisAddress, reactor: Any) -> None:
        import txredisapi

        self.cluster = cluster
        self._reactor = reactor
        #: The commands connection and the subscribed one, while up.
        self.connections: list[Any] = [None, None]
        #: When each connection last received anything, and how many
        #: commands each has waiting for a reply.
        self.heard = [reactor.seconds(), reactor.seconds()]
        self.waiting = [0, 0]
        link = self

        class Watched:
            """
            Tells the link when this connection is up, hears anything, or
            is lost.
            """

            which: int

            def connectionMade(self) -> Any:
                self.whenConnected().addCallback(link._up, self.which)  # type: ignore[attr-defined]
                return super().connectionMade()  # type: ignore[misc]

            def dataReceived(self, data: bytes, unpause: bool = False) -> Any:
                link.heard[self.which] = reactor.seconds()
                return super().dataReceived(data, unpause)  # type: ignore[misc]

            def connectionLost(self, why: Any) -> None:
                super().connectionLost(why)  # type: ignore[misc]
                link._down(self, self.which)

        class Commands(Watched, txredisapi.RedisProtocol):  # type: ignore[misc]
            which = 0

        class Subscriber(Watched, txredisapi.SubscriberProtocol):  # type: ignore[misc]
            which = 1

            def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
                link.cluster.received(message)

        def factory(cls: Any, protocol: Any) -> Any:
            made = cls(None, address.db, 1, isLazy=True, password=address.password)
            made.protocol = protocol
            # Back sooner than txredisapi's 1 s to 10 s (docs/cluster.md, 11.1).
            made.initialDelay = 0.5
            made.maxDelay = 5.0
            return made

        self._factories = [
            factory(txredisapi.RedisFactory, Commands),
            factory(txredisapi.RedisFactory, Subscriber),
        ]
        for made in self._factories:
            if address.path:
                endpoint: Any = UNIXClientEndpoint(reactor, address.path, timeout=5)
            else:
                endpoint = TCP4ClientEndpoint(reactor, address.host, address.port, timeout=5)
            made.startConnecting(endpoint)

    @property
    def commands(self) -> Any:
        return self.connections[0]

    @property
    def subscriber(self) -> Any:
        return self.connections[1]

    def _up(self, protocol: Any, which: int) -> None:
        self.connections[which] = protocol
        self.heard[which], self.waiting[which] = self._reactor.seconds(), 0
        self.cluster.link_changed()

    def _down(self, protocol: Any, which: int) -> None:
        if self.connections[which] is protocol:
            self.connections[which] = None
            self.cluster.link_changed()

    def silent(self, now: float, timeout: float) -> bool:
        """
        Whether a connection has left a command unanswered, and heard
        nothing at all, for more than C{timeout} seconds.
        """
        return any(
            waiting and now - heard > timeout
            for waiting, heard in zip(self.waiting, self.heard, strict=True)
        )

    def drop(self) -> None:
        """
        Close both connections (they come back by themselves): after a
        command timed out, the link cannot be trusted.
        """
        for protocol in self.connections:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abortConnection()

    def close(self) -> Deferred[Any]:
        """
        Stop reconnecting and close both connections.
        """
        from twisted.internet.defer import gatherResults

        return gatherResults([f.disconnect() for f in self._factories], consumeErrors=True)


@implementer(ICluster)
class RedisCluster:
    """
    This node's part in a cluster sharing the chat through Redis.

    @ivar node: this node's id (L{node_id}).
    @ivar detached: whether Redis cannot be reached now: the node serves
        its own users alone meanwhile.
    """

    _log = Logger()

    def __init__(
        self,
        factory: ChatFactory,
        address: RedisAddress,
        name: str,
        prefix: str = "tc:",
        lease: float = 15.0,
        shared_history: bool = False,
        reactor: Any = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        """
        @param name: this node's name (C{--node-name}).
        @param lease: seconds the other nodes wait for this one to renew
            its lease before they announce its users lost.
        @param shared_history: the history is a database every node
            shares (PostgreSQL), from which gaps can be filled.
        @param reactor: the reactor (txredisapi itself always uses the
            global one).
        @param timeout: seconds Redis may leave a command unanswered,
            saying nothing at all, before the link counts as down (see
            L{_watch}).
        """
        if reactor is None:
            from twisted.internet import reactor
        self._factory = factory
        self._reactor = reactor
        self.timeout = timeout
        self._address = address
        self.node = node_id(name)
        self.name = name
        self._prefix = prefix
        self.lease = lease
        self._shared_history = shared_history
        self.detached = True
        self._link: _Link | None = None
        self._attaching = False
        self._attached_before = False
        self._stopping = False
        self._epoch = ""
        self._token = 0
        # Events published and not yet back, by token.
        self._pending: dict[int, _Pending] = {}
        # Commands waiting for a subscription to be confirmed first, so
        # that nothing this node says in a room is published before it
        # listens there; each with what to do if it is never sent.
        self._queue: deque[tuple[Callable[[], None], Callable[[], None] | None]] = deque()
        # Rooms this node no longer has members in, whose channel it still
        # listens to until its own last lines there come back.
        self._leaving: set[str] = set()
        self._unconfirmed_call: Any = None
        self._gates = 0
        self._subscribed: set[str] = set()
        self._seq: dict[str, int] = {}
        self._held: dict[str, list[dict[str, Any]]] = {}
        # Rooms whose recent history this node holds in memory: it has
        # heard their lines since they were created, or read them again.
        self._complete: set[str] = set()
        # Rooms whose history is being read again: what was heard
        # meanwhile, to keep once it is read.
        self._loading: dict[str, list[Event]] = {}
        self._loads: dict[str, Deferred[int | None]] = {}
        # The newest event read again from the database, by room: what a
        # gap brings that is not newer is in memory already.
        self._reloaded: dict[str, int] = {}
        # The last id this node numbered an event with itself (detached).
        self._last_here = 0
        self._unconfirmed: set[str] = set()
        # Nodes found lost by another node, whose users' quits are awaited,
        # and those this node is saying the users of left.
        self._lost: set[str] = set()
        self._reaping: set[str] = set()
        self._renewal = LoopingCall(self._renew)
        self._renewal.clock = reactor
        self._watchdog = LoopingCall(self._watch)
        self._probing = False
        self._watchdog.clock = reactor
        self._global = f"{prefix}global"
        self._own = self._node_channel(self.node)

    # Names

    def _node_channel(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    def _room_channel(self, key: str) -> str:
        return f"{self._prefix}room:{key}"

    def _key(self, name: str) -> str:
        return self._prefix + name

    # Starting and stopping

    def start(self) -> Deferred[None]:
        """
        Connect to Redis and join the cluster; fires at once: until the
        link is up, the node serves its users alone.
        """
        self._log.info(
            "cluster: node {node} joining through Redis at {address}",
            node=self.node,
            address=str(self._address),
        )
        if not self._shared_history:
            self._log.warn(
                "cluster: this node keeps its own history and accounts; "
                "--database postgresql://... shares them between nodes"
            )
        self._link = _Link(self, self._address, self._reactor)
        self._renewal.start(self.lease / 3, now=False)
        self._watchdog.start(1.0, now=False)
        accounts = self._factory.accounts
        if accounts is not None:
            accounts.changed = self._account_changed
        return succeed(None)

    def _account_changed(self, key: str) -> None:
        """
        Tell the other nodes to read the account C{key} again.
        """
        self._publish_raw(self._global, self._message("AccountChanged", key=key))

    async def _stop(self) -> None:
        self._stopping = True
        self._cancel_unconfirmed()
        for call in (self._renewal, self._watchdog):
            if call.running:
                call.stop()
        link = self._link
        if link is None:
            return
        if not self.detached and link.commands is not None:
            commands = link.commands
            try:
                # Bounded: stopping never waits for a Redis that went away.
                goodbye = commands.publish(
                    self._global, self._message("NodeStopped", node=self.node)
                )
                await goodbye.addTimeout(self.timeout, self._reactor)
                keys = [
                    self._key("nodes"),
                    self._key("nicks"),
                    self._key("skels"),
                    self._key(f"node:{self.node}"),
                    self._key(f"node:{self.node}:nicks"),
                ]
                left = commands.eval(_LEAVE, keys, [self.node])
                await left.addTimeout(self.timeout, self._reactor)
            except Exception as e:
                self._log.warn("cluster: could not say goodbye: {why}", why=str(e))
        self.detached = True
        await link.close()

    def stop(self) -> Deferred[None]:
        """
        Leave the cluster: tell the other nodes this node's users are gone
        (L{ChatFactory.shutdown} has already said goodbye to them), free
        their nicknames and close the link.
        """
        return Deferred.fromCoroutine(self._stop())

    # The link

    def link_changed(self) -> None:
        """
        One of the connections to Redis came or went: attach when both are
        up, detach when one is lost.
        """
        link = self._link
        if link is None or self._stopping:
            return
        try:
            if link.commands is not None and link.subscriber is not None:
                if self.detached and not self._attaching:
                    self._attaching = True
                    Deferred.fromCoroutine(self._attach()).addErrback(self._attach_failed)
            elif not self.detached:
                self._detach()
        except Exception:
            self._log.failure("cluster: while the link changed")

    def _attach_failed(self, failure: Any) -> None:
        self._attaching = False
        self._log.warn("cluster: could not join: {why}", why=failure.getErrorMessage())
        if self._link is not None:
            self._link.drop()

    def _timed(self, d: Deferred[Any], subscriber: bool = False) -> Deferred[Any]:
        """
        Count C{d}, a command's reply on the commands connection (or the
        C{subscriber} one), as awaited until it comes: see L{_watch}.
        """
        link = self._link
        if link is None:
            return d
        which = 1 if subscriber else 0
        link.waiting[which] += 1

        def answered(result: object) -> object:
            link.waiting[which] = max(0, link.waiting[which] - 1)
            return result

        return d.addBoth(answered)

    def _watch(self) -> None:
        """
        Find a dead link without a FIN: a connection that has left a
        command unanswered, hearing nothing at all, for C{timeout}
        seconds is sent a C{PING}; if nothing at all has come back on it
        C{timeout} seconds later, and one more turn of the reactor
        has read its sockets, the link is dropped. A node too busy to read
        or write for a while (thousands of users registering at once) so
        does not take its own slowness for Redis's.
        """
        link = self._link
        now = self._reactor.seconds()
        if link is None or self._probing or not link.silent(now, self.timeout):
            return
        self._probing = True
        for protocol in link.connections:
            if protocol is not None:
                protocol.ping().addErrback(lambda failure: None)

        def verify() -> None:
            self._reactor.callLater(0, verdict)

        def verdict() -> None:
            self._probing = False
            if self._link is link and min(link.heard) < now:
                self._log.warn(
                    "cluster: Redis did not answer for {s} s; reconnecting", s=self.timeout
                )
                link.drop()

        self._reactor.callLater(self.timeout, verify)

    async def _attach(self) -> None:
        link = self._link
        assert link is not None
        commands, subscriber = link.commands, link.subscriber
        # Named, for an operator's CLIENT LIST (and the tests' CLIENT KILL).
        for connection, role in ((commands, "cmd"), (subscriber, "sub")):
            named = connection.execute_command("CLIENT", "SETNAME", f"tc-{self.node}-{role}")
            await self._timed(named, subscriber=role == "sub")
        await self._timed(
            commands.execute_command("SET", self._key("epoch"), secrets.token_hex(16), "NX")
        )
        epoch = await self._timed(commands.execute_command("GET", self._key("epoch")))
        if self._epoch and epoch != self._epoch:
            self._log.warn("cluster: Redis lost its data (new epoch); rebuilding")
            self._seq.clear()
        self._epoch = epoch
        history = self._factory.history
        floor = max(self._last_here, 0 if history is None else history.last_id)
        await self._timed(commands.eval(_SEED, [self._key("event-id")], [floor]))
        await self._timed(commands.eval(_RENEW, [self._key("nodes")], [self.node, self.lease_ms]))
        await self._timed(
            commands.execute_command(
                "HSET",
                self._key(f"node:{self.node}"),
                "name",
                self.name,
                "pid",
                os.getpid(),
                "started",
                int(self._reactor.seconds()),
            )
        )
        self._subscribed.clear()
        for channel in (self._global, self._own):
            # One channel per SUBSCRIBE: txredisapi matches one reply per
            # command (docs/cluster.md, 11.1).
            await self._timed(subscriber.subscribe(channel), subscriber=True)
        # The default room is always heard: nearly every node has users in
        # it, and they find its recent history there at once.
        default = self._factory.default_room.key
        rooms = [
            key
            for key, room in self._factory._rooms.items()
            if key == default or local_members((room,))
        ]
        if not self._attached_before:
            self._complete.add(default)
        for key in rooms:
            await self._timed(subscriber.subscribe(self._room_channel(key)), subscriber=True)
            self._subscribed.add(key)
        # Nicknames this node held for users who left while it was cut off.
        held = await self._timed(
            commands.execute_command("HGETALL", self._key(f"node:{self.node}:nicks"))
        )
        if link.commands is not commands or link.subscriber is not subscriber:
            raise ConnectionError("the link dropped while joining")
        # Claims are checked again: another node may have handed out one
        # of this node's nicknames while they could not talk.
        locals_ = [p for p in self._factory._participants.values() if is_local(p)]
        here = {nickname_key(p.nickname) for p in locals_ if p.nickname is not None}
        held = held if isinstance(held, list) else []
        stale = dict(zip(held[::2], held[1::2], strict=True))
        self.detached = False
        self._attaching = False
        for key, room in list(self._factory._rooms.items()):
            if key not in self._subscribed and local_members((room,)):
                self._subscribe(key)  # joined while this node was joining
        for key, skeleton in stale.items():
            if key not in here:
                self._release_key(str(key), str(skeleton))
        self._say_who_is_here()
        self._pump()
        for key in rooms:
            self._catch_up(key, commands)
        self._unconfirmed = {
            p.node for p in self._factory._participants.values() if isinstance(p, RemoteParticipant)
        }
        self._cancel_unconfirmed()
        if self._unconfirmed:
            # Time for the others to come back too (they reconnect within
            # the link's 5 s backoff) before taking them for lost.
            self._unconfirmed_call = self._reactor.callLater(
                2 * self.lease + 5, self._drop_unconfirmed
            )
        if self._attached_before:
            # What was said elsewhere meanwhile is only in the database.
            self._complete.clear()
            if self._shared_history:
                self.load_history(self._factory.default_room.key)
            self._log.info("cluster: link to Redis back")
            self._tell_everyone(
                "The link to the other servers is back. What was said here while it was "
                "down was not seen there; /history shows it."
            )
        else:
            self._log.info("cluster: node {node} joined", node=self.node)
        self._attached_before = True

    def _detach(self) -> None:
        self.detached = True
        self._attaching = False
        self._cancel_unconfirmed()
        queue, self._queue = self._queue, deque()
        self._gates = 0
        self._subscribed.clear()
        self._leaving.clear()
        # Both connections start again, so no subscription outlives this.
        if self._link is not None:
            self._link.drop()
        # Rooms nobody here is in any more: nothing to catch up on.
        for key in list(self._seq):
            room = self._factory._rooms.get(key)
            if room is None or not local_members((room,)):
                self._seq.pop(key, None)
                self._held.pop(key, None)
        self._log.warn("cluster: link to Redis lost; serving this node's users alone")
        for _, dropped in queue:
            if dropped is not None:
                dropped()
        # What was published and has not come back: shown here at least.
        pending, self._pending = self._pending, {}
        for unsent in pending.values():
            self._here(unsent.event, unsent.recipients, unsent.stored)
        self._tell_everyone(
            "The link to the other servers is down: until it is back, only the people "
            f"on this server ({self.name}) hear you, and you hear only them."
        )

    def _say_who_is_here(self) -> None:
        """
        Claim every local user's nickname again and tell the other nodes
        who they are (C{Hello}; each answers with its own C{State}).
        """
        for participant in list(self._factory._participants.values()):
            if is_local(participant):
                self._claim(participant, "")
        self._publish_raw(self._global, self._message("Hello", **self._state()))

    def _tell_everyone(self, text: str) -> None:
        for participant in list(self._factory._participants.values()):
            if is_local(participant):
                participant.notify(text)

    @property
    def lease_ms(self) -> int:
        return int(self.lease * 1000)

    def _renew(self) -> None:
        link = self._link
        if self.detached or link is None or link.commands is None:
            return
        commands = link.commands

        def renewed(alive: int) -> None:
            if not alive and not self.detached:
                # The others took this node for dead: they told everyone
                # its users left, so say who is here again.
                self._log.warn("cluster: this node's lease had lapsed; joining again")
                self._say_who_is_here()

        self._timed(
            commands.eval(_RENEW, [self._key("nodes")], [self.node, self.lease_ms])
        ).addCallback(renewed).addErrback(self._failed, "renew the lease")
        self._timed(
            commands.eval(
                _REAP,
                [self._key("nodes"), self._key("nicks"), self._key("skels")],
                [self._prefix, self.node, self._global],
            )
        ).addErrback(self._failed, "look for lost nodes")
        if link.subscriber is not None:
            self._timed(link.subscriber.ping(), subscriber=True).addErrback(self._failed, "ping")

    def _failed(self, failure: Any, what: str) -> None:
        if not self.detached:
            self._log.warn(
                "cluster: could not {what}: {why}", what=what, why=failure.getErrorMessage()
            )

    # Sending

    def _send(self, action: Callable[[], None], dropped: Callable[[], None] | None = None) -> None:
        """
        Run C{action} (which sends a command) now, or after the commands
        waiting for a subscription; C{dropped} is called instead if the
        link goes down first.
        """
        if self._gates or self._queue:
            self._queue.append((action, dropped))
        else:
            action()

    def _pump(self) -> None:
        while self._queue and not self._gates and not self.detached:
            action, _ = self._queue.popleft()
            action()

    def _message(self, kind: str, **fields: Any) -> str:
        return json.dumps(
            {"v": VERSION, "o": self.node, "type": kind, **fields},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def _publish_raw(self, channel: str, message: str) -> None:
        def publish() -> None:
            link = self._link
            if self.detached or link is None or link.commands is None:
                return
            self._timed(link.commands.publish(channel, message)).addErrback(self._failed, "publish")

        self._send(publish)

    def _publish_numbered(
        self, channel: str, body: dict[str, Any], room: str | None
    ) -> Deferred[Any]:
        """
        Publish C{body} on C{channel} with an event id, and a sequence
        number in C{room} if given; fires with C{[id, seq]}.
        """
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)[1:]
        done: Deferred[Any] = Deferred()

        def publish() -> None:
            link = self._link
            if self.detached or link is None or link.commands is None:
                dropped()
                return
            seq_key = self._key(f"room:{room}:seq") if room is not None else self._key("event-id")
            self._timed(
                link.commands.eval(
                    _PUBLISH,
                    [self._key("event-id"), seq_key],
                    [channel, text, "1" if room is not None else "0"],
                )
            ).chainDeferred(done)

        def dropped() -> None:
            if not done.called:
                done.errback(ConnectionError("the link to Redis went down"))

        self._send(publish, dropped)
        return done

    def _stamp_here(self, event: Event) -> None:
        """
        Number C{event} here, while detached: from the clock in
        microseconds, above every id this node has seen, so that it takes
        its place in the history after what was said before it. Redis's
        ids start from the time the cluster's first node joined and grow by
        one an event, so they stay below the clock (docs/cluster.md,
        section 9); on joining again, Redis's are set above these.
        """
        if event.id:
            return
        now = self._reactor.seconds()
        history = self._factory.history
        seen = max(self._last_here, 0 if history is None else history.last_id)
        event.id = self._last_here = max(int(now * 1_000_000), seen + 1)
        event.at = now

    def _here(self, event: Event, recipients: list[IParticipant], stored: list[str]) -> None:
        """
        Store C{event} and deliver it to C{recipients} on this node only.
        """
        numbered = bool(event.id)  # a private message Redis numbered is stored
        self._stamp_here(event)
        history = self._factory.history
        if history is not None:
            if isinstance(event, PrivateMessage) and not numbered:
                history.record(event)
            for key in stored:
                history.record(event, key)
        self._factory._fan_out(event, recipients)

    def _node_of(self, participant: IParticipant) -> str:
        return participant.node if isinstance(participant, RemoteParticipant) else self.node

    def publish(
        self,
        event: Event,
        rooms: tuple[Room, ...],
        exclude: IParticipant | None,
        quiet: Collection[str],
        store: bool,
        subject: IParticipant | None = None,
        change: dict[str, Any] | None = None,
    ) -> None:
        if self._factory._closing is not None and isinstance(event, Left):
            return  # the node's NodeStopped says they all left
        announced = [room for room in rooms if room.key not in quiet]
        recipients = [p for p in local_members(announced) if p is not exclude]
        stored = [room.key for room in announced] if store else []
        if self.detached:
            self._here(event, recipients, stored)
            return
        self._token += 1
        token = self._token
        keys = [room.key for room in rooms]
        self._pending[token] = _Pending(event, recipients, stored, keys)
        kind, fields = encode_event(event)
        body: dict[str, Any] = {
            "v": VERSION,
            "o": self.node,
            "k": token,
            "type": kind,
            "at": self._reactor.seconds(),
            "rooms": keys,
            "q": [key for key in keys if key in quiet],
            "n": store,
            "e": fields,
        }
        if subject is not None:
            body["sn"] = self._node_of(subject)
            if isinstance(subject, RemoteParticipant) and subject.node in self._reaping:
                body["lost"] = True  # a quit because its node was lost
        if change:
            body["c"] = change
        if isinstance(event, Joined) and rooms:
            body["s"] = _room_state(rooms[0])
        elif isinstance(event, NicknameChanged):
            # Who it is, for a node that did not know them by the old one
            # (it held that nickname itself until the claims settled it).
            renamed = self._factory.online(event.new)
            account = None if renamed is None else renamed.account
            body["a"] = None if account is None else account.nickname_key
            body["w"] = "" if renamed is None else renamed.away
        if isinstance(event, _CONVERSATION):
            key = rooms[0].key
            published = self._publish_numbered(self._room_channel(key), body, key)
        else:
            published = self._publish_numbered(self._global, body, None)
        published.addErrback(self._unpublished, token)

    def _unpublished(self, failure: Any, token: int) -> None:
        """
        Publishing the event C{token} failed: show it here at least.
        """
        self._failed(failure, "publish")
        unsent = self._pending.pop(token, None)
        if unsent is not None:
            self._here(unsent.event, unsent.recipients, unsent.stored)
            self._unsubscribe_if_left(unsent.rooms)

    def private_message(
        self, message: PrivateMessage, sender: IParticipant, recipient: IParticipant
    ) -> None:
        echo = sender.echo and sender is not recipient
        if self.detached:
            if not is_local(recipient):
                raise Unreachable(
                    f"{recipient.nickname} is on another server, which cannot be reached now."
                )
            self._here(message, [recipient, sender] if echo else [recipient], [])
            return
        node = self._node_of(recipient)
        token = 0
        if is_local(recipient):
            # It comes back on this node's own channel.
            self._token += 1
            token = self._token
            self._pending[token] = _Pending(message, [recipient], [], [])
        kind, fields = encode_event(message)
        body = {
            "v": VERSION,
            "o": self.node,
            "k": token,
            "type": kind,
            "at": self._reactor.seconds(),
            "e": fields,
        }

        def numbered(result: list[int]) -> None:
            message.id, message.at = int(result[0]), body["at"]
            history = self._factory.history
            if history is not None:
                history.record(message)
            if echo:
                self._factory._fan_out(message, (sender,))

        def failed(failure: Any) -> None:
            self._failed(failure, "send a private message")
            unsent = self._pending.pop(token, None)
            if unsent is not None:
                self._here(message, [recipient, sender] if echo else [recipient], [])
            elif not is_local(recipient) and message.id == 0:
                sender.notify(
                    f"Your message to {recipient.nickname} could not be delivered: the link "
                    "to the other servers went down."
                )

        self._publish_numbered(self._node_channel(node), body, None).addCallbacks(numbered, failed)

    def send_to(self, participant: RemoteParticipant, event: Event) -> None:
        """
        Deliver C{event} to C{participant} on its node (a CTCP, an
        invitation, a notice that it was killed or ghosted).
        """
        if self.detached or participant.nickname is None:
            return
        try:
            kind, fields = encode_event(event)
        except KeyError:
            self._log.warn("cluster: cannot send {event!r} to another node", event=event)
            return
        message = self._message("Deliver", to=participant.nickname, ev=kind, e=fields)
        self._publish_raw(self._node_channel(participant.node), message)

    def disconnect(self, participant: RemoteParticipant) -> None:
        """
        Close C{participant}'s connection, on its node (C{/kill}, ghosting).
        """
        if self.detached or participant.nickname is None:
            return
        message = self._message("Disconnect", to=participant.nickname)
        self._publish_raw(self._node_channel(participant.node), message)

    # Nicknames

    def _claim(self, participant: IParticipant, old: str) -> None:
        nickname = participant.nickname
        if nickname is None or self.detached or self._link is None:
            return
        link = self._link
        key, skeleton = nickname_key(nickname), nickname_skeleton(nickname)
        account = participant.account
        take_over = account is not None and account.nickname_key == key
        old_key = nickname_key(old) if old else ""
        old_skeleton = nickname_skeleton(old) if old else ""

        def claimed(result: list[Any]) -> None:
            outcome, other = result[0], str(result[1])
            if outcome == "ok":
                if other and other != self.node:
                    # Taken over by its account's owner from someone on
                    # another node, who may not know yet (after a split).
                    message = self._message("NicknameLost", to=nickname)
                    self._publish_raw(self._node_channel(other), message)
                return
            self._lose(participant, nickname, other)

        def claim() -> None:
            if self.detached or link.commands is None:
                return
            self._timed(
                link.commands.eval(
                    _CLAIM,
                    [
                        self._key("nicks"),
                        self._key("skels"),
                        self._key("nodes"),
                        self._key(f"node:{self.node}:nicks"),
                    ],
                    [key, skeleton, self.node, "1" if take_over else "0", old_key, old_skeleton],
                )
            ).addCallback(claimed).addErrback(self._failed, "claim a nickname")

        self._send(claim)

    def _lose(self, participant: IParticipant, nickname: str, holder: str) -> None:
        """
        Another node handed out C{nickname} first (at the same moment, or
        while the two could not talk), or its account's owner took it
        back: rename C{participant}, who had it here, and tell them.
        """
        if participant.nickname != nickname or not self._factory.is_joined(participant):
            return
        self._log.info("cluster: {nickname} was taken on another node", nickname=nickname)
        new = self._factory.free_random_nickname()
        participant.notify(
            f"Someone on another server took {nickname} first; you are now {new}. "
            "/nick picks another nickname."
        )
        self._factory.rename(participant, new)
        # Learn who holds it: its node says who its users are.
        self._publish_raw(self._node_channel(holder), self._message("Hello", **self._state()))

    def _release(self, nickname: str | None) -> None:
        if nickname is not None:
            self._release_key(nickname_key(nickname), nickname_skeleton(nickname))

    def _release_key(self, key: str, skeleton: str) -> None:
        """
        Free the nickname with C{key} and C{skeleton} in Redis, if this
        node holds it.
        """
        link = self._link
        if self.detached or link is None:
            return  # swept when the link is back (see _attach)

        def release() -> None:
            if self.detached or link.commands is None:
                return
            self._timed(
                link.commands.eval(
                    _RELEASE,
                    [self._key("nicks"), self._key("skels"), self._key(f"node:{self.node}:nicks")],
                    [key, skeleton, self.node],
                )
            ).addErrback(self._failed, "release a nickname")

        self._send(release)

    def registered(self, participant: IParticipant) -> None:
        if self.detached:
            return
        self._claim(participant, "")
        account = participant.account
        self._publish_raw(
            self._global,
            self._message(
                "Registered",
                n=participant.nickname,
                a=None if account is None else account.nickname_key,
                w=participant.away,
            ),
        )

    def renamed(self, participant: IParticipant, old: str) -> None:
        if is_local(participant):
            self._claim(participant, old)

    def left(self, participant: IParticipant) -> None:
        if is_local(participant) and self._factory._closing is None:
            # While shutting down, leaving the cluster frees them all at once.
            self._release(participant.nickname)

    # Rooms

    def entered(self, participant: IParticipant, room: Room) -> None:
        if is_local(participant) and room.key not in self._subscribed and not self.detached:
            if len(room.members) == 1:
                self._complete.add(room.key)  # a new room: nothing said yet
            # Its lines are numbered from whatever comes first: what was
            # said while nobody here listened is no gap.
            self._seq.pop(room.key, None)
            self._leaving.discard(room.key)
            self._subscribe(room.key)

    async def _written(self, history: Any, room: str) -> None:
        """
        Wait, at most L{GAP_PATIENCE} seconds, until the last line said in
        C{room} is in the shared database (its node writes every half
        second).
        """
        link = self._link
        if self.detached or link is None or link.commands is None:
            return
        last = int(
            await self._timed(link.commands.execute_command("GET", self._key(f"room:{room}:seq")))
            or 0
        )
        deadline = self._reactor.seconds() + GAP_PATIENCE
        while last and self._reactor.seconds() < deadline:
            if await history.gap(room, self._epoch, last - 1, last + 1):
                return
            await deferLater(self._reactor, GAP_RETRY, lambda: None)

    def remembers(self, room: str) -> bool:
        return not self._shared_history or room in self._complete

    def load_history(self, room: str) -> Deferred[int | None]:
        """
        Read the last events of C{room} from the shared database, and keep
        them in memory in place of what this node heard of them; fires
        with the id of the first event heard here meanwhile (shown live
        already), or C{None}.
        """
        history = self._factory.history
        mirrored = self._factory._rooms.get(room)
        if history is None or mirrored is None:
            return succeed(None)
        loading = self._loads.get(room)
        if loading is None:
            self._loading[room] = []
            loading = self._loads[room] = Deferred.fromCoroutine(
                self._load(history, room, mirrored.since)
            )
        done: Deferred[int | None] = Deferred()

        def finished(result: object) -> object:
            done.callback(result if isinstance(result, int) else None)
            return result

        loading.addBoth(finished)
        return done

    async def _load(self, history: Any, room: str, since: int) -> int | None:
        try:
            await self._written(history, room)
            records = await history.page(room, MAX_EVENT_ID + 1, history.cap, since)
        except Exception as e:
            self._log.warn(
                "cluster: could not read the history of {room}: {why}", room=room, why=str(e)
            )
            records = None
        heard = self._loading.pop(room, [])
        self._loads.pop(room, None)
        first = min((event.id for event in heard), default=None)
        if records is None:
            return first
        history.forget(room)
        newest = 0
        for record in records:
            history.observe(record.event, room)
            newest = max(newest, record.event.id)
        for event in heard:
            if event.id > newest:
                history.observe(event, room)
        self._reloaded[room] = newest
        if room in self._subscribed:
            self._complete.add(room)
        return first

    def exited(self, participant: IParticipant, room: Room) -> None:
        key = room.key
        if key == self._factory.default_room.key:
            return
        if key in self._subscribed and not local_members((room,)):
            self._complete.discard(key)
            self._subscribed.discard(key)
            self._seq.pop(key, None)
            for envelope in self._held.pop(key, []):
                if envelope.get("o") == self.node:
                    self._event(envelope)  # this node's own, said before
            self._leaving.add(key)
            self._unsubscribe_if_left([key])

    def _unsubscribe_if_left(self, keys: Iterable[str]) -> None:
        """
        Stop listening to the rooms of C{keys} that this node left, once
        none of its own lines there is still on its way back.
        """
        for key in keys:
            if key not in self._leaving:
                continue
            if any(key in pending.rooms for pending in self._pending.values()):
                continue
            self._leaving.discard(key)
            link = self._link
            if link is not None and link.subscriber is not None and not self.detached:
                unsubscribed = link.subscriber.unsubscribe(self._room_channel(key))
                self._timed(unsubscribed, subscriber=True).addErrback(self._failed, "unsubscribe")

    def _subscribe(self, key: str) -> None:
        link = self._link
        if link is None or link.subscriber is None:
            return
        self._subscribed.add(key)
        self._gates += 1

        def confirmed(result: object) -> object:
            self._gates = max(0, self._gates - 1)
            self._pump()
            return result

        self._timed(link.subscriber.subscribe(self._room_channel(key)), subscriber=True).addBoth(
            confirmed
        ).addErrback(self._failed, "subscribe")

    def _catch_up(self, key: str, commands: Any) -> None:
        """
        After the link came back, fill what C{key}'s room said meanwhile.
        """
        last = self._seq.get(key)
        if last is None:
            return

        def current(value: Any) -> None:
            now = int(value or 0)
            if now > last and key not in self._held:
                self._held[key] = []
                self._fill(key, self._epoch, last, now + 1)

        self._timed(commands.execute_command("GET", self._key(f"room:{key}:seq"))).addCallback(
            current
        ).addErrback(self._failed, "read a room's position")

    # Receiving

    def received(self, message: object) -> None:
        """
        Handle one message from a channel: never raises; a message that
        is not what this version publishes is logged and dropped.
        """
        try:
            if isinstance(message, bytes):
                message = message.decode("utf-8")
            envelope = json.loads(message) if isinstance(message, str) else None
            if not isinstance(envelope, dict) or envelope.get("v") != VERSION:
                raise ValueError("not a version 1 message")
            self._dispatch(envelope)
        except (ValueError, KeyError, TypeError) as e:
            self._log.warn("cluster: dropped a message: {why}", why=str(e))
        except Exception:
            self._log.failure("cluster: dropped a message")

    def _dispatch(self, envelope: dict[str, Any]) -> None:
        kind = envelope.get("type")
        origin = envelope.get("o")
        if kind in _EVENTS:
            if isinstance(envelope.get("seq"), int) and envelope["seq"]:
                rooms = envelope.get("rooms")
                if not isinstance(rooms, list) or len(rooms) != 1:
                    raise ValueError("a numbered line in no one room")
                self._numbered(rooms[0], envelope)
            else:
                self._event(envelope)
            return
        if origin == self.node and kind in ("Registered", "Hello", "NodeStopped", "AccountChanged"):
            return
        if kind == "Registered":
            self._registered(envelope)
        elif kind in ("Hello", "State"):
            self._state_of(envelope)
            if kind == "Hello":
                state = self._message("State", **self._state())
                self._publish_raw(self._node_channel(str(origin)), state)
                # A node joining again may have been cut off: what its users
                # said meanwhile is in the database, not in this memory.
                rooms = envelope.get("rooms")
                if isinstance(rooms, dict) and rooms:
                    self._complete.difference_update(rooms)
                    default = self._factory.default_room.key
                    if default in rooms and self._shared_history:
                        self.load_history(default)
        elif kind in ("NodeLost", "NodeStopped"):
            node = envelope.get("node")
            if isinstance(node, str) and node != self.node:
                why = "node lost" if kind == "NodeLost" else "server shut down"
                reason = f"{why}: {node_name(node)}"
                self._log.info("cluster: {why}: {node}", why=why, node=node)
                if kind == "NodeLost" and origin == self.node:
                    # The node that found it lost says its users left, as
                    # quits every node shows and the history keeps.
                    self._reaping.add(node)
                    try:
                        for participant in list(self._factory._participants.values()):
                            if isinstance(participant, RemoteParticipant):
                                if participant.node == node:
                                    self._factory.leave(participant, reason)
                    finally:
                        self._reaping.discard(node)
                elif kind == "NodeLost":
                    # Those quits follow; whoever is still here after a
                    # while (the reaper lost its link) is taken out here,
                    # unless the node said who it is again meanwhile.
                    self._lost.add(node)
                    self._reactor.callLater(self.timeout, self._drop_lost, node, reason)
                else:
                    self._drop_node(node, reason)
        elif kind == "Deliver":
            target = self._local(envelope.get("to"))
            if target is not None:
                event = decode_event(envelope.get("ev"), envelope.get("e"))
                if isinstance(event, Notice):
                    target.notify(event.text)
                else:
                    target.deliver(event)
        elif kind == "NicknameLost":
            nickname = envelope.get("to")
            if isinstance(nickname, str):
                holder = self._factory._participants.get(nickname_key(nickname))
                if holder is not None and is_local(holder):
                    self._lose(holder, holder.nickname or nickname, str(envelope.get("o")))
        elif kind == "Disconnect":
            target = self._local(envelope.get("to"))
            if target is not None:
                target.disconnect()
        elif kind == "AccountChanged":
            accounts = self._factory.accounts
            key = envelope.get("key")
            if isinstance(key, str) and accounts is not None:
                accounts.refresh(key).addErrback(self._failed, "read an account again")
        else:
            raise ValueError(f"unknown message type {kind!r}")

    def _local(self, nickname: object) -> IParticipant | None:
        """
        Return the connection here called C{nickname}, even if it has just
        left the chat (a C{/kill} from another node takes it out first,
        then closes it), or C{None}.
        """
        if not isinstance(nickname, str):
            return None
        key = nickname_key(nickname)
        participant = self._factory._participants.get(key)
        if participant is not None and is_local(participant):
            return participant
        for connection in self._factory._connections:
            if connection.nickname is not None and nickname_key(connection.nickname) == key:
                return connection
        return None

    def _numbered(self, key: str, envelope: dict[str, Any]) -> None:
        """
        A chat line numbered in its room: delivered in the room's order,
        a gap first filled from the history.
        """
        if key not in self._subscribed:
            if envelope.get("o") == self.node:
                self._event(envelope)  # said as its sender left the room
            return
        held = self._held.get(key)
        if held is not None:
            held.append(envelope)
            return
        seq = envelope["seq"]
        last = self._seq.get(key)
        if last is not None and seq <= last:
            return  # seen already
        if last is not None and seq > last + 1:
            self._held[key] = [envelope]
            self._fill(key, self._epoch, last, seq)
            return
        self._seq[key] = seq
        self._event(envelope)

    def _fill(self, key: str, epoch: str, after: int, before: int) -> None:
        """
        Deliver the lines numbered between C{after} and C{before} in
        C{key}'s room, which this node missed, from the shared history,
        then the lines held meanwhile.
        """
        missing = before - after - 1
        history = self._factory.history
        deadline = self._reactor.seconds() + GAP_PATIENCE
        holding = self._held.get(key)

        def release(found: int) -> None:
            if self._held.get(key) is not holding or key not in self._subscribed:
                return  # the room was left (and maybe joined again) meanwhile
            room = self._factory._rooms.get(key)
            if found < missing and room is not None:
                lost = missing - found
                for member in local_members((room,)):
                    member.notify(
                        f"{lost} message{'s' if lost != 1 else ''} in {room.name} could not "
                        "be recovered from the other servers."
                    )
            self._seq[key] = max(self._seq.get(key, 0), before - 1)
            held = self._held.pop(key, [])
            for envelope in held:
                self._numbered(key, envelope)

        if history is None or not self._shared_history:
            release(0)
            return

        def look() -> None:
            assert history is not None
            d = history.gap(key, epoch, after, before)

            def got(records: list[Any]) -> None:
                if len(records) < missing and self._reactor.seconds() < deadline:
                    self._reactor.callLater(GAP_RETRY, look)
                    return
                room = self._factory._rooms.get(key)
                if room is not None:
                    recipients = local_members((room,))
                    reloaded = self._reloaded.get(key, 0)
                    for record in records:
                        self._factory._fan_out(record.event, recipients)
                        if record.event.id > reloaded:
                            history.observe(record.event, key)
                release(len(records))

            def failed(failure: Any) -> None:
                self._log.warn(
                    "cluster: could not read a gap: {why}", why=failure.getErrorMessage()
                )
                release(0)

            d.addCallbacks(got, failed)

        self._reactor.callLater(GAP_RETRY, look)

    def _event(self, envelope: dict[str, Any]) -> None:
        origin = envelope.get("o")
        token = envelope.get("k")
        ident = envelope.get("id", 0)
        at = envelope.get("at", 0.0)
        if not isinstance(ident, int) or not isinstance(at, (int, float)):
            raise ValueError("bad id or time")
        if envelope.get("type") == "PrivateMessage":
            self._private(envelope, ident, float(at))
            return
        rooms = envelope.get("rooms")
        quiet = envelope.get("q", [])
        if not isinstance(rooms, list) or not isinstance(quiet, list):
            raise ValueError("bad rooms")
        stored = [k for k in rooms if k not in quiet] if envelope.get("n") else []
        history = self._factory.history
        seq = envelope.get("seq") or None
        if origin == self.node and isinstance(token, int):
            pending = self._pending.pop(token, None)
            if pending is None:
                return  # shown already, while the link was down
            event = pending.event
            event.id, event.at = ident, float(at)
            if history is not None:
                for key in pending.stored:
                    history.record(event, key, seq=seq, epoch=self._epoch if seq else None)
                    heard = self._loading.get(key)
                    if heard is not None:
                        heard.append(event)
            # What it changed is applied in Redis's order here too, so that
            # every node ends with the last topic Redis carried.
            room = self._factory._rooms.get(room_key_of(envelope))
            if room is not None:
                self._apply_change(room, envelope.get("c"))
            self._factory._fan_out(event, pending.recipients)
            self._unsubscribe_if_left(pending.rooms)
            return
        event = decode_event(envelope.get("type"), envelope.get("e"))
        event.id, event.at = ident, float(at)
        apply = _APPLY.get(type(event))
        announced = [
            self._factory._rooms[k] for k in rooms if k not in quiet and k in self._factory._rooms
        ]
        if apply is None:
            self._factory._fan_out(event, local_members(announced))
        else:
            apply(self, event, envelope, announced)
        if history is not None:
            for key in stored:
                history.observe(event, key)
                heard = self._loading.get(key)
                if heard is not None:
                    heard.append(event)

    def _private(self, envelope: dict[str, Any], ident: int, at: float) -> None:
        token = envelope.get("k")
        if envelope.get("o") == self.node and isinstance(token, int):
            pending = self._pending.pop(token, None)
            if pending is not None:
                pending.event.id, pending.event.at = ident, at
                self._factory._fan_out(pending.event, pending.recipients)
            return
        message = decode_event("PrivateMessage", envelope.get("e"))
        message.id, message.at = ident, at
        assert isinstance(message, PrivateMessage)
        target = self._local(message.recipient)
        if target is not None:
            self._factory._fan_out(message, (target,))
        history = self._factory.history
        if history is not None:
            history.observe(message, None)

    # The mirror

    def _state(self) -> dict[str, Any]:
        """
        This node's users and the state of their rooms, for a L{Hello} or
        a L{State}.
        """
        people = []
        rooms: dict[str, Any] = {}
        for participant in self._factory._participants.values():
            if not is_local(participant):
                continue
            account = participant.account
            people.append(
                {
                    "n": participant.nickname,
                    "a": None if account is None else account.nickname_key,
                    "w": participant.away,
                    "r": list(participant.rooms),
                }
            )
            for key, room in participant.rooms.items():
                if key not in rooms:
                    rooms[key] = _room_state(room)
        return {"p": people, "rooms": rooms}

    def _subject(self, envelope: dict[str, Any], nickname: str) -> IParticipant | None:
        """
        Return who C{envelope} is about, called C{nickname}, if that is
        who this node knows by that name on the node the envelope names
        (C{"sn"}): not someone else who has the same nickname here.
        """
        participant = self._factory._participants.get(nickname_key(nickname))
        if participant is None:
            return None
        node = envelope.get("sn")
        if node is not None and node != self._node_of(participant):
            return None
        return participant

    def _apply_change(self, room: Room, change: object) -> None:
        """
        Apply C{change} (see L{ChatFactory._publish}) to the mirror's
        C{room}: its topic and C{+t}, bans and operators added or removed.
        Every node applies every change, its own again too when it comes
        back, in the order Redis carried them, so that they all end alike
        (the last change to each thing wins).

        @raise ValueError: C{change} is not such a change; nothing changed.
        """
        if change is None:
            return
        if not isinstance(change, dict):
            raise ValueError("bad change")
        topic = change.get("topic")
        locked = change.get("locked")
        topic_by = change.get("topic_by", "")
        topic_at = change.get("topic_at", 0.0)
        if not isinstance(topic_by, str) or not isinstance(topic_at, (int, float)):
            raise ValueError("bad topic")
        if not math.isfinite(topic_at):
            raise ValueError("bad topic time")
        bans_add = _pairs(change.get("bans_add", []))
        bans_remove = _pairs(change.get("bans_remove", []))
        ops_add = _strings(change.get("ops_add", []))
        ops_remove = _strings(change.get("ops_remove", []))
        accounts_add = _strings(change.get("op_accounts_add", []))
        accounts_remove = _strings(change.get("op_accounts_remove", []))
        if isinstance(topic, str):
            room.topic, room.topic_by, room.topic_at = topic, topic_by, topic_at
        if isinstance(locked, bool):
            room.topic_locked = locked
        room.bans |= bans_add
        room.bans -= bans_remove
        room.operator_accounts |= accounts_add
        room.operator_accounts -= accounts_remove
        for nickname in ops_add | ops_remove:
            participant = self._factory._participants.get(nickname_key(nickname))
            if participant is None or participant not in room.members:
                continue
            if nickname in ops_add:
                room.operators.add(participant)
            else:
                room.operators.discard(participant)

    def _add_remote(
        self, node: str, nickname: str, account: object, away: object
    ) -> RemoteParticipant | None:
        """
        Mirror C{nickname}, connected to C{node}; C{None} if someone here
        holds it (the claims in Redis settle who keeps it).

        @raise ValueError: C{nickname} breaks the nickname rules.
        """
        validate_nickname(nickname, MAX_NICKNAME)
        factory = self._factory
        key = nickname_key(nickname)
        existing = factory._participants.get(key)
        if existing is not None and is_local(existing):
            return None
        if isinstance(existing, RemoteParticipant):
            if existing.node == node:
                existing.account = Account(account) if isinstance(account, str) else None
                existing.away = away if isinstance(away, str) else ""
                return existing
            self._forget(existing, None)
        remote = RemoteParticipant(
            self,
            node,
            account if isinstance(account, str) else None,
            away if isinstance(away, str) else "",
        )
        factory._add(remote, nickname)
        return remote

    def _registered(self, envelope: dict[str, Any]) -> None:
        nickname = envelope.get("n")
        if isinstance(nickname, str):
            self._add_remote(str(envelope.get("o")), nickname, envelope.get("a"), envelope.get("w"))

    def _mirror_room(self, key: str, state: object) -> Room | None:
        """
        Return the room C{key} of the mirror, made from C{state} if it has
        none yet.
        """
        factory = self._factory
        room = factory._rooms.get(key)
        if room is None and isinstance(state, dict):
            name, since = state.get("name"), state.get("since", 0)
            if not isinstance(name, str) or not isinstance(since, int) or since < 0:
                raise ValueError("bad room state")
            validate_room_name(name)
            if room_key(name) != key:
                raise ValueError(f"room {name!r} under the key {key!r}")
            room = Room(name, key, since=since)
            self._set_state(room, state)
            factory._rooms[key] = room
        return room

    def _set_state(self, room: Room, state: object) -> None:
        """
        Make the mirror's C{room} what C{state} (L{_room_state}) says.

        @raise ValueError: C{state} is no room state; nothing changed.
        """
        if not isinstance(state, dict):
            return
        topic, topic_by = state.get("topic", ""), state.get("topic_by", "")
        topic_at = state.get("topic_at", 0.0)
        if not isinstance(topic, str) or not isinstance(topic_by, str):
            raise ValueError("bad topic")
        if not isinstance(topic_at, (int, float)):
            raise ValueError("bad topic time")
        accounts = _strings(state.get("op_accounts", []))
        bans = _pairs(state.get("bans", []))
        ops = _strings(state.get("ops", []))
        room.topic, room.topic_by, room.topic_at = topic, topic_by, float(topic_at)
        room.topic_locked = state.get("locked") is True
        room.operator_accounts = accounts
        room.bans = bans
        room.permanent = room.permanent or state.get("permanent") is True
        room.operators = {
            participant
            for participant in (self._factory._participants.get(nickname_key(n)) for n in ops)
            if participant is not None and participant in room.members
        }

    def _merge_operators(self, room: Room, state: object) -> None:
        if not isinstance(state, dict):
            return
        room.operator_accounts.update(_strings(state.get("op_accounts", [])))
        for nickname in _strings(state.get("ops", [])):
            participant = self._factory._participants.get(nickname_key(nickname))
            if participant is not None and participant in room.members:
                room.operators.add(participant)

    def _forget(self, participant: IParticipant, reason: str | None) -> None:
        """
        Take C{participant} out of the mirror, telling this node's users
        in its rooms that it left for C{reason} (nobody if C{None}).
        """
        factory = self._factory
        nickname = participant.nickname
        if nickname is None:
            return
        rooms = list(participant.rooms.values())
        if reason is not None:
            announced = [room for room in rooms if not factory._quiet(room)]
            factory._fan_out(Left(nickname, reason), local_members(announced))
        for room in rooms:
            factory._exit(participant, room)
        if factory._participants.get(nickname_key(nickname)) is participant:
            factory._remove(participant)

    def _drop_lost(self, node: str, reason: str) -> None:
        if node in self._lost:
            self._lost.discard(node)
            self._drop_node(node, reason)

    def _drop_node(self, node: str, reason: str) -> None:
        for participant in list(self._factory._participants.values()):
            if isinstance(participant, RemoteParticipant) and participant.node == node:
                self._forget(participant, reason)

    def _cancel_unconfirmed(self) -> None:
        call, self._unconfirmed_call = self._unconfirmed_call, None
        if call is not None and call.active():
            call.cancel()

    def _drop_unconfirmed(self) -> None:
        self._unconfirmed_call = None
        unconfirmed, self._unconfirmed = self._unconfirmed, set()
        for node in unconfirmed:
            self._log.info("cluster: node lost: {node} (not heard from)", node=node)
            self._drop_node(node, f"node lost: {node_name(node)}")

    def _state_of(self, envelope: dict[str, Any]) -> None:
        """
        Make the mirror of the node that sent C{envelope} (a L{Hello} or
        L{State}) what it says.
        """
        factory = self._factory
        node = str(envelope.get("o"))
        self._unconfirmed.discard(node)
        self._lost.discard(node)
        rooms = envelope.get("rooms", {})
        people = envelope.get("p", [])
        if not isinstance(rooms, dict) or not isinstance(people, list):
            raise ValueError("bad state")
        seen: set[RemoteParticipant] = set()
        for person in people:
            if not isinstance(person, dict) or not isinstance(person.get("n"), str):
                continue
            remote = self._add_remote(node, person["n"], person.get("a"), person.get("w"))
            if remote is None:
                continue
            seen.add(remote)
            wanted = {k for k in person.get("r", []) if isinstance(k, str)}
            for key in list(remote.rooms):
                if key not in wanted:
                    gone = remote.rooms[key]
                    if not factory._quiet(gone):
                        left = Left(person["n"], "left", gone.name)
                        factory._fan_out(left, local_members((gone,)))
                    factory._exit(remote, gone)
            for key in wanted - set(remote.rooms):
                joined = self._mirror_room(key, rooms.get(key))
                if joined is None:
                    continue
                if not factory._quiet(joined):
                    factory._fan_out(Joined(person["n"], joined.name), local_members((joined,)))
                joined.members[remote] = None
                remote.rooms[key] = joined
        for participant in list(factory._participants.values()):
            if isinstance(participant, RemoteParticipant) and participant.node == node:
                if participant not in seen:
                    self._forget(participant, "left while the servers were apart")
        for key, state in rooms.items():
            mirrored = factory._rooms.get(key)
            if mirrored is not None:
                self._merge_operators(mirrored, state)


def _apply_joined(
    cluster: RedisCluster, event: Joined, envelope: dict[str, Any], announced: list[Room]
) -> None:
    remote = cluster._subject(envelope, event.nickname)
    key = room_key_of(envelope)
    if not isinstance(remote, RemoteParticipant) or not key:
        return
    known = key in cluster._factory._rooms
    room = cluster._mirror_room(key, envelope.get("s"))
    if room is None:
        return
    # Quiet where either node counts more members than quiet_joins_above
    # (a mirror may lag behind a crowd arriving on other nodes).
    shown = [room] if announced and not cluster._factory._quiet(room) else []
    cluster._factory._fan_out(event, local_members(shown))
    room.members[remote] = None
    remote.rooms[room.key] = room
    if known:
        # Two nodes may create one room at the same moment, each making
        # its user operator: every node ends with both.
        cluster._merge_operators(room, envelope.get("s"))
    else:
        cluster._set_state(room, envelope.get("s"))


def _apply_left(
    cluster: RedisCluster, event: Left, envelope: dict[str, Any], announced: list[Room]
) -> None:
    factory = cluster._factory
    participant = cluster._subject(envelope, event.nickname)
    if participant is None:
        return  # someone else by that name (the claims settle who keeps it)
    if envelope.get("lost") and (is_local(participant) or envelope.get("sn") not in cluster._lost):
        # Its node was taken for lost but is alive: here (it renews its
        # lease late and says who is here again), or it said so already.
        return
    shown = [room for room in announced if not factory._quiet(room)]
    factory._fan_out(event, local_members(shown), participant)
    keys = list(participant.rooms) if not event.room else envelope.get("rooms", [])
    for key in keys:
        room = factory._rooms.get(key)
        if room is not None and participant in room.members:
            factory._exit(participant, room)
    if not event.room:
        # A quit: the one who left is gone from the chat; if it was
        # connected here (killed, or ghosted, on another node), its
        # connection closes when that node says so.
        if factory._participants.get(nickname_key(event.nickname)) is participant:
            factory._remove(participant)
            cluster.left(participant)


def _apply_kicked(
    cluster: RedisCluster, event: Kicked, envelope: dict[str, Any], announced: list[Room]
) -> None:
    factory = cluster._factory
    participant = cluster._subject(envelope, event.nickname)
    factory._fan_out(event, local_members(announced))
    room = factory._rooms.get(room_key_of(envelope))
    if participant is not None and room is not None and participant in room.members:
        factory._exit(participant, room)


def _apply_renamed(
    cluster: RedisCluster, event: NicknameChanged, envelope: dict[str, Any], announced: list[Room]
) -> None:
    factory = cluster._factory
    validate_nickname(event.new, MAX_NICKNAME)
    remote = cluster._subject(envelope, event.old)
    if not isinstance(remote, RemoteParticipant):
        # Known here by another name, or not at all (a claim lost to
        # someone here): known by the new one from now on.
        node = envelope.get("sn") or envelope.get("o")
        added = cluster._add_remote(str(node), event.new, envelope.get("a"), envelope.get("w"))
        if added is not None:
            for room in announced:
                room.members[added] = None
                added.rooms[room.key] = room
        return
    factory._fan_out(event, local_members(remote.rooms.values()))
    existing = factory._participants.get(nickname_key(event.new))
    if existing is not None and existing is not remote:
        # Someone here has it: the claims in Redis settle who keeps it,
        # and the other node tells who it renamed.
        cluster._forget(remote, None)
        return
    factory._remove(remote)
    factory._add(remote, event.new)


def _apply_change(
    cluster: RedisCluster, event: Event, envelope: dict[str, Any], announced: list[Room]
) -> None:
    room = cluster._factory._rooms.get(room_key_of(envelope))
    if room is not None:
        cluster._apply_change(room, envelope.get("c"))
    cluster._factory._fan_out(event, local_members(announced))


def _apply_away(
    cluster: RedisCluster, event: AwayChanged, envelope: dict[str, Any], announced: list[Room]
) -> None:
    remote = cluster._subject(envelope, event.nickname)
    if not isinstance(remote, RemoteParticipant):
        return
    remote.away = event.text
    cluster._factory._fan_out(event, local_members(remote.rooms.values()))


def _pairs(value: object) -> set[tuple[str, str]]:
    """
    Return C{value}, a list of two-string lists (bans), as a set of pairs.

    @raise ValueError: it is not one.
    """
    if not isinstance(value, list) or not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v) for v in value
    ):
        raise ValueError("bad list of pairs")
    return {(v[0], v[1]) for v in value}


def _strings(value: object) -> set[str]:
    """
    Return C{value}, a list of strings, as a set.

    @raise ValueError: it is not one.
    """
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("bad list of strings")
    return set(value)


def room_key_of(envelope: dict[str, Any]) -> str:
    """
    Return the one room key of C{envelope}, or C{""}.
    """
    rooms = envelope.get("rooms")
    return rooms[0] if isinstance(rooms, list) and rooms and isinstance(rooms[0], str) else ""


#: How an event from another node changes this node's mirror, and whom
#: here it is shown to; the others are only shown to the local members of
#: their rooms.
_APPLY: dict[type[Event], Callable[..., None]] = {
    Joined: _apply_joined,
    Left: _apply_left,
    Kicked: _apply_kicked,
    NicknameChanged: _apply_renamed,
    TopicChanged: _apply_change,
    ModeChanged: _apply_change,
    AwayChanged: _apply_away,
}
