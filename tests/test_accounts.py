"""
Tests for accounts: /register, the password prompt for a registered
nickname, /identify, /password, /nick to a registered nickname, and
the twisted.cred pieces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from argon2 import PasswordHasher
from fakeclients import FakeClient, chatters, make_factory
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from twistedchat.accounts import (
    CONCURRENT_HASHES,
    Account,
    Accounts,
    IAccount,
    StoredAccount,
    load_accounts,
    make_portal,
)
from twistedchat.database import make_pool, open_database
from twistedchat.factory import ChatFactory
from twistedchat.protocol import PROMPT, REFUSAL_GRACE
from twistedchat.session import State

#: Argon2id with small costs, so tests run fast.
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def in_this_thread(function: Any, *args: Any) -> Deferred[Any]:
    """
    Run C{function} at once instead of in a thread.
    """
    return maybeDeferred(function, *args)


def accounts_factory(clock: Clock | None = None, **options: Any) -> ChatFactory:
    """
    A chat factory with in-memory accounts hashed in this thread.
    """
    clock = clock or Clock()
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=in_this_thread)
    return make_factory(clock, accounts=accounts, flood_rate=0, **options)


def registered(factory: ChatFactory, nickname: str, password: str) -> None:
    """
    Register C{nickname} with C{password} the way a user does, then leave.
    """
    (client,) = chatters(factory, nickname)
    client.send(f"/register {password}\n/quit\n".encode())


def test_register_then_password_prompt() -> None:
    """
    /register makes the nickname need its password: the next user who asks
    for it is prompted for the password and joins, identified, once it is
    right.
    """
    factory = accounts_factory()
    (alice,) = chatters(factory, "alice")
    alice.send(b"/register s3cret-pw\n")
    assert alice.lines() == [
        "*** The nickname alice is now registered to you; from now on it needs this password."
    ]
    alice.send(b"/quit\n")
    client = FakeClient(factory)
    client.output()
    client.send(b"ALICE\n")
    assert client.lines() == [
        "*** The nickname ALICE is registered. Send its password, "
        "or an empty line to choose another nickname:"
    ]
    assert client.chat.session.state is State.AWAITING_PASSWORD
    client.send(b"s3cret-pw\n")
    assert client.chat.nickname == "ALICE"
    assert client.lines()[0].startswith("*** Welcome, ALICE!")


def test_wrong_passwords_delayed_then_closed() -> None:
    """
    Each wrong password is answered after a delay; the third closes the
    connection. Nothing is processed while a password is being checked.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.send(b"alice\n")
    client.output()
    client.send(b"guess1\nguess2\n")
    assert client.lines() == []
    clock.advance(1)
    assert client.lines() == [
        "!!! Wrong password.",
        "*** The nickname alice is registered. Send its password, "
        "or an empty line to choose another nickname:",
    ]
    clock.advance(1)
    assert client.lines()[0] == "!!! Wrong password."
    client.send(b"guess3\n")
    clock.advance(1)
    assert client.lines() == ["!!! Wrong password 3 times; goodbye."]
    assert client.closed


def test_empty_line_at_password_prompt_goes_back() -> None:
    """
    An empty line at the password prompt goes back to the nickname prompt.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.send(b"alice\n")
    client.output()
    client.send(b"\n")
    assert client.lines() == [f"*** {PROMPT}"]
    client.send(b"bob\n")
    assert client.chat.nickname == "bob"


def test_registered_nickname_cannot_be_taken_by_rename() -> None:
    """
    /nick to a registered nickname needs its password; with the right one
    the rename happens, with a wrong one it does not.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "alice", "s3cret-pw")
    (bob, carol) = chatters(factory, "bob", "carol")
    bob.send(b"/nick Alice\n")
    assert bob.lines() == ["!!! The nickname Alice is registered; /nick Alice PASSWORD takes it."]
    bob.send(b"/nick alice wrong-password\n")
    clock.advance(1)
    assert bob.lines() == ["!!! Wrong password for alice."]
    bob.send(b"/nick alice s3cret-pw\n")
    assert bob.lines() == [
        "*** You are now known as alice (was bob).",
        "*** 1 wrong password was given for your nickname since you last signed in; "
        "the last from 127.0.0.1:50000 at 1970-01-01 00:00:00 UTC.",
    ]
    assert carol.lines()[-1] == "*** bob is now known as alice"


