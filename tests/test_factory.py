"""
Tests for L{twistedchat.factory}: the shared state, through plain
participants with no wire format.
"""

from __future__ import annotations

import pytest
from fakeclients import FakeClient, make_factory
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twistedchat.accounts import IAccount
from twistedchat.events import (
    Action,
    ChatLine,
    Event,
    Joined,
    Left,
    NicknameChanged,
    Notice,
    PrivateMessage,
    ServerShutdown,
)
from twistedchat.factory import ChatFactory, IParticipant, NoSuchNickname
from twistedchat.history import History
from twistedchat.nicknames import InvalidNickname, NicknameInUse
from twistedchat.rooms import Room


@implementer(IParticipant)
class Participant:
    """
    A participant that records what it is given.
    """

    def __init__(self) -> None:
        self.nickname: str | None = None
        self.account: IAccount | None = None
        self.rooms: dict[str, Room] = {}
        self.echo = False
        self.away = ""
        self.events: list[Event] = []
        self.disconnected = False

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def notify(self, text: str) -> None:
        self.events.append(Notice(text))

    def disconnect(self) -> None:
        self.disconnected = True


def joined(factory: ChatFactory, *nicknames: str) -> list[Participant]:
    """
    Connect and register a participant per nickname; forget their events.
    """
    participants = []
    for nickname in nicknames:
        participant = Participant()
        factory.connected(participant)
        factory.register(participant, nickname)
        participants.append(participant)
    for participant in participants:
        participant.events.clear()
    return participants


def test_participant_interface() -> None:
    """
    The session behind a telnet connection and the test participant both
    provide IParticipant, attributes included.
    """
    verifyObject(IParticipant, Participant())
    client = FakeClient(make_factory())
    verifyObject(IParticipant, client.chat.session)


def test_register_and_join_event() -> None:
    """
    register() sets the nickname, puts the participant in the default room
    and tells everyone else there with one Joined event naming the room.
    """
    factory = ChatFactory(Clock())
    (alice,) = joined(factory, "alice")
    bob = Participant()
    factory.register(bob, "bob")
    assert bob.nickname == "bob"
    assert alice.events == [Joined("bob", "#lobby")]
    assert bob.events == []
    assert factory.is_joined(bob)
    assert list(bob.rooms) == ["#lobby"]


def test_register_refusals() -> None:
    """
    register() raises InvalidNickname for a bad nickname and NicknameInUse
    for a taken one, and leaves the participant unregistered.
    """
    factory = ChatFactory(Clock(), max_nick_length=9)
    joined(factory, "alice")
    bob = Participant()
    with pytest.raises(InvalidNickname):
        factory.register(bob, "tenletters")
    with pytest.raises(NicknameInUse):
        factory.register(bob, "ALICE")
    assert bob.nickname is None
    assert not factory.is_joined(bob)


def test_broadcast_is_one_event_object() -> None:
    """
    A chat line is one event object, naming its room, handed to every other
    member of the room, so front ends can encode it once.
    """
    factory = ChatFactory(Clock())
    alice, bob, carol = joined(factory, "alice", "bob", "carol")
    factory.say(alice, factory.default_room, "hi")
    assert alice.events == []
    assert bob.events == [ChatLine("alice", "hi", "#lobby")]
    assert bob.events[0] is carol.events[0]


def test_action_is_one_event_object() -> None:
    """
    An action (/me) is one Action event, naming its room, handed to every
    other member of the room.
    """
    factory = ChatFactory(Clock())
    alice, bob, carol = joined(factory, "alice", "bob", "carol")
    factory.act(alice, factory.default_room, "waves")
    assert alice.events == []
    assert bob.events == [Action("alice", "waves", "#lobby")]
    assert bob.events[0] is carol.events[0]


def test_messages_take_the_one_fan_out_path() -> None:
    """
    Chat lines and private messages alike reach their recipients through
    _fan_out, the one path every message takes.
    """
    factory = ChatFactory(Clock())
    alice, bob = joined(factory, "alice", "bob")
    calls = []
    fan_out = factory._fan_out

    def recording(event: Event, recipients: object, exclude: object = None) -> None:
        calls.append(event)
        fan_out(event, recipients, exclude)  # type: ignore[arg-type]

    factory._fan_out = recording  # type: ignore[method-assign]
    factory.say(alice, factory.default_room, "hi")
    factory.private_message(alice, "bob", "psst")
    assert (
        calls
        == bob.events
        == [
            ChatLine("alice", "hi", "#lobby"),
            PrivateMessage("alice", "bob", "psst"),
        ]
    )


