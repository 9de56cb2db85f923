"""
Thousands of raw chat clients in one process, for storm.py and rooms.py.

A L{Crowd} opens non-blocking TCP connections to a server on 127.0.0.1,
each from a loopback source address of its own group (127.G.x.y, so that
ephemeral ports never run short and the server's per-address limits, were
they on, would never see two hundred clients as one), sends each client's
nickname as soon as it is connected and hands every chunk a client
receives to a handler, with one epoll object and no threads. It notices
connections that fail and clients the server closes or resets ("cut off"),
with the last thing each was told.

Also here: the server command line every benchmark of these two uses, and
the open-files limit.
"""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

#: The bin directory of the virtualenv running this script: its twistd
#: runs the server unless --bin says otherwise.
BIN = Path(sys.executable).parent

#: Lift flood control (lines and bytes), the per-address limits (loopback
#: exempt) and the connection limit, and keep history in memory only: the
#: clients all come from 127/8 and a benchmark measures fan-out, not the
#: limits. --max-clients 0 means no limit (the default is 10,000).
BENCH_OPTIONS = (
    "--flood-rate",
    "0",
    "--flood-bytes",
    "0",
    "--exempt",
    "127.0.0.0/8",
    "--max-clients",
    "0",
    "--database",
    ":memory:",
)

#: Linux's IP_BIND_ADDRESS_NO_PORT (ip(7)): bind() takes the source address
#: only and connect() picks the port, unique per destination, so one
#: address serves tens of thousands of connections.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

#: Bytes asked of recv() at a time: CPython allocates the whole buffer on
#: every call, so 1 MiB costs ten times as much as 64 KiB (bench/README.md).
RECV_SIZE = 65536

#: Bytes of each client's input kept to say what it was told last.
LAST_BYTES = 160


def server_command(bin_dir: Path, options: Sequence[str]) -> list[str]:
    """
    The command line that runs C{twistd -n chat} from C{bin_dir} on a free
    port of 127.0.0.1 with L{BENCH_OPTIONS}, then C{options}.
    """
    return [
        str(bin_dir / "twistd"),
        "-n",
        "--pidfile=",
        "--logfile=-",
        "chat",
        "--port",
        "tcp:0:interface=127.0.0.1",
        *BENCH_OPTIONS,
        *options,
    ]


def default_label(bin_dir: Path) -> str:
    """
    Name a server after the directory holding its virtualenv
    (C{/tmp/wt/.venv/bin} is C{wt}).
    """
    return bin_dir.absolute().parent.parent.name or str(bin_dir)


def raise_open_files(clients: int) -> None:
    """
    Raise this process's open-files limit to its hard limit, which the
    server started from here inherits (it raises its own to the hard limit
    too).

    @raise SystemExit: the hard limit is too low for C{clients} connections.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if clients + 100 > hard:
        raise SystemExit(
            f"{clients} clients need more than {hard} open files (the hard limit); "
            "raise it with ulimit -Hn as root first"
        )


def own_cpu_seconds() -> float:
    """
    CPU time (user + system, seconds) this process has used so far.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: Called with a client's index, the bytes it just received and
#: C{time.monotonic()} when they were read.
Handler = Callable[[int, bytes, float], None]