def test_random_nickname_avoids_registered() -> None:
    """
    Random nicknames never hand out a registered nickname.
    """
    clock = Clock()
    stored = {f"guest{number}": StoredAccount("x", 0.0) for number in range(1000, 10000)}
    accounts = Accounts(None, clock, stored, hasher=CHEAP, run_in_thread=in_this_thread)
    factory = make_factory(clock, accounts=accounts)
    nickname = factory.free_random_nickname()
    assert nickname.startswith("Guest")
    assert not accounts.is_registered(nickname)


def test_register_refusals() -> None:
    """
    /register needs one password of 8 characters or more, and refuses an
    already registered nickname; /register without accounts is refused.
    """
    factory = accounts_factory()
    (alice,) = chatters(factory, "alice")
    alice.send(b"/register\n")
    assert alice.lines() == ["!!! Usage: /register PASSWORD"]
    alice.send(b"/register short\n")
    assert alice.lines() == ["!!! A password needs at least 8 characters."]
    alice.send(b"/register long-enough\n/register again-please\n")
    assert alice.lines()[-1] == "!!! The nickname alice is registered already."
    (dave,) = chatters(make_factory(), "dave")
    dave.send(b"/register long-enough\n")
    assert dave.lines() == ["!!! This server has no accounts."]


def test_identify_and_password_change() -> None:
    """
    /identify checks the password of one's own nickname; /password OLD NEW
    changes it, after which only NEW works.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    (alice,) = chatters(factory, "alice")
    alice.send(b"/identify whatever-pw\n")
    assert alice.lines() == [
        "!!! The nickname alice is not registered; /register PASSWORD does that."
    ]
    alice.send(b"/register first-password\n")
    alice.output()
    alice.send(b"/identify first-password\n")
    assert alice.lines() == ["*** You are identified as alice already."]
    alice.send(b"/password wrong-password second-password\n")
    clock.advance(1)
    assert alice.lines() == ["!!! Wrong password."]
    alice.send(b"/password first-password second-password\n")
    assert alice.lines() == [
        "*** Your password has been changed.",
        "*** 1 wrong password was given for your nickname since you last signed in; "
        "the last from 127.0.0.1:50000 at 1970-01-01 00:00:00 UTC.",
    ]
    alice.send(b"/quit\n")
    client = FakeClient(factory)
    client.send(b"alice\nfirst-password\n")
    clock.advance(1)
    client.output()
    client.send(b"second-password\n")
    assert client.chat.nickname == "alice"


def test_passwords_never_logged_or_shown() -> None:
    """
    Passwords never appear in the log, in other users' output, or in the
    history.
    """
    from twistedchat.history import History

    clock = Clock()
    history = History(None, clock)
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=in_this_thread)
    factory = make_factory(clock, accounts=accounts, history=history, flood_rate=0)
    with capturedLogs() as events:
        alice, bob = chatters(factory, "alice", "bob")
        alice.send(b"/register hunter2-secret\n/password hunter2-secret hunter3-secret\n")
        alice.send(b"/quit\n")
        client = FakeClient(factory)
        client.send(b"alice\nhunter3-secret\n")
        bob.send(b"/nick alice wrong-secret\n")
        clock.advance(1)
    text = "\n".join(formatEvent(event) for event in events)
    assert "secret" not in text
    assert "alice registered an account" in text
    assert "secret" not in bob.output().decode()
    assert not any(
        "secret" in repr(record) for record in history.recent(200, "#lobby", "alice", private=True)
    )


@pytest_twisted.ensureDeferred
async def test_accounts_stored_and_checked_through_cred(tmp_path: Path) -> None:
    """
    Accounts are stored in the database as Argon2id hashes (hashed in
    Twisted's thread pool), read back at start-up, and checked through a
    twisted.cred portal that answers IAccount avatars or UnauthorizedLogin.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    pool = make_pool(path, reactor)
    clock = Clock()
    clock.advance(1_700_000_000)
    accounts = Accounts(pool, clock, hasher=CHEAP)
    await accounts.register("Alice", "correct-horse")
    pool.close()
    (stored,) = open_database(path, load_accounts)
    assert list(stored) == ["alice"]
    assert stored["alice"].password_hash.startswith("$argon2id$")
    assert stored["alice"].created_at == 1_700_000_000
    loaded = Accounts(None, Clock(), stored, hasher=CHEAP)
    assert loaded.registered_at("alice") == 1_700_000_000
    assert loaded.registered_at("bob") is None
    portal = make_portal(loaded)
    interface, avatar, logout = await portal.login(
        UsernamePassword(b"ALICE", b"correct-horse"), None, IAccount
    )
    assert (interface, avatar) == (IAccount, Account("alice"))
    with pytest.raises(UnauthorizedLogin):
        await portal.login(UsernamePassword(b"alice", b"wrong"), None, IAccount)
    with pytest.raises(UnauthorizedLogin):
        await portal.login(UsernamePassword(b"nobody", b"correct-horse"), None, IAccount)


def test_hashes_run_two_at_a_time() -> None:
    """
    However many hashes are asked for at once (here five registrations;
    password checks share the queue), at most CONCURRENT_HASHES (2) run in
    the thread pool; the others start, in order, as those finish, and
    every caller gets its answer.
    """
    started: list[Deferred[Any]] = []

    def held(function: Any, *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.addCallback(lambda _: function(*args))
        started.append(d)
        return d

    accounts = Accounts(None, Clock(), hasher=CHEAP, run_in_thread=held)
    registrations = [
        Deferred.fromCoroutine(accounts.register(f"user{n}", "long-password")) for n in range(5)
    ]
    assert CONCURRENT_HASHES == 2
    assert len(started) == 2
    for done in range(5):
        started[done].callback(None)
        assert len(started) == min(done + 3, 5)
    results: list[Any] = []
    for registration in registrations:
        registration.addCallback(results.append)
    assert results == [None] * 5
    assert all(accounts.is_registered(f"user{n}") for n in range(5))


def test_wrong_passwords_by_command_count_toward_the_limit() -> None:
    """
    Wrong passwords given with /password and /nick NICK PASSWORD count
    toward the same limit of 3 per connection as the nickname prompt
    (a right one in between does not reset it): the third closes the
    connection, and the others see the user leave for "too many wrong
    passwords".
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "carol", "carol-password")
    (alice, bob) = chatters(factory, "alice", "bob")
    alice.send(b"/register alice-password\n")
    alice.output()
    bob.output()
    chat = alice.chat
    alice.send(b"/nick carol wrong-password\n")
    clock.advance(1)
    assert alice.lines() == ["!!! Wrong password for carol."]
    alice.send(b"/identify alice-password\n")
    assert alice.lines() == ["*** You are identified as alice already."]
    alice.send(b"/password wrong-password new-password\n")
    clock.advance(1)
    assert alice.lines() == ["!!! Wrong password."]
    assert chat.session.state is State.CHATTING
    alice.send(b"/nick carol still-wrong\n")
    clock.advance(1)
    assert alice.lines() == ["!!! Wrong password 3 times; goodbye."]
    assert chat.session.state is State.CLOSED
    assert not alice.transport.connected
    assert bob.lines() == ["*** alice has left (too many wrong passwords)"]
    assert factory.nicknames() == ["bob"]


# Regaining a nickname, and passwords that must not leak


def test_nickname_and_password_on_one_line() -> None:
    """
    At the prompt, NICK PASSWORD registers with the account in one step;
    with a wrong password the nickname's password prompt follows.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.output()
    client.send(b"alice s3cret-pw\n")
    assert client.chat.nickname == "alice"
    assert client.lines()[0].startswith("*** Welcome, alice!")
    other = FakeClient(factory, 50001)
    other.output()
    other.send(b"alice wrong-guess\n")
    clock.advance(1)
    assert other.lines() == [
        "!!! Wrong password.",
        "*** The nickname alice is registered. Send its password, "
        "or an empty line to choose another nickname:",
    ]


def test_password_with_unregistered_nickname_is_not_used() -> None:
    """
    NICK PASSWORD for a nickname that is not registered takes the nickname
    and says, right after the welcome, that the password was not used; so
    does /nick NICK PASSWORD. The password is shown to nobody.
    """
    factory = accounts_factory()
    (bob,) = chatters(factory, "bob")
    client = FakeClient(factory, 50001)
    client.output()
    client.send(b"carol hunter2-pw\n")
    assert client.chat.nickname == "carol"
    assert client.lines()[1] == (
        "*** The nickname carol is not registered, so the password was not used; "
        "/register PASSWORD registers it."
    )
    assert b"hunter2" not in bob.output()
    client.send(b"/nick dave another-pw\n")
    assert client.lines() == [
        "*** You are now known as dave (was carol).",
        "*** The nickname dave is not registered, so the password was not used; "
        "/register PASSWORD registers it.",
    ]


def test_regain_ghosts_the_old_connection() -> None:
    """
    A registered nickname that another connection holds (a dropped
    network) asks for its password; the right one takes the nickname over
    and the old connection is told why and closed as "ghosted".
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    old, bob = chatters(factory, "bob", "carol")
    old.send(b"/nick alice s3cret-pw\n")
    old.output()
    bob.output()
    client = FakeClient(factory, 50009)
    client.output()
    client.send(b"alice\n")
    assert client.lines() == [
        "*** The nickname alice is registered. Send its password, "
        "or an empty line to choose another nickname:"
    ]
    client.send(b"s3cret-pw\n")
    assert client.chat.nickname == "alice"
    assert old.lines() == ["*** Someone who gave the password of alice has taken it over; goodbye."]
    assert old.closed
    assert bob.lines() == ["*** alice has left (ghosted)", "*** alice has joined"]
    assert factory.nicknames() == ["alice", "carol"]


def identified(factory: ChatFactory, nickname: str, password: str, port: int) -> FakeClient:
    """
    Connect and join as the registered C{nickname}, giving its C{password}
    on the nickname line; forget the output so far.
    """
    client = FakeClient(factory, port)
    client.send(f"{nickname} {password}\n".encode())
    assert client.chat.nickname == nickname
    client.output()
    return client


def test_regain_by_nick_command() -> None:
    """
    /nick NICK PASSWORD also takes a registered nickname from the
    connection holding it.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    old = identified(factory, "alice", "s3cret-pw", 50001)
    (bob,) = chatters(factory, "bob")
    bob.send(b"/nick alice s3cret-pw\n")
    assert old.closed
    assert bob.chat.nickname == "alice"
    assert factory.nicknames() == ["alice"]


def test_pipelined_password_after_a_ghost() -> None:
    """
    The reported leak: a client reconnects while its old connection still
    holds the registered nickname and sends "alice CRLF password CRLF" at
    once. The password is taken as the password (not as a nickname, not
    as chat), and nobody sees it.
    """
    factory = accounts_factory()
    registered(factory, "alice", "sunflower-42")
    old = identified(factory, "alice", "sunflower-42", 50001)
    (bob,) = chatters(factory, "bob")
    client = FakeClient(factory, 50009)
    client.send(b"alice\r\nsunflower-42\r\n")
    assert client.chat.nickname == "alice"
    assert old.closed
    seen = bob.output() + client.output()
    assert b"sunflower" not in seen


def test_lines_after_a_refused_nickname_are_ignored() -> None:
    """
    Lines that arrive after a nickname the server refused, before the
    server answered or within REFUSAL_GRACE seconds after (before the
    client could have seen the answer), are ignored, and the client is
    told how many; lines sent later count again.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    (bob,) = chatters(factory, "bob")
    client = FakeClient(factory, 50009)
    client.output()
    client.send(b"b0b\r\nsunflower-42\r\nmore")
    client.send(b" of it\r\n")
    assert client.lines() == ["!!! The nickname b0b is taken.", f"*** {PROMPT}"]
    clock.advance(REFUSAL_GRACE / 2)
    client.send(b"hunter2-pw\r\npartial")  # in a later packet, still too soon
    clock.advance(REFUSAL_GRACE / 2)
    client.send(b" line\r\n")
    assert client.lines() == [
        "!!! Ignored 4 lines sent before the answer above; wait for an answer before sending more."
    ]
    assert client.chat.nickname is None
    client.send(b"carol\r\n")
    assert client.chat.nickname == "carol"
    assert b"sunflower" not in bob.output()


def test_lines_after_an_unregistered_nickname_are_ignored() -> None:
    """
    A client that sends "bob CRLF password CRLF" for a nickname that
    turns out not to be registered does not send its password as chat:
    what came before the welcome is ignored.
    """
    factory = accounts_factory()
    (carol,) = chatters(factory, "carol")
    client = FakeClient(factory, 50009)
    client.send(b"bob\r\nhunter2-pw\r\n")
    assert client.chat.nickname == "bob"
    assert client.lines()[-1] == (
        "!!! Ignored 1 line sent before the answer above; wait for an answer before sending more."
    )
    assert b"hunter2" not in carol.output()
    client.send(b"hello\r\n")
    assert carol.lines() == ["<bob> hello"]


def test_cr_ending_a_packet_at_the_password_prompt() -> None:
    """
    A password line ended by a CR at the end of one packet and an LF at
    the start of the next is one line: the LF is not an empty line (which
    at the password prompt means "choose another nickname").
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.send(b"alice\r")
    client.send(b"\ns3cret-pw\r")
    client.send(b"\n")
    assert client.chat.nickname == "alice"


@pytest.mark.parametrize("nickname", ["aIice", "al1ce", "a|ice", "ALlCE"])
def test_look_alike_of_registered_nickname_is_taken(nickname: str) -> None:
    """
    A nickname that differs from a registered one only by look-alike
    characters (I, l, 1, | and O, 0) counts as taken, at the prompt and by
    /nick, and cannot be registered.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.output()
    client.send(nickname.encode() + b"\n")
    assert client.lines()[0] == f"!!! The nickname {nickname} is taken."
    (bob,) = chatters(factory, "bob")
    bob.send(f"/nick {nickname}\n".encode())
    assert bob.lines() == [f"!!! The nickname {nickname} is taken."]


def test_look_alike_of_online_nickname_is_taken() -> None:
    """
    A nickname that looks like one online counts as taken; once its owner
    leaves it is free.
    """
    factory = accounts_factory()
    (bob,) = chatters(factory, "bob")
    client = FakeClient(factory, 50009)
    client.output()
    client.send(b"B0B\n")
    assert client.lines()[0] == "!!! The nickname B0B is taken."
    bob.send(b"/quit\n")
    factory.clock.advance(REFUSAL_GRACE)
    client.send(b"B0B\n")
    assert client.chat.nickname == "B0B"


@pytest.mark.parametrize("nickname", ["NickServ", "nickserv", "r00t", "Admin"])
def test_reserved_nicknames(nickname: str) -> None:
    """
    The reserved nicknames (NickServ ChanServ admin root operator by
    default) and their look-alikes cannot be taken, at the prompt or by
    /nick.
    """
    factory = accounts_factory()
    client = FakeClient(factory)
    client.output()
    client.send(nickname.encode() + b"\n")
    assert client.lines()[0] == f"!!! The nickname {nickname} is reserved."
    (bob,) = chatters(factory, "bob")
    bob.send(f"/nick {nickname}\n".encode())
    assert bob.lines() == [f"!!! The nickname {nickname} is reserved."]


# Limits across connections


def test_wrong_passwords_limited_across_connections() -> None:
    """
    Wrong passwords for one account are limited across connections: after
    three, each further password waits a growing delay, and one given
    earlier is not checked (the user is told how long to wait). The owner,
    once signed in, is told about the failed attempts.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "alice", "s3cret-pw")
    for port in range(3):
        guesser = FakeClient(factory, 51000 + port)
        guesser.send(b"alice guess-number-%d\n" % port)
    guesser = FakeClient(factory, 51100)
    guesser.output()
    guesser.send(b"alice guess-four\n")
    assert guesser.lines() == [
        "!!! Too many wrong passwords for alice or from your address lately; "
        "try again in 1 second.",
        "*** The nickname alice is registered. Send its password, "
        "or an empty line to choose another nickname:",
    ]
    clock.advance(1)
    owner = FakeClient(factory, 51200)
    owner.output()
    owner.send(b"alice s3cret-pw\n")
    lines = owner.lines()
    assert lines[0].startswith("*** Welcome, alice!")
    assert lines[1].startswith(
        "*** 3 wrong passwords were given for your nickname since you last signed in; "
        "the last from 127.0.0.1:51002 at "
    )


def test_registrations_limited_per_address() -> None:
    """
    An address may register max_registrations nicknames an hour; a
    refused registration (a short password) does not count.
    """
    clock = Clock()
    factory = accounts_factory(clock, max_registrations=2)
    clients = chatters(factory, "alice", "bob", "carol")
    clients[0].send(b"/register short\n")
    clients[0].send(b"/register long-enough\n")
    clients[1].send(b"/register long-enough\n")
    clients[2].output()
    clients[2].send(b"/register long-enough\n")
    assert clients[2].lines() == [
        "!!! Too many nicknames registered from your address lately; try again in 60 minutes."
    ]
    clock.advance(3600)
    clients[2].send(b"/register long-enough\n")
    assert clients[2].lines()[0].startswith("*** The nickname carol is now registered")


def test_quit_at_the_password_prompt() -> None:
    """
    /quit at the password prompt leaves; it is not taken for a wrong
    password.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.send(b"alice\n")
    client.output()
    client.send(b"/quit\n")
    assert client.lines() == ["*** Goodbye."]
    assert client.closed
    assert factory.password_failures.wait("alice", "127.0.0.1") == 0
