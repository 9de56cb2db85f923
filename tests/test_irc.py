"""
Tests for L{twistedchat.irc}, the IRC front end: IRC
clients over L{StringTransportWithDisconnection}, replies parsed with
Twisted Words' C{parsemsg}, sharing the chat with telnet users.
"""

from __future__ import annotations

import base64

import pytest
from fakeclients import FakeClient, make_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from test_session import accounts_chat, chat
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.words.protocols.irc import parsemsg

from twistedchat.factory import ChatFactory
from twistedchat.irc import (
    CAPABILITIES,
    MAX_LINE,
    PING_INTERVAL,
    PING_TIMEOUT,
    IRCFactory,
    Message,
    irc_server_name,
    parse_message,
    split_text,
)


class IRCClient:
    """
    One IRC connection to C{chat}'s IRC front end.
    """

    def __init__(self, chat_factory: ChatFactory, port: int = 50100) -> None:
        self.chat = chat_factory
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.protocol = IRCFactory(chat_factory).buildProtocol(address)
        self.transport = StringTransportWithDisconnection(peerAddress=address)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)

    def send(self, *lines: str) -> None:
        """
        Send C{lines}, each ending in CRLF.
        """
        self.protocol.dataReceived(b"".join(line.encode() + b"\r\n" for line in lines))

    def replies(self) -> list[tuple[str, str, list[str]]]:
        """
        Return what the server sent since the last call, parsed:
        (source, command, params).
        """
        self.chat.clock.advance(0)  # type: ignore[attr-defined]
        data = self.transport.value().decode()
        self.transport.clear()
        assert data == "" or data.endswith("\r\n"), data
        return [parsemsg(line) for line in data.split("\r\n") if line]

    def commands(self) -> list[str]:
        """
        Return the command or numeric of each line sent since the last
        call.
        """
        return [command for _, command, _ in self.replies()]

    def register(self, nickname: str) -> list[tuple[str, str, list[str]]]:
        """
        Register as C{nickname} and return the welcome burst.
        """
        self.send(f"NICK {nickname}", f"USER {nickname} 0 * :A Tester")
        return self.replies()


def test_parse_message() -> None:
    """
    Lines are parsed as RFC 1459 and IRCv3 message-tags describe: tags
    (escaped values unescaped), source, command in upper case, middle and
    trailing parameters.
    """
    assert parse_message("@a=1;b=x\\sy\\:z :nick!u@h privmsg #room :hello there") == Message(
        "PRIVMSG", ["#room", "hello there"], {"a": "1", "b": "x y;z"}, "nick!u@h"
    )
    assert parse_message("PING") == Message("PING")
    assert parse_message("JOIN #a,#b") == Message("JOIN", ["#a,#b"])


def test_registration_burst() -> None:
    """
    NICK and USER register: 001 to 005 (ISUPPORT with the RFC 1459 case
    mapping and the # channels), 422 with no MOTD, then the default room
    as a JOIN with its names.
    """
    client = IRCClient(chat())
    replies = client.register("alice")
    commands = [command for _, command, _ in replies]
    assert commands[:5] == ["001", "002", "003", "004", "005"]
    isupport = replies[4][2]
    assert "CASEMAPPING=rfc1459" in isupport and "CHANTYPES=#" in isupport
    assert "PREFIX=(o)@" in isupport
    assert "TARGMAX=JOIN:,KICK:4,LIST:,NAMES:,NOTICE:4,PART:,PRIVMSG:4,WHOIS:1" in isupport
    assert {"NICKLEN=16", "CHANNELLEN=50", "TOPICLEN=390", "NETWORK=twistedchat.irc"} <= set(
        isupport
    )
    assert "422" in commands
    join = replies[commands.index("JOIN")]
    assert join[0].startswith("alice!") and join[2] == ["#lobby"]
    assert ("353", ["alice", "=", "#lobby", "alice"]) in [(c, p) for _, c, p in replies]
    assert commands[-1] == "366"


def test_capability_negotiation_holds_registration() -> None:
    """
    A client that started CAP negotiation is registered only after CAP
    END; CAP LS lists echo-message, multi-prefix and server-time; a
    request for an unknown capability is refused whole (NAK), one for
    known ones acknowledged (ACK).
    """
    client = IRCClient(chat())
    client.send("CAP LS 302")
    assert client.replies() == [
        ("twistedchat.irc", "CAP", ["*", "LS", " ".join(sorted(CAPABILITIES - {"sasl"}))])
    ]
    client.send("CAP REQ :server-time sasl")
    assert client.replies() == [("twistedchat.irc", "CAP", ["*", "NAK", "server-time sasl"])]
    client.send("CAP REQ :server-time echo-message")
    assert client.replies() == [
        ("twistedchat.irc", "CAP", ["*", "ACK", "server-time echo-message"])
    ]
    client.send("NICK alice", "USER alice 0 * :A")
    assert client.replies() == []
    client.send("CAP END")
    assert client.commands()[0] == "001"


def test_echo_message_and_server_time() -> None:
    """
    With echo-message, the client's own PRIVMSG comes back to it; with
    server-time, events carry a time tag in UTC, to the millisecond.
    """
    factory = chat()
    factory.clock.advance(1795868400.25)  # type: ignore[attr-defined]
    client = IRCClient(factory)
    client.send("CAP REQ :echo-message server-time", "CAP END")
    client.register("alice")
    client.send("PRIVMSG #lobby :hello")
    factory.clock.advance(0)  # type: ignore[attr-defined]
    data = client.transport.value().decode()
    assert data == (
        "@time=2026-11-28T12:20:00.250Z :alice!alice@twistedchat PRIVMSG #lobby :hello\r\n"
    )


def test_irc_and_telnet_users_talk() -> None:
    """
    An IRC user's PRIVMSG to a channel reaches a telnet user in that room
    as a chat line, and the telnet user's line reaches the IRC user as a
    PRIVMSG from nick!nick@twistedchat; actions go both ways as CTCP
    ACTION.
    """
    factory = chat()
    irc_user = IRCClient(factory)
    irc_user.register("alice")
    telnet = FakeClient(factory).register("bob")
    irc_user.replies()
    irc_user.send("PRIVMSG #lobby :hello from IRC")
    assert telnet.lines() == ["<alice> hello from IRC"]
    telnet.send(b"hello from telnet\r\n/me waves\r\n")
    assert irc_user.replies() == [
        ("bob!bob@twistedchat", "PRIVMSG", ["#lobby", "hello from telnet"]),
        ("bob!bob@twistedchat", "PRIVMSG", ["#lobby", "\x01ACTION waves\x01"]),
    ]
    irc_user.send("PRIVMSG #lobby :\x01ACTION nods\x01", "PRIVMSG bob :psst")
    assert telnet.lines() == ["* alice nods", "*alice* psst"]


