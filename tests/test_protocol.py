"""
Tests for L{twistedchat.protocol}: what a telnet or nc user sees.
"""

from __future__ import annotations

import pytest
from fakeclients import FakeClient, chatters, make_factory
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twistedchat.history import History
from twistedchat.protocol import PROMPT, REFUSAL_GRACE
from twistedchat.session import State, parse_command


def test_greeting_motd_and_prompt() -> None:
    """
    On connect a user sees a greeting naming the server, each MOTD line
    marked C{- }, then the nickname prompt; nothing else.
    """
    factory = make_factory(server_name="chat.example", motd="Be nice.\nNo spam.")
    lines = FakeClient(factory).lines()
    assert lines == [
        "*** This is chat.example, running twistedchat 0.1.0.",
        "- Be nice.",
        "- No spam.",
        f"*** {PROMPT}",
    ]


def test_no_motd() -> None:
    """
    Without a MOTD the greeting is followed directly by the prompt.
    """
    lines = FakeClient(make_factory()).lines()
    assert len(lines) == 2
    assert lines[1] == f"*** {PROMPT}"


def test_register_welcome_lists_users() -> None:
    """
    After choosing a nickname a user is welcomed with the number and names
    of everyone online and a pointer to /help; the others see a join notice.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    carol = FakeClient(factory)
    carol.output()
    carol.send(b"carol\r\n")
    assert carol.lines() == [
        "*** Welcome, carol! 3 users online: alice, bob, carol. Type /help for the commands."
    ]
    assert alice.lines() == ["*** carol has joined"]
    assert bob.lines() == ["*** carol has joined"]
    assert carol.chat.session.state is State.CHATTING


def test_first_user_welcome_is_singular() -> None:
    """
    The first user is told "1 user online".
    """
    client = FakeClient(make_factory())
    client.output()
    client.send(b"solo\n")
    assert client.lines()[0].startswith("*** Welcome, solo! 1 user online: solo.")


@pytest.mark.parametrize(
    "nickname",
    ["1abc", "-abc", "toolongnickname12", "é", "a.b", "a@b"],
)
def test_invalid_nickname_prompts_again(nickname: str) -> None:
    """
    An invalid nickname gets an error with the reason and the prompt
    again; the connection stays open and unregistered.
    """
    factory = make_factory()
    client = FakeClient(factory)
    client.output()
    client.send(nickname.encode() + b"\n")
    lines = client.lines()
    assert lines[0].startswith("!!! A nickname ")
    assert lines[1] == f"*** {PROMPT}"
    assert not client.closed
    assert client.chat.session.state is State.AWAITING_NICKNAME
    assert factory.nicknames() == []


@pytest.mark.parametrize("nickname", ["a", "[x]", "`_^{|}-9", "Abc-123", "b" * 16])
def test_valid_nicknames(nickname: str) -> None:
    """
    Nicknames of the RFC 2812 grammar up to the maximum length are accepted.
    """
    factory = make_factory()
    FakeClient(factory).register(nickname)
    assert factory.nicknames() == [nickname]


def test_taken_nickname_case_insensitive() -> None:
    """
    A nickname that differs from a taken one only by case (including the
    RFC 2812 pairs [ and {) is refused with the prompt again; a nickname
    sent once the refusal could have been seen is taken.
    """
    factory = make_factory()
    chatters(factory, "Alice[1]")
    client = FakeClient(factory)
    client.output()
    client.send(b"aLICE{1}\n")
    assert client.lines() == [
        "!!! The nickname aLICE{1} is taken.",
        f"*** {PROMPT}",
    ]
    factory.clock.advance(REFUSAL_GRACE)
    client.send(b"bob\n")
    assert client.chat.nickname == "bob"


def test_empty_line_gives_random_nickname() -> None:
    """
    An empty line at the prompt assigns a free random nickname such as
    Guest4821 and says so.
    """
    factory = make_factory()
    client = FakeClient(factory)
    client.output()
    client.send(b"\r\n")
    nickname = client.chat.nickname
    assert nickname is not None and nickname.startswith("Guest")
    assert len(nickname) == 9
    lines = client.lines()
    assert lines[0] == f"*** Your nickname is {nickname}; /nick changes it."
    assert lines[1].startswith(f"*** Welcome, {nickname}!")


def test_random_nicknames_option_skips_prompt() -> None:
    """
    With random_nicknames a connection is registered at once under a random
    nickname, without a prompt or a registration timeout.
    """
    clock = Clock()
    factory = make_factory(clock, random_nicknames=True)
    client = FakeClient(factory)
    lines = client.lines()
    assert PROMPT not in " ".join(lines)
    assert lines[1].startswith("*** Your nickname is Guest")
    assert lines[2].startswith("*** Welcome, Guest")
    assert client.chat.session.state is State.CHATTING
    clock.advance(0)  # the output flush
    assert clock.getDelayedCalls() == []


def test_chat_line_broadcast_without_echo() -> None:
    """
    A plain line goes to every other registered user as <nick> text, and
    the sender gets no echo.
    """
    factory = make_factory()
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    waiting = FakeClient(factory)
    waiting.output()
    alice.send(b"hello there\r\n")
    assert alice.lines() == []
    assert bob.lines() == ["<alice> hello there"]
    assert carol.lines() == ["<alice> hello there"]
    assert waiting.lines() == []


def test_blank_lines_ignored() -> None:
    """
    Empty and whitespace-only lines are not broadcast and get no error.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"\r\n   \n\t\r\n")
    assert alice.lines() == []
    assert bob.lines() == []


def test_lf_and_crlf_input_crlf_output() -> None:
    """
    Input lines may end in CRLF (telnet) or a bare LF (nc); every output
    line ends in CRLF.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"one\ntwo\r\nthree\n")
    assert bob.output() == b"<alice> one\r\n<alice> two\r\n<alice> three\r\n"


@pytest.mark.parametrize("ending", [b"\r", b"\r\x00", b"\r\n", b"\n"])
def test_every_line_ending_ends_a_line_at_once(ending: bytes) -> None:
    """
    A lone CR and telnet's CR NUL end a line as CRLF and LF do, at once:
    the line is not held until an LF comes, and the LF or NUL after a CR
    (even in the next packet) is not another line end.
    """
    alice, bob = chatters(make_factory(flood_rate=0), "alice", "bob")
    alice.send(b"one" + ending)
    assert bob.lines() == ["<alice> one"]
    alice.send(b"\n" if ending == b"\r" else b"")
    alice.send(b"two" + ending + b"three" + ending)
    assert bob.lines() == ["<alice> two", "<alice> three"]


def test_telnet_command_between_cr_and_lf() -> None:
    """
    Telnet commands may come anywhere, even between a CR and its LF; the
    text around them arrives as the same lines however the input is split.
    """
    data = b"hel\xff\xf1lo\r\xff\xfb\x01\nnext\xff\xff\r\n"
    seen = []
    for cut in range(len(data) + 1):
        alice, bob = chatters(make_factory(flood_rate=0), "alice", "bob")
        alice.send(data[:cut])
        alice.send(data[cut:])
        seen.append(bob.lines())
    assert seen[0] == ["<alice> hello", "<alice> next\ufffd"]
    assert all(lines == seen[0] for lines in seen)


def test_empty_subnegotiation_ignored() -> None:
    """
    An empty telnet subnegotiation (IAC SB IAC SE), which makes Twisted's
    parser raise IndexError, is ignored and the connection stays.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"a\xff\xfa\xff\xf0b\xff\xfa\x18\x00xterm\xff\xf0c\n")
    assert bob.lines() == ["<alice> abc"]
    assert not alice.closed


