"""
Tests for what the session layer added for IRC and shows every front end:
away (L{ChatSession.set_away}), whois, invitations, notices, private
actions, CTCP passed between users, and nicknames not taken over at
registration, through L{ChatSession} objects driven by a recording front
end, with no wire format.
"""

from __future__ import annotations

import pytest
from test_session import accounts_chat, chat, connect, users

from twistedchat.events import (
    Away,
    AwayChanged,
    AwaySet,
    ChatLine,
    Ctcp,
    Invited,
    Names,
    PrivateMessage,
    WhoIs,
)
from twistedchat.factory import NoSuchNickname
from twistedchat.rooms import AlreadyInRoom, NotInRoom
from twistedchat.session import NicknameHeld


def test_away_told_to_room_sharers_only() -> None:
    """
    /away TEXT replies AwaySet and tells everyone sharing a room (not the
    user, not others) with AwayChanged; /away alone is back; the same
    text twice tells nobody again.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    carol.session.part("#lobby")
    for user in (alice, bob, carol):
        user.forget()
    alice.line("/away lunch")
    assert alice.replies == [AwaySet("lunch")]
    assert alice.delivered == []
    assert bob.delivered == [AwayChanged("alice", "lunch")]
    assert carol.delivered == []
    alice.session.set_away("lunch")
    assert bob.delivered == [AwayChanged("alice", "lunch")]
    alice.line("/away")
    assert bob.delivered[-1] == AwayChanged("alice", "")
    assert alice.session.away == ""


def test_private_message_to_someone_away() -> None:
    """
    A private message to someone away is answered with Away and their
    text; a notice is not (nothing answers a notice); /names lists who is
    away.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    bob.session.set_away("back at 3")
    alice.forget()
    alice.line("/msg bob are you there?")
    assert alice.replies_of(Away) == [Away("bob", "back at 3")]
    alice.forget()
    alice.session.private_message("bob", "fyi", notice=True)
    assert alice.replies_of(Away) == []
    alice.forget()
    alice.line("/names")
    assert alice.replies == [Names("#lobby", ["alice", "bob"], [], ["bob"])]


def test_whois() -> None:
    """
    /whois NICK replies WhoIs: their rooms, those they operate, away text,
    account and server-operator flag, never an address; nobody: an error.
    """
    factory = accounts_chat()
    alice, bob = users(factory, "alice", "bob")
    alice.line("/join #dev")
    alice.session.set_away("out")
    bob.forget()
    bob.line("/whois alice")
    assert bob.replies == [WhoIs("alice", ["#dev", "#lobby"], ["#dev"], "out", "", False)]
    with pytest.raises(NoSuchNickname):
        bob.session.whois("nobody")
    bob.forget()
    bob.line("/whois")
    assert bob.errors() == ["Usage: /whois NICK"]


def test_invite() -> None:
    """
    /invite NICK #ROOM tells NICK only (Invited) and the inviter with a
    notice; inviting to a room one is not in, someone already there, or
    nobody is refused.
    """
    factory = chat()
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    alice.line("/join #dev")
    for user in (alice, bob, carol):
        user.forget()
    alice.line("/invite bob #dev")
    assert bob.delivered == [Invited("alice", "bob", "#dev")]
    assert carol.delivered == []
    assert alice.replies[-1].text == "You invited bob to #dev."  # type: ignore[attr-defined]
    with pytest.raises(NotInRoom):
        bob.session.invite("carol", "#dev")
    with pytest.raises(AlreadyInRoom):
        alice.session.invite("bob", "#lobby")
    with pytest.raises(NoSuchNickname):
        alice.session.invite("nobody", "#dev")


def test_notices_private_actions_and_ctcp() -> None:
    """
    say(notice=True) and private_message(notice=True or action=True) mark
    the events so; ctcp() delivers a Ctcp to the recipient only (and back
    to a sender that asked for its own events), recording nothing.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.session.say("build passed", "#lobby", notice=True)
    alice.session.private_message("bob", "waves", action=True)
    assert bob.delivered == [
        ChatLine("alice", "build passed", "#lobby", notice=True),
        PrivateMessage("alice", "bob", "waves", action=True),
    ]
    bob.forget()
    alice.session.echo = True
    alice.session.ctcp("bob", "VERSION")
    assert bob.delivered == [Ctcp("alice", "bob", "VERSION")]
    assert alice.delivered[-1] == Ctcp("alice", "bob", "VERSION")
    assert factory.history is not None
    assert not any(isinstance(r.event, Ctcp) for r in factory.history.recent(100, "#lobby"))


def test_nickname_held_without_take_over() -> None:
    """
    choose_nickname(take_over=False) of a nickname online raises
    NicknameHeld, even with the right password; with take_over (the
    default) the right password takes it over.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.session.register_account("correct-horse")
    other = connect(factory)
    with pytest.raises(NicknameHeld):
        other.session.choose_nickname("alice", "correct-horse", take_over=False)
    other.session.choose_nickname("alice", "correct-horse")
    assert other.session.nickname == "alice"
    assert alice.closed