def test_join_part_and_names() -> None:
    """
    JOIN takes several channels, each answered with JOIN, names and end of
    names; the creator is an operator (@); PART answers with PART.
    """
    client = IRCClient(chat())
    client.register("alice")
    client.send("JOIN #a,#b")
    replies = client.replies()
    assert [p[0] for _, c, p in replies if c == "JOIN"] == ["#a", "#b"]
    assert ("353", ["alice", "=", "#a", "@alice"]) in [(c, p) for _, c, p in replies]
    client.send("PART #a :bye")
    assert client.replies() == [("alice!alice@twistedchat", "PART", ["#a", "bye"])]
    client.send("PART #a")
    assert client.commands() == ["442"]
    client.send("NAMES #a", "LIST #b", "JOIN 0")
    assert [(c, p[1] if c.isdigit() else p[0]) for _, c, p in client.replies()] == [
        ("366", "#a"),
        ("321", "Channel"),
        ("322", "#b"),
        ("323", "End of /LIST"),
        ("PART", "#lobby"),
        ("PART", "#b"),
    ]


def test_kick_and_modes() -> None:
    """
    A channel operator's KICK removes a member (everyone sees KICK), MODE
    +o makes an operator, +t locks the topic, +b bans (refused JOIN: 474);
    a member who is no operator gets 482; MODE with no change shows the
    channel's modes (324).
    """
    factory = chat()
    op = IRCClient(factory)
    op.register("alice")
    member = IRCClient(factory, port=50104)
    member.register("bob")
    op.send("JOIN #dev")
    member.send("JOIN #dev")
    op.replies()
    member.replies()
    member.send("KICK #dev alice :no")
    assert member.commands() == ["482"]
    op.send("MODE #dev +t")
    assert ("alice!alice@twistedchat", "MODE", ["#dev", "+t"]) in member.replies()
    op.send("MODE #dev")
    assert op.replies()[-1][1:] == ("324", ["alice", "#dev", "+nt"])
    op.send("KICK #dev bob :spam")
    assert ("alice!alice@twistedchat", "KICK", ["#dev", "bob", "spam"]) in member.replies()
    op.send("MODE #dev +b *!*bob@twistedchat")  # as irssi's /ban bob
    assert op.replies()[-1] == ("alice!alice@twistedchat", "MODE", ["#dev", "+b", "bob!*@*"])
    member.send("JOIN #dev")
    assert member.commands() == ["474"]


def test_history_replayed_as_notices() -> None:
    """
    Joining a room with history replays it as server notices to the
    channel with their times, never as live PRIVMSG or JOIN lines.
    """
    factory = chat()
    telnet = FakeClient(factory).register("bob")
    telnet.send(b"said before\r\n")
    client = IRCClient(factory)
    replies = client.register("alice")
    notices = [p for _, c, p in replies if c == "NOTICE" and p[0] == "#lobby"]
    assert [text for _, text in notices] == [
        "The last line said here:",
        "[1970-01-01 00:00:00 UTC] *** bob has joined",
        "[1970-01-01 00:00:00 UTC] <bob> said before",
        "End of history.",
    ]
    assert "PRIVMSG" not in [c for _, c, _ in replies]


def test_formatting_codes_removed() -> None:
    """
    IRC colour and formatting codes are removed whole from what an IRC
    user says, digits included, before others see it.
    """
    factory = chat()
    client = IRCClient(factory)
    client.register("alice")
    telnet = FakeClient(factory).register("bob")
    client.send("PRIVMSG #lobby :\x0304,01red\x03 and \x02bold\x0f")
    assert telnet.lines() == ["<alice> red and bold"]


def test_message_to_a_room_one_is_not_in() -> None:
    """
    A PRIVMSG to a room one is not in gets 404 (cannot send to channel);
    the ban list asked for on joining (MODE #room b) ends with 368.
    """
    factory = chat()
    IRCClient(factory, port=50105).register("bob")
    client = IRCClient(factory)
    client.register("alice")
    other = IRCClient(factory, port=50106)
    other.register("carol")
    other.send("JOIN #elsewhere")
    client.replies()
    client.send("PRIVMSG #elsewhere :hi", "MODE #lobby b")
    assert client.commands() == ["404", "368"]


def test_who_lists_a_room() -> None:
    """
    WHO #room answers one 352 per member, operators flagged H@, every user
    shown as user@twistedchat, then 315.
    """
    factory = chat()
    client = IRCClient(factory)
    client.register("alice")
    client.send("JOIN #dev")
    client.replies()
    client.send("WHO #dev")
    assert client.replies() == [
        (
            "twistedchat.irc",
            "352",
            ["alice", "#dev", "alice", "twistedchat", "twistedchat.irc", "alice", "H@", "0 alice"],
        ),
        ("twistedchat.irc", "315", ["alice", "#dev", "End of /WHO list"]),
    ]


def test_errors_are_numerics() -> None:
    """
    Unknown commands get 421, commands before registration 451, a missing
    parameter 461, a nickname in use 433, a message to nobody 401.
    """
    factory = chat()
    IRCClient(factory, port=50101).register("taken")
    client = IRCClient(factory)
    client.send("JOIN #a")
    assert client.commands() == ["451"]
    client.send("NICK taken", "USER x 0 * :x")
    assert client.commands() == ["433"]
    client.register("alice")
    client.send("FLY", "JOIN", "PRIVMSG nobody :hi")
    assert client.commands() == ["421", "461", "401"]


