"""
The WebSocket front end: JSON messages over Twisted's WebSocket support
(L{twisted.web.websocket}, over C{wsproto}), for the browser client and
anything else that speaks them. Like the telnet front end, it only turns
messages into calls on a L{ChatSession} and events into messages; every
chat rule is the session's.

The protocol, version 1 (C{docs/websocket.md} has the same with an example
of every message):

Framing. Every message is a text message. A message from the client is one
JSON object; a message from the server is one or more JSON objects, one per
line (C{"\\n"} between them), packed once per reactor iteration like telnet
output (L{twistedchat.sendq}). Every object has a C{type}; clients ignore
types and fields they do not know. Times (C{at}) are seconds since the
epoch, UTC. Chat events carry C{id}, a positive integer that is the same
for an event live, replayed and found, and larger for later events.

Client to server::

    nickname  nickname, password (optional)   choose a nickname
    password  password                        answer password_wanted ("" gives up)
    line      text                            a typed line or /command, as in telnet
    switch    room                            plain lines go to this room now
    history   room, before (id, optional), count   a room's events before an id (or its latest)
    search    text, room (optional)           search what was said (SQLite FTS5)

Server to client, replies::

    hello            protocol (1), server, version, motd, max_line_length
    nickname_wanted
    password_wanted  nickname
    welcome          nickname, count, online
    notice           text
    error            text
    joined           room, topic, members, operators, count, already
    parted           room
    current_room     room ("" for none)
    names            room, nicknames, operators, away
    is_away          nickname, text
    away_set         text ("" when back)
    whois            nickname, rooms, operator_of, away, account, server_operator
    rooms            rooms: [{name, members, topic}]
    topic_is         room, topic, by, at
    history          room, events (oldest first), asked, before (id or null)
    search_results   query, room, events (newest first), limit

Server to client, chat events (also inside history and search_results; a
user's own message, action and private message come back too)::

    message  id, at, room, nickname, text, notice
    action   id, at, room, nickname, text
    private  id, at, nickname, to, text, notice, action
    join     id, at, room, nickname
    part     id, at, room, nickname, reason
    quit     id, at, nickname, reason
    nick     id, at, old, new
    topic    id, at, room, nickname, topic
    kick     id, at, room, operator, nickname, reason
    mode     id, at, room, operator, change, target
    away     nickname, text      (someone in a room of yours; "" is back)
    invited  nickname, room      (nickname invites you to room)
    ghosted  nickname            (then the connection closes)
    killed   operator, reason    (then the connection closes)
    shutdown                     (then the connection closes)

Limits, as for telnet: the text of a line at most C{max_line_length}
bytes, and a message at most L{max_message} characters, or an C{error}
and nothing done; L{MAX_BAD_MESSAGES} bad messages in a row close the
connection with code 1008, and more than L{twistedchat.web.MAX_INPUT}
bytes before a message ends with code 1009. Flood control (a message is a
line; every byte received is charged) slows reading; the SendQ cuts off a
client that does not read.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.websocket import WebSocketTransport
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
from twistedchat.factory import ChatFactory
from twistedchat.flood import InputGate
from twistedchat.history import Record
from twistedchat.nicknames import InvalidNickname
from twistedchat.protocol import CLOSE_TIMEOUT, describe_address, keep_alive, peer_host
from twistedchat.sanitize import clean_line
from twistedchat.sendq import SendQueue
from twistedchat.session import (
    SEARCH_RESULTS,
    SENDQ_EXCEEDED,
    ChatSession,
    IFrontEnd,
    Refused,
    State,
)

#: The protocol version L{hello <WebSocketChat.negotiationFinished>} announces.
PROTOCOL_VERSION = 1

#: WebSocket close codes (RFC 6455 section 7.4.1, and IANA's registry).
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013

#: Events a C{history} message asks for when it does not say how many.
DEFAULT_PAGE = 50

#: Bad messages in a row (not JSON, unknown type, missing field) after
#: which the connection is closed with L{CLOSE_POLICY}.
MAX_BAD_MESSAGES = 10


def max_message(max_line_length: int) -> int:
    """
    Return the most characters a client message may have: room for a line
    of C{max_line_length} bytes with every character escaped in JSON
    (C{\\uXXXX}, six characters), and 1024 for the rest of the object.
    """
    return 6 * max_line_length + 1024


def _compact(value: dict[str, Any]) -> bytes:
    """
    Encode C{value} as compact JSON, UTF-8.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")


