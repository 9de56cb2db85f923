"""
Property tests: input shaped like what telnet and C{nc} clients send
(telnet IAC sequences, line endings, nicknames, passwords, every command
with every kind of argument, hostile text), mixed with random bytes and
split at arbitrary points, never raises, frames the same way, and never
puts a control character on another user's terminal.
"""

from __future__ import annotations

import gc
import re
from typing import Any

import pytest
from argon2 import PasswordHasher
from fakeclients import FakeClient, chatters, make_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from twistedchat.accounts import Accounts, StoredAccount
from twistedchat.history import History
from twistedchat.session import MAX_WRONG_PASSWORDS, WRONG_PASSWORD_DELAY, ChatSession

# Telnet (RFC 854): IAC introduces a command; SB ... IAC SE brackets a
# subnegotiation; WILL, WONT, DO and DONT take an option byte.
IAC, SB, SE = 255, 250, 240
OPTION_VERBS = [251, 252, 253, 254]

#: Argon2id with small costs, and hashing in this thread, so that a
#: password check answers at once.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
#: An account that exists in every factory built with accounts.
ACCOUNT, PASSWORD = "carol", "correct-horse"
ACCOUNT_HASH = CHEAP.hash(PASSWORD)

#: Digits that are not ASCII. int() accepts the decimal ones (category
#: Nd: Arabic-Indic, Devanagari, fullwidth...); str.isdigit() accepts
#: those and also superscripts, subscripts, circled digits and the like
#: (category No), which int() rejects; isnumeric() also accepts numerals
#: such as Roman ones and fractions (Nl, No).
DECIMAL_DIGITS = "٣۴߃०১๓༣၅០᠕𝟘𝟙１"
OTHER_DIGITS = "²³¹⁰₂①⓪⑴⒈፩🄂"
NUMERALS = "Ⅻⅻ〇〥½¼⑳𐄇"
UNICODE_DIGITS = DECIMAL_DIGITS + OTHER_DIGITS + NUMERALS

#: Whole, hostile or broken pieces of input, kept from the first version of
#: this test.
TOKENS = [
    b" ",
    b"\t",
    b"//",
    b"\xff",
    b"\xff\xff",
    b"\xff\xf4",
    b"\xff\xfb\x01",
    b"\xff\xfa\x18\x00xterm\xff\xf0",
    b"\x1b[31m",
    b"\x1b]0;t\x07",
    b"\x1bP1$r\x1b\\",
    b"\x9b2J",
    b"\xc2\x9b",
    "\u202e\u2066".encode(),
    b"\x00",
    b"\x07",
    b"\x7f",
    b"\xc3",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xc0\xaf",
    b"x" * 90,
    "é漢😀".encode(),
]

any_byte = st.integers(min_value=0, max_value=255)


def _subnegotiation(payload: bytes, doubled: bool, end: bytes) -> bytes:
    """
    Return IAC SB, C{payload} with its IAC bytes doubled (as RFC 854 says)
    or not, then C{end}.
    """
    if doubled:
        payload = payload.replace(bytes([IAC]), bytes([IAC, IAC]))
    return bytes([IAC, SB]) + payload + end