def test_ping_pong_and_quit() -> None:
    """
    PING is answered with PONG and its token; QUIT with ERROR last, then
    the connection closes and the others see the QUIT.
    """
    factory = chat()
    watcher = IRCClient(factory, port=50102)
    watcher.register("bob")
    client = IRCClient(factory)
    client.register("alice")
    watcher.replies()
    client.send("PING :token123")
    assert client.replies() == [("twistedchat.irc", "PONG", ["twistedchat.irc", "token123"])]
    client.send("QUIT :gone fishing")
    assert client.commands()[-1] == "ERROR"
    assert not client.transport.connected
    assert watcher.replies() == [("alice!alice@twistedchat", "QUIT", ["gone fishing"])]


def test_idle_client_pinged_then_dropped() -> None:
    """
    An IRC client silent for PING_INTERVAL seconds is sent a PING; one
    that answers stays; one that does not within PING_TIMEOUT is dropped
    with ERROR, and the others see it leave for "Ping timeout" (a telnet
    user here, who is never pinged).
    """
    factory = chat()
    client = IRCClient(factory)
    client.register("alice")
    watcher = FakeClient(factory).register("bob")
    clock = factory.clock
    clock.advance(PING_INTERVAL)  # type: ignore[attr-defined]
    assert client.replies()[-1] == ("", "PING", ["twistedchat.irc"])
    client.send("PONG :twistedchat")
    clock.advance(PING_TIMEOUT + 1)  # type: ignore[attr-defined]
    assert client.transport.connected
    clock.advance(PING_INTERVAL)  # type: ignore[attr-defined]
    clock.advance(PING_TIMEOUT)  # type: ignore[attr-defined]
    assert client.commands()[-1] == "ERROR"
    assert not client.transport.connected
    assert watcher.lines() == ["*** alice has left (Ping timeout: 180 seconds)"]


def test_long_line_refused_and_connection_stays() -> None:
    """
    A line longer than IRC allows gets 417 and is thrown away to its end;
    the next line is handled.
    """
    client = IRCClient(chat())
    client.register("alice")
    client.send("PRIVMSG #lobby :" + "x" * (2 * MAX_LINE), "PING :after")
    assert client.commands() == ["417", "PONG"]


def test_nick_change_tells_the_client() -> None:
    """
    NICK after registration renames the user and tells the client with a
    NICK line from its old nickname.
    """
    client = IRCClient(chat())
    client.register("alice")
    client.send("NICK alicia")
    replies = client.replies()
    assert ("alice!alice@twistedchat", "NICK", ["alicia"]) in replies


@given(st.text(max_size=600), st.integers(min_value=4, max_value=300))
def test_split_text(text: str, limit: int) -> None:
    """
    split_text cuts text into pieces of at most the limit in UTF-8 bytes,
    never inside a character, and loses nothing.
    """
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(len(piece.encode("utf-8")) <= limit for piece in pieces)


def test_long_line_split_for_irc_users() -> None:
    """
    A telnet user's line longer than IRC's 512 bytes reaches an IRC user
    as several PRIVMSG lines, each within 512 bytes with its CRLF, which
    together hold the whole text.
    """
    factory = chat()
    irc_user = IRCClient(factory)
    irc_user.register("alice")
    telnet = FakeClient(factory).register("bob")
    irc_user.replies()
    text = " ".join(["wörd"] * 300)
    telnet.send(text.encode() + b"\r\n")
    factory.clock.advance(0)  # type: ignore[attr-defined]
    data = irc_user.transport.value().decode()
    lines = [line for line in data.split("\r\n") if line]
    assert len(lines) > 1
    assert all(len(line.encode()) + 2 <= MAX_LINE for line in lines)
    assert "".join(parsemsg(line)[2][1] for line in lines) == text


#: IRC-shaped lines for the property test: commands of the front end,
#: with parameters holding spaces, colons, commas, CTCP, controls and
#: invalid UTF-8.
_WORDS = st.sampled_from(
    ["#lobby", "#dev", "bob", "NickServ", ":", ":x y", "\x01ACTION", "\x01VERSION\x01", "*"]
)
_COMMANDS = st.sampled_from(
    "PRIVMSG NOTICE JOIN PART TOPIC NAMES LIST WHO WHOIS KICK MODE AWAY NICK PING CAP "
    "AUTHENTICATE TAGMSG USERHOST ISON HISTORY SEARCH NS FOO 001".split()
)
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
_LINES = st.builds(
    lambda tags, command, words, text, junk: (
        ((f"@{tags} " if tags else "") + " ".join([command, *words]) + f" :{text}").encode(
            "utf-8", "surrogatepass"
        )
        + junk
        + b"\r\n"
    ),
    st.sampled_from(["", "a=b\\", "+typing=active;time=x", "x=" + "y" * 50]),
    _COMMANDS,
    st.lists(_WORDS, max_size=3),
    _TEXT,
    st.sampled_from([b"", b"\xff\xfe", b"\r", b"\x00", b"\x1b[2J"]),
)


def assert_irc_lines(data: bytes) -> None:
    """
    C{data} is whole IRC lines: each ends in CRLF, holds no CR, LF or NUL
    inside, has at most 512 bytes without its tags, and parses.
    """
    assert data == b"" or data.endswith(b"\r\n"), data
    for line in data.split(b"\r\n")[:-1]:
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line, line
        body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
        assert len(body) + 2 <= MAX_LINE, line
        parsemsg(body.decode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(_LINES, st.binary(max_size=80)), max_size=12))
def test_any_input_is_handled(chunks: list[bytes]) -> None:
    """
    Whatever an IRC client sends (IRC-shaped lines with odd parameters,
    tags, controls and invalid UTF-8, or any bytes), the server never
    raises, and what it writes to that client, to another IRC user and to
    a telnet user in its room is whole, well-formed lines: nothing the
    client sent can end another user's line or start a command there.
    """
    factory = chat()
    telnet = FakeClient(factory).register("carol")
    bob = IRCClient(factory, 50101)
    bob.send("CAP REQ :server-time message-tags account-tag away-notify echo-message", "CAP END")
    bob.register("bob")
    client = IRCClient(factory, 50102)
    client.register("alice")
    for chunk in chunks:
        if not client.transport.connected:
            break
        client.protocol.dataReceived(chunk)
    factory.clock.advance(2)  # type: ignore[attr-defined]
    for irc_user in (client, bob):
        assert_irc_lines(irc_user.transport.value())
    for line in telnet.lines():
        assert "\x1b" not in line and "\x00" not in line and "\x01" not in line, line


