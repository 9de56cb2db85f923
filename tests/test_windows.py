"""
Tests for L{twistedchat.windows}, the full-screen client's model, without
a terminal: the server's lines sorted into windows, unread counts and
mentions, what typing sends, completion, the input history, and signing
in again after a reconnect.
"""

from __future__ import annotations

from twistedchat.windows import SCROLLBACK, SERVER, ChatModel, nick_colour


def welcomed(*lines: str) -> ChatModel:
    """
    A model welcomed as alice in #lobby with bob, then fed C{lines}.
    """
    model = ChatModel("alice")
    for line in (
        "*** Welcome, alice! 2 users online: alice, bob. Type /help for the commands.",
        "*** 2 users in #lobby: alice, bob",
        *lines,
    ):
        model.receive(line.encode())
    return model


def texts(model: ChatModel, name: str) -> list[str]:
    return [line.text for line in model.window(name).lines]


def test_welcome_then_names_shows_the_room() -> None:
    """
    The welcome makes the model ask /names (in its outbox); the answer
    names the room plain lines go to, its members, and shows its window.
    """
    model = ChatModel("alice")
    model.receive(b"*** Welcome, alice! 1 user online: alice. Type /help for the commands.")
    assert model.nickname == "alice" and model.outbox == ["/names"]
    model.receive(b"*** 2 users in #lobby: @alice, bob")
    assert (model.current, model.server_room) == ("#lobby", "#lobby")
    assert model.window("#lobby").members == {"alice", "bob"}


def test_lines_sorted_into_windows() -> None:
    """
    Room-tagged lines go to their room, plain ones to the room the server
    sends to, private messages (received and sent) to the other's window,
    and each is counted unread (with mentions) until shown.
    """
    model = welcomed(
        "*** You joined #dev; your lines go there now. 2 users here: alice, bob.",
        "[#dev] <bob> in dev",
        "[#lobby] <bob> hey alice, look",
        "*bob* psst",
        "-> *bob* thanks",
    )
    assert model.current == "#dev"
    assert texts(model, "#dev")[-1] == "<bob> in dev"
    assert texts(model, "#lobby")[-1] == "<bob> hey alice, look"
    assert texts(model, "bob") == ["*bob* psst", "-> *bob* thanks"]
    assert model.activity() == [(2, "#lobby", 1, True), (4, "bob", 1, False)]
    assert model.bell
    model.show("#lobby")
    assert model.activity() == [(4, "bob", 1, False)]


def test_hostile_text_is_cleaned() -> None:
    """
    Escape sequences, OSC (title, clipboard) and control characters from
    the server never reach a window.
    """
    model = welcomed()
    model.receive(b"<bob> \x1b[2J\x1b]0;PWNED\x07\x1b]52;c;aGk=\x07red\x1b[31m \x07\xc2\x9b1mdone")
    (line,) = [t for t in texts(model, "#lobby") if t.startswith("<bob>")]
    assert line == "<bob> red done"


def test_typing_sends_to_the_window_shown() -> None:
    """
    Plain text in the room the server sends to goes as it is, shown as
    one's own line; in another room as /msg #room; in a private window as
    /msg nick; commands as they are; /switch shows that window.
    """
    model = welcomed("*** You joined #dev; your lines go there now. 1 user here: alice.")
    assert model.typed("hello dev") == ["hello dev"]
    assert texts(model, "#dev")[-1] == "<alice> hello dev"
    model.show("#lobby")
    assert model.typed("hello lobby") == ["/msg #lobby hello lobby"]
    model.show("bob")
    assert model.typed("hi bob") == ["/msg bob hi bob"]
    assert model.typed("/switch #lobby") == ["/switch #lobby"]
    assert model.current == "#lobby"


def test_completion_and_history() -> None:
    """
    Tab completes commands and the nicknames of the window shown (with
    ": " first in a line); Up and Down walk what was typed.
    """
    model = welcomed("*** bobby has joined")
    assert model.complete("/jo") == ["/join "]
    assert model.complete("bo") == ["bob: ", "bobby: "]
    assert model.complete("hi bob") == ["hi bob ", "hi bobby "]
    model.typed("first")
    model.typed("second")
    assert model.recall(-1, "") == "second"
    assert model.recall(-1, "") == "first"
    assert model.recall(1, "") == "second"
    assert model.recall(1, "") == ""


