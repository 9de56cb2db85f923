"""
Tests for what L{twistedchat.session} adds for front ends that scroll and
search: pages of older events (L{ChatSession.history_page}), searches
(L{ChatSession.search}, C{/search}), and the echo of one's own chat lines,
actions and private messages (L{ChatSession.echo}), through L{ChatSession}
objects driven directly by a recording front end, with no wire format.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from fakeclients import FakeClient, make_factory
from test_session import (
    CHEAP,
    Recorder,
    chat,
    identified,
    in_room,
    registered,
    users,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from twistedchat.accounts import Accounts
from twistedchat.database import make_pool, open_database
from twistedchat.events import (
    Action,
    ChatLine,
    Event,
    HistoryReplay,
    Joined,
    Left,
    PrivateMessage,
    PrivateMessageSent,
    SearchResults,
)
from twistedchat.factory import ChatFactory
from twistedchat.history import MAX_EVENT_ID, History, last_event_id, load_recent
from twistedchat.rooms import NotInRoom
from twistedchat.roomstore import RoomStore, load_rooms
from twistedchat.session import SEARCH_RESULTS, Refused


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[ChatFactory, History]]:
    """
    A factory on a L{Clock} whose history is kept in a new SQLite file
    (written only when a page or search reads it, or on stopping), with
    accounts in memory; the history is stopped afterwards.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    clock = Clock()
    clock.advance(1_700_000_000)
    history = History(make_pool(path, reactor), clock)
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=maybeDeferred)
    factory = make_factory(clock, history=history, accounts=accounts, flood_rate=0)
    yield factory, history
    pytest_twisted.blockon(history.stop())


def events(records: list[Any]) -> list[Event]:
    """
    The events of C{records}, in order.
    """
    return [record.event for record in records]


def search_results(user: Recorder) -> list[SearchResults]:
    """
    The SearchResults replies C{user} got.
    """
    return user.replies_of(SearchResults)


# Pages of older events


def test_history_page_replies_with_the_events_before_an_id() -> None:
    """
    history_page() replies with a HistoryReplay of the room (its name),
    asked, naming the id it ends before: the events before it, oldest
    first, notices included, private messages not.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    for text in ("one", "two", "three"):
        bob.line(text)
    bob.line("/msg alice psst")
    said = list(alice.delivered)
    alice.forget()
    d = alice.session.history_page("#LOBBY", said[2].id, 10)
    assert d.called
    [page] = alice.replies
    assert page == HistoryReplay("#lobby", page.records, None, True, said[2].id)
    assert events(page.records) == [Joined("alice", "#lobby"), Joined("bob", "#lobby"), *said[:2]]


def test_history_page_with_nothing_before() -> None:
    """
    A page before the first event is an empty HistoryReplay, still asked
    and naming the id.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    alice.session.history_page("#lobby", 1, 10)
    assert alice.replies == [HistoryReplay("#lobby", [], None, True, 1)]


@pytest.mark.parametrize("count, shown", [(0, 1), (-5, 1), (2, 2), (10**9, 3)])
def test_history_page_count_kept_within_the_cap(count: int, shown: int) -> None:
    """
    The count asked for is kept from 1 to the history's cap.
    """
    clock = Clock()
    factory = make_factory(clock, history=History(None, clock, cap=3), flood_rate=0)
    alice, bob = users(factory, "alice", "bob")
    for i in range(5):
        bob.line(f"line {i}")
    alice.forget()
    alice.session.history_page("#lobby", 10**6, count)
    [page] = alice.replies_of(HistoryReplay)
    assert (
        events(page.records)
        == [ChatLine("bob", f"line {i}", "#lobby") for i in range(5)][5 - shown :]
    )


def test_history_page_refused() -> None:
    """
    history_page() raises NotInRoom for a room the user is not in, and
    Refused on a server that keeps no history; nothing is replied.
    """
    factory = chat()
    (alice,) = users(factory, "alice")
    with pytest.raises(NotInRoom):
        alice.session.history_page("#dev", 10, 10)
    (dave,) = users(make_factory(flood_rate=0), "dave")
    with pytest.raises(Refused, match="^This server keeps no history"):
        dave.session.history_page("#lobby", 10, 10)
    assert alice.replies == dave.replies == []


@pytest_twisted.ensureDeferred
async def test_history_page_from_the_database(database: tuple[ChatFactory, History]) -> None:
    """
    With a database, history_page() returns a Deferred that fires once the
    page, read from disk with the events not yet written, is replied.
    """
    factory, _ = database
    alice, bob = users(factory, "alice", "bob")
    bob.line("hello")
    [hello] = alice.delivered
    d = alice.session.history_page("#lobby", hello.id + 1, 1)
    await d
    [page] = alice.replies_of(HistoryReplay)
    assert events(page.records) == [hello]
    assert page.records[0].event.id == hello.id and page.before == hello.id + 1