def _json(value: dict[str, Any]) -> bytes:
    """
    Encode C{value} as one line of compact JSON, UTF-8, ending in C{"\\n"}.
    """
    return _compact(value) + b"\n"


def _event_fields(event: Event, room: str | None = None) -> dict[str, Any] | None:
    """
    Return the JSON object of a chat event (a L{ChatLine}, L{Action},
    L{PrivateMessage}, L{Joined}, L{Left}, L{NicknameChanged},
    L{TopicChanged}, L{Kicked}, L{ModeChanged}, L{Ghosted}, L{Killed} or
    L{ServerShutdown}), or C{None} for any other event.

    @param room: the room a replayed event happened in, for an event that
        does not name its own.
    """
    stamp = {"id": event.id, "at": event.at}
    match event:
        case ChatLine(sender=sender, text=text, room=where, notice=notice):
            return {
                "type": "message",
                **stamp,
                "room": where,
                "nickname": sender,
                "text": text,
                "notice": notice,
            }
        case Action(sender=sender, text=text, room=where):
            return {"type": "action", **stamp, "room": where, "nickname": sender, "text": text}
        case PrivateMessage(
            sender=sender, recipient=recipient, text=text, notice=notice, action=action
        ):
            return {
                "type": "private",
                **stamp,
                "nickname": sender,
                "to": recipient,
                "text": text,
                "notice": notice,
                "action": action,
            }
        case Joined(nickname=nickname, room=where):
            return {"type": "join", **stamp, "room": where, "nickname": nickname}
        case Left(nickname=nickname, reason=reason, room=""):
            return {"type": "quit", **stamp, "nickname": nickname, "reason": reason}
        case Left(nickname=nickname, reason=reason, room=where):
            return {
                "type": "part",
                **stamp,
                "room": where,
                "nickname": nickname,
                "reason": reason,
            }
        case NicknameChanged(old=old, new=new):
            return {"type": "nick", **stamp, "old": old, "new": new}
        case TopicChanged(room=where, nickname=nickname, topic=topic):
            return {"type": "topic", **stamp, "room": where, "nickname": nickname, "topic": topic}
        case Kicked(room=where, operator=operator, nickname=nickname, reason=reason):
            return {
                "type": "kick",
                **stamp,
                "room": where,
                "operator": operator,
                "nickname": nickname,
                "reason": reason,
            }
        case ModeChanged(room=where, operator=operator, change=change, target=target):
            return {
                "type": "mode",
                **stamp,
                "room": where,
                "operator": operator,
                "change": change,
                "target": target,
            }
        case AwayChanged(nickname=nickname, text=text):
            return {"type": "away", "nickname": nickname, "text": text}
        case Invited(inviter=inviter, room=room):
            return {"type": "invited", "nickname": inviter, "room": room}
        case Ghosted(nickname=nickname):
            return {"type": "ghosted", "nickname": nickname}
        case Killed(operator=operator, reason=reason):
            return {"type": "killed", "operator": operator, "reason": reason}
        case ServerShutdown():
            return {"type": "shutdown"}
    return None


def render_json(event: Event) -> bytes:
    """
    Format a chat event, or a reply, as one line of JSON (see the module
    docstring). Pass this function to L{Event.render} so that a broadcast
    is encoded once for all WebSocket recipients.

    @raise TypeError: C{event} has no JSON form.
    """
    fields: dict[str, Any] | None
    match event:
        case HistoryReplay(room=room, records=records, asked=asked, before=before):
            fields = {"type": "history", "room": room, "asked": asked, "before": before}
            return _with_events(fields, records)
        case SearchResults(query=query, room=room, records=records):
            fields = {"type": "search_results", "query": query, "room": room}
            return _with_events({**fields, "limit": SEARCH_RESULTS}, records)
        case Welcome(room=RoomJoined() as room):
            fields = _reply_fields(event)
            assert fields is not None
            return _json(fields) + render_json(room)
    if isinstance(event, Ctcp):
        return b""  # passed between IRC users only
    fields = _event_fields(event) or _reply_fields(event)
    if fields is None:
        raise TypeError(f"no JSON form for {event!r}")
    return _json(fields)