PASSWORD = "correct-horse"


def plain(authzid: str, authcid: str, password: str) -> str:
    """
    A SASL PLAIN response (RFC 4616), base64-encoded.
    """
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


def registered_alice() -> tuple[ChatFactory, IRCClient]:
    """
    A server with accounts where alice, online over IRC, registered her
    nickname with NickServ.
    """
    factory = accounts_chat()
    alice = IRCClient(factory)
    alice.register("alice")
    alice.send(f"PRIVMSG NickServ :REGISTER {PASSWORD}")
    return factory, alice


def sasl_start(client: IRCClient, nickname: str) -> list[tuple[str, str, list[str]]]:
    """
    Start registering C{client} as C{nickname} with CAP LS 302 and the
    sasl capability, up to the AUTHENTICATE + that asks for the response.
    """
    client.send("CAP LS 302", f"NICK {nickname}", "USER u 0 * :U", "CAP REQ :sasl")
    client.send("AUTHENTICATE PLAIN")
    return client.replies()


def test_nickserv_register_logs_in() -> None:
    """
    PRIVMSG NickServ :REGISTER PASSWORD registers the nickname: NickServ
    says so in a NOTICE from NickServ!NickServ@services, and 900 tells the
    client the account it is logged in as.
    """
    factory = accounts_chat()
    alice = IRCClient(factory)
    alice.register("alice")
    alice.send(f"PRIVMSG NickServ :REGISTER {PASSWORD}")
    replies = alice.replies()
    assert replies[0] == (
        "NickServ!NickServ@services",
        "NOTICE",
        [
            "alice",
            "The nickname alice is now registered to you; from now on it needs this password.",
        ],
    )
    assert replies[1][1:] == (
        "900",
        ["alice", "alice!alice@twistedchat", "alice", "You are now logged in as alice"],
    )


def test_sasl_plain_logs_in() -> None:
    """
    CAP LS 302 offers sasl=PLAIN; AUTHENTICATE PLAIN with the right
    password gives 900 and 903, and CAP END registers the client as the
    account's nickname.
    """
    factory, old = registered_alice()
    old.send("QUIT")
    alice = IRCClient(factory, port=50101)
    replies = sasl_start(alice, "alice")
    ls = next(params for _, command, params in replies if command == "CAP" and params[1] == "LS")
    assert "sasl=PLAIN" in ls[2].split()
    assert ("AUTHENTICATE", ["+"]) in [(c, p) for _, c, p in replies]
    alice.send(f"AUTHENTICATE {plain('', 'alice', PASSWORD)}")
    assert alice.commands() == ["900", "903"]
    alice.send("CAP END")
    replies = alice.replies()
    assert replies[0][1:] == ("001", replies[0][2]) and replies[0][2][0] == "alice"
    assert "900" not in [command for _, command, _ in replies]
    assert factory.participant("alice") is alice.protocol.session


def test_a_nickname_in_use_is_regained_on_purpose() -> None:
    """
    A client logged in with SASL whose nickname another connection holds
    (its stale one, or a second client of the same account) is not given
    it at registration, or two clients would take it from each other at
    every reconnect: 433, then, once welcomed under another nickname, a
    NickServ notice saying how to take it; NickServ REGAIN alice then
    takes it, closing the other connection.
    """
    factory, old = registered_alice()
    old.replies()
    alice = IRCClient(factory, port=50101)
    sasl_start(alice, "alice")
    alice.send(f"AUTHENTICATE {plain('', 'alice', PASSWORD)}", "CAP END")
    replies = alice.replies()
    assert [c for _, c, _ in replies][2] == "433"
    alice.send("NICK alice_")
    replies = alice.replies()
    assert (
        "NickServ!NickServ@services",
        "NOTICE",
        [
            "alice_",
            "You are alice_: alice is registered or in use. "
            "/msg NickServ IDENTIFY alice PASSWORD (or REGAIN) takes it.",
        ],
    ) in replies
    assert "ERROR" not in old.commands()
    alice.send("PRIVMSG NickServ :REGAIN alice")
    assert ("alice_!alice_@twistedchat", "NICK", ["alice"]) in alice.replies()
    assert "ERROR" in old.commands()


def test_sasl_wrong_password_fails_after_the_delay() -> None:
    """
    A wrong SASL password gets 904, only once the session's one-second
    delay has passed; the client may then register without an account,
    and the registered nickname is refused with 433.
    """
    factory, alice = registered_alice()
    alice.send("QUIT")
    mallory = IRCClient(factory, port=50101)
    sasl_start(mallory, "alice")
    mallory.send(f"AUTHENTICATE {plain('alice', 'alice', 'wrong password')}")
    assert mallory.commands() == []
    factory.clock.advance(1)  # type: ignore[attr-defined]
    assert mallory.commands() == ["904"]
    mallory.send("CAP END")
    replies = mallory.replies()
    assert [command for _, command, _ in replies] == ["433"]
    assert "log in with SASL" in replies[0][2][-1]


@pytest.mark.parametrize(
    ("lines", "numerics"),
    [
        (["AUTHENTICATE *"], ["906"]),
        (["AUTHENTICATE not-base64!"], ["904"]),
        ([f"AUTHENTICATE {plain('bob', 'alice', PASSWORD)}"], ["904"]),
        ([f"AUTHENTICATE {'A' * 401}"], ["905"]),
        ([f"AUTHENTICATE {'A' * 400}"] * 4, ["905"]),
        (["CAP END"], ["906", "001"]),
    ],
)
def test_sasl_refusals(lines: list[str], numerics: list[str]) -> None:
    """
    An aborted exchange (AUTHENTICATE *, or CAP END in the middle) gets
    906; a response that is not base64, or acts as someone else (authzid
    not the authcid), 904; an argument over 400 bytes or a response over
    four chunks, 905.
    """
    factory, _ = registered_alice()
    client = IRCClient(factory, port=50101)
    sasl_start(client, "carol")
    client.send(*lines)
    assert client.commands()[: len(numerics)] == numerics


