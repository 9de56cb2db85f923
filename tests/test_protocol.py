"""
Tests for L{twistedchat.protocol}: what a telnet or nc user sees. Framing,
telnet negotiation, decoding and cleaning, long lines, pausing input, the
greeting and the text of each kind of line are tested here; the chat rules
behind them are tested at the session level (tests/test_session*.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from fakeclients import FakeClient, chatters, make_factory
from twisted.internet import reactor
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from twistedchat.database import make_pool, open_database
from twistedchat.events import Action, ChatLine, Left, PrivateMessage, SearchResults
from twistedchat.history import History, Record, load_recent
from twistedchat.protocol import PROMPT
from twistedchat.session import HELP, State


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


def test_welcome_and_joined_lines() -> None:
    """
    The welcome reads "*** Welcome, NICK! N users online: A, B, C. Type
    /help for the commands."; the others see "*** NICK has joined".
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


def test_first_user_welcome_is_singular() -> None:
    """
    The first user is told "1 user online".
    """
    client = FakeClient(make_factory())
    client.output()
    client.send(b"solo\n")
    assert client.lines()[0].startswith("*** Welcome, solo! 1 user online: solo.")


def test_empty_line_at_prompt_asks_for_random_nickname() -> None:
    """
    An empty line at the nickname prompt asks for a random nickname, as
    the prompt says: the user is told it, then welcomed under it.
    """
    client = FakeClient(make_factory())
    client.output()
    client.send(b"\r\n")
    nickname = client.chat.nickname
    assert nickname is not None and nickname.startswith("Guest")
    assert client.lines()[:2] == [
        f"*** Your nickname is {nickname}; /nick changes it.",
        f"*** Welcome, {nickname}! 1 user online: {nickname}. Type /help for the commands.",
    ]


def test_no_prompt_with_random_nicknames() -> None:
    """
    With random_nicknames the greeting is followed by the random nickname
    and the welcome, without the nickname prompt.
    """
    client = FakeClient(make_factory(random_nicknames=True))
    lines = client.lines()
    assert f"*** {PROMPT}" not in lines
    assert lines[0].startswith("*** This is ")
    assert lines[1].startswith("*** Your nickname is Guest")
    assert lines[2].startswith("*** Welcome, Guest")


def test_chat_line() -> None:
    """
    A chat line is shown to the others as "<nick> text".
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"hello there\r\n")
    assert bob.lines() == ["<alice> hello there"]


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
    /help is shown as one notice line ("*** ") per line of the help text.
    """
    (alice,) = chatters(make_factory(), "alice")
    alice.send(b"/help\n")
    assert alice.lines() == [f"*** {line}" for line in HELP.splitlines()]


def test_who() -> None:
    """
    /who is shown as "*** N users in #ROOM: A, B, C".
    """
    alice, _, _ = chatters(make_factory(), "alice", "Carol", "bob")
    alice.send(b"/who\n")
    assert alice.lines() == ["*** 3 users in #lobby: alice, bob, Carol"]


def test_private_message() -> None:
    """
    A private message is shown to its recipient as "*sender* text" and to
    its sender as "-> *recipient* text", with the recipient's spelling.
    """
    alice, bob = chatters(make_factory(), "alice", "Bob")
    alice.send(b"/msg bob psst, over here\n")
    assert bob.lines() == ["*alice* psst, over here"]
    assert alice.lines() == ["-> *Bob* psst, over here"]


def test_me_action() -> None:
    """
    /me text is shown to the others as "* nick text".
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/me waves\n")
    assert bob.lines() == ["* alice waves"]


def test_nick_change() -> None:
    """
    A rename is shown to the others as "*** OLD is now known as NEW" and
    to the user as "*** You are now known as NEW (was OLD).".
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/nick alicia\n")
    assert bob.lines() == ["*** alice is now known as alicia"]
    assert alice.lines() == ["*** You are now known as alicia (was alice)."]


