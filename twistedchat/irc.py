"""
The IRC front end: IRC clients and bots (irssi, WeeChat, HexChat, The
Lounge) join the same rooms, as channels, and the same nicknames,
accounts and history. Like the telnet and WebSocket front ends, it only
turns IRC lines into calls on a L{ChatSession} and events into IRC lines;
every chat rule is the session's. C{docs/irc.md} is the reference: every
command, numeric, capability and limit, and the source of each rule (RFC
1459, RFC 2812, Modern IRC, the IRCv3 specifications).

Twisted Words' C{twisted.words.protocols.irc.IRC} is not used for the
server side: it decodes each TCP chunk as UTF-8 (a character split across
two reads raises), reads an IRCv3 C{@tags} prefix as the command and
bounds no line. Lines are framed here (L{BoundedLineReceiver}), tags
parsed here (L{parse_message}); Twisted Words' numerics' names are used.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import partial
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    INegotiated,
    ITCPTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols import irc
from zope.interface import implementer

from twistedchat import __version__
from twistedchat.events import (
    Action,
    Away,
    AwayChanged,
    AwaySet,
    ChatLine,
    Ctcp,
    CurrentRoom,
    Error,
    Event,
    Ghosted,
    HistoryReplay,
    Invited,
    Joined,
    Kicked,
    Killed,
    Left,
    ModeChanged,
    Names,
    NicknameChanged,
    NicknameWanted,
    Notice,
    PasswordWanted,
    PrivateMessage,
    RoomJoined,
    RoomList,
    RoomParted,
    SearchResults,
    ServerShutdown,
    TopicChanged,
    TopicIs,
    Welcome,
    WhoIs,
)
from twistedchat.factory import ChatFactory, NoSuchNickname
from twistedchat.flood import InputGate, Reader
from twistedchat.framing import BoundedLineReceiver
from twistedchat.history import Record
from twistedchat.nicknames import InvalidNickname, nickname_key
from twistedchat.protocol import (
    CLOSE_TIMEOUT,
    describe_address,
    history_heading,
    keep_alive,
    peer_host,
    render_history,
    render_line,
    search_heading,
)
from twistedchat.rooms import (
    MAX_BANS,
    MAX_ROOM_NAME_LENGTH,
    AlreadyInRoom,
    BannedFromRoom,
    InvalidRoomName,
    NoSuchRoom,
    NotInRoom,
    NotOperator,
    RoomError,
    room_key,
)
from twistedchat.sanitize import clean_line
from twistedchat.sendq import SendQueue
from twistedchat.session import (
    DEFAULT_HISTORY,
    SENDQ_EXCEEDED,
    ChatSession,
    IFrontEnd,
    NicknameHeld,
    Refused,
    State,
)

#: The longest IRC line without tags, CRLF included (RFC 1459 section 2.3).
MAX_LINE = 512
#: The most bytes of IRCv3 tags a client may send before a line, the
#: C{@} and the space after them included (IRCv3 message-tags, "Size
#: limit": 4094 bytes of tag data).
MAX_TAGS = 4096
#: Numerics Twisted Words does not name: ERR_INPUTTOOLONG (Modern IRC),
#: ERR_BANNICKCHANGE (Charybdis, Solanum), and those of IRCv3 SASL 3.1.
ERR_INPUTTOOLONG = "417"
ERR_BANNICKCHANGE = "435"
RPL_LOGGEDIN = "900"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"
RPL_WHOISACCOUNT = "330"
ERR_INVALIDMODEPARAM = "696"

#: The IRCv3 capabilities offered (CAP LS): the client's own messages
#: come back to it (echo-message); events carry their time (server-time),
#: their id (message-tags: msgid; client-only tags are accepted and not
#: relayed, TAGMSG dropped) and the account of whoever acts (account-tag);
#: others going away and back are told (away-notify); history comes as
#: chathistory batches (batch, with server-time); the one prefix, @, is
#: trivially every prefix (multi-prefix); and accounts are proved with
#: SASL PLAIN (sasl: only on a server that keeps accounts).
CAPABILITIES = frozenset(
    {
        "account-tag",
        "away-notify",
        "batch",
        "echo-message",
        "message-tags",
        "multi-prefix",
        "sasl",
        "server-time",
    }
)

#: The SASL mechanisms offered (IRCv3 SASL 3.2, RFC 4616).
SASL_MECHANISMS = "PLAIN"
#: The longest AUTHENTICATE argument, and the most of them one SASL
#: response may take (IRCv3 SASL 3.1: 400-byte chunks).
SASL_CHUNK = 400
SASL_CHUNKS = 4

#: The services pseudo-user that handles accounts, as on IRC networks.
NICKSERV = "NickServ"
NICKSERV_SOURCE = "NickServ!NickServ@services"

#: What NickServ HELP says.
NICKSERV_HELP = (
    "NickServ keeps registered nicknames. Commands:",
    "REGISTER <password>: register your nickname; from then on it needs the password.",
    "IDENTIFY <password>: prove your nickname is yours.",
    "IDENTIFY <nickname> <password>: take a registered nickname (also REGAIN, RECOVER).",
    "SET PASSWORD <old> <new>: change your password (also PASSWD <old> <new>).",
    "To log in as you connect, give the password as the server password or with SASL PLAIN.",
)

#: Seconds an IRC client may send nothing before the server sends it a
#: PING, and seconds it then has to send anything (its PONG) before it is
#: dropped for "Ping timeout", as IRC servers do (telnet users are not
#: pinged).
PING_INTERVAL = 120.0
PING_TIMEOUT = 60.0

#: What ends a text shortened to fit an IRC line.
ELLIPSIS = "\u2026"

#: The most targets of one PRIVMSG or NOTICE (ISUPPORT TARGMAX), and
#: mode changes with a parameter in one MODE (MODES).
MAX_TARGETS = 4
MAX_MODES = 4

#: The longest topic an IRC client may set, in bytes (as Libera.Chat).
TOPICLEN = 390

#: The host every participant shows as, whatever its front end: no
#: address is ever shown to others. The user part is the nickname (see
#: L{_source}).
HOST = "twistedchat"


class MalformedLine(ValueError):
    """
    A line is not an IRC message; C{str()} says why.
    """


@dataclass
class Message:
    """
    One IRC message: its IRCv3 C{tags}, its C{source} (C{None} if none),
    its C{command} (upper case) and its C{params}.
    """

    command: str
    params: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    source: str | None = None


_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


def _unescape_tag(value: str) -> str:
    """
    Undo the escaping of an IRCv3 tag value (message-tags, "Escaping
    values"): a backslash before an unknown character is dropped, and a
    trailing one too.
    """
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append(_TAG_ESCAPES.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def parse_message(line: str) -> Message:
    """
    Parse one IRC line (without its line ending) into a L{Message}, as
    RFC 1459 section 2.3.1 and IRCv3 message-tags describe it.

    @raise MalformedLine: there is no command.
    """
    tags: dict[str, str] = {}
    if line.startswith("@"):
        raw, _, line = line[1:].partition(" ")
        for item in raw.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = _unescape_tag(value)
        line = line.lstrip(" ")
    source = None
    if line.startswith(":"):
        source, _, line = line[1:].partition(" ")
        line = line.lstrip(" ")
    trailing = None
    if " :" in line:
        line, _, trailing = line.partition(" :")
    elif line.startswith(":"):
        line, trailing = "", line[1:]
    words = line.split()
    if not words:
        raise MalformedLine("no command")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return Message(words[0].upper(), params, tags, source)


def irc_server_name(name: str) -> str:
    """
    The IRC server name for C{--server-name} C{name}: only letters, digits,
    dots and hyphens, with C{.irc} added if there is no dot, so that it
    can never be taken for a nickname (RFC 2812 section 2.3.1: nicknames
    have no dot).
    """
    cleaned = re.sub(r"[^A-Za-z0-9.-]", "", name).strip(".") or HOST
    return cleaned if "." in cleaned else f"{cleaned}.irc"


def _source(nickname: str) -> str:
    """
    How a participant shows to IRC users: C{nick!nick@twistedchat}. The
    user part is the nickname, so that the ban masks IRC clients make from
    it (irssi's C{*!*alice@twistedchat}) name someone (L{_ban_nickname}).
    """
    return f"{nickname}!{nickname}@{HOST}"


def _line(source: str | None, command: str, *params: str) -> str:
    """
    Format an IRC line (without a source if C{source} is C{None}): the
    last parameter is always sent as a trailing one (after C{:}), so that
    it may hold spaces or be empty, and never holds CR, LF or NUL
    (L{_no_breaks}). If the line would be longer than L{MAX_LINE}, the
    last parameter is shortened at a character and ends in C{…}, so that
    the cut shows (a topic, a reason: text that cannot be split over
    several lines).
    """
    head = " ".join([*([f":{source}"] if source is not None else []), command, *params[:-1]])
    if not params:
        return head
    last = _no_breaks(params[-1])
    line = f"{head} :{last}"
    if len(line.encode("utf-8")) + 2 <= MAX_LINE:
        return line
    room = max(MAX_LINE - 2 - len(head.encode("utf-8")) - 2 - len(ELLIPSIS.encode("utf-8")), 0)
    cut = last.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{head} :{cut}{ELLIPSIS}"


def _token(text: str) -> str:
    """
    Make C{text}, which may come from a client (a target, a command
    name), safe to echo as a middle parameter: no control character,
    space or leading colon, at most 64 characters, never empty.
    """
    token = "".join(c for c in text if c.isprintable() and not c.isspace()).lstrip(":")
    return token[:64] or "*"


def _no_breaks(text: str) -> str:
    """
    Remove what would end or cut an IRC line: CR, LF and NUL (RFC 1459
    section 2.3.1).
    """
    return text.replace("\r", " ").replace("\n", " ").replace("\0", "")


def split_text(text: str, limit: int) -> list[str]:
    """
    Split C{text} into pieces of at most C{limit} bytes of UTF-8, at the
    last space before the limit where there is one, never inside a
    character; no text is lost (spaces at a split are kept at the end of
    the piece before it).

    @param limit: bytes, at least 4 (the longest UTF-8 character).
    """
    data = text.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while len(data) - start > limit:
        cut = start + limit
        while data[cut] & 0xC0 == 0x80:  # not in the middle of a character
            cut -= 1
        space = data.rfind(b" ", start + 1, cut)
        if space != -1:
            cut = space + 1
        pieces.append(data[start:cut].decode("utf-8"))
        start = cut
    pieces.append(data[start:].decode("utf-8"))
    return pieces


def _privmsg_lines(
    source: str, target: str, text: str, ctcp: str = "", command: str = "PRIVMSG"
) -> list[str]:
    """
    Return C{text} from C{source} to C{target} as PRIVMSG (or C{command})
    lines of at most L{MAX_LINE} bytes each, CRLF included: a line longer
    than that is split, never cut (RFC 1459 section 2.3). With C{ctcp}
    (C{"ACTION"}), each piece is a CTCP message of that kind.
    """
    head = f":{source} {command} {target} :"
    wrap = len(f"\x01{ctcp} \x01") if ctcp else 0
    room = MAX_LINE - len(head.encode("utf-8")) - 2 - wrap
    pieces = split_text(_no_breaks(text), max(room, 4))
    if ctcp:
        return [f"{head}\x01{ctcp} {piece}\x01" for piece in pieces]
    return [head + piece for piece in pieces]


#: The IRC command of a message, by whether it is a notice.
_COMMAND = {False: "PRIVMSG", True: "NOTICE"}


def _event_lines(event: Event) -> list[str]:
    """
    Return the IRC lines (without line endings) that show C{event}, a
    chat event, to IRC clients, or C{[]} for one they are not shown.
    """
    match event:
        case ChatLine(sender=sender, text=text, room=room, notice=notice):
            return _privmsg_lines(_source(sender), room, text, command=_COMMAND[notice])
        case Action(sender=sender, text=text, room=room):
            return _privmsg_lines(_source(sender), room, text, "ACTION")
        case PrivateMessage(sender=sender, recipient=recipient, text=text, action=True):
            return _privmsg_lines(_source(sender), recipient, text, "ACTION")
        case PrivateMessage(sender=sender, recipient=recipient, text=text, notice=notice):
            return _privmsg_lines(_source(sender), recipient, text, command=_COMMAND[notice])
        case Ctcp(sender=sender, recipient=recipient, payload=payload, reply=reply):
            line = f":{_source(sender)} {_COMMAND[reply]} {recipient} :\x01{payload}\x01"
            return [line] if len(line.encode("utf-8")) + 2 <= MAX_LINE else []
        case Joined(nickname=nickname, room=room):
            return [f":{_source(nickname)} JOIN {room}"]
        case Left(nickname=nickname, reason=reason, room=""):
            return [_line(_source(nickname), "QUIT", _no_breaks(reason))]
        case Left(nickname=nickname, reason="", room=room):
            return [f":{_source(nickname)} PART {room}"]
        case Left(nickname=nickname, reason=reason, room=room):
            return [_line(_source(nickname), "PART", room, reason)]
        case NicknameChanged(old=old, new=new):
            return [_line(_source(old), "NICK", new)]
        case TopicChanged(room=room, nickname=nickname, topic=topic):
            return [_line(_source(nickname), "TOPIC", room, _no_breaks(topic))]
        case Kicked(room=room, operator=operator, nickname=nickname, reason=reason):
            return [_line(_source(operator), "KICK", room, nickname, _no_breaks(reason))]
        case ModeChanged(room=room, operator=operator, change=change, target=target):
            if change in ("+b", "-b"):
                # A ban mask by nickname; the target may read "mallory
                # (account carol)" for a ban of an account.
                target = target.split(" ", 1)[0] + "!*@*"
            params = [room, change, target] if target else [room, change]
            return [f":{_source(operator)} MODE " + " ".join(params)]
        case AwayChanged(nickname=nickname, text=""):
            return [f":{_source(nickname)} AWAY"]
        case AwayChanged(nickname=nickname, text=text):
            return [_line(_source(nickname), "AWAY", _no_breaks(text))]
        case Invited(inviter=inviter, nickname=nickname, room=room):
            return [f":{_source(inviter)} INVITE {nickname} {room}"]
        case Ghosted() | Killed() | ServerShutdown():
            return [_closing_line(event)]
    return []


def render_irc(event: Event) -> bytes:
    """
    Format a chat event as IRC lines, UTF-8, each ending in CRLF, without
    tags. Pass this function to L{Event.render} so that a broadcast is
    formatted once for all IRC recipients.
    """
    return b"".join(line.encode("utf-8") + b"\r\n" for line in _event_lines(event))


def _time_tag(at: float) -> str:
    """
    The IRCv3 server-time value of C{at} (seconds since the epoch): UTC,
    ISO 8601 with milliseconds.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{stamp}.{int(at * 1000) % 1000:03d}Z"


def _actor(event: Event) -> str | None:
    """
    The nickname by which the user whose doing C{event} is can be found
    online now (for its account), or C{None}.
    """
    match event:
        case ChatLine(sender=nickname) | Action(sender=nickname) | PrivateMessage(sender=nickname):
            return nickname
        case Joined(nickname=nickname) | Left(nickname=nickname) | AwayChanged(nickname=nickname):
            return nickname
        case TopicChanged(nickname=nickname) | NicknameChanged(new=nickname):
            return nickname  # after a rename, who it is goes by the new one
        case Kicked(operator=nickname) | ModeChanged(operator=nickname):
            return nickname
    return None


class Renderers:
    """
    The renderers of chat events for IRC clients, one per set of IRCv3
    capabilities that changes the lines (C{server-time}, C{message-tags},
    C{account-tag}), each made once, so that an event is formatted once
    per set for all IRC recipients (L{Event.render}).
    """

    #: The capabilities that change how events are rendered (away-notify
    #: changes which are sent: see L{IRCChat.deliver}).
    CAPABILITIES = frozenset({"server-time", "message-tags", "account-tag"})

    def __init__(self, chat: ChatFactory) -> None:
        self._chat = chat
        self._made: dict[frozenset[str], Callable[[Event], bytes]] = {}
        #: When the IRC front end started (003), seconds since the epoch.
        self.created = chat.clock.seconds()

    def renderer(self, capabilities: set[str]) -> Callable[[Event], bytes]:
        """
        Return the renderer for a client with C{capabilities}.
        """
        wanted = frozenset(capabilities & self.CAPABILITIES)
        try:
            return self._made[wanted]
        except KeyError:
            made = self._made[wanted] = partial(self._render, wanted)
            return made

    def _render(self, capabilities: frozenset[str], event: Event) -> bytes:
        """
        Format C{event} as L{render_irc} does, with the tags a client with
        C{capabilities} asked for: C{time} (server-time), C{msgid}
        (message-tags: the event's id), C{account} (account-tag: the
        account the acting user proved, looked up now, as a fan-out is
        synchronous).
        """
        data = event.render(render_irc)
        tags = []
        if "server-time" in capabilities:
            tags.append(f"time={_time_tag(event.at or self._chat.clock.seconds())}")
        if "message-tags" in capabilities and event.id:
            tags.append(f"msgid={event.id}")
        if "account-tag" in capabilities:
            account = self._account(_actor(event))
            if account:
                tags.append(f"account={account}")
        if not tags or not data:
            return data
        prefix = ("@" + ";".join(tags) + " ").encode()
        return b"".join(prefix + line + b"\r\n" for line in data.split(b"\r\n")[:-1])

    def _account(self, nickname: str | None) -> str:
        participant = None if nickname is None else self._chat.online(nickname)
        account = None if participant is None else participant.account
        return "" if account is None else account.nickname_key


@implementer(IFrontEnd, IHandshakeListener)
class IRCChat(BoundedLineReceiver):
    """
    One IRC connection: framing, registration and commands, turned into
    calls on its L{ChatSession}; events and replies turned into IRC lines.

    @ivar factory: the shared chat state, set by L{IRCFactory}.
    @ivar session: the user's session, once the connection was let in.
    """

    kind = "irc"
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE + MAX_TAGS + 1
    factory: ChatFactory
    renderers: Renderers
    session: ChatSession
    # A TCP or TLS transport (also a push producer).
    transport: ITCPTransport
    _gate: InputGate
    _log = Logger()

    def __init__(self) -> None:
        self._closed = False
        self._output: SendQueue | None = None
        self._peer = "?"
        self._nick: str | None = None
        self._user: str | None = None
        self._password = ""
        self._negotiating = False
        self._close_timer: IDelayedCall | None = None
        # Why the connection closes, for the ERROR line sent before (IRC
        # servers say why), unless an event already said it: "Quit: ...",
        # "Ping timeout: ..."; else the last Error reply.
        self._farewell = ""
        self._error_sent = False
        self._ping_timer: IDelayedCall | None = None
        self._awaiting_pong = False
        # Set while a WHO is answered from the session's names of a room.
        self._who = False
        # The IRCv3 capabilities the client asked for.
        self._caps: set[str] = set()
        # The SASL PLAIN response's chunks while an exchange is going on.
        self._sasl: list[str] | None = None
        # Set while a NickServ command runs: replies come from NickServ.
        self._services = False
        # The reason of the PART being answered, and the rooms a LIST asked
        # for (all if empty).
        self._part_reason = ""
        self._listing: set[str] = set()
        # Whether the registration being answered gave a password.
        self._password_tried = False
        # The nickname asked for at registration and refused (registered,
        # or in use), to say how to take it once welcomed.
        self._wanted = ""
        # The last Error reply's text: why the session closed, if it did.
        self._last_error = "Closed"
        # Whether the client asked for echo-message and away-notify (kept
        # apart from _caps for the broadcast path).
        self._echo_message = False
        self._away_notify = False
        # History batches sent so far (their references are h1, h2, ...).
        self._batches = 0
        # User mode +i, which changes nothing here but what MODE says.
        self._invisible = False
        self._server = HOST

    # Connection life

    def connectionMade(self) -> None:
        factory = self.factory
        self._server = irc_server_name(factory.server_name)
        address = self.transport.getPeer()
        self._peer = describe_address(address)
        host = peer_host(address)
        refusal = factory.admission(host)
        if refusal is not None:
            self._closed = True
            self._log.info("refused IRC {peer}: {reason}", peer=self._peer, reason=refusal)
            error = _line(None, "ERROR", f"Closing Link: {HOST} ({refusal})")
            self.transport.write(f"{error}\r\n".encode())
            self.transport.loseConnection()
            # A TLS connection whose handshake never ends would not close.
            self._close_timer = factory.clock.callLater(
                CLOSE_TIMEOUT, self.transport.abortConnection
            )
            return
        self._log.info("IRC connection from {peer}", peer=self._peer)
        keep_alive(self.transport)
        self._output = SendQueue(
            cast(IConsumer, self.transport),
            factory.flusher,
            factory.max_sendq,
            self,
            timeout=factory.sendq_timeout,
            # Only TLS transports negotiate (ALPN); they tell
            # handshakeCompleted.
            handshaking=INegotiated.providedBy(self.transport),
        )
        self._render = self.renderers.renderer(self._caps)
        self.session = ChatSession(factory, self, host, self._peer)
        # The user's own messages and nickname changes come as events, as
        # IRC clients expect; without echo-message, own messages are
        # dropped again in deliver().
        self.session.echo = True
        self._gate = InputGate(
            factory.clock,
            cast(Reader, self.transport),
            self.session.flood_wait,
            self.hold,
            factory.flood_bytes,
            factory.flood_byte_burst,
        )
        self.session.open(nickname_follows=True)
        self._activity()

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done (L{IHandshakeListener}): from now on a
        transport that asks to pause is backed up.
        """
        if self._output is not None:
            self._output.handshaking = False

    def _activity(self) -> None:
        """
        The client sent something: it is alive; ping it after
        L{PING_INTERVAL} seconds of silence.
        """
        self._awaiting_pong = False
        if self._ping_timer is not None and self._ping_timer.active():
            self._ping_timer.reset(PING_INTERVAL)
        else:
            self._ping_timer = self.factory.clock.callLater(PING_INTERVAL, self._silent)

    def _silent(self) -> None:
        """
        Nothing came for a while: ping the client, or, if it did not answer
        the last ping, drop it.
        """
        if self._closed:
            return
        if not self._awaiting_pong:
            self._awaiting_pong = True
            self._send(f"PING :{self._server}")
            self._ping_timer = self.factory.clock.callLater(PING_TIMEOUT, self._silent)
            return
        seconds = f"{PING_INTERVAL + PING_TIMEOUT:g}"
        self._farewell = f"Ping timeout: {seconds} seconds"
        if self.session.state is State.CHATTING:
            self.session.cut_off(f"Ping timeout: {seconds} seconds")
        self.close()

    def _stop_pinging(self) -> None:
        if self._ping_timer is not None and self._ping_timer.active():
            self._ping_timer.cancel()
        self._ping_timer = None

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        self._stop_pinging()
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        if self._output is None:
            return
        self._gate.stop()
        self._output.clear()
        self.session.connection_lost("connection lost")

    def close(self) -> None:
        """
        Close the connection once what it was told has been sent.
        """
        if self._closed:
            return
        if not self._error_sent:
            reason = self._farewell or self._last_error
            self._send(_line(None, "ERROR", f"Closing Link: {HOST} ({reason})"))
        self._closed = True
        self._stop_pinging()
        self._gate.stop()
        assert self._output is not None
        self._output.close()
        self.transport.loseConnection()
        self._close_timer = self.factory.clock.callLater(
            CLOSE_TIMEOUT, self.transport.abortConnection
        )

    def sendq_exceeded(self) -> None:
        """
        Cut off a client that does not read what it is sent, as telnet
        ones are.
        """
        if self._closed:
            return
        output = self._output
        assert output is not None
        self._log.info(
            "SendQ exceeded for IRC {peer} ({nickname}): {waiting} bytes waiting",
            peer=self._peer,
            nickname=self.session.nickname or "not registered",
            waiting=output.waiting,
        )
        self._closed = True
        self._gate.stop()
        output.clear()
        self.factory.clock.callLater(0, self._cut_off)

    def _cut_off(self) -> None:
        self.session.cut_off(SENDQ_EXCEEDED)
        self.transport.abortConnection()

    # Output

    def _send(self, *lines: str) -> None:
        if not self._closed:
            assert self._output is not None
            self._output.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))

    @property
    def _me(self) -> str:
        """
        The client's nickname: the registered one, else the one given so
        far, else C{*} (the first parameter of numerics and NOTICEs).
        """
        return self.session.nickname or "*"

    def _numeric(self, code: str, *params: str) -> None:
        """
        Send the numeric reply C{code} to this client, with C{params}.
        """
        *middle, last = params or ("",)
        tokens = [_token(param) for param in middle]
        self._send(_line(self._server, code, self._me, *tokens, _no_breaks(last)))

    def _notice(self, text: str) -> None:
        """
        Send C{text} as a NOTICE from the server, or from NickServ while
        one of its commands runs.
        """
        source = NICKSERV_SOURCE if self._services else self._server
        head = f":{source} NOTICE {self._me} :"
        room = max(MAX_LINE - 2 - len(head.encode("utf-8")), 4)
        self._send(*(head + piece for piece in split_text(_no_breaks(text), room)))

    # IFrontEnd

    def deliver(self, event: Event) -> None:
        """
        Send C{event} as IRC lines, with the tags the client asked for
        (L{Renderers}). Its own messages only with echo-message; others'
        away changes only with away-notify, which also follows the JOIN
        of someone away with their AWAY (IRCv3 away-notify).
        """
        if self._closed:
            return
        kind = type(event)
        if kind is ChatLine or kind is Action:  # the hot path: one check
            if event.sender == self.session.nickname and not self._echo_message:  # type: ignore[attr-defined]
                return  # the client shows what its user said itself
            data = event.render(self._render)
        elif kind in _CHECKED:
            data = self._checked(event, kind)
        else:
            data = event.render(self._render)
        if data:
            assert self._output is not None
            self._output.write(data)
        if kind in _CLOSING:
            self._error_sent = True

    def _checked(self, event: Event, kind: type[Event]) -> bytes:
        """
        The bytes of an event this client may not be shown, or is shown
        with more (see L{deliver}).
        """
        if kind is AwayChanged:
            return event.render(self._render) if self._away_notify else b""
        if kind is Joined:
            assert isinstance(event, Joined)
            data = event.render(self._render)
            joiner = self.factory.online(event.nickname) if self._away_notify else None
            if joiner is not None and joiner.away:
                data += AwayChanged(event.nickname, joiner.away).render(self._render)
            return data
        assert isinstance(event, (PrivateMessage, Ctcp))
        own = event.sender == self.session.nickname and event.recipient != event.sender
        if own and not self._echo_message:
            return b""
        return event.render(self._render)

    def reply(self, event: Event) -> None:
        """
        Send C{event}, an answer to this user, as IRC lines and numerics.
        """
        match event:
            case Notice(text=text):
                self._notice(text)
            case Error(text=text):
                self._last_error = text  # the reason, if the session closes now
                self._notice(text)
            case NicknameWanted():
                pass  # asked again after a refusal, with a numeric already
            case PasswordWanted(nickname=nickname):
                # No prompt: IRC clients answer 433 with another nickname,
                # and NickServ IDENTIFY takes this one later (docs/irc.md).
                if self._password_tried:
                    self._numeric(irc.ERR_PASSWDMISMATCH, "Password incorrect")
                self._password_tried = False
                self._wanted = nickname
                self._numeric(
                    irc.ERR_NICKNAMEINUSE,
                    nickname,
                    f"The nickname {nickname} is registered: log in with SASL or a server "
                    f"password, or take another nickname and /msg {NICKSERV} IDENTIFY "
                    f"{nickname} PASSWORD",
                )
                self.session.give_password("")
            case Welcome(nickname=nickname, online=(count, _), room=room):
                self._welcome(nickname, count)
                if room is not None:
                    self.reply(room)
                wanted, self._wanted = self._wanted, ""
                if wanted and nickname_key(wanted) != nickname_key(nickname):
                    # Clients hide the 433 that came before the welcome.
                    self._services = True
                    self._notice(
                        f"You are {nickname}: {wanted} is registered or in use. "
                        f"/msg {NICKSERV} IDENTIFY {wanted} PASSWORD (or REGAIN) takes it."
                    )
                    self._services = False
            case RoomJoined(room=room, topic=topic, members=members, already=already):
                if already:
                    return
                self._send(f":{_source(self.session.nickname or '*')} JOIN {room}")
                if topic:
                    self._numeric(irc.RPL_TOPIC, room, _no_breaks(topic))
                operators = set(event.operators)
                shown = [f"@{m}" if m in operators else m for m in members]
                self._names(room, shown)
            case Names(room=room, nicknames=nicknames, operators=operators, away=away) if self._who:
                marked, gone = set(operators), set(away)
                server = self._server
                for nickname in nicknames:
                    flags = ("G" if nickname in gone else "H") + ("@" if nickname in marked else "")
                    self._numeric(
                        irc.RPL_WHOREPLY,
                        room,
                        nickname,
                        HOST,
                        server,
                        nickname,
                        flags,
                        f"0 {nickname}",
                    )
            case Names(room=room, nicknames=nicknames, operators=operators):
                marked = set(operators)
                self._names(room, [f"@{n}" if n in marked else n for n in nicknames])
            case TopicIs(room=room, topic=topic, by=by, at=at):
                if topic:
                    self._numeric(irc.RPL_TOPIC, room, _no_breaks(topic))
                    self._numeric("333", room, by, str(int(at)))
                else:
                    self._numeric(irc.RPL_NOTOPIC, room, "No topic is set")
            case RoomList(rooms=rooms):
                self._numeric(irc.RPL_LISTSTART, "Channel", "Users  Name")
                if self._listing:
                    rooms = [
                        r
                        for r in rooms
                        if any(fnmatchcase(room_key(r.name), p) for p in self._listing)
                    ]
                for summary in rooms:
                    self._numeric(
                        irc.RPL_LIST, summary.name, str(summary.members), _no_breaks(summary.topic)
                    )
                self._numeric(irc.RPL_LISTEND, "End of /LIST")
            case RoomParted(room=room):
                source = _source(self._me)
                if self._part_reason:
                    self._send(_line(source, "PART", room, self._part_reason))
                else:
                    self._send(f":{source} PART {room}")
            case CurrentRoom():
                pass  # IRC has no current channel
            case HistoryReplay() as replay:
                self._replay(replay)
            case SearchResults() as results:
                self._search_results(results)
            case Away(nickname=nickname, text=text):
                self._numeric(irc.RPL_AWAY, nickname, _no_breaks(text))
            case AwaySet(text=""):
                self._numeric(irc.RPL_UNAWAY, "You are no longer marked as being away")
            case AwaySet():
                self._numeric(irc.RPL_NOWAWAY, "You have been marked as being away")
            case WhoIs() as whois:
                self._whois(whois)
            case _:
                self.deliver(event)

    def _replay(self, replay: HistoryReplay) -> None:
        """
        Show past events: as C{chathistory} batches (IRCv3 batch), one for
        the room and one per private conversation, to a client with
        C{batch} and C{server-time}; otherwise as server NOTICEs with their
        times. Never as live commands: a replayed JOIN, QUIT or KICK would
        change what the client thinks is happening now (docs/irc.md).
        """
        room, server, me = replay.room, self._server, self._me
        if not replay.records:
            if replay.asked:
                self._send(_line(server, "NOTICE", room, "Nothing has been said here yet."))
            return
        groups: dict[str, list[Record]] = {room: []}
        for record in replay.records:
            event = record.event
            if isinstance(event, PrivateMessage):
                mine = nickname_key(event.sender) == nickname_key(me)
                groups.setdefault(event.recipient if mine else event.sender, []).append(record)
            else:
                groups[room].append(record)
        if not {"batch", "server-time"} <= self._caps:
            if groups[room]:
                self._send(_line(server, "NOTICE", room, history_heading(replay.records)))
            for target, records in groups.items():
                # Private messages go to the user's own nickname, one's
                # own as "-> *bob* text", as telnet shows them.
                to = room if target == room else me
                for record in records:
                    text = render_history(record, replay.viewer).decode("utf-8")
                    self._send(_line(server, "NOTICE", to, text.rstrip("\r\n")))
            if groups[room]:
                self._send(_line(server, "NOTICE", room, "End of history."))
            return
        for target, records in groups.items():
            if not records:
                continue
            self._batches += 1
            reference = f"h{self._batches}"
            self._send(f":{server} BATCH +{reference} chathistory {target}")
            for record in records:
                tags = f"@batch={reference};time={_time_tag(record.at)}"
                if "message-tags" in self._caps and record.event.id:
                    tags += f";msgid={record.event.id}"
                self._send(*(f"{tags} {line}" for line in self._past_lines(target, record)))
            self._send(f":{server} BATCH -{reference}")

    def _search_results(self, results: SearchResults) -> None:
        """
        What a search found, newest first, as server NOTICEs with the text
        and time telnet shows (not a chathistory: it is not in order).
        """
        self._notice(search_heading(results))
        if not results.records:
            return
        for record in results.records:
            self._notice(render_history(record, results.viewer).decode("utf-8").rstrip("\r\n"))
        self._notice("End of search.")

    def _past_lines(self, target: str, record: Record) -> list[str]:
        """
        The lines of a past event in a history batch for C{target}: what
        was said as PRIVMSG, anything else as a server NOTICE with the
        text telnet shows.
        """
        event = record.event
        match event:
            case ChatLine(sender=sender, text=text, notice=notice):
                return _privmsg_lines(_source(sender), target, text, command=_COMMAND[notice])
            case Action(sender=sender, text=text):
                return _privmsg_lines(_source(sender), target, text, "ACTION")
            case PrivateMessage():
                return _event_lines(event)
        text = render_line(event).decode("utf-8").rstrip("\r\n").removeprefix("*** ")
        return [_line(self._server, "NOTICE", target, _no_breaks(text))]

    def _whois(self, whois: WhoIs) -> None:
        """
        WHOIS replies (RFC 2812 section 3.6.2, Modern IRC): 311, 319, 312,
        313, 301, 330 and 318.
        """
        nickname, server = whois.nickname, self._server
        self._numeric(irc.RPL_WHOISUSER, nickname, nickname, HOST, "*", nickname)
        operator_of = set(whois.operator_of)
        rooms = [f"@{r}" if r in operator_of else r for r in whois.rooms]
        for piece in split_text(" ".join(rooms), 400) if rooms else []:
            self._numeric(irc.RPL_WHOISCHANNELS, nickname, piece.strip())
        self._numeric(irc.RPL_WHOISSERVER, nickname, server, "twistedchat")
        if whois.server_operator:
            self._numeric(irc.RPL_WHOISOPERATOR, nickname, "is a server operator")
        if whois.away:
            self._numeric(irc.RPL_AWAY, nickname, _no_breaks(whois.away))
        if whois.account:
            self._numeric(RPL_WHOISACCOUNT, nickname, whois.account, "is logged in as")

    def _names(self, room: str, shown: list[str]) -> None:
        """
        Send the nicknames C{shown} in C{room} (353, in lines that fit) and
        the end of the list (366).
        """
        batch: list[str] = []
        for name in shown:
            batch.append(name)
            if len(" ".join(batch).encode("utf-8")) > 400 - len(room.encode("utf-8")):
                self._numeric(irc.RPL_NAMREPLY, "=", room, " ".join(batch))
                batch = []
        if batch:
            self._numeric(irc.RPL_NAMREPLY, "=", room, " ".join(batch))
        self._numeric(irc.RPL_ENDOFNAMES, room, "End of /NAMES list")

    def _welcome(self, nickname: str, online: int) -> None:
        """
        The registration is done: the welcome burst (RFC 2812 section
        5.1: 001-004, then 005 ISUPPORT, Modern IRC), 251 and the MOTD.

        @param online: how many users are in the chat.
        """
        self._nick = nickname
        server = self._server
        version = f"twistedchat-{__version__}"
        # 001 names the nickname alone: the host shown is made up (Modern
        # IRC, RPL_WELCOME).
        self._numeric(irc.RPL_WELCOME, f"Welcome to the {server} IRC network, {nickname}")
        self._numeric(irc.RPL_YOURHOST, f"Your host is {server}, running version {version}")
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.renderers.created))
        self._numeric(irc.RPL_CREATED, f"This server was created {created} UTC")
        self._send(f":{server} {irc.RPL_MYINFO} {nickname} {server} {version} io bnot bo")
        self._send(_line(self._server, irc.RPL_ISUPPORT, self._me, *self._isupport()))
        self._numeric(irc.RPL_LUSERCLIENT, f"There are {online} users and 0 invisible on 1 servers")
        self._motd()

    def _isupport(self) -> list[str]:
        """
        The ISUPPORT (005) tokens (Modern IRC, RPL_ISUPPORT parameters),
        and the text that ends the line: sent as they are, not as the
        tokens a client may have sent (L{_token} would cut them).
        """
        factory = self.factory
        rooms = factory.max_rooms_per_user
        return [
            "CASEMAPPING=rfc1459",
            f"CHANLIMIT=#:{rooms or ''}",
            "CHANMODES=b,,,nt",
            f"CHANNELLEN={MAX_ROOM_NAME_LENGTH}",
            "CHANTYPES=#",
            # Client-only tags are not relayed: all are "denied" (IRCv3
            # message-tags, CLIENTTAGDENY).
            "CLIENTTAGDENY=*",
            f"MAXLIST=b:{MAX_BANS}",
            "MODES=4",
            f"NETWORK={self._server}",
            f"NICKLEN={factory.max_nick_length}",
            "PREFIX=(o)@",
            "TARGMAX=JOIN:,KICK:4,LIST:,NAMES:,NOTICE:4,PART:,PRIVMSG:4,WHOIS:1",
            f"TOPICLEN={TOPICLEN}",
            "UTF8ONLY",
            "are supported by this server",
        ]

    def _motd(self) -> None:
        """
        The MOTD (375, 372 per line, 376), or 422 without one.
        """
        server, motd = self._server, self.factory.motd
        if not motd:
            self._numeric(irc.ERR_NOMOTD, "MOTD File is missing")
            return
        self._numeric(irc.RPL_MOTDSTART, f"- {server} Message of the day -")
        for line in motd.splitlines():
            for piece in split_text(_no_breaks(line), 400):
                self._numeric(irc.RPL_MOTD, f"- {piece}")
        self._numeric(irc.RPL_ENDOFMOTD, "End of /MOTD command.")

    # Input

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines (L{BoundedLineReceiver}: a line longer
        than C{MAX_LENGTH} gets 417 and is skipped, as for telnet), each
        byte charged to flood control.
        """
        if self._output is None or self._closed:
            return
        self._gate.bytes_received(len(data))
        BoundedLineReceiver.dataReceived(self, data)

    def lineReceived(self, line: bytes) -> None:
        """
        Handle one IRC line; every line, refused or blank ones included,
        counts for flood control, as telnet's do.
        """
        if self._closed:
            return
        try:
            self._line_received(line.rstrip(b"\r"))
        finally:
            if not self._closed:
                self._gate.line_handled()

    def line_too_long(self) -> None:
        """
        Answer 417 (ERR_INPUTTOOLONG) to a line longer than IRC allows; it
        counts for flood control.
        """
        if not self._closed:
            self._numeric(ERR_INPUTTOOLONG, "Input line was too long")
            self._gate.line_handled()

    def _line_received(self, line: bytes) -> None:
        tags, body = line.split(b" ", 1) if line[:1] == b"@" and b" " in line else (b"", line)
        if len(tags) + 1 > MAX_TAGS or len(body) + 2 > MAX_LINE:
            self._numeric(ERR_INPUTTOOLONG, "Input line was too long")
            return
        self._activity()
        text = line.decode("utf-8", "replace")
        if not text.strip():
            return
        try:
            message = parse_message(text)
        except MalformedLine:
            return
        if (
            message.params
            and len(message.params[-1].encode("utf-8")) > self.factory.max_line_length
        ):
            # No longer a text than a telnet line may hold (--max-line-length).
            self._numeric(ERR_INPUTTOOLONG, "Input line was too long")
            return
        handler = self._COMMANDS.get(message.command)
        registered = self.session.state is State.CHATTING
        if handler is None:
            if registered:
                self._numeric(irc.ERR_UNKNOWNCOMMAND, message.command, "Unknown command")
            else:
                self._numeric(irc.ERR_NOTREGISTERED, "You have not registered")
        elif not registered and message.command not in _BEFORE_REGISTRATION:
            self._numeric(irc.ERR_NOTREGISTERED, "You have not registered")
        else:
            handler(self, message)
            if registered and message.command not in ("PING", "PONG"):
                self.session.resetTimeout()  # activity, as a telnet line is

    def _needs(self, message: Message, count: int) -> bool:
        """
        Return whether C{message} has C{count} parameters; answer 461 if
        not.
        """
        if len(message.params) >= count:
            return True
        self._numeric(irc.ERR_NEEDMOREPARAMS, message.command, "Not enough parameters")
        return False

    # Registration

    def _offered(self) -> frozenset[str]:
        """
        The capabilities this server offers: L{CAPABILITIES}, without
        C{sasl} when it keeps no accounts (IRCv3 SASL 3.2: MUST NOT be
        offered when unavailable).
        """
        if self.factory.accounts is None:
            return CAPABILITIES - {"sasl"}
        return CAPABILITIES

    def _cap(self, message: Message) -> None:
        """
        CAP LS, REQ, LIST and END (IRCv3 capability negotiation, with CAP
        LS 302 values); LS or REQ before registration hold it until END.
        """
        if not self._needs(message, 1):
            return
        sub = message.params[0].upper()
        server, nick = self._server, self._me
        offered = self._offered()
        if sub in ("LS", "REQ") and self.session.state is not State.CHATTING:
            self._negotiating = True
        if sub == "LS":
            version = message.params[1] if len(message.params) > 1 else ""
            modern = version.isascii() and version.isdigit() and int(version) >= 302
            values = {"sasl": SASL_MECHANISMS} if modern else {}
            listed = [f"{name}={values[name]}" if name in values else name for name in offered]
            self._send(_line(server, "CAP", nick, "LS", " ".join(sorted(listed))))
        elif sub == "REQ":
            requested = message.params[1] if len(message.params) > 1 else ""
            names = requested.split()
            # All or nothing (IRCv3 capability negotiation, CAP REQ).
            if names and all(name.removeprefix("-") in offered for name in names):
                for name in names:
                    if name.startswith("-"):
                        self._caps.discard(name[1:])
                    else:
                        self._caps.add(name)
                self._render = self.renderers.renderer(self._caps)
                self._echo_message = "echo-message" in self._caps
                self._away_notify = "away-notify" in self._caps
                self._send(_line(server, "CAP", nick, "ACK", requested))
            else:
                self._send(_line(server, "CAP", nick, "NAK", requested))
        elif sub == "END":
            if self._sasl is not None:  # IRCv3 SASL 3.1: CAP END aborts it
                self._sasl = None
                self._numeric(ERR_SASLABORTED, "SASL authentication aborted")
            self._negotiating = False
            self._register()
        elif sub == "LIST":
            self._send(_line(server, "CAP", nick, "LIST", " ".join(sorted(self._caps))))
        else:
            self._numeric("410", sub, "Invalid CAP command")

    def _pass(self, message: Message) -> None:
        """
        PASS before registration: the password of the nickname the client
        registers with (there is no server password), so that clients
        without SASL log in as they connect.
        """
        if not self._needs(message, 1):
            return
        if self.session.state is State.CHATTING:
            self._numeric(irc.ERR_ALREADYREGISTRED, "You may not reregister")
        else:
            self._password = message.params[0]

    def _authenticate(self, message: Message) -> None:
        """
        AUTHENTICATE: SASL PLAIN (IRCv3 SASL 3.1 and 3.2, RFC 4616) before
        registration; the account proved is the one registered with.
        """
        if not self._needs(message, 1):
            return
        argument = message.params[0]
        session = self.session
        if "sasl" not in self._caps or session.state is not State.AWAITING_NICKNAME:
            if session.account is not None:
                self._numeric(ERR_SASLALREADY, "You have already authenticated using SASL")
            else:
                self._numeric(ERR_SASLFAIL, "SASL authentication failed")
            return
        if session.account is not None:
            self._numeric(ERR_SASLALREADY, "You have already authenticated using SASL")
        elif argument == "*":
            self._sasl = None
            self._numeric(ERR_SASLABORTED, "SASL authentication aborted")
        elif len(argument) > SASL_CHUNK:
            self._sasl = None
            self._numeric(ERR_SASLTOOLONG, "SASL message too long")
        elif self._sasl is None:
            if argument.upper() == SASL_MECHANISMS:
                self._sasl = []
                self._send("AUTHENTICATE +")
            else:
                self._numeric(RPL_SASLMECHS, SASL_MECHANISMS, "are available SASL mechanisms")
                self._numeric(ERR_SASLFAIL, "SASL authentication failed")
        else:
            if argument != "+":
                self._sasl.append(argument)
            if len(argument) == SASL_CHUNK:
                if len(self._sasl) >= SASL_CHUNKS:
                    self._sasl = None
                    self._numeric(ERR_SASLTOOLONG, "SASL message too long")
                return  # more to come
            response, self._sasl = "".join(self._sasl), None
            self._sasl_plain(response)

    def _sasl_plain(self, response: str) -> None:
        """
        Check a SASL PLAIN response (base64 of C{authzid NUL authcid NUL
        password}, RFC 4616 section 2); acting as someone else (an authzid
        other than the authcid) is refused.
        """
        try:
            decoded = base64.b64decode(response, validate=True).decode("utf-8")
            authzid, authcid, password = decoded.split("\0")
        except ValueError:  # binascii.Error, UnicodeDecodeError, unpacking
            authzid, authcid, password = "?", "", ""
        if not authcid or authzid not in ("", authcid):
            self._numeric(ERR_SASLFAIL, "SASL authentication failed")
            return
        done = self.session.authenticate(authcid, password).addCallback(self._authenticated)
        self._gate.wait_for(done)

    def _authenticated(self, proved: bool, quiet: bool = False) -> None:
        """
        Answer an account check: 900 and 903, or 904 (IRCv3 SASL 3.1); with
        C{quiet} (a PASS account:password), 900 or 464, and go on
        registering.
        """
        if self._closed:
            return
        if quiet:
            if not proved:
                self._numeric(irc.ERR_PASSWDMISMATCH, "Password incorrect")
            self._register()
        elif proved:
            self._logged_in()
            self._numeric(RPL_SASLSUCCESS, "SASL authentication successful")
        else:
            self._numeric(ERR_SASLFAIL, "SASL authentication failed")

    def _logged_in(self) -> None:
        """
        Tell the client the account it is logged in as (900, IRCv3 SASL
        3.1: whether by SASL or otherwise).
        """
        account = self.session.account
        assert account is not None
        name = account.nickname_key
        mask = _source(self.session.nickname or _token(self._nick or "*"))
        self._numeric(RPL_LOGGEDIN, mask, name, f"You are now logged in as {name}")

    def _proving(self, call: Callable[[], Deferred[None] | None]) -> None:
        """
        Run C{call}, a session command that may prove an account (a
        password given with it), holding input until it is done; say 900
        if the client's account changed.
        """
        before = self.session.account

        def done(result: object) -> object:
            self._services = False
            if not self._closed and self.session.account not in (None, before):
                self._logged_in()
            return result

        try:
            result = call()
        except Refused as e:  # no accounts, not registered, throttled
            self._notice(str(e))
            result = None
        if result is None:
            done(None)
        else:
            result.addBoth(done)
            self._gate.wait_for(result)

    def _rename(self, nickname: str, password: str = "") -> Deferred[None] | None:
        """
        Change the client's nickname, answering a refusal with its numeric
        (432, 433, or 435 when banned from a room it is in).
        """
        if nickname == self.session.nickname:
            return None  # nothing to change (RFC 2812 section 3.1.2)
        try:
            return self.session.rename(nickname, password)
        except InvalidNickname as e:
            self._numeric(irc.ERR_ERRONEUSNICKNAME, nickname, str(e))
        except Refused as e:
            accounts = self.factory.accounts
            if (
                self.factory.online(nickname) is None
                and accounts
                and accounts.is_registered(nickname)
            ):
                text = f"The nickname {nickname} is registered: /msg {NICKSERV} IDENTIFY "
                self._numeric(irc.ERR_NICKNAMEINUSE, nickname, text + f"{nickname} PASSWORD")
            else:
                self._numeric(irc.ERR_NICKNAMEINUSE, nickname, str(e))
        except BannedFromRoom as e:
            self._numeric(ERR_BANNICKCHANGE, nickname, e.room, str(e))
        return None

    def _nickserv(self, text: str) -> None:
        """
        A command to NickServ (C{PRIVMSG NickServ}, C{NICKSERV}, C{NS}),
        as IRC users type them, turned into session calls; its replies
        come from NickServ. Before registration only C{IDENTIFY} counts:
        its password is the server password's.
        """
        words = _clean(text).split()
        command, arguments = (words[0].upper(), words[1:]) if words else ("HELP", [])
        session = self.session
        if session.state is not State.CHATTING:
            if command == "IDENTIFY" and arguments:
                self._password = arguments[-1]
            else:
                self._numeric(irc.ERR_NOTREGISTERED, "You have not registered")
            return
        self._services = True
        if command == "REGISTER" and arguments:
            self._proving(lambda: session.register_account(arguments[0]))
        elif command in ("REGAIN", "RECOVER") and len(arguments) == 1:
            nickname = arguments[0]
            account = session.account
            if account is not None and account.nickname_key == nickname_key(nickname):
                self._proving(lambda: self._rename(nickname))
            else:
                self._notice(f"Log in as {nickname} first, or give its password.")
                self._services = False
        elif command == "IDENTIFY" and len(arguments) == 1:
            self._proving(lambda: session.identify(arguments[0]))
        elif command in ("IDENTIFY", "REGAIN", "RECOVER") and len(arguments) == 2:
            nickname, password = arguments
            accounts = self.factory.accounts
            if nickname_key(nickname) == nickname_key(session.nickname or ""):
                self._proving(lambda: session.identify(password))
            elif accounts is None:
                self._notice("This server has no accounts.")
                self._services = False
            elif not accounts.is_registered(nickname):
                self._notice(f"{nickname} is not registered.")
                self._services = False
            else:
                self._proving(lambda: self._rename(nickname, password))
        elif (command, len(arguments)) == ("PASSWD", 2) or (
            command == "SET" and len(arguments) == 3 and arguments[0].upper() == "PASSWORD"
        ):
            old, new = arguments[-2:]
            self._proving(lambda: session.change_password(old, new))
        else:
            if command in ("REGISTER", "IDENTIFY", "REGAIN", "RECOVER", "SET", "PASSWD"):
                self._notice(f"Syntax: see /msg {NICKSERV} HELP.")
            elif command == "HELP":
                for line in NICKSERV_HELP:
                    self._notice(line)
            else:
                self._notice(f"Unknown command {command}. /msg {NICKSERV} HELP lists them.")
            self._services = False

    def _nick_command(self, message: Message) -> None:
        if not message.params or not message.params[0]:
            self._numeric(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nickname = message.params[0]
        if self.session.state is State.CHATTING:
            # The client learns its new nickname from the NICK event.
            self._rename(nickname)
            return
        self._nick = nickname
        self._register()

    def _user_command(self, message: Message) -> None:
        if not self._needs(message, 4):
            return
        self._user = message.params[0]
        self._register()

    def _register(self) -> None:
        """
        Once NICK and USER have come and capability negotiation is over,
        take the nickname.
        """
        session = self.session
        if self._negotiating or self._nick is None or self._user is None:
            return
        if session.state is not State.AWAITING_NICKNAME:
            return
        nickname, password = self._nick, self._password
        # Each password is tried once: kept, it would be tried against the
        # next nickname the client falls back to, someone else's perhaps.
        self._password = ""
        accounts = self.factory.accounts
        account, _, secret = password.partition(":")
        if secret and accounts is not None and accounts.is_registered(account):
            # PASS account:password, as bouncers and Ergo take it.
            self._proving(
                lambda: session.authenticate(account, secret).addCallback(
                    lambda proved: self._authenticated(proved, quiet=True)
                )
            )
            return
        if accounts is None or not accounts.is_registered(nickname):
            password = ""  # no "the password was not used" notice for IRC
        self._password_tried = bool(password)

        def register() -> Deferred[None] | None:
            try:
                # Never taken over at registration: NickServ REGAIN does it.
                return session.choose_nickname(nickname, password, take_over=False)
            except NicknameHeld as e:
                self._wanted = nickname
                self._numeric(
                    irc.ERR_NICKNAMEINUSE,
                    nickname,
                    f"{e} If it is yours, take another one and /msg {NICKSERV} REGAIN "
                    f"{nickname} PASSWORD",
                )
            except InvalidNickname as e:  # NicknameReserved too
                self._numeric(irc.ERR_ERRONEUSNICKNAME, nickname, str(e))
            except Refused as e:  # taken, or looks like one online or registered
                self._numeric(irc.ERR_NICKNAMEINUSE, nickname, str(e))
            return None

        self._proving(register)

    # Commands

    def _ping(self, message: Message) -> None:
        if not self._needs(message, 1):
            return
        if not message.params[0]:
            self._numeric(irc.ERR_NOORIGIN, "No origin specified")
            return
        server = self._server
        self._send(_line(server, "PONG", server, message.params[0]))

    def _pong(self, message: Message) -> None:
        pass

    def _quit(self, message: Message) -> None:
        reason = _clean(message.params[0]) if message.params else "Client Quit"
        self._farewell = f"Quit: {reason}"
        if self.session.state is State.CHATTING:
            self.session.quit(reason or "quit")
        else:
            self.close()

    def _join(self, message: Message) -> None:
        if not self._needs(message, 1):
            return
        if message.params[0] == "0":  # leave every room (RFC 2812 section 3.2.1)
            for joined in list(self.session.rooms.values()):
                self._attempt(partial(self.session.part, joined.name, ""), joined.name)
            return
        for room in message.params[0].split(","):
            if room:
                self._attempt(partial(self.session.join, room), room, limit=irc.ERR_TOOMANYCHANNELS)

    def _part(self, message: Message) -> None:
        if not self._needs(message, 1):
            return
        reason = self._part_reason = _clean(message.params[1]) if len(message.params) > 1 else ""
        try:
            for room in message.params[0].split(","):
                if room:
                    self._attempt(partial(self.session.part, room, reason), room)
        finally:
            self._part_reason = ""

    def _privmsg(self, message: Message) -> None:
        """
        PRIVMSG and NOTICE TARGET[,TARGET...] :TEXT, at most 4 targets
        (TARGMAX); a NOTICE never gets an error numeric (RFC 2812 section
        3.3.2).
        """
        notice = message.command == "NOTICE"
        if notice and (len(message.params) < 2 or not message.params[1]):
            return
        if len(message.params) < 1:
            self._numeric(irc.ERR_NORECIPIENT, f"No recipient given ({message.command})")
            return
        if len(message.params) < 2 or not message.params[1]:
            self._numeric(irc.ERR_NOTEXTTOSEND, "No text to send")
            return
        raw, targets = message.params[1], message.params[0].split(",")
        if len(targets) > MAX_TARGETS:
            if not notice:
                self._numeric(irc.ERR_TOOMANYTARGETS, message.params[0], "Too many targets")
            return
        for target in targets:
            if nickname_key(target) == nickname_key(NICKSERV):
                if notice:
                    continue  # no automatic replies to a NOTICE (RFC 2812 3.3.2)
                if "echo-message" in self._caps and self.session.state is State.CHATTING:
                    self._send(_line(_source(self._me), "PRIVMSG", NICKSERV, _clean(raw)))
                self._nickserv(raw)
            elif self.session.state is not State.CHATTING:
                if not notice:
                    self._numeric(irc.ERR_NOTREGISTERED, "You have not registered")
            else:
                self._say(target, raw, notice)

    def _nickserv_command(self, message: Message) -> None:
        self._nickserv(" ".join(message.params))

    def _say(self, target: str, raw: str, notice: bool) -> None:
        """
        A PRIVMSG or NOTICE to a room or a user. CTCP ACTION is an action
        (C{/me}); other CTCP passes between users (only IRC users see it),
        never to a room (CTCP spec: a room's CTCP is dropped, unanswered);
        nothing answers a NOTICE with an error (RFC 2812 section 3.3.2).
        """
        session = self.session
        ctcp = ""
        if raw.startswith("\x01"):
            ctcp = _clean(raw[1:].removesuffix("\x01"))
            if not ctcp:
                return
        # An ACTION sent as a NOTICE is a CTCP reply like any other: turned
        # into a PRIVMSG, it could be answered (RFC 2812 section 3.3.2).
        action = ctcp.startswith("ACTION ") and not notice
        text = ctcp[7:] if action else _clean(raw)
        if not text:
            return
        room = target.startswith("#")
        call: Callable[[], object]
        if room and ctcp and not action:
            return  # a room's CTCP is dropped, unanswered (CTCP spec)
        if ctcp and not action:
            call = partial(session.ctcp, target, ctcp, notice)
        elif room and self._no_room(target):
            if not notice:
                self._numeric(irc.ERR_NOSUCHCHANNEL, target, "No such channel")
            return
        elif room and action:
            call = partial(session.act, text, target)
        elif room:
            call = partial(session.say, text, target, notice)
        else:
            call = partial(session.private_message, target, text, notice, action)
        if notice:
            try:
                call()
            except (RoomError, NoSuchNickname, Refused):
                pass
        else:
            self._attempt(call, target, irc.ERR_CANNOTSENDTOCHAN)

    def _topic(self, message: Message) -> None:
        if not self._needs(message, 1):
            return
        room = message.params[0]
        if len(message.params) > 1:
            text = _clean(message.params[1])
            if len(text.encode("utf-8")) > TOPICLEN:
                self._notice(f"A topic can be at most {TOPICLEN} bytes over IRC; it was not set.")
                return
            self._attempt(lambda: self.session.set_topic(text, room), room)
        else:
            self._attempt(lambda: self.session.topic(room), room)

    def _names_command(self, message: Message) -> None:
        if not message.params:
            self._numeric(irc.RPL_ENDOFNAMES, "*", "End of /NAMES list")
            return
        for room in message.params[0].split(","):
            try:
                self.session.names(room)
            except RoomError:  # no such room: the end alone (Modern IRC, NAMES)
                self._numeric(irc.RPL_ENDOFNAMES, _token(room), "End of /NAMES list")

    def _list(self, message: Message) -> None:
        """
        LIST [#ROOM[,#ROOM...]]: every room, or those named, with C{*} and
        C{?} as wildcards; ELIST conditions (C{>5}, C{T<10}) are ignored.
        """
        names = message.params[0].split(",") if message.params else []
        self._listing = {room_key(name) for name in names if name.startswith("#")}
        try:
            self.session.list_rooms()
        finally:
            self._listing = set()

    def _who_command(self, message: Message) -> None:
        """
        WHO #room: one 352 per member (every user shows as
        C{user@twistedchat}; flags H or G for away, @ for an operator),
        then 315; WHO NICK: one 352 for them; a mask with wildcards: 315
        alone (Modern IRC: servers MAY not support patterns).
        """
        mask = message.params[0] if message.params else "*"
        if mask.startswith("#"):
            self._who = True
            try:
                self._attempt(partial(self.session.names, mask), mask)
            finally:
                self._who = False
        elif "*" not in mask and "?" not in mask:
            participant = self.factory.online(mask)
            if participant is not None:
                nickname = participant.nickname or mask
                flags = "G" if participant.away else "H"
                server = self._server
                self._numeric(
                    irc.RPL_WHOREPLY, "*", nickname, HOST, server, nickname, flags, f"0 {nickname}"
                )
        self._numeric(irc.RPL_ENDOFWHO, mask, "End of /WHO list")

    def _away(self, message: Message) -> None:
        """
        AWAY [:TEXT]: away with TEXT, or back without (RFC 2812 section
        4.1); 306 or 305.
        """
        text = _clean(message.params[0]) if message.params else ""
        self.session.set_away(text)

    def _whois_command(self, message: Message) -> None:
        """
        WHOIS [SERVER] NICK: what others may know of NICK; NickServ too.
        """
        if not message.params:
            self._numeric(irc.ERR_NONICKNAMEGIVEN, "No nickname given")
            return
        nickname = message.params[-1]
        if nickname_key(nickname) == nickname_key(NICKSERV):
            self._numeric(irc.RPL_WHOISUSER, NICKSERV, NICKSERV, "services", "*", "services")
            self._numeric(irc.RPL_WHOISSERVER, NICKSERV, self._server, "twistedchat")
        else:
            self._attempt(partial(self.session.whois, nickname), nickname)
        self._numeric(irc.RPL_ENDOFWHOIS, nickname, "End of /WHOIS list")

    def _motd_command(self, message: Message) -> None:
        self._motd()

    def _userhost(self, message: Message) -> None:
        """
        USERHOST NICK...: 302 with C{nick=+user@host} (C{-} when away) for
        each one online, at most 5 (RFC 2812 section 4.8).
        """
        if not self._needs(message, 1):
            return
        replies = []
        for nickname in message.params[:5]:
            participant = self.factory.online(nickname)
            if participant is not None and participant.nickname is not None:
                oper = "*" if self.factory.is_server_operator(participant) else ""
                away = "-" if participant.away else "+"
                nickname = participant.nickname
                replies.append(f"{nickname}{oper}={away}{nickname}@{HOST}")
        self._numeric(irc.RPL_USERHOST, " ".join(replies))

    def _ison(self, message: Message) -> None:
        """
        ISON NICK...: 303 with those online (RFC 2812 section 4.9).
        """
        if not self._needs(message, 1):
            return
        words = " ".join(message.params).split()
        online = [
            p.nickname for p in map(self.factory.online, words) if p is not None and p.nickname
        ]
        self._numeric(irc.RPL_ISON, " ".join(online))

    def _no_room(self, name: str) -> bool:
        """
        Whether no room has the name C{name} (a message to it is 403, not
        404).
        """
        try:
            self.factory.room(name)
        except RoomError:
            return True
        return False

    def _lusers(self, message: Message) -> None:
        count, _ = self.factory.online_summary()
        self._numeric(irc.RPL_LUSERCLIENT, f"There are {count} users and 0 invisible on 1 servers")
        self._numeric(irc.RPL_LUSERME, f"I have {count} clients and 0 servers")

    def _version(self, message: Message) -> None:
        self._numeric(irc.RPL_VERSION, f"twistedchat-{__version__}", self._server, "")
        self._send(_line(self._server, irc.RPL_ISUPPORT, self._me, *self._isupport()))

    def _time(self, message: Message) -> None:
        now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.factory.clock.seconds()))
        self._numeric(irc.RPL_TIME, self._server, now)

    def _kill(self, message: Message) -> None:
        """
        KILL NICK [:REASON]: for server operators (C{--oper} accounts).
        """
        if not self._needs(message, 1):
            return
        nickname = message.params[0]
        reason = _clean(message.params[1]) if len(message.params) > 1 else "no reason given"
        try:
            self.session.kill(nickname, reason)
        except NoSuchNickname:
            self._numeric(irc.ERR_NOSUCHNICK, nickname, "No such nick/channel")
        except NotOperator:
            self._numeric(irc.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
        except (RoomError, Refused) as e:
            self._notice(str(e))

    def _oper(self, message: Message) -> None:
        self._numeric(irc.ERR_NOOPERHOST, "No O-lines for your host")

    def _whowas(self, message: Message) -> None:
        if not self._needs(message, 1):
            return
        nickname = message.params[0]
        self._numeric(irc.ERR_WASNOSUCHNICK, nickname, "There was no such nickname")
        self._numeric(irc.RPL_ENDOFWHOWAS, nickname, "End of WHOWAS")

    def _history_command(self, message: Message) -> None:
        """
        HISTORY [#ROOM] [COUNT] (as Ergo's): a room's recent history,
        replayed as on joining.
        """
        words = message.params[:2]
        room = next((w for w in words if w.startswith("#")), None)
        counts = [w for w in words if w.isascii() and w.isdigit()]
        count = int(counts[0]) if counts else DEFAULT_HISTORY
        if room is None:
            self._numeric(irc.ERR_NEEDMOREPARAMS, message.command, "Not enough parameters")
            return
        self._attempt(partial(self.session.history, count, room), room)

    def _search(self, message: Message) -> None:
        """
        SEARCH #ROOM :WORDS: what was said there (and the private messages
        one may see), newest first, as NOTICEs.
        """
        if not self._needs(message, 2):
            return
        room, words = message.params[0], _clean(" ".join(message.params[1:]))
        self._attempt(lambda: self._gate.wait_for(self.session.search(words, room)), room)

    def _invite(self, message: Message) -> None:
        """
        INVITE NICK #ROOM (RFC 2812 section 3.2.7): 341 to the inviter, an
        INVITE line to the invited; 443 if they are in the room already.
        """
        if not self._needs(message, 2):
            return
        nickname, room = message.params[0], message.params[1]
        try:
            invited = self.session.invite(nickname, room)
        except AlreadyInRoom:
            self._numeric(irc.ERR_USERONCHANNEL, nickname, room, "is already on channel")
        except NoSuchNickname:
            self._numeric(irc.ERR_NOSUCHNICK, nickname, "No such nick/channel")
        except (InvalidRoomName, NotInRoom):
            self._numeric(irc.ERR_NOTONCHANNEL, room, "You're not on that channel")
        else:
            self._numeric(irc.RPL_INVITING, invited, room)
            away = self.factory.online(invited)
            if away is not None and away.away:  # RFC 2812 section 3.2.7
                self._numeric(irc.RPL_AWAY, invited, away.away)

    def _tagmsg(self, message: Message) -> None:
        """
        TAGMSG (IRCv3 message-tags): accepted and dropped, as client-only
        tags are not relayed here (as InspIRCd's allowclientonlytags=no).
        """

    def _kick(self, message: Message) -> None:
        """
        KICK #ROOM NICK[,NICK...] [:REASON]: at most 4 users (TARGMAX).
        """
        if not self._needs(message, 2):
            return
        room, nicknames = message.params[0], message.params[1].split(",")[:4]
        for nickname in filter(None, nicknames):
            reason = _clean(message.params[2]) if len(message.params) > 2 else nickname
            self._attempt(
                partial(self.session.kick, room, nickname, reason), room, nickname=nickname
            )

    def _mode(self, message: Message) -> None:
        """
        MODE on a channel: C{+o}/C{-o} NICK (operator), C{+b}/C{-b} NICK
        (ban), C{+t}/C{-t} (topic by operators only); with no change, the
        channel's modes (324); at most L{MAX_MODES} changes with a
        parameter, the rest ignored. MODE on oneself: see L{_user_mode}.
        """
        if not self._needs(message, 1):
            return
        target = message.params[0]
        if not target.startswith("#"):
            self._user_mode(target, message.params[1:])
            return
        if len(message.params) == 1:
            self._attempt(partial(self._channel_modes, target), target)
            return
        changes, arguments = message.params[1], message.params[2 : 2 + MAX_MODES]
        if changes.lstrip("+") == "b" and not message.params[2:]:
            # The ban list: bans are kept as look-alike skeletons, not
            # names, so it is shown empty (docs/irc.md); clients such as
            # irssi ask for it on joining.
            self._numeric(irc.RPL_ENDOFBANLIST, target, "End of channel ban list")
            return
        sign = "+"
        for letter in changes:
            if letter in "+-":
                sign = letter
                continue
            if letter in "ob" and not arguments and len(message.params) > 2 + MAX_MODES:
                break  # past MODES: ignored
            if letter in "ob" and not arguments:
                self._numeric(irc.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                return
            if letter == "o":
                nickname = arguments.pop(0)
                self._attempt(
                    partial(self.session.set_operator, target, nickname, sign == "+"),
                    target,
                    nickname=nickname,
                )
            elif letter == "b":
                mask = arguments.pop(0)
                nickname = _ban_nickname(mask)
                ban = self.session.ban if sign == "+" else self.session.unban
                self._attempt(partial(ban, target, nickname), target, nickname=mask)
            elif letter == "t":
                self._attempt(partial(self.session.set_mode, target, sign + "t"), target)
            elif letter == "n" and sign == "+":
                pass  # always on: only members speak in a room
            elif letter == "n":
                self._numeric(irc.ERR_UNKNOWNMODE, "n", "is always set here: only members speak")
            else:
                self._numeric(irc.ERR_UNKNOWNMODE, letter, "is unknown mode char to me")

    def _user_mode(self, target: str, changes: list[str]) -> None:
        """
        MODE on oneself (RFC 2812 section 3.1.5): C{i} is accepted and
        means nothing (nobody is listed by address here); C{o} is a server
        operator, which only an account named with C{--oper} is.
        """
        if nickname_key(target) != nickname_key(self._me):
            if self.factory.online(target) is None:
                self._numeric(irc.ERR_NOSUCHNICK, target, "No such nick/channel")
            else:
                self._numeric(irc.ERR_USERSDONTMATCH, "Cant change mode for other users")
            return
        if not changes:
            modes = "+" + ("i" if self._invisible else "")
            if self.factory.is_server_operator(self.session):
                modes += "o"
            self._numeric(irc.RPL_UMODEIS, modes)
            return
        sign, done = "+", ""
        for letter in changes[0]:
            if letter in "+-":
                sign = letter
            elif letter == "i":
                if self._invisible != (sign == "+"):
                    self._invisible = sign == "+"
                    done += sign + letter
            elif letter == "o":
                self._numeric(irc.ERR_NOPRIVILEGES, "Permission Denied- You're not an IRC operator")
            else:
                self._numeric(irc.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
        if done:
            self._send(_line(_source(self._me), "MODE", self._me, done))

    def _channel_modes(self, name: str) -> None:
        room = self.factory.room(name)
        self._numeric(irc.RPL_CHANNELMODEIS, room.name, "+nt" if room.topic_locked else "+n")

    def _attempt(
        self,
        call: Callable[[], object],
        target: str,
        not_in_room: str = irc.ERR_NOTONCHANNEL,
        nickname: str = "",
        limit: str = "",
    ) -> None:
        """
        Run a session command for C{target} (a channel or a nickname), and
        answer its refusal with the IRC numeric for it (RFC 2812 section
        5.2, Modern IRC; docs/irc.md section 4.1).

        @param not_in_room: the numeric for "not in that room": 442, or
            404 (ERR_CANNOTSENDTOCHAN) for a message.
        @param nickname: the user the command is about (KICK, MODE +o),
            for 441 when it is they who are not in the room, and 696 when
            it is no nickname (a ban).
        @param limit: the numeric for a room limit reached (405 for JOIN);
            else it is a NOTICE.
        """
        try:
            call()
        except NotInRoom:
            if nickname and self.factory.online(nickname) is None and "!" not in nickname:
                self._numeric(irc.ERR_NOSUCHNICK, nickname, "No such nick/channel")
            elif nickname and room_key(target) in self.session.rooms:
                self._numeric(
                    irc.ERR_USERNOTINCHANNEL, nickname, target, "They aren't on that channel"
                )
            elif not_in_room == irc.ERR_CANNOTSENDTOCHAN:
                self._numeric(not_in_room, target, "Cannot send to channel")
            else:
                self._numeric(not_in_room, target, "You're not on that channel")
        except NoSuchNickname:
            self._numeric(irc.ERR_NOSUCHNICK, nickname or target, "No such nick/channel")
        except InvalidRoomName as e:
            self._numeric(irc.ERR_NOSUCHCHANNEL, target, str(e))
        except NoSuchRoom:
            self._numeric(irc.ERR_NOSUCHCHANNEL, target, "No such channel")
        except BannedFromRoom:
            self._numeric(irc.ERR_BANNEDFROMCHAN, target, "Cannot join channel (+b)")
        except NotOperator:
            self._numeric(irc.ERR_CHANOPRIVSNEEDED, target, "You're not channel operator")
        except InvalidNickname as e:
            if nickname:
                self._numeric(
                    ERR_INVALIDMODEPARAM,
                    target,
                    "b",
                    nickname,
                    "Bans here are by nickname: nick!*@* or *!nick@* (" + str(e) + ")",
                )
            else:
                self._numeric(irc.ERR_ERRONEUSNICKNAME, target, str(e))
        except RoomError as e:
            if limit and type(e) is RoomError:
                self._numeric(limit, target, str(e))
            else:
                self._notice(str(e))
        except Refused as e:
            self._notice(str(e))

    _COMMANDS: dict[str, Callable[[IRCChat, Message], None]] = {
        "CAP": _cap,
        "AUTHENTICATE": _authenticate,
        "PASS": _pass,
        "NICK": _nick_command,
        "USER": _user_command,
        "PING": _ping,
        "PONG": _pong,
        "QUIT": _quit,
        "JOIN": _join,
        "PART": _part,
        "PRIVMSG": _privmsg,
        "NOTICE": _privmsg,
        "TOPIC": _topic,
        "NAMES": _names_command,
        "LIST": _list,
        "KICK": _kick,
        "WHO": _who_command,
        "WHOIS": _whois_command,
        "AWAY": _away,
        "TAGMSG": _tagmsg,
        "INVITE": _invite,
        "MOTD": _motd_command,
        "USERHOST": _userhost,
        "ISON": _ison,
        "LUSERS": _lusers,
        "VERSION": _version,
        "TIME": _time,
        "KILL": _kill,
        "OPER": _oper,
        "WHOWAS": _whowas,
        "HISTORY": _history_command,
        "SEARCH": _search,
        "MODE": _mode,
        "NICKSERV": _nickserv_command,
        "NS": _nickserv_command,
    }


#: Events IRCChat.deliver looks at before sending, and those after which
#: the connection closes (their ERROR said why).
_CHECKED = frozenset({AwayChanged, Joined, PrivateMessage, Ctcp})
_CLOSING = frozenset({Ghosted, Killed, ServerShutdown})

#: Commands a client may send before registration is complete.
_BEFORE_REGISTRATION = frozenset(
    {"CAP", "AUTHENTICATE", "PASS", "NICK", "USER", "PING", "PONG", "QUIT", "PRIVMSG", "NOTICE"}
    | {"NICKSERV", "NS"}
)


#: mIRC formatting codes: bold, colour (with its digits), hex colour,
#: reset, reverse, italics, strikethrough, underline, monospace.
_FORMATTING = re.compile(
    "\x03(?:\\d{1,2}(?:,\\d{1,2})?)?|\x04(?:[0-9A-Fa-f]{6}(?:,[0-9A-Fa-f]{6})?)?"
    "|[\x02\x0f\x16\x1d\x1e\x1f\x11]"
)


def _clean(text: str) -> str:
    """
    Clean text a client sent as a telnet line is cleaned (control
    characters and escape sequences removed), after removing IRC
    formatting codes whole, so that a colour's digits do not reach other
    users as text; nothing that could end an IRC line remains.
    """
    return clean_line(_FORMATTING.sub("", text).encode("utf-8", "surrogatepass"))


def _ban_nickname(mask: str) -> str:
    """
    The nickname a ban mask names (bans here are by nickname, or by the
    account of whoever has it): C{nick}, C{nick!user@host}, or, when the
    nickname part has wildcards, the user part, which is the nickname
    here (L{_source}): C{*!*alice@twistedchat}, C{*!~alice@*}. A mask
    naming nobody (C{*!*@*}) is returned as it is and refused as no
    nickname (696).
    """
    nickname, _, rest = mask.partition("!")
    if "*" not in nickname and "?" not in nickname:
        return nickname
    user = rest.partition("@")[0].lstrip("*~")
    return user if user and "*" not in user and "?" not in user else mask


def _closing_line(event: Event) -> str:
    """
    The ERROR line that ends a connection closed by the server, as IRC
    servers word it (Modern IRC, ERROR).
    """
    match event:
        case Ghosted():
            reason = "Ghosted"
        case Killed(operator=operator, reason=text):
            reason = f"Killed by {operator}: {text}"
        case _:
            reason = "Server shutting down"
    return _line(None, "ERROR", f"Closing Link: {HOST} ({reason})")


class IRCFactory(ServerFactory):
    """
    Builds an L{IRCChat} for each connection to an C{--irc} listener, on
    the shared chat state C{chat}.
    """

    def __init__(self, chat: ChatFactory) -> None:
        self.chat = chat
        self.renderers = Renderers(chat)

    def buildProtocol(self, addr: IAddress | None) -> IRCChat:  # type: ignore[override]
        protocol = IRCChat()
        protocol.factory = self.chat
        protocol.renderers = self.renderers
        return protocol