def test_option_refusals_go_through_the_sendq() -> None:
    """
    The refusals of a storm of telnet option offers go through the SendQ:
    a client that offers options and never reads the refusals is cut off
    at --max-sendq like any other non-reader, instead of making the server
    buffer refusals without bound.
    """
    factory = make_factory(max_sendq=4096, flood_bytes=0)
    alice, bob = chatters(factory, "alice", "bob")
    alice.transport.producer.pauseProducing()  # full of what it was sent
    for _ in range(1000):
        alice.send(b"\xff\xfb\x01" * 10)
        if alice.chat.session.state is State.CLOSED:
            break
    assert bob.lines() == ["*** alice has left (SendQ exceeded)"]
    assert alice.closed


def test_byte_budget_pauses_reading() -> None:
    """
    Input beyond the byte budget (flood_byte_burst bytes at once, then
    flood_bytes per second), newline or not, telnet negotiation included,
    pauses reading from the socket until the budget is no longer
    overdrawn; the bytes already received are still handled, in order.
    """
    clock = Clock()
    factory = make_factory(clock, flood_rate=0, flood_bytes=1000, flood_byte_burst=2000)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"\xff\xf1" * 500)  # 1000 bytes of telnet NOPs: within the burst
    assert alice.transport.producerState == "producing"
    alice.send(b"x" * 1500 + b"\nhello\n")  # 514 bytes over: 1993 were left
    assert alice.transport.producerState == "paused"
    assert bob.lines() == ["<alice> " + "x" * 1500, "<alice> hello"]
    clock.advance(0.5)
    assert alice.transport.producerState == "paused"
    clock.advance(0.02)
    assert alice.transport.producerState == "producing"