def test_sasl_other_mechanism_and_twice() -> None:
    """
    A mechanism other than PLAIN gets 908 (listing PLAIN) and 904; a
    second AUTHENTICATE once logged in gets 907.
    """
    factory, _ = registered_alice()
    client = IRCClient(factory, port=50101)
    client.send("CAP REQ :sasl", "AUTHENTICATE EXTERNAL")
    replies = client.replies()
    assert [c for _, c, _ in replies][-2:] == ["908", "904"]
    assert replies[-2][2][1] == "PLAIN"
    client.send("AUTHENTICATE PLAIN", f"AUTHENTICATE {plain('', 'alice', PASSWORD)}")
    client.replies()
    client.send("AUTHENTICATE PLAIN")
    assert client.commands() == ["907"]


def test_sasl_not_offered_without_accounts() -> None:
    """
    On a server that keeps no accounts, CAP LS does not list sasl and
    CAP REQ :sasl is NAKed (IRCv3 SASL 3.2).
    """
    client = IRCClient(chat())
    client.send("CAP LS 302", "CAP REQ :sasl")
    replies = client.replies()
    assert "sasl" not in replies[0][2][2]
    assert replies[1][2][1] == "NAK"


def test_pass_logs_in_as_the_client_registers() -> None:
    """
    PASS before NICK and USER is the password of the nickname: right, the
    client registers as it, logged in (900); wrong, 464 then 433, and the
    client's next nickname registers. PASS account:password logs in to
    the account whatever the nickname; for a nickname nobody registered,
    PASS is ignored without a word.
    """
    factory, old = registered_alice()
    old.send("QUIT")
    alice = IRCClient(factory, port=50101)
    alice.send(f"PASS :{PASSWORD}", "NICK alice", "USER a 0 * :A")
    commands = alice.commands()
    assert commands[0] == "001" and "900" in commands
    assert alice.protocol.session.nickname == "alice"
    alice.send("QUIT")
    mallory = IRCClient(factory, port=50102)
    mallory.send("PASS :guess-guess", "NICK alice", "USER m 0 * :M")
    factory.clock.advance(1)  # type: ignore[attr-defined]
    commands = mallory.commands()
    assert commands[-2:] == ["464", "433"]
    mallory.send("NICK alice_")
    assert mallory.commands()[0] == "001"
    bouncer = IRCClient(factory, port=50103)
    bouncer.send(f"PASS alice:{PASSWORD}", "NICK alice", "USER b 0 * :B")
    assert "900" in bouncer.commands()
    assert bouncer.protocol.session.nickname == "alice"
    dave = IRCClient(factory, port=50104)
    dave.send("PASS :whatever-pw", "NICK dave", "USER d 0 * :D")
    notices = [params[-1] for _, command, params in dave.replies() if command == "NOTICE"]
    assert dave.protocol.session.nickname == "dave"
    assert not any("password" in text for text in notices)


def test_nickserv_identify_takes_the_nickname() -> None:
    """
    A client registered under another nickname takes its registered one
    with /msg NickServ IDENTIFY alice PASSWORD: it gets the NICK line and
    900, and the stale connection holding it is ghosted.
    """
    factory, old = registered_alice()
    alice = IRCClient(factory, port=50101)
    alice.send("NICK alice", "USER a 0 * :A")
    assert alice.commands() == ["433"]
    alice.send("NICK alice_")
    alice.replies()
    alice.send(f"PRIVMSG NickServ :IDENTIFY alice {PASSWORD}")
    replies = alice.replies()
    assert ("alice_!alice_@twistedchat", "NICK", ["alice"]) in replies
    assert "900" in [command for _, command, _ in replies]
    assert "ERROR" in old.commands()


def test_nickserv_commands() -> None:
    """
    NickServ SET PASSWORD OLD NEW changes the password; HELP lists the
    commands; an unknown command or a wrong syntax is answered; every
    reply comes from NickServ. NICKSERV and NS are the same as PRIVMSG
    NickServ; a NOTICE to NickServ gets no answer.
    """
    factory, alice = registered_alice()
    alice.replies()
    alice.send(f"NS SET PASSWORD {PASSWORD} new-password-here")
    factory.clock.advance(0)  # type: ignore[attr-defined]
    replies = alice.replies()
    assert replies == [
        ("NickServ!NickServ@services", "NOTICE", ["alice", "Your password has been changed."])
    ]
    alice.send("NICKSERV HELP", "PRIVMSG NickServ :FOO", "PRIVMSG NickServ :SET PASSWORD x")
    replies = alice.replies()
    assert {source for source, _, _ in replies} == {"NickServ!NickServ@services"}
    texts = [params[-1] for _, _, params in replies]
    assert texts[0].startswith("NickServ keeps registered nicknames")
    assert "Unknown command FOO. /msg NickServ HELP lists them." in texts
    assert texts[-1] == "Syntax: see /msg NickServ HELP."
    alice.send("NOTICE NickServ :HELP")
    assert alice.replies() == []


def test_nickserv_is_reserved() -> None:
    """
    Nobody may take the nickname NickServ (432), nor a look-alike.
    """
    client = IRCClient(chat(reserved_nicknames=["NickServ"]))
    client.send("NICK NickServ", "USER u 0 * :U", "NICK N1ckServ")
    replies = client.replies()
    assert [command for _, command, _ in replies] == ["432", "432"]


def raw_lines(client: IRCClient) -> list[str]:
    """
    Return the lines the server sent since the last call, tags included.
    """
    client.chat.clock.advance(0)  # type: ignore[attr-defined]
    data = client.transport.value().decode()
    client.transport.clear()
    return data.split("\r\n")[:-1]


def test_away_notify_301_and_who() -> None:
    """
    AWAY :TEXT marks the user away (306) and AWAY alone back (305); a
    client with away-notify sharing a room gets the AWAY lines, one
    without gets none; a PRIVMSG to the away user is answered with 301;
    WHO shows G for away, H otherwise.
    """
    factory = chat()
    alice, bob, carol = IRCClient(factory), IRCClient(factory, 50101), IRCClient(factory, 50102)
    bob.send("CAP REQ :away-notify", "CAP END")
    for client, nickname in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        client.register(nickname)
    bob.replies(), alice.replies()
    alice.send("AWAY :gone fishing")
    assert alice.replies() == [
        ("twistedchat.irc", "306", ["alice", "You have been marked as being away"])
    ]
    assert bob.replies() == [("alice!alice@twistedchat", "AWAY", ["gone fishing"])]
    assert carol.replies() == []
    carol.send("PRIVMSG alice :are you there?", "WHO #lobby")
    replies = carol.replies()
    assert ("301", ["carol", "alice", "gone fishing"]) in [(c, p) for _, c, p in replies]
    flags = {p[5]: p[6] for _, c, p in replies if c == "352"}
    assert flags == {"alice": "G", "bob": "H", "carol": "H"}
    alice.replies()  # carol's private message
    alice.send("AWAY")
    assert alice.commands() == ["305"]
    assert bob.replies() == [("alice!alice@twistedchat", "AWAY", [])]


