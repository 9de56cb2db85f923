"""
End-to-end tests of the full-screen C{twistedchat-client}
(L{twistedchat.screen}): the real command, run in C{tmux} (100x24) on a
tmux server of its own, typed into with C{send-keys} and read with
C{capture-pane}, against the real C{twistd -n chat} on 127.0.0.1 with
telnet users beside it, or against a hostile fake server in a thread.
C{.ci/run} installs tmux.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from realserver import BIN, TIMEOUT, ChatServer, register
from tmuxpane import TmuxPane

WIDTH, HEIGHT = 100, 24

# Every escape sequence capture-pane -e can write (it writes only SGR ones,
# but a leak of anything else should show too).
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|.)")
_SGR = re.compile(r"\x1b\[[0-9;:]*m")


def free_port() -> int:
    """
    A TCP port on 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Terminal(TmuxPane):
    """
    C{twistedchat-client --nick NICKNAME 127.0.0.1 PORT} in a
    C{WIDTH}xC{HEIGHT} tmux pane. Its screen is the shown window's lines,
    then the status line, then the input line.
    """

    def __init__(self, port: int, nickname: str = "alice") -> None:
        command = [str(BIN / "twistedchat-client"), "--nick", nickname, "127.0.0.1", str(port)]
        super().__init__("client", WIDTH, HEIGHT, command, {"LC_ALL": "C.UTF-8"})

    def rows(self, escapes: bool = False) -> list[str]:
        """
        The terminal's C{HEIGHT} rows now, trailing blanks removed; with
        C{escapes}, with the SGR sequences of their colours.
        """
        text = self.capture(escapes)
        rows = [row.rstrip(" ") for row in text.removesuffix("\n").split("\n")]
        return rows + [""] * (HEIGHT - len(rows))

    def wait_until(self, condition: Callable[[list[str]], bool], what: str) -> list[str]:
        """
        Poll the screen until C{condition} holds of its rows, for at most
        TIMEOUT seconds; return the rows.

        @raise AssertionError: it did not, naming C{what}, with the last
            screen.
        """
        deadline = time.monotonic() + TIMEOUT
        while not condition(rows := self.rows()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never showed:\n" + "\n".join(rows))
            time.sleep(0.05)
        return rows

    def wait_for(self, text: str) -> list[str]:
        """
        Poll until C{text} shows in a line of the shown window; return the
        rows.
        """
        return self.wait_until(lambda rows: any(text in row for row in rows[:-2]), repr(text))

    def wait_for_row(self, text: str) -> list[str]:
        """
        Poll until a row of the shown window reads C{text} and nothing
        else; return the rows.
        """
        return self.wait_until(lambda rows: text in rows[:-2], f"the row {text!r}")

    def wait_for_status(self, text: str) -> list[str]:
        """
        Poll until the status line shows C{text}; return the rows.
        """
        return self.wait_until(lambda rows: text in rows[-2], f"{text!r} in the status line")

    def wait_for_input(self, text: str) -> list[str]:
        """
        Poll until the input line reads C{text} (trailing blanks removed);
        return the rows.
        """
        return self.wait_until(lambda rows: rows[-1] == text, f"the input line {text!r}")


@pytest.fixture
def start() -> Iterator[Callable[[int], Terminal]]:
    """
    Start C{twistedchat-client --nick alice 127.0.0.1 PORT} in tmux, for
    a given PORT; every one started is ended after the test.
    """
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: .ci/run installs Debian's tmux")
    terminals: list[Terminal] = []

    def start(port: int) -> Terminal:
        terminal = Terminal(port)
        terminals.append(terminal)
        return terminal

    try:
        yield start
    finally:
        for terminal in terminals:
            terminal.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    """
    A real server, stopped cleanly (no traceback logged) after the test.
    """
    server = ChatServer(tmp_path, "--database", ":memory:")
    try:
        yield server
        server.terminate()
    finally:
        server.stop()


def test_input_line_kept_while_a_line_arrives(
    server: ChatServer, start: Callable[[int], Terminal]
) -> None:
    """
    With half a line typed, a line a telnet user says shows as
    C{<bob> message from nc} on a row of its own above the status line,
    and the input line still reads C{> hi, I am half-way typing}; typing
    the rest and Enter sends the whole line, which the telnet user
    receives as C{<alice> hi, I am half-way typing and done}, and the
    input line is empty again.
    """
    alice = start(server.port)
    alice.wait_for_status("[#lobby]")
    alice.type("hi, I am half-way typing")
    alice.wait_for_input("> hi, I am half-way typing")
    bob = register(server, "bob")
    try:
        bob.send("message from nc")
        rows = alice.wait_for_row("<bob> message from nc")
        assert rows[-1] == "> hi, I am half-way typing", rows
        assert "[#lobby]" in rows[-2], rows

        alice.type(" and done")
        alice.keys("Enter")
        assert bob.expect("<alice>") == "<alice> hi, I am half-way typing and done"
        rows = alice.wait_for_row("<alice> hi, I am half-way typing and done")
        assert rows[-1] == ">", rows
        assert "<bob> message from nc" in rows, rows
    finally:
        bob.close()


def test_rooms_in_windows(server: ChatServer, start: Callable[[int], Terminal]) -> None:
    """
    C{/join #dev} shows the #dev window (C{[#dev]} in the status line); a
    line a telnet user says in #lobby meanwhile is not shown but counted
    in the status line as C{2:#lobby(1)}; Alt-2 shows #lobby with that
    line, and the count goes; Ctrl-N shows #dev again, Ctrl-P #lobby with
    the next unread line; in #dev, a typed line reaches a telnet user in
    #dev as C{[#dev] <alice> hello dev}.
    """
    bob = register(server, "bob")
    carol = register(server, "carol")
    try:
        carol.send("/join #dev")
        carol.expect("*** You joined #dev")
        alice = start(server.port)
        alice.wait_for_status("[#lobby]")
        alice.type("/join #dev")
        alice.keys("Enter")
        rows = alice.wait_for_status("[#dev]")
        assert "#lobby(" not in rows[-2], rows

        bob.send("lobby news")
        rows = alice.wait_for_status("2:#lobby(1)")
        assert not any("lobby news" in row for row in rows), rows

        alice.keys("M-2")
        rows = alice.wait_for_status("[#lobby]")
        rows = alice.wait_for_row("<bob> lobby news")
        assert "#lobby(" not in rows[-2], rows

        alice.keys("C-n")
        alice.wait_for_status("[#dev]")
        bob.send("more lobby news")
        alice.wait_for_status("2:#lobby(1)")
        alice.keys("C-p")
        alice.wait_for_status("[#lobby]")
        alice.wait_for_row("<bob> more lobby news")

        alice.keys("M-3")
        alice.wait_for_status("[#dev]")
        alice.type("hello dev")
        alice.keys("Enter")
        assert carol.expect("hello dev") == "[#dev] <alice> hello dev"
        alice.wait_for_row("<alice> hello dev")
    finally:
        bob.close()
        carol.close()


def test_reconnect_after_server_restart(tmp_path: Path, start: Callable[[int], Terminal]) -> None:
    """
    When the server stops, the client says C{*** Disconnected from
    127.0.0.1:PORT; reconnecting in 1 s.} and the status line says
    C{(disconnected)}; a second later it finds no server and says its
    next try is in 2 s. Once a new server listens on the same port, the
    client reconnects by itself (C{*** Connected to 127.0.0.1:PORT
    again.}), signs in as alice again and joins #dev again: a
    telnet user in #dev sees C{alice has joined} there (or, should alice
    win the race to #dev, finds her among its members), the status line
    shows C{[#dev]} without C{(disconnected)}, and a line alice types
    reaches the telnet user as C{[#dev] <alice> back again}.
    """
    port = free_port()
    listen = f"tcp:{port}:interface=127.0.0.1"
    first = ChatServer(tmp_path, "--database", ":memory:", port=listen)
    second: ChatServer | None = None
    try:
        alice = start(port)
        alice.wait_for_status("[#lobby]")
        alice.type("/join #dev")
        alice.keys("Enter")
        alice.wait_for_status("[#dev]")

        first.terminate()
        rows = alice.wait_for(f"*** Disconnected from 127.0.0.1:{port}; reconnecting in 1 s.")
        assert f"127.0.0.1:{port} (disconnected)" in rows[-2], rows
        alice.wait_for(f"!!! Cannot connect to 127.0.0.1:{port}")
        alice.wait_for("next try in 2 s.")

        second = ChatServer(tmp_path, "--database", ":memory:", port=listen)
        carol = register(second, "carol")
        try:
            carol.send("/join #dev")
            joined = carol.expect("*** You joined #dev")
            if "alice" not in joined:
                carol.expect("[#dev] *** alice has joined")
            alice.wait_for(f"*** Connected to 127.0.0.1:{port} again.")
            alice.wait_until(
                lambda rows: "[#dev]" in rows[-2] and "disconnected" not in rows[-2],
                "[#dev], connected, in the status line",
            )
            alice.type("back again")
            alice.keys("Enter")
            assert carol.expect("back again") == "[#dev] <alice> back again"
        finally:
            carol.close()
        second.terminate()
    finally:
        first.stop()
        if second is not None:
            second.stop()


class HostileServer:
    """
    A fake chat server on 127.0.0.1 for one client: it reads the
    client's first line (its nickname) into C{nickname}, sends
    C{earlier line}, and, once L{attack} is called, L{HOSTILE}'s lines;
    it keeps the connection open until L{close}.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(TIMEOUT)
        self.port: int = self._listener.getsockname()[1]
        self.nickname = b""
        self._attack = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(TIMEOUT)
            while not self.nickname.endswith(b"\n"):
                data = connection.recv(1024)
                if not data:
                    return
                self.nickname += data
            connection.sendall(b"earlier line\r\n")
            if self._attack.wait(TIMEOUT) and not self._closing.is_set():
                connection.sendall(b"".join(line + b"\r\n" for line, _ in HOSTILE))
            self._closing.wait(TIMEOUT)

    def attack(self) -> None:
        """
        Send the hostile lines.
        """
        self._attack.set()

    def close(self) -> None:
        """
        Close the connection and stop listening.
        """
        self._closing.set()
        self._attack.set()
        self._listener.close()
        self._thread.join(TIMEOUT)


#: Lines a hostile server sends, and the row each must show as: its text,
#: with every control character and escape sequence gone.
HOSTILE = [
    (b"\x1b[2J\x1b[3J\x1b[Hvisible text after a clear", "visible text after a clear"),
    (b"\x1bcvisible text after a reset", "visible text after a reset"),
    (b"\x1b]0;PWNED\x07\x1b]2;PWNED\x1b\\visible text after a title", "visible text after a title"),
    (b"\x1b]52;c;UFdORUQ=\x07visible text after a clipboard", "visible text after a clipboard"),
    (b"\x1b[31m\x1b[5mvisible text in red\x1b[0m", "visible text in red"),
    (b"\x07visible text after a bell\x07", "visible text after a bell"),
    (b"\xc2\x9b31mvisible text after a C1 CSI", "visible text after a C1 CSI"),
    (b"\x1b[?1049l\x1b[?25l\x1b[9;1Hvisible text after leaving", "visible text after leaving"),
    (b"\x1b]8;;http://x.invalid/\x07visible text in a link\x1b]8;;\x07", "visible text in a link"),
    # Queries a terminal answers on the client's standard input, as if typed.
    (b"\x1b[6n\x1b[c\x1b]52;c;?\x07\x1bP+q544e\x1b\\visible text after", "visible text after"),
    # A lone 0x9b byte is no UTF-8: it shows as U+FFFD, then "31m".
    (b"\x9b31mvisible text after a 0x9b byte", "\ufffd31mvisible text after a 0x9b byte"),
]


def test_hostile_server_cannot_act_on_the_terminal(start: Callable[[int], Terminal]) -> None:
    """
    Lines from a server full of escape sequences (clear screen, reset,
    window title, clipboard writes and reads, red and blinking text, bell,
    the C1 CSI, leaving the alternate screen, hiding the cursor, moving
    it, hyperlinks, terminal queries) show as their text only, each on a
    row of its own: the line shown before them is still there (no clear),
    the pane title is not C{PWNED}, no tmux paste buffer was set from the
    clipboard sequence (tmux's set-clipboard is on), no bell rang, the
    client is still on the alternate screen, no query's answer was typed
    into the input line, and the pane's colours (C{capture-pane -e}) are
    only those the client used for its plain lines before.
    """
    hostile = HostileServer()
    try:
        alice = start(hostile.port)
        alice.tmux("set-option", "-g", "set-clipboard", "on")
        before = alice.wait_for_row("earlier line")
        styling = set(_ESCAPE.findall("\n".join(alice.rows(escapes=True))))
        title = alice.display("pane_title")
        assert hostile.nickname == b"alice\r\n"

        hostile.attack()
        rows = alice.wait_for(HOSTILE[-1][1])
        shown = rows[:-2]
        for _, text in HOSTILE:
            assert text in shown, (text, rows)
        assert shown[0] == "earlier line" == before[0], rows
        assert rows[-1] == ">", rows
        assert alice.display("pane_title") == title != "PWNED"
        assert alice.tmux("list-buffers") == ""
        assert alice.display("window_bell_flag") == "0"
        assert alice.display("alternate_on") == "1"

        coloured = alice.rows(escapes=True)
        escapes = set(_ESCAPE.findall("\n".join(coloured)))
        assert all(_SGR.fullmatch(escape) for escape in escapes), escapes
        assert escapes <= styling, (escapes - styling, coloured)
        visible = [_ESCAPE.sub("", row).rstrip(" ") for row in coloured]
        assert visible == rows, (visible, rows)
    finally:
        hostile.close()


def test_completion_and_history(server: ChatServer, start: Callable[[int], Terminal]) -> None:
    """
    In #lobby with bob, C{bo} and Tab completes to C{bob: } (with the
    space: C{ping} typed after it reads C{bob: ping}); Enter sends it
    (bob receives C{<alice> bob: ping}) and Up brings it back to the
    input line.
    """
    alice = start(server.port)
    alice.wait_for_status("[#lobby]")
    bob = register(server, "bob")
    try:
        alice.wait_for_row("*** bob has joined")
        alice.type("bo")
        alice.keys("Tab")
        alice.wait_for_input("> bob:")
        alice.type("ping")
        alice.wait_for_input("> bob: ping")
        alice.keys("Enter")
        assert bob.expect("ping") == "<alice> bob: ping"
        alice.wait_for_input(">")
        alice.keys("Up")
        alice.wait_for_input("> bob: ping")
    finally:
        bob.close()


def test_scrollback(tmp_path: Path, start: Callable[[int], Terminal]) -> None:
    """
    PgUp shows older lines of the window, PgDn comes back to the newest;
    the input line stays where it is.
    """
    server = ChatServer(tmp_path, "--database", ":memory:", "--flood-rate", "0")
    alice = start(server.port)
    alice.wait_for_status("[#lobby]")
    bob = register(server, "bob")
    try:
        for number in range(60):
            bob.send(f"line {number}")
        alice.wait_for_row("<bob> line 59")
        alice.type("kept")
        alice.keys("PageUp")
        rows = alice.wait_until(lambda rows: "<bob> line 59" not in rows, "an older page")
        assert any(row.startswith("<bob> line ") for row in rows)
        alice.keys("PageDown", "PageDown", "PageDown")
        alice.wait_for_row("<bob> line 59")
        alice.wait_for_input("> kept")
    finally:
        bob.close()
        server.terminate()
