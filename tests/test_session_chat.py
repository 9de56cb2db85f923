"""
Tests for the chat rules of L{twistedchat.session}: registration (valid,
taken and random nicknames, the registration timeout), chat lines and
commands (/help, /names aliases, /me, /msg, /nick, /history, /quit,
unknown commands, // escaping, blank lines), server shutdown and what is
logged, through L{ChatSession} objects driven directly by a recording
front end, with no wire format.
"""

from __future__ import annotations

import re

import pytest
from fakeclients import make_factory
from test_session import chat, connect, oper_chat, users
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twistedchat.events import (
    ChatLine,
    Error,
    Left,
    Names,
    NicknameChanged,
    Notice,
    RoomJoined,
    ServerShutdown,
    Welcome,
)
from twistedchat.nicknames import InvalidNickname
from twistedchat.session import HELP, Refused, State, parse_command

# Registration


def test_welcome_counts_and_lists_everyone_online() -> None:
    """
    Choosing a nickname is answered with Welcome: how many are online and
    their nicknames, the new user's included, sorted case-insensitively.
    """
    factory = chat()
    users(factory, "carol", "Bob")
    alice = connect(factory)
    alice.session.choose_nickname("alice")
    assert alice.replies_of(Welcome) == [Welcome("alice", (3, ["alice", "Bob", "carol"]))]
    assert alice.session.state is State.CHATTING


def test_welcome_says_the_room() -> None:
    """
    The Welcome also says which room the user was put in (the default
    room), its topic and its members, as joining a room does; with more
    members than C{quiet_joins_above}, only how many.
    """
    factory = chat(quiet_joins_above=2)
    users(factory, "carol")
    alice = connect(factory)
    alice.session.choose_nickname("alice")
    [welcome] = alice.replies_of(Welcome)
    assert welcome.room == RoomJoined("#lobby", "", ["carol", "alice"])
    bob = connect(factory)
    bob.session.choose_nickname("bob")
    [welcome] = bob.replies_of(Welcome)
    assert welcome.room == RoomJoined("#lobby", "", [], count=3)


def test_welcome_without_room_when_banned() -> None:
    """
    A user banned from the default room is welcomed with no room.
    """
    factory, root = oper_chat()
    root.line("/ban mallory")
    assert root.errors() == []
    mallory = connect(factory)
    mallory.session.choose_nickname("mallory")
    [welcome] = mallory.replies_of(Welcome)
    assert welcome.room is None


@pytest.mark.parametrize("nickname", ["1abc", "-abc", "toolongnickname12", "é", "a.b", "a@b"])
def test_invalid_nicknames_refused(nickname: str) -> None:
    """
    A nickname outside the RFC 2812 grammar or longer than the maximum
    makes choose_nickname() raise InvalidNickname with a sentence saying
    why; the session stays open, waiting for a nickname, and nobody is
    registered.
    """
    factory = chat()
    user = connect(factory)
    with pytest.raises(InvalidNickname, match="^A nickname "):
        user.session.choose_nickname(nickname)
    assert user.session.state is State.AWAITING_NICKNAME
    assert not user.closed
    assert factory.nicknames() == []


@pytest.mark.parametrize("nickname", ["a", "[x]", "`_^{|}-9", "Abc-123", "b" * 16])
def test_valid_nicknames(nickname: str) -> None:
    """
    Nicknames of the RFC 2812 grammar up to the maximum length (16) are
    accepted.
    """
    factory = chat()
    (user,) = users(factory, nickname)
    assert user.session.nickname == nickname
    assert factory.nicknames() == [nickname]


def test_taken_nickname_case_insensitive() -> None:
    """
    A nickname that differs from a taken one only by case (including the
    RFC 2812 pairs [ and {) makes choose_nickname() raise Refused; the
    session still waits for a nickname and can choose a free one.
    """
    factory = chat()
    users(factory, "Alice[1]")
    user = connect(factory)
    with pytest.raises(Refused, match=r"^The nickname aLICE\{1\} is taken\.$"):
        user.session.choose_nickname("aLICE{1}")
    assert user.session.state is State.AWAITING_NICKNAME
    user.session.choose_nickname("bob")
    assert user.session.nickname == "bob"


def test_empty_nickname_gives_random_nickname() -> None:
    """
    choose_nickname("") registers the user under a free random nickname of
    the form GuestNNNN, told with a Notice before the Welcome.
    """
    factory = chat()
    user = connect(factory)
    user.session.choose_nickname("")
    nickname = user.session.nickname
    assert nickname is not None and re.fullmatch(r"Guest\d{4}", nickname)
    assert user.replies == [
        Notice(f"Your nickname is {nickname}; /nick changes it."),
        Welcome(nickname, (1, [nickname])),
    ]


