"""
End-to-end tests of the browser client: Debian's Chromium
(C{/usr/bin/chromium}), driven by Playwright for Python, opens the page
that the real C{twistd -n chat --web} serves on 127.0.0.1 and chats with
telnet users (L{realserver.LineClient}) and other browser users.

Nothing here is skipped: without Chromium or Playwright every test fails
(the import of Playwright fails the module; a missing browser fails the
fixture). Playwright never downloads a browser: it is always given
C{executable_path}, and nothing runs C{playwright install}. Every address
is on 127.0.0.1.

Playwright's sync API and pytest-twisted: pytest-twisted runs the Twisted
reactor in a greenlet and calls each test function inside that greenlet.
Playwright's sync API waits by switching to its own dispatcher greenlet
from whichever greenlet makes the call, and back to it when the answer
is in (C{wait_for_future} in C{playwright/_impl/_greenlets.py}), so it
works from the reactor's greenlet too. The rules that keep it so: the
Playwright driver and the browsers are started and stopped in fixtures
(pytest's main greenlet, the parent of Playwright's dispatcher), and a
test never needs the reactor to turn while a Playwright call waits (the
server is a subprocess and the telnet clients are blocking sockets).
The whole suite runs with this module in it.

One server and one browser serve the module, with a fresh browser
context (cookies, storage, permissions) for each person; the tests that
restart a server or need an empty history have a server of their own.

Hiding a tab for real: Playwright turns on focus emulation for every page
it creates, which keeps every page "visible" whatever happens to its
window. The notification test therefore starts a second Chromium itself
(C{--remote-debugging-port=0}) and attaches with C{connect_over_cdp(...,
no_defaults=True)}, which leaves the pages of the browser's default
context as they are; minimising the window (the DevTools protocol's
C{Browser.setWindowBounds}) then makes C{document.visibilityState}
"hidden". Headless Chromium shows notifications to nobody, so an init
script wraps C{window.Notification} to record each one's title and body
before calling the real constructor.
"""

from __future__ import annotations

import datetime
import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Locator,
    Page,
    Playwright,
    WebSocketRoute,
    expect,
    sync_playwright,
)
from realserver import TIMEOUT, ChatServer, LineClient, register

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LOOPBACK = "tcp:0:interface=127.0.0.1"
EXPECT_TIMEOUT = 10_000  # milliseconds, for Playwright's expect and actions
DOCS = Path(__file__).resolve().parent.parent / "docs"


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """
    The Playwright driver, for the module.
    """
    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """
    Debian's Chromium, headless, for the module; its absence is a failure.
    """
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """
    One real server for the module, with a telnet and a web listener, a
    database file (search needs one), no flood control (the history test
    says many lines at once) and 20 lines of history on joining.
    """
    directory = tmp_path_factory.mktemp("browser")
    running = ChatServer(
        directory,
        "--database",
        str(directory / "chat.sqlite3"),
        "--web",
        LOOPBACK,
        "--flood-rate",
        "0",
        "--history-on-join",
        "20",
    )
    yield running
    running.terminate()


@dataclass
class Participant:
    """
    Someone signed in to C{server} as C{nickname}, who leaves with C{close}.
    """

    server: ChatServer
    nickname: str
    close: Callable[[], None]
    telnet: bool


