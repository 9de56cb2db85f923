"""
Tests for the account rules of L{twistedchat.session}: registration and
its limits, the password a registered nickname needs, /identify,
/password, wrong passwords and their limits, ghosting, look-alike and
reserved nicknames, and passwords never leaking, through L{ChatSession}
objects driven directly by a recording front end, with no wire format.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fakeclients import make_factory
from test_session import (
    CHEAP,
    PASSWORD,
    Recorder,
    accounts_chat,
    connect,
    identified,
    registered,
    users,
)
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twistedchat.accounts import Account, AccountError, Accounts, StoredAccount
from twistedchat.events import (
    Error,
    Ghosted,
    Joined,
    Left,
    NicknameChanged,
    Notice,
    PasswordWanted,
    Welcome,
)
from twistedchat.factory import ChatFactory
from twistedchat.nicknames import InvalidNickname
from twistedchat.session import (
    MAX_WRONG_PASSWORDS,
    WRONG_PASSWORD_DELAY,
    ChatSession,
    Refused,
    State,
)

#: What the owner of a nickname is told after one wrong password was given
#: for it, at time 0, by a session made by L{connect}.
ONE_FAILURE = Notice(
    "1 wrong password was given for your nickname since you last signed in; "
    "the last from 127.0.0.1:5000 at 1970-01-01 00:00:00 UTC."
)


def connect_from(factory: ChatFactory, host: str, port: int = 5000) -> Recorder:
    """
    Open a session on C{factory} from C{host}:C{port} with a new
    L{Recorder}; no nickname yet.
    """
    front_end = Recorder()
    front_end.session = ChatSession(factory, front_end, host, f"{host}:{port}")
    front_end.session.open()
    return front_end


def unused(nickname: str) -> Notice:
    """
    The notice that a password given with the unregistered C{nickname} was
    not used.
    """
    return Notice(
        f"The nickname {nickname} is not registered, so the password was not used; "
        "/register PASSWORD registers it."
    )


# Registration


def test_register_makes_nickname_need_its_password() -> None:
    """
    register_account() answers with a Notice and makes the nickname need
    its password: the next session that chooses it, in any case, is asked
    for it with PasswordWanted and waits in AWAITING_PASSWORD; the right
    password joins it, proving the account.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.session.register_account(PASSWORD)
    assert alice.replies == [
        Notice("The nickname alice is now registered to you; from now on it needs this password.")
    ]
    assert alice.session.account == Account("alice")
    alice.session.quit()
    user = connect(factory)
    user.session.choose_nickname("ALICE")
    assert user.replies == [PasswordWanted("ALICE")]
    assert user.session.state is State.AWAITING_PASSWORD
    assert user.session.nickname is None
    user.forget()
    user.session.give_password(PASSWORD)
    assert user.replies_of(Welcome) == [Welcome("ALICE", (1, ["ALICE"]))]
    assert user.session.nickname == "ALICE"
    assert user.session.account == Account("alice")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/register", "Usage: /register PASSWORD"),
        ("/register short", "A password needs at least 8 characters."),
    ],
)
def test_register_refusals(line: str, error: str) -> None:
    """
    /register needs exactly one password of 8 characters or more; anything
    else is an Error and registers nothing.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.line(line)
    assert alice.replies == [Error(error)]
    assert factory.accounts is not None
    assert not factory.accounts.is_registered("alice")


def test_register_twice_refused() -> None:
    """
    /register of a nickname registered already is an Error.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.line("/register long-enough")
    alice.forget()
    alice.line("/register again-please")
    assert alice.replies == [Error("The nickname alice is registered already.")]


def test_register_without_accounts_refused() -> None:
    """
    /register on a server without accounts is an Error.
    """
    factory = make_factory(flood_rate=0)
    (dave,) = users(factory, "dave")
    dave.line("/register long-enough")
    assert dave.replies == [Error("This server has no accounts.")]


def test_registrations_limited_per_address() -> None:
    """
    An address may register max_registrations nicknames an hour; the next
    is an Error saying how long to wait. A refused registration (a short
    password) does not count.
    """
    factory = accounts_chat(max_registrations=2)
    alice, bob, carol = users(factory, "alice", "bob", "carol")
    alice.line("/register short")
    alice.line("/register long-enough")
    bob.line("/register long-enough")
    carol.line("/register long-enough")
    assert carol.replies == [
        Error("Too many nicknames registered from your address lately; try again in 60 minutes.")
    ]
    factory.clock.advance(3600)
    carol.forget()
    carol.line("/register long-enough")
    assert carol.replies == [
        Notice("The nickname carol is now registered to you; from now on it needs this password.")
    ]


# A registered nickname and its password