# A room's life


def test_a_vanished_rooms_events_are_not_paged_by_its_next_creator() -> None:
    """
    A room that vanishes takes its history with it: mallory, creating a
    room of the same name after alice left it, pages only what happened
    since (her own join and line). The room remembers where its life
    starts, the history's last event id when it was created; the default
    room's is 0, its history being continuous.
    """
    factory = chat()
    alice, mallory = users(factory, "alice", "mallory")
    in_room("#secret", alice)
    alice.line("the code is 1234")
    alice.session.part("#secret")
    assert factory.history is not None
    last = factory.history.last_id
    mallory.session.join("#Secret")
    mallory.line("what code?")
    assert factory.room("#secret").since == last and factory.default_room.since == 0
    mallory.forget()
    mallory.session.history_page("#secret", MAX_EVENT_ID, 50)
    [page] = mallory.replies_of(HistoryReplay)
    assert events(page.records) == [
        Joined("mallory", "#Secret"),
        ChatLine("mallory", "what code?", "#Secret"),
    ]


@pytest_twisted.ensureDeferred
async def test_a_vanished_rooms_lines_are_not_found_by_its_next_creator(
    database: tuple[ChatFactory, History],
) -> None:
    """
    With a database, where a vanished room's lines stay, neither a page
    nor a search of a new room of the same name reaches them: mallory,
    creating #secret after alice left it, sees only what happened since;
    the lines are still on disk.
    """
    factory, history = database
    alice, mallory = users(factory, "alice", "mallory")
    in_room("#secret", alice)
    alice.line("the code is 1234")
    alice.session.part("#secret")
    mallory.session.join("#secret")
    mallory.line("what code?")
    mallory.forget()
    await mallory.session.history_page("#secret", MAX_EVENT_ID, 50)
    await mallory.session.search("code")
    [page] = mallory.replies_of(HistoryReplay)
    assert events(page.records) == [
        Joined("mallory", "#secret"),
        ChatLine("mallory", "what code?", "#secret"),
    ]
    [found] = search_results(mallory)
    assert events(found.records) == [ChatLine("mallory", "what code?", "#secret")]
    assert events(await history.search("code", "#secret")) == [
        ChatLine("mallory", "what code?", "#secret"),
        ChatLine("alice", "the code is 1234", "#secret"),
    ]


def start_server(path: str, clock: Clock) -> tuple[ChatFactory, History]:
    """
    Start a server on the database at C{path} (created if new) as
    C{twistd chat} does: the recent history, the largest event id stored
    and the kept rooms read from it, history and kept rooms written to
    it; accounts in memory (they are not what is tested). Stop it with
    L{stop_server}.
    """
    recent, last, rooms = open_database(
        path, lambda connection: load_recent(connection, 20, "#lobby"), last_event_id, load_rooms
    )
    pool = make_pool(path, reactor)
    history = History(pool, clock, recent, last_id=last)
    accounts = Accounts(None, clock, hasher=CHEAP, run_in_thread=maybeDeferred)
    factory = make_factory(
        clock,
        history=history,
        accounts=accounts,
        stored_rooms=rooms.values(),
        room_store=RoomStore(pool),
        flood_rate=0,
    )
    return factory, history


async def stop_server(history: History) -> None:
    """
    Stop a server from L{start_server} once what its pool was asked to
    write (kept rooms too) is written.
    """
    await history.flush()
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_a_room_created_after_a_restart_starts_empty(tmp_path: Path) -> None:
    """
    After a restart, a room of the name of one that was there before
    starts empty, its lines staying on disk: mallory is replayed nothing
    on joining #secret, and her page and search of it reach nothing of
    alice's. The default room's history goes on
    across the restart.
    """
    path, clock = str(tmp_path / "chat.sqlite3"), Clock()
    factory, history = start_server(path, clock)
    alice, bob = users(factory, "alice", "bob")
    alice.line("the lobby code is 42")
    in_room("#secret", alice, bob)
    alice.line("the code is 1234")
    await stop_server(history)

    clock.advance(60)
    factory, history = start_server(path, clock)
    (mallory,) = users(factory, "mallory")
    mallory.session.join("#secret")
    assert mallory.replies_of(HistoryReplay) == []
    await mallory.session.history_page("#secret", MAX_EVENT_ID, 50)
    await mallory.session.search("code", "#secret")
    await mallory.session.search("code", "#lobby")
    [page] = mallory.replies_of(HistoryReplay)
    assert events(page.records) == [Joined("mallory", "#secret")]
    in_secret, in_lobby = search_results(mallory)
    assert in_secret.records == []
    assert events(in_lobby.records) == [ChatLine("alice", "the lobby code is 42", "#lobby")]
    await stop_server(history)