def test_whois() -> None:
    """
    WHOIS NICK answers 311 (the made-up user and host), 319 (the rooms,
    operators marked), 312, 301 when away, 330 with the account, and
    318; WHOIS of nobody gives 401 then 318.
    """
    factory, alice = registered_alice()
    alice.send("JOIN #dev", "AWAY :lunch")
    bob = IRCClient(factory, 50101)
    bob.register("bob")
    bob.send("WHOIS alice")
    replies = {c: p for _, c, p in bob.replies()}
    assert replies["311"] == ["bob", "alice", "alice", "twistedchat", "*", "alice"]
    assert replies["319"] == ["bob", "alice", "@#dev #lobby"]
    assert replies["301"] == ["bob", "alice", "lunch"]
    assert replies["330"] == ["bob", "alice", "alice", "is logged in as"]
    assert "318" in replies
    bob.send("WHOIS nobody")
    assert bob.commands() == ["401", "318"]


def test_account_tag_and_msgid() -> None:
    """
    With account-tag, what an identified user does carries account=; with
    message-tags, every recorded event carries its id as msgid; a TAGMSG
    is accepted and relayed to nobody.
    """
    factory, alice = registered_alice()
    bob = IRCClient(factory, 50101)
    bob.send("CAP REQ :account-tag message-tags", "CAP END")
    bob.register("bob")
    raw_lines(bob)
    alice.send("PRIVMSG #lobby :hi", "@+typing=active TAGMSG #lobby")
    (line,) = raw_lines(bob)
    tags, _, rest = line.partition(" ")
    assert rest == ":alice!alice@twistedchat PRIVMSG #lobby :hi"
    assert "account=alice" in tags[1:].split(";")
    assert any(tag.startswith("msgid=") and tag[6:].isdigit() for tag in tags[1:].split(";"))
    assert alice.commands()[-1:] != ["421"]


def test_history_as_chathistory_batches() -> None:
    """
    A client with batch and server-time gets the history replayed on
    joining as a chathistory batch for the room (PRIVMSG for what was
    said, server NOTICEs for the rest, each with its time), and one per
    private conversation; never a live JOIN, PART or QUIT of the past.
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    bob.send(b"said before\r\n/join #dev\r\n/part #dev\r\n")
    alice = IRCClient(factory, 50101)
    alice.send("CAP REQ :batch server-time", "CAP END")
    alice.send("NICK alice", "USER a 0 * :A")
    lines = raw_lines(alice)
    start = next(i for i, line in enumerate(lines) if " BATCH +" in line)
    assert lines[start] == ":twistedchat.irc BATCH +h1 chathistory #lobby"
    joined, said = lines[start + 1 : start + 3]
    assert joined.startswith("@batch=h1;time=")
    assert joined.endswith(" :twistedchat.irc NOTICE #lobby :bob has joined")
    assert said.startswith("@batch=h1;time=")
    assert said.endswith(" :bob!bob@twistedchat PRIVMSG #lobby :said before")
    assert ":twistedchat.irc BATCH -h1" in lines[start:]
    assert not any(" JOIN " in line and "bob!" in line for line in lines)


def test_telnet_away_and_whois() -> None:
    """
    Telnet users have /away and /whois too: an IRC user's 301 comes from a
    telnet user's away text, and /whois shows an IRC user's rooms.
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    bob.send(b"/away out\r\n")
    assert bob.lines() == ["*** You are marked as away: out"]
    alice = IRCClient(factory, 50101)
    alice.register("alice")
    alice.send("PRIVMSG bob :hi")
    assert ("301", ["alice", "bob", "out"]) in [(c, p) for _, c, p in alice.replies()]
    bob.lines()
    bob.send(b"/whois alice\r\n")
    assert bob.lines() == ["*** alice is in #lobby."]


def test_quit_frees_the_connection() -> None:
    """
    Once an IRC client that sent QUIT is gone, its connection no longer
    counts against --max-clients.
    """
    factory = chat(max_clients=1)
    alice = IRCClient(factory)
    alice.register("alice")
    alice.send("QUIT :bye")
    assert alice.commands()[-1] == "ERROR"
    bob = IRCClient(factory, 50101)
    assert bob.register("bob")[0][1] == "001"


def test_room_numerics() -> None:
    """
    KICK or MODE +o of someone not in the room is 441 (442 when it is the
    operator who is not there); a ban mask that names no nickname is 696;
    -n is 472; JOIN past --max-rooms-per-user is 405; a topic over
    TOPICLEN bytes is refused with a notice; the user's own MODE +i is
    echoed and shown by MODE.
    """
    factory = chat(max_rooms_per_user=2)
    alice, bob = IRCClient(factory), IRCClient(factory, 50101)
    alice.register("alice")
    bob.register("bob")
    alice.send("JOIN #dev")
    alice.replies()
    alice.send("KICK #dev bob", "MODE #dev +o bob", "KICK #ops bob", "MODE #dev +b *!*@host")
    assert alice.commands() == ["441", "441", "442", "696"]
    alice.send("MODE #dev -n", "JOIN #third")
    assert alice.commands() == ["472", "405"]
    alice.send("TOPIC #dev :" + "x" * 391)
    assert alice.replies()[0][2][1].startswith("A topic can be at most 390 bytes")
    alice.send("MODE alice +i", "MODE alice")
    assert alice.replies() == [
        ("alice!alice@twistedchat", "MODE", ["alice", "+i"]),
        ("twistedchat.irc", "221", ["alice", "+i"]),
    ]


