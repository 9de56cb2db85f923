"""
Load generator: starts a chat server, connects N clients on 127.0.0.1,
has S of them send lines, and prints fan-out deliveries per second,
send-to-receive latency percentiles and the server's memory.

Each sender keeps at most --window of its lines in flight (sent but not yet
received by the probe client, which joined last and so is served last), so
the server runs flat out without the generator queueing without bound.
Every run is bounded by --lines and --timeout and stops by itself.

Usage:
    python bench/loadgen.py                      # twistedchat vs the howto server
    python bench/loadgen.py --servers twistedchat --clients 200 --senders 20
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PAYLOAD = re.compile(rb"\|(\d+)\|(\d+)\|(\d+)\|")


def server_command(name: str, extra: list[str]) -> list[str]:
    """
    The command line that starts server C{name} on a free loopback port:
    C{howto}, C{twistedchat} (history in memory only, C{--database
    :memory:}) or C{twistedchat-db} (history written to a new SQLite file).
    twistedchat runs without flood control (by lines and by bytes) and
    with loopback exempt from the per-address limits, since every client
    comes from 127.0.0.1 and sends as fast as it can.
    """
    if name == "howto":
        return [sys.executable, str(HERE / "howto_server.py"), "0"]
    if name == "twistedchat-db":
        database = tempfile.mkdtemp(prefix="twistedchat-bench-") + "/bench.sqlite3"
    elif name == "twistedchat":
        database = ":memory:"
    else:
        raise SystemExit(f"unknown server {name!r}")
    return [
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        "--logfile=-",
        "chat",
        "--port",
        "tcp:0:interface=127.0.0.1",
        "--flood-rate",
        "0",
        "--flood-bytes",
        "0",
        "--exempt",
        "127.0.0.0/8",
        "--database",
        database,
        *extra,
    ]


class Server:
    """
    A server subprocess; C{port} is where it listens.
    """

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.port = 0
        self.log: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for raw in self.process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.log.append(line)
                match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
                if match:
                    self.port = int(match.group(1))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise SystemExit("server did not start:\n" + "\n".join(self.log))

    def memory(self) -> tuple[float, float]:
        """
        Return the server's current and peak resident memory, in MiB.
        """
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def cpu_seconds(self) -> float:
        """
        Return the CPU time the server has used so far (user + system).
        """
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """
        Stop the server and wait for it.
        """
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Client:
    """
    One chat connection of the load generator.
    """

    sock: socket.socket
    index: int
    received: int = 0
    tail: bytes = b""
    buffer: bytes = b""
    outgoing: bytearray = field(default_factory=bytearray)
    sent_lines: int = 0


def register(port: int, index: int, receive_buffer: int = 0) -> socket.socket:
    """
    Connect client C{index} as nickname cC{index} and wait for its welcome.
    """
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"c{index}\r\n".encode())
    data = b""
    while b"Welcome" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"client {index} was closed while registering")
        data += chunk
    return sock


def connect(port: int, count: int, stalled: int) -> tuple[list[Client], list[socket.socket]]:
    """
    Connect and register C{count} reading clients and C{stalled} clients
    that will never read (with a 4 KiB receive buffer), one after another;
    the last reading client joins last. Then wait until every reading
    client has seen a marker line sent by the last, so that no join notice
    is still on its way when the measurement starts.
    """
    clients = [Client(register(port, index), index) for index in range(count - 1)]
    stalled_sockets = [register(port, count + i, 4096) for i in range(stalled)]
    clients.append(Client(register(port, count - 1), count - 1))
    clients[-1].sock.sendall(b"barrier\r\n")
    for client in clients[:-1]:
        data = b""
        while b"\r\n" not in data.partition(b"barrier")[2]:
            data += client.sock.recv(65536)
        client.buffer = data.partition(b"barrier")[2].partition(b"\r\n")[2]
    for client in clients:
        client.sock.setblocking(False)
    return clients, stalled_sockets


def cut_off(sock: socket.socket) -> bool:
    """
    Return whether the server has closed C{sock} (a stalled client),
    reading what it holds for at most two seconds.
    """
    sock.settimeout(2)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def run(name: str, args: argparse.Namespace) -> dict[str, float]:
    """
    Start server C{name}, run one measurement, stop the server, and
    return the figures.
    """
    server = Server(server_command(name, args.server_option))
    try:
        clients, stalled = connect(server.port, args.clients, args.stalled)
        rss_idle, _ = server.memory()
        server_cpu = server.cpu_seconds()
        own_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        figures = measure(clients, args)
        figures["server_cpu"] = (server.cpu_seconds() - server_cpu) / figures["seconds"]
        figures["own_cpu"] = (
            sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - own_cpu
        ) / figures["seconds"]
        figures["rss_idle"] = rss_idle
        figures["rss_end"], figures["rss_peak"] = server.memory()
        figures["cut_off"] = sum(cut_off(sock) for sock in stalled)
        for sock in stalled:
            sock.close()
        for client in clients:
            client.sock.close()
    finally:
        server.stop()
    return figures


def measure(clients: list[Client], args: argparse.Namespace) -> dict[str, float]:
    """
    Send C{args.lines} lines from each of the first C{args.senders}
    clients and count deliveries until every line reached every other
    client or C{args.timeout} seconds passed.
    """
    senders = clients[: args.senders]
    probe = clients[-1]
    assert probe not in senders, "need more clients than senders"
    seen_by_probe = [0] * len(senders)
    latencies: list[float] = []
    expected = sum(
        args.lines * (len(senders) - (1 if client in senders else 0)) for client in clients
    )
    by_fd = {client.sock.fileno(): client for client in clients}
    poller = select.epoll()
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    writing: set[int] = set()
    padding = b"x" * max(1, args.size - 40)
    total = 0
    start = time.monotonic()
    deadline = start + args.timeout
    while total < expected and time.monotonic() < deadline:
        for sender in senders:
            in_flight = sender.sent_lines - seen_by_probe[sender.index]
            window = args.window or (1 << 62)
            while (
                in_flight < window
                and sender.sent_lines < args.lines
                and len(sender.outgoing) < 65536
            ):
                sender.outgoing += b"|%d|%d|%d|%s\r\n" % (
                    sender.index,
                    sender.sent_lines,
                    time.monotonic_ns(),
                    padding,
                )
                sender.sent_lines += 1
                in_flight += 1
            if sender.outgoing:
                try:
                    sent = sender.sock.send(sender.outgoing)
                except BlockingIOError:
                    sent = 0
                del sender.outgoing[:sent]
                fd = sender.sock.fileno()
                if sender.outgoing and fd not in writing:
                    writing.add(fd)
                    poller.modify(fd, select.EPOLLIN | select.EPOLLOUT)
                elif not sender.outgoing and fd in writing:
                    writing.discard(fd)
                    poller.modify(fd, select.EPOLLIN)
        for fd, events in poller.poll(0.5):
            if not events & select.EPOLLIN:
                continue
            client = by_fd[fd]
            try:
                data = client.sock.recv(1 << 18)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    continue
                if e.errno == errno.ECONNRESET:
                    # twistedchat cuts off a reader that falls more than
                    # --max-sendq behind ("SendQ exceeded").
                    raise SystemExit(f"server reset client {client.index}") from None
                raise
            if not data:
                raise SystemExit(f"server closed client {client.index}")
            # Count payload lines only (not notices such as "has left"):
            # each has "|x", where its padding starts; a chunk may split it.
            lines = (client.tail + data).count(b"|x")
            client.tail = data[-1:]
            client.received += lines
            total += lines
            if client is probe:
                now = time.monotonic_ns()
                client.buffer += data
                *complete, client.buffer = client.buffer.split(b"\r\n")
                for line in complete:
                    match = PAYLOAD.search(line)
                    if match:
                        seen_by_probe[int(match.group(1))] += 1
                        latencies.append((now - int(match.group(3))) / 1e6)
    elapsed = time.monotonic() - start
    poller.close()
    latencies.sort()
    return {
        "deliveries": total,
        "expected": expected,
        "seconds": elapsed,
        "rate": total / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers",
        default="howto,twistedchat",
        help="comma-separated: howto, twistedchat, twistedchat-db",
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--lines", type=int, default=500, help="lines each sender sends")
    parser.add_argument("--size", type=int, default=100, help="bytes per line sent")
    parser.add_argument(
        "--window", type=int, default=20, help="lines in flight per sender; 0: no limit"
    )
    parser.add_argument(
        "--stalled", type=int, default=0, help="extra clients that register and never read"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per server, alternating; the median is reported"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run at most")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="extra option for twistd chat (besides --flood-rate 0 --flood-bytes 0 --exempt ...)",
    )
    args = parser.parse_args()
    names = args.servers.split(",")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    print(
        f"{args.clients} clients ({args.stalled} more stalled), {args.senders} senders x "
        f"{args.lines} lines of {args.size} bytes, window {args.window or 'unlimited'}, "
        f"{args.repeat} runs each"
    )
    for run_number in range(args.repeat):
        for name in names:
            figures = run(name, args)
            results[name].append(figures)
            print(
                f"  run {run_number + 1} {name:12} {figures['rate']:>10,.0f} deliveries/s "
                f"p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms  "
                f"RSS {figures['rss_end']:6.1f} MiB (peak {figures['rss_peak']:.1f})  "
                f"CPU server {figures['server_cpu']:.0%} generator {figures['own_cpu']:.0%}  "
                f"{figures['deliveries']:,}/{figures['expected']:,} delivered, "
                f"{figures['cut_off']}/{args.stalled} stalled cut off",
                flush=True,
            )
    print(
        f"\n{'server':12} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'RSS MiB':>8} {'peak MiB':>9} {'complete':>9}"
    )
    for name, runs in results.items():
        median = sorted(runs, key=lambda f: f["rate"])[len(runs) // 2]
        complete = all(f["deliveries"] == f["expected"] for f in runs)
        print(
            f"{name:12} {median['rate']:>12,.0f} {median['p50']:>8.1f} {median['p99']:>8.1f} "
            f"{median['rss_end']:>8.1f} {median['rss_peak']:>9.1f} {'yes' if complete else 'NO':>9}"
        )


if __name__ == "__main__":
    main()