class People:
    """
    The people of one test: browser users, each in a fresh context of
    L{browser}, and telnet users; all of them leave when the test ends.
    Uncaught errors in a page fail the test at the end.
    """

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.participants: list[Participant] = []
        self.page_errors: list[str] = []

    def context(self, **options: Any) -> BrowserContext:
        """
        A fresh browser context, with Playwright's C{new_context} options.
        """
        context = self.browser.new_context(**options)
        context.set_default_timeout(EXPECT_TIMEOUT)
        self.contexts.append(context)
        return context

    def sign_in(self, context: BrowserContext, server: ChatServer, nickname: str) -> Page:
        """
        Open C{server}'s web client in C{context} and sign in as
        C{nickname}; return the page once it shows the default room.
        """
        page = context.new_page()
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.goto(web_url(server))
        sign_in(page, nickname)
        self.participants.append(Participant(server, nickname, page.close, telnet=False))
        return page

    def browser_user(self, server: ChatServer, nickname: str, **options: Any) -> Page:
        """
        A person who signs in as C{nickname} in a fresh context made with
        C{options}.
        """
        return self.sign_in(self.context(**options), server, nickname)

    def telnet_user(self, server: ChatServer, nickname: str) -> LineClient:
        """
        A person on the telnet port, registered as C{nickname}.
        """
        client = register(server, nickname)
        self.participants.append(Participant(server, nickname, client.close, telnet=True))
        return client

    def restarted(self, old: ChatServer, new: ChatServer) -> None:
        """
        C{old} stopped and C{new} took its ports: its telnet users'
        connections are gone, and its pages now reconnect to C{new}.
        """
        for person in list(self.participants):
            if person.server is old and person.telnet:
                person.close()
                self.participants.remove(person)
            elif person.server is old:
                person.server = new

    def leave(self) -> None:
        """
        Everyone leaves, one at a time: each is gone from the server (it
        logged their quit) before the next one leaves, so that no event
        is on its way to a page whose WebSocket is closing. (For now the
        server writes such an event to the closed WebSocket and logs a
        C{LocalProtocolError} traceback, from C{_TextMessages.write} in
        C{twistedchat/websocket.py}; overlapping departures would make
        C{terminate} fail by chance.)
        """
        while self.participants:
            person = self.participants.pop()
            quits = re.compile(rf"\] {re.escape(person.nickname)} quit \(")
            before = len([line for line in person.server.log_lines if quits.search(line)])
            person.close()
            deadline = time.monotonic() + TIMEOUT
            while person.server.process.poll() is None and time.monotonic() < deadline:
                if len([line for line in person.server.log_lines if quits.search(line)]) > before:
                    break
                time.sleep(0.02)  # reading another process's log
        while self.contexts:
            self.contexts.pop().close()


@pytest.fixture
def people(browser: Browser) -> Iterator[People]:
    """
    The people of one test, gone after it.
    """
    crowd = People(browser)
    yield crowd
    crowd.leave()
    assert crowd.page_errors == []


# ---------------------------------------------------------------------------
# Helpers


def web_url(server: ChatServer) -> str:
    """
    The address of C{server}'s web client.
    """
    return f"http://127.0.0.1:{server.web_ports[0]}/"


def sign_in(page: Page, nickname: str) -> None:
    """
    Sign in on the page's form as C{nickname} and wait for the chat.
    """
    page.get_by_test_id("nickname-input").fill(nickname)
    page.get_by_test_id("sign-in-button").click()
    expect(page.get_by_test_id("window-name")).to_have_text("#lobby")
    expect(page.get_by_test_id("connection-status")).to_have_attribute("data-state", "connected")


def say(page: Page, text: str) -> None:
    """
    Type C{text} in the message box and send it with the Send button.
    """
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send-button").click()
    expect(page.get_by_test_id("message-input")).to_have_value("")


def line(page: Page, text: str) -> Locator:
    """
    The log lines of the window shown that contain C{text}.
    """
    return page.get_by_test_id("log-line").filter(has_text=text)


def room_entry(page: Page, room: str) -> Locator:
    """
    The entry of C{room} in the room list.
    """
    return page.locator(f'[data-testid="room"][data-room="{room}"]')


def member(page: Page, nickname: str) -> Locator:
    """
    C{nickname}'s entry in the member list shown.
    """
    return page.get_by_test_id("member-list").locator(
        f'[data-testid="member"][data-nickname="{nickname}"]'
    )


def shown_events(page: Page) -> list[tuple[int, str]]:
    """
    The chat events of the window shown, top to bottom: (id, text).
    """
    rows = (
        page.get_by_test_id("log")
        .locator("[data-testid=log-line][data-id]")
        .evaluate_all("lines => lines.map(l => [Number(l.dataset.id), l.textContent])")
    )
    return [(int(id_), text) for id_, text in rows]