def test_lines_after_quit_ignored() -> None:
    """
    Lines that arrive in the same packet after /quit are not broadcast.
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.send(b"/quit\nafterwards\n")
    assert bob.lines() == ["*** alice has left (quit)"]


def test_dropped_connection_announced() -> None:
    """
    A connection that drops leaves the chat with the reason "connection
    lost", shown to the others as "*** nick has left (reason)".
    """
    alice, bob = chatters(make_factory(), "alice", "bob")
    alice.protocol.connectionLost(Failure(ConnectionLost()))
    assert bob.lines() == ["*** alice has left (connection lost)"]


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


def test_connection_logged_with_peer_address() -> None:
    """
    The log records each connection, its registration and its closing
    with the peer address of its transport.
    """
    from twisted.logger import capturedLogs, formatEvent

    with capturedLogs() as events:
        alice, _ = chatters(make_factory(), "alice", "bob")
        alice.send(b"/quit\n")
    text = "\n".join(formatEvent(event) for event in events)
    assert "connection from 127.0.0.1:50000" in text
    assert "127.0.0.1:50001 registered as bob" in text
    assert "connection from 127.0.0.1:50000 closed (alice)" in text


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


def search_reply(client: FakeClient, records: list[Record], viewer: str | None = None) -> None:
    """
    Have C{client}'s connection show the answer to a search for "plan" in
    #lobby that found C{records}.
    """
    client.chat.reply(SearchResults("plan", "#lobby", records, viewer))


def test_search_results_lines() -> None:
    """
    Search results read "*** N matches for "TEXT" in #ROOM, newest first:",
    then each match with its UTC time as a past line (a private message
    the viewer sent as they sent it), then "*** End of search.".
    """
    (alice,) = chatters(make_factory(), "alice")
    search_reply(
        alice,
        [
            Record(60.0, ChatLine("bob", "the plan", "#lobby"), "#lobby"),
            Record(30.0, PrivateMessage("alice", "bob", "my plan")),
            Record(0.0, Action("bob", "plans", "#lobby"), "#lobby"),
        ],
        "alice",
    )
    assert alice.lines() == [
        '*** 3 matches for "plan" in #lobby, newest first:',
        "[1970-01-01 00:01:00 UTC] <bob> the plan",
        "[1970-01-01 00:00:30 UTC] -> *bob* my plan",
        "[1970-01-01 00:00:00 UTC] * bob plans",
        "*** End of search.",
    ]


def test_search_results_one_match_in_several_rooms() -> None:
    """
    One match is "1 match"; a user in several rooms sees its room.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    alice.send(b"/join #dev\r\n")
    alice.output()
    search_reply(alice, [Record(0.0, ChatLine("bob", "the plan", "#lobby"), "#lobby")])
    assert alice.lines() == [
        '*** 1 match for "plan" in #lobby, newest first:',
        "[1970-01-01 00:00:00 UTC] [#lobby] <bob> the plan",
        "*** End of search.",
    ]


def test_no_search_results() -> None:
    """
    A search that found nothing reads "*** No matches for "TEXT" in
    #ROOM.".
    """
    (alice,) = chatters(make_factory(), "alice")
    search_reply(alice, [])
    assert alice.lines() == ['*** No matches for "plan" in #lobby.']


@pytest_twisted.ensureDeferred
async def test_search_command_over_telnet(tmp_path: Path) -> None:
    """
    /search over telnet shows what was said that matches, once it is read
    from the database; lines typed meanwhile wait for it.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    clock = Clock()
    history = History(make_pool(path, reactor), clock)
    factory = make_factory(clock, history=history, history_on_join=0)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"the plan\r\n")
    bob.output()
    bob.send(b"/search the plan\r\nafter\r\n")
    assert alice.lines() == []
    # The pool answers in order: once this search is answered, so is bob's.
    await history.search("plan", "#lobby")
    assert bob.lines() == [
        '*** 1 match for "the plan" in #lobby, newest first:',
        "[1970-01-01 00:00:00 UTC] <alice> the plan",
        "*** End of search.",
    ]
    assert alice.lines() == ["<bob> after"]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_quit_read_back_from_disk_replayed_as_a_quit(tmp_path: Path) -> None:
    """
    A quit read back from the database after a restart is replayed over
    telnet as it was shown live, "*** NICK has left (REASON)", with no
    room before it, even to a user in several rooms, who sees the room
    before each chat line.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    history = History(make_pool(path, reactor), Clock())
    history.record(ChatLine("bob", "bye all", "#lobby"), "#lobby")
    history.record(Left("bob", "off to bed"), "#lobby")
    await history.stop()
    (recent,) = open_database(path, lambda connection: load_recent(connection, 20, "#lobby"))
    clock = Clock()
    factory = make_factory(clock, history=History(None, clock, recent), history_on_join=0)
    (alice,) = chatters(factory, "alice")
    alice.send(b"/join #dev\r\n")
    alice.output()
    alice.send(b"/history #lobby\r\n")
    assert alice.lines() == [
        "*** The last line said in #lobby:",
        "[1970-01-01 00:00:00 UTC] [#lobby] <bob> bye all",
        "[1970-01-01 00:00:00 UTC] *** bob has left (off to bed)",
        "[1970-01-01 00:00:00 UTC] [#lobby] *** alice has joined",
        "*** End of history.",
    ]
