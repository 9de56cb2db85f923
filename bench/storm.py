"""
Reconnect storm: N clients connect to one room at the same moment, as
after a server restart; then one line from one client to all of them.

For each server (--bin, and --compare if given, one after the other on
fresh servers):

1. Storm: --clients connections are opened at once (non-blocking, from
   127.30.x.y source addresses, --per-address clients each), each sending
   its nickname as soon as it is connected. Everyone starts in the one
   default room, so the old server announces each join to everyone
   present (N^2/2 notices); the new one stops announcing above
   --quiet-joins-above members.
2. Quiet: the storm is over when every client has its "*** Welcome" (or
   is gone) and, for a whole --quiet-window (1 s), the server used less
   than --quiet-cpu (5%) of a core and no client received a byte. "Quiet
   after" is the start of that window, counted from the first connect.
   Target: under 30 s. Never later than --timeout (600 s: the old server
   takes minutes for 15,000); a storm that does not end gets no
   broadcasts.
3. Broadcasts: client 0 sends one line, --broadcasts times (10), each
   after the last one has reached every other client and a 0.5 s pause;
   each is timed from the send to the last client receiving it (one that
   has not reached everyone within 60 s is counted as incomplete).

It prints: clients registered, clients the server cut off (closed or
reset; with what they were last told), the time until all were connected,
registered and the server quiet, the bytes the clients received during
the storm, the server's CPU during it, its RSS after the storm (and peak),
the broadcasts' median, min and max with the server's and this process's
CPU per broadcast, and the command line. One process reads every client:
its CPU share is printed so that a saturated generator shows.

Usage:
    python bench/storm.py --clients 15000
    python bench/storm.py --clients 15000 --label after \\
        --compare /tmp/wt/.venv/bin --compare-label before
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crowd import BIN, Crowd, default_label, own_cpu_seconds, raise_open_files, server_command
from loadgen import Server

#: What the server says once a nickname is accepted.
WELCOME = b"*** Welcome, "
#: Source addresses 127.30.x.y.
GROUP = 30
#: Bytes of each client's input kept between chunks, so that a marker split
#: across two chunks is still found.
TAIL = 64
#: Seconds between server CPU samples while waiting for quiet.
SAMPLE_INTERVAL = 0.1
#: Seconds of rest between two broadcasts.
PAUSE = 0.5
#: Seconds after which a connection must have had its SYN sent again:
#: Linux's first retransmission comes after 1 s (TCP_TIMEOUT_INIT), when
#: the listen backlog was full.
SYN_RETRY = 1.0
#: Seconds a broadcast may take to reach everyone before it counts as
#: incomplete.
BROADCAST_TIMEOUT = 60.0
#: Quiet-after target, seconds.
TARGET = 30.0


@dataclass
class Result:
    """
    One storm against one server.
    """

    label: str
    clients: int
    registered: int = 0
    cut_off: int = 0
    why_cut_off: str = ""
    connected_s: float = float("nan")
    connected_late: int = 0
    registered_s: float = float("nan")
    quiet_s: float | None = None
    storm_mb: float = 0.0
    storm_server_cpu: float = 0.0
    storm_own_cpu: float = 0.0
    storm_s: float = 0.0
    rss_empty: float = 0.0
    rss_storm: float = 0.0
    rss_end: float = 0.0
    rss_peak: float = 0.0
    receivers: int = 0
    broadcasts_ms: list[float] = field(default_factory=list)
    broadcasts_incomplete: int = 0
    server_ms_per_broadcast: float = float("nan")
    own_ms_per_broadcast: float = float("nan")

    def lines(self) -> list[str]:
        """
        Say what happened, in a few lines.
        """
        quiet = (
            f"quiet after {self.quiet_s:.2f} s ({'under' if self.quiet_s < TARGET else 'NOT under'}"
            f" {TARGET:.0f} s)"
            if self.quiet_s is not None
            else "NOT quiet before --timeout"
        )
        out = [
            f"{self.label}: {self.registered}/{self.clients} registered, {self.cut_off} cut off "
            f"by the server; all connected after {self.connected_s:.2f} s ({self.connected_late} "
            f"after {SYN_RETRY:g} s or more: SYN retransmitted), all registered after "
            f"{self.registered_s:.2f} s, {quiet}",
            f"{self.label}: clients received {self.storm_mb:,.1f} MB during the storm; server CPU "
            f"{self.storm_server_cpu:.1f} s, generator CPU {self.storm_own_cpu:.1f} s (in "
            f"{self.storm_s:.1f} s); server RSS "
            f"{self.rss_empty:.1f} MiB empty, {self.rss_storm:.1f} MiB after the storm, "
            f"{self.rss_end:.1f} MiB at the end (peak {self.rss_peak:.1f})",
        ]
        if self.why_cut_off:
            out.append(f"{self.label}: cut off: {self.why_cut_off}")
        if self.broadcasts_ms:
            times = self.broadcasts_ms
            out.append(
                f"{self.label}: one line to {self.receivers} clients, "
                f"{len(times)} broadcasts: median {statistics.median(times):.0f} ms "
                f"(min {min(times):.0f}, max {max(times):.0f}; "
                + ", ".join(f"{t:.0f}" for t in times)
                + f"); per broadcast server CPU {self.server_ms_per_broadcast:.0f} ms, "
                f"generator CPU {self.own_ms_per_broadcast:.0f} ms"
                + (
                    f"; {self.broadcasts_incomplete} did NOT reach everyone"
                    if self.broadcasts_incomplete
                    else ""
                )
            )
        else:
            out.append(f"{self.label}: no broadcasts (the storm did not end)")
        return out


class Storm:
    """
    The clients of one storm and what they have seen: welcomes, and the
    marker of the broadcast under way.
    """

    def __init__(self, crowd: Crowd, clients: int) -> None:
        self.crowd = crowd
        self.welcomed_at = [0.0] * clients
        self.registered = 0
        self.tails = [b""] * clients
        self.marker = b""
        self.waiting: set[int] = set()
        self.last_arrival = 0.0

    def received(self, index: int, data: bytes, now: float) -> None:
        """
        Look for the welcome and the broadcast marker in what client
        C{index} received (L{crowd.Handler}).
        """
        seen = self.tails[index] + data
        if not self.welcomed_at[index] and WELCOME in seen:
            self.welcomed_at[index] = now
            self.registered += 1
        if index in self.waiting and self.marker in seen:
            self.waiting.discard(index)
            self.last_arrival = now
        self.tails[index] = seen[-TAIL:]

    def settled(self) -> bool:
        """
        Whether every client is registered or gone.
        """
        gone_unwelcomed = sum(1 for index in self.crowd.gone if not self.welcomed_at[index])
        return self.registered + gone_unwelcomed >= len(self.welcomed_at)


def wait_until_quiet(
    crowd: Crowd,
    storm: Storm,
    cpu_seconds: Callable[[], float],
    start: float,
    args: argparse.Namespace,
) -> float | None:
    """
    Pump C{crowd} until every client has its welcome (or is gone) and the
    server (C{cpu_seconds}: its CPU time so far) used under
    C{args.quiet_cpu} of a core, with nobody receiving anything, for
    C{args.quiet_window} seconds, or until C{args.timeout} seconds after
    C{start}; return the seconds from C{start} to when it went quiet, or
    C{None} if it did not.
    """
    samples = [(start, cpu_seconds())]
    while True:
        crowd.pump(SAMPLE_INTERVAL / 2, storm.received)
        now = time.monotonic()
        if now - samples[-1][0] < SAMPLE_INTERVAL:
            continue
        cpu = cpu_seconds()
        samples.append((now, cpu))
        if now - start > args.timeout:
            return None
        if not storm.settled():
            continue
        # The latest sample at least a window ago: was the server idle
        # and did nobody receive anything since?
        window = next((s for s in reversed(samples) if s[0] <= now - args.quiet_window), None)
        if window is None:
            continue
        then, cpu_then = window
        if (cpu - cpu_then) / (now - then) < args.quiet_cpu and crowd.last_receive < then:
            return then - start


def run(bin_dir: Path, label: str, options: list[str], args: argparse.Namespace) -> Result:
    """
    Start the server from C{bin_dir} with C{options}, storm it, time the
    broadcasts, stop it; return what was measured.
    """
    result = Result(label, args.clients)
    server = Server(server_command(bin_dir, options))
    crowd = Crowd(server.port, GROUP, "s", args.per_address)
    storm = Storm(crowd, args.clients)
    try:
        result.rss_empty, _ = server.memory()
        server_cpu = server.cpu_seconds()
        own_cpu = own_cpu_seconds()
        start = time.monotonic()
        crowd.connect(args.clients)
        result.quiet_s = wait_until_quiet(crowd, storm, server.cpu_seconds, start, args)
        result.storm_s = time.monotonic() - start
        result.storm_server_cpu = server.cpu_seconds() - server_cpu
        result.storm_own_cpu = own_cpu_seconds() - own_cpu
        result.storm_mb = crowd.bytes_received / 1e6
        result.registered = storm.registered
        connected = [at for at in crowd.connected_at if at]
        welcomed = [at for at in storm.welcomed_at if at]
        if len(connected) == args.clients:
            result.connected_s = max(connected) - start
        result.connected_late = sum(1 for at in connected if at - start >= SYN_RETRY)
        if welcomed and storm.registered == args.clients:
            result.registered_s = max(welcomed) - start
        result.rss_storm, _ = server.memory()
        if result.quiet_s is not None and storm.welcomed_at[0] and 0 not in crowd.gone:
            broadcast(crowd, storm, server, result, args)
        result.rss_end, result.rss_peak = server.memory()
        result.cut_off = sum(1 for index in crowd.gone if storm.welcomed_at[index])
        result.why_cut_off = crowd.why_gone()
    finally:
        server.stop()
        crowd.close()
    return result


def broadcast(
    crowd: Crowd, storm: Storm, server: Server, result: Result, args: argparse.Namespace
) -> None:
    """
    Have client 0 send a line C{args.broadcasts} times; time each from the
    send to its arrival at the last of the other registered clients.
    """
    server_cpu = server.cpu_seconds()
    own_cpu = own_cpu_seconds()
    attempts = 0
    for attempt in range(args.broadcasts):
        storm.marker = b"storm-broadcast-%d." % attempt
        storm.waiting = {
            index
            for index in range(1, args.clients)
            if storm.welcomed_at[index] and index not in crowd.gone
        }
        if attempt == 0:
            result.receivers = len(storm.waiting)
        if not storm.waiting:
            break
        attempts += 1
        start = storm.last_arrival = time.monotonic()
        if not crowd.send(0, storm.marker + b"\r\n"):
            raise SystemExit("client 0 could not send its broadcast")
        while storm.waiting and time.monotonic() - start < BROADCAST_TIMEOUT:
            crowd.pump(1.0, storm.received)
            # A client cut off meanwhile is not waited for (it is counted).
            storm.waiting.difference_update(crowd.gone)
        if storm.waiting:
            result.broadcasts_incomplete += 1
            storm.waiting = set()
        else:
            result.broadcasts_ms.append((storm.last_arrival - start) * 1000)
        pause_end = time.monotonic() + PAUSE
        while (left := pause_end - time.monotonic()) > 0:
            crowd.pump(left, storm.received)
    if attempts:
        result.server_ms_per_broadcast = (server.cpu_seconds() - server_cpu) * 1000 / attempts
        result.own_ms_per_broadcast = (own_cpu_seconds() - own_cpu) * 1000 / attempts


def parse_arguments() -> argparse.Namespace:
    """
    Parse and check the command line.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=15000, help="(default: %(default)s)")
    parser.add_argument(
        "--broadcasts", type=int, default=10, help="broadcasts to time (default: %(default)s)"
    )
    parser.add_argument(
        "--bin",
        type=Path,
        default=BIN,
        metavar="BIN",
        help="virtualenv bin directory whose twistd runs the server (default: %(default)s)",
    )
    parser.add_argument("--label", metavar="NAME", help="name of the --bin server")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="BIN",
        help="a second virtualenv bin directory (say, the last committed server): storm it "
        "too, after the first, and show both",
    )
    parser.add_argument("--compare-label", metavar="NAME", help="name of the --compare server")
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra option for the --bin server's twistd chat, as --server-option=--x=1 "
        "(may be repeated)",
    )
    parser.add_argument(
        "--compare-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra option for the --compare server (may be repeated)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds at most for the storm to end (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet-cpu",
        type=float,
        default=0.05,
        help="share of a core under which the server counts as idle (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet-window",
        type=float,
        default=1.0,
        help="seconds the server must stay idle, with no client receiving anything, for the "
        "storm to be over (default: %(default)s)",
    )
    parser.add_argument(
        "--per-address",
        type=int,
        default=1000,
        help="clients per loopback source address (default: %(default)s)",
    )
    args = parser.parse_args()
    if args.clients < 2:
        parser.error("--clients must be at least 2")
    for directory in filter(None, [args.bin, args.compare]):
        if not (directory / "twistd").exists():
            parser.error(f"no twistd in {directory}")
    return args


