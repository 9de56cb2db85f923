"""
IRC fan-out and memory (issue 11): twistedchat's IRC front end (C{--irc})
measured next to its telnet front end and next to two other IRC servers,
ngIRCd (Debian's C{ngircd}, written in C) and miniircd (PyPI, one Python
file), under the same load in the same invocation.

Servers (C{--servers}, every run on a fresh server, all on 127.0.0.1):

  - C{twistedchat-irc}, C{twistedchat-telnet}: one C{twistd -n chat} from
    this virtual environment with both listeners (C{--port} and C{--irc})
    and the limits lifted for the benchmark (L{TWISTEDCHAT_OPTIONS}: flood
    control off, loopback exempt, no connection limits, history in
    memory); the IRC runs use the IRC listener, the telnet runs the
    telnet one.
  - C{ngircd}: C{ngircd -n -f CONFIG} with a generated configuration in a
    temporary directory (L{ngircd_config}: no per-address or total
    connection limit, penalties ("flood protection") off, no DNS, IDENT or
    PAM look-ups, no channel limit per user).
  - C{miniircd}: C{miniircd --listen 127.0.0.1 --ports PORT} from this
    virtual environment (it has no limits to lift; run as root it must be
    told C{--setuid}, so it runs as C{nobody}).

Clients are asyncio protocols on raw sockets, all in this process. An IRC
client sends C{NICK cN} and C{USER cN 0 * :ircload}, sends C{JOIN #lobby}
when it gets 001 and is registered when it gets the 366 (end of NAMES)
of C{#lobby}; any other numeric from 400 to 599 but 422 (no MOTD), or an
C{ERROR}, during registration fails the run. (twistedchat puts every
user in C{#lobby} at registration, so its 366 may come before the C{JOIN},
which then changes nothing.) A telnet client sends C{cN} and is
registered at C{Welcome}. Every client answers C{PING} with C{PONG}, in
every phase. Registration runs C{--concurrency} clients at a time
(default 4: miniircd listens with a backlog of 5 and ngIRCd of 10, and a
connection beyond the backlog waits a second for its SYN to be sent
again).

Fan-out (C{--mode fanout}): C{--clients} clients (200) register, the last
one, the probe, alone after the others. The probe sends C{barrier} to the
channel and every other client reads up to it, so no join notice is
counted later. Once the server is quiet and the whole machine has been
under 15% of a core busy for a second (other work on the two cores would
be measured too; at most 300 s of waiting), each of the first C{--senders} clients (20) sends
C{--lines} lines (500) to the channel, each C{--size} bytes of text (100:
C{x} padding, then C{|sender|sequence|monotonic ns|}), as C{PRIVMSG #lobby
:TEXT} over IRC or as the bare line over telnet. A sender keeps at most
C{--window} lines in flight (20: sent and not yet seen by the probe), as
bench/loadgen.py does; with C{--rate R} it also sends at most R lines per
second (flat out, within the window, by default); C{--duration S} with
C{--rate} sets C{--lines} to R x S. A run ends when every line has
reached every other client, or after C{--timeout} seconds.

  - deliveries/s: payload lines received by all clients together (a line
    ends C{|<CR><LF>}), divided by the time from the first line sent to
    the last delivered. Nobody gets their own lines back (no client asks
    for C{echo-message}), so a delivery is a line to another client for
    every server.
  - p50/p99 latency: over every delivery at every receiver: each client
    keeps the complete lines of every read with the time it read them
    (C{time.monotonic_ns}), and the send times in them are read after the
    run, so that parsing does not load the machine during it. Python's
    garbage collector is off while lines are sent (a full collection over
    the kept blocks would pause every client for tens of milliseconds and
    show as latency of every server alike).
  - RSS at the end of the run and its peak (C{VmHWM}), the CPU share of
    the server, of this generator and of the whole machine
    (C{/proc/stat}; 200% is both cores), and CPU microseconds per delivery
    of server and generator.
  - lines received during the run that are not payload (C{PING}, notices,
    errors) are counted and the first one shown.

None of the four servers sets C{TCP_NODELAY}, so at a low C{--rate} a line
can wait in the server for the acknowledgement of the one before (Nagle),
which a silent client delays by up to 40 ms: C{--quickack} makes the
clients acknowledge every read at once (C{TCP_QUICKACK}), to tell that
wait apart from the server's own.

Memory (C{--mode memory}): for each server, a fresh server takes one
warm-up client (registered, in C{#lobby}); once the server has used
under 5% of a core for a second its RSS (C{VmRSS} in
C{/proc/PID/status}) is read; then C{--connections} more clients (5,000)
register, join C{#lobby} and stay idle (reading, answering C{PING});
once the server is quiet again RSS is read again. (after - before) /
connections is the memory per idle client. A server that fails on the way
is reported with how many clients it had taken.

Runs alternate between the servers, C{--repeat} (3) of each per mode;
the median run is reported. The open-files limit is raised to what the
clients need (the servers inherit it). Every run is bounded (counts,
C{--timeout}, 30 s per registration, 60 s to become quiet) and stops its
server's process group, on errors too. Server logs are kept in a
temporary directory that is removed at the end (C{--keep-logs} keeps it).

twistedchat runs from the checkout this script is in, as installed in the
virtual environment, unless C{--source DIR} names another tree (such as
C{git archive HEAD twistedchat twisted} unpacked into DIR), which is put
first on the server's C{PYTHONPATH}: a fixed commit can be measured while
the working tree changes.

Usage:
    python bench/ircload.py                      # fan-out, then memory at 5,000
    python bench/ircload.py --quick              # smoke run, under a minute
    python bench/ircload.py --mode fanout --servers twistedchat-irc,ngircd
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SERVERS = ("twistedchat-irc", "twistedchat-telnet", "ngircd", "miniircd")
CHANNEL = b"#lobby"
#: Lift twistedchat's limits for the benchmark: flood control (lines and
#: bytes) off, loopback exempt from the per-address limits, no limit on
#: connections (total, per address, per minute), history in memory only.
TWISTEDCHAT_OPTIONS = [
    "--exempt",
    "127.0.0.1",
    "--flood-rate",
    "0",
    "--flood-bytes",
    "0",
    "--max-clients",
    "0",
    "--max-per-ip",
    "0",
    "--connection-rate",
    "0",
    "--database",
    ":memory:",
]
#: How every payload line ends, at every server and front end.
END = b"|\r\n"
#: A payload line's marker: |sender|sequence|send time in monotonic ns|.
PAYLOAD = re.compile(rb"\|(\d+)\|(\d+)\|(\d+)\|\r\n")
#: The send time alone, for reading latencies after the run.
STAMP = re.compile(rb"\|\d+\|\d+\|(\d+)\|\r\n")
BARRIER = b"barrier"
#: Seconds allowed to connect and register one client.
REGISTRATION_TIMEOUT = 30
#: Seconds a server may take to start listening, or to become quiet.
START_TIMEOUT = 30
QUIET_TIMEOUT = 60
#: What to look for in each server's log after a run.
LOG_PROBLEMS = {
    "twistedchat": re.compile(r"Traceback|Unhandled|SendQ exceeded|[Ee]rror"),
    "ngircd": re.compile(r"exhausted|too long|[Ee]rror|[Tt]imeout|[Ff]lood"),
    "miniircd": re.compile(r"Traceback|Error|timeout"),
}
#: One receive buffer for every client: asyncio hands it to one protocol
#: at a time and that protocol copies out what it needs at once, so no
#: read allocates a buffer of its own (a 256 KiB allocation per read
#: otherwise: asyncio's default size).
RECEIVE_BUFFER = bytearray(1 << 16)
RECEIVE_VIEW = memoryview(RECEIVE_BUFFER)
#: --quickack: acknowledge every read at once (TCP_QUICKACK, tcp(7); the
#: kernel drops back to delayed acknowledgements by itself, so it is set
#: again after each read).
QUICKACK = False


class BenchError(Exception):
    """
    A run could not be completed: a client was refused, closed or not
    answered, or a server did not start. The message says which and why.
    """


# Servers.


def free_port() -> int:
    """
    Return a TCP port of 127.0.0.1 that was free a moment ago.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ngircd_config(port: int, directory: Path) -> str:
    """
    ngIRCd's configuration (ngircd.conf(5)) for the benchmark: listen on
    127.0.0.1:C{port} only; no total (C{MaxConnections}) or per-address
    (C{MaxConnectionsIP}) connection limit and no channel limit per user
    (C{MaxJoins}), all 0; C{MaxPenaltyTime = 0} turns penalty times, its
    flood protection, off (ngIRCd warns that this is not recommended);
    no DNS, IDENT or PAM look-ups, which would fork a resolver per
    connection. Nicknames up to 16 characters, as twistedchat's. What the
    configuration cannot change is compiled in: 2,048 bytes of unprocessed
    input and 32 KiB of unsent output per client (more closes the
    connection), and a listen backlog of 10.
    """
    include = directory / "conf.d"
    include.mkdir(exist_ok=True)
    return f"""\
[Global]
Name = bench.ngircd
Info = ircload.py benchmark
AdminInfo1 = ircload.py
AdminInfo2 = 127.0.0.1 only
AdminEMail = nobody@bench.invalid
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxNickLength = 16
MaxPenaltyTime = 0
[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = {include}
"""


