"""
Tests for L{twistedchat.session}: one user's rooms, moderation, server
operators, private messages, renames and leaving, through
L{ChatSession} objects driven directly by a recording front end, with no
wire format.
"""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from fakeclients import make_factory
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twistedchat.accounts import Account, Accounts, IAccount
from twistedchat.events import (
    Action,
    ChatLine,
    CurrentRoom,
    Error,
    Event,
    HistoryReplay,
    Joined,
    Kicked,
    Killed,
    Left,
    ModeChanged,
    Names,
    NicknameChanged,
    Notice,
    PrivateMessage,
    PrivateMessageSent,
    RoomJoined,
    RoomList,
    RoomParted,
    RoomSummary,
    TopicChanged,
    TopicIs,
)
from twistedchat.factory import ChatFactory
from twistedchat.history import History
from twistedchat.rooms import MAX_BANS, BannedFromRoom, InvalidRoomName
from twistedchat.session import ChatSession, IFrontEnd, State

T = TypeVar("T", bound=Event)

#: Argon2id with small costs, so tests run fast.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "s3cret-pw"


@implementer(IFrontEnd)
class Recorder:
    """
    A front end that records what its session is told: events delivered
    (seen by others too) and replies (for this user only) apart, and
    whether the connection was closed.

    @ivar closed_after: how many events had been delivered when close()
        was called, or C{None} if it was not.
    """

    session: ChatSession
    kind = "test"

    def __init__(self) -> None:
        self.delivered: list[Event] = []
        self.replies: list[Event] = []
        self.closed_after: int | None = None

    def deliver(self, event: Event) -> None:
        self.delivered.append(event)

    def reply(self, event: Event) -> None:
        self.replies.append(event)

    def close(self) -> None:
        self.closed_after = len(self.delivered)

    @property
    def closed(self) -> bool:
        """
        Whether close() was called.
        """
        return self.closed_after is not None

    def line(self, text: str) -> None:
        """
        Hand C{text} to the session as a line the user typed.
        """
        self.session.line(text)

    def replies_of(self, kind: type[T]) -> list[T]:
        """
        Return the replies of type C{kind}.
        """
        return [event for event in self.replies if isinstance(event, kind)]

    def errors(self) -> list[str]:
        """
        Return the text of each Error reply.
        """
        return [event.text for event in self.replies_of(Error)]

    def forget(self) -> None:
        """
        Forget what was recorded so far.
        """
        self.delivered.clear()
        self.replies.clear()


def chat(**options: Any) -> ChatFactory:
    """
    A factory on a L{Clock} with history kept in memory.
    """
    clock = Clock()
    return make_factory(clock, history=History(None, clock), flood_rate=0, **options)


def accounts_chat(**options: Any) -> ChatFactory:
    """
    A factory as L{chat} makes, with in-memory accounts hashed at once.
    """
    clock = Clock()
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=maybeDeferred)
    return make_factory(
        clock, history=History(None, clock), accounts=accounts, flood_rate=0, **options
    )


def connect(factory: ChatFactory) -> Recorder:
    """
    Open a session on C{factory} with a new L{Recorder}; no nickname yet.
    """
    front_end = Recorder()
    front_end.session = ChatSession(factory, front_end, "127.0.0.1", "127.0.0.1:5000")
    front_end.session.open()
    return front_end


def users(factory: ChatFactory, *nicknames: str) -> list[Recorder]:
    """
    Connect one session per nickname; forget what each was told so far.
    """
    made = []
    for nickname in nicknames:
        user = connect(factory)
        user.session.choose_nickname(nickname)
        made.append(user)
    for user in made:
        user.forget()
    return made


def in_room(room: str, *members: Recorder) -> None:
    """
    Have C{members} join C{room} in turn (the first creates it); forget
    what each was told.
    """
    for member in members:
        member.session.join(room)
    for member in members:
        member.forget()


def registered(factory: ChatFactory, nickname: str) -> None:
    """
    Register C{nickname} with L{PASSWORD} the way a user does, then leave.
    """
    (user,) = users(factory, nickname)
    user.session.register_account(PASSWORD)
    user.session.quit()
    user.session.connection_lost()


def identified(factory: ChatFactory, nickname: str) -> Recorder:
    """
    Connect as the registered C{nickname}, giving its password.
    """
    user = connect(factory)
    user.session.choose_nickname(nickname, PASSWORD)
    assert user.session.account == Account(nickname), user.replies
    user.forget()
    return user


def oper_chat() -> tuple[ChatFactory, Recorder]:
    """
    A factory with accounts whose server operator is root2, and root2
    identified.
    """
    factory = accounts_chat(server_operators=["root2"])
    registered(factory, "root2")
    return factory, identified(factory, "root2")


# Rooms


def test_recorder_is_a_front_end() -> None:
    """
    The recording front end provides IFrontEnd, which the tests rely on.
    """
    assert verifyObject(IFrontEnd, Recorder())


