"""
Many connections: a join storm, then thousands of idle registered clients,
their memory, and how long one broadcast takes to reach all of them.

1. Join storm: C{--storm} clients connect at once and register; each join
   is announced to everyone present. Done when every client has seen a
   marker line sent after the last join.
2. Growth: more clients join, in batches, up to C{--clients}.
3. Memory: the server's RSS with all of them registered and idle, against
   its RSS before the first client, per client.
4. Broadcast: one client sends one line; the time until every other
   client has it.

Everything runs on 127.0.0.1 and stops by itself (C{--timeout} per phase).

Usage: python bench/manyclients.py --clients 15000 --storm 2000
"""

from __future__ import annotations

import argparse
import resource
import select
import socket
import statistics
import time

from loadgen import Server, server_command


class Crowd:
    """
    Raw, non-blocking chat clients watched with one epoll object; each
    client's received bytes are scanned for what the phase waits for.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[socket.socket] = []
        self.poller = select.epoll()
        self.by_fd: dict[int, int] = {}
        self.tails: list[bytes] = []

    def connect(self, count: int) -> None:
        """
        Open C{count} more connections, each sending its nickname at once.
        """
        for _ in range(count):
            index = len(self.sockets)
            sock = socket.socket()
            sock.connect(("127.0.0.1", self.port))
            sock.setblocking(False)
            sock.send(b"n%d\r\n" % index)
            self.sockets.append(sock)
            self.tails.append(b"")
            self.by_fd[sock.fileno()] = index
            self.poller.register(sock.fileno(), select.EPOLLIN)

    def wait_for(self, marker: bytes, clients: range, timeout: float) -> float:
        """
        Read from every client until each one in C{clients} has received
        C{marker}; return the seconds it took.

        @raise SystemExit: after C{timeout} seconds, or if the server
            closes a client.
        """
        start = time.monotonic()
        waiting = set(clients)
        while waiting:
            if time.monotonic() - start > timeout:
                raise SystemExit(f"{len(waiting)} clients still waiting for {marker!r}")
            for fd, _ in self.poller.poll(1):
                index = self.by_fd[fd]
                try:
                    data = self.sockets[index].recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise SystemExit(f"the server closed client {index}")
                if index in waiting and marker in self.tails[index] + data:
                    waiting.discard(index)
                self.tails[index] = data[-len(marker) :]
        return time.monotonic() - start

    def say(self, index: int, text: bytes) -> None:
        """
        Send a chat line from client C{index}.
        """
        self.sockets[index].send(text + b"\r\n")

    def close(self) -> None:
        """
        Close every connection.
        """
        for sock in self.sockets:
            sock.close()
        self.poller.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=15000)
    parser.add_argument("--storm", type=int, default=2000, help="clients in the join storm")
    parser.add_argument("--batch", type=int, default=1000, help="clients per growth step")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase at most")
    parser.add_argument("--broadcasts", type=int, default=10, help="broadcasts to time")
    parser.add_argument(
        "--server", default="twistedchat", help="twistedchat or twistedchat-db (see loadgen.py)"
    )
    parser.add_argument(
        "--server-option", action="append", default=[], help="extra option for twistd chat"
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.clients + 100 > hard:
        raise SystemExit(f"{args.clients} clients need more than {hard} open files")
    server = Server(
        server_command(
            args.server, ["--max-clients", "0", "--sendq-timeout", "120", *args.server_option]
        )
    )
    crowd = Crowd(server.port)
    try:
        rss_empty, _ = server.memory()
        print(f"server RSS with no clients: {rss_empty:.1f} MiB")

        start = time.monotonic()
        crowd.connect(args.storm)
        crowd.say(args.storm - 1, b"storm-done")
        crowd.wait_for(b"storm-done", range(args.storm - 1), args.timeout)
        storm = time.monotonic() - start
        notices = args.storm * (args.storm - 1) // 2
        print(
            f"join storm: {args.storm} clients registered and {notices:,} join notices "
            f"delivered in {storm:.2f} s"
        )

        start = time.monotonic()
        while len(crowd.sockets) < args.clients:
            crowd.connect(min(args.batch, args.clients - len(crowd.sockets)))
            last = len(crowd.sockets) - 1
            crowd.say(last, b"batch-%d" % last)
            crowd.wait_for(b"batch-%d" % last, range(last), args.timeout)
        print(f"grew to {args.clients} registered clients in {time.monotonic() - start:.1f} s")

        rss_full, _ = server.memory()
        per_client = (rss_full - rss_empty) * 1024 / args.clients
        print(
            f"server RSS with {args.clients} idle registered clients: {rss_full:.1f} MiB, "
            f"{per_client:.2f} KiB per client"
        )

        times = []
        server_cpu = server.cpu_seconds()
        for attempt in range(args.broadcasts):
            marker = b"broadcast-%d" % attempt
            start = time.monotonic()
            crowd.say(0, marker)
            times.append(crowd.wait_for(marker, range(1, args.clients), args.timeout))
        server_cpu = (server.cpu_seconds() - server_cpu) / args.broadcasts
        print(
            f"one line to {args.clients - 1} clients: "
            + ", ".join(f"{t * 1000:.0f} ms" for t in times)
            + f" ({args.broadcasts} broadcasts; best {min(times) * 1000:.0f} ms, "
            f"median {statistics.median(times) * 1000:.0f} ms; "
            f"server CPU {server_cpu * 1000:.0f} ms per broadcast)"
        )
    finally:
        crowd.close()
        server.stop()


if __name__ == "__main__":
    main()