class Server:
    """
    One server process for one run, in its own process group; C{port} is
    where the run's clients connect.
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        extra: list[str],
        run_label: str,
        source: Path | None = None,
    ) -> None:
        self.name = name
        self.family = name.split("-")[0]
        self.log_path = directory / f"{run_label}.log"
        ports = [free_port(), free_port()]
        if self.family == "twistedchat":
            command = [
                str(BIN / "twistd"),
                "-n",
                "--pidfile=",
                "--logfile=-",
                "chat",
                "--port",
                f"tcp:{ports[0]}:interface=127.0.0.1",
                "--irc",
                f"tcp:{ports[1]}:interface=127.0.0.1",
                *TWISTEDCHAT_OPTIONS,
                *extra,
            ]
            self.port = ports[1] if name == "twistedchat-irc" else ports[0]
        elif name == "ngircd":
            ngircd = shutil.which("ngircd") or "/usr/sbin/ngircd"
            if not Path(ngircd).exists():
                raise SystemExit("ngircd is not installed: apt-get install -y ngircd")
            config = directory / "ngircd.conf"
            config.write_text(ngircd_config(ports[0], directory))
            command = [ngircd, "--nodaemon", "--config", str(config)]
            self.port = ports[0]
        elif name == "miniircd":
            miniircd = BIN / "miniircd"
            if not miniircd.exists():
                raise SystemExit(f"miniircd is not installed: {BIN / 'pip'} install miniircd")
            command = [str(miniircd), "--listen", "127.0.0.1", "--ports", str(ports[0])]
            if os.geteuid() == 0:
                command += ["--setuid", "nobody"]
            self.port = ports[0]
        else:
            raise SystemExit(f"unknown server {name!r}: one of {', '.join(SERVERS)}")
        environment = dict(os.environ)
        if source is not None and self.family == "twistedchat":
            # Before the checkout the editable install puts on sys.path.
            environment["PYTHONPATH"] = str(source)
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,
        )
        RUNNING.append(self)

    async def started(self) -> None:
        """
        Wait until the server accepts connections on C{port}.

        @raise BenchError: it exited first, or took over 30 seconds.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited at start: {self.log_tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.transport.abort()
            # Give the server a moment to see the probe connection go.
            await asyncio.sleep(0.2)
            return
        raise BenchError(f"{self.name} not listening after {START_TIMEOUT} s: {self.log_tail()}")

    def status(self) -> dict[str, int]:
        """
        The server's C{/proc/PID/status} fields in kB (VmRSS, VmHWM).
        """
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}

    def memory(self) -> tuple[float, float]:
        """
        The server's resident memory now and at its peak, in MiB.
        """
        status = self.status()
        return status["VmRSS"] / 1024, status["VmHWM"] / 1024

    def cpu_seconds(self) -> float:
        """
        CPU time (user + system, seconds) the server process has used.
        """
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """
        Stop the server's process group (SIGTERM, then SIGKILL after 30 s)
        and wait for the server.
        """
        if self in RUNNING:
            RUNNING.remove(self)
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.log.close()

    def log_tail(self, size: int = 600) -> str:
        """
        The end of the server's log, for error messages.
        """
        self.log.flush()
        return self.log_path.read_bytes()[-size:].decode("utf-8", "replace").strip()

    def log_problems(self) -> list[str]:
        """
        Lines of the server's log that look like trouble (tracebacks,
        errors, connections closed by the server).
        """
        self.log.flush()
        pattern = LOG_PROBLEMS[self.family]
        text = self.log_path.read_text("utf-8", "replace")
        return [line.strip() for line in text.splitlines() if pattern.search(line)]