def test_everyone_starts_in_the_default_room() -> None:
    """
    A user who chose a nickname is in the default room, which plain lines
    go to, and the others there are told with Joined naming the room.
    """
    factory = chat(default_room="#Main")
    (alice,) = users(factory, "alice")
    bob = connect(factory)
    bob.session.choose_nickname("bob")
    assert list(bob.session.rooms) == ["#main"]
    assert bob.session.current_room().name == "#Main"
    assert alice.delivered == [Joined("bob", "#Main")]


@pytest.mark.parametrize("name", ["#" + "x" * 49, "#a", "#dév", "#a.b-c!"])
def test_valid_room_names(name: str) -> None:
    """
    A room name is # and 1 to 49 more characters other than space, comma,
    colon, BEL, NUL, CR and LF.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    alice.session.join(name)
    assert alice.replies_of(RoomJoined) == [RoomJoined(name, "", ["alice"], operators=["alice"])]


@pytest.mark.parametrize(
    "name", ["#" + "x" * 50, "#", "dev", "#a b", "#a,b", "#a:b", "#a\x07b", "#a\x00b"]
)
def test_invalid_room_names(name: str) -> None:
    """
    join() raises InvalidRoomName for a name that is too long, lacks the
    #, or holds a space, comma, colon, BEL or NUL; no room is made.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    with pytest.raises(InvalidRoomName):
        alice.session.join(name)
    assert [room.name for room in factory.rooms()] == ["#lobby"]


def test_invalid_room_name_line() -> None:
    """
    /join with an invalid room name is answered with an Error reply.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    alice.line("/join #a,b")
    assert alice.errors() == [
        "#a,b is no room name: a room name starts with # and has no "
        "spaces, commas, colons or control characters."
    ]


@pytest.mark.parametrize(("first", "second"), [("#Dev", "#dEV"), ("#[x]", "#{X}")])
def test_room_names_are_case_insensitive(first: str, second: str) -> None:
    """
    Room names compare with the nickname case mapping: #Dev and #dEV, or
    #[x] and #{X}, are one room, called as it was created.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.session.join(first)
    alice.forget()
    bob.session.join(second)
    assert bob.replies_of(RoomJoined) == [
        RoomJoined(first, "", ["alice", "bob"], operators=["alice"])
    ]
    assert alice.delivered == [Joined("bob", first)]


def test_join_creates_room_with_creator_as_operator() -> None:
    """
    /join of a new room creates it with the creator as its only operator
    and replies RoomJoined with the members and topic.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/join #dev")
    assert alice.replies == [RoomJoined("#dev", "", ["alice"], operators=["alice"])]
    bob.session.join("#dev")
    alice.line("/names #dev")
    assert alice.replies_of(Names)[-1] == Names("#dev", ["alice", "bob"], ["alice"])


def test_creator_operator_for_the_session_only() -> None:
    """
    A creator who proved no account is an operator only while connected:
    coming back under the same nickname does not make them one.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.session.quit()
    (alice2,) = users(factory, "alice")
    alice2.session.join("#dev")
    alice2.line("/names")
    assert alice2.replies_of(Names) == [Names("#dev", ["alice", "bob"], [])]


def test_identified_creator_operator_by_account() -> None:
    """
    A creator who proved their account stays the room's operator through
    the account: back on a new connection with the password, they are
    its operator again, and the room was kept while empty.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    alice = identified(factory, "alice")
    alice.session.join("#dev")
    alice.session.quit()
    again = identified(factory, "alice")
    again.session.join("#dev")
    again.line("/names")
    assert again.replies_of(Names) == [Names("#dev", ["alice"], ["alice"])]


def test_join_tells_others_in_the_room_only() -> None:
    """
    Joining an existing room gives the joiner RoomJoined with the members
    in order and the topic; its members get Joined with the room; users
    elsewhere get nothing.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice)
    alice.session.set_topic("releases")
    alice.forget()
    bob.session.join("#dev")
    assert bob.replies_of(RoomJoined) == [
        RoomJoined("#dev", "releases", ["alice", "bob"], operators=["alice"])
    ]
    assert alice.delivered == [Joined("bob", "#dev")]
    assert carol.delivered == []


def test_join_again() -> None:
    """
    Joining a room one is in replies RoomJoined(already=True) and tells
    nobody.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    bob.line("/join #DEV")
    assert bob.replies == [
        RoomJoined("#dev", "", ["alice", "bob"], already=True, operators=["alice"])
    ]
    assert alice.delivered == bob.delivered == []


def test_join_switches_current_room() -> None:
    """
    After /join, plain lines go to the room joined.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.line("hello")
    assert bob.delivered == [ChatLine("alice", "hello", "#dev")]
    assert carol.delivered == []


def test_part_tells_room_with_reason() -> None:
    """
    /part #ROOM REASON leaves the room: the user gets RoomParted, the other
    members get Left with the room and reason, others nothing.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    bob.line("/part #dev off to lunch")
    assert bob.replies[0] == RoomParted("#dev")
    assert alice.delivered == [Left("bob", "off to lunch", "#dev")]
    assert carol.delivered == []
    assert "#dev" not in bob.session.rooms


def test_part_current_room_moves_current_room() -> None:
    """
    /part with no room leaves the current room, and the user is told with
    CurrentRoom which room their lines go to now.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    in_room("#dev", alice)
    alice.line("/part")
    assert alice.replies == [RoomParted("#dev"), CurrentRoom("#lobby")]
    assert alice.session.current_room().name == "#lobby"