def test_notices_stay_notices() -> None:
    """
    A NOTICE to a room or a user reaches IRC users as a NOTICE (bots never
    answer one) and telnet users as -nick- text; a NOTICE that cannot be
    delivered gets no error numeric (RFC 2812 section 3.3.2).
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    alice, carol = IRCClient(factory, 50101), IRCClient(factory, 50102)
    alice.register("alice")
    carol.register("carol")
    bob.lines(), alice.replies(), carol.replies()
    alice.send("NOTICE #lobby :build passed", "NOTICE carol :psst", "NOTICE bob :hi")
    assert carol.replies() == [
        ("alice!alice@twistedchat", "NOTICE", ["#lobby", "build passed"]),
        ("alice!alice@twistedchat", "NOTICE", ["carol", "psst"]),
    ]
    assert bob.lines() == ["-alice- build passed", "-*alice*- hi"]
    alice.send("NOTICE nobody :x", "NOTICE #nowhere :x", "PRIVMSG nobody :x")
    assert alice.commands() == ["401"]


def test_private_action_and_ctcp() -> None:
    """
    A private CTCP ACTION is a private action (telnet: *alice* * alice
    waves); any other CTCP passes between IRC users as it was sent (a
    VERSION query, its NOTICE reply) and shows nothing to telnet users; a
    CTCP to a room is dropped without an answer.
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    alice, carol = IRCClient(factory, 50101), IRCClient(factory, 50102)
    alice.register("alice")
    carol.register("carol")
    bob.lines(), alice.replies(), carol.replies()
    alice.send("PRIVMSG bob :\x01ACTION waves\x01", "PRIVMSG bob :\x01VERSION\x01")
    assert bob.lines() == ["*alice* * alice waves"]
    alice.send("PRIVMSG carol :\x01VERSION\x01", "PRIVMSG #lobby :\x01VERSION\x01")
    assert carol.replies() == [("alice!alice@twistedchat", "PRIVMSG", ["carol", "\x01VERSION\x01"])]
    carol.send("NOTICE alice :\x01VERSION irssi 1.4\x01")
    replies = alice.replies()
    assert replies == [
        ("carol!carol@twistedchat", "NOTICE", ["alice", "\x01VERSION irssi 1.4\x01"])
    ]
    assert bob.lines() == []


def test_no_line_longer_than_512_bytes() -> None:
    """
    A 2000-byte topic set by a telnet user reaches an IRC user as a TOPIC
    and a 332 of at most 512 bytes, shortened with an ellipsis; a long
    notice is split, not cut; the server name gets .irc when it has no
    dot, so it cannot be taken for a nickname.
    """
    factory = chat(max_line_length=4096)
    bob = FakeClient(factory).register("bob")
    alice = IRCClient(factory, 50101)
    alice.register("alice")
    bob.send(b"/topic " + "é".encode() * 1000 + b"\r\n")
    alice.send("JOIN #lobby", "TOPIC #lobby")
    lines = raw_lines(alice)
    assert lines and all(len(line.encode()) + 2 <= MAX_LINE for line in lines)
    assert all(line.endswith("\u2026") for line in lines if " TOPIC " in line or " 332 " in line)
    alice.protocol._notice("word " * 300)
    pieces = [line.partition(" :")[2] for line in raw_lines(alice)]
    assert len(pieces) > 1 and "".join(pieces) == "word " * 300
    assert irc_server_name("vm") == "vm.irc"
    assert irc_server_name("chat.example.org") == "chat.example.org"
    assert irc_server_name("my server!") == "myserver.irc"


def test_small_commands() -> None:
    """
    USERHOST and ISON answer for those online (away marked -), LUSERS
    counts, VERSION and TIME answer, OPER is refused (491: server
    operators are --oper accounts), KILL by a non-operator is 481,
    WHOWAS knows nobody (406, 369), WHOIS NickServ answers as services.
    """
    factory = chat()
    alice, bob = IRCClient(factory), IRCClient(factory, 50101)
    alice.register("alice")
    bob.register("bob")
    bob.send("AWAY :out")
    alice.replies()
    alice.send("USERHOST bob nobody", "ISON bob nobody alice")
    assert [p for _, _, p in alice.replies()] == [
        ["alice", "bob=-bob@twistedchat"],
        ["alice", "bob alice"],
    ]
    alice.send("LUSERS", "VERSION", "TIME", "OPER a b", "KILL bob", "WHOWAS carol")
    assert alice.commands() == ["251", "255", "351", "005", "391", "491", "481", "406", "369"]
    alice.send("WHOIS NickServ")
    assert [c for c in alice.commands()] == ["311", "312", "318"]