#: Servers started and not yet stopped, stopped on the way out whatever
#: happens.
RUNNING: list[Server] = []


def stop_all() -> None:
    for server in list(RUNNING):
        server.stop()


# Clients.


class Client(asyncio.BufferedProtocol):
    """
    One client, IRC or telnet, nickname cN. Phases: registering, then
    waiting for the barrier line (fan-out) or idle (memory), then counting
    payload lines (fan-out).
    """

    def __init__(self, index: int, irc: bool, fanout: Fanout | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.index = index
        self.irc = irc
        self.fanout = fanout
        self.transport: asyncio.Transport | None = None
        self.socket: Any = None
        self.phase = "registering"
        self.registered: asyncio.Future[None] = loop.create_future()
        self.barrier: asyncio.Future[None] = loop.create_future()
        self.partial = b""
        self.last = b""
        #: Fan-out: (read time in monotonic ns, the complete lines read).
        self.blocks: list[tuple[int, bytes]] = []
        self.received = 0
        self.other = 0

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.socket = transport.get_extra_info("socket")
        nickname = b"c%d" % self.index
        if self.irc:
            transport.write(b"NICK %s\r\nUSER %s 0 * :ircload\r\n" % (nickname, nickname))
        else:
            transport.write(nickname + b"\r\n")

    def get_buffer(self, sizehint: int) -> bytearray:
        return RECEIVE_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if QUICKACK:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data = RECEIVE_VIEW[:nbytes].tobytes()
        if self.partial:
            data = self.partial + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self.partial = data
            if len(data) > 65536:
                self.fail(f"{len(data)} bytes without a line end")
            return
        complete, self.partial = data[:cut], data[cut:]
        if self.phase == "counting":
            self.count(complete)
        elif self.phase == "idle":
            if b"PING" in complete or b"ERROR" in complete:
                self.lines(complete)
        elif self.phase == "barrier" and BARRIER in complete:
            end = complete.index(b"\n", complete.index(BARRIER)) + 1
            self.lines(complete[:end])
            self.phase = "counting"
            if not self.barrier.done():
                self.barrier.set_result(None)
            if end < len(complete):
                self.count(complete[end:])
        else:
            self.lines(complete)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"closed by the server ({exc or 'end of stream'})"
        self.fail(reason)

    # Lines

    def lines(self, complete: bytes) -> None:
        """
        Handle complete lines outside the counting hot path: answer PING,
        follow registration, notice errors.
        """
        for raw in complete.split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line:
                continue
            self.last = line
            if line.startswith(b"PING"):
                self.write(b"PONG" + line[4:] + b"\r\n")
            elif line.startswith(b"ERROR"):
                self.fail(line.decode("utf-8", "replace"))
            elif self.phase == "registering":
                self.registration_line(line)

    def registration_line(self, line: bytes) -> None:
        if not self.irc:
            if b"Welcome" in line:
                self.ready()
            return
        parts = line.split(b" ", 3)
        if len(parts) < 3 or not parts[0].startswith(b":"):
            return
        command = parts[1]
        if command == b"001":
            self.write(b"JOIN %s\r\n" % CHANNEL)
        elif command == b"366" and len(parts) == 4 and parts[3].split(b" ", 1)[0] == CHANNEL:
            self.ready()
        elif command.isdigit() and command[:1] in b"45" and command != b"422":
            self.fail("refused: " + line.decode("utf-8", "replace"))

    def ready(self) -> None:
        self.phase = "barrier" if self.fanout else "idle"
        if not self.registered.done():
            self.registered.set_result(None)

    def count(self, complete: bytes) -> None:
        """
        The hot path: count the payload lines in C{complete} and keep it
        with the time it was read; the probe also tells the senders what
        it has seen.
        """
        now = time.monotonic_ns()
        lines = complete.count(END)
        self.received += lines
        self.blocks.append((now, complete))
        if lines != complete.count(b"\n"):
            self.other += complete.count(b"\n") - lines
            self.lines(complete)
        fanout = self.fanout
        assert fanout is not None
        if self is fanout.probe:
            for match in PAYLOAD.finditer(complete):
                fanout.seen[int(match[1])] += 1
            fanout.pump()
        fanout.delivered(lines, now)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, reason: str) -> None:
        what = f"client c{self.index} {reason}; last line: {self.last[:200]!r}"
        for future in (self.registered, self.barrier):
            if not future.done():
                future.set_exception(BenchError(what))
                future.exception()  # retrieved here: it may never be awaited
        if self.fanout is not None:
            self.fanout.fail(what)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.fanout = None
        self.phase = "closed"
        if self.transport is not None:
            self.transport.abort()