subnegotiation_payload = st.one_of(
    st.just(b""),
    st.binary(max_size=12),
    st.sampled_from([b"\x18", b"\x18\x00xterm", b"\x1f\x00\x50\x00\x18", b"\xff", b"\xff\xff"]),
)
telnet_sequence = st.one_of(
    # IAC and a command byte: NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, EOR,
    # SE alone, IAC IAC, the RFC 1184 codes (236-238), and WILL, WONT, DO
    # or DONT without their option (they take the next byte).
    st.integers(min_value=236, max_value=255)
    .filter(lambda b: b != SB)
    .map(lambda b: bytes([IAC, b])),
    # IAC and a byte that is no telnet command
    st.integers(min_value=0, max_value=235).map(lambda b: bytes([IAC, b])),
    # IAC WILL/WONT/DO/DONT option
    st.tuples(st.sampled_from(OPTION_VERBS), any_byte).map(lambda t: bytes([IAC, *t])),
    # IAC SB payload IAC SE; the payload may be empty, its IACs doubled or not
    st.builds(_subnegotiation, subnegotiation_payload, st.booleans(), st.just(bytes([IAC, SE]))),
)
#: How input can end in the middle of a telnet sequence.
telnet_truncated = st.one_of(
    st.builds(lambda sequence, keep: sequence[:keep], telnet_sequence, st.integers(1, 4)),
    # a subnegotiation left open, or ended by IAC and a byte other than SE
    st.builds(
        _subnegotiation,
        subnegotiation_payload,
        st.booleans(),
        st.sampled_from([b"", bytes([IAC]), bytes([IAC, 241]), bytes([IAC, IAC])]),
    ),
    # one longer than Twisted buffers (it drops the connection)
    st.just(bytes([IAC, SB, 24]) + b"x" * 4100),
)

#: Telnet's CRLF, nc's LF, and the rarer lone CR, CR NUL and none at all.
line_ending = st.sampled_from([b"\r\n"] * 3 + [b"\n"] * 2 + [b"\r", b"\r\x00", b""])

valid_nickname = st.one_of(
    st.sampled_from(["alice", "bob", "Bob", "BOB", ACCOUNT, "CAROL", "[x]", "Guest1234", "a-"]),
    st.from_regex(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,8}", fullmatch=True),
)
nickname = st.one_of(
    valid_nickname,
    # invalid: a digit or "-" first, non-ASCII, punctuation, too long
    st.sampled_from(["1abc", "-x", "é", "a!", "a.b", "ñandú", "x" * 10, "y" * 30, "²"]),
    st.text(min_size=1, max_size=12).filter(lambda s: " " not in s),
)
word = st.one_of(
    st.sampled_from(["hello", "x", "é", "漢字", "😀", "\x1b[2J", "\u202e", "\x00", "\t"]),
    st.text(max_size=10).filter(lambda s: " " not in s),
)
number = st.one_of(
    st.sampled_from(["0", "1", "20", "-1", "+5", "007", "1.5", "1e3", "0x10", "9" * 40]),
    st.integers().map(str),
    st.sampled_from(UNICODE_DIGITS),
    st.sampled_from(OTHER_DIGITS),
    st.text(st.sampled_from(UNICODE_DIGITS + "0123456789"), min_size=1, max_size=4),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4),
)
password = st.one_of(
    st.sampled_from([PASSWORD, "wrong-password", "short", "pass word!"]),
    st.text(min_size=1, max_size=16).filter(lambda s: " " not in s),
)
room = st.one_of(
    st.sampled_from(["#lobby", "#LOBBY", "#dev", "#Dev", "#[x]", "#{X}", "#", "##", "lobby"]),
    st.builds(lambda s: "#" + s, st.text(max_size=52)),
    st.builds(lambda s: "#" + s, st.text(st.sampled_from(" ,:\x07\x00#x"), max_size=4)),
)
argument = st.one_of(nickname, word, number, password, room)

command_name = st.one_of(
    st.sampled_from(sorted(ChatSession._COMMANDS)),
    st.sampled_from(sorted(ChatSession._COMMANDS)).map(str.upper),
    st.sampled_from(["", "hist", "kick", "join", "msg\x00", "me²"]),
    st.text(max_size=6).filter(lambda s: " " not in s),
)
separator = st.sampled_from([" ", " ", "  ", "\t"])


def _command(name: str, *arguments: str) -> str:
    """
    Return the command line C{/name arguments...}.
    """
    return " ".join(["/" + name, *arguments])