def test_rejoin_after_reconnect() -> None:
    """
    After a reconnect the model signs in again with the nickname and the
    password given this session, and once welcomed joins its rooms again,
    the one plain lines went to last.
    """
    model = welcomed(
        "*** You joined #dev; your lines go there now. 1 user here: alice.",
        "*** Your lines go to #lobby now.",
    )
    model.typed("/identify correct-horse")
    model.outbox.clear()
    assert model.rejoin() == ["alice correct-horse"]
    model.receive(b"*** Welcome, alice! 1 user online: alice. Type /help for the commands.")
    assert model.outbox == ["/join #dev", "/join #lobby"]


def test_scrollback_and_colours() -> None:
    """
    A window keeps its last SCROLLBACK lines; a nickname's colour is the
    same every time.
    """
    model = welcomed(*[f"<bob> line {n}" for n in range(SCROLLBACK + 10)])
    lines = model.window("#lobby").lines
    assert len(lines) == SCROLLBACK and lines[-1].text == f"<bob> line {SCROLLBACK + 9}"
    assert nick_colour("bob") == nick_colour("Bob") == nick_colour("bob")
    assert model.window(SERVER).lines[0].text.startswith("*** Welcome")


def test_already_in_a_room_and_failed_reconnects() -> None:
    """
    "You are in #lobby already; your lines go there now." moves where
    plain lines go; signing in again, however many attempts it takes,
    keeps the nickname and rooms to come back to.
    """
    model = welcomed("*** You joined #dev; your lines go there now. 1 user here: alice.")
    model.receive(b"*** You are in #lobby already; your lines go there now.")
    assert model.server_room == "#lobby"
    model.typed("/nick alice2")
    model.receive(b"*** You are now known as alice2 (was alice).")
    model.outbox.clear()
    assert model.rejoin() == model.rejoin() == ["alice2"]
    model.receive(b"*** Welcome, alice2! 1 user online: alice2. Type /help for the commands.")
    assert model.outbox == ["/join #dev", "/join #lobby"]


def test_password_prompt_and_reconnect() -> None:
    """
    Before the welcome, lines go as they are and are not shown as said;
    the answer to the password prompt is remembered (to sign in again
    after a reconnect) and kept out of the input history; after a
    disconnect, lines typed go as they are again until the next welcome.
    """
    model = ChatModel("alicia")
    model.receive(b"*** The nickname alicia is registered. Send its password, or an empty line")
    assert model.typed("secret-horse") == ["secret-horse"]
    assert (model.password, model.history) == ("secret-horse", [])
    model.receive(b"*** Welcome, alicia! 1 user online: alicia. Type /help for the commands.")
    model.receive(b"*** 1 user in #lobby: alicia")
    model.disconnected()
    assert model.rejoin() == ["alicia secret-horse"]
    assert model.typed("hello everyone") == ["hello everyone"]
    assert texts(model, "#lobby")[-1:] == ["*** 1 user in #lobby: alicia"]


def test_windows_follow_the_rooms() -> None:
    """
    /part closes the room's window and shows another; /switch to a room
    one is not in opens no window; /me in a private window is refused
    locally; away members complete by nickname; a reconnect rejoins only
    the rooms the server confirmed, and keeps the window shown.
    """
    model = welcomed(
        "*** You joined #dev; your lines go there now. 1 user here: alice.",
        "*** 3 users in #dev: @alice, bob (away), carol",
    )
    assert model.complete("bo") == ["bob: "]
    model.typed("/switch #typo")
    assert "#typo" not in model.windows
    model.show("bob")
    assert model.typed("/me nods") == []
    assert texts(model, "bob")[-1] == "!!! /me works in a room's window."
    model.show("#dev")
    model.receive(b"*** You left #dev.")
    assert "#dev" not in model.windows and model.current in ("#lobby", SERVER)
    model.receive(b"*** Your lines go to #lobby now.")
    model.show("bob")
    model.outbox.clear()
    model.disconnected()
    model.rejoin()
    model.receive(b"*** Welcome, alice! 1 user online: alice. Type /help for the commands.")
    assert model.outbox == ["/join #lobby"]
    model.receive(b"*** You are in #lobby already; your lines go there now.")
    assert model.current == "bob"


def test_quit_commands() -> None:
    """
    /quit, /exit and .exit mark the model as quitting.
    """
    for command in ("/quit bye", "/exit", ".exit"):
        model = welcomed()
        model.typed(command)
        assert model.quitting
