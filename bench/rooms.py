"""
Rooms: N clients in R rooms of N/R, each client talking in its own room at
a steady pace; send-to-receive latency of every delivery and the server's
CPU share.

1. Setup: the --clients connections are opened at once (from 127.31.x.y
   source addresses, --per-address clients each); each client sends its
   nickname, waits for "*** Welcome", then sends "/join #roomK" (client i
   is in room i // (N/R)) and waits for the answer: a line naming the room
   (L{JOIN_SUCCESS}), or an error (a line starting "!!! "). A client that
   gets an error, or no answer within --setup-timeout, stops the run with
   what the server said: the server has no rooms, or refused.
2. Once every client is in its room and nobody has received anything for
   a second, each client sends a plain line (which goes to its current
   room, the one it joined last) every --interval seconds (10) for
   --duration seconds (60). Sends are spread evenly: one every
   interval/N seconds across the clients, and the members of a room take
   turns (a room's members send interval/(N/R) seconds apart), so nobody
   sends in lock step.
3. Each line carries its sender, a sequence number and its send time
   (time.monotonic_ns, one clock for the whole process); every receiving
   client takes the latency of every line it gets. After the last send
   the clients read for up to --drain seconds more; lines still missing
   then are lost.

It prints the deliveries (expected: each line to the sender's N/R - 1
room-mates), lost, misrouted (to a client of another room) and echoed
lines, p50/p99/max latency over every delivery, the server's and this
process's CPU share during the sending (a saturated generator shows
there, and in how late the sends were), the server's RSS, and the command
line.

Usage:
    python bench/rooms.py --clients 10000 --rooms 500
    python bench/rooms.py --clients 1000 --rooms 50 --duration 20
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import sys
import time
from array import array
from pathlib import Path

from crowd import BIN, Crowd, default_label, own_cpu_seconds, raise_open_files, server_command
from loadgen import PAYLOAD, Server

#: What the server says once a nickname is accepted.
WELCOME = b"*** Welcome, "
#: How a client knows that its /join worked: a line, after the command,
#: that names the room ({room}, regular-expression escaped) as a whole word
#: and is not an error. The server answers "*** You joined #room ..."; the
#: room's own traffic names it too, and only reaches members. Tighten it
#: here if the answer's wording settles.
JOIN_SUCCESS = r"{room}(?![\w-])"
#: Errors start with this; one after /join means the join failed.
ERROR = b"!!! "
#: Source addresses 127.31.x.y.
GROUP = 31
#: Seconds nobody may receive anything before the sending starts.
SETTLE = 1.0


def room_name(room: int) -> str:
    """
    The name of room number C{room}.
    """
    return f"#room{room}"


class Setup:
    """
    Registration and /join of every client: each one's progress, and the
    first answer that was not the one expected.
    """

    def __init__(self, crowd: Crowd, clients: int, room_size: int) -> None:
        self.crowd = crowd
        self.room_size = room_size
        self.buffers = [b""] * clients
        self.registered = 0
        self.joined = 0
        self.state = bytearray(clients)  # 0 connecting, 1 /join sent, 2 in the room, 3 refused
        self.refusals: list[str] = []
        self.patterns = [
            re.compile(JOIN_SUCCESS.format(room=re.escape(room_name(r))).encode())
            for r in range(clients // room_size)
        ]

    def received(self, index: int, data: bytes, now: float) -> None:
        """
        Follow client C{index}'s registration and /join (L{crowd.Handler}).
        """
        *lines, self.buffers[index] = (self.buffers[index] + data).split(b"\r\n")
        for line in lines:
            state = self.state[index]
            if state == 0 and line.startswith(WELCOME):
                self.registered += 1
                self.state[index] = 1
                room = room_name(index // self.room_size)
                if not self.crowd.send(index, f"/join {room}\r\n".encode()):
                    self.refuse(index, "could not send /join")
            elif state == 1 and line.startswith(ERROR):
                self.refuse(index, line.decode("utf-8", "replace"))
            elif state == 1 and self.patterns[index // self.room_size].search(line):
                self.joined += 1
                self.state[index] = 2

    def refuse(self, index: int, answer: str) -> None:
        """
        Note that client C{index}'s /join failed, with the server's
        C{answer}.
        """
        self.state[index] = 3
        self.refusals.append(f"client {index} ({room_name(index // self.room_size)}): {answer}")

    def done(self) -> bool:
        """
        Whether every client is in its room, refused, or gone.
        """
        return self.joined + len(self.refusals) + len(self.crowd.gone) >= len(self.state)


class Chat:
    """
    The timed chat: what every client received, line by line.
    """

    def __init__(self, clients: int, room_size: int, lines_each: int, buffers: list[bytes]):
        self.room_size = room_size
        self.buffers = buffers
        #: Deliveries of each line, by sender and sequence number.
        self.delivered = [array("I", bytes(4 * lines_each)) for _ in range(clients)]
        self.latencies = array("d")
        self.misrouted = 0
        self.echoed = 0
        self.errors = 0
        self.first_error = ""
        self.last_delivery = 0.0

    def received(self, index: int, data: bytes, now: float) -> None:
        """
        Take the latency of every chat line in what client C{index}
        received (L{crowd.Handler}).
        """
        now_ns = time.monotonic_ns()
        *lines, self.buffers[index] = (self.buffers[index] + data).split(b"\r\n")
        for line in lines:
            match = PAYLOAD.search(line)
            if match is None:
                if line.startswith(ERROR):
                    self.errors += 1
                    self.first_error = self.first_error or line.decode("utf-8", "replace")
                continue
            sender = int(match.group(1))
            if sender == index:
                self.echoed += 1
            elif sender // self.room_size != index // self.room_size:
                self.misrouted += 1
            else:
                self.delivered[sender][int(match.group(2))] += 1
                self.latencies.append((now_ns - int(match.group(3))) / 1e6)
                self.last_delivery = now


def percentile(values: list[float], share: float) -> float:
    """
    The value below which C{share} of sorted C{values} lie.
    """
    return values[min(len(values) - 1, int(len(values) * share))] if values else float("nan")


def run(args: argparse.Namespace) -> int:
    """
    Start the server, set up the rooms, run the timed chat, print what was
    measured; return the exit status (1 if the setup failed).
    """
    clients, room_size = args.clients, args.clients // args.rooms
    lines_each = int(round(args.duration / args.interval))
    expected = clients * lines_each * (room_size - 1)
    label = args.label or default_label(args.bin)
    print(
        f"{clients} clients in {args.rooms} rooms of {room_size}, one line each every "
        f"{args.interval:g} s for {args.duration:g} s ({clients * lines_each:,} lines, "
        f"{expected:,} deliveries expected); server {label} ({args.bin})",
        flush=True,
    )
    server = Server(server_command(args.bin, args.server_option))
    crowd = Crowd(server.port, GROUP, "r", args.per_address)
    try:
        start = time.monotonic()
        setup = Setup(crowd, clients, room_size)
        crowd.connect(clients)
        deadline = start + args.setup_timeout
        while not setup.done() and time.monotonic() < deadline:
            crowd.pump(0.1, setup.received)
        print(
            f"setup: {setup.registered}/{clients} registered, {setup.joined}/{clients} joined "
            f"their room in {time.monotonic() - start:.1f} s",
            flush=True,
        )
        if setup.joined < clients:
            if setup.refusals:
                print(f"/join FAILED for {len(setup.refusals)} clients; the first answers:")
                for refusal in setup.refusals[:3]:
                    print(f"  {refusal}")
            silent = sum(1 for state in setup.state if state == 1)
            if silent:
                print(f"{silent} clients had no answer to /join after {args.setup_timeout:g} s")
            if crowd.gone:
                print(f"{len(crowd.gone)} clients gone: {crowd.why_gone()}")
            unregistered = sum(1 for state in setup.state if state == 0) - len(crowd.gone)
            if unregistered > 0:
                print(f"{unregistered} clients never got their welcome")
            print("no measurement: not every client is in its room")
            return 1
        while time.monotonic() - crowd.last_receive < SETTLE and time.monotonic() < deadline:
            crowd.pump(0.1, setup.received)

        chat = Chat(clients, room_size, lines_each, setup.buffers)
        # Client order[s] sends in slot s of each interval: room-mates take
        # turns, so each room's lines are spread over the interval too.
        order = [
            room * room_size + member for member in range(room_size) for room in range(args.rooms)
        ]
        step = args.interval / clients
        padding = b"x" * max(1, args.size - 40)
        late = array("d")
        unsent = 0
        server_cpu = server.cpu_seconds()
        own_cpu = own_cpu_seconds()
        begin = time.monotonic()
        for slot in range(clients * lines_each):
            due = begin + slot * step
            while (wait := due - time.monotonic()) > 0:
                crowd.pump(min(wait, 0.005), chat.received)
            index = order[slot % clients]
            line = b"|%d|%d|%d|%s\r\n" % (index, slot // clients, time.monotonic_ns(), padding)
            late.append((time.monotonic() - due) * 1000)
            if not crowd.send(index, line):
                unsent += 1
            if slot % 64 == 0:
                crowd.pump(0, chat.received)
        sending = time.monotonic() - begin
        server_share = (server.cpu_seconds() - server_cpu) / sending
        own_share = (own_cpu_seconds() - own_cpu) / sending
        drain_end = time.monotonic() + args.drain
        while len(chat.latencies) < expected and time.monotonic() < drain_end:
            crowd.pump(0.1, chat.received)
        rss, peak = server.memory()
    finally:
        server.stop()
        crowd.close()

    counts = [count for line_counts in chat.delivered for count in line_counts]
    lost = sum(max(0, room_size - 1 - count) for count in counts)
    duplicated = sum(max(0, count - (room_size - 1)) for count in counts)
    latencies = sorted(chat.latencies)
    late_sorted = sorted(late)
    print(
        f"delivered {len(latencies):,}/{expected:,}: lost {lost:,}, duplicated {duplicated:,}, "
        f"to another room {chat.misrouted:,}, echoed to the sender {chat.echoed:,}; "
        f"unsent {unsent}; error lines {chat.errors}"
        + (f" (first: {chat.first_error!r})" if chat.errors else "")
    )
    if crowd.gone:
        print(f"cut off by the server: {len(crowd.gone)} clients: {crowd.why_gone()}")
    print(
        f"latency over every delivery: p50 {statistics.median(latencies) if latencies else 0:.1f} "
        f"ms, p99 {percentile(latencies, 0.99):.1f} ms, max {percentile(latencies, 1.0):.1f} ms"
    )
    print(
        f"during the {sending:.1f} s of sending: server CPU {server_share:.0%} of a core, "
        f"generator CPU {own_share:.0%}; sends late by p99 {percentile(late_sorted, 0.99):.1f} "
        f"ms, max {percentile(late_sorted, 1.0):.1f} ms"
    )
    print(f"server RSS at the end: {rss:.1f} MiB (peak {peak:.1f})")
    print(f"command: {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    return 0


def parse_arguments() -> argparse.Namespace:
    """
    Parse and check the command line.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10000, help="(default: %(default)s)")
    parser.add_argument(
        "--rooms", type=int, default=500, help="rooms, of clients/rooms each (default: %(default)s)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=10,
        help="seconds between two lines of one client (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, default=60, help="seconds of sending (default: %(default)s)"
    )
    parser.add_argument(
        "--size", type=int, default=80, help="bytes per line sent (default: %(default)s)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=10,
        help="seconds at most to wait for late lines after the last send (default: %(default)s)",
    )
    parser.add_argument(
        "--setup-timeout",
        type=float,
        default=300,
        help="seconds at most for every client to register and join (default: %(default)s)",
    )
    parser.add_argument(
        "--bin",
        type=Path,
        default=BIN,
        metavar="BIN",
        help="virtualenv bin directory whose twistd runs the server (default: %(default)s)",
    )
    parser.add_argument("--label", metavar="NAME", help="name of the server in the output")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra option for twistd chat, as --server-option=--x=1 (may be repeated)",
    )
    parser.add_argument(
        "--per-address",
        type=int,
        default=1000,
        help="clients per loopback source address (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.rooms < 1 or args.clients % args.rooms or args.clients // args.rooms < 2:
        parser.error("--clients must be a multiple of --rooms, with at least 2 per room")
    if args.duration < args.interval:
        parser.error("--duration must be at least --interval")
    if not (args.bin / "twistd").exists():
        parser.error(f"no twistd in {args.bin}")
    return args


def main() -> None:
    args = parse_arguments()
    raise_open_files(args.clients)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
