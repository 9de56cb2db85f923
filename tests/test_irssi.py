"""
End-to-end test of C{--irc} with a real terminal IRC client
(docs/irc.md, section 8, "A real terminal client"): Debian's C{irssi},
run in C{tmux} on a tmux server of its own, typed into with C{send-keys}
and read with C{capture-pane}, against the real C{twistd -n chat}, with
a telnet user in #lobby. C{.ci/run} installs both programs.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from realserver import TIMEOUT, ChatServer, register

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


def running(pid: int) -> bool:
    """
    Whether process C{pid} is alive: it exists and is not a zombie.
    """
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


class Irssi:
    """
    C{irssi} with its home in C{home} (created, with a configuration
    file), registering as C{nickname}, in a tmux session on a tmux server
    of its own (its own socket name, no configuration file), so it never
    touches another tmux server. L{close} ends both.
    """

    def __init__(self, home: Path, nickname: str) -> None:
        home.mkdir()
        (home / "config").write_text(CONFIG.format(nickname=nickname))
        self.socket = f"twistedchat-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.environment = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.tmux(
            "new-session",
            "-d",
            "-s",
            "irssi",
            "-x",
            "200",
            "-y",
            "50",
            "irssi",
            f"--home={home}",
            "--noconnect",
            "-n",
            nickname,
        )
        pids, socket_path = self.tmux(
            "display-message", "-p", "#{pid} #{pane_pid}\n#{socket_path}"
        ).splitlines()
        self.pids = [int(pid) for pid in pids.split()]
        self.socket_path = Path(socket_path)

    def tmux(self, *arguments: str, check: bool = True) -> str:
        """
        Run a tmux command on this tmux server; return what it printed.

        @raise subprocess.CalledProcessError: with C{check}, it failed.
        """
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *arguments],
            capture_output=True,
            text=True,
            check=check,
            timeout=TIMEOUT,
            env=self.environment,
        ).stdout

    def type(self, line: str) -> None:
        """
        Type C{line} (literally, no tmux key names) and Enter.
        """
        self.tmux("send-keys", "-t", "irssi", "-l", line)
        self.tmux("send-keys", "-t", "irssi", "Enter")

    def screen(self) -> str:
        """
        What the terminal shows now: irssi's current window, its status
        bar and its prompt (such as C{[#lobby]}), without what is being
        typed after the prompt, so a line typed but not yet handled never
        counts as shown.
        """
        lines = self.tmux("capture-pane", "-p", "-t", "irssi").rstrip("\n").split("\n")
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

    def exited(self) -> bool:
        """
        Whether irssi has ended.
        """
        return not running(self.pids[1])

    def close(self) -> None:
        """
        Kill the tmux server, which hangs up on irssi; kill whichever of
        the two is still running after TIMEOUT seconds; remove the tmux
        server's socket.
        """
        self.tmux("kill-server", check=False)
        deadline = time.monotonic() + TIMEOUT
        while any(running(pid) for pid in self.pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        self.socket_path.unlink(missing_ok=True)


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
    irssi.type(f"/connect 127.0.0.1 {server.irc_ports[0]}")
    irssi.wait_for("Join to #lobby was synced")
    bob = register(server, "bob")
    try:
        irssi.wait_for("bob [bob@twistedchat] has joined #lobby")

        irssi.type("/msg #lobby hello from irssi")
        assert bob.expect("<alice>") == "<alice> hello from irssi"
        bob.send("hi irssi")
        lobby = irssi.wait_for("bob> hi irssi")
        assert "[#lobby]" in lobby, lobby

        irssi.type("/window 1")
        status = irssi.wait_for("[(status)]")
        assert "Welcome to" in status, status
        for screen in (lobby, status):
            assert not [error for error in ERRORS if error in screen], screen

        rawlog = tmp_path / "rawlog"
        irssi.type(f"/rawlog save {rawlog}")
        irssi.type("/echo rawlog saved")
        irssi.wait_for("rawlog saved")
        wire = rawlog.read_text()
        for request, reply in (
            ("<< MODE #lobby", " 324 alice #lobby "),
            ("<< WHO #lobby", " 315 alice #lobby "),
            ("<< MODE #lobby b", " 368 alice #lobby "),
        ):
            assert f"\n{request}\n" in wire and reply in wire, wire
        assert error_replies(wire) == [], wire

        irssi.type("/quit bye")
        assert bob.expect("*** alice") == "*** alice has left (bye)"
        deadline = time.monotonic() + TIMEOUT
        while not irssi.exited():
            assert time.monotonic() < deadline, "irssi did not exit after /quit"
            time.sleep(0.05)
    finally:
        bob.close()