def _past(record: Record) -> bytes:
    """
    Return the JSON object of a past event; kept on the record, so each is
    encoded once for everyone it is replayed to.
    """
    fields = _event_fields(record.event)
    assert fields is not None, record
    return _compact(fields)


def _with_events(fields: dict[str, Any], records: list[Record]) -> bytes:
    """
    Return C{fields} as one line of JSON with C{"events"}, the list of
    C{records} as chat events, added.
    """
    events = b",".join(record.render(_past) for record in records)
    return _compact(fields)[:-1] + b',"events":[' + events + b"]}\n"


def _reply_fields(event: Event) -> dict[str, Any] | None:
    """
    Return the JSON object of a reply (an answer to this user only), or
    C{None} for any other event.
    """
    match event:
        case Notice(text=text):
            return {"type": "notice", "text": text}
        case Error(text=text):
            return {"type": "error", "text": text}
        case NicknameWanted():
            return {"type": "nickname_wanted"}
        case PasswordWanted(nickname=nickname):
            return {"type": "password_wanted", "nickname": nickname}
        case Welcome(nickname=nickname, online=(count, online)):
            return {"type": "welcome", "nickname": nickname, "count": count, "online": online}
        case RoomJoined(
            room=room,
            topic=topic,
            members=members,
            already=already,
            count=count,
            operators=operators,
        ):
            return {
                "type": "joined",
                "room": room,
                "topic": topic,
                "members": members,
                "operators": operators,
                "count": len(members) if count < 0 else count,
                "already": already,
            }
        case RoomParted(room=room):
            return {"type": "parted", "room": room}
        case CurrentRoom(room=room):
            return {"type": "current_room", "room": room}
        case Names(room=room, nicknames=nicknames, operators=operators, away=away):
            return {
                "type": "names",
                "room": room,
                "nicknames": nicknames,
                "operators": operators,
                "away": away,
            }
        case Away(nickname=nickname, text=text):
            return {"type": "is_away", "nickname": nickname, "text": text}
        case AwaySet(text=text):
            return {"type": "away_set", "text": text}
        case WhoIs(
            nickname=nickname,
            rooms=rooms,
            operator_of=operator_of,
            away=away,
            account=account,
            server_operator=server_operator,
        ):
            return {
                "type": "whois",
                "nickname": nickname,
                "rooms": rooms,
                "operator_of": operator_of,
                "away": away,
                "account": account,
                "server_operator": server_operator,
            }
        case RoomList(rooms=rooms):
            return {
                "type": "rooms",
                "rooms": [{"name": r.name, "members": r.members, "topic": r.topic} for r in rooms],
            }
        case TopicIs(room=room, topic=topic, by=by, at=at):
            return {"type": "topic_is", "room": room, "topic": topic, "by": by, "at": at}
    return None


class Reader(Protocol):
    """
    The connection a L{WebSocketChat} reads from, under the HTTP channel
    (L{twistedchat.web.BoundedInput}).
    """

    def pauseProducing(self) -> None:
        """Stop reading from the socket."""

    def resumeProducing(self) -> None:
        """Read from the socket again."""

    def abortConnection(self) -> None:
        """Close the connection at once, dropping what was not sent."""

    #: Whether the connection is closing.
    disconnecting: bool

    def message_ended(self) -> None:
        """A WebSocket message has arrived whole: count input afresh."""


@implementer(IConsumer)
class _TextMessages:
    """
    What a L{SendQueue} writes to: each write is one WebSocket text
    message. Producer registration goes to the HTTP request that was
    upgraded, whose channel is the TCP transport's producer and passes
    its pauses on (L{twisted.web.http.HTTPChannel.registerProducer}).
    """

    def __init__(self, transport: WebSocketTransport, request: Request, reader: Reader) -> None:
        self._transport = transport
        self._request = request
        self._reader = reader

    def write(self, data: bytes) -> None:
        """
        Send C{data} as one text message, unless the connection is closing:
        Twisted answers a client's close frame and closes at once, but says
        nothing until the connection is lost, and a message sent in between
        would be refused by C{wsproto}.
        """
        if not self._reader.disconnecting:
            self._transport.sendTextMessage(data.decode("utf-8"))

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._request.unregisterProducer()