def test_byte_budget_and_flood_control_together() -> None:
    """
    Reading resumes only when neither the line budget nor the byte budget
    holds it back.
    """
    clock = Clock()
    factory = make_factory(
        clock, flood_rate=1, flood_burst=1, flood_bytes=1000, flood_byte_burst=1000
    )
    alice, bob = chatters(factory, "alice", "bob")
    clock.advance(10)
    alice.send(b"a\nb\n" + b"x" * 2000)  # 2 lines and 1000 bytes over budget
    assert bob.lines() == ["<alice> a"]
    assert alice.transport.producerState == "paused"
    clock.advance(1)  # the line budget allows "b"; the bytes are still overdrawn
    assert bob.lines() == ["<alice> b"]
    assert alice.transport.producerState == "paused"
    clock.advance(1.1)
    assert alice.transport.producerState == "producing"


def test_help() -> None:
    """
    /help (any case) lists every command as notices.
    """
    (alice,) = chatters(make_factory(), "alice")
    alice.send(b"/HeLp\n")
    lines = alice.lines()
    assert all(line.startswith("*** ") for line in lines)
    text = "\n".join(lines)
    for command in [
        "/help",
        "/who",
        "/names",
        "/users",
        "/msg",
        "/me",
        "/nick",
        "/quit",
        "/exit",
        ".exit",
        "//",
    ]:
        assert command in text


@pytest.mark.parametrize("command", [b"/who", b"/names", b"/users", b"/WHO"])
def test_who(command: bytes) -> None:
    """
    /who and its aliases list the nicknames in the current room, sorted.
    """
    factory = make_factory()
    alice, _, _ = chatters(factory, "alice", "Carol", "bob")
    alice.send(command + b"\n")
    assert alice.lines() == ["*** 3 users in #lobby: alice, bob, Carol"]


def test_private_message() -> None:
    """
    /msg NICK text reaches only NICK, marked private; the sender gets a
    confirmation with the recipient's spelling.
    """
    factory = make_factory()
    alice, bob, carol = chatters(factory, "alice", "Bob", "carol")
    alice.send(b"/msg bob psst, over here\n")
    assert bob.lines() == ["*alice* psst, over here"]
    assert alice.lines() == ["-> *Bob* psst, over here"]
    assert carol.lines() == []


def test_private_message_unknown_nickname() -> None:
    """
    /msg to a nickname nobody has gets an error and reaches nobody.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/msg nobody hello\n")
    assert alice.lines() == ["!!! No such nickname: nobody. /who lists who is online."]
    assert bob.lines() == []


@pytest.mark.parametrize("line", [b"/msg", b"/msg bob", b"/msg bob   "])
def test_private_message_usage(line: bytes) -> None:
    """
    /msg without a nickname or without text gets a usage error.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(line + b"\n")
    assert alice.lines() == ["!!! Usage: /msg NICK TEXT or /msg #ROOM TEXT"]
    assert bob.lines() == []