def join_room(page: Page, room: str) -> None:
    """
    Join C{room} with the join box, and wait until it is shown.
    """
    page.get_by_test_id("join-input").fill(room)
    page.get_by_test_id("join-button").click()
    expect(page.get_by_test_id("window-name")).to_have_text(room)
    expect(room_entry(page, room)).to_be_visible()


def telnet_join(client: LineClient, room: str) -> None:
    """
    Have a telnet user join C{room} and wait for the answer.
    """
    client.send(f"/join {room}")
    client.expect(f"You joined {room}")


def assert_each_once_in_order(page: Page, texts: list[str]) -> None:
    """
    The window shown has each chat event once (no id twice), in the order
    of their ids, and each of C{texts} ends exactly one of them, in the
    order given.
    """
    events = shown_events(page)
    ids = [id_ for id_, _ in events]
    assert len(ids) == len(set(ids)), events
    assert ids == sorted(ids), events
    positions = []
    for text in texts:
        found = [at for at, (_, shown) in enumerate(events) if shown.endswith(text)]
        assert len(found) == 1, (text, events)
        positions += found
    assert positions == sorted(positions), events


def assert_recent_time(shown: Locator) -> None:
    """
    The log line C{shown} starts with a time: HH:MM, and a machine-readable
    date and time within a minute of now.
    """
    time = shown.locator("time")
    expect(time).to_have_text(re.compile(r"^\d\d:\d\d$"))
    stamp = time.get_attribute("datetime")
    assert stamp is not None
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 60, (stamp, now)


# ---------------------------------------------------------------------------
# Chatting


def test_browser_and_telnet_users_chat(server: ChatServer, people: People) -> None:
    """
    Two browser users and one telnet user in one room: each browser user
    sees the others' lines, once, with the sender's nickname and the time;
    the telnet user sees the browser users' lines as C{<nick> text}.
    """
    ann = people.browser_user(server, "ann")
    ben = people.browser_user(server, "ben")
    tom = people.telnet_user(server, "tom")
    expect(member(ann, "tom")).to_be_visible()
    expect(member(ben, "ann")).to_be_visible()

    say(ann, "hello from ann")
    assert tom.expect("<ann>") == "<ann> hello from ann"
    say(ben, "and hello from ben")
    assert tom.expect("<ben>") == "<ben> and hello from ben"
    tom.send("hi both, from telnet")

    for page, other, text in [
        (ben, "ann", "hello from ann"),
        (ann, "ben", "and hello from ben"),
        (ann, "tom", "hi both, from telnet"),
        (ben, "tom", "hi both, from telnet"),
    ]:
        shown = line(page, text)
        expect(shown).to_have_count(1)
        expect(shown.locator(".nick")).to_have_text(other)
        assert_recent_time(shown)
    # Each sees their own line too, marked as their own.
    expect(line(ann, "hello from ann")).to_have_class(re.compile(r"\bown\b"))


def test_away_whois_and_invitation(server: ChatServer, people: People) -> None:
    """
    In the browser, /away answers that one is marked away, /whois shows a
    telnet user's rooms and away text, and an invitation from a telnet
    user shows with a button that joins the room.
    """
    ann = people.browser_user(server, "ann")
    tom = people.telnet_user(server, "tom")
    expect(member(ann, "tom")).to_be_visible()
    say(ann, "/away lunch")
    expect(line(ann, "You are marked as away: lunch")).to_have_count(1)
    tom.send("/away on a call")
    tom.expect("*** You are marked as away")
    say(ann, "/whois tom")
    expect(line(ann, "tom is in #lobby.")).to_have_count(1)
    expect(line(ann, "tom is away: on a call")).to_have_count(1)
    tom.send("/join #side")
    tom.expect("*** ")
    tom.send("/invite ann #side")
    tom.expect("*** You invited ann to #side.")
    invitation = line(ann, "tom invites you to #side")
    expect(invitation).to_have_count(1)
    invitation.get_by_role("button", name="join #side").click()
    expect(room_entry(ann, "#side")).to_be_visible()