@pytest_twisted.ensureDeferred
async def test_a_kept_room_keeps_its_life_across_restarts(tmp_path: Path) -> None:
    """
    A room kept across restarts (an account operates it) keeps where its
    life starts: mallory, creating #secret as an identified user after
    alice's #secret vanished, made a kept room whose history, after a
    restart, is hers and not alice's, in the replay on joining, in a page
    and in a search.
    """
    path, clock = str(tmp_path / "chat.sqlite3"), Clock()
    factory, history = start_server(path, clock)
    (alice,) = users(factory, "alice")
    in_room("#secret", alice)
    alice.line("the code is 1234")
    alice.session.part("#secret")
    registered(factory, "mallory")
    mallory = identified(factory, "mallory")
    mallory.session.join("#secret")
    mallory.line("what code?")
    since = factory.room("#secret").since
    assert since > 0
    await stop_server(history)

    clock.advance(60)
    factory, history = start_server(path, clock)
    assert factory.room("#secret").since == since
    (eve,) = users(factory, "eve")
    eve.session.join("#secret")
    await eve.session.history_page("#secret", MAX_EVENT_ID, 50)
    await eve.session.search("code")
    on_joining, page = eve.replies_of(HistoryReplay)
    mine = ChatLine("mallory", "what code?", "#secret")
    assert events(on_joining.records) == [Joined("mallory", "#secret"), mine]
    assert events(page.records) == [Joined("mallory", "#secret"), mine, Joined("eve", "#secret")]
    [found] = search_results(eve)
    assert events(found.records) == [mine]
    await stop_server(history)


# Searching


@pytest_twisted.ensureDeferred
async def test_search_command(database: tuple[ChatFactory, History]) -> None:
    """
    /search TEXT replies, once the Deferred it returns fires, with
    SearchResults for the text as typed in the current room (its name):
    the lines and actions there holding every word, newest first.
    """
    factory, _ = database
    alice, bob = users(factory, "alice", "bob")
    bob.line("the release date is friday")
    bob.line("/me moves the RELEASE date")
    bob.line("no news")
    said = list(alice.delivered)
    d = alice.session.line("/search  release date ")
    assert isinstance(d, Deferred)
    await d
    [results] = search_results(alice)
    assert (results.query, results.room, results.viewer) == ("release date", "#lobby", None)
    assert events(results.records) == [said[1], said[0]]
    assert isinstance(said[1], Action)


@pytest_twisted.ensureDeferred
async def test_search_another_room(database: tuple[ChatFactory, History]) -> None:
    """
    /search #ROOM TEXT searches another room the user is in; a room they
    are not in is refused with an Error; /search #WORD alone searches the
    current room for the word; /search alone shows its usage.
    """
    factory, _ = database
    alice, bob = users(factory, "alice", "bob")
    in_room("#dev", alice, bob)
    bob.line("/msg #lobby see #dev")
    bob.line("/msg #dev the dev plan")
    await alice.session.line("/search #dev plan")
    assert alice.session.line("/search #ops plan") is None
    await alice.session.line("/search #dev")
    assert alice.session.line("/search") is None
    first, second = search_results(alice)
    assert (first.room, events(first.records)) == (
        "#dev",
        [ChatLine("bob", "the dev plan", "#dev")],
    )
    assert (second.query, second.room) == ("#dev", "#dev")
    assert events(second.records) == [ChatLine("bob", "the dev plan", "#dev")]
    assert alice.errors() == [
        "You are not in #ops; /join #ops joins it.",
        "Usage: /search [#ROOM] TEXT",
    ]


@pytest_twisted.ensureDeferred
async def test_search_shows_the_private_messages_of_an_identified_user(
    database: tuple[ChatFactory, History],
) -> None:
    """
    A search also finds the private messages of the account the user
    proved they own, sent or received; not those of others, and none to
    a user who proved nothing.
    """
    factory, _ = database
    registered(factory, "bob")
    bob = identified(factory, "bob")
    alice, carol = users(factory, "alice", "carol")
    alice.line("/msg bob secret one")
    bob.line("/msg alice secret two")
    alice.line("/msg carol secret three")
    await bob.session.search("secret")
    await alice.session.search("secret")
    [seen_by_bob] = search_results(bob)
    assert seen_by_bob.viewer == "bob"
    assert events(seen_by_bob.records) == [
        PrivateMessage("bob", "alice", "secret two"),
        PrivateMessage("alice", "bob", "secret one"),
    ]
    [seen_by_alice] = search_results(alice)
    assert (seen_by_alice.viewer, seen_by_alice.records) == (None, [])


