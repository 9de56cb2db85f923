"""
What the full-screen C{twistedchat-client} shows, without a terminal: the
server's lines sorted into windows (one per room, one per private
conversation, and the server's own), unread counts and mentions, nickname
completion and the input history. L{twistedchat.screen} draws it.

The client speaks the telnet line protocol (C{docs} in the README's
"What the lines mean"), so this module reads the server's lines as a
person would: C{[#room] <bob> hi} when one is in several rooms, C{<bob>
hi} when in one, C{*bob* psst} for a private message, C{*** ...} for the
server's notices and C{!!! ...} for its errors. Every line is cleaned of
control characters and escape sequences first
(L{twistedchat.sanitize.clean_line}): a hostile server cannot act on the
terminal.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from twistedchat.sanitize import clean_line

#: The window of the server's own lines (notices, errors, replies).
SERVER = "*server*"

#: How many lines a window keeps (scrollback).
SCROLLBACK = 5000

#: How many typed lines the input history keeps.
HISTORY = 500

#: The client's own commands and the server's, for completion.
COMMANDS = (
    "/away", "/ban", "/deop", "/help", "/history", "/identify", "/invite", "/join", "/kick",
    "/kill", "/list", "/me", "/mode", "/msg", "/names", "/nick", "/op", "/part", "/password",
    "/quit", "/register", "/rooms", "/search", "/switch", "/topic", "/unban", "/whois", "/who",
)  # fmt: skip

_ROOM_TAG = re.compile(r"^\[(#[^\]\s]+)\] (.*)$")
_CHAT = re.compile(r"^<([^>\s]+)> (.*)$")
_ACTION = re.compile(r"^\* (\S+) (.*)$")
_PRIVATE = re.compile(r"^\*([^*\s]+)\* (.*)$")
_SENT = re.compile(r"^-> \*([^*\s]+)\* (.*)$")
_NOTICE_LINE = re.compile(r"^-\*?([^*\s-]+)\*?- (.*)$")
_JOINED = re.compile(r"^\*\*\* You joined (#\S+?); .*?(?:: (.*)\.)?$")
_ALREADY = re.compile(r"^\*\*\* You are in (#\S+?) already; your lines go there now\.$")
_LEFT = re.compile(r"^\*\*\* You left (#\S+?)\.$")
_CURRENT = re.compile(r"^\*\*\* Your lines go to (#\S+) now\.$")
_WELCOME = re.compile(r"^\*\*\* Welcome, ([^!\s]+)!")
_RENAMED = re.compile(r"^\*\*\* You are now known as (\S+) \(was")
_NAMES = re.compile(r"^\*\*\* \d+ users? in (#\S+?)(?:: (.*))?\.?$")
_PASSWORD_PROMPT = re.compile(r"^\*\*\* The nickname \S+ is registered\. Send its password")
_SOMEONE = re.compile(r"^\*\*\* \S+ (has joined|has left|is now known as) ")
_SOMEONE_JOINED = re.compile(r"^\*\*\* (\S+) has joined$")
_SOMEONE_LEFT = re.compile(r"^\*\*\* (\S+) has left")
_SOMEONE_RENAMED = re.compile(r"^\*\*\* (\S+) is now known as (\S+)$")
_PAST = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] ")


@dataclass
class Line:
    """
    One line of a window: its C{text}, its C{kind} (C{chat}, C{action},
    C{private}, C{own}, C{notice}, C{error}, C{info}), the C{nickname} it
    is from (for its colour), and whether it C{mentions} the user.
    """

    text: str
    kind: str
    nickname: str = ""
    mentions: bool = False


@dataclass
class Window:
    """
    A room (C{#dev}), a private conversation (its nickname) or the
    server's window, with its lines, unread lines and members.
    """

    name: str
    lines: list[Line] = field(default_factory=list)
    unread: int = 0
    mentioned: bool = False
    members: set[str] = field(default_factory=set)
    #: Lines ever added (the first L{SCROLLBACK} are forgotten).
    total: int = 0

    def add(self, line: Line, shown: bool) -> None:
        """
        Add C{line}; count it as unread unless the window is C{shown}.
        """
        self.total += 1
        self.lines.append(line)
        del self.lines[:-SCROLLBACK]
        if not shown and line.kind in ("chat", "action", "private", "notice-from"):
            self.unread += 1
            self.mentioned = self.mentioned or line.mentions


def _members(names: str) -> set[str]:
    """
    The nicknames of a list the server sends (C{@alice, bob (away)}).
    """
    return {name.lstrip("@").removesuffix(" (away)") for name in names.split(", ")}


def nick_colour(nickname: str, colours: int = 8) -> int:
    """
    A colour for C{nickname}, the same every time (and every run).
    """
    return zlib.crc32(nickname.lower().encode("utf-8")) % colours


class ChatModel:
    """
    The windows, which one is shown, where the server sends plain lines,
    and the input history.

    @ivar nickname: the user's nickname once welcomed, else C{None}.
    @ivar password: the password the user gave this session (to identify
        again after a reconnect), or C{None}.
    @ivar server_room: the room the server sends the user's plain lines
        to, or C{None}.
    @ivar outbox: lines to send to the server that the model decided on
        (after the welcome: a C{/names} to learn the room one is in, or
        the C{/join}s of a reconnect); the screen sends and empties it.
    @ivar bell: whether to ring the terminal's bell (a mention, a private
        message in a window not shown); the screen rings it and clears it.
    """

    def __init__(self, nickname: str | None = None) -> None:
        self.nickname: str | None = None
        self.wanted = nickname
        self.password: str | None = None
        self.windows: dict[str, Window] = {SERVER: Window(SERVER)}
        self.current = SERVER
        self.server_room: str | None = None
        self.history: list[str] = []
        self._recall = 0
        self._draft = ""
        self.bell = False
        self.outbox: list[str] = []
        self._after_welcome: list[str] = ["/names"]
        self.signed_in = False
        self.awaiting_password = False
        self.quitting = False
        #: The rooms the server said the user is in, by lower-case name.
        self.joined: set[str] = set()
        # Rejoin answers still to come (they do not change the view).
        self._rejoining = 0

    # Windows

    def window(self, name: str) -> Window:
        """
        Return the window called C{name} (rooms and nicknames compared
        case-insensitively), opening it if there is none.
        """
        for key, window in self.windows.items():
            if key.lower() == name.lower():
                return window
        window = self.windows[name] = Window(name)
        return window

    def show(self, name: str) -> None:
        """
        Show the window C{name}: its lines are read.
        """
        window = self.window(name)
        self.current = window.name
        window.unread = 0
        window.mentioned = False

    def names(self) -> list[str]:
        """
        The windows' names, in the order they were opened.
        """
        return list(self.windows)

    def cycle(self, step: int) -> None:
        """
        Show the next (C{step} 1) or previous (-1) window.
        """
        names = self.names()
        self.show(names[(names.index(self.current) + step) % len(names)])

    def close(self, name: str) -> None:
        """
        Close the window C{name} (a room left); show the server's window
        if it was shown.
        """
        for key in list(self.windows):
            if key.lower() == name.lower() and key != SERVER:
                del self.windows[key]
                if self.current == key:
                    self.show(self.server_room or SERVER)
                return

    def activity(self) -> list[tuple[int, str, int, bool]]:
        """
        The windows with unread lines: (number, name, unread, mentioned),
        the number being what Alt-number shows.
        """
        return [
            (number, w.name, w.unread, w.mentioned)
            for number, w in enumerate(self.windows.values(), 1)
            if w.unread
        ]

    # What the server says

    def receive(self, raw: bytes) -> None:
        """
        Sort one line from the server into its window.
        """
        text = clean_line(raw)
        room = None
        tagged = _ROOM_TAG.match(text)
        if tagged:
            room, text = tagged.group(1), tagged.group(2)
        past = bool(_PAST.match(text))
        body = _PAST.sub("", text)
        if past:
            tagged = _ROOM_TAG.match(body)  # /history in several rooms: [time] [#room] ...
            where = tagged.group(1) if tagged else room
            self._add(where or self.server_room or SERVER, Line(text, "info"))
            return
        if self._status(body, room):
            return
        for pattern, kind in ((_SENT, "own"), (_PRIVATE, "private")):
            match = pattern.match(body)
            if match:
                self._add(match.group(1), Line(text, kind, match.group(1)))
                return
        where = room or self.server_room or SERVER
        match = _CHAT.match(body) or _ACTION.match(body)
        if match:
            nickname, said = match.group(1), match.group(2)
            kind = "chat" if body.startswith("<") else "action"
            mentions = self._mentions(said) and nickname != self.nickname
            self._add(where, Line(text, kind, nickname, mentions))
            return
        match = _NOTICE_LINE.match(body)
        if match:
            self._add(where if not body.startswith("-*") else match.group(1),
                      Line(text, "notice-from", match.group(1)))  # fmt: skip
            return
        kind = "error" if body.startswith("!!!") else "notice"
        if room or _SOMEONE.match(body):
            target = where  # someone came, went or was renamed in that room
        elif not self.signed_in:
            target = SERVER  # the greeting, the prompts, the welcome
        else:
            target = self.current  # the answer to what the user just typed
        self._add(target, Line(text, kind))

    def _status(self, body: str, tagged: str | None) -> bool:
        """
        Follow what the server says about the user's rooms and nickname
        (C{tagged}: the room the line was tagged with, if any); return
        whether the line is to be shown nowhere (a password prompt's echo
        is never shown; every other line is).
        """
        if match := _WELCOME.match(body):
            self.nickname = match.group(1)
            self.signed_in = True
            self.awaiting_password = False
            self.outbox += self._after_welcome
            self._rejoining = len(self._after_welcome) if self._after_welcome[0] != "/names" else 0
            self._after_welcome = ["/names"]
            return False
        if _PASSWORD_PROMPT.match(body):
            self.awaiting_password = True
            return False
        if match := _RENAMED.match(body):
            self.nickname = match.group(1)
            return False
        if match := _JOINED.match(body):
            room = self.window(match.group(1))
            if match.group(2):
                room.members = _members(match.group(2))
            self._entered(room.name)
            return False
        if match := _ALREADY.match(body):
            self._entered(self.window(match.group(1)).name)
            return False
        if match := _LEFT.match(body):
            self.joined.discard(match.group(1).lower())
            if self.server_room and self.server_room.lower() == match.group(1).lower():
                self.server_room = None
            self.close(match.group(1))
            return False
        if match := _CURRENT.match(body):
            self.server_room = self.window(match.group(1)).name
            return False
        if match := _NAMES.match(body):
            room = self.window(match.group(1))
            if match.group(2):
                room.members = _members(match.group(2).rstrip("."))
            if self.server_room is None:
                self._entered(room.name)
            return False
        where = tagged or self.server_room or SERVER
        if match := _SOMEONE_JOINED.match(body):
            self.window(where).members.add(match.group(1))
        elif match := _SOMEONE_RENAMED.match(body):
            old, new = match.group(1), match.group(2)
            for window in self.windows.values():
                if old in window.members:
                    window.members.discard(old)
                    window.members.add(new)
            if old in self.windows:  # the private conversation follows
                self.windows[new] = self.windows.pop(old)
                self.windows[new].name = new
                if self.current == old:
                    self.current = new
        elif match := _SOMEONE_LEFT.match(body):
            self.window(where).members.discard(match.group(1))
        return False

    def _entered(self, name: str) -> None:
        """
        The server sends plain lines to the room C{name} now: show it,
        unless it is a rejoin after a reconnect (the view stays).
        """
        self.server_room = name
        self.joined.add(name.lower())
        if self._rejoining:
            self._rejoining -= 1
        else:
            self.show(name)

    def _mentions(self, text: str) -> bool:
        nickname = self.nickname
        if not nickname:
            return False
        return re.search(rf"(?<![\w-]){re.escape(nickname)}(?![\w-])", text, re.I) is not None

    def disconnected(self) -> None:
        """
        The connection dropped: until the next welcome, lines typed go to
        the server as they are (a nickname, a password) and are not shown
        as said.
        """
        self.signed_in = False
        self.awaiting_password = False

    def _add(self, name: str, line: Line) -> None:
        window = self.window(name)
        shown = window.name == self.current
        window.add(line, shown)
        if line.mentions or (line.kind == "private" and not shown):
            self.bell = True

    # What the user types

    def typed(self, text: str) -> list[str]:
        """
        The lines to send for C{text}, typed in the window shown: before
        the welcome, the line as it is (a nickname; a password, which is
        remembered to identify again after a reconnect and kept out of the
        history); a command as it is (C{/switch #room} also shows that
        room's window; passwords given are remembered); plain text to the
        window's room or nickname. C{/quit}, C{/exit} and C{.exit} set
        L{quitting}.
        """
        command, _, argument = text.partition(" ")
        command = command.lower()
        if command in ("/quit", "/exit", ".exit"):
            self.quitting = True
        if not self.signed_in:
            if self.awaiting_password and text:
                self.password = text  # never shown, never in the history
                self.awaiting_password = False
                return [text]
            return [text] if text else [""]
        if text:
            self.history.append(text)
            del self.history[:-HISTORY]
        self._recall = len(self.history)
        if text.startswith("/") and not text.startswith("//"):
            self._remember_password(text)
            if command == "/switch" and argument.strip():
                if argument.strip().lower() in self.joined:
                    self.show(argument.strip())
            elif command == "/me" and argument:
                if not self.current.startswith("#"):
                    self._add(self.current, Line("!!! /me works in a room's window.", "error"))
                    return []
                self._own(f"* {self.nickname} {argument}")
                if self.current.lower() != (self.server_room or "").lower():
                    return [f"/switch {self.current}", text]
            return [text]
        if not text:
            return []
        where = self.current
        if where == SERVER:
            return [text]
        if where.startswith("#"):
            # The server shows nobody their own lines: the client does.
            self._own(f"<{self.nickname}> {text.removeprefix('/')}")
            if self.server_room is not None and where.lower() == self.server_room.lower():
                return [text]
        return [f"/msg {where} {text.removeprefix('/')}"]

    def _own(self, text: str) -> None:
        self.window(self.current).add(Line(text, "own", self.nickname or ""), True)

    def _remember_password(self, text: str) -> None:
        words = text.split()
        command = words[0].lower()
        if command in ("/identify", "/register") and len(words) == 2:
            self.password = words[1]
        elif command == "/nick" and len(words) == 3:
            self.password = words[2]
        elif command == "/password" and len(words) == 3:
            self.password = words[2]

    def recall(self, step: int, current: str) -> str:
        """
        The line typed before (C{step} -1) or after (1) the one recalled
        last, for Up and Down; C{current} when there is none.
        """
        index = self._recall + step
        if not 0 <= index <= len(self.history):
            return current
        if self._recall == len(self.history):
            self._draft = current  # what was being typed, for Down to bring back
        self._recall = index
        return self.history[index] if index < len(self.history) else self._draft

    def complete(self, text: str) -> list[str]:
        """
        The completions of the last word of C{text}: commands for a first
        word starting with C{/}, else the nicknames in the window shown (a
        nickname first in the line gets C{": "}).
        """
        head, _, word = text.rpartition(" ")
        if not word:
            return []
        if not head and word.startswith("/"):
            return [c + " " for c in COMMANDS if c.startswith(word.lower())]
        window = self.windows.get(self.current)
        names = set(window.members) if window else set()
        if window and not window.name.startswith("#") and window.name != SERVER:
            names.add(window.name)
        found = sorted(n for n in names if n.lower().startswith(word.lower()))
        suffix = ": " if not head else " "
        return [(head + " " if head else "") + n + suffix for n in found]

    # Reconnecting

    def rejoin(self) -> list[str]:
        """
        The line that signs in again after a reconnect: the nickname, with
        the password given this session (or nothing if the user never got
        as far as a nickname). Once welcomed, L{outbox} gets a C{/join} of
        every room that was open, the one plain lines went to last.
        """
        nickname = self.nickname or self.wanted
        rooms = [name for name in self.windows if name.lower() in self.joined]
        server_room = self.server_room
        joins = [f"/join {room}" for room in rooms if room != server_room]
        if server_room is not None and server_room.lower() in self.joined:
            joins.append(f"/join {server_room}")
        self._after_welcome = joins or ["/names"]
        if not nickname:
            return []
        return [f"{nickname} {self.password}" if self.password else nickname]