class Crowd:
    """
    Chat clients C{0 .. n-1} of one process. Client C{i} is nickname
    C{prefix + str(i)} and connects from 127.C{group}.x.y, a new address
    every C{per_address} clients.
    """

    def __init__(self, port: int, group: int, prefix: str, per_address: int = 1000) -> None:
        self.port = port
        self.group = group
        self.prefix = prefix.encode()
        self.per_address = per_address
        self.poller = select.epoll()
        self.sockets: list[socket.socket | None] = []
        self.by_fd: dict[int, int] = {}
        self.connecting: set[int] = set()
        #: C{time.monotonic()} when each client's connection was
        #: established (0: not yet).
        self.connected_at: list[float] = []
        #: Why the clients no longer connected are gone, by index: the
        #: connection failed, or the server closed or reset it.
        self.gone: dict[int, str] = {}
        self.last_bytes: list[bytes] = []
        self.bytes_received = 0
        #: C{time.monotonic()} of the last chunk any client received.
        self.last_receive = 0.0

    def source(self, index: int) -> str:
        """
        The loopback source address of client C{index}.
        """
        block = index // self.per_address
        return f"127.{self.group}.{block // 254}.{block % 254 + 1}"

    def connect(self, count: int) -> None:
        """
        Start C{count} more connections at once (non-blocking); each client
        sends its nickname line as soon as its connection is established
        (in L{pump}).
        """
        for _ in range(count):
            index = len(self.sockets)
            sock = socket.socket()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source(index), 0))
            self.sockets.append(sock)
            self.connected_at.append(0.0)
            self.last_bytes.append(b"")
            error = sock.connect_ex(("127.0.0.1", self.port))
            if error not in (0, errno.EINPROGRESS):
                self._drop(index, f"could not connect: {os.strerror(error)}")
                continue
            self.by_fd[sock.fileno()] = index
            self.connecting.add(index)
            self.poller.register(sock.fileno(), select.EPOLLOUT)

    def pump(self, timeout: float, handler: Handler) -> None:
        """
        Wait up to C{timeout} seconds for events, then handle those that
        came: finish connections (sending the nickname), read at most one
        chunk per ready client and pass it to C{handler}, and note clients
        the server closed or reset.
        """
        for fd, _ in self.poller.poll(timeout):
            index = self.by_fd[fd]
            sock = self.sockets[index]
            assert sock is not None
            if index in self.connecting:
                self.connecting.discard(index)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self._drop(index, f"could not connect: {os.strerror(error)}")
                    continue
                self.connected_at[index] = time.monotonic()
                sock.send(b"%s%d\r\n" % (self.prefix, index))
                self.poller.modify(fd, select.EPOLLIN)
                continue
            try:
                data = sock.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as e:
                self._drop(index, f"reset by the server ({e.strerror})")
                continue
            if not data:
                self._drop(index, "closed by the server")
                continue
            now = time.monotonic()
            self.bytes_received += len(data)
            self.last_receive = now
            self.last_bytes[index] = (self.last_bytes[index] + data)[-LAST_BYTES:]
            handler(index, data, now)

    def send(self, index: int, data: bytes) -> bool:
        """
        Send C{data} (a few lines) from client C{index}; return whether it
        all went into the socket at once (it is dropped otherwise).
        """
        sock = self.sockets[index]
        if sock is None or index in self.connecting:
            return False
        try:
            return sock.send(data) == len(data)
        except OSError:
            return False

    def why_gone(self, limit: int = 3) -> str:
        """
        Say what became of the first C{limit} clients that are gone, with
        the last line each was told.
        """
        parts = []
        for index, reason in list(self.gone.items())[:limit]:
            last = self.last_bytes[index].rstrip(b"\r\n").rpartition(b"\n")[2]
            told = last.decode("utf-8", "replace").strip()
            parts.append(f"client {index} {reason}" + (f", last told {told!r}" if told else ""))
        return "; ".join(parts)

    def _drop(self, index: int, reason: str) -> None:
        sock = self.sockets[index]
        if sock is None:
            return
        self.gone[index] = reason
        self.connecting.discard(index)
        if sock.fileno() in self.by_fd:
            self.poller.unregister(sock.fileno())
            del self.by_fd[sock.fileno()]
        sock.close()
        self.sockets[index] = None

    def close(self) -> None:
        """
        Close every connection.
        """
        for sock in self.sockets:
            if sock is not None:
                sock.close()
        self.sockets = [None] * len(self.sockets)
        self.by_fd.clear()
        self.poller.close()