async def register(
    name: str,
    port: int,
    indices: range,
    concurrency: int,
    clients: list[Client],
    fanout: Fanout | None = None,
) -> None:
    """
    Connect and register clients C{indices}, C{concurrency} at a time,
    appending each to C{clients} once registered.

    @raise BenchError: one could not connect or register within 30 s, or
        was refused; the others are left to the caller to close.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    irc = name != "twistedchat-telnet"

    async def one(index: int) -> None:
        async with gate:
            client = Client(index, irc, fanout)
            try:
                await asyncio.wait_for(
                    loop.create_connection(lambda: client, "127.0.0.1", port),
                    REGISTRATION_TIMEOUT,
                )
                await asyncio.wait_for(asyncio.shield(client.registered), REGISTRATION_TIMEOUT)
            except (OSError, asyncio.TimeoutError) as e:
                client.close()
                raise BenchError(
                    f"client c{index} not registered after {REGISTRATION_TIMEOUT} s "
                    f"({e!r}); last line: {client.last[:200]!r}"
                ) from None
            except BaseException:
                # Refused, closed, or cancelled because another failed.
                client.close()
                raise
            clients.append(client)

    tasks = [asyncio.create_task(one(index)) for index in indices]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# Measurement helpers.


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_cpu_seconds() -> float:
    """
    CPU time (seconds, all cores) the machine has spent busy so far.
    """
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


async def machine_idle(limit: float = 0.15, timeout: float = 300) -> float:
    """
    Wait until the whole machine has been under C{limit} of one core busy
    for a whole second (at most C{timeout} seconds): other work on the two
    cores would be measured too. Return the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        busy = machine_cpu_seconds()
        await asyncio.sleep(1)
        if machine_cpu_seconds() - busy < limit:
            break
    return time.monotonic() - start