def test_me_action() -> None:
    """
    /me text shows "* nick text" to the others, with no echo.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/me waves\n")
    assert bob.lines() == ["* alice waves"]
    assert alice.lines() == []
    alice.send(b"/me\n")
    assert alice.lines() == ["!!! Usage: /me TEXT"]


def test_nick_change() -> None:
    """
    /nick NEW renames the user; the others see the change, the user gets a
    confirmation, and the old nickname becomes free.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"/nick alicia\n")
    assert bob.lines() == ["*** alice is now known as alicia"]
    assert alice.lines() == ["*** You are now known as alicia (was alice)."]
    assert factory.nicknames() == ["alicia", "bob"]
    alice.send(b"hi\n")
    assert bob.lines() == ["<alicia> hi"]
    FakeClient(factory).register("alice")


def test_nick_change_case_only() -> None:
    """
    A user may change only the case of their own nickname.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"/nick ALICE\n")
    assert bob.lines() == ["*** alice is now known as ALICE"]
    assert factory.nicknames() == ["ALICE", "bob"]


def test_nick_change_refused() -> None:
    """
    /nick to a taken or invalid nickname, or with no argument, gets an
    error; nothing changes and nobody else is told.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"/nick BOB\n")
    assert alice.lines() == ["!!! The nickname BOB is taken."]
    alice.send(b"/nick 9lives\n")
    assert alice.lines()[0].startswith("!!! A nickname starts with")
    alice.send(b"/nick\n")
    assert alice.lines() == ["!!! Usage: /nick NEWNICK [PASSWORD]"]
    assert bob.lines() == []
    assert factory.nicknames() == ["alice", "bob"]


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"/quit", "quit"),
        (b"/quit gone fishing", "gone fishing"),
        (b"/EXIT see you", "see you"),
        (b".exit", "quit"),
        (b".EXIT later", "later"),
    ],
)
def test_quit(line: bytes, reason: str) -> None:
    """
    /quit, /exit and .exit close the connection after a goodbye; the others
    see "*** nick has left (reason)".
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(line + b"\r\n")
    assert alice.lines() == ["*** Goodbye."]
    assert alice.closed
    assert bob.lines() == [f"*** alice has left ({reason})"]
    assert factory.nicknames() == ["bob"]


def test_lines_after_quit_ignored() -> None:
    """
    Lines that arrive in the same packet after /quit are not broadcast.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/quit\nafterwards\n")
    assert bob.lines() == ["*** alice has left (quit)"]


def test_dropped_connection_announced() -> None:
    """
    A connection that drops is announced as leaving with the reason
    "connection lost", and its nickname becomes free.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    alice.protocol.connectionLost(Failure(ConnectionLost()))
    assert bob.lines() == ["*** alice has left (connection lost)"]
    assert factory.nicknames() == ["bob"]


def test_unregistered_drop_is_silent() -> None:
    """
    A connection that drops before registering is not announced.
    """
    factory = make_factory()
    (bob,) = chatters(factory, "bob")
    FakeClient(factory).transport.loseConnection()
    assert bob.lines() == []


def test_double_slash_sends_literal_slash() -> None:
    """
    A line starting with // is sent as a chat line starting with a single /.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"//usr/bin is a directory\n")
    assert bob.lines() == ["<alice> /usr/bin is a directory"]


def test_unknown_command() -> None:
    """
    An unknown command gets an error naming /help and is not broadcast;
    a line merely starting with ".exit" is chat.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/dance now\n")
    assert alice.lines() == ["!!! Unknown command /dance. Type /help for the commands."]
    alice.send(b".exiting is fun\n")
    assert bob.lines() == ["<alice> .exiting is fun"]


def test_commands_before_registering() -> None:
    """
    At the nickname prompt /quit leaves; other commands get an error and
    the prompt again.
    """
    factory = make_factory()
    client = FakeClient(factory)
    client.output()
    client.send(b"/who\n")
    assert client.lines() == ["!!! Choose a nickname first; /quit leaves.", f"*** {PROMPT}"]
    client.send(b"/quit\n")
    assert client.lines() == ["*** Goodbye."]
    assert client.closed


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


# Bad input


def test_control_characters_and_escapes_removed() -> None:
    """
    ANSI escape sequences and C0/C1 control characters in chat text never
    reach other users; a tab becomes a space.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"\x1b[2J\x1b[31mred\x1b[0m\tand\x07 \xc2\x9b6nplain\x1b]0;pwned\x07!\n")
    assert bob.lines() == ["<alice> red and plain!"]