command = st.one_of(
    # Each command with the arguments it takes (or lacks them) ...
    st.builds(_command, st.sampled_from(["history", "HISTORY", "History"]), number),
    st.builds(_command, st.just("history"), number),
    st.builds(_command, st.just("history")),
    st.builds(_command, st.sampled_from(["msg", "MSG"]), nickname, st.text(max_size=20)),
    st.builds(_command, st.sampled_from(["me", "Me"]), st.text(max_size=20)),
    st.builds(_command, st.just("nick"), nickname),
    st.builds(_command, st.just("nick"), nickname, password),
    st.builds(_command, st.just("nick"), st.sampled_from([ACCOUNT, ACCOUNT.upper()]), password),
    st.builds(_command, st.sampled_from(["register", "identify"]), password),
    st.builds(_command, st.just("password"), password, password),
    st.builds(_command, st.sampled_from(["quit", "exit"]), st.text(max_size=10)),
    st.builds(_command, st.sampled_from(["help", "who", "names", "users"])),
    # Rooms and moderation, with the room first or not at all.
    st.builds(_command, st.sampled_from(["join", "switch", "names", "who", "history"]), room),
    st.builds(_command, st.sampled_from(["part", "topic"]), room, st.text(max_size=20)),
    st.builds(_command, st.sampled_from(["part", "topic", "rooms", "list"])),
    st.builds(_command, st.just("msg"), room, st.text(max_size=20)),
    st.builds(_command, st.just("history"), room, number),
    st.builds(_command, st.sampled_from(["search", "SEARCH"]), st.text(max_size=20)),
    st.builds(_command, st.just("search"), room, st.text(max_size=20)),
    st.builds(
        _command,
        st.sampled_from(["kick", "ban", "unban", "op", "deop", "KICK"]),
        nickname,
        st.text(max_size=10),
    ),
    st.builds(
        _command,
        st.sampled_from(["kick", "ban", "unban", "op", "deop"]),
        room,
        nickname,
        st.text(max_size=10),
    ),
    st.builds(_command, st.just("mode"), room, st.sampled_from(["+t", "-t", "+o", "t", ""])),
    st.builds(_command, st.just("mode"), st.sampled_from(["+t", "-t", "+x"])),
    st.builds(_command, st.just("kill"), nickname, st.text(max_size=10)),
    # ... and any command or none with any arguments.
    st.builds(
        lambda name, arguments, between: between.join(["/" + name, *arguments]),
        command_name,
        st.lists(argument, max_size=3),
        separator,
    ),
)

text = st.one_of(
    st.text(max_size=20),
    st.builds(lambda s: "//" + s, st.text(max_size=10)),
    st.builds(lambda s: ".exit" + s, st.sampled_from(["", " bye", "x"])),
)

line_content = st.one_of(
    command.map(str.encode),
    command.map(str.encode),
    nickname.map(str.encode),
    text.map(str.encode),
    password.map(str.encode),
    st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=4).map(b"".join),
)


@st.composite
def line(draw: st.DrawFn) -> bytes:
    """
    One input line, maybe with telnet sequences in the middle of it, and
    one of the line endings telnet and C{nc} clients send (or none).
    """
    content: bytes = draw(line_content)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        at = draw(st.integers(min_value=0, max_value=len(content)))
        content = content[:at] + draw(telnet_sequence) + content[at:]
    return content + draw(line_ending)


registration = st.one_of(
    st.sampled_from(
        [
            b"\r\n",
            b"alice\r\n",
            b"Dave\n",
            f"{ACCOUNT}\r\n{PASSWORD}\r\n".encode(),
            f"{ACCOUNT} {PASSWORD}\r\n".encode(),
        ]
    ),
    st.builds(lambda n, end: n.encode() + end, valid_nickname, line_ending),
    st.builds(lambda n, end: n.encode() + end, nickname, line_ending),
)

#: What input is made of, the more likely ones listed more often.
CHUNKS = {
    "line": line(),
    "telnet": telnet_sequence,
    "token": st.sampled_from(TOKENS),
    "bytes": st.binary(max_size=20),
}
CHUNK_KINDS = ["line"] * 6 + ["telnet"] * 2 + ["token", "bytes"]