async def quiet(server: Server) -> float:
    """
    Wait until the server used under 5% of a core for a whole second (at
    most 60 s), the clients reading meanwhile; return the seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < QUIET_TIMEOUT:
        cpu = server.cpu_seconds()
        await asyncio.sleep(1)
        if server.cpu_seconds() - cpu < 0.05:
            break
    return time.monotonic() - start


def raise_open_files(needed: int) -> None:
    """
    Raise this process's open-files limit to at least C{needed} (to the
    hard limit, and past it when running as root); servers started from
    here inherit it.

    @raise SystemExit: the limit cannot be raised that far.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            raise SystemExit(
                f"{needed} open files needed; the hard limit is {hard}: raise it with "
                "ulimit -Hn as root first"
            ) from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Fan-out.


class Fanout:
    """
    The state of one fan-out run: senders, what the probe has seen, the
    count of deliveries, and how the run ended.
    """

    def __init__(self, args: argparse.Namespace, irc: bool) -> None:
        self.args = args
        self.irc = irc
        self.senders: list[Client] = []
        self.probe: Client | None = None
        self.sent = [0] * args.senders
        self.seen = [0] * args.senders
        self.expected = args.lines * (
            args.senders * (args.senders - 1) + (args.clients - args.senders) * args.senders
        )
        self.total = 0
        self.start = 0
        self.last = 0
        self.error = ""
        self.padding = b"x" * max(1, args.size - 40)
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ticker: asyncio.TimerHandle | None = None

    def line(self, index: int, sequence: int) -> bytes:
        text = b"%s|%d|%d|%d|" % (self.padding, index, sequence, time.monotonic_ns())
        if self.irc:
            return b"PRIVMSG %s :%s\r\n" % (CHANNEL, text)
        return text + b"\r\n"

    def begin(self) -> None:
        self.start = time.monotonic_ns()
        self.pump()
        if self.args.rate:
            self.tick()

    def tick(self) -> None:
        self.pump()
        if not self.done.done():
            self.ticker = asyncio.get_running_loop().call_later(0.002, self.tick)

    def pump(self) -> None:
        """
        Send what each sender may send now: up to C{--lines}, at most
        C{--window} in flight, and with C{--rate} no more than its rate
        allows so far (the senders' schedules are spread over a period).
        """
        if not self.start:
            return
        args = self.args
        window = args.window or (1 << 62)
        elapsed = (time.monotonic_ns() - self.start) / 1e9
        for index, sender in enumerate(self.senders):
            allowed = args.lines
            if args.rate:
                allowed = min(allowed, int(args.rate * elapsed + index / len(self.senders)) + 1)
            sent = self.sent[index]
            limit = min(allowed, self.seen[index] + window)
            if sent < limit:
                sender.write(b"".join(self.line(index, s) for s in range(sent, limit)))
                self.sent[index] = limit

    def delivered(self, lines: int, now: int) -> None:
        if lines:
            self.total += lines
            self.last = now
            if self.total >= self.expected and not self.done.done():
                self.done.set_result(None)

    def fail(self, error: str) -> None:
        if not self.error:
            self.error = error
        if not self.done.done():
            self.done.set_result(None)


def latencies(clients: list[Client]) -> tuple[list[float], int, bytes]:
    """
    Every delivery's latency in ms (read time minus the send time in the
    line), sorted; the count of other lines received during the run, and
    the first of them.
    """
    found: list[float] = []
    first_other = b""
    for client in clients:
        for read_at, block in client.blocks:
            found.extend([(read_at - int(sent)) / 1e6 for sent in STAMP.findall(block)])
            if client.other and not first_other:
                for line in block.split(b"\r\n"):
                    if line and not line.endswith(b"|"):
                        first_other = line[:200]
                        break
    found.sort()
    return found, sum(client.other for client in clients), first_other


