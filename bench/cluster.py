"""
Several nodes over Redis (C{--cluster}, issue 12): what the Redis round
trip costs a chat line, how fan-out spreads over nodes, what Redis carries
per line, and the 15,000-client storm with C{--workers 2}; each mode runs
its configurations one after another in the same run, against one
throwaway C{redis-server} on a free loopback port (tests/servers.py),
with fresh servers and a fresh C{--cluster-prefix} per configuration.

Every server is C{twistd -n chat} from this virtualenv with
bench/crowd.py's options (flood control off, loopback exempt, no client
limit) and history in a new SQLite file per node (C{--cluster} refuses
C{:memory:}; the baselines use a file too, so that only the cluster
differs). C{single} is one process without C{--cluster}; C{nodes-N} is N
separate C{--cluster} processes, each on its own port, the clients placed
on them round robin (client I on node I mod N), so that where each client
is is known; C{workers-N} is C{--workers N --cluster} (one port, the
kernel choosing the worker). Servers count as started once every node
has logged "cluster: node ... joined".

Modes:

latency
    Two users; one sends a line every 1/--rate s for --duration s, the
    other receives; latency is from the send() to the recv() of each line
    (after the first second, left out as warm-up), p50/p99/max. Configs:
    C{single} (both on one process without Redis), C{nodes-1} (both on one
    cluster node: the line goes to Redis and back), C{cross} (sender on
    node A, receiver on node B). Both clients set TCP_NODELAY; --repeat
    runs alternating.
fanout
    bench/loadgen.py's load (200 clients, 20 senders x 500 lines of 100
    bytes, window 20 at the probe, the client that joined last), its own
    C{measure}, over C{single}, C{nodes-1}, C{nodes-2}, C{nodes-4},
    --repeat runs alternating, median by deliveries/s. After the join
    barrier, the nodes must be idle (under 5% of a core for 0.3 s) before
    the lines start. CPU per delivery: the CPU time (utime + stime from
    /proc/PID/stat) of every node process together, and Redis's
    (C{INFO cpu} used_cpu_user + used_cpu_sys), each divided by the
    deliveries, in microseconds: a 2-core machine saturates, the CPU per
    delivery carries over to bigger ones.
traffic
    One sender and R recipients spread round robin over N cluster nodes
    (the sender on node 0); the sender sends --traffic-lines lines
    (loadgen's C{measure}, window 20) and everyone receives them. Redis's
    C{INFO stats cpu commandstats} before and after, minus what the same
    nodes do idle over the same time (lease renewals, the INFO command
    itself: measured for 5 s just before and scaled), divided by the
    lines: commands, EVALSHA/EVAL/PUBLISH calls, input and output bytes,
    Redis CPU per line. Configs: 1 node/2 recipients, 2 nodes/2
    recipients, 2 nodes/200 recipients, 4 nodes/200 recipients.
storm
    bench/storm.py's reconnect storm (--clients at once into one room,
    then 10 broadcasts from client 0, each timed to the last arrival),
    C{single} against C{workers-2} (and C{nodes-1} if asked), with the
    CPU and RSS of the supervisor and its workers added up, how many
    connections each worker ended up holding, and how many live join
    notices ("has joined", not those replayed from the history) the
    clients received.

Every run is bounded (--timeout per run, the storm's own bounds) and
stops its servers and Redis; the output ends with the command line.

Usage:
    python bench/cluster.py latency
    python bench/cluster.py fanout --repeat 3
    python bench/cluster.py traffic
    python bench/cluster.py storm --clients 15000
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import select
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import loadgen
import storm
from crowd import BIN, Crowd, own_cpu_seconds, raise_open_files, server_command
from loadgen import PAYLOAD, Client, Server, register

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from servers import redis_server  # noqa: E402

#: Logged by a cluster node once it has joined.
JOINED = re.compile(r"cluster: node (\S+) joined")
#: A warning or error in a node's log (Twisted's "[namespace#level]").
WARNING = re.compile(r"#(warn|error|critical)\]|Traceback")
#: Seconds a node has to start and join.
START_TIMEOUT = 30.0
#: The share of one core under which the nodes count as idle, and for how
#: many seconds, before a measurement starts.
IDLE_CPU = 0.05
IDLE_WINDOW = 0.3
#: Seconds over which the idle Redis traffic is measured (mode traffic).
IDLE_SECONDS = 5.0


def process_tree(pid: int) -> list[int]:
    """
    C{pid} and all its descendants (from /proc/PID/task/*/children).
    """
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
            except FileNotFoundError:
                continue
            todo.extend(int(child) for child in children.split())
    return found


def cpu_seconds_of(pid: int) -> float:
    """
    CPU time (utime + stime, seconds) process C{pid} has used; 0 if gone.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node(Server):
    """
    A C{twistd chat} process, with its workers if it is a supervisor
    (C{--workers}): started once it listens and C{nodes} cluster nodes
    have joined; CPU and memory are those of the whole process tree.
    """

    def __init__(self, command: list[str], nodes: int) -> None:
        super().__init__(command)
        deadline = time.monotonic() + START_TIMEOUT
        while sum(1 for line in list(self.log) if JOINED.search(line)) < nodes:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise SystemExit("cluster node did not join:\n" + "\n".join(self.log[-20:]))
            time.sleep(0.05)

    def pids(self) -> list[int]:
        """
        This process and its workers.
        """
        return process_tree(self.process.pid)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds_of(pid) for pid in self.pids())

    def memory(self) -> tuple[float, float]:
        """
        Resident memory of the process and its workers together, now and
        the sum of their peaks, in MiB.
        """
        rss = peak = 0.0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            rss += int(fields["VmRSS"].split()[0]) / 1024
            peak += int(fields["VmHWM"].split()[0]) / 1024
        return rss, peak

    def connections(self) -> list[int]:
        """
        Open descriptors of each worker (of this process if it has none):
        about its client connections.
        """
        pids = self.pids()[1:] or [self.process.pid]
        counts = []
        for pid in pids:
            try:
                counts.append(len(os.listdir(f"/proc/{pid}/fd")))
            except FileNotFoundError:
                counts.append(0)
        return counts

    def stop(self) -> None:
        """
        Stop the process (the supervisor passes it on to its workers) and
        kill whatever of the tree is left after 30 s.
        """
        pids = self.pids()
        super().stop()
        for pid in pids[1:]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@dataclass
class Config:
    """
    One server configuration: C{nodes} processes (C{cluster}: with
    C{--cluster}), each with C{workers} workers (1: none).
    """

    name: str
    nodes: int = 1
    cluster: bool = True
    workers: int = 1


class Cluster:
    """
    The Redis server of one run, and a new key prefix for each
    configuration started against it.
    """

    def __init__(self, port: int, url: str, directory: Path, logs: Path | None) -> None:
        self.port = port
        self.url = url
        self.directory = directory
        self.logs = logs
        self.started = 0

    @contextmanager
    def start(self, config: Config) -> Iterator[list[Node]]:
        """
        Start the nodes of C{config}; stop them and remove their
        databases after.
        """
        self.started += 1
        prefix = f"b{self.started}:"
        databases = Path(tempfile.mkdtemp(prefix="cluster-", dir=self.directory))
        nodes: list[Node] = []
        try:
            for index in range(config.nodes):
                options = ["--database", str(databases / f"n{index}.sqlite3")]
                if config.cluster:
                    options += [
                        "--cluster",
                        self.url,
                        "--cluster-prefix",
                        prefix,
                        "--node-name",
                        f"n{index}",
                    ]
                if config.workers > 1:
                    options += ["--workers", str(config.workers)]
                nodes.append(
                    Node(server_command(BIN, options), config.workers if config.cluster else 0)
                )
            yield nodes
        finally:
            for index, node in enumerate(nodes):
                node.stop()
                name = config.name.replace("/", "-")
                report_log(node.log, f"{self.started:02d}-{name}-n{index}", self.logs)
            shutil.rmtree(databases, ignore_errors=True)

    def info(self) -> dict[str, float]:
        """
        Redis's C{INFO stats cpu commandstats}: the counters used here, as
        numbers (C{cmdstat_X} as its C{calls}).
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"INFO stats cpu commandstats\r\n")
            data = b""
            while b"\r\n" not in data:
                data += sock.recv(65536)
            header, _, data = data.partition(b"\r\n")
            size = int(header[1:])
            while len(data) < size:
                data += sock.recv(65536)
        figures: dict[str, float] = {}
        for line in data[:size].decode().splitlines():
            key, _, value = line.partition(":")
            if key.startswith("cmdstat_"):
                figures[key[len("cmdstat_") :]] = float(value.split(",")[0].split("=")[1])
            elif key in (
                "total_commands_processed",
                "total_net_input_bytes",
                "total_net_output_bytes",
                "used_cpu_sys",
                "used_cpu_user",
            ):
                figures[key] = float(value)
        figures["cpu"] = figures["used_cpu_sys"] + figures["used_cpu_user"]
        return figures


def report_log(log: list[str], name: str, logs: Path | None) -> None:
    """
    Print how many warnings and errors a node logged, with the first
    few (not the advice every node with a SQLite file logs at start-up,
    to use PostgreSQL); write its whole log to C{logs}/C{name}.log if
    C{logs} is given.
    """
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
        (logs / f"{name}.log").write_text("\n".join(log) + "\n")
    bad = [
        line.split("] ", 1)[-1]
        for line in log
        if WARNING.search(line) and "keeps its own history" not in line
    ]
    if bad:
        print(f"    {name}: {len(bad)} warnings or errors logged; the first kinds:", flush=True)
        for line in list(dict.fromkeys(bad))[:5]:
            print(f"      {line[:160]}", flush=True)


@contextmanager
def running_redis(logs: Path | None = None) -> Iterator[Cluster]:
    """
    A throwaway Redis (tests/servers.py) and a scratch directory, both
    removed after; node logs are written to C{logs} if given.
    """
    directory = Path(tempfile.mkdtemp(prefix="twistedchat-cluster-bench-"))
    try:
        with redis_server(directory / "redis") as redis:
            yield Cluster(redis.port, redis.url, directory, logs)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """
    C{after - before} for every counter of C{after}.
    """
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def wait_idle(nodes: list[Node], timeout: float = 15.0) -> None:
    """
    Wait until C{nodes} together use under L{IDLE_CPU} of a core over
    L{IDLE_WINDOW} (at most C{timeout} seconds).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu = sum(node.cpu_seconds() for node in nodes)
        time.sleep(IDLE_WINDOW)
        if sum(node.cpu_seconds() for node in nodes) - cpu < IDLE_CPU * IDLE_WINDOW:
            return


def connect_spread(nodes: list[Node], count: int) -> list[Client]:
    """
    Register clients C{c0 .. c(count-1)} one after another, client I on
    node I mod len(nodes); then wait until every client has seen a
    barrier line from the last one (loadgen's C{connect}), and until the
    nodes are idle.
    """
    clients = [Client(register(nodes[i % len(nodes)].port, i), i) for i in range(count)]
    clients[-1].sock.sendall(b"barrier\r\n")
    for client in clients[:-1]:
        data = b""
        while b"\r\n" not in data.partition(b"barrier")[2]:
            chunk = client.sock.recv(65536)
            if not chunk:
                raise SystemExit(f"client {client.index} closed while waiting for the barrier")
            data += chunk
        client.buffer = data.partition(b"barrier")[2].partition(b"\r\n")[2]
    for client in clients:
        client.sock.setblocking(False)
    wait_idle(nodes)
    return clients


def percentile(values: list[float], share: float) -> float:
    """
    The C{share} percentile (0..1) of C{values}, nearest rank; NaN if none.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


# -- latency -----------------------------------------------------------------

LATENCY_CONFIGS = {
    "single": (Config("single", cluster=False), (0, 0)),
    "nodes-1": (Config("nodes-1"), (0, 0)),
    "cross": (Config("cross", nodes=2), (0, 1)),
}


def latency_run(cluster: Cluster, name: str, args: argparse.Namespace) -> dict[str, float]:
    """
    One latency run of configuration C{name}: sender and receiver on the
    nodes given in L{LATENCY_CONFIGS}.
    """
    config, (sender_node, receiver_node) = LATENCY_CONFIGS[name]
    with cluster.start(config) as nodes:
        sender = register(nodes[sender_node].port, 0)
        receiver = register(nodes[receiver_node].port, 1)
        for sock in (sender, receiver):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        wait_idle(nodes)
        padding = b"x" * max(1, args.size - 40)
        total = int(args.rate * args.duration)
        warmup = int(args.rate)
        latencies: list[float] = []
        received = sent = 0
        buffer = b""
        start = time.monotonic()
        deadline = start + args.duration + args.timeout
        poller = select.epoll()
        poller.register(receiver.fileno(), select.EPOLLIN)
        poller.register(sender.fileno(), select.EPOLLIN)
        while received < total and time.monotonic() < deadline:
            now = time.monotonic()
            if sent < total and now >= start + sent / args.rate:
                sender.sendall(b"|0|%d|%d|%s\r\n" % (sent, time.monotonic_ns(), padding))
                sent += 1
                continue
            wait = start + sent / args.rate - now if sent < total else 0.5
            for fd, _ in poller.poll(max(0.0, wait)):
                if fd == sender.fileno():
                    sender.recv(65536)  # notices, if any
                    continue
                data = receiver.recv(65536)
                arrived = time.monotonic_ns()
                if not data:
                    raise SystemExit("the server closed the receiver")
                *lines, buffer = (buffer + data).split(b"\r\n")
                for line in lines:
                    match = PAYLOAD.search(line)
                    if match:
                        received += 1
                        if int(match.group(2)) >= warmup:
                            latencies.append((arrived - int(match.group(3))) / 1e6)
        poller.close()
        sender.close()
        receiver.close()
    return {
        "lines": received,
        "expected": total,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
    }


def latency_mode(cluster: Cluster, args: argparse.Namespace) -> None:
    names = args.configs.split(",") if args.configs else list(LATENCY_CONFIGS)
    print(
        f"latency: one line every {1 / args.rate:g} s for {args.duration:g} s "
        f"({args.size} bytes, the first second left out), {args.repeat} runs each, alternating",
        flush=True,
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for run in range(args.repeat):
        for name in names:
            figures = latency_run(cluster, name, args)
            results[name].append(figures)
            print(
                f"  run {run + 1} {name:8} p50 {figures['p50']:6.2f} ms  p99 "
                f"{figures['p99']:6.2f} ms  max {figures['max']:6.2f} ms  "
                f"{figures['lines']:.0f}/{figures['expected']:.0f} lines",
                flush=True,
            )
    print(f"\n{'config':8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'complete':>9}")
    for name, runs in results.items():
        every = all(run["lines"] == run["expected"] for run in runs)
        print(
            f"{name:8} {statistics.median(r['p50'] for r in runs):>7.2f} "
            f"{statistics.median(r['p99'] for r in runs):>7.2f} "
            f"{max(r['max'] for r in runs):>7.2f} {'yes' if every else 'NO':>9}"
        )
    print("(medians over the runs of each run's p50 and p99; max over all runs)")


# -- fanout ------------------------------------------------------------------

FANOUT_CONFIGS = {
    "single": Config("single", cluster=False),
    "nodes-1": Config("nodes-1"),
    "nodes-2": Config("nodes-2", nodes=2),
    "nodes-4": Config("nodes-4", nodes=4),
}


def fanout_run(cluster: Cluster, name: str, args: argparse.Namespace) -> dict[str, float]:
    """
    loadgen.py's measurement over the nodes of configuration C{name}.
    """
    with cluster.start(FANOUT_CONFIGS[name]) as nodes:
        clients = connect_spread(nodes, args.clients)
        node_cpu = sum(node.cpu_seconds() for node in nodes)
        own_cpu = own_cpu_seconds()
        redis_before = cluster.info()
        figures = loadgen.measure(clients, args)
        redis = delta(cluster.info(), redis_before)
        figures["node_cpu"] = sum(node.cpu_seconds() for node in nodes) - node_cpu
        figures["own_cpu"] = own_cpu_seconds() - own_cpu
        figures["redis_cpu"] = redis["cpu"]
        figures["rss"] = sum(node.memory()[0] for node in nodes)
        for client in clients:
            client.sock.close()
    return figures


def fanout_mode(cluster: Cluster, args: argparse.Namespace) -> None:
    names = args.configs.split(",") if args.configs else list(FANOUT_CONFIGS)
    print(
        f"fanout: {args.clients} clients spread round robin over the nodes, {args.senders} "
        f"senders x {args.lines} lines of {args.size} bytes, window {args.window}, "
        f"{args.repeat} runs each, alternating",
        flush=True,
    )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for run in range(args.repeat):
        for name in names:
            f = fanout_run(cluster, name, args)
            results[name].append(f)
            print(
                f"  run {run + 1} {name:8} {f['rate']:>10,.0f} deliveries/s  p50 "
                f"{f['p50']:6.1f} ms  p99 {f['p99']:6.1f} ms  CPU nodes "
                f"{f['node_cpu'] / f['seconds']:.0%} redis {f['redis_cpu'] / f['seconds']:.0%} "
                f"generator {f['own_cpu'] / f['seconds']:.0%}  us/delivery nodes "
                f"{f['node_cpu'] / f['deliveries'] * 1e6:.2f} redis "
                f"{f['redis_cpu'] / f['deliveries'] * 1e6:.3f}  RSS {f['rss']:.1f} MiB  "
                f"{f['deliveries']:,.0f}/{f['expected']:,.0f} delivered",
                flush=True,
            )
    print(
        f"\n{'config':8} {'deliveries/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'CPU nodes':>9} "
        f"{'redis':>6} {'gen':>5} {'us nodes':>8} {'us redis':>8} {'us line':>8} "
        f"{'complete':>8}"
    )
    for name, runs in results.items():
        f = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
        every = all(r["deliveries"] == r["expected"] for r in runs)
        lines = args.senders * args.lines
        print(
            f"{name:8} {f['rate']:>12,.0f} {f['p50']:>7.1f} {f['p99']:>7.1f} "
            f"{f['node_cpu'] / f['seconds']:>9.0%} {f['redis_cpu'] / f['seconds']:>6.0%} "
            f"{f['own_cpu'] / f['seconds']:>5.0%} "
            f"{f['node_cpu'] / f['deliveries'] * 1e6:>8.2f} "
            f"{f['redis_cpu'] / f['deliveries'] * 1e6:>8.3f} "
            f"{f['redis_cpu'] / lines * 1e6:>8.1f} {'yes' if every else 'NO':>8}"
        )
    print(
        "(median run by deliveries/s; CPU: share of one core while sending, all node processes "
        "together, Redis, this generator; us nodes / us redis: CPU microseconds per delivery; "
        "us line: Redis CPU microseconds per line sent)"
    )


# -- traffic -----------------------------------------------------------------

TRAFFIC_CONFIGS = {
    "nodes-1/2": (1, 2),
    "nodes-2/2": (2, 2),
    "nodes-2/200": (2, 200),
    "nodes-4/200": (4, 200),
}
TRAFFIC_COUNTERS = (
    ("total_commands_processed", "commands"),
    ("evalsha", "evalsha"),
    ("eval", "eval"),
    ("incr", "incr"),
    ("publish", "publish"),
    ("total_net_input_bytes", "bytes in"),
    ("total_net_output_bytes", "bytes out"),
)


def traffic_run(cluster: Cluster, name: str, args: argparse.Namespace) -> dict[str, float]:
    """
    Redis's counters per line for configuration C{name}, idle traffic
    subtracted.
    """
    nodes_count, recipients = TRAFFIC_CONFIGS[name]
    with cluster.start(Config(name, nodes=nodes_count)) as nodes:
        clients = connect_spread(nodes, recipients + 1)
        idle_before = cluster.info()
        time.sleep(IDLE_SECONDS)
        idle = delta(cluster.info(), idle_before)
        options = argparse.Namespace(
            senders=1, lines=args.traffic_lines, size=args.size, window=20, timeout=args.timeout
        )
        before = cluster.info()
        figures = loadgen.measure(clients, options)
        wait_idle(nodes)
        busy = delta(cluster.info(), before)
        for client in clients:
            client.sock.close()
    seconds = figures["seconds"]
    per_line = {
        key: (busy.get(key, 0.0) - idle.get(key, 0.0) * seconds / IDLE_SECONDS) / args.traffic_lines
        for key in {*busy, *idle}
    }
    per_line["delivered"] = figures["deliveries"]
    per_line["expected"] = figures["expected"]
    per_line["idle_commands_per_s"] = idle["total_commands_processed"] / IDLE_SECONDS
    return per_line


def traffic_mode(cluster: Cluster, args: argparse.Namespace) -> None:
    names = args.configs.split(",") if args.configs else list(TRAFFIC_CONFIGS)
    print(
        f"traffic: {args.traffic_lines} lines of {args.size} bytes from one sender on node 0, "
        "recipients round robin over the nodes; Redis counters per line, idle traffic "
        "subtracted",
        flush=True,
    )
    header = " ".join(f"{label:>9}" for _, label in TRAFFIC_COUNTERS)
    print(f"\n{'nodes/recipients':16} {header} {'CPU us':>7} {'idle cmd/s':>10} {'complete':>8}")
    for name in names:
        f = traffic_run(cluster, name, args)
        values = " ".join(f"{round(f.get(key, 0.0), 2) + 0.0:>9.2f}" for key, _ in TRAFFIC_COUNTERS)
        complete = "yes" if f["delivered"] == f["expected"] else "NO"
        print(
            f"{name:16} {values} {f['cpu'] * 1e6:>7.1f} {f['idle_commands_per_s']:>10.1f} "
            f"{complete:>8}",
            flush=True,
        )
    print(
        "(per chat line: Redis commands processed (with those a script runs), EVALSHA, EVAL, "
        "INCR and PUBLISH calls, bytes Redis read and wrote, Redis CPU microseconds; idle "
        "cmd/s: commands per second with no chat, subtracted)"
    )


# -- storm -------------------------------------------------------------------

STORM_CONFIGS = {
    "single": Config("single", cluster=False),
    "nodes-1": Config("nodes-1"),
    "workers-2": Config("workers-2", workers=2),
}


#: A live join notice (protocol.py); not one replayed from the history,
#: which starts with its time.
JOINED_NOTICE = re.compile(rb"(?:^|(?<=\n))\*\*\* [^ \r\n]+ has joined\r\n")


class CountingStorm(storm.Storm):
    """
    storm.py's clients, also counting the live join notices each
    receives (not those in the history replayed on joining).
    """

    def __init__(self, crowd: Crowd, clients: int) -> None:
        super().__init__(crowd, clients)
        self.joins = [0] * clients
        self.join_tails = [b""] * clients

    def received(self, index: int, data: bytes, now: float) -> None:
        """
        storm.py's C{received}, then count the join notices in C{data}
        (a line cut between two chunks counts once, when complete).
        """
        super().received(index, data, now)
        seen = self.join_tails[index] + data
        self.joins[index] += len(JOINED_NOTICE.findall(seen))
        self.join_tails[index] = seen[seen.rfind(b"\n") + 1 :]

    def joins_summary(self) -> str:
        """
        The join notices received: the most any client got, and by the
        client registered last.
        """
        welcomed = [index for index, at in enumerate(self.welcomed_at) if at]
        if not welcomed:
            return "no client registered"
        most = max(range(len(self.joins)), key=self.joins.__getitem__)
        last = max(welcomed, key=self.welcomed_at.__getitem__)
        return (
            f"{sum(self.joins)} in all, at most {self.joins[most]} (client {most}), "
            f"{self.joins[last]} by the client registered last (client {last}), "
            f"{sum(1 for count in self.joins if count)} clients got any"
        )


def broadcast(
    crowd: Crowd, clients: storm.Storm, node: Node, result: storm.Result, args: argparse.Namespace
) -> list[int]:
    """
    storm.py's C{broadcast}, with --broadcast-timeout instead of its 60 s:
    client 0 sends a line --broadcasts times, each timed from the send to
    its arrival at the last other registered client. Return, for each
    broadcast that did not reach everyone in time, how many it missed.
    """
    server_cpu = node.cpu_seconds()
    own_cpu = own_cpu_seconds()
    missed = []
    attempts = 0
    for attempt in range(args.broadcasts):
        clients.marker = b"storm-broadcast-%d." % attempt
        clients.waiting = {
            index
            for index in range(1, args.clients)
            if clients.welcomed_at[index] and index not in crowd.gone
        }
        if attempt == 0:
            result.receivers = len(clients.waiting)
        if not clients.waiting:
            break
        attempts += 1
        start = clients.last_arrival = time.monotonic()
        if not crowd.send(0, clients.marker + b"\r\n"):
            raise SystemExit("client 0 could not send its broadcast")
        while clients.waiting and time.monotonic() - start < args.broadcast_timeout:
            crowd.pump(0.5, clients.received)
            clients.waiting.difference_update(crowd.gone)
        if clients.waiting:
            result.broadcasts_incomplete += 1
            missed.append(len(clients.waiting))
            clients.waiting = set()
        else:
            result.broadcasts_ms.append((clients.last_arrival - start) * 1000)
        pause_end = time.monotonic() + storm.PAUSE
        while (left := pause_end - time.monotonic()) > 0:
            crowd.pump(left, clients.received)
    if attempts:
        result.server_ms_per_broadcast = (node.cpu_seconds() - server_cpu) * 1000 / attempts
        result.own_ms_per_broadcast = (own_cpu_seconds() - own_cpu) * 1000 / attempts
    return missed


def storm_run(
    node: Node, label: str, args: argparse.Namespace
) -> tuple[storm.Result, list[int], list[int], str]:
    """
    bench/storm.py's C{run} against a server already started: the storm,
    the wait for quiet, the broadcasts (L{broadcast}). Also return the
    descriptors each worker holds after the storm, how many clients
    each incomplete broadcast missed, and the join notices the clients
    received (L{CountingStorm.joins_summary}).
    """
    missed: list[int] = []
    result = storm.Result(label, args.clients)
    crowd = Crowd(node.port, storm.GROUP, "s", args.per_address)
    clients = CountingStorm(crowd, args.clients)
    try:
        result.rss_empty, _ = node.memory()
        server_cpu = node.cpu_seconds()
        own_cpu = own_cpu_seconds()
        start = time.monotonic()
        crowd.connect(args.clients)
        settings = argparse.Namespace(
            timeout=args.storm_timeout, quiet_window=args.quiet_window, quiet_cpu=args.quiet_cpu
        )
        result.quiet_s = storm.wait_until_quiet(crowd, clients, node.cpu_seconds, start, settings)
        result.storm_s = time.monotonic() - start
        result.storm_server_cpu = node.cpu_seconds() - server_cpu
        result.storm_own_cpu = own_cpu_seconds() - own_cpu
        result.storm_mb = crowd.bytes_received / 1e6
        result.registered = clients.registered
        connected = [at for at in crowd.connected_at if at]
        welcomed = [at for at in clients.welcomed_at if at]
        if len(connected) == args.clients:
            result.connected_s = max(connected) - start
        result.connected_late = sum(1 for at in connected if at - start >= storm.SYN_RETRY)
        if welcomed and clients.registered == args.clients:
            result.registered_s = max(welcomed) - start
        result.rss_storm, _ = node.memory()
        held = node.connections()
        if result.quiet_s is not None and clients.welcomed_at[0] and 0 not in crowd.gone:
            missed = broadcast(crowd, clients, node, result, args)
        result.rss_end, result.rss_peak = node.memory()
        result.cut_off = sum(1 for index in crowd.gone if clients.welcomed_at[index])
        result.why_cut_off = crowd.why_gone()
    finally:
        crowd.close()
    return result, held, missed, clients.joins_summary()


def storm_mode(cluster: Cluster, args: argparse.Namespace) -> None:
    names = args.configs.split(",") if args.configs else ["single", "workers-2"]
    raise_open_files(args.clients)
    print(
        f"storm of {args.clients} clients into one room, then {args.broadcasts} broadcasts; "
        f"configs: {', '.join(names)}",
        flush=True,
    )
    results = []
    for name in names:
        config = STORM_CONFIGS[name]
        with cluster.start(config) as nodes:
            result, held, missed, joins = storm_run(nodes[0], name, args)
        results.append(result)
        for line in result.lines():
            print(line, flush=True)
        print(f"{name}: join notices received: {joins}", flush=True)
        print(f"{name}: descriptors held per worker after the storm: {held}", flush=True)
        if missed:
            print(f"{name}: clients each incomplete broadcast missed: {missed}", flush=True)
    print(
        f"\n{'config':10} {'registered':>12} {'cut off':>7} {'all reg s':>9} {'quiet s':>8} "
        f"{'srv CPU s':>9} {'RSS MiB':>8} {'bcast p50':>9} {'min':>6} {'max':>6} "
        f"{'srv CPU':>7} {'gen CPU':>7}"
    )
    for r in results:
        times = r.broadcasts_ms or [float("nan")]
        quiet = f"{r.quiet_s:.2f}" if r.quiet_s is not None else "never"
        print(
            f"{r.label:10} {f'{r.registered}/{r.clients}':>12} {r.cut_off:>7} "
            f"{r.registered_s:>9.2f} {quiet:>8} {r.storm_server_cpu:>9.1f} {r.rss_storm:>8.1f} "
            f"{statistics.median(times):>9.0f} {min(times):>6.0f} {max(times):>6.0f} "
            f"{r.server_ms_per_broadcast:>7.0f} {r.own_ms_per_broadcast:>7.0f}"
        )
    print(
        "(all reg s: seconds from the first connect until every client had its welcome; quiet: "
        f"until the server (all processes) used under {args.quiet_cpu:.0%} of a core and sent "
        f"nothing for {args.quiet_window:g} s; srv CPU s: during the storm; RSS after the storm, "
        "all processes; bcast: ms from the send to the last client receiving it; CPU: ms per "
        "broadcast, all server processes, and this generator)"
    )


# -- main --------------------------------------------------------------------


def versions() -> str:
    """
    The versions this run used, and the machine's cores.
    """
    redis = subprocess.run(
        [shutil.which("redis-server") or "redis-server", "--version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    redis_version = next((word[2:] for word in redis if word.startswith("v=")), "?")
    try:
        hiredis = importlib.metadata.version("hiredis")
    except importlib.metadata.PackageNotFoundError:
        hiredis = "not installed"
    return (
        f"Python {platform.python_version()}, Twisted {importlib.metadata.version('twisted')}, "
        f"txredisapi {importlib.metadata.version('txredisapi')}, hiredis {hiredis}, "
        f"redis-server {redis_version}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


MODES: dict[str, Callable[[Cluster, argparse.Namespace], None]] = {
    "latency": latency_mode,
    "fanout": fanout_mode,
    "traffic": traffic_mode,
    "storm": storm_mode,
}


def parse_arguments() -> argparse.Namespace:
    """
    Parse the command line.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=[*MODES, "all"])
    parser.add_argument(
        "--configs", help="comma-separated configurations to run (default: all of the mode's)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument("--logs", type=Path, help="write every node's log to this directory")
    parser.add_argument("--size", type=int, default=100, help="bytes per line sent")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run at most")
    latency = parser.add_argument_group("latency")
    latency.add_argument("--rate", type=float, default=10, help="lines per second")
    latency.add_argument("--duration", type=float, default=20, help="seconds of sending")
    fanout = parser.add_argument_group("fanout (loadgen.py's)")
    fanout.add_argument("--clients", type=int, help="default: 200 (fanout), 15000 (storm)")
    fanout.add_argument("--senders", type=int, default=20)
    fanout.add_argument("--lines", type=int, default=500, help="lines each sender sends")
    fanout.add_argument("--window", type=int, default=20, help="lines in flight per sender")
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument("--traffic-lines", type=int, default=1000, help="lines sent")
    storm_options = parser.add_argument_group("storm (storm.py's)")
    storm_options.add_argument("--broadcasts", type=int, default=10)
    storm_options.add_argument("--per-address", type=int, default=1000)
    storm_options.add_argument(
        "--storm-timeout", type=float, default=300, help="seconds at most for the storm to end"
    )
    storm_options.add_argument(
        "--broadcast-timeout",
        type=float,
        default=60,
        help="seconds a broadcast may take before it counts as incomplete",
    )
    storm_options.add_argument("--quiet-cpu", type=float, default=0.05)
    storm_options.add_argument("--quiet-window", type=float, default=1.0)
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    print(versions(), flush=True)
    modes = list(MODES) if args.mode == "all" else [args.mode]
    with running_redis(args.logs) as cluster:
        for mode in modes:
            if args.clients is None or args.mode == "all":
                args.clients = 15000 if mode == "storm" else 200
            MODES[mode](cluster, args)
            print(flush=True)
    print("command: " + shlex.join([os.path.relpath(sys.executable), *sys.argv]))


if __name__ == "__main__":
    main()
