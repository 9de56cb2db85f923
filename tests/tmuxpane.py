"""
Test support for driving a real terminal program: the program in a tmux
session on a tmux server of its own (its own socket name, no
configuration file), so it never touches another tmux server; typed into
with C{send-keys}, read with C{capture-pane}. C{.ci/run} installs tmux.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from realserver import TIMEOUT


def running(pid: int) -> bool:
    """
    Whether process C{pid} is alive: it exists and is not a zombie.
    """
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


class TmuxPane:
    """
    C{command} in a C{width}xC{height} tmux session called C{session}.
    L{close} ends the tmux server and the program.

    @ivar pids: the tmux server's process and the program's.
    """

    def __init__(
        self,
        session: str,
        width: int,
        height: int,
        command: list[str],
        environment: dict[str, str] | None = None,
    ) -> None:
        self.session = session
        self.socket = f"twistedchat-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.environment = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.environment.update(environment or {})
        self.pids: list[int] = []
        self.socket_path: Path | None = None
        try:
            self.tmux(
                "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), *command
            )
            pids, socket_path = self.tmux(
                "display-message", "-p", "-t", session, "#{pid} #{pane_pid}\n#{socket_path}"
            ).splitlines()
            self.pids = [int(pid) for pid in pids.split()]
            self.socket_path = Path(socket_path)
        except BaseException:
            self.close()
            raise

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

    def type(self, text: str) -> None:
        """
        Type C{text} literally (no tmux key names), without Enter.
        """
        self.tmux("send-keys", "-t", self.session, "-l", text)

    def keys(self, *names: str) -> None:
        """
        Press the keys tmux calls C{names} (C{Enter}, C{Tab}, C{M-2}...).
        """
        self.tmux("send-keys", "-t", self.session, *names)

    def capture(self, escapes: bool = False) -> str:
        """
        The pane's text now; with C{escapes}, with the SGR sequences of its
        colours (C{capture-pane -e}).
        """
        options = ["-e"] if escapes else []
        return self.tmux("capture-pane", "-p", *options, "-t", self.session)

    def display(self, variable: str) -> str:
        """
        The pane's tmux format C{variable} (C{pane_title}, C{alternate_on}...).
        """
        return self.tmux("display-message", "-p", "-t", self.session, f"#{{{variable}}}").rstrip(
            "\n"
        )

    def exited(self) -> bool:
        """
        Whether the program has ended.
        """
        return len(self.pids) > 1 and not running(self.pids[1])

    def close(self) -> None:
        """
        Kill the tmux server, which hangs up on the program; kill whichever
        of the two is still running after TIMEOUT seconds; remove the tmux
        server's socket.
        """
        self.tmux("kill-server", check=False)
        deadline = time.monotonic() + TIMEOUT
        while any(running(pid) for pid in self.pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
