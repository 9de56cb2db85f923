"""
Tests for L{twistedchat.protocol}: how rooms and their moderation look to a
telnet or nc user. The rules themselves are tested in test_session.py; here
each format is checked once, as whole lines.
"""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from fakeclients import FakeClient, chatters, make_factory
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock

from twistedchat.accounts import Accounts
from twistedchat.factory import ChatFactory

#: Argon2id with small costs, so tests run fast.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "s3cret-pw"


def type_line(client: FakeClient, text: str) -> None:
    """
    Send C{text} as one line typed by C{client}'s user.
    """
    client.send(text.encode("utf-8") + b"\r\n")


def in_dev(*clients: FakeClient) -> None:
    """
    Have C{clients} join #dev in turn (the first creates it, and so is its
    operator); forget everyone's output.
    """
    for client in clients:
        type_line(client, "/join #dev")
    for client in clients:
        client.output()


def dev_with_alice_and_bob() -> tuple[ChatFactory, FakeClient, FakeClient, FakeClient]:
    """
    alice, bob and carol in #lobby; alice and bob also in #dev, which alice
    created, so she is its operator and their lines go there.
    """
    factory = make_factory()
    alice, bob, carol = chatters(factory, "alice", "bob", "carol")
    in_dev(alice, bob)
    carol.output()
    return factory, alice, bob, carol


# What happens in a room


@pytest.mark.parametrize(
    ("line", "seen"),
    [
        ("hi", "<bob> hi"),
        ("/me waves", "* bob waves"),
        ("/quit gone fishing", "*** bob has left (gone fishing)"),
    ],
)
def test_one_room_classic_lines(line: str, seen: str) -> None:
    """
    A user in only one room sees what is said, done and left there as the
    classic lines, with no room name.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    type_line(bob, line)
    assert alice.lines() == [seen]


def test_one_room_classic_join() -> None:
    """
    A user in only one room sees a join as C{*** NICK has joined}.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    FakeClient(factory, 50001).register("bob")
    assert alice.lines() == ["*** bob has joined"]


@pytest.mark.parametrize(
    ("line", "seen"),
    [
        ("hi", "[#dev] <bob> hi"),
        ("/me waves", "[#dev] * bob waves"),
        ("/part #dev lunch", "[#dev] *** bob has left (lunch)"),
        ("/msg #dev psst", "[#dev] <bob> psst"),
    ],
)
def test_two_rooms_lines_name_the_room(line: str, seen: str) -> None:
    """
    A user in two rooms sees what is said, done or left in a room with the
    room first, C{[#room] }; a user outside that room sees nothing of it.
    """
    _, alice, bob, carol = dev_with_alice_and_bob()
    type_line(bob, line)
    assert alice.lines() == [seen]
    assert carol.lines() == []


def test_two_rooms_join_names_the_room() -> None:
    """
    A user in two rooms sees a join as C{[#room] *** NICK has joined}.
    """
    _, alice, _, carol = dev_with_alice_and_bob()
    type_line(carol, "/join #dev")
    assert alice.lines() == ["[#dev] *** carol has joined"]


def test_two_rooms_default_room_named_too() -> None:
    """
    A user in two rooms sees lines of the default room with its name too,
    while a user only there sees them plain.
    """
    _, alice, bob, carol = dev_with_alice_and_bob()
    type_line(carol, "hello all")
    assert alice.lines() == ["[#lobby] <carol> hello all"]
    assert bob.lines() == ["[#lobby] <carol> hello all"]


def test_back_to_one_room_lines_plain_again() -> None:
    """
    Once a user has left all rooms but one, lines come plain again.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/part #lobby")
    alice.output()
    type_line(bob, "hi")
    assert alice.lines() == ["<bob> hi"]


def test_quit_seen_once_without_room() -> None:
    """
    A user who shares two rooms with someone who quits sees it once,
    without a room: they left the chat, not a room.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(bob, "/quit bye")
    assert alice.lines() == ["*** bob has left (bye)"]


# Replies to room commands


