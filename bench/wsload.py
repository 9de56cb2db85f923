"""
WebSocket fan-out and memory (issue 10): the WebSocket front end measured
next to telnet, on the same server build and in the same run.

Fan-out (the default, C{--mode fanout}): loadgen.py's measurement with
WebSocket clients beside its telnet clients. One server (loadgen.py's
twistedchat command line plus a C{--web} listener, both on 127.0.0.1)
serves every run of the invocation; runs alternate between WebSocket and
telnet clients, each run's clients leave and the server is quiet again
before the next. C{--server-per-run} starts a fresh server (the same
command) for every run instead, as loadgen.py does. The telnet runs are
loadgen.py's own code (its C{connect} and C{measure}: clients c0, c1, ...).
The WebSocket runs do the same with the C{websockets} package (asyncio):
N clients (w0, w1, ...) sign in one after another (C{{"type":
"nickname"}}, then wait for C{welcome}); the last one, the probe, is
served last; each of the first S sends C{--lines} lines of C{--size}
bytes of text as C{{"type": "line"}} messages, one per WebSocket message,
keeping at most C{--window} in flight (sent and not yet seen by the
probe). A run ends when every line has reached every other client, or
after C{--timeout} seconds.

Counting: the server packs what it has for a client into one WebSocket
text message per reactor iteration, one JSON object per line. A delivery
is one C{message} object with a payload line in it, to a client other
than its sender: a sender's own lines come back to it (the server echoes
them with their C{id}); those are counted apart, as echoes, and left out
of deliveries/s, so the figure means what loadgen's does (twistedchat
does not echo a telnet user's own lines). Latency is the send-to-receive time of
every line at the probe.

Printed per run and as the median (by deliveries/s) of C{--repeat} runs
of each kind: deliveries/s, p50/p99 latency, the server's RSS at the end
and its peak (C{VmHWM}: over the server's life, so with one server for
all runs, the highest so far), the CPU share of the server and of the
generator (all its processes) and of the whole machine (C{/proc/stat}:
more than the two together means something else was running), the
server's and the generator's CPU microseconds per delivery, and
deliveries per WebSocket message. The two cores are shared by server and
generator, so a generator that needs more CPU per delivery also takes it
from the server. C{--processes P} spreads the WebSocket readers over P
processes (the senders and the probe stay in the first), for when one
Python process cannot read as fast as the server sends.

Memory (C{--mode memory}): for each kind, alternating, a fresh server
(C{--max-per-ip 0 --connection-rate 0 --max-clients 0 --database
:memory:}, flood control as by default) takes one warm-up client, then its
resident memory is read; then C{--connections} clients connect from
127.0.0.1, sign in and stay idle; once the server is quiet its RSS is read
again. The difference divided by the count is the memory per idle
connection.

Every run is bounded in count and time and stops its server.

Usage:
    python bench/wsload.py                            # fan-out, 200 clients, 3 runs each
    python bench/wsload.py --mode memory --connections 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import websockets
from crowd import BIN, own_cpu_seconds, raise_open_files
from loadgen import Server, register, server_command
from loadgen import connect as telnet_connect
from loadgen import measure as telnet_measure_lines
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

#: The WebSocket listener both modes add to the server.
WEB = ["--web", "tcp:0:interface=127.0.0.1"]
#: What the server logs once the WebSocket listener is up.
WEB_LISTENING = re.compile(r"web client at http://127\.0\.0\.1:(\d+)/")
#: The marker of a payload line: |sender|sequence|monotonic ns|.
PAYLOAD = re.compile(rb"\|(\d+)\|(\d+)\|(\d+)\|")
#: How every chat line the server sends starts. Once the run has started,
#: chat lines are the only thing the clients receive, so this counts
#: deliveries; it is found faster than loadgen's "|x" in text that is
#: mostly x (bytes.count skips ahead on characters the needle lacks).
CHAT_LINE = b'{"type":"message"'
#: Seconds allowed to connect and sign in one client.
SIGN_IN_TIMEOUT = 30
#: The memory mode's server options: no per-address, rate or total limit
#: on connections from 127.0.0.1; history in memory only.
MEMORY_OPTIONS = [
    "--max-per-ip",
    "0",
    "--connection-rate",
    "0",
    "--max-clients",
    "0",
    "--database",
    ":memory:",
]


def start_server(command: list[str]) -> tuple[Server, int]:
    """
    Start the server C{command} (which has a C{--web} listener) and return
    it with the port of its WebSocket listener; the telnet port is
    C{server.port}.

    @raise SystemExit: the server did not log its web listener within 30 s.
    """
    server = Server(command)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.process.poll() is None:
        for line in list(server.log):
            match = WEB_LISTENING.search(line)
            if match:
                return server, int(match.group(1))
        time.sleep(0.05)
    server.stop()
    raise SystemExit("server has no web listener:\n" + "\n".join(server.log))


def machine_cpu_seconds() -> float:
    """
    CPU time (seconds, all cores) the whole machine has spent busy so far:
    everything in C{/proc/stat} but idle and I/O wait.
    """
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def line_message(text: str) -> str:
    """
    The client message that sends C{text} as a typed line.
    """
    return json.dumps({"type": "line", "text": text})


async def expect(ws: ClientConnection, marker: str, index: int) -> str:
    """
    Read messages from client C{index} until one contains C{marker};
    return that message.

    @raise SystemExit: the server closed the connection first.
    """
    try:
        while True:
            message = await ws.recv()
            if isinstance(message, str) and marker in message:
                return message
    except ConnectionClosed as e:
        raise SystemExit(f"client {index} was closed while waiting for {marker}: {e}") from None


async def sign_in(port: int, index: int) -> ClientConnection:
    """
    Connect client C{index} to the WebSocket at C{/ws} as nickname
    wC{index} and wait for its C{welcome}. No compression (the server
    offers none) and no keepalive pings.
    """

    async def steps() -> ClientConnection:
        ws = await connect(
            f"ws://127.0.0.1:{port}/ws",
            compression=None,
            max_size=None,
            ping_interval=None,
            close_timeout=2,
        )
        await expect(ws, '"type":"nickname_wanted"', index)
        await ws.send(json.dumps({"type": "nickname", "nickname": f"w{index}"}))
        await expect(ws, '"type":"welcome"', index)
        return ws

    try:
        return await asyncio.wait_for(steps(), SIGN_IN_TIMEOUT)
    except asyncio.TimeoutError:
        raise SystemExit(f"client {index} not signed in after {SIGN_IN_TIMEOUT} s") from None


@dataclass
class Tally:
    """
    The deliveries counted by one process's readers. C{done} is set when
    C{total} reaches C{expected}, or on the first error.
    """

    expected: int
    total: int = 0
    echoes: int = 0
    messages: int = 0
    last: float = 0.0
    error: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, lines: int, echoes: int) -> None:
        self.messages += 1
        self.echoes += echoes
        if lines:
            self.total += lines
            self.last = time.monotonic()
            if self.total >= self.expected:
                self.done.set()

    def fail(self, error: str) -> None:
        self.error = self.error or error
        self.done.set()


async def read(
    ws: ClientConnection,
    index: int,
    tally: Tally,
    own: bytes = b"",
    probe: Callable[[bytes], None] | None = None,
) -> None:
    """
    Count the payload lines client C{index} receives into C{tally}; lines
    of its own (the echo, found by C{own}: see L{own_marker}) are counted
    as echoes. The probe also hands each message to C{probe}. Messages are
    taken as the UTF-8 bytes they arrived as, not decoded.
    """
    try:
        while True:
            message = await ws.recv(decode=False)
            lines = message.count(CHAT_LINE)
            echoes = message.count(own) if own and lines else 0
            tally.add(lines - echoes, echoes)
            if probe is not None:
                probe(message)
    except ConnectionClosed as e:
        tally.fail(f"server closed client {index}: {e}")


def own_marker(index: int) -> bytes:
    """
    What only client C{index}'s own lines contain, in the server's JSON.
    """
    return b'"nickname":"w%d","text":"|' % index


def expected_for(index: int, args: argparse.Namespace) -> int:
    """
    Deliveries client C{index} should receive: every sender's lines but
    its own.
    """
    return args.lines * (args.senders - (1 if index < args.senders else 0))


# Reader processes (--processes).


def reader_process(port: int, indices: list[int], expected: int, pipe: Connection) -> None:
    """
    A process of reading clients: sign in clients C{indices}, say
    C{"connected"}; wait for the barrier line at each, say C{"ready"}; on
    C{"start"} count until C{expected} deliveries arrived or C{"stop"}
    came, and send back the figures.
    """
    asyncio.run(_reader_process(port, indices, expected, pipe))


async def _reader_process(port: int, indices: list[int], expected: int, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    orders: asyncio.Queue[str] = asyncio.Queue()
    loop.add_reader(pipe.fileno(), lambda: orders.put_nowait(pipe.recv()))
    clients = {index: await sign_in(port, index) for index in indices}
    pipe.send("connected")
    await asyncio.gather(*(expect(ws, '"text":"barrier"', index) for index, ws in clients.items()))
    pipe.send("ready")
    tally = Tally(expected)
    readers = [asyncio.create_task(read(ws, index, tally)) for index, ws in clients.items()]
    assert await orders.get() == "start"
    cpu = own_cpu_seconds()
    order = asyncio.create_task(orders.get())
    counted = asyncio.create_task(tally.done.wait())
    await asyncio.wait([order, counted], return_when=asyncio.FIRST_COMPLETED)
    pipe.send(
        {
            "total": tally.total,
            "echoes": tally.echoes,
            "messages": tally.messages,
            "last": tally.last,
            "error": tally.error,
            "cpu": own_cpu_seconds() - cpu,
        }
    )
    counted.cancel()
    word = await order
    while word != "exit":
        word = await orders.get()
    for task in readers:
        task.cancel()
    for ws in clients.values():
        ws.transport.abort()
    loop.remove_reader(pipe.fileno())


class Readers:
    """
    The reader processes of one WebSocket run, and what they send back.
    """

    def __init__(self, port: int, chunks: list[list[int]], args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for chunk in chunks:
            ours, theirs = context.Pipe()
            expected = sum(expected_for(index, args) for index in chunk)
            process = context.Process(
                target=reader_process, args=(port, chunk, expected, theirs), daemon=True
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    def wait_for(self, word: str, timeout: float) -> None:
        """
        Wait until every process has said C{word}.

        @raise SystemExit: one said something else, or nothing within
            C{timeout} seconds.
        """
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise SystemExit(f"a reader process did not say {word!r} in {timeout} s")
            answer = pipe.recv()
            if answer != word:
                raise SystemExit(f"a reader process said {answer!r}, not {word!r}")

    async def counts(self, deadline: float) -> list[dict[str, Any]]:
        """
        Return every process's figures: what it counted once it has
        everything it expected, or at C{deadline} (C{time.monotonic()}),
        when it is told to stop.
        """
        answers = []
        for pipe in self.pipes:
            while not pipe.poll() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            if not pipe.poll():
                pipe.send("stop")
                if not pipe.poll(10):
                    raise SystemExit("a reader process did not answer")
            answers.append(pipe.recv())
        return answers

    def tell(self, word: str) -> None:
        for pipe in self.pipes:
            pipe.send(word)

    def stop(self) -> None:
        """
        Tell every process to exit and wait for it (10 s, then kill it).
        """
        self.tell("exit")
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()


async def measure_websocket(server: Server, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """
    One WebSocket fan-out run against C{server}, whose WebSocket listener
    is on C{port}; return loadgen's figures and the WebSocket ones.
    """
    count, senders = args.clients, args.senders
    assert senders < count - 1, "need more clients than senders"
    receivers = list(range(senders, count - 1))
    chunk = -(-len(receivers) // args.processes)
    chunks = [receivers[i : i + chunk] for i in range(0, len(receivers), chunk)]
    ours = list(range(senders)) + chunks[0]
    connections = {index: await sign_in(port, index) for index in ours}
    readers = Readers(port, chunks[1:], args)
    await asyncio.to_thread(readers.wait_for, "connected", SIGN_IN_TIMEOUT + len(receivers))
    probe_index = count - 1
    connections[probe_index] = await sign_in(port, probe_index)
    await connections[probe_index].send(line_message("barrier"))
    # Everyone, the probe too (its own line comes back), reads up to the
    # barrier line: no join notice or history replay is counted later.
    await asyncio.gather(
        *(expect(ws, '"text":"barrier"', index) for index, ws in connections.items())
    )
    await asyncio.to_thread(readers.wait_for, "ready", 60)
    rss_idle, _ = server.memory()

    expected = sum(expected_for(index, args) for index in connections)
    tally = Tally(expected)
    seen = [0] * senders
    wake = [asyncio.Event() for _ in range(senders)]
    latencies: list[float] = []

    def probe(message: bytes) -> None:
        now = time.monotonic_ns()
        for match in PAYLOAD.finditer(message):
            sender = int(match.group(1))
            seen[sender] += 1
            latencies.append((now - int(match.group(3))) / 1e6)
            wake[sender].set()

    tasks = [
        asyncio.create_task(
            read(
                ws,
                index,
                tally,
                own_marker(index) if index < senders else "",
                probe if index == probe_index else None,
            )
        )
        for index, ws in connections.items()
    ]
    padding = "x" * max(1, args.size - 40)
    window = args.window or (1 << 62)

    async def send(index: int) -> None:
        ws = connections[index]
        for sequence in range(args.lines):
            while sequence - seen[index] >= window:
                wake[index].clear()
                await wake[index].wait()
            await ws.send(line_message(f"|{index}|{sequence}|{time.monotonic_ns()}|{padding}"))

    server_cpu = server.cpu_seconds()
    own_cpu = own_cpu_seconds()
    machine_cpu = machine_cpu_seconds()
    readers.tell("start")
    start = time.monotonic()
    tasks += [asyncio.create_task(send(index)) for index in range(senders)]
    deadline = start + args.timeout
    try:
        await asyncio.wait_for(tally.done.wait(), deadline - time.monotonic())
    except asyncio.TimeoutError:
        pass
    answers = await readers.counts(deadline)
    end = max([tally.last, *(a["last"] for a in answers)])
    elapsed = (end if end > start else time.monotonic()) - start
    figures: dict[str, Any] = {
        "server_cpu": (server.cpu_seconds() - server_cpu) / elapsed,
        "own_cpu": (own_cpu_seconds() - own_cpu + sum(a["cpu"] for a in answers)) / elapsed,
        "machine_cpu": (machine_cpu_seconds() - machine_cpu) / elapsed,
    }
    figures["rss_idle"] = rss_idle
    figures["rss_end"], figures["rss_peak"] = server.memory()
    for task in tasks:
        task.cancel()
    for ws in connections.values():
        ws.transport.abort()
    readers.stop()
    errors = [tally.error, *(a["error"] for a in answers)]
    if any(errors):
        raise SystemExit("; ".join(error for error in errors if error))
    latencies.sort()
    total = tally.total + sum(a["total"] for a in answers)
    messages = tally.messages + sum(a["messages"] for a in answers)
    figures.update(
        deliveries=total,
        expected=expected + sum(expected_for(i, args) for c in chunks[1:] for i in c),
        seconds=elapsed,
        rate=total / elapsed,
        p50=statistics.median(latencies) if latencies else float("nan"),
        p99=latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        echoes=tally.echoes,
        per_message=total / messages if messages else float("nan"),
    )
    return figures


def telnet_measure(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """
    One telnet fan-out run against C{server}, with loadgen.py's code:
    its C{connect} (clients c0, c1, ...; the last is the probe) and its
    C{measure}, with the figures its C{run} adds.
    """
    clients, _ = telnet_connect(server.port, args.clients, 0)
    rss_idle, _ = server.memory()
    server_cpu = server.cpu_seconds()
    own_cpu = own_cpu_seconds()
    machine_cpu = machine_cpu_seconds()
    figures: dict[str, Any] = dict(telnet_measure_lines(clients, args))
    figures["machine_cpu"] = (machine_cpu_seconds() - machine_cpu) / figures["seconds"]
    figures["server_cpu"] = (server.cpu_seconds() - server_cpu) / figures["seconds"]
    figures["own_cpu"] = (own_cpu_seconds() - own_cpu) / figures["seconds"]
    figures["rss_idle"] = rss_idle
    figures["rss_end"], figures["rss_peak"] = server.memory()
    for client in clients:
        client.sock.close()
    return figures


def fanout_command(args: argparse.Namespace) -> list[str]:
    """
    The fan-out server: loadgen.py's twistedchat command (flood control
    off, loopback exempt from the per-address limits, history in memory)
    with a WebSocket listener too.
    """
    return server_command("twistedchat", [*WEB, *args.server_option])


def fanout(args: argparse.Namespace) -> None:
    """
    Alternate WebSocket and telnet runs, C{args.repeat} of each, against
    one server (or a fresh one per run with C{args.server_per_run}), and
    print every run and the medians.
    """
    kinds = args.kinds.split(",")
    for kind in kinds:
        if kind not in ("websocket", "telnet"):
            raise SystemExit(f"unknown kind {kind!r}: websocket or telnet")
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    print(
        f"{args.clients} clients, {args.senders} senders x {args.lines} lines of {args.size} "
        f"bytes, window {args.window or 'unlimited'}, {args.repeat} runs each, alternating, "
        f"against {'a fresh server per run' if args.server_per_run else 'one server'} "
        f"with --port and --web; WebSocket readers in {args.processes} "
        f"process{'es' if args.processes > 1 else ''} (websockets {websockets.__version__})",
        flush=True,
    )
    shared = None if args.server_per_run else start_server(fanout_command(args))
    try:
        for run_number in range(args.repeat):
            for kind in kinds:
                server, port = shared or start_server(fanout_command(args))
                try:
                    if kind == "websocket":
                        figures = asyncio.run(measure_websocket(server, port, args))
                        extra = (
                            f", {figures['per_message']:.1f} per WebSocket message, "
                            f"{figures['echoes']:,} echoes"
                        )
                    else:
                        figures = telnet_measure(server, args)
                        extra = ""
                    if shared:
                        # The clients' quits are processed before the next run.
                        quiet(server)
                finally:
                    if not shared:
                        server.stop()
                for who in ("server", "own"):
                    # Microseconds of CPU per delivery.
                    figures[f"{who}_us"] = (
                        figures[f"{who}_cpu"]
                        * figures["seconds"]
                        / max(1, figures["deliveries"])
                        * 1e6
                    )
                results[kind].append(figures)
                print(
                    f"  run {run_number + 1} {kind:9} {figures['rate']:>10,.0f} deliveries/s "
                    f"p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms  "
                    f"RSS {figures['rss_end']:6.1f} MiB (peak {figures['rss_peak']:.1f})  "
                    f"CPU server {figures['server_cpu']:.0%} "
                    f"generator {figures['own_cpu']:.0%} "
                    f"machine {figures['machine_cpu']:.0%} "
                    f"({figures['server_us']:.2f}/{figures['own_us']:.2f} us per delivery)  "
                    f"{figures['deliveries']:,}/{figures['expected']:,} delivered{extra}",
                    flush=True,
                )
    finally:
        if shared:
            shared[0].stop()
    print(
        f"\n{'clients':9} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} "
        f"{'peak MiB':>9} {'CPU srv':>8} {'CPU gen':>8} {'machine':>8} {'us srv':>7} {'us gen':>7} "
        f"{'complete':>9}"
    )
    for kind, runs in results.items():
        median = sorted(runs, key=lambda f: f["rate"])[len(runs) // 2]
        complete = all(f["deliveries"] == f["expected"] for f in runs)
        print(
            f"{kind:9} {median['rate']:>12,.0f} {median['p50']:>8.1f} {median['p99']:>8.1f} "
            f"{median['rss_end']:>8.1f} {median['rss_peak']:>9.1f} "
            f"{median['server_cpu']:>8.0%} {median['own_cpu']:>8.0%} {median['machine_cpu']:>8.0%} "
            f"{median['server_us']:>7.2f} {median['own_us']:>7.2f} "
            f"{'yes' if complete else 'NO':>9}"
        )
    print(
        "(median run of each kind, by deliveries/s; CPU: share of one core during sending, "
        "machine: all processes on both cores (200% is everything); "
        "us: CPU microseconds per delivery)"
    )


# Memory mode.


def memory_command(options: list[str]) -> list[str]:
    """
    The memory mode's server: both listeners on 127.0.0.1, the connection
    limits lifted (L{MEMORY_OPTIONS}), everything else as by default.
    """
    return [
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        "--logfile=-",
        "chat",
        "--port",
        "tcp:0:interface=127.0.0.1",
        *WEB,
        *MEMORY_OPTIONS,
        *options,
    ]


def quiet(server: Server, timeout: float = 30) -> float:
    """
    Wait until the server used under 5% of a core for a whole second (at
    most C{timeout} seconds); return the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        cpu = server.cpu_seconds()
        time.sleep(1)
        if server.cpu_seconds() - cpu < 0.05:
            break
    return time.monotonic() - start