def test_random_nicknames_option_registers_at_once() -> None:
    """
    With random_nicknames, opening a session registers it at once under a
    random nickname, and no registration timeout is started.
    """
    clock = Clock()
    user = connect(make_factory(clock, random_nicknames=True))
    nickname = user.session.nickname
    assert nickname is not None and nickname.startswith("Guest")
    assert user.session.state is State.CHATTING
    assert user.replies_of(Welcome) == [Welcome(nickname, (1, [nickname]))]
    assert clock.getDelayedCalls() == []


def test_registration_timeout() -> None:
    """
    A session that has not chosen a nickname within registration_timeout
    seconds (on the factory's clock) is told why with an Error and closed.
    """
    clock = Clock()
    user = connect(make_factory(clock, registration_timeout=30))
    clock.advance(29.9)
    assert not user.closed
    clock.advance(0.1)
    assert user.replies == [Error("No nickname chosen within 30 seconds; goodbye.")]
    assert user.closed
    assert user.session.state is State.CLOSED


def test_registration_or_leaving_cancels_timeout() -> None:
    """
    Choosing a nickname in time cancels the registration timeout; so does
    the connection being lost first.
    """
    clock = Clock()
    factory = make_factory(clock, registration_timeout=30)
    (alice,) = users(factory, "alice")
    leaving = connect(factory)
    leaving.session.connection_lost()
    assert clock.getDelayedCalls() == []
    assert not alice.closed


def test_unregistered_leaving_is_silent() -> None:
    """
    A session lost before it chose a nickname is announced to nobody.
    """
    factory = chat()
    (bob,) = users(factory, "bob")
    waiting = connect(factory)
    waiting.session.connection_lost()
    assert bob.delivered == []


# Chat lines


def test_chat_line_reaches_registered_users_only() -> None:
    """
    A plain line reaches every other registered user as a ChatLine; the
    sender gets no echo and no reply, and a session still choosing its
    nickname gets nothing.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    waiting = connect(factory)
    waiting.forget()
    alice.line("hello there")
    assert bob.delivered == carol.delivered == [ChatLine("alice", "hello there", "#lobby")]
    assert alice.delivered == alice.replies == []
    assert waiting.delivered == waiting.replies == []


@pytest.mark.parametrize("text", ["", " ", "   "])
def test_blank_lines_ignored(text: str) -> None:
    """
    Empty and whitespace-only lines are not sent and get no error.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line(text)
    assert alice.replies == bob.delivered == []


def test_double_slash_sends_literal_slash() -> None:
    """
    A line starting with // is a chat line starting with a single /.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("//usr/bin is a directory")
    assert bob.delivered == [ChatLine("alice", "/usr/bin is a directory", "#lobby")]
    assert alice.replies == []


def test_unknown_command() -> None:
    """
    An unknown command is answered with an Error naming /help and sends
    nothing; a line merely starting with ".exit" is chat.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/dance now")
    assert alice.replies == [Error("Unknown command /dance. Type /help for the commands.")]
    assert bob.delivered == []
    alice.line(".exiting is fun")
    assert bob.delivered == [ChatLine("alice", ".exiting is fun", "#lobby")]


def test_parse_command() -> None:
    """
    parse_command splits commands into a lower-case name and a stripped
    argument, and returns None for chat lines.
    """
    assert parse_command("/MSG bob  hi ") == ("msg", "bob  hi")
    assert parse_command("/") == ("", "")
    assert parse_command(".Exit now") == ("exit", "now")
    assert parse_command("//x") is None
    assert parse_command("hello /who") is None
    assert parse_command("") is None


def test_help_lists_every_command() -> None:
    """
    /help, in any case, replies with one Notice per line of the help text,
    which names every command, and sends nothing to anyone.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/HeLp")
    assert alice.replies == [Notice(line) for line in HELP.splitlines()]
    text = "\n".join(HELP.splitlines())
    for command in [
        "/help",
        "/who",
        "/names",
        "/users",
        "/msg",
        "/me",
        "/nick",
        "/history",
        "/search",
        "/quit",
        "/exit",
        ".exit",
        "//",
    ]:
        assert command in text
    assert bob.delivered == []


@pytest.mark.parametrize("command", ["/users", "/WHO"])
def test_names_aliases_any_case(command: str) -> None:
    """
    /users and /who in any case list the current room like /names, the
    nicknames sorted case-insensitively.
    """
    factory = chat()
    alice, _, _ = users(factory, "alice", "Carol", "bob")
    alice.line(command)
    assert alice.replies == [Names("#lobby", ["alice", "bob", "Carol"], [])]


# /me and /msg


def test_me_without_text() -> None:
    """
    /me without text is answered with a usage Error and sends nothing.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/me")
    assert alice.errors() == ["Usage: /me TEXT"]
    assert bob.delivered == []