def test_invalid_utf8_replaced() -> None:
    """
    Invalid UTF-8 becomes U+FFFD; valid UTF-8 passes through.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"caf\xc3\xa9 \xc3\x28 \x80 ok\n")
    assert bob.lines() == ["<alice> café \ufffd( \ufffd ok"]


def test_telnet_negotiation_not_shown() -> None:
    """
    Telnet IAC sequences (here IP and AYT, as telnet sends for Ctrl-C, and
    an option offer) never appear as text; the offer is refused.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"he\xff\xf4llo\xff\xf6\xff\xfb\x18\r\n")
    assert bob.lines() == ["<alice> hello"]
    assert alice.output() == b"\xff\xfe\x18"  # IAC DONT TERMINAL-TYPE


def test_iac_in_output_not_doubled_crlf_kept() -> None:
    """
    Output lines end in exactly CRLF (no CR CR LF).
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"x\r\n")
    assert bob.output() == b"<alice> x\r\n"


def test_quit_reason_and_nickname_are_cleaned() -> None:
    """
    Quit reasons lose their control characters too.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/quit \x1b[5mbye\x1b[0m\x08\n")
    assert bob.lines() == ["*** alice has left (bye)"]


def test_long_line_rejected_connection_stays() -> None:
    """
    A line longer than max_line_length bytes gets an error and is thrown
    away up to its end, even when it arrives in pieces; the next line works.
    """
    factory = make_factory(max_line_length=100)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"x" * 60)
    alice.send(b"x" * 60)
    alice.send(b"y" * 500)
    assert alice.lines() == ["!!! Line too long: at most 100 bytes. It was not sent."]
    alice.send(b"z" * 50 + b"\nnext line\n")
    assert bob.lines() == ["<alice> next line"]
    assert not alice.closed


def test_long_line_then_more_lines_in_one_packet() -> None:
    """
    Lines that follow an over-long line in the same packet are kept.
    """
    factory = make_factory(max_line_length=100)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"before\n" + b"x" * 200 + b"\nafter\nand more\n")
    assert alice.lines() == ["!!! Line too long: at most 100 bytes. It was not sent."]
    assert bob.lines() == ["<alice> before", "<alice> after", "<alice> and more"]


def test_line_of_exactly_max_length_accepted() -> None:
    """
    A line of exactly max_line_length bytes is accepted.
    """
    factory = make_factory(max_line_length=100)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"a" * 100 + b"\n")
    assert bob.lines() == ["<alice> " + "a" * 100]


def test_endless_line_uses_bounded_memory() -> None:
    """
    A connection that sends megabytes with no newline gets one error and
    the server keeps no more than max_line_length bytes of it.
    """
    factory = make_factory(max_line_length=100)
    (alice,) = chatters(factory, "alice")
    for _ in range(1000):
        alice.send(b"x" * 4096)
    assert alice.lines() == ["!!! Line too long: at most 100 bytes. It was not sent."]
    assert len(alice.chat._buffer) <= 100
    assert not alice.closed


def test_registration_timeout() -> None:
    """
    A connection that has not chosen a nickname within the registration
    timeout is told why and closed.
    """
    clock = Clock()
    factory = make_factory(clock, registration_timeout=30)
    client = FakeClient(factory)
    client.output()
    clock.advance(29.9)
    assert not client.closed
    clock.advance(0.1)
    assert client.lines() == ["!!! No nickname chosen within 30 seconds; goodbye."]
    assert client.closed