def main() -> None:
    args = parse_arguments()
    raise_open_files(args.clients)
    servers = [(args.bin, args.label or default_label(args.bin), args.server_option)]
    if args.compare is not None:
        servers.append(
            (args.compare, args.compare_label or default_label(args.compare), args.compare_option)
        )
    print(
        f"storm of {args.clients} clients into one room, then {args.broadcasts} broadcasts; "
        "servers: " + ", ".join(f"{label} ({bin_dir})" for bin_dir, label, _ in servers),
        flush=True,
    )
    results = []
    for bin_dir, label, options in servers:
        result = run(bin_dir, label, options, args)
        results.append(result)
        for line in result.lines():
            print(line, flush=True)
    print(
        f"\n{'server':10} {'registered':>12} {'cut off':>7} {'quiet s':>8} {'MB in':>8} "
        f"{'RSS MiB':>8} {'peak':>7} {'bcast p50':>9} {'min':>6} {'max':>6} {'srv CPU':>7} "
        f"{'gen CPU':>7}"
    )
    for r in results:
        times = r.broadcasts_ms or [float("nan")]
        quiet = f"{r.quiet_s:.2f}" if r.quiet_s is not None else "never"
        print(
            f"{r.label:10} {f'{r.registered}/{r.clients}':>12} {r.cut_off:>7} {quiet:>8} "
            f"{r.storm_mb:>8,.1f} {r.rss_storm:>8.1f} {r.rss_peak:>7.1f} "
            f"{statistics.median(times):>9.0f} {min(times):>6.0f} {max(times):>6.0f} "
            f"{r.server_ms_per_broadcast:>7.0f} {r.own_ms_per_broadcast:>7.0f}"
        )
    print(
        f"(quiet: seconds from the first connect until the server used under "
        f"{args.quiet_cpu:.0%} of a core and sent nothing for {args.quiet_window:g} s, target "
        f"under {TARGET:.0f} s; MB in: bytes all clients received during the storm; RSS after "
        "the storm, peak over the run; bcast: ms from the send to the last client receiving "
        "it; CPU: ms per broadcast)"
    )
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