def test_join_reply_new_room() -> None:
    """
    Creating a room by joining it says so, with the one member.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    type_line(alice, "/join #dev")
    assert alice.lines() == ["*** You joined #dev; your lines go there now. 1 user here: alice."]


def test_join_reply_members_and_topic() -> None:
    """
    Joining a room lists its members in the order they joined, then its
    topic.
    """
    factory = make_factory()
    alice, bob = chatters(factory, "alice", "bob")
    in_dev(alice)
    type_line(alice, "/topic Release planning")
    alice.output()
    type_line(bob, "/join #dev")
    assert bob.lines() == [
        "*** You joined #dev; your lines go there now. 2 users here: alice, bob.",
        "*** Topic of #dev: Release planning",
    ]


def test_join_reply_already_in() -> None:
    """
    Joining a room one is in already only makes it the current room.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/join #DEV")
    assert alice.lines() == ["*** You are in #dev already; your lines go there now."]


def test_part_reply_current_room() -> None:
    """
    Leaving the current room says so, and where lines go now.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/part")
    assert alice.lines() == ["*** You left #dev.", "*** Your lines go to #lobby now."]


def test_part_reply_other_room() -> None:
    """
    Leaving a room that is not the current one only says so.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/part #lobby")
    assert alice.lines() == ["*** You left #lobby."]


def test_switch_reply() -> None:
    """
    /switch says where lines go now.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/switch #lobby")
    assert alice.lines() == ["*** Your lines go to #lobby now."]


def test_rooms_reply() -> None:
    """
    /rooms (and /list) lists every room, sorted, with its size and topic.
    """
    _, alice, _, carol = dev_with_alice_and_bob()
    type_line(alice, "/topic Release planning")
    alice.output()
    type_line(carol, "/list")
    assert carol.lines() == [
        "*** 2 rooms:",
        "***   #dev (2 users): Release planning",
        "***   #lobby (3 users)",
    ]


def test_rooms_reply_singular() -> None:
    """
    One room with one user is counted in the singular.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    type_line(alice, "/rooms")
    assert alice.lines() == ["*** 1 room:", "***   #lobby (1 user)"]


def test_names_marks_operators() -> None:
    """
    /names lists the current room's members, sorted, operators marked
    with @.
    """
    _, _, bob, _ = dev_with_alice_and_bob()
    type_line(bob, "/names")
    assert bob.lines() == ["*** 2 users in #dev: @alice, bob"]


def test_names_of_another_room() -> None:
    """
    /names #ROOM lists a room one is not in.
    """
    _, _, _, carol = dev_with_alice_and_bob()
    type_line(carol, "/who #dev")
    assert carol.lines() == ["*** 2 users in #dev: @alice, bob"]


def test_topic_shown_when_none() -> None:
    """
    /topic in a room without one says so.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/topic")
    assert alice.lines() == ["*** #dev has no topic."]


def test_topic_set_tells_members() -> None:
    """
    /topic TEXT is announced to every member, the setter included, and to
    nobody else.
    """
    _, alice, bob, carol = dev_with_alice_and_bob()
    type_line(bob, "/topic Release planning")
    assert alice.lines() == ["*** bob set the topic of #dev: Release planning"]
    assert bob.lines() == ["*** bob set the topic of #dev: Release planning"]
    assert carol.lines() == []


def test_topic_shown_with_setter_and_time() -> None:
    """
    /topic shows the topic, who set it and when, in UTC to the minute.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    factory = make_factory(clock)
    alice, carol = chatters(factory, "alice", "carol")
    in_dev(alice)
    type_line(alice, "/topic Release planning")
    alice.output()
    type_line(carol, "/topic #dev")
    assert carol.lines() == [
        "*** Topic of #dev: Release planning (set by alice, 2023-11-14 22:13 UTC)"
    ]


# Moderation


def test_kick_tells_every_member_why() -> None:
    """
    /kick NICK REASON tells every member, the one kicked included, who
    removed whom and why.
    """
    _, alice, bob, carol = dev_with_alice_and_bob()
    type_line(alice, "/kick bob be nice")
    assert alice.lines() == ["*** alice removed bob from #dev (be nice)"]
    assert bob.lines() == ["*** alice removed bob from #dev (be nice)"]
    assert carol.lines() == []