def test_nickname_with_its_password() -> None:
    """
    choose_nickname() with the right password of a registered nickname
    joins at once, proving the account; with a wrong one the password is
    asked for again after the wrong-password delay, and the session keeps
    waiting for it.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    owner = connect(factory)
    owner.session.choose_nickname("alice", PASSWORD)
    assert owner.session.account == Account("alice")
    assert owner.replies_of(Welcome) == [Welcome("alice", (1, ["alice"]))]
    owner.session.quit()
    guess = connect(factory)
    guess.session.choose_nickname("alice", "wrong-guess")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert guess.replies == [Error("Wrong password."), PasswordWanted("alice")]
    assert guess.session.state is State.AWAITING_PASSWORD
    assert guess.session.account is None


def test_wrong_passwords_answered_late_then_closed() -> None:
    """
    A wrong password is answered only WRONG_PASSWORD_DELAY seconds later:
    the Deferred give_password() returns fires then, with an Error and
    PasswordWanted again. The MAX_WRONG_PASSWORDS-th (3rd) wrong password
    is answered with an Error saying goodbye instead, and the session is
    closed.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    user = connect(factory)
    user.session.choose_nickname("alice")
    user.forget()
    done = user.session.give_password("guess-one")
    assert user.replies == []
    assert not done.called
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert done.called
    assert user.replies == [Error("Wrong password."), PasswordWanted("alice")]
    user.session.give_password("guess-two")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    user.forget()
    assert MAX_WRONG_PASSWORDS == 3
    user.session.give_password("guess-three")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert user.replies == [Error("Wrong password 3 times; goodbye.")]
    assert user.closed
    assert user.session.state is State.CLOSED


def test_rename_to_registered_nickname_needs_its_password() -> None:
    """
    /nick to a registered nickname without a password is an Error saying
    how to take it; with a wrong password an Error comes after the delay
    and the nickname stays; with the right one the rename happens, the
    others are told, and the owner hears of the wrong password given
    before.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    bob, carol = users(factory, "bob", "carol")
    bob.line("/nick Alice")
    assert bob.replies == [
        Error("The nickname Alice is registered; /nick Alice PASSWORD takes it.")
    ]
    bob.forget()
    bob.line("/nick alice wrong-password")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert bob.replies == [Error("Wrong password for alice.")]
    assert bob.session.nickname == "bob"
    bob.forget()
    bob.line(f"/nick alice {PASSWORD}")
    assert bob.replies == [Notice("You are now known as alice (was bob)."), ONE_FAILURE]
    assert carol.delivered == [NicknameChanged("bob", "alice")]
    assert bob.session.account == Account("alice")


def test_password_with_unregistered_nickname_is_not_used() -> None:
    """
    A password given with a nickname that is not registered, when choosing
    it or with /nick NICK PASSWORD, is not used: the nickname is taken, and
    right after the welcome (or the rename) a Notice says so. No account is
    proved.
    """
    factory = accounts_chat()
    user = connect(factory)
    user.session.choose_nickname("carol", "hunter2-pw")
    assert user.replies[:2] == [Welcome("carol", (1, ["carol"])), unused("carol")]
    user.forget()
    user.line("/nick dave another-pw")
    assert user.replies == [Notice("You are now known as dave (was carol)."), unused("dave")]
    assert user.session.account is None


def test_owner_back_to_registered_nickname_with_password() -> None:
    """
    An owner who proved their account, renamed away and then gives /nick
    NICK PASSWORD to take their registered nickname back gets it, without
    being told the nickname is not registered.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    alice = identified(factory, "alice")
    alice.line("/nick bob")
    alice.forget()
    alice.line(f"/nick alice {PASSWORD}")
    assert alice.session.nickname == "alice"
    assert alice.replies == [Notice("You are now known as alice (was bob).")]


def test_random_nickname_avoids_registered() -> None:
    """
    A random nickname (choose_nickname("")) is never a registered one, even
    when every GuestNNNN is registered.
    """
    clock = Clock()
    stored = {f"guest{number}": StoredAccount("x", 0.0) for number in range(1000, 10000)}
    accounts = Accounts(None, clock, stored, hasher=CHEAP, run_in_thread=maybeDeferred)
    factory = make_factory(clock, accounts=accounts, flood_rate=0)
    user = connect(factory)
    user.session.choose_nickname("")
    nickname = user.session.nickname
    assert nickname is not None and nickname.startswith("Guest")
    assert not accounts.is_registered(nickname)
    assert user.replies[0] == Notice(f"Your nickname is {nickname}; /nick changes it.")


# /identify and /password


