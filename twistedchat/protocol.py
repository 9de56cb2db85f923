"""
The telnet/line wire protocol: framing, telnet negotiation, decoding, and
how events and replies look on a terminal.

Each TCP connection is a L{ChatTelnetTransport}, Twisted's
L{twisted.conch.telnet.TelnetTransport}, which removes telnet negotiation
(RFC 854 IAC sequences) from the input, refuses every option, and hands the
remaining bytes to a L{ChatProtocol}. C{nc} users send no IAC sequences, so
the same protocol serves both. What a user may do, and every rule about it,
is the L{twistedchat.session.ChatSession}'s; this module only turns lines
into calls on it and what comes back into lines.

What a user sees, by the first characters of each line::

    *** notice from the server       !!! error: your line was not sent
    <nick> chat line                 * nick action (/me)
    *nick* private message to you    -> *nick* your private message, sent
    - message of the day

A user in more than one room sees the room before each line said, done,
joined or left in a room: C{[#room] <nick> text}.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.conch.telnet import (
    DO,
    DONT,
    IAC,
    WILL,
    WONT,
    TelnetProtocol,
    TelnetTransport,
)
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    INegotiated,
    IProducer,
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
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
    PrivateMessageSent,
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
from twistedchat.flood import InputGate
from twistedchat.framing import BoundedLineReceiver
from twistedchat.history import Record, is_conversation
from twistedchat.nicknames import InvalidNickname, nickname_key
from twistedchat.sanitize import clean_line
from twistedchat.sendq import SendQueue
from twistedchat.session import (
    SENDQ_EXCEEDED,
    ChatSession,
    IFrontEnd,
    Refused,
    State,
    parse_command,
)

if TYPE_CHECKING:
    from twistedchat.factory import ChatFactory

    class _IStreamTransport(ITCPTransport, IPushProducer, IConsumer):
        """
        The TCP, UNIX or TLS transport under a L{ChatTelnetTransport}: each
        is also a push producer and a consumer.
        """


NOTICE = "*** "
ERROR = "!!! "

PROMPT = "Choose a nickname (or send an empty line for a random one):"

#: Seconds a closing connection has to send what it was told before it is
#: aborted (a peer that does not read, or a TLS handshake that never ends,
#: would otherwise keep it open for good).
CLOSE_TIMEOUT = 5.0

#: Seconds after refusing a nickname during which the client's further
#: lines are ignored: they may have been sent before the client could see
#: the refusal (a password meant for the refused nickname, say).
REFUSAL_GRACE = 1.0

#: TCP keepalive: seconds of silence before the first probe, seconds
#: between probes, and probes unanswered before the peer counts as gone, so
#: a vanished peer is noticed within two minutes (Linux's defaults take
#: over two hours: tcp(7)).
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4
#: Milliseconds sent data may stay unacknowledged before the connection is
#: dropped (TCP_USER_TIMEOUT, tcp(7)): keepalive probes stop while data is
#: unacknowledged, and retransmissions would take about 15 minutes.
USER_TIMEOUT = 120_000

_MODE_CHANGES = {
    "+o": "{operator} made {target} an operator of {room}",
    "-o": "{operator} made {target} no longer an operator of {room}",
    "+b": "{operator} banned {target} from {room}",
    "-b": "{operator} lifted the ban on {target} in {room}",
    "+t": "{operator} set {room} +t: only operators set the topic",
    "-t": "{operator} set {room} -t: anyone may set the topic",
}


def render_line(event: Event) -> bytes:
    """
    Format C{event} as one telnet line: UTF-8 text ending in CRLF.

    Pass this function to L{Event.render} so a broadcast is formatted and
    encoded once for all telnet recipients.
    """
    text = _text(event)
    return text.encode("utf-8") + b"\r\n" if text else b""


def render_room_line(event: Event) -> bytes:
    """
    Format C{event} as L{render_line} does, for a user in several rooms:
    what was said, done, joined or left in a room starts with the room,
    C{[#room] }.
    """
    text = _text(event)
    if not text:
        return b""
    if isinstance(event, (ChatLine, Action, Joined, Left)) and event.room:
        text = f"[{event.room}] {text}"
    return text.encode("utf-8") + b"\r\n"


def _text(event: Event) -> str:
    """
    Return C{event} as the text of one line.
    """
    match event:
        case ChatLine(sender=sender, text=text, notice=False):
            return f"<{sender}> {text}"
        case ChatLine(sender=sender, text=text):
            return f"-{sender}- {text}"  # a notice, as IRC clients show them
        case Action(sender=sender, text=text):
            return f"* {sender} {text}"
        case PrivateMessage(sender=sender, text=text, notice=False, action=False):
            return f"*{sender}* {text}"
        case PrivateMessage(sender=sender, text=text, action=True):
            return f"*{sender}* * {sender} {text}"
        case PrivateMessage(sender=sender, text=text):
            return f"-*{sender}*- {text}"
        case Ctcp():
            return ""  # for IRC clients only
        case Joined(nickname=nickname):
            return f"{NOTICE}{nickname} has joined"
        case Left(nickname=nickname, reason=""):
            return f"{NOTICE}{nickname} has left"
        case Left(nickname=nickname, reason=reason):
            return f"{NOTICE}{nickname} has left ({reason})"
        case NicknameChanged(old=old, new=new):
            return f"{NOTICE}{old} is now known as {new}"
        case TopicChanged(room=room, nickname=nickname, topic=topic):
            if topic:
                return f"{NOTICE}{nickname} set the topic of {room}: {topic}"
            return f"{NOTICE}{nickname} cleared the topic of {room}"
        case Kicked(room=room, operator=operator, nickname=nickname, reason=reason):
            return f"{NOTICE}{operator} removed {nickname} from {room} ({reason})"
        case ModeChanged(room=room, operator=operator, change=change, target=target):
            return NOTICE + _MODE_CHANGES[change].format(
                operator=operator, target=target, room=room
            )
        case Ghosted(nickname=nickname):
            return (
                f"{NOTICE}Someone who gave the password of {nickname} has taken it over; goodbye."
            )
        case Killed(operator=operator, reason=reason):
            return f"{NOTICE}The server operator {operator} disconnected you: {reason}"
        case ServerShutdown():
            return f"{NOTICE}server shutting down"
        case Invited(inviter=inviter, room=room):
            return f"{NOTICE}{inviter} invites you to {room}: /join {room} joins it."
        case AwayChanged():
            return ""  # a state others look up (/whois), not worth a line in a room
    raise TypeError(f"no telnet form for {event!r}")


def render_sent(recipient: str, text: str) -> bytes:
    """
    Format a private message as its sender sees it: C{-> *recipient* text}.
    """
    return f"-> *{recipient}* {text}\r\n".encode()


def _render_past(record: Record) -> bytes:
    return _timestamp(record) + record.event.render(render_line)


def _render_past_in_room(record: Record) -> bytes:
    return _timestamp(record) + record.event.render(render_room_line)


#: How each live renderer shows a past event: a function of its own, so
#: that each record keeps the bytes of each (L{Renderable.render}).
_RENDER_PAST: dict[Callable[[Event], bytes], Callable[[Record], bytes]] = {
    render_line: _render_past,
    render_room_line: _render_past_in_room,
}


def history_heading(records: list[Record], here: str = "here") -> str:
    """
    The sentence shown before past events (C{records}) of a room: how many
    lines were said C{here} (C{"in #dev"} for a user in several rooms), or
    that only comings and goings follow. Telnet and IRC show the same.
    """
    said = sum(1 for record in records if is_conversation(record.event))
    if said:
        lines = "line" if said == 1 else f"{said} lines"
        return f"The last {lines} said {here}:"
    return f"Nothing has been said {here} lately; who came and went:"


def search_heading(results: SearchResults) -> str:
    """
    The sentence shown before what a search found, or instead of it when
    it found nothing. Telnet and IRC show the same.
    """
    records, found = results.records, f'"{results.query}" in {results.room}'
    if not records:
        return f"No matches for {found}."
    matches = "1 match" if len(records) == 1 else f"{len(records)} matches"
    return f"{matches} for {found}, newest first:"


def render_history(
    record: Record, viewer: str | None = None, renderer: Callable[[Event], bytes] = render_line
) -> bytes:
    """
    Format a past event as one telnet line: its UTC time in brackets, then
    the line as C{renderer} (L{render_line} or L{render_room_line}) shows
    it live (a private message that C{viewer}, a nickname key, sent as its
    sender saw it). Each record is formatted once for every viewer who sees
    it alike.
    """
    event = record.event
    if isinstance(event, PrivateMessage) and viewer == nickname_key(event.sender):
        return _timestamp(record) + render_sent(event.recipient, event.text)
    return record.render(_RENDER_PAST[renderer])


def _timestamp(record: Record) -> bytes:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.at))
    return f"[{when} UTC] ".encode()


def _people(count: int) -> str:
    return "1 user" if count == 1 else f"{count} users"


def peer_host(address: IAddress) -> str | None:
    """
    Return the IP address of C{address}, or C{None} if it has none (a UNIX
    socket).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None


def describe_address(address: IAddress) -> str:
    """
    Return C{address} as a person writes it: C{127.0.0.1:5000},
    C{[::1]:5000} or C{unix:/path/chat.sock}.
    """
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    if isinstance(address, UNIXAddress):
        name = address.name
        return f"unix:{name.decode() if isinstance(name, bytes) else name or '?'}"
    return str(address)


@implementer(IFrontEnd)
class ChatProtocol(BoundedLineReceiver, TelnetProtocol):
    """
    One telnet or C{nc} connection: reads lines, hands them to its
    L{ChatSession}, and writes what comes back as lines (the session's
    L{twistedchat.session.IFrontEnd}).

    Input lines end in LF; L{ChatTelnetTransport} has already turned
    telnet's line ends into LF. C{MAX_LENGTH} (bytes) comes from the
    factory's C{max_line_length}.

    Output goes through a L{SendQueue}; a client that does not read what
    it is sent only fills its own SendQ, and is cut off when that passes
    C{max_sendq} bytes or stays congested for C{sendq_timeout} seconds.
    Nobody else waits for it. Reading input pauses while a client is over
    its flood limits (the session's lines bucket, and this connection's
    bucket of C{flood_byte_burst} bytes refilled at C{flood_bytes} bytes
    per second) and while a command checks a password; the kernel's TCP
    buffers then hold the sender back, and no line is dropped or
    reordered.

    @ivar factory: the shared state, set by L{ChatTelnetTransport}.
    @ivar session: the user's L{ChatSession}, once the connection was let
        in.
    """

    kind = "telnet"
    delimiter = b"\n"
    factory: ChatFactory
    session: ChatSession
    # Set with the session, once the connection was let in.
    _gate: InputGate
    # Not an ITransport to mypy: TelnetTransport does not declare it.
    transport: ChatTelnetTransport  # type: ignore[assignment]
    _log = Logger()

    def __init__(self) -> None:
        self._closed = False
        self._peer = "?"
        self._output: SendQueue | None = None
        self._close_timer: IDelayedCall | None = None
        # Lines ignored since the last nickname answer (see _answered).
        self._ignoring: int | None = None
        self._ignore_timer: IDelayedCall | None = None

    @property
    def nickname(self) -> str | None:
        """
        The session's nickname, or C{None} (not registered, or refused).
        """
        return self.session.nickname if self._output is not None else None

    # Connection life

    def connectionMade(self) -> None:
        factory = self.factory
        address = self.transport.getPeer()
        self._peer = describe_address(address)
        host = peer_host(address)
        refusal = factory.admission(host)
        if refusal is not None:
            self._closed = True
            self._log.info("refused {peer}: {reason}", peer=self._peer, reason=refusal)
            self.transport.write(f"{ERROR}{refusal}\r\n".encode())
            self.transport.loseConnection()
            self._close_timer = factory.clock.callLater(
                CLOSE_TIMEOUT, self.transport.abortConnection
            )
            return
        self._log.info("connection from {peer}", peer=self._peer)
        self.MAX_LENGTH = factory.max_line_length
        self._output = SendQueue(
            self.transport,
            factory.flusher,
            factory.max_sendq,
            self,
            handshaking=self.transport.handshaking,
            timeout=factory.sendq_timeout,
        )
        self.session = ChatSession(factory, self, host, self._peer)
        self._gate = InputGate(
            factory.clock,
            self.transport,
            self.session.flood_wait,
            self.hold,
            factory.flood_bytes,
            factory.flood_byte_burst,
        )
        self._notice(f"This is {factory.server_name}, running twistedchat {__version__}.")
        if factory.motd:
            for line in factory.motd.splitlines():
                self._write(f"- {line}")
        self.session.open()
        if self.session.state is State.AWAITING_NICKNAME:
            self._notice(PROMPT)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._closed = True
        self._stop_input()
        for timer in (
            self._close_timer,
            self._ignore_timer,
        ):
            if timer is not None and timer.active():
                timer.cancel()
        if self._output is None:
            return  # refused by admission(): the factory never knew it
        self._output.clear()
        self._log.info(
            "connection from {peer} closed ({nickname})",
            peer=self._peer,
            nickname=self.session.nickname or "not registered",
        )
        self.session.connection_lost("connection lost")

    def close(self) -> None:
        """
        Close the connection once what it was told has been sent, or abort
        it after L{CLOSE_TIMEOUT} seconds if that does not happen (a peer
        that does not read, or a TLS handshake that never completes).
        """
        if self._closed:
            return
        self._closed = True
        self._stop_input()
        assert self._output is not None
        self._output.close()
        self.transport.loseConnection()
        if self._close_timer is None:
            self._close_timer = self.factory.clock.callLater(
                CLOSE_TIMEOUT, self.transport.abortConnection
            )

    # Output and its SendQ (see twistedchat.sendq.SendQueueOwner)

    def sendq_exceeded(self) -> None:
        """
        Cut off a client that does not read its output fast enough: throw
        away what waits for it, tell the others it left for "SendQ
        exceeded", and reset the connection. The others are told once the
        current broadcast is over (this may run in the middle of one), so
        that everyone sees events in the same order.
        """
        if self._closed:
            return
        output = self._output
        assert output is not None
        self._log.info(
            "SendQ exceeded for {peer} ({nickname}): {waiting} bytes waiting"
            " ({queued} queued, up to {in_transport} in the transport's buffer)",
            peer=self._peer,
            nickname=self.session.nickname or "not registered",
            waiting=output.waiting,
            queued=output.queued,
            in_transport=output.in_transport,
        )
        self._closed = True
        self._stop_input()
        output.clear()
        self.factory.clock.callLater(0, self._cut_off)

    def _cut_off(self) -> None:
        self.session.cut_off(SENDQ_EXCEEDED)
        self.transport.abortConnection()

    # IFrontEnd

    def deliver(self, event: Event) -> None:
        """
        Write C{event} as one line; see L{render_line}, and
        L{render_room_line} for a user in several rooms.
        """
        if not self._closed:
            assert self._output is not None
            data = event.render(render_room_line if len(self.session.rooms) > 1 else render_line)
            if data:  # b"" for what telnet does not show (AwayChanged, Ctcp)
                self._output.write(data)

    def reply(self, event: Event) -> None:
        """
        Write C{event}, an answer to this user's command, as lines.
        """
        if self._closed:
            return
        match event:
            case Notice(text=text):
                self._notice(text)
            case Error(text=text):
                self._error(text)
            case NicknameWanted():
                self._notice(PROMPT)
            case PasswordWanted(nickname=nickname):
                self._notice(
                    f"The nickname {nickname} is registered. Send its password, "
                    "or an empty line to choose another nickname:"
                )
            case Welcome(nickname=nickname, online=(count, nicknames)):
                listed = f": {', '.join(nicknames)}" if nicknames else ""
                self._notice(
                    f"Welcome, {nickname}! {_people(count)} online{listed}. "
                    "Type /help for the commands."
                )
            case PrivateMessageSent(recipient=recipient, text=text):
                assert self._output is not None
                self._output.write(render_sent(recipient, text))
            case RoomJoined(room=room, topic=topic, members=members, already=already):
                if already:
                    self._notice(f"You are in {room} already; your lines go there now.")
                    return
                count = len(members) if event.count < 0 else event.count
                listed = f": {', '.join(members)}" if members else ""
                self._notice(
                    f"You joined {room}; your lines go there now. {_people(count)} here{listed}."
                )
                if topic:
                    self._notice(f"Topic of {room}: {topic}")
            case RoomParted(room=room):
                self._notice(f"You left {room}.")
            case CurrentRoom(room=""):
                self._notice("You are in no room now; /join #ROOM joins one.")
            case CurrentRoom(room=room):
                self._notice(f"Your lines go to {room} now.")
            case Names(room=room, nicknames=nicknames, operators=operators, away=away):
                marked, gone = set(operators), set(away)
                shown = ", ".join(
                    ("@" if n in marked else "") + n + (" (away)" if n in gone else "")
                    for n in nicknames
                )
                self._notice(
                    f"{_people(len(nicknames))} in {room}" + (f": {shown}" if shown else ".")
                )
            case RoomList(rooms=rooms):
                self._notice("1 room:" if len(rooms) == 1 else f"{len(rooms)} rooms:")
                for summary in rooms:
                    topic = f": {summary.topic}" if summary.topic else ""
                    self._notice(f"  {summary.name} ({_people(summary.members)}){topic}")
            case TopicIs(room=room, topic=topic, by=by, at=at):
                if not topic:
                    self._notice(f"{room} has no topic.")
                else:
                    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))
                    self._notice(f"Topic of {room}: {topic} (set by {by}, {when} UTC)")
            case Away(nickname=nickname, text=text):
                self._notice(f"{nickname} is away: {text}")
            case AwaySet(text=""):
                self._notice("You are no longer marked as away.")
            case AwaySet(text=text):
                self._notice(f"You are marked as away: {text}")
            case WhoIs() as whois:
                self._whois(whois)
            case HistoryReplay():
                self._replay(event)
            case SearchResults():
                self._search_results(event)
            case _:
                self.deliver(event)

    def _whois(self, whois: WhoIs) -> None:
        operator_of = set(whois.operator_of)
        rooms = ", ".join(f"@{r}" if r in operator_of else r for r in whois.rooms)
        self._notice(f"{whois.nickname} is in " + (rooms or "no room") + ".")
        if whois.away:
            self._notice(f"{whois.nickname} is away: {whois.away}")
        if whois.account:
            self._notice(f"{whois.nickname} is identified as the owner of {whois.account}.")
        if whois.server_operator:
            self._notice(f"{whois.nickname} is a server operator.")

    def _replay(self, replay: HistoryReplay) -> None:
        """
        Show past events, marked as history.
        """
        records = replay.records
        if not records:
            self._notice("Nothing has been said here yet.")
            return
        several = len(self.session.rooms) > 1
        self._notice(history_heading(records, f"in {replay.room}" if several else "here"))
        renderer = render_room_line if several else render_line
        assert self._output is not None
        for record in records:
            self._output.write(render_history(record, replay.viewer, renderer))
        self._notice("End of history.")

    def _search_results(self, results: SearchResults) -> None:
        """
        Show what a search found, newest first, each line with its time.
        """
        self._notice(search_heading(results))
        if not results.records:
            return
        renderer = render_room_line if len(self.session.rooms) > 1 else render_line
        assert self._output is not None
        for record in results.records:
            self._output.write(render_history(record, results.viewer, renderer))
        self._notice("End of search.")

    def handshake_completed(self) -> None:
        """
        The connection's TLS handshake is done: from now on a transport
        that asks to pause is backed up.
        """
        if self._output is not None:
            self._output.handshaking = False

    def send_negotiation(self, data: bytes) -> None:
        """
        Send telnet negotiation bytes (C{IAC ...}) through the SendQ, so that
        a client answering nothing cannot make the server buffer replies
        without bound.
        """
        if not self._closed and self._output is not None:
            self._output.write(data)

    # Framing

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines (L{BoundedLineReceiver}), unless the
        connection was refused or is closing.
        """
        if self._output is None or self._closed:
            return  # refused, or closing: nothing more is read
        BoundedLineReceiver.dataReceived(self, data)

    def line_too_long(self) -> None:
        """
        Tell the user their line was too long; it is skipped to its end.
        """
        if not self._closed:
            self._error(f"Line too long: at most {self.MAX_LENGTH} bytes. It was not sent.")

    def lineReceived(self, line: bytes) -> None:
        text = clean_line(line)
        if self._ignoring is not None:
            command = parse_command(text)
            if command is None or command[0] not in ("quit", "exit"):
                self._ignoring += 1
                return
        state = self.session.state
        if state is State.CHATTING:
            self._gate.wait_for(self.session.line(text))
        elif state is State.AWAITING_NICKNAME:
            self._nickname_line(text)
        elif state is State.AWAITING_PASSWORD:
            self._password_line(text)
        if not self._closed:
            self._gate.line_handled()

    # Flood control, in lines and in bytes (see twistedchat.flood)

    def bytes_received(self, count: int) -> None:
        """
        Charge C{count} bytes that arrived, telnet negotiation included, to
        the byte budget (L{InputGate.bytes_received}): bytes without a
        newline, telnet negotiation storms and long lines cost the server a
        bounded share of its time.
        """
        if self._output is not None and not self._closed:
            self._gate.bytes_received(count)

    def _stop_input(self) -> None:
        if self._output is not None:
            self._gate.stop()

    # Registration

    def _nickname_line(self, text: str) -> None:
        """
        Handle a line at the nickname prompt: C{NICK}, C{NICK PASSWORD}
        (a nickname has no spaces, so a registered one and its password
        can come in one line), an empty line for a random nickname, or
        C{/quit}.

        Unless the answer is a password prompt, whatever else the client
        sent before the answer is ignored (L{_answered}): a client that
        sent C{alice CRLF password CRLF} for a nickname that was refused,
        or that turned out not to be registered, would otherwise send its
        password as the next nickname or as chat.
        """
        command = parse_command(text)
        if command is not None:
            name, argument = command
            if name in ("quit", "exit"):
                self.session.quit(argument.strip() or "quit")
            else:
                self._refused("Choose a nickname first; /quit leaves.")
            return
        nickname, _, password = text.strip().partition(" ")
        try:
            done = self.session.choose_nickname(nickname, password.strip())
        except (InvalidNickname, Refused) as e:
            self._refused(str(e))
            return
        self._gate.wait_for(done)
        if self.session.state is State.CHATTING:
            self._answered()

    def _refused(self, why: str) -> None:
        """
        Say why the nickname line was refused, ask again, and ignore what
        the client sent before it could see this (L{_answered}).
        """
        self._error(why)
        self._notice(PROMPT)
        self._answered(REFUSAL_GRACE)

    def _password_line(self, text: str) -> None:
        command = parse_command(text)
        if command is not None and command[0] in ("quit", "exit"):
            self.session.quit(command[1].strip() or "quit")
            return
        self._gate.wait_for(self.session.give_password(text))
        if not text:
            self._answered()

    def _answered(self, grace: float = 0.0) -> None:
        """
        Ignore the lines the client sent before this answer (C{/quit}
        still works): those received but not handled yet, those that
        arrive before the answer goes out at the end of this reactor
        iteration or, after a refusal, in the next C{grace} seconds, before
        the client could have seen it; and the rest of a line begun by
        then. Say how many were ignored.
        """
        if self._ignoring is None:
            self._ignoring = 0
        if self._ignore_timer is not None and self._ignore_timer.active():
            self._ignore_timer.cancel()
        self._ignore_timer = self.factory.clock.callLater(grace, self._stop_ignoring)

    def _stop_ignoring(self) -> None:
        self._ignore_timer = None
        # Lines held back while reading was paused are ignored like the
        # others; a line begun is ignored to its end.
        *lines, begun = self.clearLineBuffer().split(self.delimiter)
        for line in lines:
            self.lineReceived(line)
        ignored, self._ignoring = self._ignoring or 0, None
        if begun:
            ignored += 1
            self.skip_line()
        if ignored and not self._closed:
            lines_ignored = "1 line" if ignored == 1 else f"{ignored} lines"
            self._error(
                f"Ignored {lines_ignored} sent before the answer above; wait for an answer "
                "before sending more."
            )

    # Output

    def _write(self, line: str) -> None:
        assert self._output is not None
        self._output.write(line.encode("utf-8") + b"\r\n")

    def _notice(self, text: str) -> None:
        self._write(NOTICE + text)

    def _error(self, text: str) -> None:
        self._write(ERROR + text)


# Splits input so that each IAC is a piece of its own: after it, the parser
# is in the "escaped" state exactly when the next piece starts with the
# command byte.
_IAC_PIECES = re.compile(b"(" + IAC + b")")
# Bytes TelnetTransport does not accept after IAC: anything below EOR (239),
# and SE (240) outside a subnegotiation.
_NOT_COMMANDS = frozenset(range(239)) | {240}


def keep_alive(transport: ITransport) -> None:
    """
    Turn on TCP keepalive for the connection under C{transport}, with the
    timing of L{_tune_keepalive}, and turn off Nagle's algorithm
    (C{TCP_NODELAY}), if it is a TCP connection (or TLS over one).

    Without C{TCP_NODELAY}, a line written while the peer has not yet
    acknowledged the previous one waits for that acknowledgement, which a
    client that only reads delays up to 40 ms (delayed ACK): the p99 of a
    chat at ten lines a second was 31-33 ms for that alone
    (C{bench/README.md}). Output is written once per reactor iteration
    (L{twistedchat.sendq}), so small writes are batched already.
    """
    if ITCPTransport.providedBy(transport):
        transport.setTcpKeepAlive(True)
        transport.setTcpNoDelay(True)
        _tune_keepalive(transport)


def _tune_keepalive(transport: ITransport) -> None:
    """
    Set TCP keepalive's timing (L{KEEPALIVE_IDLE}, L{KEEPALIVE_INTERVAL},
    L{KEEPALIVE_COUNT}) and L{USER_TIMEOUT} on the socket under
    C{transport}, a TCP transport or a TLS one wrapping it, where the
    platform has these options (Linux: tcp(7)), so that a vanished peer is
    noticed within two minutes whether or not it was sent anything.
    """
    layer: object = transport
    while ISystemHandle.providedBy(layer):
        handle = layer.getHandle()
        if isinstance(handle, socket.socket):
            for option, value in (
                ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
                ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
                ("TCP_KEEPCNT", KEEPALIVE_COUNT),
                ("TCP_USER_TIMEOUT", USER_TIMEOUT),
            ):
                if hasattr(socket, option):
                    handle.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
            return
        # A TLS transport's handle is its TLS connection; the socket is
        # under the transport it wraps.
        layer = getattr(layer, "transport", None)


@implementer(IConsumer, IPushProducer, IHandshakeListener)
class ChatTelnetTransport(TelnetTransport):
    """
    The protocol L{twistedchat.factory.ChatFactory} builds for each telnet
    or C{nc} connection: telnet option handling around a L{ChatProtocol}.

    Lines written are UTF-8 text ending in CRLF. UTF-8 never contains the
    byte 0xFF (telnet's IAC) and our lines hold no bare LF, so they go
    straight to the TCP transport, without L{TelnetTransport.write}'s IAC
    doubling and LF to CRLF rewriting (which would turn CRLF into CR CR LF)
    and without a Python call per line on the broadcast path.

    Input lines may end in LF, CRLF, CR NUL (RFC 854's bare carriage
    return) or a lone CR; each ends a line at once, and the LF or NUL after
    a CR is not another line end. Every option the client offers or asks
    for is refused (RFC 854, RFC 1143's rule for an option that stays
    off), and the refusals go through the connection's SendQ.
    """

    protocolFactory = ChatProtocol
    protocolArgs = ()
    protocolKwArgs: dict[str, object] = {}
    protocol: ChatProtocol
    transport: _IStreamTransport
    #: Whether the connection is TLS and its handshake is not done yet.
    handshaking = False

    def __init__(self) -> None:
        self.options: dict[bytes, object] = {}
        # Whether the last chunk ended in a CR that was taken as a line
        # end, so that an LF or NUL starting the next one is skipped.
        self._after_cr = False

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake is done (L{IHandshakeListener}).
        """
        self.handshaking = False
        if self.protocol is not None:
            self.protocol.handshake_completed()

    def commandReceived(self, command: bytes, argument: bytes | None) -> None:
        """
        Refuse an option the client offers (C{WILL}) or asks for (C{DO});
        ignore C{WONT}, C{DONT} (the option is off already) and every other
        command (an interrupt, "are you there", ...).
        """
        if argument is None:
            return
        if command == WILL:
            self.protocol.send_negotiation(IAC + DONT + argument)
        elif command == DO:
            self.protocol.send_negotiation(IAC + WONT + argument)

    def negotiate(self, data: list[bytes]) -> None:
        """
        Ignore a subnegotiation (C{IAC SB ... IAC SE}), even an empty one:
        no option is ever on, so there is nothing to negotiate about.
        """

    def dataReceived(self, data: bytes) -> None:
        """
        Charge C{data} to the connection's byte budget, then parse it as
        telnet: application data (everything outside telnet commands) goes
        to the protocol in pieces, without a Python call per byte, with
        each CR form turned into a line end (see the class docstring);
        commands and subnegotiations go through L{TelnetTransport}'s
        parser. IAC followed by a byte that is no telnet command (RFC 854
        and RFC 885 define 239-255) is ignored instead of raising
        C{ValueError}, and parsing stops once the connection is lost (after
        C{/quit}, say) instead of handing the rest to a protocol that is
        gone.
        """
        if self.protocol is None:
            return
        self.protocol.bytes_received(len(data))
        if self.state == "data" and IAC not in data:
            self._application_data(data)
            return
        for piece in _IAC_PIECES.split(data):
            while piece:
                if self.protocol is None:
                    return  # the connection was lost while handling a piece
                state = self.state
                if state == "data" and piece != IAC:
                    self._application_data(piece)
                    break
                self._after_cr = False
                if state == "escaped" and piece[0] in _NOT_COMMANDS:
                    self.state = "data"
                    piece = piece[1:]
                elif state == "subnegotiation" or piece == IAC:
                    # The piece holds no IAC, or is one: the parser's state
                    # can only change at its end.
                    TelnetTransport.dataReceived(self, piece)
                    break
                else:
                    # A command's bytes: one at a time, until it ends.
                    TelnetTransport.dataReceived(self, piece[:1])
                    piece = piece[1:]

    def _application_data(self, data: bytes) -> None:
        """
        Hand C{data}, which holds no telnet command, to the protocol with
        each CRLF, CR NUL and lone CR turned into LF.
        """
        if self._after_cr:
            self._after_cr = False
            if data[:1] in (b"\n", b"\0"):
                data = data[1:]
        if b"\r" in data:
            self._after_cr = data.endswith(b"\r")
            data = data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\n").replace(b"\r", b"\n")
        if data:
            self.protocol.dataReceived(data)

    def makeConnection(self, transport: ITransport) -> None:
        """
        Connect to C{transport}, sending writes straight to it, and turn on
        TCP keepalive so that peers that vanish are noticed within about
        two minutes.
        """
        self.write = transport.write  # type: ignore[method-assign]
        # Only TLS transports negotiate (ALPN); they tell handshakeCompleted.
        self.handshaking = INegotiated.providedBy(transport)
        keep_alive(transport)
        TelnetTransport.makeConnection(self, transport)

    # The protocol inside pauses reading, registers its SendQ and resets
    # the connection through these.

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def abortConnection(self) -> None:
        self.transport.abortConnection()