def test_kick_default_reason() -> None:
    """
    /kick without a reason gives "kicked".
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/kick #dev bob")
    assert bob.lines() == ["*** alice removed bob from #dev (kicked)"]


def test_kicked_user_told_where_lines_go() -> None:
    """
    A plain line from a user kicked from their current room is not sent
    anywhere: they are told where their lines go now, as after /part,
    so a line meant for the room they were in never reaches another one.
    """
    _, alice, bob, carol = dev_with_alice_and_bob()
    type_line(alice, "/kick bob")
    bob.lines()
    carol.lines()
    type_line(bob, "meant for #dev")
    assert bob.lines() == [
        "!!! You are no longer in #dev; your lines go to #lobby now, so this was not done."
    ]
    assert carol.lines() == []
    type_line(bob, "now for #lobby")
    assert carol.lines() == ["<bob> now for #lobby"]


def test_part_last_room() -> None:
    """
    Leaving the last room one is in says so, and a plain line then gets
    an error.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(bob, "/part #lobby")
    type_line(bob, "/part")
    assert bob.lines() == [
        "*** You left #lobby.",
        "*** You left #dev.",
        "*** You are in no room now; /join #ROOM joins one.",
    ]
    type_line(bob, "hello?")
    assert bob.lines() == ["!!! You are in no room; /join #ROOM joins one."]


def test_ban_removes_and_tells_why() -> None:
    """
    /ban NICK REASON tells every member of the ban, then of the removal
    with the reason.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/ban bob spam")
    expected = ["*** alice banned bob from #dev", "*** alice removed bob from #dev (spam)"]
    assert alice.lines() == expected
    assert bob.lines() == expected


def test_banned_user_cannot_join() -> None:
    """
    A banned user who tries to join gets an error.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/ban bob")
    bob.output()
    type_line(bob, "/join #dev")
    assert bob.lines() == ["!!! You are banned from #dev."]


def test_unban() -> None:
    """
    /unban NICK tells every member that the ban was lifted.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/ban #dev carol")
    alice.output()
    bob.output()
    type_line(alice, "/unban carol")
    assert alice.lines() == ["*** alice lifted the ban on carol in #dev"]
    assert bob.lines() == ["*** alice lifted the ban on carol in #dev"]


@pytest.mark.parametrize(
    ("line", "seen"),
    [
        ("/op bob", "*** alice made bob an operator of #dev"),
        ("/op bob\n/deop bob", "*** alice made bob no longer an operator of #dev"),
        ("/mode +t", "*** alice set #dev +t: only operators set the topic"),
        ("/mode +t\n/mode #dev -t", "*** alice set #dev -t: anyone may set the topic"),
    ],
)
def test_mode_changes(line: str, seen: str) -> None:
    """
    /op, /deop and /mode are announced to every member as one sentence.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    *before, last = line.split("\n")
    for earlier in before:
        type_line(alice, earlier)
    alice.lines()
    bob.lines()
    type_line(alice, last)
    assert alice.lines() == [seen]
    assert bob.lines() == [seen]


def test_op_marks_names() -> None:
    """
    A member made an operator is marked with @ in /names.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/op bob")
    alice.output()
    type_line(alice, "/names")
    assert alice.lines() == ["*** 2 users in #dev: @alice, @bob"]


def test_topic_locked_error() -> None:
    """
    In a +t room a member who is no operator cannot set the topic.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(alice, "/mode +t")
    bob.output()
    type_line(bob, "/topic mine now")
    assert bob.lines() == ["!!! Only operators set the topic of #dev."]
    assert alice.lines() == ["*** alice set #dev +t: only operators set the topic"]


# Server operators


