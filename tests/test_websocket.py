"""
Tests for L{twistedchat.websocket} and L{twistedchat.web}: the JSON
protocol of the browser client, its limits, and the site around it,
driven in memory through the real Twisted web server and WebSocket
support by C{wsproto}'s client side (L{webclients.WebClient}).

The chat rules themselves are the session's, tested in C{test_session*}.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakeclients import FakeClient, make_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_session import accounts_chat, chat
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.logger import capturedLogs
from webclients import WebClient
from wsproto.events import CloseConnection, Ping, TextMessage

from twistedchat.events import (
    Action,
    ChatLine,
    Ghosted,
    Joined,
    Kicked,
    Killed,
    Left,
    ModeChanged,
    NicknameChanged,
    PrivateMessage,
    SearchResults,
    ServerShutdown,
    TopicChanged,
)
from twistedchat.factory import ChatFactory
from twistedchat.session import SEARCH_RESULTS
from twistedchat.web import (
    HTTP_PER_ADDRESS,
    HTTP_TIMEOUT,
    MAX_INPUT,
    SECURITY_HEADERS,
    Refused,
    make_site,
)
from twistedchat.websocket import MAX_BAD_MESSAGES, max_message, render_json


def signed_in(factory: ChatFactory, nickname: str) -> WebClient:
    """
    Return a web client of C{factory} signed in as C{nickname}, with what
    it was sent so far read.
    """
    client = WebClient(factory)
    client.sign_in(nickname)
    return client


def of_type(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [message for message in messages if message["type"] == kind]


def http_get(factory: ChatFactory, path: bytes, headers: bytes = b"") -> bytes:
    """
    Send one GET request for C{path} to the C{--web} site of C{factory}
    and return the raw response.
    """
    site = make_site(factory)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50001))
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: chat.test\r\n" + headers + b"\r\n")
    factory.clock.advance(0)  # type: ignore[attr-defined]
    return transport.value()


# Greeting and registration


def test_greeting() -> None:
    """
    A new WebSocket connection is greeted with C{hello} (protocol version,
    server name, version, MOTD) and then asked for a nickname.
    """
    client = WebClient(chat(motd="Be nice."))
    messages = client.messages()
    assert client.accepted is True
    assert [m["type"] for m in messages] == ["hello", "nickname_wanted"]
    hello = messages[0]
    assert hello["protocol"] == 1
    assert hello["server"] == "twistedchat"
    assert hello["motd"] == "Be nice."
    assert hello["max_line_length"] == 2048


def test_sign_in() -> None:
    """
    A C{nickname} message brings C{welcome} and the default room
    (C{joined}); others in the room see a C{join} event with an id and a
    time.
    """
    factory = chat()
    bob = signed_in(factory, "bob")
    alice = WebClient(factory)
    messages = alice.sign_in("alice")
    welcome = of_type(messages, "welcome")[0]
    assert welcome["nickname"] == "alice"
    assert welcome["count"] == 2
    joined = of_type(messages, "joined")[0]
    assert joined["room"] == "#lobby"
    assert joined["members"] == ["bob", "alice"]
    [join] = bob.messages()
    assert join["type"] == "join"
    assert join["nickname"] == "alice"
    assert join["id"] > 0 and join["at"] == factory.clock.seconds()


def test_empty_nickname_gets_a_random_one() -> None:
    """
    An empty C{nickname} gets a random nickname, as an empty line does
    for telnet, and says so.
    """
    client = WebClient(chat())
    client.messages()
    client.send({"type": "nickname", "nickname": ""})
    messages = client.messages()
    [welcome] = of_type(messages, "welcome")
    assert welcome["nickname"].startswith("Guest")
    assert of_type(messages, "notice")[0]["text"].startswith(
        f"Your nickname is {welcome['nickname']}"
    )


def test_invalid_nickname_asks_again() -> None:
    """
    An invalid nickname gets an C{error} and C{nickname_wanted} again; the
    connection stays.
    """
    client = WebClient(chat())
    client.messages()
    client.send({"type": "nickname", "nickname": "no spaces please"})
    assert client.types() == ["error", "nickname_wanted"]
    assert client.connected


def test_registered_nickname_wants_password() -> None:
    """
    A registered nickname is answered with C{password_wanted}; the right
    password brings C{welcome}, and a wrong one an C{error}.
    """
    factory = accounts_chat()
    owner = signed_in(factory, "alice")
    owner.send({"type": "line", "text": "/register s3cret-pw"})
    owner.send({"type": "line", "text": "/quit"})
    client = WebClient(factory)
    client.messages()
    client.send({"type": "nickname", "nickname": "alice"})
    assert of_type(client.messages(), "password_wanted") == [
        {"type": "password_wanted", "nickname": "alice"}
    ]
    client.send({"type": "password", "password": "wrong"})
    factory.clock.advance(2)  # type: ignore[attr-defined]
    assert "error" in client.types()
    client.send({"type": "password", "password": "s3cret-pw"})
    factory.clock.advance(2)  # type: ignore[attr-defined]
    assert "welcome" in client.types()


def test_commands_before_nickname_refused() -> None:
    """
    Chat messages before a nickname get an C{error} saying a nickname
    comes first.
    """
    client = WebClient(chat())
    client.messages()
    client.send({"type": "line", "text": "hello"})
    [error] = client.messages()
    assert error == {"type": "error", "text": "Choose a nickname first."}


# Chat


def test_lines_reach_everyone_with_ids() -> None:
    """
    A C{line} reaches everyone in the room as a C{message}, the sender
    included (echo), with the same id and time for all.
    """
    factory = chat()
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    alice.send({"type": "line", "text": "hello, bob"})
    [mine] = alice.messages()
    [theirs] = bob.messages()
    assert mine == theirs
    assert mine["type"] == "message"
    assert (mine["room"], mine["nickname"], mine["text"]) == ("#lobby", "alice", "hello, bob")
    alice.send({"type": "line", "text": "/me waves"})
    [action] = bob.messages()
    assert action["type"] == "action" and action["id"] > mine["id"]


def test_telnet_and_web_users_talk() -> None:
    """
    A telnet user and a web user in the same room see each other's lines,
    each in their own format.
    """
    factory = chat()
    web = signed_in(factory, "alice")
    telnet = FakeClient(factory).register("bob")
    web.messages()
    telnet.send(b"hi from telnet\r\n")
    [message] = web.messages()
    assert (message["nickname"], message["text"]) == ("bob", "hi from telnet")
    web.send({"type": "line", "text": "hi from the web"})
    assert telnet.lines() == ["<alice> hi from the web"]


def test_private_messages() -> None:
    """
    C{/msg} sends a C{private} event to the recipient and back to the
    sender, with the same id; nobody else sees it.
    """
    factory = chat()
    alice, bob, carol = (signed_in(factory, n) for n in ("alice", "bob", "carol"))
    for client in (alice, bob, carol):
        client.messages()
    alice.send({"type": "line", "text": "/msg bob psst"})
    [sent] = alice.messages()
    [got] = bob.messages()
    assert sent == got
    assert (got["type"], got["nickname"], got["to"], got["text"]) == (
        "private",
        "alice",
        "bob",
        "psst",
    )
    assert carol.messages() == []


def test_own_nickname_change_comes_back() -> None:
    """
    A web user's own C{/nick} comes back as a C{nick} event, as the others
    in their rooms see it, and also when they are in no room, so the page
    knows its new nickname.
    """
    factory = chat()
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    alice.send({"type": "line", "text": "/nick alicia"})
    [nick] = of_type(alice.messages(), "nick")
    assert (nick["old"], nick["new"]) == ("alice", "alicia")
    assert of_type(bob.messages(), "nick") == [nick]
    alice.send({"type": "line", "text": "/part"})
    alice.send({"type": "line", "text": "/nick alice"})
    [alone] = of_type(alice.messages(), "nick")
    assert (alone["old"], alone["new"]) == ("alicia", "alice")
    assert alone["id"] > nick["id"]


def test_search_results_say_their_limit() -> None:
    """
    C{search_results} says how many matches a search shows at most, so a
    page can say when there may be more.
    """
    data = json.loads(render_json(SearchResults("fox", "#r", [], None)))
    assert data == {
        "type": "search_results",
        "query": "fox",
        "room": "#r",
        "limit": SEARCH_RESULTS,
        "events": [],
    }


def test_rooms_and_switch() -> None:
    """
    C{/join} answers C{joined}; C{switch} answers C{current_room}, and
    plain lines go to the room switched to; C{/part} answers C{parted}.
    """
    factory = chat()
    alice = signed_in(factory, "alice")
    alice.send({"type": "line", "text": "/join #dev"})
    assert of_type(alice.messages(), "joined")[0]["room"] == "#dev"
    alice.send({"type": "switch", "room": "#lobby"})
    assert alice.messages() == [{"type": "current_room", "room": "#lobby"}]
    alice.send({"type": "line", "text": "in the lobby"})
    assert alice.messages()[0]["room"] == "#lobby"
    alice.send({"type": "switch", "room": "#nowhere"})
    assert alice.types() == ["error"]
    alice.send({"type": "line", "text": "/part #dev"})
    assert "parted" in alice.types()


def test_history_page() -> None:
    """
    A C{history} message with C{before} answers the room's events before
    that id, oldest first, with C{asked} true and C{before} echoed.
    """
    factory = chat()
    alice = signed_in(factory, "alice")
    for n in range(5):
        alice.send({"type": "line", "text": f"line {n}"})
    ids = [m["id"] for m in alice.messages()]
    alice.send({"type": "history", "room": "#lobby", "before": ids[3], "count": 2})
    [page] = alice.messages()
    assert page["type"] == "history"
    assert page["asked"] is True and page["before"] == ids[3]
    assert [e["text"] for e in page["events"]] == ["line 1", "line 2"]
    assert [e["id"] for e in page["events"]] == ids[1:3]


def test_history_latest() -> None:
    """
    A C{history} message without C{before} answers the room's latest
    events, with C{before} null.
    """
    factory = chat()
    alice = signed_in(factory, "alice")
    for n in range(3):
        alice.send({"type": "line", "text": f"line {n}"})
    alice.messages()
    alice.send({"type": "history", "room": "#lobby", "count": 2})
    [page] = alice.messages()
    assert page["before"] is None and page["asked"] is True
    assert [e["text"] for e in page["events"]] == ["line 1", "line 2"]


def test_joined_names_operators() -> None:
    """
    C{joined} lists the room's operators: who creates a room is one.
    """
    alice = signed_in(chat(), "alice")
    alice.send({"type": "line", "text": "/join #dev"})
    [joined] = of_type(alice.messages(), "joined")
    assert joined["operators"] == ["alice"]


def test_history_needs_numbers() -> None:
    """
    A C{history} message whose C{before} is not a positive integer gets an
    C{error}.
    """
    alice = signed_in(chat(), "alice")
    for before in ("12", -1, True, 0):
        alice.send({"type": "history", "room": "#lobby", "before": before})
        assert alice.types() == ["error"]


def test_search_without_database() -> None:
    """
    A C{search} on a server that keeps no database answers an C{error}
    that says so.
    """
    alice = signed_in(chat(), "alice")
    alice.send({"type": "search", "text": "anything"})
    [error] = alice.messages()
    assert error["type"] == "error"


def test_replies_render_for_commands() -> None:
    """
    C{/names}, C{/rooms}, C{/topic} and C{/help} answer with C{names},
    C{rooms}, C{topic_is} and C{notice} messages.
    """
    alice = signed_in(chat(), "alice")
    alice.send({"type": "line", "text": "/names"})
    assert alice.messages() == [
        {"type": "names", "room": "#lobby", "nicknames": ["alice"], "operators": [], "away": []}
    ]
    alice.send({"type": "line", "text": "/rooms"})
    assert alice.messages() == [
        {"type": "rooms", "rooms": [{"name": "#lobby", "members": 1, "topic": ""}]}
    ]
    alice.send({"type": "line", "text": "/topic"})
    assert alice.types() == ["topic_is"]
    alice.send({"type": "line", "text": "/help"})
    assert set(alice.types()) == {"notice"}


# Every event as JSON


@pytest.mark.parametrize(
    "event, expected",
    [
        (
            ChatLine("a", "hi", "#r"),
            {"type": "message", "room": "#r", "nickname": "a", "text": "hi", "notice": False},
        ),
        (
            Action("a", "waves", "#r"),
            {"type": "action", "room": "#r", "nickname": "a", "text": "waves"},
        ),
        (
            PrivateMessage("a", "b", "psst"),
            {
                "type": "private",
                "nickname": "a",
                "to": "b",
                "text": "psst",
                "notice": False,
                "action": False,
            },
        ),
        (Joined("a", "#r"), {"type": "join", "room": "#r", "nickname": "a"}),
        (Left("a", "bye", "#r"), {"type": "part", "room": "#r", "nickname": "a", "reason": "bye"}),
        (Left("a", "quit"), {"type": "quit", "nickname": "a", "reason": "quit"}),
        (NicknameChanged("a", "b"), {"type": "nick", "old": "a", "new": "b"}),
        (
            TopicChanged("#r", "a", "t"),
            {"type": "topic", "room": "#r", "nickname": "a", "topic": "t"},
        ),
        (
            Kicked("#r", "op", "a", "spam"),
            {"type": "kick", "room": "#r", "operator": "op", "nickname": "a", "reason": "spam"},
        ),
        (
            ModeChanged("#r", "op", "+o", "a"),
            {"type": "mode", "room": "#r", "operator": "op", "change": "+o", "target": "a"},
        ),
    ],
)
def test_chat_events_as_json(event: Any, expected: dict[str, Any]) -> None:
    """
    Each chat event becomes one line of JSON with its type's fields, and
    its C{id} and C{at} (0 before it is recorded).
    """
    data = render_json(event)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert json.loads(data) == {**expected, "id": 0, "at": 0.0}


@pytest.mark.parametrize(
    "event, expected",
    [
        (Ghosted("a"), {"type": "ghosted", "nickname": "a"}),
        (Killed("op", "spam"), {"type": "killed", "operator": "op", "reason": "spam"}),
        (ServerShutdown(), {"type": "shutdown"}),
    ],
)
def test_closing_events_as_json(event: Any, expected: dict[str, Any]) -> None:
    """
    The events that come before the server closes a connection have no id.
    """
    assert json.loads(render_json(event)) == expected


def test_text_is_passed_as_text() -> None:
    """
    Markup in what users wrote is sent as it was typed, in a JSON string:
    the page inserts it as text.
    """
    factory = chat()
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    bob.send({"type": "line", "text": "<img src=x onerror=alert(1)><script>x</script>"})
    assert alice.messages()[0]["text"] == "<img src=x onerror=alert(1)><script>x</script>"


def test_control_characters_removed() -> None:
    """
    Control characters and escape sequences in a line are removed, as for
    telnet lines.
    """
    factory = chat()
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    bob.send({"type": "line", "text": "red\x1b[31m\u202eevil\x00"})
    assert alice.messages()[0]["text"] == "redevil"


# Bad input


@pytest.mark.parametrize(
    "text, error",
    [
        ("not json", "Not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"no": "type"}', "JSON object"),
        ('{"type": 5}', "JSON object"),
        ('{"type": "fly"}', "Unknown message type 'fly'"),
        ('{"type": "line"}', "needs 'text'"),
        ('{"type": "line", "text": 5}', "needs 'text'"),
    ],
)
def test_bad_messages_get_errors(text: str, error: str) -> None:
    """
    A message that is not a JSON object with a known type and its fields
    gets an C{error} saying what is wrong; the connection stays.
    """
    alice = signed_in(chat(), "alice")
    alice.send_text(text)
    [reply] = alice.messages()
    assert reply["type"] == "error" and error in reply["text"]
    assert alice.connected


def test_binary_message_refused() -> None:
    """
    A binary message gets an C{error}; the connection stays.
    """
    alice = signed_in(chat(), "alice")
    alice.send_bytes(b"\x00\x01")
    assert alice.types() == ["error"]
    assert alice.connected


def test_bad_messages_in_a_row_close() -> None:
    """
    After L{MAX_BAD_MESSAGES} bad messages in a row the connection closes
    with code 1008; a good message in between starts the count again.
    """
    alice = signed_in(chat(), "alice")
    for _ in range(MAX_BAD_MESSAGES - 1):
        alice.send_text("junk")
    alice.send({"type": "line", "text": "/names"})
    for _ in range(MAX_BAD_MESSAGES - 1):
        alice.send_text("junk")
    alice.messages()
    assert alice.connected
    alice.send_text("junk")
    alice.messages()
    assert alice.close_code == 1008
    assert not alice.connected


def test_long_line_refused() -> None:
    """
    A line longer than C{max_line_length} bytes gets an C{error} and is
    not sent; the connection stays.
    """
    factory = chat(max_line_length=100)
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    bob.send({"type": "line", "text": "é" * 51})
    [error] = bob.messages()
    assert error["text"] == "Line too long: at most 100 bytes. It was not sent."
    assert alice.messages() == []


def test_long_message_refused() -> None:
    """
    A message longer than L{max_message} characters gets an C{error}
    without being parsed; the connection stays.
    """
    factory = chat(max_line_length=100)
    bob = signed_in(factory, "bob")
    bob.send({"type": "line", "text": "x" * max_message(100)})
    [error] = bob.messages()
    assert "Message too long" in error["text"]
    assert bob.connected


def test_huge_message_closes() -> None:
    """
    More than L{MAX_INPUT} bytes without the end of a message closes the
    connection with code 1009 (message too big), after an C{error}; the
    server kept no more than one read beyond the limit.
    """
    factory = chat()
    bob = signed_in(factory, "bob")
    chunk = 16 * 1024
    for _ in range(MAX_INPUT // chunk + 1):
        bob.protocol.dataReceived(bob.ws.send(TextMessage("x" * chunk, message_finished=False)))
    messages = bob.messages()
    assert messages[-1]["type"] == "error" and "too big" in messages[-1]["text"]
    assert bob.close_code == 1009


def test_many_messages_under_the_limit_stay() -> None:
    """
    The input bound counts one message at a time: many messages that add
    up to more than L{MAX_INPUT} are all handled.
    """
    factory = chat(max_line_length=8192)
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    for n in range(3 * MAX_INPUT // 8000):
        bob.send({"type": "line", "text": f"{n}" + "x" * 8000})
    assert len(alice.messages()) == 3 * MAX_INPUT // 8000
    assert bob.connected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(
                        ["nickname", "password", "line", "switch", "history", "search", "x"]
                    )
                },
                optional={
                    "nickname": st.one_of(st.text(max_size=20), st.integers()),
                    "password": st.one_of(st.text(max_size=20), st.none()),
                    "text": st.one_of(
                        st.text(max_size=50),
                        st.sampled_from(
                            [
                                "/join #a",
                                "/part",
                                "/nick b",
                                "/me x",
                                "/msg a hi",
                                "/search x",
                                "/quit",
                            ]
                        ),
                    ),
                    "room": st.one_of(st.sampled_from(["#lobby", "#a", "#", "x"]), st.integers()),
                    "before": st.one_of(st.integers(), st.text(max_size=3), st.booleans()),
                    "count": st.one_of(st.integers(), st.floats()),
                },
            ).map(json.dumps),
            st.text(max_size=30),
        ),
        max_size=12,
    )
)
def test_any_messages_are_handled(messages: list[str]) -> None:
    """
    Whatever text messages a client sends, shaped like the protocol or
    not, the server answers with JSON objects and never raises; it closes
    the connection only when asked to (C{/quit}) or after too many bad
    messages.
    """
    factory = chat()
    signed_in(factory, "bob")
    client = WebClient(factory, port=50002)
    received = client.messages()
    for message in messages:
        if not client.connected:
            break
        client.send_text(message)
        received += client.messages()
    assert all(isinstance(m["type"], str) for m in received)
    assert client.connected or client.close_code in (1000, 1008)


# Flood control, SendQ, limits


def test_flood_control_slows_reading() -> None:
    """
    Messages beyond the flood burst wait, with reading paused, and are
    handled in order once the flood control allows; none is lost.
    """
    factory = make_factory(flood_rate=1, flood_burst=3, flood_bytes=0)
    alice = signed_in(factory, "alice")
    bob = signed_in(factory, "bob")
    alice.messages()
    for n in range(6):
        bob.send({"type": "line", "text": f"line {n}"})
    early = [m["text"] for m in alice.messages()]
    assert len(early) < 6
    assert bob.transport.producerState == "paused"
    for _ in range(10):
        factory.clock.advance(1)
    late = [m["text"] for m in alice.messages()]
    assert early + late == [f"line {n}" for n in range(6)]
    assert bob.transport.producerState == "producing"


def test_sendq_cut_off() -> None:
    """
    A web client that reads nothing while the chat goes on is cut off once
    its SendQ passes C{max_sendq}; the others see it leave for "SendQ
    exceeded".
    """
    factory = chat(max_sendq=2000)
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    bob.messages()
    alice.messages()
    # The transport says its buffer is full: Bob's output waits in his SendQ.
    bob.transport.producer.pauseProducing()
    bob.send({"type": "line", "text": "x"})  # something handed over, then congested
    for n in range(40):
        alice.send({"type": "line", "text": f"line {n} " + "y" * 100})
    factory.clock.advance(0)
    quits = [m for m in alice.messages() if m["type"] == "quit"]
    assert quits and quits[0]["reason"] == "SendQ exceeded"
    assert bob.transport.disconnected or not bob.connected


def test_admission_refused() -> None:
    """
    A connection beyond C{max_clients} gets an C{error} and close code
    1013 (try again later).
    """
    factory = chat(max_clients=1)
    signed_in(factory, "alice")
    refused = WebClient(factory, port=50003)
    [error] = refused.messages()
    assert "full" in error["text"]
    assert refused.close_code == 1013


def test_ghosted_closes() -> None:
    """
    A web user whose registered nickname is taken over gets C{ghosted} and
    the connection closes normally.
    """
    factory = accounts_chat()
    first = signed_in(factory, "alice")
    first.send({"type": "line", "text": "/register s3cret-pw"})
    first.messages()
    second = WebClient(factory, port=50004)
    second.messages()
    second.send({"type": "nickname", "nickname": "alice", "password": "s3cret-pw"})
    factory.clock.advance(2)  # type: ignore[attr-defined]
    assert first.types()[-1] == "ghosted"
    assert first.close_code == 1000


def test_close_right_after_a_line() -> None:
    """
    A client that sends a line and its close frame together gets nothing
    more, and nobody else misses anything: what was delivered to it
    between its close frame and the end of the connection is dropped, not
    sent into the closed WebSocket (which C{wsproto} refuses).
    """
    factory = chat()
    leaving = signed_in(factory, "leaving")
    telnet = FakeClient(factory).register("bob")
    leaving.messages()
    leaving.protocol.dataReceived(
        leaving.ws.send(TextMessage(json.dumps({"type": "line", "text": "bye all"})))
        + leaving.ws.send(CloseConnection(1000))
    )
    assert telnet.lines() == ["<leaving> bye all", "*** leaving has left (connection lost)"]
    FakeClient(factory).register("carol")
    assert telnet.lines() == ["*** carol has joined"]


def test_flusher_survives_a_failing_connection() -> None:
    """
    If writing one connection's output raises, the others' output is still
    sent in the same reactor iteration, and the failure is logged.
    """
    factory = chat()
    alice, bob = signed_in(factory, "alice"), signed_in(factory, "bob")
    alice.messages()
    bob.messages()

    def broken(data: bytes) -> None:
        raise RuntimeError("broken")

    alice.transport.write = broken  # type: ignore[method-assign]
    with capturedLogs() as events:
        bob.send({"type": "line", "text": "still here"})
    assert [m["text"] for m in bob.messages()] == ["still here"]
    assert any(event.get("log_failure") is not None for event in events)


def test_shutdown_closes() -> None:
    """
    When the server shuts down, every web client gets C{shutdown} and the
    connection closes.
    """
    factory = chat()
    alice = signed_in(factory, "alice")
    factory.shutdown()
    assert alice.types() == ["shutdown"]
    assert alice.close_code == 1000


# The site


def test_origin_of_another_site_refused() -> None:
    """
    An upgrade from a page of another origin is refused with 403
    (cross-site WebSocket hijacking).
    """
    client = WebClient(chat(), origin="https://evil.example")
    client.messages()
    assert client.accepted is False and client.status == 403


def test_same_origin_and_no_origin_accepted() -> None:
    """
    An upgrade from the page's own origin, or with no C{Origin} (not a
    browser), is accepted.
    """
    factory = chat()
    for origin in ("http://chat.test", None):
        client = WebClient(factory, origin=origin)
        client.messages()
        assert client.accepted is True


def test_other_origin_allowed_when_listed() -> None:
    """
    An origin given with C{--web-origin} may use the WebSocket.
    """
    factory = chat()
    site = make_site(factory, ["https://chat.example.org"])
    client = WebClient(factory, origin="https://chat.example.org", site=site)
    client.messages()
    assert client.accepted is True


def test_missing_page_is_404_with_headers() -> None:
    """
    A path that is no file answers 404, with the security headers too (the
    page's own files are served through Twisted's cooperator, and tested
    end to end in C{test_web_end_to_end}).
    """
    response = http_get(chat(), b"/nothing-here")
    head = response.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 404")
    for name, value in SECURITY_HEADERS.items():
        assert name + b": " + value in head


def test_deeply_nested_json_is_a_bad_message() -> None:
    """
    JSON nested too deeply for the parser (a RecursionError, not a
    ValueError) gets an C{error} like any other bad message.
    """
    alice = signed_in(chat(), "alice")
    alice.send_text("[" * 6000 + "]" * 6000)
    [reply] = alice.messages()
    assert reply["type"] == "error" and "Not JSON" in reply["text"]
    assert alice.connected


def test_every_byte_is_charged() -> None:
    """
    Flood control by bytes charges every byte received, frames of every
    kind included (pings here), as telnet charges telnet negotiation:
    past the byte burst, reading pauses.
    """
    factory = chat(flood_bytes=100, flood_byte_burst=1000)
    alice = signed_in(factory, "alice")
    for _ in range(20):
        alice.protocol.dataReceived(alice.ws.send(Ping(b"x" * 100)))
    assert alice.transport.producerState == "paused"
    factory.clock.advance(30)  # type: ignore[attr-defined]
    assert alice.transport.producerState == "producing"


def test_any_message_is_activity() -> None:
    """
    The idle timeout counts any message as activity, not only lines: a
    user who only switches rooms is not idle.
    """
    factory = chat(idle_timeout=60)
    alice = signed_in(factory, "alice")
    for _ in range(5):
        factory.clock.advance(50)  # type: ignore[attr-defined]
        alice.send({"type": "switch", "room": "#lobby"})
    assert alice.connected
    factory.clock.advance(61)  # type: ignore[attr-defined]
    alice.messages()
    assert not alice.connected


def test_web_connections_per_address_limited() -> None:
    """
    Plain HTTP connections from one address are limited to
    L{HTTP_PER_ADDRESS} times C{max_per_ip}, apart from telnet ones: one
    more is refused at once; closing one, or upgrading one to a WebSocket
    (which the chat's own limits count), lets another in.
    """
    factory = make_factory(max_per_ip=1)
    site = make_site(factory)
    address = IPv4Address("TCP", "192.0.2.7", 50010)
    opened = [site.buildProtocol(address) for _ in range(HTTP_PER_ADDRESS)]
    assert not any(isinstance(protocol, Refused) for protocol in opened)
    refused = site.buildProtocol(address)
    assert isinstance(refused, Refused)
    # Dropped as soon as it is made (also under TLS, which wraps it).
    dropped = StringTransportWithDisconnection()
    dropped.protocol = refused
    refused.makeConnection(dropped)
    assert not dropped.connected
    assert not isinstance(site.buildProtocol(IPv4Address("TCP", "192.0.2.8", 50010)), Refused)
    transport = StringTransportWithDisconnection()
    transport.protocol = opened[0]
    opened[0].makeConnection(transport)
    transport.loseConnection()
    assert not isinstance(site.buildProtocol(address), Refused)
    assert isinstance(site.buildProtocol(address), Refused)
    web = WebClient(factory, site=site, address="192.0.2.9")
    web.messages()
    assert web.accepted
    more = [site.buildProtocol(IPv4Address("TCP", "192.0.2.9", 1)) for _ in range(4)]
    assert not any(isinstance(protocol, Refused) for protocol in more)


def test_slow_request_dropped() -> None:
    """
    An HTTP connection that has not sent a whole request within
    L{HTTP_TIMEOUT} seconds is dropped, however it trickles bytes; a
    WebSocket is not.
    """
    factory = chat()
    site = make_site(factory)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50006))
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    for _ in range(HTTP_TIMEOUT // 10):
        protocol.dataReceived(b"G")
        factory.clock.advance(10)  # type: ignore[attr-defined]
    factory.clock.advance(1)  # type: ignore[attr-defined]
    assert transport.disconnecting or not transport.connected
    web = signed_in(factory, "alice")
    factory.clock.advance(10 * HTTP_TIMEOUT)  # type: ignore[attr-defined]
    assert web.connected


def test_huge_request_dropped() -> None:
    """
    An HTTP request whose body is larger than L{MAX_INPUT} drops the
    connection before the body is buffered whole.
    """
    factory = chat()
    site = make_site(factory)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50005))
    transport = StringTransportWithDisconnection()
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: chat.test\r\nContent-Length: 1000000\r\n\r\n")
    for _ in range(MAX_INPUT // 4096 + 2):
        if transport.disconnecting or transport.disconnected:
            break
        protocol.dataReceived(b"x" * 4096)
    assert transport.disconnecting or transport.disconnected
