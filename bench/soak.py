"""
Soak: a steady chat among many clients while others keep connecting and
disconnecting (quitting, closing, resetting), for a fixed time.

At the end it prints the server's RSS after warm-up and at the end, lines
sent and delivered between the steady clients (each must get every line
the others sent: nothing lost to a connected reader), and how many
tracebacks the server logged. Everything runs on 127.0.0.1 and stops by
itself after --duration seconds (plus at most --timeout to drain).

Usage: python bench/soak.py --clients 1000 --duration 300
"""

from __future__ import annotations

import argparse
import random
import resource
import select
import socket
import struct
import time

from loadgen import Server, server_command

MARK = b"#s"  # starts every line a steady client sends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000, help="steady clients")
    parser.add_argument("--duration", type=float, default=300, help="seconds of load")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before the RSS baseline")
    parser.add_argument("--rate", type=float, default=100, help="lines/s from all steady clients")
    parser.add_argument("--churn", type=float, default=20, help="short-lived connections/s")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to drain at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--server",
        default="twistedchat",
        help="twistedchat (history in memory) or twistedchat-db (on disk); see loadgen.py",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # Flood control stays on (steady clients send far below it).
    server = Server(server_command(args.server, ["--flood-rate", "2", "--max-clients", "0"]))
    poller = select.epoll()
    steady: list[socket.socket] = []
    by_fd: dict[int, int] = {}
    received = [0] * args.clients
    tails = [b""] * args.clients
    sent = [0] * args.clients
    barrier_seen: set[int] = set()

    def read_ready(timeout: float) -> None:
        for fd, _ in poller.poll(timeout):
            index = by_fd[fd]
            try:
                data = steady[index].recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise SystemExit(f"the server closed steady client {index}")
            chunk = tails[index] + data
            received[index] += chunk.count(MARK)
            if b"#barrier" in chunk:
                barrier_seen.add(index)
            tails[index] = data[-1:]

    try:
        for index in range(args.clients):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"s%d\r\n" % index)
            data = b""
            while b"Welcome" not in data:
                data += sock.recv(65536)
            sock.setblocking(False)
            steady.append(sock)
            by_fd[sock.fileno()] = index
            poller.register(sock.fileno(), select.EPOLLIN)
        read_ready(1)
        received = [0] * args.clients

        churners: list[tuple[float, socket.socket]] = []
        churned = resets = 0
        start = time.monotonic()
        rss_warm = None
        lines = 0
        next_churn = start
        while (now := time.monotonic()) - start < args.duration:
            if rss_warm is None and now - start >= args.warmup:
                rss_warm = server.memory()[0]
            due = int((now - start) * args.rate) - lines
            for _ in range(due):
                index = rng.randrange(args.clients)
                steady[index].send(
                    b"%s%d:%d hello from a steady client\r\n" % (MARK, index, sent[index])
                )
                sent[index] += 1
                lines += 1
            while next_churn <= now:
                next_churn += 1 / args.churn
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.setblocking(False)
                sock.send(b"c%d\r\n#c%d passing by\r\n" % (churned, churned))
                churned += 1
                churners.append((now + rng.uniform(0, 2), sock))
            keep = []
            for deadline, sock in churners:
                if deadline > now:
                    keep.append((deadline, sock))
                    continue
                way = rng.randrange(3)
                if way == 0:
                    try:
                        sock.send(b"/quit soak\r\n")
                    except OSError:
                        pass
                elif way == 1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    resets += 1
                sock.close()
            churners = keep
            read_ready(0.01)
        for _, sock in churners:
            sock.close()
        load_seconds = time.monotonic() - start

        steady[0].send(b"#barrier\r\n")
        drain_start = time.monotonic()
        while len(barrier_seen) < args.clients - 1:
            if time.monotonic() - drain_start > args.timeout:
                raise SystemExit(f"{args.clients - 1 - len(barrier_seen)} clients did not drain")
            read_ready(1)
        rss_end = server.memory()[0]

        total = sum(sent)
        expected = [total - sent[i] for i in range(args.clients)]
        lost = sum(max(0, e - r) for e, r in zip(expected, received, strict=True))
        extra = sum(max(0, r - e) for e, r in zip(expected, received, strict=True))
        tracebacks = sum("Traceback" in line or "Unhandled" in line for line in server.log)
        assert rss_warm is not None
        print(
            f"{args.server}: {args.clients} steady clients, {load_seconds:.0f} s of load, "
            f"seed {args.seed}"
        )
        print(f"lines sent by steady clients: {total:,} ({total / load_seconds:.0f}/s)")
        print(f"deliveries expected: {sum(expected):,}; delivered: {sum(received):,}")
        print(f"lost: {lost:,}; unexpected extra: {extra:,}")
        print(f"short-lived connections: {churned:,} ({resets:,} reset)")
        print(
            f"server RSS: {rss_warm:.1f} MiB after {args.warmup:g} s warm-up, {rss_end:.1f} MiB at "
            f"the end ({(rss_end - rss_warm) / rss_warm:+.1%})"
        )
        print(f"tracebacks or unhandled errors in the server log: {tracebacks}")
    finally:
        for sock in steady:
            sock.close()
        poller.close()
        server.stop()


if __name__ == "__main__":
    main()