@st.composite
def client_input(draw: st.DrawFn) -> list[bytes]:
    """
    What a client sends, as the reads the server makes of it: a nickname
    (valid or not) first, then lines, telnet sequences and hostile or random
    bytes, maybe ending in the middle of a telnet sequence. Between two
    reads the reactor turns, so the server's answers go out: most pieces
    come after the client saw the answer to the one before, some are typed
    ahead in the same read.
    """
    reads = [draw(registration)]
    for kind in draw(st.lists(st.sampled_from(CHUNK_KINDS), max_size=12)):
        chunk = draw(CHUNKS[kind])
        if draw(st.sampled_from([True, True, True, False])):
            reads.append(chunk)
        else:
            reads[-1] += chunk
    reads[-1] += draw(st.one_of(st.just(b""), st.just(b""), telnet_truncated))
    return reads


#: Where to cut the input (offsets into all reads joined), near its start
#: more often.
cut_points = st.lists(
    st.one_of(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=400)),
    max_size=20,
)

# The answers to option negotiation the telnet layer writes (it refuses
# every option), and what no terminal should be sent (see
# twistedchat.sanitize).
_TELNET_ANSWER = re.compile(rb"\xff[\xfb-\xfe].", re.DOTALL)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def in_this_thread(function: Any, *args: Any) -> Deferred[Any]:
    """
    Run C{function} at once instead of in a thread.
    """
    return maybeDeferred(function, *args)


def play(
    reads: list[bytes], cuts: list[int], accounts: bool
) -> tuple[bytes, bytes, bool, bool, bool]:
    """
    Connect an observer (registered as bob) and a new connection to a chat
    with an in-memory history and, if C{accounts}, accounts (one exists,
    L{ACCOUNT}); feed C{reads} to the new connection, each in one reactor
    iteration but cut further into pieces at C{cuts} (offsets into all of
    C{reads} joined), as the telnet layer hands one read to the protocol
    in pieces; then let the clock run long enough to answer every wrong
    password.

    An exception raised while handling input is not caught: L{FakeClient}
    calls C{dataReceived} directly, so it fails the test (where a reactor
    would log it and drop the connection). One raised in a L{Deferred}'s
    callbacks is logged once the L{Deferred} is garbage; so is any other
    failure logged, and either fails the test too.

    @return: what the sender and the observer received, whether each was
        closed, and whether Twisted closed the sender for a subnegotiation
        over its length limit.
    """
    with capturedLogs() as events:
        result = _play(reads, cuts, accounts)
        # The chat is garbage now; what is in a reference cycle is freed
        # (and an unhandled failure in a Deferred logged) by the collector.
        gc.collect(1)
    failures = [event for event in events if "log_failure" in event]
    assert not failures, failures[0]["log_failure"].getTraceback()
    overflow = any("subnegotiation exceeded" in event.get("log_format", "") for event in events)
    return (*result, overflow)


def _play(reads: list[bytes], cuts: list[int], accounts: bool) -> tuple[bytes, bytes, bool, bool]:
    """
    Do what L{play} says, but return only what the sender and the observer
    received and whether each was closed.
    """
    clock = Clock()
    options: dict[str, Any] = {"history": History(None, clock)}
    if accounts:
        stored = {ACCOUNT: StoredAccount(ACCOUNT_HASH, 0.0)}
        options["accounts"] = Accounts(
            None, clock, stored, hasher=CHEAP, run_in_thread=in_this_thread
        )
    factory = make_factory(clock, max_line_length=80, max_nick_length=9, flood_rate=0, **options)
    (bob,) = chatters(factory, "bob")
    sender = FakeClient(factory)
    offset = 0
    for read in reads:
        start = 0
        for cut in sorted(set(c - offset for c in cuts if 0 < c - offset < len(read))):
            if not sender.closed:
                sender.send(read[start:cut])
            start = cut
        if not sender.closed:
            sender.send(read[start:])
        clock.advance(0)
        offset += len(read)
    for _ in range(MAX_WRONG_PASSWORDS + 1):
        clock.advance(WRONG_PASSWORD_DELAY)
    return sender.output(), bob.output(), sender.closed, bob.closed