def test_part_default_reason() -> None:
    """
    /part with no reason tells the others no reason.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    bob.line("/part")
    assert alice.delivered == [Left("bob", "", "#lobby")]


def test_part_other_room_keeps_current_room() -> None:
    """
    Parting a room other than the current one leaves the current room as
    it was, without a CurrentRoom reply.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    in_room("#dev", alice)
    alice.line("/part #lobby")
    assert alice.replies == [RoomParted("#lobby")]
    assert alice.session.current_room().name == "#dev"


def test_empty_room_vanishes_but_default_room_stays() -> None:
    """
    A room its last member left vanishes; the default room stays.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    in_room("#dev", alice)
    alice.line("/part #dev")
    alice.line("/part #lobby")
    assert [room.name for room in factory.rooms()] == ["#lobby"]
    assert alice.session.rooms == {}


def test_part_room_not_in() -> None:
    """
    Parting a room one is not in is answered with an Error and tells
    nobody.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    bob.line("/part #dev")
    assert bob.errors() == ["You are not in #dev; /join #dev joins it."]
    assert alice.delivered == []


def test_switch() -> None:
    """
    /switch #ROOM sends plain lines to another room one is in, replying
    CurrentRoom; /switch to a room one is not in is an Error.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    alice.line("/switch #LOBBY")
    alice.line("hi")
    assert alice.replies == [CurrentRoom("#lobby")]
    assert bob.delivered == [ChatLine("alice", "hi", "#lobby")]
    alice.line("/switch #ops")
    assert alice.errors() == ["You are not in #ops; /join #ops joins it."]


def test_msg_room_says_without_switching() -> None:
    """
    /msg #ROOM TEXT says TEXT in that room; plain lines still go to the
    current room.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, carol)
    alice.line("/msg #lobby to the lobby")
    alice.line("to dev")
    assert bob.delivered == [ChatLine("alice", "to the lobby", "#lobby")]
    assert carol.delivered == [
        ChatLine("alice", "to the lobby", "#lobby"),
        ChatLine("alice", "to dev", "#dev"),
    ]


def test_msg_room_not_in() -> None:
    """
    /msg to a room one is not in is an Error and reaches nobody.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    alice.line("/part #lobby")
    bob.forget()
    alice.line("/msg #lobby hello")
    assert alice.errors() == ["You are not in #lobby; /join #lobby joins it."]
    assert bob.delivered == []


def test_lines_reach_room_members_only() -> None:
    """
    A plain line and an action reach the other members of the current
    room only, not the sender nor anyone outside.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.line("hi")
    alice.line("/me waves")
    assert bob.delivered == [ChatLine("alice", "hi", "#dev"), Action("alice", "waves", "#dev")]
    assert alice.delivered == carol.delivered == []


def test_plain_line_in_no_room() -> None:
    """
    A plain line from a user in no room is answered with an Error.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/part")
    alice.forget()
    alice.line("anyone?")
    assert alice.errors() == ["You are in no room; /join #ROOM joins one."]
    assert bob.delivered == [Left("alice", "", "#lobby")]


@pytest.mark.parametrize("command", ["/rooms", "/list"])
def test_rooms_lists_every_room(command: str) -> None:
    """
    /rooms (and /list) lists every room, sorted, with its member count and
    topic, including rooms the user is not in.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.session.set_topic("code")
    carol.line(command)
    assert carol.replies == [
        RoomList([RoomSummary("#dev", 2, "code"), RoomSummary("#lobby", 3, "")])
    ]


@pytest.mark.parametrize("command", ["/names", "/who"])
def test_names_lists_members_and_operators(command: str) -> None:
    """
    /names (and /who) lists the current room's members, sorted, and its
    operators.
    """
    factory = chat()
    carol, alice, bob = users(factory, "carol", "alice", "bob")
    in_room("#dev", carol, alice)
    carol.line(command)
    assert carol.replies == [Names("#dev", ["alice", "carol"], ["carol"])]


def test_names_of_another_room() -> None:
    """
    /names #ROOM lists a room the user is not in; an unknown room is an
    Error.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    bob.line("/names #dev")
    bob.line("/names #nowhere")
    assert bob.replies == [
        Names("#dev", ["alice"], ["alice"]),
        Error("There is no room #nowhere; /rooms lists them."),
    ]


def test_topic_shows_and_sets() -> None:
    """
    /topic TEXT sets the current room's topic and tells every member, the
    setter included; /topic shows it with who set it and when.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    factory.clock.advance(100)
    bob.line("/topic hello all")
    assert alice.delivered == bob.delivered == [TopicChanged("#lobby", "bob", "hello all")]
    alice.line("/topic")
    assert alice.replies == [TopicIs("#lobby", "hello all", "bob", 100.0)]


