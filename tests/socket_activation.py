"""
Start a command as systemd's socket activation does (sd_listen_fds(3)):
listen on 127.0.0.1 on a free port, hand the socket over as file
descriptor 3 with LISTEN_FDS=1 and LISTEN_PID set to the process that
will run the command (this one: exec keeps the process id), then exec the
command. The tests use it as L{realserver.ChatServer}'s launcher.

Usage: python socket_activation.py COMMAND [ARGUMENT...]
"""

from __future__ import annotations

import os
import socket
import sys


def main() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    if listener.fileno() == 3:
        os.set_inheritable(3, True)
    else:
        os.dup2(listener.fileno(), 3)  # inheritable, as dup2 makes it
    os.environ["LISTEN_FDS"] = "1"
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDNAMES"] = "chat"
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