def test_history_and_search_commands() -> None:
    """
    HISTORY #ROOM N replays the last N lines said in a room (as NOTICEs without
    batch); SEARCH #ROOM :WORDS lists the matching lines newest first as
    NOTICEs; a search on a server whose history is only in memory is
    refused with a NOTICE saying why.
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    bob.send(b"first words\r\nsecond words\r\n")
    alice = IRCClient(factory, 50101)
    alice.register("alice")
    alice.send("HISTORY #lobby 1")
    texts = [p[-1] for _, c, p in alice.replies() if c == "NOTICE"]
    assert any(text.endswith("UTC] <bob> second words") for text in texts)
    assert not any("first words" in text for text in texts)
    alice.send("SEARCH #lobby :words")
    (reply,) = alice.replies()
    assert reply[1] == "NOTICE" and "memory" in reply[2][-1]


def test_limits_as_for_telnet() -> None:
    """
    The limits apply to IRC users as to telnet ones: a connection over
    --max-clients gets one ERROR line and is closed; an IRC user that stops
    reading is cut off past max_sendq, and others see it QUIT with SendQ
    exceeded; after flood_burst lines, lines are read at flood_rate.
    """
    clock = Clock()
    factory = make_factory(
        clock, history=None, max_clients=2, max_sendq=4096, flood_rate=2, flood_burst=3
    )
    alice, bob = IRCClient(factory), IRCClient(factory, 50101)
    alice.register("alice")
    bob.register("bob")
    alice.replies()
    refused = IRCClient(factory, 50102)
    assert refused.transport.value().startswith(b"ERROR :Closing Link: twistedchat (")
    assert not refused.transport.connected
    bob.transport.producer.pauseProducing()
    for _ in range(100):
        alice.protocol.session.say("x" * 100, "#lobby")
    assert ("bob!bob@twistedchat", "QUIT", ["SendQ exceeded"]) in alice.replies()
    clock.advance(10)
    alice.send(*(f"PRIVMSG alice :{n}" for n in range(6)))
    assert alice.transport.producerState == "paused"
    for _ in range(10):
        clock.advance(1)
    assert alice.transport.producerState == "producing"
    assert [params[-1] for _, _, params in alice.replies()] == [str(n) for n in range(6)]


def test_invite() -> None:
    """
    INVITE NICK #ROOM tells NICK (an INVITE line over IRC, a notice on
    telnet) and answers 341; 443 if they are there already, 442 if the
    inviter is not in the room, 401 for nobody.
    """
    factory = chat()
    bob = FakeClient(factory).register("bob")
    alice, carol = IRCClient(factory, 50101), IRCClient(factory, 50102)
    alice.register("alice")
    carol.register("carol")
    alice.send("JOIN #dev")
    alice.replies(), carol.replies(), bob.lines()
    alice.send("INVITE carol #dev", "INVITE bob #dev", "INVITE bob #lobby")
    alice.send("INVITE nobody #dev", "INVITE carol #ops")
    assert alice.commands() == ["341", "341", "443", "401", "442"]
    assert carol.replies() == [("alice!alice@twistedchat", "INVITE", ["carol", "#dev"])]
    assert bob.lines() == ["*** alice invites you to #dev: /join #dev joins it."]
    bob.send(b"/invite alice #lobby\r\n/join #dev\r\n/invite carol\r\n")
    lines = bob.lines()
    assert lines[0] == "!!! alice is in #lobby already."
    assert lines[-1] == "*** You invited carol to #dev."
    assert carol.replies() == [("bob!bob@twistedchat", "INVITE", ["carol", "#dev"])]


def test_refusals_and_bounds() -> None:
    """
    A QUIT reason reaches others cleaned; tags over 4096 bytes, or a text
    over --max-line-length bytes, get 417; NICK to a taken nickname is 433
    with no notice; PRIVMSG to more than 4 targets is 407 and sends
    nothing; MODE of another nickname is 401 when nobody has it; the
    registration timeout's ERROR says why.
    """
    factory = chat(max_line_length=100)
    bob = FakeClient(factory).register("bob")
    alice = IRCClient(factory, 50101)
    alice.register("alice")
    alice.send("@" + "a" * 4096 + " PRIVMSG #lobby :hi", "PRIVMSG #lobby :" + "x" * 101)
    alice.send("NICK bob", "PRIVMSG a,b,c,d,e :x", "MODE nobody")
    assert alice.commands() == ["417", "417", "433", "407", "401"]
    bob.lines()
    alice.send("QUIT :\x1b[2J\x1b]0;pwned\x07 bye")
    assert bob.lines() == ["*** alice has left ( bye)"]
    late = IRCClient(factory, 50102)
    factory.clock.advance(60)  # type: ignore[attr-defined]
    assert raw_lines(late)[-1] == (
        "ERROR :Closing Link: twistedchat (No nickname chosen within 60 seconds; goodbye.)"
    )


def test_echo_message_covers_ctcp_and_nickserv() -> None:
    """
    With echo-message, a client's own CTCP and its PRIVMSG to NickServ come
    back to it (IRCv3 echo-message); without, they do not. NickServ
    IDENTIFY of a nickname nobody registered says so and renames nobody.
    """
    factory = accounts_chat()
    alice, bob, carol = (IRCClient(factory, port) for port in (50100, 50101, 50102))
    alice.send("CAP REQ echo-message", "CAP END")
    for client, nickname in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        client.register(nickname)
    alice.replies(), bob.replies()
    alice.send("PRIVMSG bob :\x01VERSION\x01", "PRIVMSG NickServ :IDENTIFY zed secret-pw")
    replies = alice.replies()
    assert replies[:2] == [
        ("alice!alice@twistedchat", "PRIVMSG", ["bob", "\x01VERSION\x01"]),
        ("alice!alice@twistedchat", "PRIVMSG", ["NickServ", "IDENTIFY zed secret-pw"]),
    ]
    assert replies[2] == (
        "NickServ!NickServ@services",
        "NOTICE",
        ["alice", "zed is not registered."],
    )
    assert alice.protocol.session.nickname == "alice"
    carol.replies()
    carol.send("PRIVMSG bob :\x01PING 1\x01")
    assert carol.replies() == []


def test_private_history_shows_who_it_was_to() -> None:
    """
    On logging in again, the private messages replayed (as NOTICEs to
    oneself, without batch) show one's own as "-> *bob* text", as telnet
    does, not as if sent to oneself.
    """
    factory, alice = registered_alice()
    bob = IRCClient(factory, 50101)
    bob.register("bob")
    alice.send("PRIVMSG bob :psst", "QUIT")
    again = IRCClient(factory, 50102)
    again.send(f"PASS :{PASSWORD}", "NICK alice", "USER a 0 * :A")
    texts = [params[-1] for _, command, params in again.replies() if command == "NOTICE"]
    assert any(text.endswith("UTC] -> *bob* psst") for text in texts), texts


def test_list_masks_and_missing_rooms() -> None:
    """
    LIST #d* lists the rooms matching the mask, and an ELIST condition
    alone lists every room; a message to a room nobody created is 403
    (404 is for one that exists); a JOIN of a name too long is 403 with
    the reason; 005 says the server speaks UTF-8 only.
    """
    client = IRCClient(chat())
    burst = client.register("alice")
    assert "UTF8ONLY" in next(params for _, c, params in burst if c == "005")
    client.send("JOIN #dev,#docs,#ops")
    client.replies()
    client.send("LIST #d*")
    assert [p[1] for _, c, p in client.replies() if c == "322"] == ["#dev", "#docs"]
    client.send("LIST >1")
    assert len([c for c in client.commands() if c == "322"]) == 4
    client.send("PRIVMSG #nowhere :hi", "JOIN #" + "x" * 60)
    replies = client.replies()
    assert [(c, p[1]) for _, c, p in replies] == [("403", "#nowhere"), ("403", "#" + "x" * 60)]
    assert replies[1][2][-1] == "A room name can be at most 50 characters long."
