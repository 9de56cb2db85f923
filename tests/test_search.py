"""
Tests for searching the history (L{twistedchat.history.History.search},
L{twistedchat.history.search_words}): the SQLite FTS5 index of what was
said, the query a user's text becomes, which records a viewer may find,
and that hostile text never raises or acts as FTS5 syntax.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock

from twistedchat.database import make_pool, open_database, place_token, upgrade
from twistedchat.events import (
    Action,
    ChatLine,
    Event,
    Joined,
    Left,
    PrivateMessage,
    TopicChanged,
)
from twistedchat.history import History, NoSearch, Record, search_words

LOBBY = "#lobby"


def file_history(tmp_path: Path, clock: Clock, retention: float = 0) -> tuple[str, History]:
    """
    A new database in C{tmp_path} and a history on C{clock} writing to it
    through a real pool, the default room being C{LOBBY}.
    """
    path = str(tmp_path / "chat.sqlite3")
    open_database(path)
    history = History(make_pool(path, reactor), clock, retention=retention, default_room=LOBBY)
    return path, history


def events(records: list[Record]) -> list[Event]:
    """
    The events of C{records}, in order.
    """
    return [record.event for record in records]


# The query


@pytest.mark.parametrize(
    "text, query",
    [
        ("hello", '"hello"'),
        ("  release   date ", '"release" "date"'),
        ('say "hi"', '"say" """hi"""'),
        ("a OR b", '"a" "OR" "b"'),
        ("NEAR(a b)", '"NEAR(a" "b)"'),
        ("pre* ^start col:umn -x", '"pre*" "^start" "col:umn" "-x"'),
        ("a\0b", '"a" "b"'),
        ("\ud800x", '"?x"'),
    ],
)
def test_search_words_quotes_every_word(text: str, query: str) -> None:
    """
    Each word of the text becomes an FTS5 string, double quotes doubled,
    side by side (an implicit AND), so that no operator, prefix mark,
    column filter or quote a user types is FTS5 syntax; a NUL separates
    words, and a lone surrogate is replaced.
    """
    assert " ".join(search_words(text)) == query


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "\0"])
def test_search_words_refuses_no_words(text: str) -> None:
    """
    Text with no word is refused with a sentence.
    """
    with pytest.raises(ValueError, match="^Search for what"):
        search_words(text)


@pytest.fixture(scope="module")
def index() -> Iterator[sqlite3.Connection]:
    """
    A database in memory with the current schema, its index holding a
    few chat lines.
    """
    connection = sqlite3.connect(":memory:")
    upgrade(connection)
    connection.executemany(
        "INSERT INTO events (at, kind, nickname, text, room, event)"
        " VALUES (0, 'chat', 'al', ?, ?, ?)",
        [
            ("a", LOBBY, 1),
            ("b", LOBBY, 2),
            ('she said "hi" NEAR the door', LOBBY, 3),
            ("prefixes are not wildcards", LOBBY, 4),
        ],
    )
    yield connection
    connection.close()


def matching(connection: sqlite3.Connection, text: str) -> list[int]:
    """
    The event ids of the rows of C{connection} whose text matches the
    query the words of C{text} make (L{search_words}), in order.
    """
    query = "SELECT rowid FROM events_text WHERE events_text MATCH ? ORDER BY rowid"
    return [row for (row,) in connection.execute(query, (" ".join(search_words(text)),))]


@pytest.mark.parametrize(
    "text, found",
    [
        ("a OR b", []),
        ("a", [1]),
        ("NOT a", []),
        ('"hi"', [3]),
        ('said "hi', [3]),
        ("NEAR door", [3]),
        ("near", [3]),
        ("prefix*", []),
        ("prefixes*", [4]),
        ("*", []),
        ('"', []),
        ("text:a", []),
        ("WILDCARDS prefixes", [4]),
    ],
)
def test_hostile_words_are_taken_literally(
    index: sqlite3.Connection, text: str, found: list[int]
) -> None:
    """
    Operators (OR, NOT, NEAR), quotes, prefix marks and column filters a
    user types are words like any other: "a OR b" finds only a text with
    a, or and b, "prefix*" no prefix of anything; case does not matter.
    """
    assert matching(index, text) == found


#: Words that mean something to FTS5, or to SQL, or that break quoting.
HOSTILE = st.sampled_from(
    [
        '"',
        '""',
        "'",
        "*",
        "^",
        ":",
        "(",
        ")",
        "{",
        "}",
        "-",
        "+",
        "AND",
        "OR",
        "NOT",
        "NEAR",
        "NEAR(",
        "text:",
        "rowid",
        "\0",
        ";",
        "--",
        "\\",
    ]
)


@st.composite
def search_text(draw: st.DrawFn) -> str:
    """
    Text shaped like a hostile search: words, FTS5 syntax and random
    Unicode, run together or apart.
    """
    pieces = draw(
        st.lists(st.one_of(HOSTILE, st.text(max_size=8), st.from_regex(r"[a-z]{1,6}")), max_size=8)
    )
    separators = draw(
        st.lists(
            st.sampled_from(["", " ", "\t", "\u3000"]), min_size=len(pieces), max_size=len(pieces)
        )
    )
    return "".join(piece + separator for piece, separator in zip(pieces, separators, strict=True))


@settings(max_examples=500, deadline=None)
@given(st.one_of(search_text(), st.text()))
@example('"a" OR "b')
@example("NEAR(")
@example("\0")
def test_no_text_raises(index: sqlite3.Connection, text: str) -> None:
    """
    Whatever a user types, the query made of it either is refused as
    holding no word (a ValueError, only for blank text) or runs in FTS5
    without an error.
    """
    if not text.replace("\0", " ").split():
        with pytest.raises(ValueError):
            search_words(text)
        return
    matching(index, text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), min_size=1, max_size=4),
    st.lists(HOSTILE, max_size=4),
)
def test_a_text_finds_itself(words: list[str], hostile: list[str]) -> None:
    """
    A text of plain words and FTS5 syntax, stored, is found by searching
    for the text itself: the syntax is taken literally (or, holding no
    letter, ignored), never as operators that would change what matches.
    """
    connection = sqlite3.connect(":memory:")
    upgrade(connection)
    text = " ".join(words + hostile)
    connection.execute(
        "INSERT INTO events (at, kind, nickname, text, room, event)"
        " VALUES (0, 'chat', 'al', ?, ?, 1)",
        (text, LOBBY),
    )
    assert matching(connection, text) == [1]
    connection.close()


# What a search finds


@pytest_twisted.ensureDeferred
async def test_search_finds_the_rooms_lines_newest_first(tmp_path: Path) -> None:
    """
    search() finds, newest first, the chat lines and actions of the room
    holding every word, whatever their case, not yet written included;
    not notices (a topic, a leave reason), nor other rooms' lines; each
    record carries its event's id and time; at most count of them.
    """
    clock = Clock()
    clock.advance(1_000)
    _, history = file_history(tmp_path, clock)
    said = [
        ChatLine("al", "The release date is Friday", LOBBY),
        Action("bo", "asks about the RELEASE date", LOBBY),
        ChatLine("cy", "release it", LOBBY),
        TopicChanged(LOBBY, "al", "release date"),
        Left("al", "release date", LOBBY),
        ChatLine("al", "release date in dev", "#dev"),
        ChatLine("bo", "date of release: soon", LOBBY),
    ]
    for event in said:
        history.record(event, "#dev" if event.room == "#dev" else LOBBY)
        clock.advance(1)
    found = await history.search("release date", LOBBY)
    assert events(found) == [said[6], said[1], said[0]]
    assert [(record.event.id, record.at, record.room) for record in found] == [
        (said[6].id, 1_006.0, LOBBY),
        (said[1].id, 1_001.0, LOBBY),
        (said[0].id, 1_000.0, LOBBY),
    ]
    assert events(await history.search("release date", LOBBY, count=2)) == [said[6], said[1]]
    assert events(await history.search("release date", "#dev")) == [said[5]]
    assert await history.search("friday", "#nowhere") == []
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_search_shows_only_the_viewers_private_messages(tmp_path: Path) -> None:
    """
    A search finds the private messages its viewer (a nickname key) sent
    or received since their account was registered, whatever the case of
    the nicknames, and no one else's; none without a viewer.
    """
    clock = Clock()
    _, history = file_history(tmp_path, clock)
    before = PrivateMessage("Bob", "al", "secret plan, from the nickname's last owner")
    history.record(before, None)
    clock.advance(10)
    sent = PrivateMessage("Bob", "cy", "secret plan A")
    received = PrivateMessage("cy", "BOB", "secret plan B")
    others = PrivateMessage("cy", "al", "secret plan C")
    line = ChatLine("al", "no secret plan here", LOBBY)
    for event in (sent, received, others):
        history.record(event, None)
    history.record(line, LOBBY)
    assert events(await history.search("secret plan", LOBBY, "bob", since=10)) == [
        line,
        received,
        sent,
    ]
    assert events(await history.search("secret plan", LOBBY, "bob")) == [
        line,
        received,
        sent,
        before,
    ]
    assert events(await history.search("secret plan", LOBBY)) == [line]
    assert events(await history.search("plan", None, "al")) == [others, before]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_search_respects_the_retention_and_pruning(tmp_path: Path) -> None:
    """
    Nothing older than the retention is found, even before it is pruned;
    pruning deletes it from the full-text index too, which stays sound.
    """
    clock = Clock()
    path, history = file_history(tmp_path, clock, retention=1)
    history.record(ChatLine("al", "old news", LOBBY), LOBBY)
    history.record(PrivateMessage("al", "bo", "old secret news"), None)
    clock.advance(2 * 86400)
    new = ChatLine("al", "new news", LOBBY)
    history.record(new, LOBBY)
    assert events(await history.search("news", LOBBY, "bo")) == [new]
    await history.prune()
    await history.stop()
    connection = sqlite3.connect(path)
    connection.execute("INSERT INTO events_text (events_text) VALUES ('integrity-check')")
    indexed = connection.execute(
        "SELECT rowid FROM events_text WHERE events_text MATCH 'news'"
    ).fetchall()
    assert indexed == connection.execute("SELECT id FROM events").fetchall() == [(3,)]
    connection.close()


@pytest_twisted.ensureDeferred
async def test_search_finds_rows_from_before_rooms_in_the_default_room(tmp_path: Path) -> None:
    """
    Rows stored before rooms (no room, not private) are found in the
    default room only, as its own.
    """
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,"
        " nickname TEXT NOT NULL, target TEXT, text TEXT)"
    )
    connection.execute("CREATE INDEX events_at ON events (at)")
    connection.execute(
        "INSERT INTO events (at, kind, nickname, text) VALUES (5, 'chat', 'al', 'hi')"
    )
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    open_database(str(path))
    history = History(make_pool(str(path), reactor), Clock(), default_room=LOBBY)
    found = await history.search("hi", LOBBY)
    assert [(record.event, record.room, record.event.id) for record in found] == [
        (ChatLine("al", "hi", LOBBY), LOBBY, 1)
    ]
    assert await history.search("hi", "#dev") == []
    await history.stop()


def test_search_refused_without_a_database() -> None:
    """
    A history kept in memory only cannot be searched: NoSearch, with a
    sentence a user understands.
    """
    history = History(None, Clock())
    history.record(Joined("al", LOBBY), LOBBY)
    with pytest.raises(NoSearch, match="^Search needs a database"):
        history.search("al", LOBBY)


@pytest_twisted.ensureDeferred
async def test_search_refuses_blank_text(tmp_path: Path) -> None:
    """
    A search for blank text is refused with ValueError, before anything
    is read.
    """
    _, history = file_history(tmp_path, Clock())
    with pytest.raises(ValueError, match="^Search for what"):
        history.search("   ", LOBBY)
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_search_after_an_id(tmp_path: Path) -> None:
    """
    search() with after finds only the room's chat lines and actions with
    an id larger than after (the room's current life); the private
    messages the viewer may see are found whatever their id.
    """
    clock = Clock()
    _, history = file_history(tmp_path, clock)
    old_line = ChatLine("al", "the code is 1234", "#secret")
    old_private = PrivateMessage("al", "bo", "the code, privately")
    history.record(old_line, "#secret")
    history.record(old_private, None)
    since = history.last_id
    new_line = Action("mallory", "asks for the code", "#secret")
    history.record(new_line, "#secret")
    assert events(await history.search("code", "#secret", "bo", after=since)) == [
        new_line,
        old_private,
    ]
    assert events(await history.search("code", "#secret", after=since)) == [new_line]
    assert events(await history.search("code", "#secret")) == [new_line, old_line]
    await history.stop()


@pytest_twisted.ensureDeferred
async def test_search_reads_only_the_rooms_rows_in_the_index(tmp_path: Path) -> None:
    """
    The index holds where each row was said (place_token: the room key's
    UTF-8 in hexadecimal, so that rooms whose names share words, or hold
    any character, are told apart), and a search asks it for the room's
    rows only: a word said in other rooms only finds nothing, and a word
    that is a place token finds no row by its place.
    """
    clock = Clock()
    path, history = file_history(tmp_path, clock)
    rooms = ["#secret", "#secret-room", "#sécret", "#ROOM"]
    for room in rooms:
        history.record(ChatLine("al", f"hello {room}", room), room)
    history.record(PrivateMessage("al", "bo", "hello privately"), None)
    for room in rooms:
        found = await history.search("hello", room, "bo")
        assert events(found) == [
            PrivateMessage("al", "bo", "hello privately"),
            ChatLine("al", f"hello {room}", room),
        ]
    for token in ("private", "none", place_token("#secret")):
        assert await history.search(token, "#secret", "bo") == []
    await history.stop()
    connection = sqlite3.connect(path)
    query = "SELECT rowid FROM events_text WHERE events_text MATCH ?"
    places = [
        connection.execute(query, (f'place : "{token}"',)).fetchall()
        for token in (place_token("#secret"), place_token("#secret-room"), "private")
    ]
    assert places == [[(1,)], [(2,)], [(5,)]]
    connection.execute("INSERT INTO events_text (events_text) VALUES ('integrity-check')")
    connection.close()