def test_topic_of_named_room() -> None:
    """
    /topic #ROOM TEXT sets the topic of a room one is in other than the
    current one.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    alice.line("/topic #lobby lobby things")
    assert bob.delivered == [TopicChanged("#lobby", "alice", "lobby things")]


def test_topic_locked_for_non_operators() -> None:
    """
    In a +t room only operators set the topic: a member gets an Error and
    nobody is told anything; an operator still can.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/mode #dev +t")
    alice.forget()
    bob.forget()
    bob.line("/topic mine now")
    assert bob.errors() == ["Only operators set the topic of #dev."]
    assert alice.delivered == bob.delivered == []
    alice.line("/topic ours")
    assert bob.delivered == [TopicChanged("#dev", "alice", "ours")]


# Quiet joins


def test_quiet_joins_above() -> None:
    """
    With quiet_joins_above=2, joins and leaves are announced while a room
    has at most 2 members with the one joining or leaving, and not when it
    has more; /names still lists everyone.
    """
    factory = chat(quiet_joins_above=2)
    alice, bob = users(factory, "alice", "bob")
    carol = connect(factory)
    carol.session.choose_nickname("carol")
    carol.line("/part")
    carol.line("/join #lobby")
    (dave,) = users(factory, "dave")
    dave.session.quit()
    assert alice.delivered == bob.delivered == []
    alice.line("/names")
    assert alice.replies == [Names("#lobby", ["alice", "bob", "carol"], [])]


def test_quiet_joins_boundary() -> None:
    """
    With quiet_joins_above=2, the second member's join is still announced.
    """
    factory = chat(quiet_joins_above=2)
    (alice,) = users(factory, "alice")
    bob = connect(factory)
    bob.session.choose_nickname("bob")
    assert alice.delivered == [Joined("bob", "#lobby")]


# Moderation


def test_kick() -> None:
    """
    An operator's /kick tells every member, the one kicked included, with
    Kicked, and takes that member out of the room.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob, carol)
    alice.line("/kick bob flooding")
    event = Kicked("#dev", "alice", "bob", "flooding")
    assert alice.delivered == bob.delivered == carol.delivered == [event]
    assert "#dev" not in bob.session.rooms
    assert [m.nickname for m in factory.room("#dev").members] == ["alice", "carol"]


def test_kick_default_reason_and_named_room() -> None:
    """
    /kick #ROOM NICK acts on a room other than the current one, with the
    reason "kicked" if none is given.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/switch #lobby")
    alice.line("/kick #dev bob")
    assert bob.delivered == [Kicked("#dev", "alice", "bob", "kicked")]


def test_kicked_user_lines_go_elsewhere() -> None:
    """
    A user kicked from their current room gets an error for their next
    plain line, which goes nowhere, saying where their lines go now; the
    line after it goes there.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.line("/kick bob")
    bob.replies.clear()
    bob.line("meant for #dev")
    assert bob.replies == [
        Error("You are no longer in #dev; your lines go to #lobby now, so this was not done.")
    ]
    assert carol.delivered == []
    bob.line("still here")
    assert carol.delivered == [ChatLine("bob", "still here", "#lobby")]


@pytest.mark.parametrize(
    "command",
    [
        "/kick alice",
        "/ban alice",
        "/ban nobody",
        "/unban carol",
        "/op bob",
        "/deop alice",
        "/mode #dev +t",
        "/mode -t",
    ],
)
def test_non_operator_refused(command: str) -> None:
    """
    A member who is no operator of the room gets an Error for each
    moderation command, and nothing is delivered to anyone.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.line("/ban carol")
    for user in (alice, bob, carol):
        user.forget()
    bob.line(command)
    assert bob.errors() == ["You are not an operator of #dev."]
    assert alice.delivered == bob.delivered == carol.delivered == []


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("/kick", "Usage: /kick [#ROOM] NICK [REASON]"),
        ("/ban", "Usage: /ban [#ROOM] NICK [REASON]"),
        ("/unban #dev", "Usage: /unban [#ROOM] NICK"),
        ("/op", "Usage: /op [#ROOM] NICK"),
        ("/deop", "Usage: /deop [#ROOM] NICK"),
        ("/mode", "Usage: /mode [#ROOM] +t|-t"),
        ("/mode #dev +x", "Usage: /mode [#ROOM] +t|-t"),
        (
            "/kick #a,b bob",
            "#a,b is no room name: a room name starts with # and has no "
            "spaces, commas, colons or control characters.",
        ),
        ("/kick #nowhere bob", "You are not in #nowhere; /join #nowhere joins it."),
        ("/op #lobby bob", "You are not an operator of #lobby."),
        ("/kick carol", "Nobody called carol is in #dev."),
        ("/op dave", "Nobody called dave is in #dev."),
        ("/unban carol", "carol is not banned from #dev."),
    ],
)
def test_moderation_errors(command: str, error: str) -> None:
    """
    A moderation command with a missing or wrong argument, an invalid or
    unknown room, a room the operator is not in or does not operate, or a
    target not in the room is answered with an Error and tells nobody.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    alice.line(command)
    assert alice.errors() == [error]
    assert alice.delivered == bob.delivered == carol.delivered == []


def test_ban_member_removes_them() -> None:
    """
    Banning a member tells every member with ModeChanged +b, then Kicked,
    and takes the member out of the room.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob, carol)
    alice.line("/ban bob trolling")
    events = [ModeChanged("#dev", "alice", "+b", "bob"), Kicked("#dev", "alice", "bob", "trolling")]
    assert alice.delivered == bob.delivered == carol.delivered == events
    assert "#dev" not in bob.session.rooms


