"""
One user's chat session, whatever the wire: registration, the nickname and
the account it proved it owns, rooms, commands, flood control by lines,
timers, and which history it may see.

Each front end (telnet today; WebSocket and IRC next) makes a
L{ChatSession} per connection and turns what it reads into calls on it:
L{ChatSession.choose_nickname}, L{ChatSession.give_password}, and, once
chatting, L{ChatSession.say}, L{ChatSession.join} and the other command
methods (L{ChatSession.history_page} and L{ChatSession.search} for a front
end that scrolls back and searches), or L{ChatSession.line} for a line
typed by a person (a chat line or a C{/command}, the same for every front
end). The session talks back through the small L{IFrontEnd} interface:
C{deliver} for events many participants see alike (the broadcast hot
path, one call per recipient), C{reply} for answers to this user only
(L{twistedchat.events.Notice}, L{twistedchat.events.Error},
L{twistedchat.events.Welcome} and the other replies), and C{close}.

A command method raises when it is refused (L{Refused}, and the nickname,
room and account errors it names); L{ChatSession.line} turns those into an
L{twistedchat.events.Error} reply. Commands that check a password return a
L{Deferred} that fires once they are done: the front end reads no more
lines until then. So do those that read the history from the database
(a page, a search).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import Enum, auto
from typing import TYPE_CHECKING, Any, Literal

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

from twistedchat.accounts import Account, AccountError, Accounts, IAccount
from twistedchat.events import (
    Away,
    AwaySet,
    CurrentRoom,
    Error,
    Event,
    HistoryReplay,
    Names,
    NicknameWanted,
    Notice,
    PasswordWanted,
    PrivateMessageSent,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomSummary,
    SearchResults,
    TopicIs,
    Welcome,
    WhoIs,
)
from twistedchat.factory import IParticipant, NicknameRegistered, NoSuchNickname
from twistedchat.history import History, Record
from twistedchat.nicknames import InvalidNickname, NicknameInUse, nickname_key
from twistedchat.rooms import Room, RoomError, room_key
from twistedchat.throttles import FailureReport, TokenBucket

if TYPE_CHECKING:
    from twistedchat.factory import ChatFactory

#: Wrong passwords on one connection (when choosing a nickname, or with
#: /identify, /password or /nick NICK PASSWORD) before it is closed.
MAX_WRONG_PASSWORDS = 3
#: Seconds before a wrong password is answered, to slow down guessing.
WRONG_PASSWORD_DELAY = 1.0
#: Lines C{/history} shows when not told how many.
DEFAULT_HISTORY = 20
#: The most matches a search shows, newest first.
SEARCH_RESULTS = 20

HELP = """\
Commands (case-insensitive):
  /help              this list
  /join #ROOM        join a room (creating it makes you its operator); lines go there
  /part [#ROOM] [REASON]  leave a room (default: the current one)
  /switch #ROOM      send your lines to another room you are in
  /rooms             every room, its size and topic (also /list)
  /names [#ROOM]     who is in a room (also /who, /users)
  /topic [#ROOM] [TEXT]  show or set a room's topic
  /msg NICK TEXT     a private message that only NICK sees
  /msg #ROOM TEXT    say something in a room you are in without switching
  /me TEXT           an action: others see "* yournick TEXT"
  /away [TEXT]       say you are away (private messages are answered with TEXT); alone: back
  /whois NICK        which rooms NICK is in, and whether away or identified
  /invite NICK [#ROOM]  ask NICK to join a room you are in (default: the current one)
  /nick NEWNICK [PASSWORD]  change your nickname (a registered one needs its password)
  /register PASSWORD register your nickname: from then on it needs this password
  /identify PASSWORD prove you own your registered nickname
  /password OLD NEW  change your nickname's password
  /history [#ROOM] [N]  the last N lines said in a room (default 20)
  /search [#ROOM] TEXT  find the lines with every word of TEXT, and your private messages
  /quit [REASON]     leave the chat (also /exit, .exit)
  //TEXT             send a line that starts with "/"
Room operators:
  /kick NICK [REASON], /ban NICK [REASON], /unban NICK, /op NICK, /deop NICK
  /mode #ROOM +t|-t  only operators may set the topic (+t), or anyone (-t)
  (each acts on the current room; put #ROOM first for another one)
Server operators: /kill NICK [REASON]
Any other line goes to your current room as <yournick> TEXT."""


#: Why a connection that does not read its output is cut off.
SENDQ_EXCEEDED = "SendQ exceeded"


class Refused(ValueError):
    """
    A command was refused: its arguments are wrong, or it cannot be done
    now. C{str()} is a sentence saying why, fit to show the user.
    """


class NicknameHeld(Refused):
    """
    The nickname is in use, and the user asked not to take it over (see
    L{ChatSession.choose_nickname}).
    """


class State(Enum):
    """
    Where a session is in its life: C{AWAITING_NICKNAME} until a nickname
    is taken (or C{AWAITING_PASSWORD} while a registered one waits for its
    password), then C{CHATTING}, and C{CLOSED} once it leaves.

    A plain attribute rather than an C{automat} machine: front ends read it
    to decide what a line is (a nickname, a password, a chat line), and
    C{automat} keeps its state private by design; four states with their
    transitions in L{ChatSession}'s few methods read as clearly. The
    broadcast path does not look at it (front ends check their own
    "closed" flag).
    """

    AWAITING_NICKNAME = auto()
    AWAITING_PASSWORD = auto()
    CHATTING = auto()
    CLOSED = auto()


class IFrontEnd(Interface):
    """
    The connection a L{ChatSession} talks back to (Twisted Words' "mind").
    """

    kind = Attribute("The front end's name for metrics: C{telnet}, C{websocket} or C{irc}.")

    def deliver(event: Event) -> None:
        """
        Show C{event}, which other participants may see too. The shared
        state calls this once per recipient; it must be cheap and must not
        raise.
        """

    def reply(event: Event) -> None:
        """
        Show C{event}, an answer meant for this user only.
        """

    def close() -> None:
        """
        Close the connection once what was delivered and replied so far
        has been sent.
        """


def parse_command(text: str) -> tuple[str, str] | None:
    """
    Split a line a person typed into its lower-case command name and its
    argument.

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


def unused_password(nickname: str) -> str:
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


def _room_first(argument: str) -> tuple[str | None, str]:
    """
    Split C{argument} into a leading room name (a word starting with C{#})
    and the rest.
    """
    if argument.startswith("#"):
        room, _, rest = argument.partition(" ")
        return room, rest.strip()
    return None, argument


@implementer(IParticipant)
class ChatSession(TimeoutMixin):
    """
    One user's chat-level state and commands, for any front end.

    @ivar nickname: the nickname once registered, else C{None} (set by the
        factory).
    @ivar account: the L{IAccount} avatar the portal returned when the user
        gave a right password, else C{None}; set only from the portal's
        answer.
    @ivar rooms: the rooms the user is in, by room key (kept by the
        factory).
    @ivar state: the session's L{State}.
    @ivar peer: the connection's address as a person writes it, for logs.
    @ivar group: the address group per-address limits count it in.
    @ivar away: what the user said when going away (L{set_away}), or
        C{""} if not away.
    @ivar echo: whether the user is delivered their own chat lines, actions
        and private messages, like everyone else (with their id and time),
        instead of the reply L{twistedchat.events.PrivateMessageSent} for
        a private message; a front end sets it. C{False}: telnet shows
        what its user typed itself.
    """

    _log = Logger()

    def __init__(
        self, factory: ChatFactory, front_end: IFrontEnd, host: str | None, peer: str
    ) -> None:
        self.factory = factory
        self.front_end = front_end
        # The broadcast hot path: the factory calls the front end directly.
        self.deliver = front_end.deliver
        self.nickname: str | None = None
        self.account: IAccount | None = None
        self.rooms: dict[str, Room] = {}
        self.state = State.AWAITING_NICKNAME
        self.peer = peer
        self.host = host
        self.echo: bool = False
        self.away = ""
        self.group = factory.group_of(host)
        self._current: Room | None = None
        self._claim: str | None = None
        self._wrong_passwords = 0
        self._failure_report: FailureReport | None = None
        self._registration_timer: IDelayedCall | None = None
        self._password_timer: IDelayedCall | None = None
        self._lines: TokenBucket | None = None
        if factory.flood_rate:
            self._lines = TokenBucket(
                factory.flood_rate, factory.flood_burst, factory.clock.seconds()
            )

    # Life

    def open(self, nickname_follows: bool = False) -> None:
        """
        Start the session of a connection that L{ChatFactory.admission}
        let in: count it, and either give it a random nickname at once
        (C{random_nicknames}) or start the registration timer.

        @param nickname_follows: the client always sends a nickname (IRC's
            NICK), so it gets no random one.
        """
        factory = self.factory
        factory.connected(self, self.host)
        if factory.random_nicknames and not nickname_follows:
            self.choose_nickname("")
        else:
            self._registration_timer = factory.clock.callLater(
                factory.registration_timeout, self._registration_timed_out
            )

    def disconnect(self) -> None:
        """
        Close the connection once what it was told has been sent (the
        factory calls this: ghosted, killed, server shutdown).
        """
        if self.state is not State.CLOSED:
            self._close()

    def connection_lost(self, reason: str = "connection lost") -> None:
        """
        The connection is gone: stop the timers, leave the chat for
        C{reason} and be forgotten.
        """
        self.state = State.CLOSED
        for timer in (self._registration_timer, self._password_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.setTimeout(None)
        self.factory.disconnected(self, reason)

    def cut_off(self, reason: str) -> None:
        """
        Leave the chat at once for C{reason} (the front end is resetting
        the connection: L{SENDQ_EXCEEDED}, or an IRC ping timeout).
        """
        if reason == SENDQ_EXCEEDED:
            self.factory.counts.sendq_cutoffs += 1
        self.state = State.CLOSED
        self.factory.leave(self, reason)

    def _close(self) -> None:
        self.state = State.CLOSED
        self.setTimeout(None)
        self.front_end.close()

    def _registration_timed_out(self) -> None:
        self.factory.counts.registration_timeouts += 1
        seconds = f"{self.factory.registration_timeout:g}"
        self._error(f"No nickname chosen within {seconds} seconds; goodbye.")
        self._log.info("registration timeout for {peer}", peer=self.peer)
        self._close()

    def timeoutConnection(self) -> None:
        """
        Disconnect a registered user who sent nothing for C{idle_timeout}
        seconds (L{TimeoutMixin}).
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

    def flood_wait(self) -> float:
        """
        Count one line against flood control.

        @return: seconds the front end must wait before it hands over the
            next line; C{0} for none.
        """
        counts = self.factory.counts
        counts.lines_received += 1
        if self._lines is None:
            return 0.0
        wait = self._lines.take(1, self.factory.clock.seconds(), keep=1)
        if wait:
            counts.flood_delays += 1
        return wait

    # Replies

    def _notice(self, text: str) -> None:
        self.front_end.reply(Notice(text))

    def notify(self, text: str) -> None:
        """
        Tell this user C{text}, from the server (see L{IParticipant.notify}).
        """
        self._notice(text)

    def _error(self, text: str) -> None:
        self.front_end.reply(Error(text))

    # Registration

    def choose_nickname(
        self, nickname: str, password: str = "", take_over: bool = True
    ) -> Deferred[None] | None:
        """
        Join the chat as C{nickname}, or as a random nickname if it is
        C{""}. If C{nickname} is registered, its C{password} is checked
        first; without one, the session asks for it
        (L{twistedchat.events.PasswordWanted}) and waits for
        L{give_password}. The right password takes the nickname over from
        a connection holding it, unless C{take_over} is false: clients
        that reconnect by themselves (IRC) would otherwise take it from
        each other, one account's two clients at every reconnect.

        @return: C{None} when done at once, or a L{Deferred} that fires
            once C{password} was checked and answered.
        @raise twistedchat.nicknames.InvalidNickname: C{nickname} is no
            nickname, or is reserved.
        @raise Refused: it is taken.
        @raise NicknameHeld: it is in use and C{take_over} is false.
        """
        if not take_over and nickname and self.factory.online(nickname) is not None:
            raise NicknameHeld(f"The nickname {nickname} is in use.")
        if not nickname:
            nickname = self.factory.free_random_nickname()
            self._notice(f"Your nickname is {nickname}; /nick changes it.")
        try:
            self._register(nickname, note=unused_password(nickname) if password else "")
        except NicknameInUse as e:
            raise Refused(e.sentence(nickname)) from None
        except NicknameRegistered:
            self._claim = nickname
            self.state = State.AWAITING_PASSWORD
            if password:
                return self.give_password(password)
            self.front_end.reply(PasswordWanted(nickname))
        return None

    def give_password(self, password: str) -> Deferred[None]:
        """
        Answer L{twistedchat.events.PasswordWanted}: the password of the
        registered nickname asked for, or C{""} to choose another nickname.

        @return: fires once the password was checked and answered: the
            user joined, or was told it was wrong and asked again, or was
            disconnected after L{MAX_WRONG_PASSWORDS}.
        """
        nickname = self._claim
        assert nickname is not None
        if not password:
            self._claim = None
            self.state = State.AWAITING_NICKNAME
            self.front_end.reply(NicknameWanted())
            return succeed(None)
        return self._check_password(nickname, password).addCallback(self._claim_checked, nickname)

    def authenticate(self, nickname: str, password: str) -> Deferred[bool]:
        """
        Prove, before choosing a nickname, that the user owns the account
        of the registered C{nickname} (what IRCv3 SASL PLAIN does), with
        every guard a password has: a delay after a wrong one, throttling
        per account and address, and the connection closed after
        L{MAX_WRONG_PASSWORDS}. Once proved, L{account} is set, and
        L{choose_nickname} of C{nickname} needs no password and takes it
        over from a connection holding it.

        @return: fires with C{True} once the account is proved; with
            C{False} if the password is wrong or C{nickname} not
            registered (after L{WRONG_PASSWORD_DELAY} seconds), or if it
            was not checked (the user was told why with an
            L{twistedchat.events.Error}), or if the connection was closed.
        @raise Refused: the server keeps no accounts.
        """
        self._registered_accounts()

        def checked(account: IAccount | None | Literal[False]) -> bool:
            if account is False:
                self._closed_for_wrong_passwords()
            return self.state is not State.CLOSED and bool(account)

        return self._check_password(nickname, password).addCallback(checked)

    def _claim_checked(self, account: IAccount | None | Literal[False], nickname: str) -> None:
        if self.state is State.CLOSED:
            return
        if account is None:
            self.front_end.reply(PasswordWanted(nickname))
            return
        if account is False:
            if not self._closed_for_wrong_passwords():
                self._error("Wrong password.")
                self.front_end.reply(PasswordWanted(nickname))
            return
        self._claim = None
        self.state = State.AWAITING_NICKNAME
        try:
            self._register(nickname, account=account)
        except (InvalidNickname, NicknameInUse, NicknameRegistered):
            self._error(f"The nickname {nickname} is taken.")
            self.front_end.reply(NicknameWanted())

    def _register(self, nickname: str, account: IAccount | None = None, note: str = "") -> None:
        """
        Join the chat as C{nickname}: the welcome, then C{note} if any, the
        failed-password report, and the default room's replay.

        @raise twistedchat.nicknames.InvalidNickname: see
            L{ChatFactory.register}, which also raises
            L{twistedchat.nicknames.NicknameInUse} and L{NicknameRegistered}.
        """
        factory = self.factory
        if account is None and self.account is not None:
            account = self.account
        default = factory.default_room
        # Taken before joining, so the replay ends where live traffic starts.
        past = self._recent(factory.history_on_join, default.key, private=True)
        room = factory.register(self, nickname, account)
        self.state = State.CHATTING
        self._log.info("{peer} registered as {nickname}", peer=self.peer, nickname=nickname)
        if self._registration_timer is not None:
            self._registration_timer.cancel()
            self._registration_timer = None
        if factory.idle_timeout:
            self.setTimeout(factory.idle_timeout)
        self.front_end.reply(
            Welcome(
                nickname,
                factory.online_summary(),
                None if room is None else self._joined(room, already=False),
            )
        )
        if note:
            self._notice(note)
        self._report_failures()
        if room is None:
            self._error(f"You are banned from {default.name}; /join #ROOM joins another room.")
            return
        self._current = room
        self._replay(room.name, past, asked=False)

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

    def _check_password(
        self, nickname: str, password: str
    ) -> Deferred[IAccount | None | Literal[False]]:
        """
        Check C{password} for the registered nickname C{nickname} through
        the portal, unless too many wrong passwords were given for that
        account or from this address group lately (the factory's
        C{password_failures}): then say how long to wait.

        @return: fires with the account (the portal's avatar) at once if
            the password is right; with C{False} after
            L{WRONG_PASSWORD_DELAY} seconds if not, to slow guessing; with
            C{None} if it was not checked (the user was told why).
        """
        factory = self.factory
        portal = factory.portal
        assert portal is not None
        key = nickname_key(nickname)
        failures = factory.password_failures
        wait = failures.begin(key, self.group)
        if wait:
            self._log.info(
                "password for {nickname} from {peer} not checked: wait {wait:.0f} s",
                nickname=nickname,
                peer=self.peer,
                wait=wait,
            )
            self._error(
                f"Too many wrong passwords for {nickname} or from your address lately; "
                f"try again in {_seconds(wait)}."
            )
            return succeed(None)
        credentials = UsernamePassword(nickname.encode("utf-8"), password.encode("utf-8"))
        result: Deferred[IAccount | None | Literal[False]] = Deferred()

        def correct(avatar: tuple[Any, Account, Callable[[], None]]) -> None:
            account = avatar[1]
            self.account = account
            self._log.info("{peer} identified as {nickname}", peer=self.peer, nickname=nickname)
            # Shown once signed in (see _report_failures).
            self._failure_report = failures.succeeded(key, self.group)
            result.callback(account)

        def wrong(failure: Failure) -> None:
            if not failure.check(UnauthorizedLogin):
                self._log.failure("checking a password failed", failure)
            failures.failed(key, self.group, self.peer)
            self._wrong_passwords += 1
            factory.counts.wrong_passwords += 1
            self._log.info(
                "wrong password for {nickname} from {peer}", nickname=nickname, peer=self.peer
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

    # Lines typed by a person

    _COMMANDS = {
        "help": "_help_command",
        "who": "_names_command",
        "names": "_names_command",
        "users": "_names_command",
        "rooms": "_rooms_command",
        "list": "_rooms_command",
        "join": "_join_command",
        "part": "_part_command",
        "switch": "_switch_command",
        "topic": "_topic_command",
        "msg": "_msg_command",
        "me": "_me_command",
        "away": "_away_command",
        "whois": "_whois_command",
        "invite": "_invite_command",
        "nick": "_nick_command",
        "history": "_history_command",
        "search": "_search_command",
        "register": "_register_command",
        "identify": "_identify_command",
        "password": "_password_command",
        "kick": "_kick_command",
        "ban": "_ban_command",
        "unban": "_unban_command",
        "op": "_op_command",
        "deop": "_deop_command",
        "mode": "_mode_command",
        "kill": "_kill_command",
        "quit": "_quit_command",
        "exit": "_quit_command",
    }

    def line(self, text: str) -> Deferred[None] | None:
        """
        Handle a line a registered user typed: a C{/command} (see L{HELP})
        or a chat line for the current room. A refused command is answered
        with an L{twistedchat.events.Error} reply and sends nothing to
        anyone.

        @param text: the line, already cleaned (see
            L{twistedchat.sanitize.clean_line}).
        @return: C{None}, or a L{Deferred} that fires once a command that
            checks a password, or reads the database (C{/search}), is
            done.
        """
        self.resetTimeout()
        if not text.strip():
            return None
        return self.attempt(self._typed, text)

    def _typed(self, text: str) -> Deferred[None] | None:
        command = parse_command(text)
        if command is None:
            self.say(text[1:] if text.startswith("//") else text)
            return None
        name, argument = command
        method = self._COMMANDS.get(name)
        if method is None:
            raise Refused(f"Unknown command /{name}. Type /help for the commands.")
        result: Deferred[None] | None = getattr(self, method)(argument)
        return result

    def attempt(
        self, command: Callable[..., Deferred[None] | None], *arguments: Any
    ) -> Deferred[None] | None:
        """
        Run C{command(*arguments)}, one of this session's command methods,
        for a front end, and answer a refusal (L{Refused}, a room, nickname
        or account error, no such nickname) with an
        L{twistedchat.events.Error} reply instead of raising.

        @return: what C{command} returns, or C{None} if it was refused.
        """
        try:
            return command(*arguments)
        except (Refused, RoomError, InvalidNickname, AccountError) as e:
            self._error(str(e))
        except NoSuchNickname as e:
            self._error(f"No such nickname: {e}. /who lists who is online.")
        return None

    def _help_command(self, argument: str) -> None:
        for line in HELP.splitlines():
            self._notice(line)

    def _names_command(self, argument: str) -> None:
        self.names(argument or None)

    def _rooms_command(self, argument: str) -> None:
        self.list_rooms()

    def _join_command(self, argument: str) -> None:
        if not argument or " " in argument:
            raise Refused("Usage: /join #ROOM")
        self.join(argument)

    def _part_command(self, argument: str) -> None:
        room, reason = _room_first(argument)
        self.part(room, reason)

    def _switch_command(self, argument: str) -> None:
        if not argument or " " in argument:
            raise Refused("Usage: /switch #ROOM")
        self.switch(argument)

    def _topic_command(self, argument: str) -> None:
        room, text = _room_first(argument)
        if text:
            self.set_topic(text, room)
        else:
            self.topic(room)

    def _msg_command(self, argument: str) -> None:
        recipient, _, text = argument.partition(" ")
        text = text.strip()
        if not recipient or not text:
            raise Refused("Usage: /msg NICK TEXT or /msg #ROOM TEXT")
        if recipient.startswith("#"):
            self.say(text, recipient)
        else:
            self.private_message(recipient, text)

    def _me_command(self, argument: str) -> None:
        if not argument:
            raise Refused("Usage: /me TEXT")
        self.act(argument)

    def _away_command(self, argument: str) -> None:
        self.set_away(argument.strip())

    def _whois_command(self, argument: str) -> None:
        if not argument.strip():
            raise Refused("Usage: /whois NICK")
        self.whois(argument.strip())

    def _invite_command(self, argument: str) -> None:
        words = argument.split()
        if len(words) not in (1, 2):
            raise Refused("Usage: /invite NICK [#ROOM]")
        room = words[1] if len(words) == 2 else self.current_room().name
        nickname = self.invite(words[0], room)
        self._notice(f"You invited {nickname} to {room}.")

    def _nick_command(self, argument: str) -> Deferred[None] | None:
        new, _, password = argument.partition(" ")
        if not new:
            raise Refused("Usage: /nick NEWNICK [PASSWORD]")
        return self.rename(new, password.strip())

    def _history_command(self, argument: str) -> None:
        history = self._history()
        room, count = _room_first(argument)
        # Only ASCII digits: str.isdigit() also accepts "²", which int()
        # refuses.
        if count and not (count.isascii() and count.isdigit() and int(count)):
            raise Refused(f"Usage: /history [#ROOM] [N], N from 1 to {history.cap}")
        self.history(int(count) if count else DEFAULT_HISTORY, room)

    def _search_command(self, argument: str) -> Deferred[None]:
        room, text = _room_first(argument)
        if not text:
            # "/search #python": the word, in the current room.
            room, text = None, argument
        if not text:
            raise Refused("Usage: /search [#ROOM] TEXT")
        return self.search(text, room)

    def _accounts(self, usage: str, argument: str, words: int) -> list[str]:
        """
        Return the C{words} words of C{argument}.

        @raise Refused: this server has no accounts, or the number of words
            is wrong.
        """
        self._registered_accounts()
        parts = argument.split()
        if len(parts) != words:
            raise Refused(f"Usage: {usage}")
        return parts

    def _register_command(self, argument: str) -> Deferred[None]:
        return self.register_account(self._accounts("/register PASSWORD", argument, 1)[0])

    def _identify_command(self, argument: str) -> Deferred[None]:
        return self.identify(self._accounts("/identify PASSWORD", argument, 1)[0])

    def _password_command(self, argument: str) -> Deferred[None]:
        old, new = self._accounts("/password OLD NEW", argument, 2)
        return self.change_password(old, new)

    def _target(self, usage: str, argument: str) -> tuple[str, str, str]:
        """
        Split a moderation command's C{argument}, C{[#ROOM] NICK [REASON]},
        into the room (the current one if none is named), the nickname and
        the reason.

        @raise Refused: no nickname was given (the usage is C{usage}).
        """
        room, rest = _room_first(argument)
        nickname, _, reason = rest.partition(" ")
        if not nickname:
            raise Refused(f"Usage: {usage}")
        return self._room_name(room), nickname, reason.strip()

    def _kick_command(self, argument: str) -> None:
        room, nickname, reason = self._target("/kick [#ROOM] NICK [REASON]", argument)
        self.kick(room, nickname, reason or "kicked")

    def _ban_command(self, argument: str) -> None:
        room, nickname, reason = self._target("/ban [#ROOM] NICK [REASON]", argument)
        self.ban(room, nickname, reason)

    def _unban_command(self, argument: str) -> None:
        room, nickname, _ = self._target("/unban [#ROOM] NICK", argument)
        self.unban(room, nickname)

    def _op_command(self, argument: str) -> None:
        room, nickname, _ = self._target("/op [#ROOM] NICK", argument)
        self.set_operator(room, nickname, True)

    def _deop_command(self, argument: str) -> None:
        room, nickname, _ = self._target("/deop [#ROOM] NICK", argument)
        self.set_operator(room, nickname, False)

    def _mode_command(self, argument: str) -> None:
        room, change = _room_first(argument)
        if change not in ("+t", "-t"):
            raise Refused("Usage: /mode [#ROOM] +t|-t")
        self.set_mode(self._room_name(room), change)

    def _kill_command(self, argument: str) -> None:
        nickname, _, reason = argument.partition(" ")
        if not nickname:
            raise Refused("Usage: /kill NICK [REASON]")
        self.kill(nickname, reason.strip() or "no reason given")

    def _quit_command(self, argument: str) -> None:
        self.quit(argument.strip() or "quit")

    # Commands

    def _room_name(self, name: str | None) -> str:
        """
        Return C{name}, or the name of the current room if it is C{None}.

        @raise Refused: C{name} is C{None} and the user is in no room.
        """
        if name is not None:
            return name
        return self.current_room().name

    def current_room(self) -> Room:
        """
        Return the room plain lines go to: the one last joined or switched
        to, or, once the user is no longer in it (kicked, banned), the one
        they joined last.

        @raise Refused: the user is in no room; or they were removed from
            their current room since they last sent to it, so that they
            learn where their lines go now before any is sent there.
        """
        room = self._current
        if room is not None and self.rooms.get(room.key) is room:
            return room
        if not self.rooms:
            self._current = None
            raise Refused("You are in no room; /join #ROOM joins one.")
        self._current = list(self.rooms.values())[-1]
        if room is not None:
            raise Refused(
                f"You are no longer in {room.name}; your lines go to {self._current.name} "
                "now, so this was not done."
            )
        return self._current

    def say(self, text: str, room: str | None = None, notice: bool = False) -> None:
        """
        Say C{text} in the room called C{room} (the current one if
        C{None}), which the user must be in; as a C{notice} if so (IRC).

        @raise twistedchat.rooms.RoomError: not in that room, or no room.
        @raise Refused: the user is in no room.
        """
        target = self.current_room() if room is None else self.factory.room_of(self, room)
        self.factory.say(self, target, text, notice)

    def act(self, text: str, room: str | None = None) -> None:
        """
        Do C{text} (C{/me}) in the room called C{room}, as L{say}.
        """
        target = self.current_room() if room is None else self.factory.room_of(self, room)
        self.factory.act(self, target, text)

    def private_message(
        self, recipient: str, text: str, notice: bool = False, action: bool = False
    ) -> None:
        """
        Send C{text} to the participant called C{recipient} only (as a
        C{notice}, or an C{action}, if so: IRC), and reply with what was
        sent; with L{echo}, the user is delivered the private message
        itself instead. If the recipient is away, reply with
        L{twistedchat.events.Away} too, except to a notice.

        @raise NoSuchNickname: nobody online is called C{recipient}.
        """
        recipient = self.factory.private_message(self, recipient, text, notice, action)
        if not self.echo:
            self.front_end.reply(PrivateMessageSent(recipient, text))
        away = self.factory.participant(recipient).away
        if away and not notice:
            self.front_end.reply(Away(recipient, away))

    def ctcp(self, recipient: str, payload: str, reply: bool = False) -> None:
        """
        Pass a CTCP C{payload} (without its C{\\x01} bytes, cleaned) to the
        participant called C{recipient}, as a query or the C{reply} to
        one; only IRC users see it.

        @raise NoSuchNickname: nobody online is called C{recipient}.
        """
        self.factory.ctcp(self, recipient, payload, reply)

    def invite(self, nickname: str, room: str) -> str:
        """
        Invite the user called C{nickname} to the room called C{room},
        which the user is in (they are told; see L{ChatFactory.invite}).

        @return: the invited user's nickname as they spell it.
        @raise twistedchat.rooms.RoomError: not in that room, or they are
            (L{twistedchat.rooms.AlreadyInRoom}).
        @raise NoSuchNickname: nobody online is called C{nickname}.
        """
        return self.factory.invite(self, room, nickname)

    def set_away(self, text: str) -> None:
        """
        Say the user is away with C{text} (cleaned), or back with C{""};
        everyone sharing a room with them is told
        (L{twistedchat.events.AwayChanged}), a private message sent to them
        is answered with it, and L{whois} and L{names} show it. Replies
        with L{twistedchat.events.AwaySet}.
        """
        self.factory.set_away(self, text)
        self.front_end.reply(AwaySet(text))

    def whois(self, nickname: str) -> None:
        """
        Reply with what others may know of the user called C{nickname}
        (L{twistedchat.events.WhoIs}): never their address.

        @raise NoSuchNickname: nobody online is called C{nickname}.
        """
        factory = self.factory
        other = factory.participant(nickname)
        assert other.nickname is not None
        rooms = sorted(other.rooms.values(), key=lambda room: room.key)
        account = other.account
        self.front_end.reply(
            WhoIs(
                other.nickname,
                [room.name for room in rooms],
                [room.name for room in rooms if factory.is_operator(other, room)],
                other.away,
                "" if account is None else account.nickname_key,
                factory.is_server_operator(other),
            )
        )

    def join(self, name: str) -> None:
        """
        Join the room called C{name} (creating it, as its operator, if
        there is none) and send plain lines there from now on; reply with
        the room's topic and members and its recent history.

        @raise twistedchat.rooms.InvalidRoomName: C{name} is no room name.
        @raise twistedchat.rooms.BannedFromRoom: the user is banned there.
        """
        key = room_key(name)
        already = key in self.rooms
        remembered = self.factory.cluster.remembers(key)
        past: list[Record] = []
        if not already and remembered:
            past = self._recent(self.factory.history_on_join, key)
        room = self.factory.join(self, name)
        self._current = room
        self.front_end.reply(self._joined(room, already))
        if already:
            return
        if remembered:
            self._replay(room.name, past, asked=False)
            return

        def loaded(first_live: int | None) -> None:
            # What others said there before anyone here was in it; what
            # was said since the join was shown as it came.
            if room.key in self.rooms:
                past = self._recent(self.factory.history_on_join, room.key)
                if first_live is not None:
                    past = [record for record in past if record.event.id < first_live]
                self._replay(room.name, past, asked=False)

        self.factory.cluster.load_history(room.key).addCallback(loaded)

    def _joined(self, room: Room, already: bool) -> RoomJoined:
        """
        Return the reply that says this user is in C{room} now: its
        members and operators listed, or only counted above
        C{quiet_joins_above}.
        """
        if len(room.members) > self.factory.quiet_joins_above:
            return RoomJoined(room.name, room.topic, [], already, len(room.members))
        members = [m.nickname for m in room.members]
        operators = [m.nickname for m in room.members if self.factory.is_operator(m, room)]
        return RoomJoined(room.name, room.topic, members, already, operators=operators)

    def part(self, name: str | None = None, reason: str = "") -> None:
        """
        Leave the room called C{name} (the current one if C{None}).

        @raise twistedchat.rooms.RoomError: not in that room.
        @raise Refused: the user is in no room.
        """
        room = self.factory.part(self, self._room_name(name), reason)
        self.front_end.reply(RoomParted(room.name))
        if room is self._current:
            self._current = None
            if self.rooms:
                self.front_end.reply(CurrentRoom(self.current_room().name))
            else:
                self.front_end.reply(CurrentRoom(""))

    def switch(self, name: str) -> None:
        """
        Send plain lines to the room called C{name}, which the user is in.

        @raise twistedchat.rooms.RoomError: not in that room.
        """
        room = self.factory.room_of(self, name)
        self._current = room
        self.front_end.reply(CurrentRoom(room.name))

    def names(self, name: str | None = None) -> None:
        """
        Reply with who is in the room called C{name} (the current one if
        C{None}).

        @raise twistedchat.rooms.RoomError: there is no such room.
        """
        room = self.factory.room(self._room_name(name))
        factory = self.factory
        members = sorted((m.nickname for m in room.members), key=nickname_key)
        operators = [m.nickname for m in room.members if factory.is_operator(m, room)]
        away = sorted((m.nickname for m in room.members if m.away), key=nickname_key)
        self.front_end.reply(Names(room.name, members, sorted(operators, key=nickname_key), away))

    def list_rooms(self) -> None:
        """
        Reply with every room, its member count and its topic.
        """
        self.front_end.reply(
            RoomList([RoomSummary(r.name, len(r.members), r.topic) for r in self.factory.rooms()])
        )

    def topic(self, name: str | None = None) -> None:
        """
        Reply with the topic of the room called C{name} (the current one if
        C{None}).

        @raise twistedchat.rooms.RoomError: there is no such room.
        """
        room = self.factory.room(self._room_name(name))
        self.front_end.reply(TopicIs(room.name, room.topic, room.topic_by, room.topic_at))

    def set_topic(self, text: str, name: str | None = None) -> None:
        """
        Set the topic of the room called C{name} (the current one if
        C{None}); see L{ChatFactory.set_topic}.
        """
        self.factory.set_topic(self, self._room_name(name), text)

    def kick(self, room: str, nickname: str, reason: str) -> None:
        """
        See L{ChatFactory.kick}.
        """
        self.factory.kick(self, room, nickname, reason)

    def ban(self, room: str, nickname: str, reason: str = "") -> None:
        """
        See L{ChatFactory.ban}.
        """
        self.factory.ban(self, room, nickname, reason)

    def unban(self, room: str, nickname: str) -> None:
        """
        See L{ChatFactory.unban}.
        """
        self.factory.unban(self, room, nickname)

    def set_operator(self, room: str, nickname: str, operator: bool) -> None:
        """
        See L{ChatFactory.set_operator}.
        """
        self.factory.set_operator(self, room, nickname, operator)

    def set_mode(self, room: str, change: str) -> None:
        """
        See L{ChatFactory.set_mode}.
        """
        self.factory.set_mode(self, room, change)

    def kill(self, nickname: str, reason: str) -> None:
        """
        See L{ChatFactory.kill}.
        """
        self.factory.kill(self, nickname, reason)

    def rename(self, new: str, password: str = "") -> Deferred[None] | None:
        """
        Change the nickname to C{new}. A registered C{new} needs its
        C{password} (unless the user proved they own it already): it is
        checked first.

        @return: C{None} when done at once, or a L{Deferred} that fires
            once the password was checked and answered.
        @raise twistedchat.nicknames.InvalidNickname: C{new} is no nickname.
        @raise Refused: C{new} is taken, or registered and no password was
            given.
        """
        try:
            self._rename(new)
            accounts = self.factory.accounts
            registered = accounts is not None and accounts.is_registered(new)
            if password and self.nickname == new and not registered:
                self._notice(unused_password(new))
        except NicknameRegistered:
            if not password:
                raise Refused(
                    f"The nickname {new} is registered; /nick {new} PASSWORD takes it."
                ) from None
            return self._check_password(new, password).addCallback(self._rename_checked, new)
        return None

    def _rename_checked(self, account: IAccount | None | Literal[False], new: str) -> None:
        if self.state is State.CLOSED or account is None:
            return
        if account is False:
            if not self._closed_for_wrong_passwords():
                self._error(f"Wrong password for {new}.")
            return
        try:
            self._rename(new)
        except (Refused, InvalidNickname, NicknameRegistered) as e:
            self._error(str(e))
        self._report_failures()

    def _rename(self, new: str) -> None:
        """
        Rename to C{new} and say so.

        @raise NicknameRegistered: C{new} needs its password.
        @raise Refused: C{new} is taken.
        """
        old = self.nickname
        if new == old:
            raise Refused(f"You are called {new} already.")
        try:
            self.factory.rename(self, new, self.account)
        except NicknameInUse as e:
            raise Refused(e.sentence(new)) from None
        if not self.echo:  # else the NicknameChanged event says it
            self._notice(f"You are now known as {self.nickname} (was {old}).")

    def history(self, count: int = DEFAULT_HISTORY, room: str | None = None) -> None:
        """
        Reply with the last C{count} lines (at most the history's cap) of
        the room called C{room} (the current one if C{None}), with the
        private messages the user may see.

        @raise Refused: the server keeps no history, or the user is in no
            room.
        @raise twistedchat.rooms.RoomError: the user is not in that room.
        """
        history = self._history()
        found = self.factory.room_of(self, self._room_name(room))

        def reply(_: object = None) -> None:
            records = self._recent(min(count, history.cap), found.key, private=True)
            self._replay(found.name, records, asked=True)

        if self.factory.cluster.remembers(found.key):
            reply()
        else:
            self.factory.cluster.load_history(found.key).addCallback(reply)

    def _recent(self, count: int, room: str, private: bool = False) -> list[Record]:
        """
        Return the last C{count} events of room C{room} (a key) that this
        user may see, with, if C{private}, the private messages of the
        account they proved they own since it was registered.
        """
        history = self.factory.history
        if history is None or count <= 0:
            return []
        viewer, since = self._viewer()
        return history.recent(count, room, viewer, since, private=private and viewer is not None)

    def _viewer(self) -> tuple[str | None, float]:
        """
        Return whose private messages this user may see: the key of the
        account they proved they own, and when it was registered (seconds
        since the epoch; before that the nickname was anyone's); C{None}
        and C{0.0} if they proved none, or it is no longer registered.
        """
        accounts = self.factory.accounts
        viewer = self.account.nickname_key if self.account is not None else None
        if viewer is None or accounts is None:
            return viewer, 0.0
        registered = accounts.registered_at(viewer)
        if registered is None:
            return None, 0.0
        return viewer, registered

    def _replay(
        self, room: str, records: list[Record], asked: bool, before: int | None = None
    ) -> None:
        if records or asked:
            viewer = self.account.nickname_key if self.account is not None else None
            self.front_end.reply(HistoryReplay(room, records, viewer, asked, before))

    def history_page(self, room: str, before: int, count: int) -> Deferred[None]:
        """
        Reply with the events of the room called C{room} that came last
        before the event with the id C{before}, oldest first, for scrolling
        up: at most C{count} of them (kept from 1 to the history's cap),
        chat lines, actions and notices, no private messages, none from
        before the room was created (L{Room.since}: a room of the same name
        that vanished hands nothing on; see L{History.page}). The reply is a
        L{twistedchat.events.HistoryReplay} with C{asked} true and
        C{before} set, even when there are none.

        @param before: an event id (L{twistedchat.events.Event.id}).
        @return: fires once the reply is made (or, if the history cannot be
            read, an L{twistedchat.events.Error} is); never fails.
        @raise Refused: the server keeps no history.
        @raise twistedchat.rooms.RoomError: the user is not in that room.
        """
        history = self._history()
        found = self.factory.room_of(self, room)
        count = max(1, min(count, history.cap))

        def answer(records: list[Record]) -> None:
            self._replay(found.name, records, True, before)

        d = history.page(found.key, before, count, after=found.since)
        return d.addCallback(answer).addErrback(self._unreadable, "read the history")

    def search(self, text: str, room: str | None = None) -> Deferred[None]:
        """
        Reply with what was said in the room called C{room} (the current
        one if C{None}) that matches C{text}, none from before the room was
        created (L{Room.since}), and the private messages the user may see
        that do (as for L{history}): a
        L{twistedchat.events.SearchResults}, newest first, at most
        L{SEARCH_RESULTS} (see L{History.search}).

        @param text: the words to find, each taken literally.
        @return: fires once the reply is made (or, if the history cannot be
            read, an L{twistedchat.events.Error} is); never fails.
        @raise Refused: the server keeps no history, or only in memory;
            C{text} holds no word; or the user is in no room.
        @raise twistedchat.rooms.RoomError: the user is not in that room.
        """
        history = self._history()
        found = self.factory.room_of(self, self._room_name(room))
        viewer, since = self._viewer()
        query = text.strip()
        try:
            d = history.search(query, found.key, viewer, since, SEARCH_RESULTS, found.since)
        except ValueError as e:
            raise Refused(str(e)) from None

        def answer(records: list[Record]) -> None:
            self.front_end.reply(SearchResults(query, found.name, records, viewer))

        return d.addCallback(answer).addErrback(self._unreadable, "search the history")

    def _unreadable(self, failure: Failure, what: str) -> None:
        """
        The history could not be read: log why, and tell the user.
        """
        self._log.failure("could not {what}", failure, what=what)
        if self.state is not State.CLOSED:
            self._error("The history cannot be read now; try again later.")

    # Accounts

    def _history(self) -> History:
        """
        Return the server's history.

        @raise Refused: it keeps none.
        """
        if self.factory.history is None:
            raise Refused("This server keeps no history.")
        return self.factory.history

    def _registered_accounts(self, nickname: str | None = None) -> Accounts:
        """
        Return the server's accounts, in which C{nickname}, if given, must
        be registered.

        @raise Refused: the server has no accounts, or C{nickname} is not
            registered.
        """
        accounts = self.factory.accounts
        if accounts is None:
            raise Refused("This server has no accounts.")
        if nickname is not None and not accounts.is_registered(nickname):
            raise Refused(
                f"The nickname {nickname} is not registered; /register PASSWORD does that."
            )
        return accounts

    def register_account(self, password: str) -> Deferred[None]:
        """
        Register the user's nickname with C{password}; from then on the
        nickname needs it. At most C{max_registrations} an hour per address
        group.

        @return: fires once it is done and answered.
        @raise Refused: too many registrations from this address lately.
        """
        accounts, nickname = self._registered_accounts(), self.nickname
        assert nickname is not None
        registrations = self.factory.registrations
        wait = registrations.allow(self.group)
        if wait is not None:
            raise Refused(
                f"Too many nicknames registered from your address lately; "
                f"try again in {math.ceil(wait / 60)} minutes."
            )

        portal = self.factory.portal
        assert portal is not None
        credentials = UsernamePassword(nickname.encode("utf-8"), password.encode("utf-8"))

        def registered(avatar: tuple[Any, Account, Callable[[], None]]) -> None:
            # The proof of ownership is the portal's avatar, as for a
            # password given later.
            self.account = avatar[1]
            self._log.info("{nickname} registered an account", nickname=nickname)
            self._notice(
                f"The nickname {nickname} is now registered to you; "
                "from now on it needs this password."
            )

        def refused(failure: Failure) -> None:
            registrations.refund(self.group)
            self._account_refused(failure)

        d = Deferred.fromCoroutine(accounts.register(nickname, password))
        d.addCallback(lambda _: portal.login(credentials, None, IAccount))
        return d.addCallbacks(registered, refused)

    def _account_refused(self, failure: Failure) -> None:
        if failure.check(AccountError):
            self._error(str(failure.value))
        else:
            self._log.failure("an account change failed", failure)
            self._error("That did not work; try again later.")

    def identify(self, password: str) -> Deferred[None]:
        """
        Prove the user owns their registered nickname with its C{password}.

        @return: fires once the password was checked and answered.
        @raise Refused: the nickname is not registered, or is proved
            already.
        """
        nickname = self.nickname
        assert nickname is not None
        if self.account is not None and self.account.nickname_key == nickname_key(nickname):
            self._notice(f"You are identified as {nickname} already.")
            return succeed(None)
        self._registered_accounts(nickname)

        def checked(account: IAccount | None | Literal[False]) -> None:
            if self.state is State.CLOSED or self._closed_for_wrong_passwords():
                return
            if account is False:
                self._error("Wrong password.")
            elif account is not None:
                self._notice(f"You are identified as {nickname}.")
                self._report_failures()

        return self._check_password(nickname, password).addCallback(checked)

    def change_password(self, old: str, new: str) -> Deferred[None]:
        """
        Change the password of the user's registered nickname from C{old}
        to C{new}.

        @return: fires once it is done and answered.
        @raise Refused: the nickname is not registered.
        """
        nickname = self.nickname
        assert nickname is not None
        accounts = self._registered_accounts(nickname)

        async def change() -> None:
            account = await self._check_password(nickname, old)
            if self.state is State.CLOSED or self._closed_for_wrong_passwords():
                return
            if account is None:
                return
            if account is False:
                self._error("Wrong password.")
                return
            await accounts.change_password(nickname, new)
            self._log.info("{nickname} changed their password", nickname=nickname)
            self._notice("Your password has been changed.")
            self._report_failures()

        return Deferred.fromCoroutine(change()).addErrback(self._account_refused)

    def quit(self, reason: str = "quit") -> None:
        """
        Leave the chat for C{reason}, say goodbye and close the connection.
        """
        self.factory.leave(self, reason)
        self._notice("Goodbye.")
        self._close()