def test_registration_cancels_timeout() -> None:
    """
    Registering in time cancels the registration timeout; so does leaving.
    """
    clock = Clock()
    factory = make_factory(clock, registration_timeout=30)
    FakeClient(factory).register("alice")
    FakeClient(factory).transport.loseConnection()
    clock.advance(0)  # the output flush
    assert clock.getDelayedCalls() == []


def test_shutdown_notice() -> None:
    """
    On shutdown every connection, registered or not, gets
    "*** server shutting down" and is closed; the Deferred fires once all
    have closed.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    waiting = FakeClient(factory)
    waiting.output()
    done = factory.shutdown()
    for client in (alice, bob, waiting):
        assert client.lines() == ["*** server shutting down"]
        assert client.closed
    assert done.called


@pytest.mark.parametrize("argument", ["²", "٣", "0", "-1", "1.5", "x"])
def test_history_argument_must_be_ascii_digits(argument: str) -> None:
    """
    /history N takes N in ASCII digits from 1: other digits (a
    superscript two, an Arabic-Indic three), which str.isdigit() accepts
    and int() may not, get the usage line instead of an exception.
    """
    factory = make_factory(history=History(None, Clock()))
    (alice,) = chatters(factory, "alice")
    alice.send(f"/history {argument}\n".encode())
    assert alice.lines() == ["!!! Usage: /history [#ROOM] [N], N from 1 to 200"]
    assert not alice.closed


def test_iac_followed_by_non_command_ignored() -> None:
    """
    IAC followed by a byte that is no telnet command (which Twisted's
    parser rejects with ValueError) is ignored; the text around it arrives
    and the connection stays.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"ab\xff")
    alice.send(b"\x00cd\xff\xf0ef\n")
    assert bob.lines() == ["<alice> abcdef"]
    assert not alice.closed


def logged(events: list[dict]) -> str:
    """
    The formatted text of captured log events, one per line.
    """
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(event) for event in events)


def test_logging_without_message_text() -> None:
    """
    The log records connections with their peer address, registrations,
    nickname changes, private-message metadata and quits with their
    reason, but no chat or private text unless log_messages is set.
    """
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        factory = make_factory()
        alice, bob = chatters(factory, "alice", "bob")
        alice.send(
            b"top secret plan\n/me hides\n/msg bob private words\n/nick alicia\n/quit tired\n"
        )
    text = logged(events)
    assert "connection from 127.0.0.1:50000" in text
    assert "127.0.0.1:50001 registered as bob" in text
    assert "private message from alice to bob, 13 characters" in text
    assert "alice is now known as alicia" in text
    assert "alicia quit (tired)" in text
    assert "secret" not in text and "hides" not in text and "private words" not in text


def test_logging_messages_when_asked() -> None:
    """
    With log_messages the text of chat lines and actions is logged too;
    private message text still is not.
    """
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        alice, bob = chatters(make_factory(log_messages=True), "alice", "bob")
        alice.send(b"top secret plan\n/me hides\n/msg bob private words\n")
    text = logged(events)
    assert "<alice> top secret plan" in text
    assert "* alice hides" in text
    assert "private words" not in text


def test_describe_address() -> None:
    """
    Peer addresses are logged as people write them.
    """
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

    from twistedchat.protocol import describe_address

    assert describe_address(IPv4Address("TCP", "10.0.0.1", 4000)) == "10.0.0.1:4000"
    assert describe_address(IPv6Address("TCP", "::1", 4000)) == "[::1]:4000"
    assert describe_address(UNIXAddress(b"/run/chat.sock")) == "unix:/run/chat.sock"
    assert describe_address(UNIXAddress(None)) == "unix:?"


@pytest.mark.parametrize("cut", [0, 1, 7])
def test_quit_typed_ahead_of_the_welcome(cut: int) -> None:
    """
    Lines sent before the answer to a nickname line are ignored, but a
    /quit among them still leaves, however the input is split (Hypothesis
    found a split where it was ignored with the rest).
    """
    factory = make_factory()
    client = FakeClient(factory)
    data = b"\r\n/who\r\n/quit \r\n"
    client.send(data[:cut])
    client.send(data[cut:])
    assert client.lines()[-1] == "*** Goodbye."
    assert client.closed