def test_banned_nickname_cannot_join() -> None:
    """
    A banned nickname's /join is answered with an Error, and join() raises
    BannedFromRoom; the members hear nothing.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/ban bob")
    alice.forget()
    bob.line("/join #dev")
    assert bob.errors() == ["You are banned from #dev."]
    with pytest.raises(BannedFromRoom):
        bob.session.join("#DEV")
    assert alice.delivered == []


def test_ban_someone_offline() -> None:
    """
    A nickname nobody has can be banned; whoever takes it later cannot
    join.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/ban mallory")
    assert bob.delivered == [ModeChanged("#dev", "alice", "+b", "mallory")]
    (mallory,) = users(factory, "Mallory")
    mallory.line("/join #dev")
    assert mallory.errors() == ["You are banned from #dev."]


def test_ban_identified_bans_account() -> None:
    """
    Banning a user who proved their account bans the account: under
    another nickname they still cannot join.
    """
    factory = accounts_chat()
    registered(factory, "bob")
    (alice,) = users(factory, "alice")
    bob = identified(factory, "bob")
    in_room("#dev", alice, bob)
    alice.line("/ban bob")
    bob.line("/nick robert")
    bob.forget()
    bob.line("/join #dev")
    assert bob.errors() == ["You are banned from #dev."]


def test_ban_unidentified_bans_nickname() -> None:
    """
    Banning a user who proved no account bans only the nickname: under
    another one they can join again.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/ban bob")
    bob.line("/nick robert")
    bob.forget()
    bob.line("/join #dev")
    assert bob.replies_of(RoomJoined) == [
        RoomJoined("#dev", "", ["alice", "robert"], operators=["alice"])
    ]


def test_unban() -> None:
    """
    /unban lifts a ban, telling every member with ModeChanged -b; the
    nickname can join again.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, carol)
    alice.line("/ban bob")
    carol.forget()
    alice.line("/unban BOB")
    assert carol.delivered == [ModeChanged("#dev", "alice", "-b", "BOB")]
    bob.line("/join #dev")
    assert bob.errors() == []
    assert "#dev" in bob.session.rooms


def test_unban_the_nickname_shown() -> None:
    """
    A ban shown as +b NICK is lifted by /unban NICK, even when it banned
    the account of a user who proved it under another nickname.
    """
    factory = accounts_chat()
    registered(factory, "bob")
    (alice,) = users(factory, "alice")
    bob = identified(factory, "bob")
    bob.line("/nick robert")
    in_room("#dev", alice, bob)
    alice.line("/ban robert")
    assert alice.delivered[0] == ModeChanged("#dev", "alice", "+b", "robert (account bob)")
    alice.line("/unban robert")
    assert alice.errors() == []


def test_op_and_deop() -> None:
    """
    /op makes a member an operator and /deop takes it back; every member
    is told with ModeChanged, and the new operator can moderate.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob, carol)
    alice.line("/op bob")
    assert carol.delivered == [ModeChanged("#dev", "alice", "+o", "bob")]
    bob.line("/deop alice")
    assert carol.delivered[-1] == ModeChanged("#dev", "bob", "-o", "alice")
    alice.line("/names")
    assert alice.replies_of(Names) == [Names("#dev", ["alice", "bob", "carol"], ["bob"])]


def test_op_identified_is_by_account() -> None:
    """
    /op of a member who proved their account makes the account an
    operator: back on a new connection, they are an operator again.
    """
    factory = accounts_chat()
    registered(factory, "bob")
    (alice,) = users(factory, "alice")
    bob = identified(factory, "bob")
    in_room("#dev", alice, bob)
    alice.line("/op bob")
    bob.session.quit()
    again = identified(factory, "bob")
    again.session.join("#dev")
    again.line("/names")
    assert again.replies_of(Names) == [Names("#dev", ["alice", "bob"], ["alice", "bob"])]


def test_mode_topic_lock() -> None:
    """
    /mode +t and -t tell every member with ModeChanged; after -t anyone
    sets the topic again.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/mode +t")
    alice.line("/mode #dev -t")
    assert bob.delivered == [
        ModeChanged("#dev", "alice", "+t"),
        ModeChanged("#dev", "alice", "-t"),
    ]
    bob.line("/topic free for all")
    assert alice.delivered[-1] == TopicChanged("#dev", "bob", "free for all")


# Server operators