class CountingParticipant(Participant):
    """
    A participant that counts the calls to its deliver().
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def deliver(self, event: Event) -> None:
        self.calls += 1
        super().deliver(event)


def test_echo_delivers_to_the_sender_once() -> None:
    """
    A sender with echo is handed its own chat line, action and private
    message: the same event object as its recipients, which the history
    has numbered already, in one deliver() call each; one call per
    recipient, and none to a participant in no room it was said in.
    """
    clock = Clock()
    factory = ChatFactory(clock, history=History(None, clock))
    participants = []
    for nickname in ("alice", "bob", "carol"):
        participant = CountingParticipant()
        factory.connected(participant)
        factory.register(participant, nickname)
        participants.append(participant)
    alice, bob, carol = participants
    factory.join(carol, "#elsewhere")
    factory.part(carol, "#lobby", "")
    for participant in participants:
        participant.events.clear()
        participant.calls = 0
    alice.echo = True
    factory.say(alice, factory.default_room, "hi")
    factory.act(alice, factory.default_room, "waves")
    factory.private_message(alice, "bob", "psst")
    assert alice.events == [
        ChatLine("alice", "hi", "#lobby"),
        Action("alice", "waves", "#lobby"),
        PrivateMessage("alice", "bob", "psst"),
    ]
    assert all(own is seen for own, seen in zip(alice.events, bob.events, strict=True))
    assert [event.id for event in alice.events] == [event.id for event in bob.events]
    assert all(event.id > 0 for event in alice.events)
    assert (alice.calls, bob.calls, carol.calls) == (3, 3, 0)


def test_private_message_to_oneself_with_echo_delivered_once() -> None:
    """
    With echo, a private message to oneself is delivered once.
    """
    factory = ChatFactory(Clock())
    (alice,) = joined(factory, "alice")
    alice.echo = True
    factory.private_message(alice, "alice", "note")
    assert alice.events == [PrivateMessage("alice", "alice", "note")]


def test_render_once_per_renderer() -> None:
    """
    Event.render calls a renderer once per event and reuses the bytes.
    """
    calls = []

    def renderer(event: Event) -> bytes:
        calls.append(event)
        return b"x"

    event = Action("alice", "waves")
    assert event.render(renderer) == b"x"
    assert event.render(renderer) == b"x"
    assert calls == [event]


def test_rename() -> None:
    """
    rename() moves the participant to the new key and tells the others.
    """
    factory = ChatFactory(Clock())
    alice, bob = joined(factory, "alice", "bob")
    factory.rename(alice, "Alicia")
    assert bob.events == [NicknameChanged("alice", "Alicia")]
    assert factory.nicknames() == ["Alicia", "bob"]
    with pytest.raises(NicknameInUse):
        factory.rename(alice, "BOB")
    factory.rename(alice, "Alicia")
    assert len(bob.events) == 1


def test_private_message() -> None:
    """
    private_message() delivers only to the recipient and returns its
    spelling; an unknown recipient raises NoSuchNickname.
    """
    factory = ChatFactory(Clock())
    alice, bob, carol = joined(factory, "alice", "Bob", "carol")
    assert factory.private_message(alice, "BOB", "psst") == "Bob"
    assert bob.events == [PrivateMessage("alice", "Bob", "psst")]
    assert carol.events == []
    with pytest.raises(NoSuchNickname):
        factory.private_message(alice, "dave", "hello")


def test_leave_once() -> None:
    """
    leave() announces a participant once, as a Left with no room (the chat
    itself); a second call, or a disconnect afterwards, announces nothing
    more.
    """
    factory = ChatFactory(Clock())
    alice, bob = joined(factory, "alice", "bob")
    factory.leave(alice, "bye")
    factory.disconnected(alice, "connection lost")
    assert bob.events == [Left("alice", "bye")]
    assert factory.nicknames() == ["bob"]


def test_shutdown_waits_for_connections() -> None:
    """
    shutdown() tells and disconnects every connection and fires once the
    last one has closed.
    """
    factory = ChatFactory(Clock())
    alice, bob = joined(factory, "alice", "bob")
    done = factory.shutdown()
    assert alice.events == [ServerShutdown()] and bob.events == [ServerShutdown()]
    assert alice.disconnected and bob.disconnected
    factory.disconnected(alice, "connection lost")
    assert not done.called
    assert bob.events == [ServerShutdown()]
    factory.disconnected(bob, "connection lost")
    assert done.called


def test_shutdown_gives_up_after_timeout() -> None:
    """
    shutdown() fires after its timeout even if a connection never closes,
    and a late close afterwards raises nothing.
    """
    clock = Clock()
    factory = ChatFactory(clock)
    (alice,) = joined(factory, "alice")
    done = factory.shutdown(timeout=2)
    clock.advance(2)
    assert done.called
    factory.disconnected(alice, "connection lost")


def test_shutdown_with_nobody() -> None:
    """
    shutdown() with no connections fires at once.
    """
    assert ChatFactory(Clock()).shutdown().called