def assert_clean_lines(output: bytes) -> list[str]:
    """
    Check that C{output} is whole CRLF-terminated lines of UTF-8 with no
    control characters, and return them.
    """
    assert output == b"" or output.endswith(b"\r\n"), output[-80:]
    lines = output.decode("utf-8").split("\r\n")[:-1]
    for text in lines:
        assert not _CONTROL.search(text), text
    return lines


@settings(max_examples=1000, deadline=None)
@given(client_input(), cut_points, st.booleans())
def test_protocol_shaped_input(reads: list[bytes], cuts: list[int], accounts: bool) -> None:
    """
    For any input shaped like the protocol, with or without accounts:
    nothing raises or is logged as a failure; cutting each read into
    pieces changes nothing either side sees; the observer stays connected
    and gets whole CRLF-terminated lines of UTF-8 with no control
    characters; so does the sender, apart from the telnet layer's answers
    to option negotiation; and the sender is closed only after a goodbye
    line or a subnegotiation too long for Twisted.
    """
    whole = play(reads, [], accounts)
    assert play(reads, cuts, accounts) == whole
    sender_output, observer_output, sender_closed, observer_closed, overflow = whole
    assert not observer_closed
    assert_clean_lines(observer_output)
    sender_lines = assert_clean_lines(_TELNET_ANSWER.sub(b"", sender_output))
    if sender_closed and not overflow:
        assert sender_lines and sender_lines[-1].lower().endswith("goodbye."), sender_lines[-3:]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=4), cut_points)
def test_random_bytes(reads: list[bytes], cuts: list[int]) -> None:
    """
    For any bytes at all: nothing raises, cutting each read into pieces
    does not change what either side sees, and the observer gets only
    whole clean lines.
    """
    whole = play(reads, [], False)
    assert play(reads, cuts, False) == whole
    assert_clean_lines(whole[1])


@pytest.mark.parametrize(
    "reads",
    [
        pytest.param([b"alice\r\n", b"/history \xc2\xb2\r\n"], id="history-superscript-two"),
        pytest.param([b"alice\r\n", b"/history \xe2\x91\xa0\r\n"], id="history-circled-one"),
        pytest.param([b"alice\r\n", b"\xff\xfa\xff\xf0/who\r\n"], id="empty-subnegotiation"),
        pytest.param([b"\xff\xfa\xff\xf0"], id="empty-subnegotiation-first"),
    ],
)
def test_inputs_that_raised(reads: list[bytes]) -> None:
    """
    Inputs the strategies above found to raise (issue 8 point 7): a
    superscript or circled digit as the /history count, and an empty
    telnet subnegotiation (IAC SB IAC SE). Each is handled without an
    exception, the connection stays open, and the line after it is
    answered.
    """
    sender_output, _, sender_closed, _, _ = play(reads, [], False)
    assert not sender_closed
    assert_clean_lines(_TELNET_ANSWER.sub(b"", sender_output))
    if len(reads) > 1:
        assert len(sender_output) > len(play(reads[:-1], [], False)[0])


def test_typed_ahead_line_stays_private() -> None:
    """
    A line the client began before the answer to its nickname is ignored
    however the telnet layer cuts the read: with a telnet command (NOP)
    between the nickname line and a password typed ahead, the password
    still never reaches the chat. (Found by test_protocol_shaped_input as
    C{reads=[b"\\r\\n "], cuts=[1]}: a cut changed what was ignored.)
    """
    for first in [b"alice\r\nsecret", b"alice\r\n\xff\xf1secret"]:
        _, observer_output, _, _, _ = play([first, b"\r\n"], [], False)
        assert b"secret" not in observer_output, first


def test_nothing_after_goodbye() -> None:
    """
    Once the server has said goodbye it says nothing more, not even about
    an over-long line that came in the same read as /quit. (Found by
    test_protocol_shaped_input.)
    """
    sender_output, _, sender_closed, _, _ = play(
        [b"alice\r\n", b"/quit\r\n" + b"x" * 81], [], False
    )
    assert sender_closed
    assert assert_clean_lines(sender_output)[-1] == "*** Goodbye."