def test_identify() -> None:
    """
    /identify for a nickname that is not registered is an Error saying how
    to register it; for one's own registered nickname, already proved by
    registering it, a Notice says so.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.line("/identify whatever-pw")
    assert alice.replies == [
        Error("The nickname alice is not registered; /register PASSWORD does that.")
    ]
    alice.line("/register first-password")
    alice.forget()
    alice.line("/identify first-password")
    assert alice.replies == [Notice("You are identified as alice already.")]


def test_password_change() -> None:
    """
    /password OLD NEW with a wrong OLD is an Error after the delay and
    changes nothing; with the right OLD a Notice says the password was
    changed, followed by the report of the wrong password given before.
    From then on only NEW is the nickname's password.
    """
    factory = accounts_chat()
    (alice,) = users(factory, "alice")
    alice.line("/register first-password")
    alice.forget()
    alice.line("/password wrong-password second-password")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert alice.replies == [Error("Wrong password.")]
    alice.forget()
    alice.line("/password first-password second-password")
    assert alice.replies == [Notice("Your password has been changed."), ONE_FAILURE]
    alice.session.quit()
    user = connect(factory)
    user.session.choose_nickname("alice", "first-password")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert user.errors() == ["Wrong password."]
    user.session.give_password("second-password")
    assert user.session.nickname == "alice"


# Wrong passwords


def test_wrong_passwords_by_command_count_toward_the_limit() -> None:
    """
    Wrong passwords given with /password and /nick NICK PASSWORD count
    toward the same limit of MAX_WRONG_PASSWORDS per session as the
    nickname's password, and a right password checked in between does not
    reset the count: the third wrong one closes the session with an
    Error, and the others see the user leave for "too many wrong
    passwords".
    """
    factory = accounts_chat()
    registered(factory, "carol")
    alice, bob = users(factory, "alice", "bob")
    alice.line("/register alice-password")
    alice.forget()
    alice.line("/nick carol wrong-password")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    alice.line("/password alice-password alice-password-2")
    assert alice.replies == [
        Error("Wrong password for carol."),
        Notice("Your password has been changed."),
    ]
    alice.forget()
    alice.line("/password wrong-password new-password")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert alice.replies == [Error("Wrong password.")]
    assert alice.session.state is State.CHATTING
    alice.forget()
    alice.line("/nick carol still-wrong")
    factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert alice.replies == [Error("Wrong password 3 times; goodbye.")]
    assert alice.closed
    assert alice.session.state is State.CLOSED
    assert bob.delivered == [Left("alice", "too many wrong passwords")]
    assert factory.nicknames() == ["bob"]


def test_wrong_passwords_for_an_account_limited_across_connections() -> None:
    """
    Wrong passwords for one account are limited across sessions and
    addresses: after three, a password given for it is not checked but
    answered at once with an Error saying how long to wait, and the
    password asked for again. The owner, once signed in, is told how many
    wrong passwords were given, the last one's address and time.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    for number in range(1, 4):
        guesser = connect_from(factory, f"10.0.0.{number}")
        guesser.session.choose_nickname("alice", f"guess-number-{number}")
    guesser = connect_from(factory, "10.0.0.4")
    done = guesser.session.choose_nickname("alice", "guess-four")
    assert done is not None and done.called
    assert guesser.replies == [
        Error(
            "Too many wrong passwords for alice or from your address lately; try again in 1 second."
        ),
        PasswordWanted("alice"),
    ]
    factory.clock.advance(1)
    owner = connect_from(factory, "10.0.0.5")
    owner.session.choose_nickname("alice", PASSWORD)
    assert owner.replies[:2] == [
        Welcome("alice", (1, ["alice"])),
        Notice(
            "3 wrong passwords were given for your nickname since you last signed in; "
            "the last from 10.0.0.3:5000 at 1970-01-01 00:00:00 UTC."
        ),
    ]


def test_wrong_passwords_from_an_address_limited_across_accounts() -> None:
    """
    Wrong passwords from one address are limited across accounts: after
    three, a password from that address for yet another account is not
    checked (an Error says how long to wait), while the same password from
    another address is.
    """
    factory = accounts_chat(max_registrations=10)
    for nickname in ("alice", "bob", "carol", "dave"):
        registered(factory, nickname)
    for nickname in ("alice", "bob", "carol"):
        guesser = connect_from(factory, "10.0.0.1")
        guesser.session.choose_nickname(nickname, "wrong-guess")
    guesser = connect_from(factory, "10.0.0.1")
    guesser.session.choose_nickname("dave", PASSWORD)
    assert guesser.errors() == [
        "Too many wrong passwords for dave or from your address lately; try again in 1 second."
    ]
    assert guesser.session.nickname is None
    elsewhere = connect_from(factory, "10.0.0.2")
    elsewhere.session.choose_nickname("dave", PASSWORD)
    assert elsewhere.session.account == Account("dave")


# Ghosting