@implementer(IFrontEnd)
class WebSocketChat:
    """
    One WebSocket connection: reads JSON messages, hands them to its
    L{ChatSession}, and sends what comes back as JSON (the session's
    L{IFrontEnd}). A L{twisted.web.websocket.WebSocketProtocol}.

    Output goes through a L{SendQueue}, as for telnet. Messages wait in a
    queue, and reading from the socket pauses, while the session's flood
    control says so (one message counts as one line), while this
    connection is over its byte budget (C{flood_bytes}), and while a
    command checks a password; no message is dropped or reordered.

    @ivar session: the user's session, once the connection was let in.
    """

    kind = "websocket"
    _log = Logger()

    def __init__(self, factory: ChatFactory, request: Request, reader: Reader) -> None:
        """
        @param factory: the shared chat state.
        @param request: the HTTP request that asked for the upgrade.
        @param reader: the connection under the HTTP channel.
        """
        self.factory = factory
        self._request = request
        self._reader = reader
        address = request.getClientAddress()
        self._host = peer_host(address)
        self._peer = describe_address(address)
        self._transport: WebSocketTransport | None = None
        self._output: SendQueue | None = None
        self._closed = False
        self._inbox: deque[str] = deque()
        self._gate: InputGate | None = None
        self._close_timer: IDelayedCall | None = None
        self._bad_messages = 0
        self._max_message = max_message(factory.max_line_length)
        self.session: ChatSession | None = None

    # WebSocketProtocol

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport

    def negotiationFinished(self) -> None:
        """
        The upgrade is done: let the connection in (or refuse it, as
        telnet connections are, with code 1013), greet it and start its
        session.
        """
        factory = self.factory
        assert self._transport is not None
        refusal = factory.admission(self._host)
        if refusal is not None:
            self._closed = True
            self._log.info("refused WebSocket {peer}: {reason}", peer=self._peer, reason=refusal)
            self._transport.sendTextMessage(render_json(Error(refusal)).decode())
            self._close(CLOSE_TRY_AGAIN)
            return
        self._log.info("WebSocket connection from {peer}", peer=self._peer)
        keep_alive(self._reader)  # type: ignore[arg-type]
        self._output = SendQueue(
            _TextMessages(self._transport, self._request, self._reader),
            factory.flusher,
            factory.max_sendq,
            self,
            timeout=factory.sendq_timeout,
        )
        session = self.session = ChatSession(factory, self, self._host, self._peer)
        self._gate = InputGate(
            factory.clock,
            self._reader,
            session.flood_wait,
            self._hold,
            factory.flood_bytes,
            factory.flood_byte_burst,
        )
        session.echo = True
        self._send(
            {
                "type": "hello",
                "protocol": PROTOCOL_VERSION,
                "server": factory.server_name,
                "version": __version__,
                "motd": factory.motd or "",
                "max_line_length": factory.max_line_length,
            }
        )
        session.open()
        if session.state is State.AWAITING_NICKNAME:
            self.reply(NicknameWanted())

    def textMessageReceived(self, message: str) -> None:
        if self._closed:
            return
        self._reader.message_ended()
        self._inbox.append(message)
        self._drain()

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        if self._closed:
            return
        self._reader.message_ended()
        self._bad("Binary messages are not understood: send JSON text messages.")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self._closing()
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        if self._output is None or self.session is None:
            return  # refused by admission(): the factory never knew it
        self._output.clear()
        self._log.info(
            "WebSocket connection from {peer} closed ({nickname})",
            peer=self._peer,
            nickname=self.session.nickname or "not registered",
        )
        self.session.connection_lost("connection lost")

    # IFrontEnd

    def deliver(self, event: Event) -> None:
        """
        Send C{event} as one JSON object; see L{render_json}.
        """
        if not self._closed:
            assert self._output is not None
            data = event.render(render_json)
            if data:
                self._output.write(data)

    def reply(self, event: Event) -> None:
        """
        Send C{event}, an answer to this user's command, as one JSON
        object.
        """
        self.deliver(event)

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """
        Send what this connection was told, then close it with C{code}, or
        abort it after L{CLOSE_TIMEOUT} seconds if that does not happen.
        """
        if self._closed:
            return
        self._closing()
        assert self._output is not None and self._transport is not None
        self._output.close()
        self._close(code)

    def _closing(self) -> None:
        """
        Read and handle nothing more.
        """
        self._closed = True
        self._inbox.clear()
        if self._gate is not None:
            self._gate.stop()

    def _close(self, code: int) -> None:
        """
        Send a close frame with C{code} and close the connection, or abort
        it after L{CLOSE_TIMEOUT} seconds.
        """
        assert self._transport is not None
        self._transport.loseConnection(code)
        self._close_timer = self.factory.clock.callLater(
            CLOSE_TIMEOUT, self._reader.abortConnection
        )

    # SendQ (see twistedchat.sendq.SendQueueOwner)

    def sendq_exceeded(self) -> None:
        """
        Cut off a client that does not read what it is sent, as telnet
        ones are (L{twistedchat.protocol.ChatProtocol.sendq_exceeded}).
        """
        if self._closed or self.session is None:
            return
        assert self._output is not None
        self._log.info(
            "SendQ exceeded for WebSocket {peer} ({nickname}): {waiting} bytes waiting",
            peer=self._peer,
            nickname=self.session.nickname or "not registered",
            waiting=self._output.waiting,
        )
        self._closing()
        self._output.clear()
        self.factory.clock.callLater(0, self._cut_off)

    def _cut_off(self) -> None:
        assert self.session is not None
        self.session.cut_off(SENDQ_EXCEEDED)
        self._reader.abortConnection()

    # Input

    def too_big(self, limit: int) -> None:
        """
        More than C{limit} bytes arrived without ending a message: say so
        and close with code 1009 (message too big).
        """
        if self._closed or self._output is None:
            return
        self._log.info(
            "WebSocket {peer} sent over {limit} bytes in one message", peer=self._peer, limit=limit
        )
        self.reply(Error(f"Message too big: at most {limit} bytes; closing."))
        self.close(CLOSE_TOO_BIG)

    def _drain(self) -> None:
        """
        Handle the messages waiting, in order, until there are none or the
        flood control holds input back (see L{InputGate}).
        """
        gate = self._gate
        assert gate is not None
        while self._inbox and not gate.holding and not self._closed:
            self._handle(self._inbox.popleft())
            if not self._closed:
                gate.line_handled()

    def _hold(self, holding: bool) -> None:
        """
        Handle the messages waiting once input is no longer held back
        (L{InputGate}'s C{hold}).
        """
        if not holding:
            self._drain()

    def bytes_received(self, count: int) -> None:
        """
        Charge C{count} bytes that arrived (frames of every kind, pings and
        closes included) to the byte budget, as telnet charges every byte
        (L{InputGate.bytes_received}).
        """
        if self._gate is not None and not self._closed:
            self._gate.bytes_received(count)

    def _handle(self, message: str) -> None:
        """
        Act on one message from the client.
        """
        if len(message) > self._max_message:
            self._bad(f"Message too long: at most {self._max_message} characters. It was ignored.")
            return
        try:
            value = json.loads(message)
        except (ValueError, RecursionError):  # deep nesting: RecursionError
            self._bad("Not JSON: each message must be one JSON object.")
            return
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            self._bad('Each message must be a JSON object with a "type", a string.')
            return
        handler = self._HANDLERS.get(value["type"])
        if handler is None:
            self._bad(f"Unknown message type {value['type']!r}.")
            return
        try:
            handler(self, value)
        except _MissingField as e:
            self._bad(str(e))
            return
        self._bad_messages = 0
        if self.session is not None and self.session.state is State.CHATTING:
            self.session.resetTimeout()  # any message is activity, as a line is

    def _bad(self, text: str) -> None:
        """
        Answer a message the server cannot act on with an error; close the
        connection (code 1008) after L{MAX_BAD_MESSAGES} in a row.
        """
        self._bad_messages += 1
        self.reply(Error(text))
        if self._bad_messages >= MAX_BAD_MESSAGES:
            self.reply(Error(f"{MAX_BAD_MESSAGES} bad messages in a row; closing."))
            self.close(CLOSE_POLICY)

    def _text(self, value: dict[str, Any], name: str, default: str | None = None) -> str:
        """
        Return the text field C{name} of C{value}, cleaned like a telnet
        line (L{clean_line}).

        @raise _MissingField: there is none (and no C{default}), or it is
            not a string.
        """
        field = value.get(name, default)
        if not isinstance(field, str):
            raise _MissingField(f"A {value['type']!r} message needs {name!r}, a string.")
        return clean_line(field.encode("utf-8", "surrogatepass"))

    def _line_fits(self, text: str) -> bool:
        """
        Return whether C{text} fits the line limit; say so if not.
        """
        limit = self.factory.max_line_length
        if len(text.encode("utf-8")) > limit:
            self.reply(Error(f"Line too long: at most {limit} bytes. It was not sent."))
            return False
        return True

    def _chatting(self) -> ChatSession | None:
        """
        Return the session if it is chatting; otherwise say that a
        nickname comes first.
        """
        session = self.session
        assert session is not None
        if session.state is State.CHATTING:
            return session
        self.reply(Error("Choose a nickname first."))
        return None

    def _wait(self, done: Deferred[None] | None) -> None:
        assert self._gate is not None
        self._gate.wait_for(done)

    # Messages from the client

    def _nickname_message(self, value: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        nickname = self._text(value, "nickname").strip()
        password = self._text(value, "password", "")
        if session.state is not State.AWAITING_NICKNAME:
            self.reply(Error("You have a nickname already; /nick NEWNICK changes it."))
            return
        try:
            done = session.choose_nickname(nickname, password)
        except (InvalidNickname, Refused) as e:
            self.reply(Error(str(e)))
            self.reply(NicknameWanted())
            return
        self._wait(done)

    def _password_message(self, value: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        password = self._text(value, "password")
        if session.state is not State.AWAITING_PASSWORD:
            self.reply(Error("No password was asked for."))
            return
        self._wait(session.give_password(password))

    def _line_message(self, value: dict[str, Any]) -> None:
        text = self._text(value, "text")
        session = self._chatting()
        if session is not None and self._line_fits(text):
            self._wait(session.line(text))

    def _switch_message(self, value: dict[str, Any]) -> None:
        room = self._text(value, "room")
        session = self._chatting()
        if session is not None:
            session.attempt(session.switch, room)

    def _history_message(self, value: dict[str, Any]) -> None:
        room = self._text(value, "room")
        before = None if value.get("before") is None else _positive(value, "before")
        count = _positive(value, "count", DEFAULT_PAGE)
        session = self._chatting()
        if session is None:
            return
        if before is None:
            session.attempt(session.history, count, room)
        else:
            self._wait(session.attempt(session.history_page, room, before, count))

    def _search_message(self, value: dict[str, Any]) -> None:
        text = self._text(value, "text")
        room = value.get("room")
        if room is not None:
            room = self._text(value, "room")
        session = self._chatting()
        if session is not None and self._line_fits(text):
            self._wait(session.attempt(session.search, text, room))

    _HANDLERS: dict[str, Callable[[WebSocketChat, dict[str, Any]], None]] = {
        "nickname": _nickname_message,
        "password": _password_message,
        "line": _line_message,
        "switch": _switch_message,
        "history": _history_message,
        "search": _search_message,
    }

    def _send(self, value: dict[str, Any]) -> None:
        if not self._closed:
            assert self._output is not None
            self._output.write(_json(value))


def _positive(value: dict[str, Any], name: str, default: int | None = None) -> int:
    """
    Return the field C{name} of C{value}, a positive integer.

    @raise _MissingField: there is none (and no C{default}), or it is not
        a positive integer.
    """
    number = value.get(name, default)
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise _MissingField(f"A {value['type']!r} message needs {name!r}, a positive integer.")
    return number


class _MissingField(ValueError):
    """
    A message lacks a field, or has one of the wrong type; C{str()} says
    which.
    """
