"""
Tests for L{twistedchat.accounts} (Argon2id hashes, the database, the
twisted.cred portal, the hashing queue), and for what the telnet front end
adds to the account rules: the password prompt and how account replies
look, NICK PASSWORD on one line, the empty line at the password prompt,
lines typed ahead of an answer, reading paused while a password is
checked, and passwords never echoed. The rules themselves are tested once,
at the session level, in test_session_accounts.py.
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

from twistedchat.accounts import (
    CONCURRENT_HASHES,
    Account,
    Accounts,
    IAccount,
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


# The accounts module


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


# The password prompt and how account replies look


def test_registration_notice_and_password_prompt() -> None:
    """
    Account notices are *** lines: the registration's, then, for the next
    user who asks for the nickname, the password prompt; the right
    password is followed by the welcome.
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
    client.send(b"s3cret-pw\n")
    assert client.lines()[0] == (
        "*** Welcome, ALICE! 1 user online: ALICE. Type /help for the commands."
    )


def test_input_paused_while_a_password_is_checked() -> None:
    """
    No line is handled while a password is being checked: of two guesses
    sent at once, the second waits until the first was answered, after the
    wrong-password delay, with a !!! line and the password prompt again.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.send(b"alice\n")
    client.output()
    client.send(b"guess1\nguess2\n")
    assert client.lines() == []
    assert client.chat.session.state is State.AWAITING_PASSWORD
    clock.advance(1)
    assert client.lines() == [
        "!!! Wrong password.",
        "*** The nickname alice is registered. Send its password, "
        "or an empty line to choose another nickname:",
    ]
    clock.advance(1)
    assert client.lines()[0] == "!!! Wrong password."


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


def test_nickname_and_password_on_one_line() -> None:
    """
    At the nickname prompt, NICK PASSWORD (a nickname has no spaces)
    gives a registered nickname its password in one line: the user joins
    at once.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    client = FakeClient(factory)
    client.output()
    client.send(b"alice s3cret-pw\n")
    assert client.chat.nickname == "alice"
    assert client.lines()[0].startswith("*** Welcome, alice!")


def test_ghosted_connection_told_why() -> None:
    """
    The connection ghosted by one that gave the nickname's password is
    told why in a *** line and closed; the others see it leave as
    "ghosted" and the nickname join again.
    """
    factory = accounts_factory()
    registered(factory, "alice", "s3cret-pw")
    old = identified(factory, "alice", "s3cret-pw", 50001)
    (bob,) = chatters(factory, "bob")
    old.output()
    client = FakeClient(factory, 50009)
    client.send(b"alice s3cret-pw\n")
    assert old.lines() == ["*** Someone who gave the password of alice has taken it over; goodbye."]
    assert old.closed
    assert bob.lines() == ["*** alice has left (ghosted)", "*** alice has joined"]


# Lines typed ahead, framing, and passwords never echoed


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
    assert client.lines() == [
        "!!! The nickname b0b is taken: it looks too much like bob.",
        f"*** {PROMPT}",
    ]
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


def test_passwords_not_echoed() -> None:
    """
    No password given to register, to change a password, to take a
    registered nickname (right or wrong), or with an unregistered
    nickname, appears in the telnet output of anyone, the user who typed
    it included.
    """
    clock = Clock()
    factory = accounts_factory(clock)
    alice, bob = chatters(factory, "alice", "bob")
    alice.send(b"/register hunter2-secret\n/password hunter2-secret hunter3-secret\n/quit\n")
    client = FakeClient(factory, 50005)
    client.send(b"alice hunter3-secret\n")
    bob.send(b"/nick alice wrong-secret\n")
    clock.advance(1)
    guess = FakeClient(factory, 50006)
    guess.send(b"alice\nguessed-secret\n")
    carol = FakeClient(factory, 50007)
    carol.send(b"carol unused-secret\n")
    clock.advance(1)
    assert client.chat.nickname == "alice"
    assert carol.chat.nickname == "carol"
    for each in (alice, bob, client, guess, carol):
        assert b"secret" not in each.output()
