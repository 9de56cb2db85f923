"""
The full-screen C{twistedchat-client}, on urwid with its Twisted event
loop (C{urwid.TwistedEventLoop}: urwid reads the keyboard and redraws
from the reactor Twisted runs, so the chat connection and the screen
share one thread and no locks). urwid was chosen over prompt_toolkit
and Textual because it runs on Twisted's own reactor, with no asyncio
bridge.

The input line stays intact while messages arrive: they scroll above it,
one window per room and per private conversation (L{twistedchat.windows}
sorts the server's lines). A status line shows the server, the nickname,
the window shown and the windows with unread lines (C{*} for a mention).

Keys: Enter sends; PgUp/PgDn scroll; Alt-1..9 show window 1..9;
Ctrl-N/Ctrl-P the next/previous window; Tab completes nicknames and
commands; Up/Down walk the input history; Ctrl-D quits. C{/switch #room}
shows a room's window and sends plain lines there.

When the connection drops, the client says so, reconnects with backoff
(1 s doubling to 30 s), signs in again (with the password given this
session) and joins its rooms again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import urwid
from OpenSSL import SSL
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.internet.task import deferLater
from twisted.logger import globalLogBeginner
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from twistedchat.windows import ChatModel, Line, nick_colour

#: Seconds before the first reconnection attempt, and the most between two.
RECONNECT_FIRST = 1.0
RECONNECT_MOST = 30.0

PALETTE = [
    ("status", "black", "light gray"),
    ("status-mention", "black,bold", "yellow"),
    ("notice", "dark cyan", ""),
    ("error", "light red", ""),
    ("info", "dark gray", ""),
    ("own", "light gray", ""),
    ("mention", "black", "yellow"),
    ("nick0", "light red", ""),
    ("nick1", "light green", ""),
    ("nick2", "yellow", ""),
    ("nick3", "light blue", ""),
    ("nick4", "light magenta", ""),
    ("nick5", "light cyan", ""),
    ("nick6", "brown", ""),
    ("nick7", "dark green", ""),
]


def line_markup(line: Line) -> Any:
    """
    The urwid markup of a window's line: a nickname in its colour,
    mentions highlighted, notices and errors apart.
    """
    if line.mentions:
        return ("mention", line.text)
    if line.kind in ("notice", "error", "info", "own"):
        return (line.kind, line.text)
    if line.nickname:
        start = line.text.find(line.nickname)
        if start >= 0:
            end = start + len(line.nickname)
            colour = f"nick{nick_colour(line.nickname)}"
            return [line.text[:start], (colour, line.text[start:end]), line.text[end:]]
    return line.text


class InputLine(urwid.Edit):
    """
    The line being typed, with the client's keys.
    """

    def __init__(self, screen: ChatScreen) -> None:
        super().__init__("> ")
        self._screen = screen
        self._completions: list[str] = []
        self._completed = 0

    def keypress(self, size: tuple[()] | tuple[int] | tuple[int, int], key: str) -> str | None:
        screen = self._screen
        if key != "tab":
            self._completions = []
        if key == "enter":
            text, self.edit_text = self.edit_text, ""
            screen.typed(text)
        elif key == "tab":
            self._complete()
        elif key in ("up", "down"):
            self.set_edit_text(screen.model.recall(-1 if key == "up" else 1, self.edit_text))
            self.set_edit_pos(len(self.edit_text))
        elif key in ("page up", "page down"):
            screen.scroll(-1 if key == "page up" else 1)
        elif key in ("ctrl n", "ctrl p"):
            screen.model.cycle(1 if key == "ctrl n" else -1)
            screen.redraw()
        elif key.startswith("meta ") and key[5:].isdigit() and key[5:] != "0":
            names = screen.model.names()
            number = int(key[5:])
            if number <= len(names):
                screen.model.show(names[number - 1])
                screen.redraw()
        elif key == "ctrl d":
            screen.typed("/quit")
        else:
            return super().keypress(size, key)  # type: ignore[arg-type]
        return None

    def _complete(self) -> None:
        if not self._completions:
            self._completions = self._screen.model.complete(self.edit_text)
            self._completed = 0
        if self._completions:
            text = self._completions[self._completed % len(self._completions)]
            self._completed += 1
            self.set_edit_text(text)
            self.set_edit_pos(len(text))


class ChatScreen:
    """
    The screen: the shown window's lines, the status line, the input line.

    @ivar model: what is shown (L{ChatModel}).
    """

    def __init__(self, model: ChatModel, server: str, send: Callable[[str], None]) -> None:
        """
        @param server: C{HOST:PORT}, for the status line.
        @param send: sends a line to the server (while not connected,
            L{typed} drops lines and tells the user).
        """
        self.model = model
        self._server = server
        self._send = send
        self._walker: urwid.SimpleFocusListWalker[urwid.Text] = urwid.SimpleFocusListWalker([])
        self._listbox = urwid.ListBox(self._walker)
        self._status = urwid.Text("", wrap="clip")
        self.input = InputLine(self)
        footer = urwid.Pile([urwid.AttrMap(self._status, "status"), self.input])
        self.widget: urwid.Frame[Any, Any, Any] = urwid.Frame(
            self._listbox, footer=footer, focus_part="footer"
        )
        self._shown: str | None = None
        self._count = 0
        self.connected = False
        self.started = False
        self._draw_pending = False
        #: Fires when the user quits while not connected.
        self.quit: Deferred[None] = Deferred()
        self.loop: urwid.MainLoop | None = None

    def typed(self, text: str) -> None:
        """
        The user pressed Enter on C{text}.
        """
        lines = self.model.typed(text)
        if self.model.quitting and not self.connected:
            if not self.quit.called:
                self.quit.callback(None)
            return
        if lines and not self.connected:
            self.model.window(self.model.current).add(
                Line("!!! Not connected: that was not sent.", "error"), True
            )
        for line in lines:
            self._send(line)
        self.redraw()

    def received(self, raw: bytes) -> None:
        """
        A line came from the server.
        """
        self.model.receive(raw)
        for line in self.model.outbox:
            self._send(line)
        self.model.outbox.clear()
        self.redraw()

    def note(self, text: str, kind: str = "notice") -> None:
        """
        Show a line of the client's own (connection news) in the shown
        window.
        """
        self.model.window(self.model.current).add(Line(text, kind), True)
        self.redraw()

    def scroll(self, pages: int) -> None:
        """
        Scroll the shown window back (C{pages} -1) or forth (1) by a
        screen, as the window itself pages (urwid's ListBox).
        """
        if not self._walker or self.loop is None:
            return
        cols, rows = self.loop.screen.get_cols_rows()
        key = "page up" if pages < 0 else "page down"
        self._listbox.keypress((cols, max(rows - 2, 1)), key)
        if self.started:
            self.loop.draw_screen()

    def redraw(self) -> None:
        """
        Bring the screen up to date with the model: new lines of the shown
        window (keeping the view at the bottom if it was there), the status
        line, and the bell.
        """
        window = self.model.window(self.model.current)
        if window.name != self._shown:
            self._walker[:] = [urwid.Text(line_markup(line)) for line in window.lines]
            self._shown, self._count = window.name, window.total
            if self._walker:
                self._listbox.set_focus(len(self._walker) - 1)
        else:
            added = min(window.total - self._count, len(window.lines))
            new = window.lines[len(window.lines) - added :] if added > 0 else []
            last = len(self._walker) - 1
            at_bottom = not self._walker or self._listbox.focus_position == last
            self._walker.extend(urwid.Text(line_markup(line)) for line in new)
            del self._walker[: max(0, len(self._walker) - len(window.lines))]
            self._count = window.total
            if at_bottom and self._walker:
                self._listbox.set_focus(len(self._walker) - 1)
        window.unread, window.mentioned = 0, False
        self._status.set_text(self._status_markup())
        if self.model.bell:
            self.model.bell = False
            sys.stdout.write("\a")
            sys.stdout.flush()
        if self.loop is not None and self.started and not self._draw_pending:
            # urwid redraws by itself after a key, not after network input;
            # once per reactor turn, however many lines came in it.
            self._draw_pending = True
            self.loop.event_loop.alarm(0, self._draw)

    def _draw(self) -> None:
        self._draw_pending = False
        if self.loop is not None and self.started:
            self.loop.draw_screen()

    def _status_markup(self) -> Any:
        model = self.model
        state = self._server if self.connected else f"{self._server} (disconnected)"
        parts: list[Any] = [f" {state} | {model.nickname or '-'} | [{model.current}] "]
        for number, name, unread, mentioned in model.activity():
            item = f"{number}:{name}({unread}{'*' if mentioned else ''}) "
            parts.append(("status-mention", item) if mentioned else item)
        return parts


class ScreenConnection(LineReceiver):
    """
    The connection to the server, for the screen: each line received goes
    to L{ChatScreen.received}.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(self, screen: ChatScreen, first_lines: list[str]) -> None:
        self._screen = screen
        self._first_lines = first_lines
        self.closed: Deferred[None] = Deferred()
        #: Fires at the first line received (a TLS handshake done), or
        #: when the connection closes before one.
        self.first_line: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        for line in self._first_lines:
            self.send_line(line)

    def lineReceived(self, line: bytes) -> None:
        if not self.first_line.called:
            self.first_line.callback(None)
        self._screen.received(line.rstrip(b"\r"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self._screen.received(line[:200] + b"...")

    def send_line(self, line: str) -> None:
        """
        Send C{line} to the server, with CRLF.
        """
        if self.transport is not None:
            self.transport.write(line.encode("utf-8", "surrogateescape") + b"\r\n")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._buffer:
            self.lineReceived(self._buffer)
        self.reason = reason
        if not self.first_line.called:
            self.first_line.callback(None)
        self.closed.callback(None)


async def run_screen(
    reactor: Any, endpoint: IStreamClientEndpoint, server: str, nickname: str | None
) -> None:
    """
    Run the full-screen client on C{endpoint} until the user quits,
    reconnecting when the connection drops.
    """
    model = ChatModel(nickname)
    connection: ScreenConnection | None = None

    def send(line: str) -> None:
        if connection is not None and screen.connected:
            connection.send_line(line)

    screen = ChatScreen(model, server, send)
    loop = urwid.MainLoop(
        screen.widget,
        PALETTE,
        event_loop=urwid.TwistedEventLoop(reactor=reactor, manage_reactor=False),
        handle_mouse=False,
    )
    screen.loop = loop
    # The first connection before the screen: one that cannot be made, or
    # whose TLS handshake fails, is one line on standard error, not a
    # screen (ConnectError or TLSFailed raised).
    connection = ScreenConnection(screen, [nickname] if nickname else [])
    await connectProtocol(endpoint, connection)
    await connection.first_line
    if connection.reason is not None and connection.reason.check(SSL.Error):
        raise TLSFailed(str(connection.reason.value))
    # Twisted's log would write over the screen.
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
    loop.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            screen.started = False
            loop.stop()

    # Ctrl-C stops the reactor: the terminal is given back all the same.
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    screen.started = True
    screen.connected = not connection.closed.called
    screen.redraw()
    try:
        delay = RECONNECT_FIRST
        while True:
            await connection.closed
            screen.connected = False
            if model.quitting:
                return
            if model.signed_in:  # a connection that got as far as a welcome
                delay = RECONNECT_FIRST
            model.disconnected()
            screen.note(f"*** Disconnected from {server}; reconnecting in {delay:g} s.")
            while not screen.connected:
                await _first(deferLater(reactor, delay), screen.quit)
                if model.quitting:
                    return
                delay = min(delay * 2, RECONNECT_MOST)
                connection = ScreenConnection(screen, model.rejoin())
                try:
                    await connectProtocol(endpoint, connection)
                except (ConnectError, DNSLookupError) as e:
                    why = str(e).rstrip(".")
                    screen.note(f"!!! Cannot connect to {server}: {why}; next try in {delay:g} s.")
                else:
                    screen.connected = True
                    screen.note(f"*** Connected to {server} again.")
    finally:
        stop()


class TLSFailed(Exception):
    """
    The TLS handshake with the server failed (its certificate did not
    verify, say); C{str()} says why.
    """


def _first(*waiting: Deferred[Any]) -> Deferred[Any]:
    """
    A L{Deferred} that fires when the first of C{waiting} does.
    """
    return DeferredList(list(waiting), fireOnOneCallback=True, consumeErrors=True)