def test_account_is_the_portal_avatar() -> None:
    """
    Once the password is right, a session's account is the very IAccount
    avatar the twisted.cred realm returned.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    assert factory.portal is not None
    realm: Any = factory.portal.realm
    avatars = []
    request = realm.requestAvatar

    def recording(*args: Any) -> Any:
        result = request(*args)
        avatars.append(result[1])
        return result

    realm.requestAvatar = recording
    alice = identified(factory, "alice")
    assert IAccount.providedBy(alice.session.account)
    assert [alice.session.account] == avatars
    assert alice.session.account is avatars[0]


def test_server_operator_operates_every_room() -> None:
    """
    A server operator is an operator of every room, including one they did
    not create.
    """
    factory, root = oper_chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob, root)
    root.line("/kick bob")
    assert alice.delivered == [Kicked("#dev", "root2", "bob", "kicked")]
    root.line("/names")
    assert root.replies_of(Names) == [Names("#dev", ["alice", "root2"], ["alice", "root2"])]


def test_kill() -> None:
    """
    /kill tells the user killed with Killed, then closes their connection;
    everyone in their rooms gets Left "killed by OPERATOR: REASON" once.
    """
    factory, root = oper_chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    root.line("/kill bob spamming")
    assert bob.delivered == [Killed("root2", "spamming")]
    assert bob.closed_after == 1
    assert alice.delivered == [Left("bob", "killed by root2: spamming")]
    assert bob.session.state is State.CLOSED
    assert "bob" not in factory.nicknames()


def test_kill_by_non_operator_refused() -> None:
    """
    A /kill from a user who is no server operator is an Error; the target
    stays and nobody is told anything.
    """
    factory, root = oper_chat()
    alice, bob = users(factory, "alice", "bob")
    root.forget()
    alice.line("/kill bob")
    assert alice.errors() == ["Only server operators can /kill."]
    assert not bob.closed
    assert bob.delivered == root.delivered == []


def test_kill_unknown_nickname() -> None:
    """
    /kill of a nickname nobody has is an Error; /kill with none is a usage
    Error.
    """
    factory, root = oper_chat()
    root.line("/kill nobody")
    root.line("/kill")
    assert root.errors() == [
        "No such nickname: nobody. /who lists who is online.",
        "Usage: /kill NICK [REASON]",
    ]


def test_oper_nickname_without_accounts_is_no_operator() -> None:
    """
    On a server without accounts, taking a server operator's nickname
    makes nobody an operator.
    """
    factory = chat(server_operators=["root2"])
    (root, bob) = users(factory, "root2", "bob")
    root.line("/kill bob")
    assert root.errors() == ["Only server operators can /kill."]
    assert root.session.account is None


def test_wrong_password_makes_no_operator() -> None:
    """
    A wrong password for a server operator's nickname leaves the session
    with no account, waiting for the password, unable to /kill.
    """
    factory = accounts_chat(server_operators=["root2"])
    registered(factory, "root2")
    (bob,) = users(factory, "bob")
    guess = connect(factory)
    guess.session.choose_nickname("root2", "wrong-password")
    factory.clock.advance(1)
    assert guess.errors() == ["Wrong password."]
    assert guess.session.account is None
    assert guess.session.state is State.AWAITING_PASSWORD
    assert not factory.is_server_operator(guess.session)


def test_nick_with_password_to_unregistered_oper_nickname() -> None:
    """
    /nick to a server operator's nickname nobody registered, with a
    password, uses no password and proves no account.
    """
    factory = accounts_chat(server_operators=["root2"])
    alice, bob = users(factory, "alice", "bob")
    alice.line(f"/nick root2 {PASSWORD}")
    alice.line("/kill bob")
    assert alice.session.account is None
    assert alice.errors() == ["Only server operators can /kill."]


# Private messages


def test_private_message() -> None:
    """
    /msg NICK TEXT reaches only NICK, spelled as they do; the sender gets
    PrivateMessageSent.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "Bob", "carol")
    alice.line("/msg BOB psst")
    assert bob.delivered == [PrivateMessage("alice", "Bob", "psst")]
    assert alice.replies == [PrivateMessageSent("Bob", "psst")]
    assert alice.delivered == carol.delivered == []


def test_private_message_unknown_nickname() -> None:
    """
    /msg to a nickname nobody has is an Error and reaches nobody.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/msg dave hello")
    assert alice.errors() == ["No such nickname: dave. /who lists who is online."]
    assert bob.delivered == []


# Renames


def test_rename_told_once_to_everyone_sharing_a_room() -> None:
    """
    NicknameChanged reaches each user sharing a room with the one renamed
    once, even when they share several rooms, and nobody else.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    in_room("#ops", alice, bob)
    carol.line("/part")
    alice.forget()
    bob.forget()
    alice.line("/nick alicia")
    assert bob.delivered == [NicknameChanged("alice", "alicia")]
    assert alice.delivered == carol.delivered == []
    assert alice.replies == [Notice("You are now known as alicia (was alice).")]


# Leaving


def test_quit_told_once_per_member() -> None:
    """
    Leaving the chat tells each member of the user's rooms once, with Left
    and no room; the user is told goodbye and closed; rooms left empty
    vanish.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#dev", alice, bob)
    in_room("#solo", alice)
    carol.line("/part")
    bob.forget()
    alice.line("/quit gone fishing")
    assert bob.delivered == [Left("alice", "gone fishing")]
    assert carol.delivered == []
    assert alice.closed
    assert [room.name for room in factory.rooms()] == ["#dev", "#lobby"]


def test_connection_lost_leaves() -> None:
    """
    A lost connection leaves the chat with "connection lost".
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.session.connection_lost()
    assert bob.delivered == [Left("alice", "connection lost")]
    assert factory.nicknames() == ["bob"]