def idle_telnet(server: Server, count: int) -> dict[str, float]:
    """
    Connect one warm-up telnet client, read the server's RSS, connect and
    register C{count} more (loadgen's C{register}, one after another),
    wait until the server is quiet, read its RSS again.
    """
    sockets = [register(server.port, 0)]
    quiet(server)
    before, _ = server.memory()
    start = time.monotonic()
    try:
        for index in range(1, count + 1):
            sockets.append(register(server.port, index))
        connected = time.monotonic() - start
        quiet(server)
        after, peak = server.memory()
    finally:
        for sock in sockets:
            sock.close()
    return {"before": before, "after": after, "peak": peak, "connected": connected}


async def idle_websockets(
    server: Server, port: int, count: int, concurrency: int
) -> dict[str, float]:
    """
    Connect one warm-up WebSocket client, read the server's RSS, connect
    and sign in C{count} more (C{concurrency} handshakes at a time), wait
    until the server is quiet, read its RSS again.
    """
    clients = [await sign_in(port, 0)]
    await asyncio.to_thread(quiet, server)
    before, _ = server.memory()
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with gate:
            clients.append(await sign_in(port, index))

    start = time.monotonic()
    try:
        await asyncio.gather(*(one(index) for index in range(1, count + 1)))
        connected = time.monotonic() - start
        await asyncio.to_thread(quiet, server)
        after, peak = server.memory()
    finally:
        for ws in clients:
            ws.transport.abort()
    return {"before": before, "after": after, "peak": peak, "connected": connected}