@pytest_twisted.ensureDeferred
async def test_search_shows_at_most_search_results(
    database: tuple[ChatFactory, History],
) -> None:
    """
    A search shows at most SEARCH_RESULTS matches, the newest.
    """
    factory, _ = database
    alice, bob = users(factory, "alice", "bob")
    for i in range(SEARCH_RESULTS + 5):
        bob.line(f"match {i}")
    await alice.session.search("match")
    [results] = search_results(alice)
    assert [event.text for event in events(results.records)] == [  # type: ignore[attr-defined]
        f"match {i}" for i in reversed(range(5, SEARCH_RESULTS + 5))
    ]


def test_search_refused_without_a_database() -> None:
    """
    On a server that keeps its history in memory only, or none, /search
    is refused with an Error saying why; so is blank text (search() raises
    Refused).
    """
    (alice,) = users(chat(), "alice")
    alice.line("/search hello")
    (dave,) = users(make_factory(flood_rate=0), "dave")
    dave.line("/search hello")
    assert alice.errors() == [
        "Search needs a database; this server keeps its history in memory only."
    ]
    assert dave.errors() == ["This server keeps no history."]


@pytest_twisted.ensureDeferred
async def test_search_blank_text_refused(database: tuple[ChatFactory, History]) -> None:
    """
    search() raises Refused for text with no word, and replies nothing.
    """
    factory, _ = database
    (alice,) = users(factory, "alice")
    with pytest.raises(Refused, match="^Search for what"):
        alice.session.search("  ")
    assert alice.replies == []


class BrokenPool:
    """
    A database pool whose every query fails, as with a damaged disk.
    """

    def runInteraction(self, *args: Any) -> Deferred[Any]:
        return fail(sqlite3.OperationalError("disk I/O error"))

    def close(self) -> None:
        pass


def test_history_that_cannot_be_read() -> None:
    """
    When the database cannot be read, a search or a page is answered with
    an Error, the failure is logged, and the Deferred fires all the same.
    """
    clock = Clock()
    history = History(BrokenPool(), clock)  # type: ignore[arg-type]
    factory = make_factory(clock, history=history, flood_rate=0)
    (alice,) = users(factory, "alice")
    with capturedLogs() as logged:
        search = alice.session.search("hello")
        page = alice.session.history_page("#lobby", 10, 10)
    assert search.called and page.called
    assert alice.errors() == ["The history cannot be read now; try again later."] * 2
    failures = [event for event in logged if "log_failure" in event]
    assert any("disk I/O error" in str(event["log_failure"].value) for event in failures)


# Echo of one's own messages


def test_no_echo_by_default() -> None:
    """
    Without echo (telnet's way), a sender is not delivered its own chat
    line, action or private message, and gets PrivateMessageSent for the
    private message.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    assert alice.session.echo is False
    alice.line("hi")
    alice.line("/me waves")
    alice.line("/msg bob psst")
    assert alice.delivered == []
    assert alice.replies == [PrivateMessageSent("bob", "psst")]
    assert len(bob.delivered) == 3


def test_telnet_sessions_do_not_echo() -> None:
    """
    The telnet front end leaves echo off.
    """
    assert FakeClient(make_factory()).chat.session.echo is False


def test_echo_delivers_ones_own_chat_lines_and_actions() -> None:
    """
    With echo, a sender is delivered its own chat line and action once,
    the very event object the others get, with its id and time.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.session.echo = True
    factory.clock.advance(5)  # type: ignore[attr-defined]
    alice.line("hi")
    alice.line("/me waves")
    assert alice.delivered == [
        ChatLine("alice", "hi", "#lobby"),
        Action("alice", "waves", "#lobby"),
    ]
    for own, seen in zip(alice.delivered, bob.delivered, strict=True):
        assert own is seen
        assert own.id > 0 and own.at == 5.0
    assert alice.replies == []


def test_echo_delivers_ones_own_private_messages() -> None:
    """
    With echo, a private message is delivered to its sender as well as to
    its recipient, the same object, and no PrivateMessageSent is replied;
    a message to oneself is delivered once.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    alice.session.echo = True
    alice.line("/msg BOB psst")
    assert alice.delivered == [PrivateMessage("alice", "bob", "psst")]
    assert alice.delivered[0] is bob.delivered[0]
    assert alice.delivered[0].id > 0
    assert alice.replies == []
    alice.forget()
    alice.line("/msg alice note to self")
    assert alice.delivered == [PrivateMessage("alice", "alice", "note to self")]


def test_echo_is_the_senders_only() -> None:
    """
    Echo changes what its own session is delivered, not what others are:
    a recipient with echo still gets one copy of someone else's line, and
    the events of others (a leave) reach it as before.
    """
    factory = chat()
    alice, bob = users(factory, "alice", "bob")
    bob.session.echo = True
    alice.line("hi")
    alice.line("/part")
    assert bob.delivered == [ChatLine("alice", "hi", "#lobby"), Left("alice", "", "#lobby")]
