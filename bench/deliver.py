"""
The delivery hot path in one process, without sockets: how long the
shared state takes to hand one chat line to N telnet connections (the
factory's fan-out, each connection's C{deliver}, its SendQ and the
transport's C{write}), for the checkout it runs from or for another one.

Each connection is the real L{ChatTelnetTransport} and L{ChatProtocol}
over a transport whose C{write} keeps nothing, so only our Python code
and Twisted's protocol layers are measured, not the kernel. The output is
flushed after each broadcast, as the reactor would.

Run it once per checkout to compare two versions side by side, with the
same interpreter, for example the last commit without rooms against this
one::

    git worktree add /tmp/before 1616218
    .venv/bin/python bench/deliver.py --tree /tmp/before --tree .

Figures: the median of C{--repeat} broadcasts, per broadcast and per
recipient.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time

_CHILD = r"""
import gc, inspect, statistics, sys, time
sys.path.insert(0, {tree!r})
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twistedchat.factory import ChatFactory
from twistedchat.protocol import ChatTelnetTransport


class Sink(StringTransport):
    def write(self, data):
        pass


clock = Clock()
factory = ChatFactory(clock, max_per_ip=0, connection_rate=0, flood_rate=0, flood_bytes=0,
                      max_clients=0, quiet_joins_above=0) if "quiet_joins_above" in \
    inspect.signature(ChatFactory.__init__).parameters else ChatFactory(
        clock, max_per_ip=0, connection_rate=0, flood_rate=0, flood_bytes=0, max_clients=0)
factory.protocol = ChatTelnetTransport
chats = []
for i in range({clients}):
    address = IPv4Address("TCP", "127.0.0.1", 10000 + i)
    protocol = factory.buildProtocol(address)
    transport = Sink(peerAddress=address)
    protocol.makeConnection(transport)
    protocol.dataReceived(b"u%d\r\n" % i)
    chats.append(protocol.protocol)
clock.advance(0)
sender = chats[0]
session = getattr(sender, "session", None)
if session is not None:
    say = lambda text: factory.say(session, factory.default_room, text)
else:
    say = lambda text: factory.say(sender, text)
gc.collect()
times = []
for n in range({repeat}):
    start = time.perf_counter()
    say("x" * 80)
    clock.advance(0)
    times.append(time.perf_counter() - start)
median = statistics.median(times)
print(f"{{median * 1e3:.1f}} {{median / ({clients} - 1) * 1e6:.3f}}")
"""


def measure(tree: str, clients: int, repeat: int) -> tuple[float, float]:
    """
    Run the measurement for the checkout at C{tree} in a fresh interpreter.

    @return: the median milliseconds per broadcast and microseconds per
        recipient.
    """
    code = _CHILD.format(tree=os.path.abspath(tree), clients=clients, repeat=repeat)
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(output[0]), float(output[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", action="append", help="a checkout to measure (repeatable)")
    parser.add_argument("--clients", type=int, default=15000)
    parser.add_argument("--repeat", type=int, default=30, help="broadcasts per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per tree, alternating")
    args = parser.parse_args()
    trees = args.tree or ["."]
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for run in range(args.runs):
        for tree in trees:
            gc.collect()
            started = time.perf_counter()
            ms, us = measure(tree, args.clients, args.repeat)
            results[tree].append((ms, us))
            print(
                f"run {run + 1} {tree}: {ms:.1f} ms per broadcast to {args.clients - 1}, "
                f"{us:.3f} us per recipient ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    print(f"\n{'tree':<30} {'ms/broadcast':>13} {'us/recipient':>13}  (median of {args.runs} runs)")
    for tree, pairs in results.items():
        ms = statistics.median(p[0] for p in pairs)
        us = statistics.median(p[1] for p in pairs)
        print(f"{tree:<30} {ms:>13.1f} {us:>13.3f}")
    print("command:", " ".join([os.path.relpath(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