def memory(args: argparse.Namespace) -> None:
    """
    Alternate WebSocket and telnet memory runs on fresh servers, and
    print every run and the medians.
    """
    raise_open_files(args.connections + 1)
    kinds = args.kinds.split(",")
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    options = [*MEMORY_OPTIONS, *args.server_option]
    print(
        f"{args.connections:,} idle connections (signed in) per server, after one warm-up "
        f"client; a fresh server per run, with --port and --web and {' '.join(options)}; "
        f"{args.repeat} runs each, alternating (websockets {websockets.__version__})",
        flush=True,
    )
    for run_number in range(args.repeat):
        for kind in kinds:
            server, port = start_server(memory_command(args.server_option))
            try:
                if kind == "websocket":
                    figures = asyncio.run(
                        idle_websockets(server, port, args.connections, args.concurrency)
                    )
                elif kind == "telnet":
                    figures = idle_telnet(server, args.connections)
                else:
                    raise SystemExit(f"unknown kind {kind!r}: websocket or telnet")
            finally:
                server.stop()
            figures["per_connection"] = (
                (figures["after"] - figures["before"]) * 1024 / args.connections
            )
            results[kind].append(figures)
            print(
                f"  run {run_number + 1} {kind:9} RSS {figures['before']:6.1f} MiB before, "
                f"{figures['after']:6.1f} MiB after {args.connections:,} connections "
                f"(peak {figures['peak']:.1f}): {figures['per_connection']:5.1f} KiB per "
                f"connection; all signed in after {figures['connected']:.1f} s",
                flush=True,
            )
    print(
        f"\n{'clients':9} {'before MiB':>10} {'after MiB':>10} {'peak MiB':>9} "
        f"{'KiB/connection':>15} {'connect s':>10}"
    )
    for kind, runs in results.items():
        median = sorted(runs, key=lambda f: f["per_connection"])[len(runs) // 2]
        print(
            f"{kind:9} {median['before']:>10.1f} {median['after']:>10.1f} {median['peak']:>9.1f} "
            f"{median['per_connection']:>15.1f} {median['connected']:>10.1f}"
        )
    print("(median run of each kind, by KiB per connection: (after - before) / connections)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["fanout", "memory"], default="fanout")
    parser.add_argument(
        "--kinds", default="websocket,telnet", help="comma-separated: websocket, telnet"
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--lines", type=int, default=500, help="lines each sender sends")
    parser.add_argument("--size", type=int, default=100, help="bytes of text per line sent")
    parser.add_argument(
        "--window", type=int, default=20, help="lines in flight per sender; 0: no limit"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each kind, alternating; the median is shown"
    )
    parser.add_argument("--timeout", type=float, default=120, help="seconds per run at most")
    parser.add_argument(
        "--server-per-run",
        action="store_true",
        help="fan-out: a fresh server for every run (as loadgen.py does), not one for all",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="processes reading the WebSocket clients"
    )
    parser.add_argument(
        "--connections", type=int, default=5000, help="memory mode: idle connections"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=50,
        help="memory mode: WebSocket handshakes at a time",
    )
    parser.add_argument(
        "--server-option",
        action="append",
        default=[],
        help="extra option for twistd chat",
    )
    args = parser.parse_args()
    if args.mode == "memory":
        memory(args)
    else:
        raise_open_files(2 * args.clients)
        fanout(args)


if __name__ == "__main__":
    main()