async def fanout_run(
    name: str, args: argparse.Namespace, directory: Path, label: str
) -> dict[str, Any]:
    """
    One fan-out run against a fresh server C{name}; return its figures.
    """
    server = Server(name, directory, args.server_option, label, args.source)
    clients: list[Client] = []
    irc = name != "twistedchat-telnet"
    fanout = Fanout(args, irc)
    figures: dict[str, Any] = {"error": ""}
    try:
        await server.started()
        await register(
            name, server.port, range(args.clients - 1), args.concurrency, clients, fanout
        )
        # The probe registers last, alone, so that it joins the channel last.
        await register(name, server.port, range(args.clients - 1, args.clients), 1, clients, fanout)
        fanout.senders = [c for c in clients if c.index < args.senders]
        fanout.senders.sort(key=lambda c: c.index)
        probe = fanout.probe = clients[-1]
        probe.write(b"PRIVMSG %s :%s\r\n" % (CHANNEL, BARRIER) if irc else BARRIER + b"\r\n")
        probe.phase = "counting"
        waiting = [asyncio.shield(c.barrier) for c in clients if c is not probe]
        await asyncio.wait_for(asyncio.gather(*waiting), REGISTRATION_TIMEOUT)
        await quiet(server)
        figures["waited"] = await machine_idle()
        figures["rss_idle"], _ = server.memory()
        server_cpu, own_cpu, machine_cpu = (
            server.cpu_seconds(),
            own_cpu_seconds(),
            machine_cpu_seconds(),
        )
        # The blocks kept for latencies are millions of objects: a full
        # collection of them would stop every client for tens of ms.
        gc.collect()
        gc.freeze()
        gc.disable()
        fanout.begin()
        try:
            await asyncio.wait_for(asyncio.shield(fanout.done), args.timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            gc.enable()
            gc.unfreeze()
        end = fanout.last if fanout.total else time.monotonic_ns()
        seconds = max(1e-9, (end - fanout.start) / 1e9)
        figures.update(
            seconds=seconds,
            server_cpu=(server.cpu_seconds() - server_cpu) / seconds,
            own_cpu=(own_cpu_seconds() - own_cpu) / seconds,
            machine_cpu=(machine_cpu_seconds() - machine_cpu) / seconds,
        )
        figures["rss_end"], figures["rss_peak"] = server.memory()
        figures["error"] = fanout.error
    except BenchError as e:
        figures["error"] = str(e)
    finally:
        if fanout.ticker:
            fanout.ticker.cancel()
        for client in clients:
            client.close()
        figures["log_problems"] = server.log_problems() if server.log_path.exists() else []
        server.stop()
    if "seconds" not in figures:
        return figures
    found, other, first_other = latencies(clients)
    figures.update(
        deliveries=fanout.total,
        expected=fanout.expected,
        rate=fanout.total / figures["seconds"],
        p50=statistics.median(found) if found else float("nan"),
        p99=found[int(len(found) * 0.99)] if found else float("nan"),
        other=other,
        first_other=first_other,
    )
    for who in ("server", "own"):
        figures[f"{who}_us"] = (
            figures[f"{who}_cpu"] * figures["seconds"] / max(1, fanout.total) * 1e6
        )
    return figures


# Memory.


async def memory_run(
    name: str, args: argparse.Namespace, directory: Path, label: str
) -> dict[str, Any]:
    """
    One memory run against a fresh server C{name}: RSS after one warm-up
    client and after C{args.connections} more idle ones; return the
    figures.
    """
    server = Server(name, directory, args.server_option, label, args.source)
    clients: list[Client] = []
    figures: dict[str, Any] = {"error": ""}
    try:
        await server.started()
        await register(name, server.port, range(1), 1, clients)
        await quiet(server)
        figures["before"], _ = server.memory()
        start = time.monotonic()
        try:
            await register(
                name, server.port, range(1, args.connections + 1), args.concurrency, clients
            )
        finally:
            figures["connected"] = time.monotonic() - start
            figures["clients"] = len(clients) - 1
        figures["quiet"] = await quiet(server)
        if not server.alive():
            raise BenchError(f"{name} exited: {server.log_tail()}")
        figures["after"], figures["peak"] = server.memory()
        lost = [c for c in clients if c.transport is None or c.transport.is_closing()]
        if lost:
            raise BenchError(f"{len(lost)} clients were closed while idle, first c{lost[0].index}")
        figures["per_client"] = (figures["after"] - figures["before"]) * 1024 / args.connections
    except BenchError as e:
        figures["error"] = str(e)
        if server.alive():
            figures["after"], figures["peak"] = server.memory()
    finally:
        for client in clients:
            client.close()
        figures["log_problems"] = server.log_problems()
        server.stop()
    return figures


# Reports.


def describe_problems(figures: dict[str, Any]) -> str:
    """
    What went wrong in a run, in a few words, or "".
    """
    notes = []
    if figures.get("error"):
        notes.append(f"FAILED: {figures['error']}")
    problems = figures.get("log_problems") or []
    if problems:
        notes.append(f"{len(problems)} log lines of note, first: {problems[0][:200]}")
    if figures.get("other"):
        notes.append(f"{figures['other']:,} other lines, first: {figures['first_other']!r}")
    return "; ".join(notes)


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    good = sorted((f for f in runs if key in f and not f.get("error")), key=lambda f: f[key])
    return good[len(good) // 2] if good else None


def versions(names: list[str], source: Path | None) -> str:
    """
    The versions under test: the checkout's commit (with C{-dirty} when
    the working tree differs from it) or the C{--source} directory,
    ngIRCd's and miniircd's.
    """
    parts = [f"Python {sys.version.split()[0]}"]
    if source is not None:
        parts.append(f"twistedchat from {source}")
    try:
        commit = subprocess.run(
            ["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        parts.append(f"{'checkout' if source else 'twistedchat'} at {commit}")
    except (OSError, subprocess.CalledProcessError):
        pass
    if "ngircd" in names and shutil.which("ngircd"):
        output = subprocess.run(["ngircd", "--version"], capture_output=True, text=True).stdout
        parts.append(output.split("-", 1)[0].strip())
    if "miniircd" in names:
        try:
            parts.append(f"miniircd {metadata.version('miniircd')}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


async def fanout(args: argparse.Namespace, names: list[str], directory: Path) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    pacing = f"at most {args.rate:g} lines/s each" if args.rate else "flat out"
    print(
        f"fan-out: {args.clients} clients in #lobby, {args.senders} senders x {args.lines} "
        f"lines of {args.size} bytes, window {args.window or 'unlimited'}, {pacing}; "
        f"{args.repeat} runs of each server, alternating, a fresh server per run",
        flush=True,
    )
    for run_number in range(args.repeat):
        for name in names:
            label = f"fanout-{run_number + 1}-{name}"
            figures = await fanout_run(name, args, directory, label)
            results[name].append(figures)
            if "rate" in figures:
                line = (
                    f"  run {run_number + 1} {name:18} {figures['rate']:>10,.0f} deliveries/s "
                    f"p50 {figures['p50']:7.1f} ms  p99 {figures['p99']:7.1f} ms  "
                    f"RSS {figures['rss_end']:6.1f} MiB (peak {figures['rss_peak']:.1f})  "
                    f"CPU server {figures['server_cpu']:.0%} generator {figures['own_cpu']:.0%} "
                    f"machine {figures['machine_cpu']:.0%} "
                    f"({figures['server_us']:.2f}/{figures['own_us']:.2f} us per delivery)  "
                    f"{figures['deliveries']:,}/{figures['expected']:,} delivered"
                )
                if figures["waited"] > 5:
                    line += f", after waiting {figures['waited']:.0f} s for an idle machine"
            else:
                line = f"  run {run_number + 1} {name:18} no figures"
            notes = describe_problems(figures)
            print(line + (f"  [{notes}]" if notes else ""), flush=True)
    print(
        f"\n{'server':18} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} "
        f"{'peak MiB':>9} {'CPU srv':>8} {'CPU gen':>8} {'machine':>8} {'us srv':>7} "
        f"{'us gen':>7} {'complete':>9}"
    )
    for name, runs in results.items():
        median = median_run(runs, "rate")
        complete = all(f.get("deliveries") == f.get("expected") for f in runs)
        if median is None:
            print(f"{name:18} {'failed':>12}")
            continue
        print(
            f"{name:18} {median['rate']:>12,.0f} {median['p50']:>8.1f} {median['p99']:>8.1f} "
            f"{median['rss_end']:>8.1f} {median['rss_peak']:>9.1f} "
            f"{median['server_cpu']:>8.0%} {median['own_cpu']:>8.0%} "
            f"{median['machine_cpu']:>8.0%} {median['server_us']:>7.2f} "
            f"{median['own_us']:>7.2f} {'yes' if complete else 'NO':>9}"
        )
    print(
        "(median run of each server, by deliveries/s; latency over every delivery at every "
        "receiver; CPU: share of one core while sending, machine: both cores are 200%; "
        "us: CPU microseconds per delivery)",
        flush=True,
    )


async def memory(args: argparse.Namespace, names: list[str], directory: Path) -> None:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    print(
        f"memory: {args.connections:,} idle clients (registered, in #lobby) per server, after "
        f"one warm-up client, {args.concurrency} registering at a time; {args.repeat} runs of "
        "each server, alternating, a fresh server per run",
        flush=True,
    )
    for run_number in range(args.repeat):
        for name in names:
            label = f"memory-{run_number + 1}-{name}"
            figures = await memory_run(name, args, directory, label)
            results[name].append(figures)
            if "per_client" in figures:
                line = (
                    f"  run {run_number + 1} {name:18} RSS {figures['before']:6.1f} MiB before, "
                    f"{figures['after']:6.1f} MiB after {args.connections:,} clients "
                    f"(peak {figures['peak']:.1f}): {figures['per_client']:5.1f} KiB per client; "
                    f"registered in {figures['connected']:.1f} s, quiet {figures['quiet']:.1f} s "
                    "later"
                )
            else:
                line = (
                    f"  run {run_number + 1} {name:18} {figures.get('clients', 0):,} of "
                    f"{args.connections:,} clients registered"
                )
                if "after" in figures:
                    line += f", RSS {figures['after']:.1f} MiB"
            notes = describe_problems(figures)
            print(line + (f"  [{notes}]" if notes else ""), flush=True)
    print(
        f"\n{'server':18} {'before MiB':>10} {'after MiB':>10} {'peak MiB':>9} "
        f"{'KiB/client':>11} {'register s':>11}"
    )
    for name, runs in results.items():
        median = median_run(runs, "per_client")
        if median is None:
            most = max(f.get("clients", 0) for f in runs)
            print(f"{name:18} failed (at most {most:,} clients registered)")
            continue
        print(
            f"{name:18} {median['before']:>10.1f} {median['after']:>10.1f} "
            f"{median['peak']:>9.1f} {median['per_client']:>11.1f} {median['connected']:>11.1f}"
        )
    print("(median run of each server, by KiB per client: (after - before) / clients)", flush=True)


async def main_async(args: argparse.Namespace, names: list[str], directory: Path) -> None:
    print(versions(names, args.source), flush=True)
    if args.mode in ("fanout", "all"):
        await fanout(args, names, directory)
    if args.mode == "all":
        print()
    if args.mode in ("memory", "all"):
        await memory(args, names, directory)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["fanout", "memory", "all"], default="all")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help=f"comma-separated: {', '.join(SERVERS)}"
    )
    parser.add_argument("--clients", type=int, default=200, help="fan-out: clients")
    parser.add_argument("--senders", type=int, default=20, help="fan-out: clients that send")
    parser.add_argument("--lines", type=int, default=500, help="fan-out: lines each sender sends")
    parser.add_argument("--size", type=int, default=100, help="fan-out: bytes of text per line")
    parser.add_argument(
        "--window", type=int, default=20, help="fan-out: lines in flight per sender; 0: no limit"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="fan-out: lines per second per sender at most; 0: as fast as the window allows",
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="fan-out: with --rate, sets --lines to rate x S"
    )
    parser.add_argument("--timeout", type=float, default=120, help="fan-out: seconds per run")
    parser.add_argument(
        "--connections", type=int, default=5000, help="memory: idle clients per server"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="clients registering at a time")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each server per mode; the median is shown"
    )
    parser.add_argument(
        "--server-option", action="append", default=[], help="extra option for twistd chat"
    )
    parser.add_argument(
        "--source",
        type=Path,
        help="run twistedchat from this directory (one holding twistedchat/ and "
        "twisted/plugins/, such as a git archive export of a commit) instead of the checkout",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 50 clients, 5 senders x 100 lines, 500 idle clients, 1 run each",
    )
    parser.add_argument(
        "--quickack",
        action="store_true",
        help="clients acknowledge every read at once (TCP_QUICKACK), so that a server's "
        "Nagle delays do not wait for delayed acknowledgements",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' logs (the directory is shown)"
    )
    args = parser.parse_args()
    if args.quick:
        args.clients, args.senders, args.lines, args.connections, args.repeat = 50, 5, 100, 500, 1
    if args.rate and args.duration:
        args.lines = max(1, round(args.rate * args.duration))
    if not 0 < args.senders < args.clients:
        raise SystemExit("need at least one sender and more clients than senders")
    if args.source is not None:
        args.source = args.source.resolve()
        if not (args.source / "twistedchat" / "tap.py").exists():
            raise SystemExit(f"{args.source} holds no twistedchat/tap.py")
    global QUICKACK
    QUICKACK = args.quickack
    names = args.servers.split(",")
    for name in names:
        if name not in SERVERS:
            raise SystemExit(f"unknown server {name!r}: one of {', '.join(SERVERS)}")
    raise_open_files(max(args.clients, args.connections + 1) + 256)
    directory = Path(tempfile.mkdtemp(prefix="ircload-"))
    # SIGTERM stops the servers too, as an interrupt does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        asyncio.run(main_async(args, names, directory))
    finally:
        stop_all()
        if args.keep_logs:
            print(f"server logs: {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
