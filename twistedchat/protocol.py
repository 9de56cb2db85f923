"""
The telnet/line wire protocol: framing, decoding, per-connection state,
commands, and how events look on a terminal.

Each TCP connection is a L{ChatTelnetTransport}, Twisted's
L{twisted.conch.telnet.TelnetTransport}, which removes telnet negotiation
(RFC 854 IAC sequences) from the input, refuses every option, and hands the
remaining bytes to a L{ChatProtocol}. C{nc} users send no IAC sequences, so
the same protocol serves both.

What a user sees, by the first characters of each line::

    *** notice from the server       !!! error: your line was not sent
    <nick> chat line                 * nick action (/me)
    *nick* private message to you    -> *nick* your private message, sent
    - message of the day
"""

from __future__ import annotations

import math
import re
import socket
import time
from collections.abc import Callable
from enum import Enum, auto
from typing import TYPE_CHECKING, Any

from twisted.conch.telnet import (
    DO,
    DONT,
    IAC,
    WILL,
    WONT,
    TelnetProtocol,
    TelnetTransport,
)
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IHandshakeListener,
    INegotiated,
    IPushProducer,
    ISystemHandle,
    ITCPTransport,
    ITransport,
)
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from twistedchat import __version__
from twistedchat.accounts import Account, AccountError, IAccount
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
from twistedchat.factory import IParticipant, NicknameRegistered, NoSuchNickname
from twistedchat.history import Record, is_conversation
from twistedchat.nicknames import InvalidNickname, NicknameInUse, nickname_key
from twistedchat.sanitize import clean_line
from twistedchat.sendq import SendQueue
from twistedchat.throttles import FailureReport, TokenBucket

if TYPE_CHECKING:
    from twistedchat.factory import ChatFactory

NOTICE = "*** "
ERROR = "!!! "

HELP = """\
Commands (case-insensitive):
  /help              this list
  /who               who is online (also /names, /users)
  /msg NICK TEXT     a private message that only NICK sees
  /me TEXT           an action: others see "* yournick TEXT"
  /nick NEWNICK [PASSWORD]  change your nickname (a registered one needs its password)
  /register PASSWORD register your nickname: from then on it needs this password
  /identify PASSWORD prove you own your registered nickname
  /password OLD NEW  change your nickname's password
  /history [N]       the last N lines said here (default 20)
  /quit [REASON]     leave the chat (also /exit, .exit)
  //TEXT             send a line that starts with "/"
Any other line goes to everyone as <yournick> TEXT."""

PROMPT = "Choose a nickname (or send an empty line for a random one):"

#: Wrong passwords on one connection (at the nickname prompt, or with
#: /identify, /password or /nick NICK PASSWORD) before it is closed.
MAX_WRONG_PASSWORDS = 3
#: Seconds before a wrong password is answered, to slow down guessing.
WRONG_PASSWORD_DELAY = 1.0

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


def render_line(event: Event) -> bytes:
    """
    Format C{event} as one telnet line: UTF-8 text ending in CRLF.

    Pass this function to L{Event.render} so a broadcast is formatted and
    encoded once for all telnet recipients.
    """
    match event:
        case ChatLine(sender=sender, text=text):
            line = f"<{sender}> {text}"
        case Action(sender=sender, text=text):
            line = f"* {sender} {text}"
        case PrivateMessage(sender=sender, text=text):
            line = f"*{sender}* {text}"
        case Joined(nickname=nickname):
            line = f"{NOTICE}{nickname} has joined"
        case Left(nickname=nickname, reason=reason):
            line = f"{NOTICE}{nickname} has left ({reason})"
        case NicknameChanged(old=old, new=new):
            line = f"{NOTICE}{old} is now known as {new}"
        case Ghosted(nickname=nickname):
            line = (
                f"{NOTICE}Someone who gave the password of {nickname} has taken it over; goodbye."
            )
        case ServerShutdown():
            line = f"{NOTICE}server shutting down"
        case _:
            raise TypeError(f"no telnet form for {event!r}")
    return line.encode("utf-8") + b"\r\n"


def render_sent(recipient: str, text: str) -> bytes:
    """
    Format a private message as its sender sees it: C{-> *recipient* text}.
    """
    return f"-> *{recipient}* {text}\r\n".encode()