def oper_factory() -> tuple[ChatFactory, FakeClient]:
    """
    A factory with in-memory accounts whose server operator is root2; root2
    registered, then signed in with the password on a new connection.
    """
    clock = Clock()
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=maybeDeferred)
    factory = make_factory(clock, accounts=accounts, server_operators=["root2"])
    (first,) = chatters(factory, "root2")
    type_line(first, f"/register {PASSWORD}")
    type_line(first, "/quit")
    assert first.closed
    root = FakeClient(factory, 50100)
    type_line(root, f"root2 {PASSWORD}")
    assert root.chat.nickname == "root2"
    root.output()
    return factory, root


def test_kill_as_the_killed_user_sees_it() -> None:
    """
    A user killed by a server operator is told who did it and why, then
    disconnected; the others see that they left, killed by whom and why.
    """
    factory, root = oper_factory()
    alice, bob = chatters(factory, "alice", "bob")
    root.output()
    type_line(root, "/kill bob spamming")
    assert bob.lines() == ["*** The server operator root2 disconnected you: spamming"]
    assert bob.closed
    assert alice.lines() == ["*** bob has left (killed by root2: spamming)"]
    assert root.lines() == ["*** bob has left (killed by root2: spamming)"]


def test_kill_default_reason() -> None:
    """
    /kill without a reason gives "no reason given".
    """
    factory, root = oper_factory()
    (bob,) = chatters(factory, "bob")
    type_line(root, "/kill bob")
    assert bob.lines() == ["*** The server operator root2 disconnected you: no reason given"]


def test_server_operator_marked_everywhere() -> None:
    """
    A server operator is marked with @ in /names of every room.
    """
    factory, root = oper_factory()
    (bob,) = chatters(factory, "bob")
    type_line(bob, "/names")
    assert bob.lines() == ["*** 2 users in #lobby: bob, @root2"]


# Errors


@pytest.mark.parametrize(
    "line", ["/kick alice", "/ban alice", "/unban alice", "/op bob", "/deop alice", "/mode +t"]
)
def test_non_operator_error(line: str) -> None:
    """
    A member who is no operator of the room gets an error for each
    moderation command, and nobody is told anything.
    """
    _, alice, bob, _ = dev_with_alice_and_bob()
    type_line(bob, line)
    assert bob.lines() == ["!!! You are not an operator of #dev."]
    assert alice.lines() == []


def test_kill_by_non_operator_error() -> None:
    """
    /kill from a user who is no server operator is an error.
    """
    _, _, bob, carol = dev_with_alice_and_bob()
    type_line(bob, "/kill carol")
    assert bob.lines() == ["!!! Only server operators can /kill."]
    assert not carol.closed


@pytest.mark.parametrize("line", ["/join dev", "/switch dev", "/names dev"])
def test_invalid_room_name_error(line: str) -> None:
    """
    A room name without # is refused with a sentence saying what a room
    name is.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    type_line(alice, line)
    assert alice.lines() == [
        "!!! dev is no room name: a room name starts with # and has no "
        "spaces, commas, colons or control characters."
    ]


@pytest.mark.parametrize(
    "line", ["/switch #dev", "/part #dev", "/msg #dev hi", "/topic #dev hi", "/kick #dev bob"]
)
def test_not_in_room_error(line: str) -> None:
    """
    A command about a room one is not in is refused, with how to join it.
    """
    _, _, _, carol = dev_with_alice_and_bob()
    type_line(carol, line)
    assert carol.lines() == ["!!! You are not in #dev; /join #dev joins it."]


@pytest.mark.parametrize("line", ["/names #nope", "/topic #nope"])
def test_no_such_room_error(line: str) -> None:
    """
    Asking about a room that does not exist is refused, with how to list
    the rooms.
    """
    factory = make_factory()
    (alice,) = chatters(factory, "alice")
    type_line(alice, line)
    assert alice.lines() == ["!!! There is no room #nope; /rooms lists them."]


def test_kick_nobody_there_error() -> None:
    """
    Kicking a nickname that is not in the room is refused.
    """
    _, alice, _, _ = dev_with_alice_and_bob()
    type_line(alice, "/kick carol")
    assert alice.lines() == ["!!! Nobody called carol is in #dev."]
