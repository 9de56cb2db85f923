"""
End-to-end test of C{--irc} with a real terminal IRC client
(docs/irc.md, section 8, "A real terminal client"): Debian's C{irssi},
run in C{tmux} on a tmux server of its own, typed into with C{send-keys}
and read with C{capture-pane}, against the real C{twistd -n chat}, with
a telnet user in #lobby. C{.ci/run} installs both programs.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from realserver import TIMEOUT, ChatServer, register
from tmuxpane import TmuxPane

# A throwaway irssi configuration: no servers or networks to autoconnect
# to, nothing written back, no logs, no DCC, no lag-check PINGs; and
# irssi's outgoing command queue (2.2 seconds between commands after the
# first five, by default) not throttled, so the join sync (MODE, WHO,
# MODE b) takes a moment rather than ten seconds. window_auto_change
# brings the #lobby window the server joins the user to to the front.
CONFIG = """\
servers = ( );
chatnets = {{ }};
channels = ( );
settings = {{
  core = {{
    nick = "{nickname}";
    user_name = "{nickname}";
    real_name = "{nickname}";
    settings_autosave = "no";
    rawlog_lines = "1000";
  }};
  "irc/core" = {{
    cmd_queue_speed = "0msec";
    cmds_max_at_once = "100";
    lag_check_time = "0";
  }};
  "irc/dcc" = {{
    dcc_autoget = "no";
  }};
  "fe-common/core" = {{
    window_auto_change = "yes";
    autolog = "no";
  }};
}};
"""

# What irssi prints for the error numerics its join sync or a message
# could draw (421, 451, 461, 403, 404, 442, 472, 501, 481, 482), and for
# a command of ours it does not know.
ERRORS = (
    "Unknown command",
    "not registered",
    "Not enough parameters",
    "No such",
    "Cannot send",
    "not on that channel",
    "unknown mode",
    "Unknown MODE",
    "Permission Denied",
    "not channel operator",
)


class Irssi(TmuxPane):
    """
    C{irssi} with its home in C{home} (created, with a configuration
    file), registering as C{nickname}, in a 200x50 tmux pane.
    """

    def __init__(self, home: Path, nickname: str) -> None:
        home.mkdir()
        (home / "config").write_text(CONFIG.format(nickname=nickname))
        command = ["irssi", f"--home={home}", "--noconnect", "-n", nickname]
        super().__init__("irssi", 200, 50, command)

    def send(self, line: str) -> None:
        """
        Type C{line} (literally, no tmux key names) and Enter.
        """
        self.type(line)
        self.keys("Enter")

    def screen(self) -> str:
        """
        What the terminal shows now: irssi's current window, its status
        bar and its prompt (such as C{[#lobby]}), without what is being
        typed after the prompt, so a line typed but not yet handled never
        counts as shown.
        """
        lines = self.capture().rstrip("\n").split("\n")
        prompt = re.match(r"\[[^\]]*\]", lines[-1])
        if prompt:
            lines[-1] = prompt.group()
        return "\n".join(lines)

    def wait_for(self, text: str) -> str:
        """
        Poll the screen until it shows C{text}, for at most TIMEOUT
        seconds; return the screen.

        @raise AssertionError: it did not, with the last screen.
        """
        deadline = time.monotonic() + TIMEOUT
        while text not in (screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never showed in irssi:\n{screen}")
            time.sleep(0.05)
        return screen


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChatServer]:
    """
    A real server with a telnet and an IRC listener, stopped cleanly
    (no traceback logged) after the test.
    """
    server = ChatServer(tmp_path, "--database", ":memory:", "--irc", "tcp:0:interface=127.0.0.1")
    try:
        yield server
        server.terminate()
    finally:
        server.stop()


@pytest.fixture
def irssi(tmp_path: Path) -> Iterator[Irssi]:
    """
    irssi as C{alice}, not connected yet, at its prompt; ended after the
    test.
    """
    for program in ("tmux", "irssi"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed: .ci/run installs Debian's {program}")
    client = Irssi(tmp_path / "irssi", "alice")
    try:
        client.wait_for("[(status)]")
        yield client
    finally:
        client.close()


def error_replies(rawlog: str) -> list[str]:
    """
    The lines of irssi's C{rawlog} (C{<<} sent, C{>>} received) where the
    server answered with an error numeric (400 to 599) after 001, but for
    422 (no MOTD), part of the welcome burst (docs/irc.md, 2.4). Before
    001, irssi's C{JOIN :} probe is answered with 451 on purpose
    (docs/irc.md, section 8, unit tests 2).
    """
    lines = rawlog.splitlines()
    welcome = next(i for i, line in enumerate(lines) if re.match(r">> :\S+ 001 ", line))
    return [
        line
        for line in lines[welcome:]
        if re.match(r">> :\S+ [45]\d\d ", line) and not re.match(r">> :\S+ 422 ", line)
    ]


def test_irssi_and_telnet_user_talk(server: ChatServer, irssi: Irssi, tmp_path: Path) -> None:
    """
    irssi connects and is put in #lobby, and its join sync (MODE #lobby,
    WHO #lobby, MODE #lobby b) completes without an error numeric, on the
    wire or on the screen; a message to #lobby reaches a telnet user as
    C{<alice> hello from irssi}, the telnet user's line shows in irssi's
    #lobby window, and C{/quit bye} ends irssi and shows the telnet user
    C{*** alice has left (bye)}.
    """
    irssi.send(f"/connect 127.0.0.1 {server.irc_ports[0]}")
    irssi.wait_for("Join to #lobby was synced")
    bob = register(server, "bob")
    try:
        irssi.wait_for("bob [bob@twistedchat] has joined #lobby")

        irssi.send("/msg #lobby hello from irssi")
        assert bob.expect("<alice>") == "<alice> hello from irssi"
        bob.send("hi irssi")
        lobby = irssi.wait_for("bob> hi irssi")
        assert "[#lobby]" in lobby, lobby

        irssi.send("/window 1")
        status = irssi.wait_for("[(status)]")
        assert "Welcome to" in status, status
        for screen in (lobby, status):
            assert not [error for error in ERRORS if error in screen], screen

        rawlog = tmp_path / "rawlog"
        irssi.send(f"/rawlog save {rawlog}")
        irssi.send("/echo rawlog saved")
        irssi.wait_for("rawlog saved")
        wire = rawlog.read_text()
        for request, reply in (
            ("<< MODE #lobby", " 324 alice #lobby "),
            ("<< WHO #lobby", " 315 alice #lobby "),
            ("<< MODE #lobby b", " 368 alice #lobby "),
        ):
            assert f"\n{request}\n" in wire and reply in wire, wire
        assert error_replies(wire) == [], wire

        irssi.send("/quit bye")
        assert bob.expect("*** alice") == "*** alice has left (bye)"
        deadline = time.monotonic() + TIMEOUT
        while not irssi.exited():
            assert time.monotonic() < deadline, "irssi did not exit after /quit"
            time.sleep(0.05)
    finally:
        bob.close()