def test_regain_ghosts_the_holder() -> None:
    """
    A registered nickname that another session holds (a dropped network)
    asks for its password; the right one takes it over: the holder is told
    with Ghosted, then closed, and the others see it leave as "ghosted"
    and the new session join.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    old = identified(factory, "alice")
    (carol,) = users(factory, "carol")
    old.forget()
    user = connect(factory)
    user.session.choose_nickname("alice")
    assert user.replies == [PasswordWanted("alice")]
    user.session.give_password(PASSWORD)
    assert user.session.nickname == "alice"
    assert old.delivered == [Ghosted("alice")]
    assert old.closed_after == 1
    assert old.session.state is State.CLOSED
    assert carol.delivered == [Left("alice", "ghosted"), Joined("alice", "#lobby")]
    assert factory.nicknames() == ["alice", "carol"]
    assert factory.participant("alice") is user.session


def test_regain_by_rename() -> None:
    """
    /nick NICK PASSWORD also takes a registered nickname from the session
    holding it, which is told with Ghosted, then closed.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    old = identified(factory, "alice")
    (bob,) = users(factory, "bob")
    old.forget()
    bob.line(f"/nick alice {PASSWORD}")
    assert old.delivered == [Ghosted("alice")]
    assert old.closed_after == 1
    assert bob.session.nickname == "alice"
    assert factory.nicknames() == ["alice"]


# Look-alike and reserved nicknames


@pytest.mark.parametrize("nickname", ["aIice", "al1ce", "a|ice", "ALlCE"])
def test_look_alike_of_registered_nickname_is_taken(nickname: str) -> None:
    """
    A nickname that differs from a registered one only by look-alike
    characters (I, l, 1, | and O, 0) counts as taken when choosing it and
    by /nick, and cannot be registered.
    """
    factory = accounts_chat()
    registered(factory, "alice")
    user = connect(factory)
    taken = f"The nickname {nickname} is taken: it looks too much like a registered nickname."
    with pytest.raises(Refused, match=f"^{re.escape(taken)}$"):
        user.session.choose_nickname(nickname)
    assert user.session.state is State.AWAITING_NICKNAME
    (bob,) = users(factory, "bob")
    bob.line(f"/nick {nickname}")
    assert bob.replies == [Error(taken)]
    assert factory.accounts is not None
    registration = Deferred.fromCoroutine(factory.accounts.register(nickname, PASSWORD))
    failures: list[Any] = []
    registration.addErrback(failures.append)
    assert str(failures[0].value) == f"The nickname {nickname} looks like one registered already."
    assert failures[0].check(AccountError)


def test_look_alike_of_online_nickname_is_taken() -> None:
    """
    A nickname that looks like one online counts as taken, and the
    refusal says which one it looks like; once its holder leaves it is
    free.
    """
    factory = accounts_chat()
    (bob,) = users(factory, "bob")
    user = connect(factory)
    with pytest.raises(Refused, match="^The nickname B0B is taken: it looks too much like bob.$"):
        user.session.choose_nickname("B0B")
    bob.session.quit()
    user.session.choose_nickname("B0B")
    assert user.session.nickname == "B0B"


@pytest.mark.parametrize("nickname", ["NickServ", "nickserv", "r00t", "Admin"])
def test_reserved_nicknames(nickname: str) -> None:
    """
    The reserved nicknames (NickServ ChanServ admin root operator by
    default) and their look-alikes cannot be taken, when choosing one or
    by /nick.
    """
    factory = accounts_chat()
    user = connect(factory)
    with pytest.raises(InvalidNickname, match=f"^The nickname {nickname} is reserved.$"):
        user.session.choose_nickname(nickname)
    (bob,) = users(factory, "bob")
    bob.line(f"/nick {nickname}")
    assert bob.replies == [Error(f"The nickname {nickname} is reserved.")]


# Passwords never leak


def test_passwords_never_logged_or_shown() -> None:
    """
    Passwords given to register, to change a password, to take a
    registered nickname (right or wrong), or with an unregistered one
    appear in no log event, in no event or reply to anyone, and in no
    history record.
    """
    factory = accounts_chat()
    with capturedLogs() as events:
        alice, bob = users(factory, "alice", "bob")
        alice.line("/register hunter2-secret")
        alice.line("/password hunter2-secret hunter3-secret")
        alice.session.quit()
        user = connect(factory)
        user.session.choose_nickname("alice", "hunter3-secret")
        bob.line("/nick alice wrong-secret")
        bob.line("/nick carol unused-secret")
        guess = connect(factory)
        guess.session.choose_nickname("alice", "guessed-secret")
        factory.clock.advance(WRONG_PASSWORD_DELAY)
    assert user.session.nickname == "alice"
    text = "\n".join(formatEvent(event) for event in events)
    assert "secret" not in text
    assert "alice registered an account" in text
    assert "wrong password for alice" in text
    for front_end in (alice, bob, user, guess):
        assert "secret" not in repr(front_end.delivered + front_end.replies)
    assert factory.history is not None
    records = factory.history.recent(200, "#lobby", "alice", private=True)
    assert not any("secret" in repr(record) for record in records)