def render_history(record: Record, viewer: str | None = None) -> bytes:
    """
    Format a past event as one telnet line: its UTC time in brackets, then
    the line as it was shown live (a private message that C{viewer}, a
    nickname key, sent as its sender saw it). Each record is formatted
    once for every viewer who sees it alike.
    """
    event = record.event
    if isinstance(event, PrivateMessage) and viewer == nickname_key(event.sender):
        return _timestamp(record) + render_sent(event.recipient, event.text)
    return record.render(_render_past)


def _render_past(record: Record) -> bytes:
    return _timestamp(record) + record.event.render(render_line)


def _timestamp(record: Record) -> bytes:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.at))
    return f"[{when} UTC] ".encode()


def parse_command(text: str) -> tuple[str, str] | None:
    """
    Split a command line into its lower-case name and its argument.

    @param text: one input line, already cleaned.
    @return: C{(name, argument)} for C{/name argument} and for the classic
        C{.exit}; C{None} for a chat line, including C{//text}, which sends
        C{/text}.
    """
    if text.startswith("/") and not text.startswith("//"):
        name, _, argument = text[1:].partition(" ")
        return name.lower(), argument.strip()
    first, _, argument = text.partition(" ")
    if first.lower() == ".exit":
        return "exit", argument.strip()
    return None


def _unused_password(nickname: str) -> str:
    """
    Say that a password given with C{nickname}, which is not registered,
    was not used.
    """
    return (
        f"The nickname {nickname} is not registered, so the password was not used; "
        "/register PASSWORD registers it."
    )


def _seconds(wait: float) -> str:
    """
    Say C{wait} seconds, rounded up: C{1 second}, C{4 seconds}.
    """
    whole = math.ceil(wait)
    return "1 second" if whole == 1 else f"{whole} seconds"


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


# Shared by every connection that is not paused (each frozenset() call
# makes a new object).
_NOT_PAUSED: frozenset[str] = frozenset()


class State(Enum):
    """
    Where a connection is in its life.
    """

    AWAITING_NICKNAME = auto()
    AWAITING_PASSWORD = auto()
    CHATTING = auto()
    CLOSED = auto()