# History


def test_history_of_one_room() -> None:
    """
    /history #ROOM replays that room's lines only, as asked for.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("in dev")
    alice.line("/msg #lobby in lobby")
    bob.line("/history #dev")
    (replay,) = bob.replies
    assert isinstance(replay, HistoryReplay)
    assert (replay.room, replay.asked) == ("#dev", True)
    assert [r.event for r in replay.records if isinstance(r.event, ChatLine)] == [
        ChatLine("alice", "in dev", "#dev")
    ]
    assert {r.room for r in replay.records} == {"#dev"}


def test_history_count() -> None:
    """
    /history N replays the last N lines of the current room.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    for text in ("one", "two", "three"):
        alice.line(text)
    bob.line("/history 2")
    (replay,) = bob.replies_of(HistoryReplay)
    assert [r.event for r in replay.records] == [
        ChatLine("alice", "two", "#lobby"),
        ChatLine("alice", "three", "#lobby"),
    ]


def test_join_replays_room_history() -> None:
    """
    Joining a room replays its recent events (not asked for), after
    RoomJoined.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice)
    alice.line("before you came")
    bob.session.join("#dev")
    joined, replay = bob.replies
    assert joined == RoomJoined("#dev", "", ["alice", "bob"], operators=["alice"])
    assert isinstance(replay, HistoryReplay)
    assert (replay.room, replay.asked) == ("#dev", False)
    assert [r.event for r in replay.records] == [
        Joined("alice", "#dev"),
        ChatLine("alice", "before you came", "#dev"),
    ]


def test_no_history_server() -> None:
    """
    /history on a server that keeps none is an Error.
    """
    factory = make_factory(flood_rate=0)
    (alice,) = users(factory, "alice")
    alice.line("/history")
    assert alice.errors() == ["This server keeps no history."]


# Found in review: limits, and state a room must not keep


def test_quit_leaves_no_history_for_a_vanished_room() -> None:
    """
    A user quitting from a room they were alone in makes the room vanish
    with its history in memory: whoever creates a room of that name later
    is shown nothing of the old one, not even the quit.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#tmp", alice)
    alice.line("secret plans")
    alice.session.quit()
    bob.line("/join #tmp")
    assert bob.replies_of(HistoryReplay) == []
    assert factory.history is not None
    assert [r.event for r in factory.history.recent(20, "#tmp")] == [Joined("bob", "#tmp")]


def test_history_of_a_room_one_is_not_in() -> None:
    """
    /history #ROOM works only for a room one is in: nobody outside it, a
    banned user included, reads its lines.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#priv", alice)
    alice.line("only for #priv")
    bob.line("/history #priv")
    assert bob.errors() == ["You are not in #priv; /join #priv joins it."]
    assert bob.replies_of(HistoryReplay) == []


def test_ban_removes_every_connection_of_the_account() -> None:
    """
    Banning an account removes from the room every member who proved
    they own it, under whatever nickname, not only the one named.
    """
    factory = accounts_chat()
    registered(factory, "bob")
    alice, carol = users(factory, "alice", "carol")
    in_room("#r", alice)
    first = identified(factory, "bob")
    first.line("/nick robert")
    second = identified(factory, "bob")
    first.line("/join #r")
    second.line("/join #r")
    alice.line("/ban robert")
    room = factory.room("#r")
    assert [m.nickname for m in room.members] == ["alice"]
    assert ("account", "bob") in room.bans


def test_rooms_per_user_limited() -> None:
    """
    A user may be in at most max_rooms_per_user rooms at once (the default
    room counts); one more is refused and changes nothing.
    """
    factory = chat(max_rooms_per_user=2)
    (alice,) = users(factory, "alice")
    alice.line("/join #a")
    alice.forget()
    alice.line("/join #b")
    assert alice.errors() == ["You are in 2 rooms already; /part one first."]
    assert sorted(alice.session.rooms) == ["#a", "#lobby"]
    assert [room.name for room in factory.rooms()] == ["#a", "#lobby"]


def test_rooms_limited() -> None:
    """
    At most max_rooms rooms exist at once (the default room counts): a
    new one beyond that is refused, joining an existing one is not.
    """
    factory = chat(max_rooms=2)
    alice, bob = users(factory, "alice", "bob")
    alice.line("/join #a")
    bob.line("/join #b")
    assert bob.errors() == ["There are 2 rooms already; join one of them."]
    bob.forget()
    bob.line("/join #a")
    assert bob.errors() == []


def test_bans_per_room_limited() -> None:
    """
    A room keeps at most MAX_BANS bans; one more is refused.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    in_room("#r", alice)
    for number in range(MAX_BANS):
        alice.line(f"/ban spammer{number}")
    assert alice.errors() == []
    alice.line("/ban onemore")
    assert alice.errors() == [f"#r has {MAX_BANS} bans already; /unban some first."]
    assert len(factory.room("#r").bans) == MAX_BANS