def test_nick_change_and_long_line(server: ChatServer, people: People) -> None:
    """
    After C{/nick}, the page knows its new nickname: the member list marks
    it as you, others see it, and the sign-in form offers it next time; a
    line longer than the server takes stays in the message box with an
    error, and nothing is sent.
    """
    nia = people.browser_user(server, "nia")
    ola = people.browser_user(server, "ola")
    say(nia, "/nick nina")
    expect(member(nia, "nina")).to_contain_text("(you)")
    expect(member(ola, "nina")).to_be_visible()
    expect(member(ola, "nia")).to_have_count(0)
    assert nia.evaluate("localStorage.getItem('twistedchat.nickname')") == "nina"
    long_line = "x" * 3000
    nia.get_by_test_id("message-input").fill(long_line)
    nia.get_by_test_id("send-button").click()
    expect(line(nia, "the server takes at most 2048")).to_have_count(1)
    expect(nia.get_by_test_id("message-input")).to_have_value(long_line)
    expect(line(ola, "xxxxxxxx")).to_have_count(0)


def test_keyboard_tab_and_enter(server: ChatServer, people: People) -> None:
    """
    From the top of the page, Tab goes from control to control to the
    message box, where typing and Enter send the line; the skip link
    before them takes the focus there at once.
    """
    kim = people.browser_user(server, "kim")
    ola = people.telnet_user(server, "ola")
    message = kim.get_by_test_id("message-input")

    kim.locator(".brand").click()  # Tab goes on from the top bar
    expect(message).not_to_be_focused()
    visited = []
    for _ in range(30):
        kim.keyboard.press("Tab")
        visited.append(kim.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if visited[-1] == "message-input":
            break
    expect(message).to_be_focused()
    assert "search-input" in visited and "join-input" in visited, visited
    kim.keyboard.type("typed with the keyboard")
    kim.keyboard.press("Enter")
    assert ola.expect("<kim>") == "<kim> typed with the keyboard"
    expect(message).to_have_value("")
    expect(line(kim, "typed with the keyboard")).to_have_count(1)

    kim.locator(".brand").click()
    kim.keyboard.press("Shift+Tab")
    expect(kim.get_by_role("link", name="Skip to the message box")).to_be_focused()
    kim.keyboard.press("Enter")
    expect(message).to_be_focused()


# ---------------------------------------------------------------------------
# Rooms


def test_join_and_leave_rooms(server: ChatServer, people: People) -> None:
    """
    Joining a room with the join box or C{/join}, and leaving it with the
    Leave button or C{/part}: the room list and the member list follow.
    A line said in one room shows in that room only, and a room not shown
    counts its unread lines until it is shown.
    """
    amy = people.browser_user(server, "amy")
    bob = people.telnet_user(server, "bob")

    join_room(amy, "#side")
    expect(amy.get_by_test_id("room")).to_have_count(2)
    expect(member(amy, "amy")).to_be_visible()
    expect(amy.get_by_test_id("member-count")).to_have_text("1 member")
    telnet_join(bob, "#side")
    expect(member(amy, "bob")).to_be_visible()
    expect(amy.get_by_test_id("member-count")).to_have_text("2 members")

    bob.send("only in the side room")
    expect(line(amy, "only in the side room")).to_have_count(1)
    room_entry(amy, "#lobby").click()
    expect(amy.get_by_test_id("window-name")).to_have_text("#lobby")
    expect(line(amy, "only in the side room")).to_have_count(0)

    badge = room_entry(amy, "#side").get_by_test_id("unread-badge")
    expect(badge).to_be_hidden()
    bob.send("said while amy looks at the lobby")
    bob.send("and another")
    expect(badge).to_have_text("2")
    expect(badge).to_be_visible()
    expect(line(amy, "and another")).to_have_count(0)
    room_entry(amy, "#side").click()
    expect(amy.get_by_test_id("window-name")).to_have_text("#side")
    expect(line(amy, "and another")).to_have_count(1)
    expect(badge).to_be_hidden()

    bob.send("/part")
    expect(member(amy, "bob")).to_have_count(0)
    expect(amy.get_by_test_id("member-count")).to_have_text("1 member")
    amy.get_by_test_id("leave-button").click()
    expect(room_entry(amy, "#side")).to_have_count(0)
    expect(amy.get_by_test_id("room")).to_have_count(1)
    expect(amy.get_by_test_id("window-name")).to_have_text("#lobby")
    expect(member(amy, "bob")).to_be_visible()  # the lobby's members again

    say(amy, "/join #typed")
    expect(amy.get_by_test_id("window-name")).to_have_text("#typed")
    expect(room_entry(amy, "#typed")).to_be_visible()
    expect(member(amy, "amy")).to_be_visible()
    expect(member(amy, "bob")).to_have_count(0)
    telnet_join(bob, "#typed")
    expect(member(amy, "bob")).to_be_visible()
    say(amy, "/part")
    expect(room_entry(amy, "#typed")).to_have_count(0)
    expect(amy.get_by_test_id("window-name")).to_have_text("#lobby")
    bob.expect("amy has left")


# ---------------------------------------------------------------------------
# Notifications


NOTIFICATION_RECORDER = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  window.Notification = class extends Real {
    constructor(title, options = {}) {
      window.__notifications.push(
        {title, body: options.body, visibility: document.visibilityState});
      super(title, options);
    }
  };
})();
"""


class DevToolsChromium:
    """
    Debian's Chromium started by the test itself, headless, with the
    DevTools protocol on a free port of 127.0.0.1; C{endpoint} is its
    WebSocket address, for Playwright's C{connect_over_cdp}.
    """

    def __init__(self, profile: Path) -> None:
        assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                *CHROMIUM_ARGS,
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.log: list[str] = []
        endpoints: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_log, args=(endpoints,), daemon=True).start()
        try:
            self.endpoint = endpoints.get(timeout=TIMEOUT)
        except queue.Empty:
            self.stop()
            raise AssertionError("Chromium did not start:\n" + "\n".join(self.log)) from None

    def _read_log(self, endpoints: queue.Queue[str]) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(text)
            match = re.search(r"DevTools listening on (ws://127\.0\.0\.1:\d+/\S+)", text)
            if match:
                endpoints.put(match.group(1))

    def stop(self) -> None:
        """
        End the browser.
        """
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(TIMEOUT)


@pytest.fixture
def unemulated_context(
    playwright: Playwright, server: ChatServer, tmp_path: Path
) -> Iterator[BrowserContext]:
    """
    The default context of a Chromium whose pages Playwright leaves as
    they are (no focus emulation), so that minimising a page's window
    hides it; with the notifications permission granted for C{server}'s
    page and L{NOTIFICATION_RECORDER} installed. A test that uses it with
    L{people} names it before L{people}, whose people leave first.
    """
    chromium = DevToolsChromium(tmp_path / "profile")
    try:
        attached = playwright.chromium.connect_over_cdp(chromium.endpoint, no_defaults=True)
        context = attached.contexts[0]
        context.set_default_timeout(EXPECT_TIMEOUT)
        context.grant_permissions(["notifications"], origin=web_url(server).rstrip("/"))
        context.add_init_script(NOTIFICATION_RECORDER)
        yield context
        attached.close()
    finally:
        chromium.stop()


def set_window_state(page: Page, state: str) -> None:
    """
    Minimise the window of C{page} (C{state} "minimized") or bring it back
    ("normal"), through the DevTools protocol.
    """
    session = page.context.new_cdp_session(page)
    window = session.send("Browser.getWindowForTarget")
    session.send(
        "Browser.setWindowBounds",
        {"windowId": window["windowId"], "bounds": {"windowState": state}},
    )
    session.detach()


def test_mention_notifies_in_hidden_tab(
    server: ChatServer, unemulated_context: BrowserContext, people: People
) -> None:
    """
    A line that mentions the user while their tab is hidden shows a
    desktop notification with the sender, the room and the line, and the
    page title counts it. No notification comes for a mention while the
    tab is visible, nor for a line that does not mention the user; the
    count goes away when the tab is shown again.
    """
    page = people.sign_in(unemulated_context, server, "carol")
    expect(page.get_by_test_id("notify-button")).to_be_hidden()  # permission already granted
    assert page.evaluate("Notification.permission") == "granted"
    dan = people.telnet_user(server, "dan")
    telnet_join(dan, "#notify")
    page.get_by_test_id("join-input").fill("#notify")
    page.get_by_test_id("join-button").click()
    expect(page.get_by_test_id("window-name")).to_have_text("#notify")
    expect(member(page, "dan")).to_be_visible()

    dan.send("carol, this is while you look")
    expect(line(page, "carol, this is while you look")).to_have_count(1)
    assert page.evaluate("document.visibilityState") == "visible"
    assert page.evaluate("window.__notifications") == []
    assert page.title() == "twistedchat"

    set_window_state(page, "minimized")
    page.wait_for_function("() => document.visibilityState === 'hidden'", polling=100)
    dan.send("nobody is named here")
    dan.send("carol: are you there?")
    page.wait_for_function("() => window.__notifications.length > 0", polling=100)
    assert page.evaluate("window.__notifications") == [
        {"title": "dan in #notify", "body": "carol: are you there?", "visibility": "hidden"}
    ]
    expect(page).to_have_title("(1) twistedchat")
    expect(line(page, "nobody is named here")).to_have_count(1)

    set_window_state(page, "normal")
    page.wait_for_function("() => document.visibilityState === 'visible'", polling=100)
    expect(page).to_have_title("twistedchat")
    assert len(page.evaluate("window.__notifications")) == 1


# ---------------------------------------------------------------------------
# What people write is shown as text


def test_html_in_lines_and_topic_is_text(server: ChatServer, people: People) -> None:
    """
    HTML that a telnet user sends as chat lines or as a topic is shown
    exactly as typed: no element is made from it, no script runs, no
    dialog opens, even when the topic is hovered.
    """
    eve = people.browser_user(server, "eve")
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    eve.on("dialog", record)
    mal = people.telnet_user(server, "mal")
    telnet_join(mal, "#xss")
    join_room(eve, "#xss")
    expect(member(eve, "mal")).to_be_visible()

    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        "<img src=x onerror=window.__xss=1>",
        '<svg onload="window.__xss=2">',
    ]
    for payload in payloads:
        mal.send(payload)
    topic = "<b onmouseover=alert(3)>t</b>"
    mal.send(f"/topic {topic}")
    mal.send("done")

    expect(line(eve, "done")).to_have_count(1)
    for payload in payloads:
        shown = line(eve, payload)
        expect(shown).to_have_count(1)
        expect(shown.locator(".text")).to_have_text(payload)
    expect(eve.get_by_test_id("topic")).to_have_text(topic)
    expect(line(eve, "set the topic").locator("q")).to_have_text(topic)
    eve.get_by_test_id("topic").hover()
    eve.get_by_test_id("log").hover()

    for where in ("log", "topic"):
        made = eve.get_by_test_id(where).locator("img, script, svg, b")
        expect(made).to_have_count(0)
    assert eve.evaluate("document.querySelectorAll('img, svg, b').length") == 0
    assert eve.evaluate("document.scripts.length") == 1  # app.js
    assert eve.evaluate("window.__xss") is None
    assert dialogs == []


# ---------------------------------------------------------------------------
# Reconnecting


class WebSocketGate:
    """
    Routes a context's WebSockets through Playwright to the server, to cut
    them as a network failure would: L{cut} closes every open one (both
    sides), and while the gate is shut a new one is closed as soon as it
    opens.
    """

    def __init__(self) -> None:
        self.shut = False
        self.routes: list[WebSocketRoute] = []

    def __call__(self, route: WebSocketRoute) -> None:
        if self.shut:
            route.close()
            return
        route.connect_to_server()
        self.routes.append(route)

    def cut(self) -> None:
        """
        Shut the gate and close every WebSocket that went through it.
        """
        self.shut = True
        for route in self.routes:
            route.close()
        self.routes.clear()


def test_missed_lines_shown_once_after_reconnect(server: ChatServer, people: People) -> None:
    """
    When the page's connection drops, it says so; what was said while it
    was away is shown after it reconnects and signs in again by itself,
    each line once and in order, and no line it had already shown comes
    twice.
    """
    gate = WebSocketGate()
    context = people.context()
    context.route_web_socket(re.compile(r"/ws$"), gate)
    fay = people.sign_in(context, server, "fay")
    gus = people.telnet_user(server, "gus")
    telnet_join(gus, "#gap")
    join_room(fay, "#gap")
    gus.send("before the cut")
    expect(line(fay, "before the cut")).to_have_count(1)

    gate.cut()
    status = fay.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_contain_text("Disconnected")
    gus.expect("fay has left")
    missed = [f"missed line {n}" for n in range(1, 6)]
    for text in missed:
        gus.send(text)
    gus.send("/history 5")  # answered once all five are in the history
    gus.expect("missed line 5")
    gus.expect("End of history.")
    gate.shut = False

    expect(status).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(fay.get_by_test_id("window-name")).to_have_text("#gap")
    expect(line(fay, "missed line 5")).to_have_count(1)
    gus.send("after the reconnect")
    expect(line(fay, "after the reconnect")).to_have_count(1)

    assert_each_once_in_order(fay, ["before the cut", *missed, "after the reconnect"])


def test_reconnect_after_server_restart(people: People, tmp_path: Path) -> None:
    """
    When the server stops, the page shows it is disconnected; when the
    server is back on the same ports, the page reconnects and signs in
    again by itself, joins its rooms again, and shows each line once:
    those from before the restart (kept in the database) and new ones.
    """
    database = str(tmp_path / "chat.sqlite3")
    first = ChatServer(tmp_path, "--database", database, "--web", LOOPBACK)
    try:
        telnet, web = first.port, first.web_ports[0]
        hal = people.browser_user(first, "hal")
        ivy = people.telnet_user(first, "ivy")
        telnet_join(ivy, "#kept")
        join_room(hal, "#kept")
        ivy.send("before the restart")
        expect(line(hal, "before the restart")).to_have_count(1)
        first.terminate()
    finally:
        first.stop()

    status = hal.get_by_test_id("connection-status")
    expect(status).to_have_attribute("data-state", "reconnecting")
    expect(status).to_contain_text("Disconnected")
    expect(line(hal, "Disconnected.")).to_have_count(1)

    second = ChatServer(
        tmp_path,
        "--database",
        database,
        "--web",
        f"tcp:{web}:interface=127.0.0.1",
        port=f"tcp:{telnet}:interface=127.0.0.1",
    )
    people.restarted(first, second)
    try:
        assert (second.port, second.web_ports[0]) == (telnet, web)
        expect(status).to_have_attribute("data-state", "connected", timeout=30_000)
        expect(line(hal, "Reconnected.")).to_have_count(1)
        expect(hal.get_by_test_id("sign-in-button")).to_be_hidden()  # signed in by itself
        expect(hal.get_by_test_id("window-name")).to_have_text("#kept")
        expect(room_entry(hal, "#kept")).not_to_have_class(re.compile("not-joined"))
        expect(room_entry(hal, "#lobby")).to_be_visible()
        ivy_again = people.telnet_user(second, "ivy")
        telnet_join(ivy_again, "#kept")
        expect(member(hal, "ivy")).to_be_visible()
        ivy_again.send("after the restart")
        expect(line(hal, "after the restart")).to_have_count(1)
        assert_each_once_in_order(hal, ["before the restart", "after the restart"])
        people.leave()
        second.terminate()
    finally:
        second.stop()


# ---------------------------------------------------------------------------
# History and search


def test_history_on_joining_scrolling_and_search(server: ChatServer, people: People) -> None:
    """
    Lines said before a user joins a room show when they enter it (the
    last 20); scrolling the log to the top loads older ones, page by page,
    until the first, each once and in order. Searching for a word shows
    the lines that have it in the search panel, newest first.
    """
    jon = people.telnet_user(server, "jon")
    telnet_join(jon, "#history")
    said = [f"history line {n:02d}" for n in range(80)]
    said[15] += " about the quokka"
    said[62] += " where the quokka went"
    for text in said:
        jon.send(text)
    jon.send("/history 1")
    jon.expect(said[-1])

    kay = people.browser_user(server, "kay")
    join_room(kay, "#history")
    expect(line(kay, said[-1])).to_have_count(1)
    expect(line(kay, said[-20])).to_have_count(1)
    expect(line(kay, said[0])).to_have_count(0)

    log = kay.get_by_test_id("log")
    start = log.locator(".log-start")
    beginning = "This is the beginning of #history."
    for _ in range(10):
        if start.text_content() == beginning:
            break
        shown = len(shown_events(kay))
        log.evaluate("box => { box.scrollTop = 0; }")
        kay.wait_for_function(
            """([shown, beginning]) => {
                const log = document.querySelector("[data-testid=log]");
                return log.querySelectorAll("[data-id]").length > shown
                    || log.querySelector(".log-start").textContent === beginning;
            }""",
            arg=[shown, beginning],
        )
    expect(start).to_have_text(beginning)
    assert_each_once_in_order(kay, said)
    assert len([text for _, text in shown_events(kay) if "history line" in text]) == len(said)

    search = kay.get_by_test_id("search-input")
    search.fill("quokka")
    search.press("Enter")
    panel = kay.get_by_test_id("search-panel")
    expect(panel).to_be_visible()
    results = panel.get_by_test_id("search-result")
    expect(results).to_have_count(2)
    expect(results.nth(0)).to_contain_text(said[62])
    expect(results.nth(1)).to_contain_text(said[15])
    kay.get_by_test_id("search-close").click()
    expect(panel).to_be_hidden()


# ---------------------------------------------------------------------------
# Screenshots for the documentation


def test_screenshots(people: People, tmp_path: Path) -> None:
    """
    A session of two people in two rooms, with a topic and a few lines,
    looks right on a desktop (1280x800) and a phone (390x844); with
    UPDATE_SCREENSHOTS=1 in the environment the pictures are written to
    docs/screenshot-desktop.png and docs/screenshot-phone.png for the
    README.
    """
    server = ChatServer(tmp_path, "--database", ":memory:", "--web", LOOPBACK)
    try:
        alice = people.browser_user(server, "alice", viewport={"width": 1280, "height": 800})
        bob = people.browser_user(
            server,
            "bob",
            viewport={"width": 390, "height": 844},
            is_mobile=True,
            has_touch=True,
        )
        say(bob, "morning, all")
        expect(line(alice, "morning, all")).to_have_count(1)
        join_room(alice, "#design")
        say(alice, "/topic Web client review, before Friday's release")
        say(bob, "lunch at 12:30, anyone?")  # unread in alice's #lobby
        expect(room_entry(alice, "#lobby").get_by_test_id("unread-badge")).to_have_text("1")
        say(bob, "/join #design")
        expect(bob.get_by_test_id("window-name")).to_have_text("#design")
        conversation: list[tuple[Page, str]] = [
            (alice, "The web client is up for review: rooms, search and history."),
            (bob, "Trying it on my phone now."),
            (alice, "It reconnects by itself, and fills in what you missed."),
            (bob, "/me scrolls back through the history"),
            (bob, "Looks good, alice. Search finds old lines quickly too."),
            (alice, "Thanks! Notes go in #lobby."),
        ]
        for page, text in conversation:
            say(page, text)
        last = conversation[-1][1]
        expect(line(alice, last)).to_have_count(1)
        expect(line(bob, last)).to_have_count(1)
        bob.get_by_test_id("message-input").fill("")
        bob.evaluate("document.activeElement.blur()")
        alice.evaluate("document.activeElement.blur()")
        expect(alice.get_by_test_id("topic")).to_have_text(
            "Web client review, before Friday's release"
        )
        expect(member(alice, "bob")).to_be_visible()
        # The README's pictures are rewritten only when asked, so that a
        # test run leaves the checkout as it was.
        where = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
        for page, name in ((alice, "screenshot-desktop.png"), (bob, "screenshot-phone.png")):
            page.screenshot(path=where / name)
            assert (where / name).stat().st_size > 10_000
        people.leave()
        server.terminate()
    finally:
        server.stop()