@implementer(IParticipant)
class ChatProtocol(LineReceiver, TelnetProtocol, TimeoutMixin):
    """
    One user's connection: reads lines, keeps the connection's state, turns
    lines into calls on the shared L{ChatFactory}, and writes what comes back.

    Input lines end in LF; L{TelnetTransport} has already turned telnet's
    CRLF into LF. C{MAX_LENGTH} (bytes) comes from the factory's
    C{max_line_length}.

    Output goes through a L{SendQueue}; a client that does not read what
    it is sent only fills its own SendQ, and is cut off when that passes
    C{max_sendq} bytes or stays congested for C{sendq_timeout} seconds.
    Nobody else waits for it. Reading input pauses while a client is over
    its flood limits (token buckets of C{flood_burst} lines refilled at
    C{flood_rate} lines per second, and of C{flood_byte_burst} bytes
    refilled at C{flood_bytes} bytes per second); the kernel's TCP buffers
    then hold the sender back, and no line is dropped or reordered.

    @ivar factory: the shared state, set by L{ChatTelnetTransport}.
    @ivar nickname: the nickname once registered, else C{None}.
    @ivar state: the connection's L{State}.
    """

    delimiter = b"\n"
    factory: ChatFactory
    _log = Logger()

    # Command name to method name.
    _COMMANDS = {
        "help": "_help",
        "who": "_who",
        "names": "_who",
        "users": "_who",
        "msg": "_msg",
        "me": "_me",
        "nick": "_nick",
        "history": "_history",
        "register": "_register_account",
        "identify": "_identify",
        "password": "_password",
        "quit": "_quit",
        "exit": "_quit",
    }

    def __init__(self) -> None:
        self.nickname: str | None = None
        self.state = State.AWAITING_NICKNAME
        self._peer = "?"
        self._output: SendQueue | None = None
        self._registration_timer: IDelayedCall | None = None
        self._sendq_timer: IDelayedCall | None = None
        self._flood_timer: IDelayedCall | None = None
        # Set while the rest of an over-long line is being thrown away.
        self._discarding = False
        # Input that followed an over-long line in the same chunk.
        self._after_long_line = b""
        # Why reading is paused: "flood", "bytes", "password" (empty: it
        # is not).
        self._paused_for = _NOT_PAUSED
        # Flood control by lines and by bytes; None where it is off.
        self._lines: TokenBucket | None = None
        self._bytes: TokenBucket | None = None
        self._bytes_timer: IDelayedCall | None = None
        self._close_timer: IDelayedCall | None = None
        # Lines ignored since the last nickname answer (see _answered).
        self._ignoring: int | None = None
        self._ignore_timer: IDelayedCall | None = None
        # The registered nickname whose password is awaited, and the
        # nickname key of the account this connection proved it owns.
        self._claim: str | None = None
        self._identified: str | None = None
        self._wrong_passwords = 0
        self._password_timer: IDelayedCall | None = None
        self._failure_report: FailureReport | None = None
        # The address group per-address limits count this connection in.
        self._group: str | None = None

    # Connection life

    def connectionMade(self) -> None:
        factory = self.factory
        address = self.transport.getPeer()
        self._peer = describe_address(address)
        host = peer_host(address)
        refusal = factory.admission(host)
        if refusal is not None:
            self.state = State.CLOSED
            self._log.info("refused {peer}: {reason}", peer=self._peer, reason=refusal)
            self.transport.write(f"{ERROR}{refusal}\r\n".encode())
            self.transport.loseConnection()
            self._close_timer = factory.clock.callLater(
                CLOSE_TIMEOUT, self.transport.abortConnection
            )
            return
        self._log.info("connection from {peer}", peer=self._peer)
        factory.connected(self, host)
        self._group = factory.group_of(host)
        self.MAX_LENGTH = factory.max_line_length
        now = factory.clock.seconds()
        if factory.flood_rate:
            self._lines = TokenBucket(factory.flood_rate, factory.flood_burst, now)
        if factory.flood_bytes:
            self._bytes = TokenBucket(factory.flood_bytes, factory.flood_byte_burst, now)
        self._output = SendQueue(
            self.transport,
            factory.flusher,
            factory.max_sendq,
            self,
            handshaking=self.transport.handshaking,
        )
        self._notice(f"This is {factory.server_name}, running twistedchat {__version__}.")
        if factory.motd:
            for line in factory.motd.splitlines():
                self._write(f"- {line}")
        if factory.random_nicknames:
            nickname = factory.free_random_nickname()
            self._notice(f"Your nickname is {nickname}; /nick changes it.")
            self._register(nickname)
        else:
            self._notice(PROMPT)
            self._registration_timer = factory.clock.callLater(
                factory.registration_timeout, self._registration_timed_out
            )

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._output is None:
            # Refused by admission(): the factory never knew it.
            if self._close_timer is not None and self._close_timer.active():
                self._close_timer.cancel()
            return
        self.state = State.CLOSED
        for timer in (
            self._registration_timer,
            self._sendq_timer,
            self._flood_timer,
            self._bytes_timer,
            self._password_timer,
            self._close_timer,
            self._ignore_timer,
        ):
            if timer is not None and timer.active():
                timer.cancel()
        self.setTimeout(None)
        self._output.clear()
        self._log.info(
            "connection from {peer} closed ({nickname})",
            peer=self._peer,
            nickname=self.nickname or "not registered",
        )
        self.factory.disconnected(self, "connection lost")

    def _registration_timed_out(self) -> None:
        seconds = f"{self.factory.registration_timeout:g}"
        self._error(f"No nickname chosen within {seconds} seconds; goodbye.")
        self._log.info("registration timeout for {peer}", peer=self._peer)
        self._close()

    def _close(self) -> None:
        """
        Close the connection once what it was told has been sent, or abort
        it after L{CLOSE_TIMEOUT} seconds if that does not happen (a peer
        that does not read, or a TLS handshake that never completes).
        """
        self.state = State.CLOSED
        assert self._output is not None
        self._output.close()
        self.transport.loseConnection()
        if self._close_timer is None:
            self._close_timer = self.factory.clock.callLater(
                CLOSE_TIMEOUT, self.transport.abortConnection
            )

    def timeoutConnection(self) -> None:
        """
        Disconnect a registered client that stayed silent for
        C{idle_timeout} seconds (L{TimeoutMixin}).
        """
        seconds = f"{self.factory.idle_timeout:g}"
        self._error(f"No input for {seconds} seconds; goodbye.")
        self.factory.leave(self, "idle timeout")
        self._close()

    @property
    def callLater(self) -> Callable[..., IDelayedCall]:
        """
        The factory's clock, for L{TimeoutMixin}.
        """
        return self.factory.clock.callLater

    # Output and its SendQ (see twistedchat.sendq.SendQueueOwner)

    def sendq_congested(self) -> None:
        if self.state is not State.CLOSED:
            self._sendq_timer = self.factory.clock.callLater(
                self.factory.sendq_timeout, self.sendq_exceeded
            )

    def sendq_drained(self) -> None:
        if self._sendq_timer is not None and self._sendq_timer.active():
            self._sendq_timer.cancel()
        self._sendq_timer = None

    def sendq_exceeded(self) -> None:
        """
        Cut off a client that does not read its output fast enough: throw
        away what waits for it, tell the others it left for "SendQ
        exceeded", and reset the connection. The others are told once the
        current broadcast is over (this may run in the middle of one), so
        that everyone sees events in the same order.
        """
        if self.state is State.CLOSED:
            return
        output = self._output
        assert output is not None
        self._log.info(
            "SendQ exceeded for {peer} ({nickname}): {waiting} bytes waiting"
            " ({queued} queued, up to {in_transport} in the transport's buffer)",
            peer=self._peer,
            nickname=self.nickname or "not registered",
            waiting=output.waiting,
            queued=output.queued,
            in_transport=output.in_transport,
        )
        self.state = State.CLOSED
        output.clear()
        self.factory.clock.callLater(0, self._cut_off)

    def _cut_off(self) -> None:
        self.factory.leave(self, "SendQ exceeded")
        self.transport.abortConnection()

    # IParticipant

    def deliver(self, event: Event) -> None:
        """
        Write C{event} as one line; see L{render_line}.
        """
        if self.state is not State.CLOSED:
            self._output.write(event.render(render_line))  # type: ignore[union-attr]

    def disconnect(self) -> None:
        """
        Close the connection after what was written has been sent.
        """
        if self.state is not State.CLOSED:
            self._close()

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
        if self.state is not State.CLOSED and self._output is not None:
            self._output.write(data)

    # Framing

    def dataReceived(self, data: bytes) -> None:
        """
        Split C{data} into lines like L{LineReceiver}, except that a line
        longer than C{MAX_LENGTH} bytes gets an error and is thrown away up
        to its end, and the connection stays usable.
        """
        if self._output is None or self.state is State.CLOSED:
            return  # refused, or closing: nothing more is read
        while True:
            if self._discarding:
                end = data.find(self.delimiter)
                if end == -1:
                    return
                self._discarding = False
                data = data[end + 1 :]
            LineReceiver.dataReceived(self, data)
            data, self._after_long_line = self._after_long_line, b""
            if not data:
                return

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Tell the user their line was too long and skip to its end.

        @param line: what L{LineReceiver} had buffered: the start of the long
            line, and everything after it if its end was already received.
        """
        if self.state is State.CLOSED:
            return
        self._error(f"Line too long: at most {self.MAX_LENGTH} bytes. It was not sent.")
        end = line.find(self.delimiter)
        if end == -1:
            self._discarding = True
        else:
            self._after_long_line = line[end + 1 :]

    def lineReceived(self, line: bytes) -> None:
        text = clean_line(line)
        if self._ignoring is not None:
            command = parse_command(text)
            if command is None or command[0] not in ("quit", "exit"):
                self._ignoring += 1
                return
        if self.state is State.CHATTING:
            self.resetTimeout()
            self._chat_line(text)
        elif self.state is State.AWAITING_NICKNAME:
            self._nickname_line(text)
        elif self.state is State.AWAITING_PASSWORD:
            self._password_line(text)
        if self.state is not State.CLOSED:
            self._throttle()

    # Flood control, in lines and in bytes

    def _throttle(self) -> None:
        """
        After each line: take a token from the flood bucket, and pause
        reading until the bucket holds one again.
        """
        if self._lines is None:
            return
        clock = self.factory.clock
        wait = self._lines.take(1, clock.seconds(), keep=1)
        if wait and "flood" not in self._paused_for:
            self._pause_input("flood")
            self._flood_timer = clock.callLater(wait, self._resume_input, "flood")

    def bytes_received(self, count: int) -> None:
        """
        Charge C{count} bytes that arrived, telnet negotiation included, to
        the byte bucket, and stop reading from the socket until it is no
        longer overdrawn. Bytes already received are still handled, so at
        most one read (Twisted reads 64 KiB at a time) goes beyond the
        budget: bytes without a newline, telnet negotiation storms and long
        lines cost the server a bounded share of its time.
        """
        if self._bytes is None or self.state is State.CLOSED:
            return
        clock = self.factory.clock
        wait = self._bytes.take(count, clock.seconds())
        if wait and "bytes" not in self._paused_for:
            self._pause_input("bytes")
            self._bytes_timer = clock.callLater(wait, self._resume_input, "bytes")

    def _pause_input(self, reason: str) -> None:
        """
        Stop reading from the socket for C{reason}; for any reason but
        "bytes", also stop handling lines already received.
        """
        if not self._paused_for:
            self.transport.pauseProducing()
        self._paused_for = self._paused_for | {reason}
        if reason != "bytes":
            self.paused = True

    def _resume_input(self, reason: str) -> None:
        self._paused_for = self._paused_for - {reason}
        if self.state is State.CLOSED:
            return
        if self._paused_for - {"bytes"}:
            return
        if self.paused:
            self.paused = False
            # Lines already received wait in LineReceiver's buffer; this
            # may pause reading again.
            self.dataReceived(b"")
        if not self._paused_for and self.state is not State.CLOSED:
            self.transport.resumeProducing()

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
                self._quit(argument)
            else:
                self._error("Choose a nickname first; /quit leaves.")
                self._notice(PROMPT)
                self._answered(REFUSAL_GRACE)
            return
        nickname, _, password = text.strip().partition(" ")
        password = password.strip()
        if not nickname:
            nickname = self.factory.free_random_nickname()
            self._notice(f"Your nickname is {nickname}; /nick changes it.")
        try:
            self._register(nickname, note=_unused_password(nickname) if password else "")
        except InvalidNickname as e:
            self._error(str(e))
            self._notice(PROMPT)
            self._answered(REFUSAL_GRACE)
            return
        except NicknameInUse:
            self._error(f"The nickname {nickname} is taken.")
            self._notice(PROMPT)
            self._answered(REFUSAL_GRACE)
            return
        except NicknameRegistered:
            self._claim = nickname
            self.state = State.AWAITING_PASSWORD
            if password:
                self._password_line(password)
            else:
                self._notice(self._password_prompt())
            return
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
            self._discarding = True
        if ignored and self.state is not State.CLOSED:
            lines_ignored = "1 line" if ignored == 1 else f"{ignored} lines"
            self._error(
                f"Ignored {lines_ignored} sent before the answer above; wait for an answer "
                "before sending more."
            )

    def _password_prompt(self) -> str:
        return (
            f"The nickname {self._claim} is registered. Send its password, "
            "or an empty line to choose another nickname:"
        )

    def _password_line(self, password: str) -> None:
        nickname = self._claim
        assert nickname is not None
        command = parse_command(password)
        if command is not None and command[0] in ("quit", "exit"):
            self._quit(command[1])
            return
        if not password:
            self._claim = None
            self.state = State.AWAITING_NICKNAME
            self._notice(PROMPT)
            self._answered()
            return
        self._pause_input("password")
        self._check_password(nickname, password).addCallback(self._claim_checked, nickname)

    def _claim_checked(self, correct: bool | None, nickname: str) -> None:
        if self.state is State.CLOSED:
            return
        if correct is None:
            self._notice(self._password_prompt())
            self._resume_input("password")
            return
        if correct:
            self._claim = None
            self.state = State.AWAITING_NICKNAME
            try:
                self._register(nickname, identified=True)
            except (InvalidNickname, NicknameInUse):
                self._error(f"The nickname {nickname} is taken.")
                self._notice(PROMPT)
                self._answered(REFUSAL_GRACE)
            self._resume_input("password")
            return
        if self._closed_for_wrong_passwords():
            return
        self._error("Wrong password.")
        self._notice(self._password_prompt())
        self._resume_input("password")

    def _closed_for_wrong_passwords(self) -> bool:
        """
        After the L{MAX_WRONG_PASSWORDS}th wrong password on this
        connection, say why, leave the chat and close; return whether it
        did. A right password does not reset the count, so nobody can
        guess at one account while proving they own another.
        """
        if self._wrong_passwords < MAX_WRONG_PASSWORDS:
            return False
        self._error(f"Wrong password {MAX_WRONG_PASSWORDS} times; goodbye.")
        self.factory.leave(self, "too many wrong passwords")
        self._close()
        return True

    def _check_password(self, nickname: str, password: str) -> Deferred[bool | None]:
        """
        Check C{password} for the registered nickname C{nickname} through
        the portal, unless too many wrong passwords were given for that
        account or from this address group lately (the factory's
        C{password_failures}): then say how long to wait.

        @return: fires with C{True} at once if it is right; with C{False}
            after L{WRONG_PASSWORD_DELAY} seconds if not, to slow guessing;
            with C{None} if it was not checked (the user was told why).
        """
        factory = self.factory
        portal = factory.portal
        assert portal is not None
        key = nickname_key(nickname)
        failures = factory.password_failures
        wait = failures.begin(key, self._group)
        if wait:
            self._log.info(
                "password for {nickname} from {peer} not checked: wait {wait:.0f} s",
                nickname=nickname,
                peer=self._peer,
                wait=wait,
            )
            self._error(
                f"Too many wrong passwords for {nickname} or from your address lately; "
                f"try again in {_seconds(wait)}."
            )
            return succeed(None)
        credentials = UsernamePassword(nickname.encode("utf-8"), password.encode("utf-8"))
        result: Deferred[bool | None] = Deferred()

        def correct(avatar: tuple[Any, Account, Callable[[], None]]) -> None:
            self._identified = avatar[1].nickname_key
            self._log.info("{peer} identified as {nickname}", peer=self._peer, nickname=nickname)
            # Shown once signed in (see _report_failures).
            self._failure_report = failures.succeeded(key, self._group)
            result.callback(True)

        def wrong(failure: Failure) -> None:
            if not failure.check(UnauthorizedLogin):
                self._log.failure("checking a password failed", failure)
            failures.failed(key, self._group, self._peer)
            self._wrong_passwords += 1
            self._log.info(
                "wrong password for {nickname} from {peer}", nickname=nickname, peer=self._peer
            )
            self._password_timer = factory.clock.callLater(
                WRONG_PASSWORD_DELAY, result.callback, False
            )

        portal.login(credentials, None, IAccount).addCallbacks(correct, wrong)
        return result

    def _report_failures(self) -> None:
        """
        Tell an account's owner, once they proved it is theirs, about the
        wrong passwords given for it since they last did.
        """
        report, self._failure_report = self._failure_report, None
        if report is None or self.state is State.CLOSED:
            return
        times = (
            "1 wrong password was"
            if report.failures == 1
            else (f"{report.failures} wrong passwords were")
        )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(report.last_at))
        self._notice(
            f"{times} given for your nickname since you last signed in; "
            f"the last from {report.last_peer} at {when} UTC."
        )

    def _register(self, nickname: str, identified: bool = False, note: str = "") -> None:
        """
        Join the chat as C{nickname}: the welcome, then C{note} if any, the
        failed-password report, and the replay.

        @raise twistedchat.nicknames.InvalidNickname: see
            L{ChatFactory.register}, which also raises
            L{twistedchat.nicknames.NicknameInUse} and L{NicknameRegistered}.
        """
        history = self.factory.history
        # Taken before joining, so the replay ends where live traffic starts.
        past = self._recent_history(self.factory.history_on_join) if history is not None else []
        self.factory.register(self, nickname, identified)
        self.state = State.CHATTING
        self._log.info("{peer} registered as {nickname}", peer=self._peer, nickname=nickname)
        if self._registration_timer is not None:
            self._registration_timer.cancel()
            self._registration_timer = None
        if self.factory.idle_timeout:
            self.setTimeout(self.factory.idle_timeout)
        self._notice(f"Welcome, {nickname}! {self._online()}. Type /help for the commands.")
        if note:
            self._notice(note)
        self._report_failures()
        self._replay(past)

    def _replay(self, records: list[Record]) -> None:
        """
        Show past events, marked as history.
        """
        if not records:
            return
        assert self._output is not None
        said = sum(1 for record in records if is_conversation(record.event))
        if said:
            lines = "line" if said == 1 else f"{said} lines"
            self._notice(f"The last {lines} said here:")
        else:
            self._notice("Nothing has been said here lately; who came and went:")
        for record in records:
            self._output.write(render_history(record, self._identified))
        self._notice("End of history.")

    # Chatting

    def _chat_line(self, text: str) -> None:
        if not text.strip():
            return
        command = parse_command(text)
        if command is None:
            self.factory.say(self, text[1:] if text.startswith("//") else text)
            return
        name, argument = command
        method = self._COMMANDS.get(name)
        if method is None:
            self._error(f"Unknown command /{name}. Type /help for the commands.")
        else:
            getattr(self, method)(argument)

    def _help(self, argument: str) -> None:
        for line in HELP.splitlines():
            self._notice(line)

    def _who(self, argument: str) -> None:
        self._notice(self._online())

    def _online(self) -> str:
        """
        Say who is online: C{2 users online: alice, bob}.
        """
        online = self.factory.nicknames()
        people = "user" if len(online) == 1 else "users"
        return f"{len(online)} {people} online: {', '.join(online)}"

    def _msg(self, argument: str) -> None:
        recipient, _, text = argument.partition(" ")
        text = text.strip()
        if not recipient or not text:
            self._error("Usage: /msg NICK TEXT")
            return
        try:
            recipient = self.factory.private_message(self, recipient, text)
        except NoSuchNickname:
            self._error(f"No such nickname: {recipient}. /who lists who is online.")
        else:
            assert self._output is not None
            self._output.write(render_sent(recipient, text))

    def _history(self, argument: str) -> None:
        history = self.factory.history
        if history is None:
            self._error("This server keeps no history.")
            return
        # Only ASCII digits: str.isdigit() also accepts "²", which int()
        # refuses.
        if argument and not (argument.isascii() and argument.isdigit() and int(argument)):
            self._error(f"Usage: /history [N], N from 1 to {history.cap}")
            return
        records = self._recent_history(min(int(argument or 20), history.cap))
        if not records:
            self._notice("Nothing has been said here yet.")
        self._replay(records)

    def _recent_history(self, count: int) -> list[Record]:
        """
        Return the last C{count} events of the history this connection may
        see: private messages only of the account it proved it owns, and
        only since that account was registered.
        """
        assert self.factory.history is not None
        accounts = self.factory.accounts
        since = None
        if self._identified is not None and accounts is not None:
            since = accounts.registered_at(self._identified)
        if since is None:
            return self.factory.history.recent(count)
        return self.factory.history.recent(count, self._identified, since)

    def _me(self, argument: str) -> None:
        if not argument:
            self._error("Usage: /me TEXT")
            return
        self.factory.act(self, argument)

    def _nick(self, argument: str) -> None:
        new, _, password = argument.partition(" ")
        if not new:
            self._error("Usage: /nick NEWNICK [PASSWORD]")
            return
        try:
            self._rename(new, nickname_key(new) == self._identified)
            if password.strip() and self.nickname == new:
                self._notice(_unused_password(new))
        except NicknameRegistered:
            if not password.strip():
                self._error(f"The nickname {new} is registered; /nick {new} PASSWORD takes it.")
                return
            self._pause_input("password")
            self._check_password(new, password.strip()).addCallback(self._nick_checked, new)

    def _nick_checked(self, correct: bool | None, new: str) -> None:
        if self.state is State.CLOSED:
            return
        if correct is None:
            pass  # not checked; the user was told why
        elif correct:
            try:
                self._rename(new, True)
            except NicknameRegistered:
                pass  # cannot happen once identified
            self._report_failures()
        elif self._closed_for_wrong_passwords():
            return
        else:
            self._error(f"Wrong password for {new}.")
        self._resume_input("password")

    def _rename(self, new: str, identified: bool) -> None:
        """
        Rename to C{new} and say how it went.

        @raise NicknameRegistered: C{new} needs its password.
        """
        old = self.nickname
        try:
            self.factory.rename(self, new, identified)
        except InvalidNickname as e:
            self._error(str(e))
        except NicknameInUse:
            self._error(f"The nickname {new} is taken.")
        else:
            self._notice(f"You are now known as {self.nickname} (was {old}).")

    # Accounts

    def _accounts(self, usage: str, argument: str, words: int) -> list[str] | None:
        """
        Return the C{words} words of C{argument}, or say what is wrong and
        return C{None} (no accounts here, or the wrong number of words).
        """
        if self.factory.accounts is None:
            self._error("This server has no accounts.")
            return None
        parts = argument.split()
        if len(parts) != words:
            self._error(f"Usage: {usage}")
            return None
        return parts

    def _register_account(self, argument: str) -> None:
        parts = self._accounts("/register PASSWORD", argument, 1)
        if parts is None:
            return
        accounts, nickname = self.factory.accounts, self.nickname
        assert accounts is not None and nickname is not None
        registrations = self.factory.registrations
        wait = registrations.allow(self._group)
        if wait is not None:
            self._error(
                f"Too many nicknames registered from your address lately; "
                f"try again in {math.ceil(wait / 60)} minutes."
            )
            return
        self._pause_input("password")

        def registered(_: None) -> None:
            self._identified = nickname_key(nickname)
            self._log.info("{nickname} registered an account", nickname=nickname)
            self._notice(
                f"The nickname {nickname} is now registered to you; "
                "from now on it needs this password."
            )

        def refused(failure: Failure) -> None:
            registrations.refund(self._group)
            self._account_refused(failure)

        d = Deferred.fromCoroutine(accounts.register(nickname, parts[0]))
        d.addCallbacks(registered, refused)
        d.addBoth(lambda _: self._resume_input("password"))

    def _account_refused(self, failure: Failure) -> None:
        if failure.check(AccountError):
            self._error(str(failure.value))
        else:
            self._log.failure("an account change failed", failure)
            self._error("That did not work; try again later.")

    def _identify(self, argument: str) -> None:
        parts = self._accounts("/identify PASSWORD", argument, 1)
        if parts is None:
            return
        nickname = self.nickname
        assert nickname is not None
        if nickname_key(nickname) == self._identified:
            self._notice(f"You are identified as {nickname} already.")
            return
        if not self.factory.accounts.is_registered(nickname):  # type: ignore[union-attr]
            self._error(f"The nickname {nickname} is not registered; /register PASSWORD does that.")
            return
        self._pause_input("password")

        def checked(correct: bool | None) -> None:
            if self.state is State.CLOSED or self._closed_for_wrong_passwords():
                return
            if correct:
                self._notice(f"You are identified as {nickname}.")
                self._report_failures()
            elif correct is not None:
                self._error("Wrong password.")
            self._resume_input("password")

        self._check_password(nickname, parts[0]).addCallback(checked)

    def _password(self, argument: str) -> None:
        parts = self._accounts("/password OLD NEW", argument, 2)
        if parts is None:
            return
        accounts, nickname = self.factory.accounts, self.nickname
        assert accounts is not None and nickname is not None
        if not accounts.is_registered(nickname):
            self._error(f"The nickname {nickname} is not registered; /register PASSWORD does that.")
            return
        old, new = parts
        self._pause_input("password")

        async def change() -> None:
            correct = await self._check_password(nickname, old)
            if self.state is State.CLOSED or self._closed_for_wrong_passwords():
                return
            if correct is None:
                return
            if not correct:
                self._error("Wrong password.")
                return
            await accounts.change_password(nickname, new)
            self._log.info("{nickname} changed their password", nickname=nickname)
            self._notice("Your password has been changed.")
            self._report_failures()

        d = Deferred.fromCoroutine(change())
        d.addErrback(self._account_refused)
        d.addBoth(lambda _: self._resume_input("password"))

    def _quit(self, argument: str) -> None:
        reason = argument.strip() or "quit"
        self.factory.leave(self, reason)
        self._notice("Goodbye.")
        self._close()

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


def _tune_keepalive(transport: ITransport) -> None:
    """
    Set TCP keepalive's timing (L{KEEPALIVE_IDLE}, L{KEEPALIVE_INTERVAL},
    L{KEEPALIVE_COUNT}) and L{USER_TIMEOUT} on the socket under
    C{transport}, a TCP transport or a TLS one wrapping it, where the
    platform has these options (Linux: tcp(7)), so that a vanished peer is
    noticed within two minutes whether or not it was sent anything.
    """
    while ISystemHandle.providedBy(transport):
        handle = transport.getHandle()
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
        transport = getattr(transport, "transport", None)


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
        if ITCPTransport.providedBy(transport):
            transport.setTcpKeepAlive(True)
            _tune_keepalive(transport)
        TelnetTransport.makeConnection(self, transport)

    # The protocol inside pauses reading, registers its SendQ and resets
    # the connection through these.

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def abortConnection(self) -> None:
        self.transport.abortConnection()