@pytest.mark.parametrize("name", ["#a\x1bb", "#a\u200bb", "#a\u00a0b", "#a\x85b", "#a\u2028b"])
def test_room_name_without_control_or_invisible_characters(name: str) -> None:
    """
    A room name holds no control, format or separator character (an
    escape, a zero-width space, a no-break space, NEL, a line separator),
    whichever front end it came from; the error quotes the name without
    them.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    alice.session.line(f"/join {name}")
    (error,) = alice.errors()
    assert error.startswith("#ab is no room name")
    assert [room.name for room in factory.rooms()] == ["#lobby"]


def test_crowded_room_lists_nobody_on_join() -> None:
    """
    Joining a room with more than quiet_joins_above members replies with
    how many are there, not the list.
    """
    factory = chat(quiet_joins_above=2)
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    in_room("#r", alice, bob)
    carol.line("/join #r")
    assert carol.replies_of(RoomJoined) == [RoomJoined("#r", "", [], count=3)]


def test_history_kept_only_for_rooms_that_exist() -> None:
    """
    At start-up, the history read from disk is kept in memory only for
    the rooms that exist: the default room and the rooms kept across
    restarts; a vanished room's lines stay on disk only.
    """
    clock = Clock()
    history = History(None, clock)
    history.record(ChatLine("alice", "old", "#gone"), "#gone")
    history.record(ChatLine("alice", "hello", "#lobby"), "#lobby")
    make_factory(clock, history=history)
    assert history.recent(20, "#gone") == []
    assert [r.event for r in history.recent(20, "#lobby")] == [ChatLine("alice", "hello", "#lobby")]


def test_nickname_ban_covers_look_alikes() -> None:
    """
    A ban on a nickname (no account proved) also keeps out the nicknames
    that look like it: after /ban bob, b0b cannot join, nor BOB.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#r", alice)
    alice.line("/ban bob")
    bob.line("/nick b0b")
    bob.line("/join #r")
    bob.line("/nick BOB")
    bob.line("/join #r")
    assert bob.errors() == ["You are banned from #r.", "You are banned from #r."]
    alice.line("/unban bob")
    bob.line("/join #r")
    assert "bob" not in [m.nickname for m in factory.room("#r").members]
    assert "BOB" in [m.nickname for m in factory.room("#r").members]


def test_op_and_deop_that_change_nothing_refused() -> None:
    """
    /op of an operator and /deop of someone who is no operator change
    nothing, so they are refused and nobody is told anything.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#r", alice, bob)
    alice.line("/op alice")
    alice.line("/deop bob")
    assert alice.errors() == [
        "alice is an operator of #r already.",
        "bob is not an operator of #r.",
    ]
    assert alice.delivered == bob.delivered == []


def test_deop_of_a_server_operator_refused() -> None:
    """
    A server operator is an operator in every room: /deop cannot take
    that away, and says why.
    """
    factory, root = oper_chat()
    (alice,) = users(factory, "alice")
    in_room("#r", alice, root)
    alice.line("/deop root2")
    assert alice.errors() == ["root2 is a server operator, an operator in every room."]


# Found by trying it as a user


def test_rename_into_a_banned_nickname_refused() -> None:
    """
    A member cannot take a nickname (or a look-alike of one) banned from
    a room they are in: the rename is refused and nobody is told anything.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "dave")
    in_room("#dev", alice, bob)
    alice.line("/ban carol")
    alice.forget()
    bob.line("/nick car0l")
    assert bob.errors() == ["The nickname car0l is banned from #dev, where you are."]
    assert bob.session.nickname == "dave"
    assert alice.delivered == []


def test_ban_of_an_account_names_it() -> None:
    """
    Banning someone by a nickname that is not their account's says which
    account is banned, and /unban takes that account's name.
    """
    factory = accounts_chat()
    registered(factory, "carol")
    (alice,) = users(factory, "alice")
    in_room("#dev", alice)
    carol = identified(factory, "carol")
    carol.line("/nick mallory")
    carol.line("/join #dev")
    alice.forget()
    alice.line("/ban mallory")
    assert ModeChanged("#dev", "alice", "+b", "mallory (account carol)") in alice.delivered
    alice.line("/unban carol")
    assert factory.room("#dev").bans == set()


def test_repeated_ban_and_mode_refused() -> None:
    """
    Banning someone banned already, and setting a mode the room has, are
    refused rather than announced again.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    in_room("#dev", alice)
    alice.line("/ban eve")
    alice.line("/mode +t")
    alice.forget()
    alice.line("/ban eve")
    alice.line("/mode +t")
    assert alice.errors() == ["eve is banned from #dev already.", "#dev is +t already."]
    assert alice.delivered == []


def test_last_operator_cannot_deop_or_kick_themselves() -> None:
    """
    The last operator of a room cannot /deop themselves (nobody could
    moderate it again), and nobody can /kick themselves (/part leaves);
    with another operator, /deop of oneself works.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    alice.line("/deop alice")
    alice.line("/kick alice")
    assert alice.errors() == [
        "You are the last operator of #dev; /op someone else first.",
        "/kick is for others; /part #dev leaves it.",
    ]
    alice.line("/op bob")
    alice.forget()
    alice.line("/deop alice")
    assert alice.errors() == []
    assert not factory.is_operator(alice.session, factory.room("#dev"))