@pytest.mark.parametrize("line", ["/msg", "/msg bob", "/msg bob   "])
def test_private_message_usage(line: str) -> None:
    """
    /msg without a nickname or without text is answered with a usage Error
    and reaches nobody.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line(line)
    assert alice.replies == [Error("Usage: /msg NICK TEXT or /msg #ROOM TEXT")]
    assert bob.delivered == []


# /nick


def test_rename_frees_old_nickname() -> None:
    """
    After /nick NEW the user's lines come from NEW, the nickname list has
    NEW, and the old nickname is free for someone else.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/nick alicia")
    assert factory.nicknames() == ["alicia", "bob"]
    bob.forget()
    alice.line("hi")
    assert bob.delivered == [ChatLine("alicia", "hi", "#lobby")]
    (again,) = users(factory, "alice")
    assert again.session.nickname == "alice"


def test_rename_case_only() -> None:
    """
    A user may change only the case of their own nickname; the others are
    told as for any rename.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/nick ALICE")
    assert bob.delivered == [NicknameChanged("alice", "ALICE")]
    assert factory.nicknames() == ["ALICE", "bob"]


def test_rename_refused() -> None:
    """
    /nick to a taken nickname (in any case), to an invalid one, or with no
    argument is answered with an Error; nothing changes and nobody else is
    told.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/nick BOB")
    alice.line("/nick 9lives")
    alice.line("/nick")
    errors = alice.errors()
    assert errors[0] == "The nickname BOB is taken."
    assert errors[1].startswith("A nickname starts with")
    assert errors[2:] == ["Usage: /nick NEWNICK [PASSWORD]"]
    assert bob.delivered == []
    assert factory.nicknames() == ["alice", "bob"]


def test_rename_to_own_nickname_refused() -> None:
    """
    /nick to the nickname one has, spelled the same, changes nothing, so
    it is refused with an Error saying so (as /op of an operator is), and
    nobody is told anything.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/nick alice")
    assert alice.errors() == ["You are called alice already."]
    assert bob.delivered == []


# /history


@pytest.mark.parametrize("argument", ["²", "٣", "0", "-1", "1.5", "x"])
def test_history_argument_must_be_ascii_digits(argument: str) -> None:
    """
    /history N takes N in ASCII digits from 1: other digits (a
    superscript two, an Arabic-Indic three), which str.isdigit() accepts
    and int() may not, get the usage Error instead of an exception.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    alice.line(f"/history {argument}")
    assert alice.replies == [Error("Usage: /history [#ROOM] [N], N from 1 to 200")]
    assert not alice.closed


# /quit


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("/quit", "quit"),
        ("/quit gone fishing", "gone fishing"),
        ("/EXIT see you", "see you"),
        (".exit", "quit"),
        (".EXIT later", "later"),
    ],
)
def test_quit(line: str, reason: str) -> None:
    """
    /quit, /exit and .exit, in any case, say goodbye with a Notice and
    close the session; the others are told with Left and the reason given
    ("quit" if none), and the nickname is free.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line(line)
    assert alice.replies == [Notice("Goodbye.")]
    assert alice.closed
    assert alice.session.state is State.CLOSED
    assert bob.delivered == [Left("alice", reason)]
    assert factory.nicknames() == ["bob"]


# Server shutdown


def test_shutdown_tells_everyone_and_closes() -> None:
    """
    On shutdown every session, registered or not, is delivered
    ServerShutdown and then closed; nobody is told of anyone leaving, and
    the Deferred fires once every connection is gone.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    waiting = connect(factory)
    waiting.forget()
    done = factory.shutdown()
    for user in (alice, bob, waiting):
        assert user.delivered == [ServerShutdown()]
        assert user.closed_after == 1
    alice.session.connection_lost()
    bob.session.connection_lost()
    assert not done.called
    waiting.session.connection_lost()
    assert done.called
    assert alice.delivered == bob.delivered == [ServerShutdown()]


# Logging


def test_logging_without_message_text() -> None:
    """
    The log records registrations with the peer address, nickname
    changes, private-message metadata and quits with their reason, but no
    chat, action or private text unless log_messages is set.
    """
    with capturedLogs() as events:
        factory = chat()
        alice, bob = users(factory, "alice", "bob")
        for line in ["top secret plan", "/me hides", "/msg bob private words"]:
            alice.line(line)
        alice.line("/nick alicia")
        alice.line("/quit tired")
    text = "\n".join(formatEvent(event) for event in events)
    assert "127.0.0.1:5000 registered as bob" in text
    assert "private message from alice to bob, 13 characters" in text
    assert "alice is now known as alicia" in text
    assert "alicia quit (tired)" in text
    assert "secret" not in text and "hides" not in text and "private words" not in text


def test_logging_messages_when_asked() -> None:
    """
    With log_messages the text of chat lines and actions is logged too;
    private message text still is not.
    """
    with capturedLogs() as events:
        factory = chat(log_messages=True)
        alice, bob = users(factory, "alice", "bob")
        for line in ["top secret plan", "/me hides", "/msg bob private words"]:
            alice.line(line)
    text = "\n".join(formatEvent(event) for event in events)
    assert "<alice> top secret plan" in text
    assert "* alice hides" in text
    assert "private words" not in text
