"""
C{twistd chat --workers N}: one supervisor process and N worker processes
sharing the listening sockets (docs/cluster.md, section 14).

The supervisor (L{Supervisor}) binds every C{--port}, C{--web} and C{--irc}
listener once, so that a port already in use stops start-up once, with one
line. It then starts N workers, each a complete C{twistd -n chat} with the
same chat options, that inherit the listening sockets as descriptors 3, 4,
... and name them with the hidden option C{--inherit FD:DESCRIPTION}. A
worker turns each into a listener with L{inherited_endpoint}
(C{IReactorSocket.adoptStreamPort}); the kernel hands each new connection
to whichever worker accepts it first.

The supervisor restarts a worker that exits with a growing delay (1 s,
doubled up to 30 s), passes C{SIGHUP} (reload the C{--config} file) on to
every worker, and stops them (C{SIGTERM}, then C{SIGKILL} after a timeout)
when it stops itself (C{SIGTERM}, C{SIGINT}).

What each worker is given besides the parent's chat command line
(L{worker_arguments}):

  - C{--workers=1}, so that a C{workers} setting of a C{--config} file does
    not make it a supervisor in turn;
  - C{--node-name=NAME_wI}, I counting from 0, NAME the C{--node-name} or
    the host name, shortened to keep the whole within 40 characters (a
    node name is letters, digits, dots and underscores: no C{-}, which
    separates it from the random part of the node id);
  - C{--database=FILE-wI.EXT} for a SQLite file C{FILE.EXT}: each worker
    numbers history events from its own file's last one and keeps its own
    accounts in memory, so that two workers sharing one file would hand out
    the same event ids and could register one nickname twice. C{:memory:}
    and PostgreSQL URLs are passed on as they are;
  - C{--metrics=...:PORT+I:...}: worker I serves metrics on the given port
    plus I (L{metrics_description});
  - C{--inherit FD:DESCRIPTION} for each shared listener.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import ssl
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.error import CannotListenError, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.lockfile import FilesystemLock
from zope.interface import implementer

#: First delay, and longest delay, in seconds, before a worker that exited
#: is started again; the delay doubles at each exit in a row.
FIRST_RESTART_DELAY = 1.0
LONGEST_RESTART_DELAY = 30.0

#: Seconds workers have to stop after SIGTERM before they get SIGKILL.
STOP_TIMEOUT = 10.0

#: The environment variable telling a worker its supervisor's process id.
SUPERVISOR_VARIABLE = "TWISTEDCHAT_SUPERVISOR"

#: The longest node name (C{--node-name}).
NODE_NAME_LENGTH = 40

#: The first descriptor number a worker inherits listeners on (0, 1, 2 are
#: standard input, output and error, shared with the supervisor).
FIRST_INHERITED_FD = 3

#: Endpoint description parameters L{bind_listener} and
#: L{inherited_endpoint} understand, by endpoint type.
_PARAMETERS = {
    "tcp": ("port", "interface", "backlog"),
    "tcp6": ("port", "interface", "backlog"),
    "ssl": (
        "port",
        "privateKey",
        "certKey",
        "interface",
        "backlog",
        "extraCertChain",
        "dhParameters",
    ),
    "unix": ("address", "mode", "backlog", "lockfile"),
}


def _split_raw(description: str) -> list[str]:
    """
    Split an endpoint description on the colons that no backslash escapes,
    keeping the escapes (Twisted's C{serverFromString} syntax).
    """
    parts, current, escaped = [], "", False
    for character in description:
        if escaped:
            current += character
            escaped = False
        elif character == "\\":
            current += character
            escaped = True
        elif character == ":":
            parts.append(current)
            current = ""
        else:
            current += character
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _key_value(part: str) -> tuple[str | None, str]:
    """
    The C{(key, value)} of one raw segment C{key=value}, or C{(None,
    value)} for a positional one; the value unescaped.
    """
    match = re.match(r"((?:[^\\=]|\\.)*)=(.*)", part, re.DOTALL)
    if match is None:
        return None, _unescape(part)
    return _unescape(match.group(1)), _unescape(match.group(2))


def parse_description(description: str) -> tuple[str, dict[str, str]]:
    """
    Parse a server endpoint description of type C{tcp}, C{tcp6}, C{ssl} or
    C{unix} into its type and parameters, positional ones named as
    Twisted's endpoint parsers name them (C{port}; C{address} for C{unix};
    C{privateKey} after the port for C{ssl}).

    @raise ValueError: another endpoint type, a parameter of none of these
        types, or a parameter given twice.
    """
    kind, *parts = _split_raw(description)
    names = _PARAMETERS.get(kind)
    if names is None:
        raise ValueError(f"{description}: --workers shares tcp:, tcp6:, ssl: and unix: listeners")
    positional = iter(names)
    parameters: dict[str, str] = {}
    for part in parts:
        key, value = _key_value(part)
        if key is None:
            key = next(positional, None)
            if key is None:
                raise ValueError(f"{description}: too many parameters")
        if key not in names:
            raise ValueError(f"{description}: {key}= is not supported with --workers")
        if key in parameters:
            raise ValueError(f"{description}: {key} is given twice")
        parameters[key] = value
    if not parameters.get("port" if kind != "unix" else "address"):
        raise ValueError(f"{description}: no port or address")
    return kind, parameters


def bind_listener(description: str) -> tuple[socket.socket, FilesystemLock | None]:
    """
    Create a listening socket for the endpoint C{description} as Twisted's
    endpoint would: bound to its interface and port (or Unix path),
    C{SO_REUSEADDR} for TCP, listening with its backlog (Twisted's default
    of 50 if none), non-blocking. For a Unix socket with C{lockfile}
    (the default), the lock C{PATH.lock} is taken first and a stale
    socket file removed, as C{IReactorUNIX.listenUNIX} with C{wantPID}
    does.

    @return: the socket, and the Unix socket's lock (release it once the
        socket is closed), or C{None}.
    @raise CannotListenError: the address is in use, or cannot be bound.
    @raise ValueError: a description L{parse_description} refuses.
    """
    kind, parameters = parse_description(description)
    backlog = int(parameters.get("backlog", "50"))
    lock = None
    if kind == "unix":
        path = parameters["address"]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if int(parameters.get("lockfile", "1")) and not path.startswith("\0"):
            lock = FilesystemLock(path + ".lock")
            if not lock.lock():
                sock.close()
                raise CannotListenError(None, path, "Cannot acquire lock")
            if os.path.exists(path):
                os.remove(path)
        try:
            sock.bind(path)
            if not path.startswith("\0"):
                os.chmod(path, int(parameters.get("mode", "666"), 8))
            sock.listen(backlog)
        except OSError as e:
            sock.close()
            if lock is not None:
                lock.unlock()
            raise CannotListenError(None, path, e) from None
    else:
        interface = parameters.get("interface", "::" if kind == "tcp6" else "")
        family = socket.AF_INET6 if kind == "tcp6" or isIPv6Address(interface) else socket.AF_INET
        port = int(parameters["port"])
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((interface, port))
            sock.listen(backlog)
        except OSError as e:
            sock.close()
            raise CannotListenError(interface, port, e) from None
    sock.setblocking(False)
    return sock, lock


def tls_context_factory(parameters: Mapping[str, str]) -> ssl.CertificateOptions:
    """
    The TLS server context of an C{ssl:} description's C{parameters}
    (from L{parse_description}), as the C{ssl:} endpoint builds it, with
    public APIs: the certificate of C{certKey} (default: the
    C{privateKey} file) and the key of C{privateKey}, the chain of
    C{extraCertChain}, and the Diffie-Hellman parameters of
    C{dhParameters}.

    @raise OSError: a file cannot be read.
    @raise twisted.internet.ssl.SSL.Error: a file holds no PEM certificate or key.
    """
    private_key = parameters["privateKey"]
    certificate = FilePath(parameters.get("certKey", private_key)).getContent()
    key = FilePath(private_key).getContent()
    pair = ssl.PrivateCertificate.loadPEM(certificate + b"\n" + key)
    chain = []
    if "extraCertChain" in parameters:
        pem = FilePath(parameters["extraCertChain"]).getContent()
        found = re.findall(
            rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.DOTALL
        )
        chain = [ssl.Certificate.loadPEM(one).original for one in found]
    dh = None
    if "dhParameters" in parameters:
        dh = ssl.DiffieHellmanParameters.fromFile(FilePath(parameters["dhParameters"]))
    return ssl.CertificateOptions(
        privateKey=pair.privateKey.original,
        certificate=pair.original,
        extraCertChain=chain or None,
        dhParameters=dh,
    )


@implementer(IStreamServerEndpoint)
class _InheritedEndpoint:
    """
    See L{inherited_endpoint}.
    """

    def __init__(self, reactor: Any, description: str, fd: int) -> None:
        self._reactor = reactor
        self._description = description
        self._fd = fd

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        try:
            kind, parameters = parse_description(self._description)
            if kind == "ssl":
                factory = TLSMemoryBIOFactory(tls_context_factory(parameters), False, factory)
            probe = socket.socket(fileno=self._fd)
            family = probe.family
            probe.detach()
            port = self._reactor.adoptStreamPort(self._fd, family, factory)
        except Exception:
            return fail()
        finally:
            try:
                os.close(self._fd)
            except OSError:
                pass
        return succeed(port)


def inherited_endpoint(reactor: Any, description: str, fd: int) -> IStreamServerEndpoint:
    """
    A server endpoint listening on the inherited listening socket C{fd}
    (bound by the supervisor from the endpoint C{description}): its
    C{listen(factory)} calls C{reactor.adoptStreamPort(fd, family,
    factory)} (C{IReactorSocket}), the family (C{AF_INET}, C{AF_INET6},
    C{AF_UNIX}) read from the socket, then closes C{fd}, which the port
    has duplicated. For an C{ssl:} description the factory is wrapped in
    C{TLSMemoryBIOFactory} with the context of L{tls_context_factory}.
    C{listen} fails (its L{Deferred}) when C{fd} is no listening socket or
    a certificate cannot be loaded; C{fd} is closed either way.

    @param reactor: an C{IReactorSocket} provider.
    """
    return _InheritedEndpoint(reactor, description, fd)


def parse_inherit(value: str) -> tuple[int, str]:
    """
    Parse the value of C{--inherit FD:DESCRIPTION}.

    @raise ValueError: no descriptor number before the first colon, or no
        description after it.
    """
    fd, colon, description = value.partition(":")
    if not fd.isdigit() or not colon or not description:
        raise ValueError(f"{value!r} is not FD:DESCRIPTION")
    return int(fd), description


def check_inherited(fd: int) -> None:
    """
    Check that the descriptor C{fd} is an open listening stream socket.

    @raise ValueError: it is not, with a sentence saying why.
    """
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError as e:
        raise ValueError(f"descriptor {fd} is not an open socket ({e.strerror})") from None
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    finally:
        sock.close()
    if not listening:
        raise ValueError(f"descriptor {fd} is not a listening socket")


def metrics_description(description: str, index: int) -> str:
    """
    The C{--metrics} endpoint description for worker C{index} (from 0): the
    C{tcp:}, C{tcp6:} or C{ssl:} C{description} with its port plus
    C{index}; port 0 (any free port) stays 0.

    @raise ValueError: another endpoint type, or no port number, or a
        port above 65535.
    """
    kind, *parts = _split_raw(description)
    if kind not in ("tcp", "tcp6", "ssl"):
        raise ValueError(
            "--metrics with --workers takes a TCP port (such as tcp:9100): worker I serves "
            "its metrics on that port + I"
        )
    for position, part in enumerate(parts):
        key, value = _key_value(part)
        if key in (None, "port"):
            if not value.isdigit():
                break
            port = int(value) + index if int(value) else 0
            if port > 65535:
                raise ValueError(f"--metrics: worker {index} would need port {port}")
            parts[position] = str(port) if key is None else f"port={port}"
            return ":".join([kind, *parts])
    raise ValueError(f"--metrics {description}: no port number")


def worker_path(path: str, index: int) -> str:
    """
    The file of worker C{index} for the file C{path}, absolute:
    C{/d/twistedchat.sqlite3} gives C{/d/twistedchat-w0.sqlite3}.
    """
    directory, name = os.path.split(os.path.abspath(path))
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    return os.path.join(directory, f"{stem}-w{index}{dot}{extension}")


def twistd_arguments(twistd: Mapping[str, Any], index: int) -> list[str]:
    """
    The C{twistd} options of worker C{index}, from the parent's parsed
    C{twistd} options: never a daemon nor a pid file (the supervisor is
    both, if anything); its log on the inherited standard output when the
    parent logs there, else in a file of its own next to the parent's
    (L{worker_path}), or in syslog as the parent; the parent's reactor.
    """
    arguments = ["--nodaemon", "--pidfile="]
    logfile = twistd.get("logfile")
    if twistd.get("syslog"):
        arguments += ["--syslog", f"--prefix={twistd.get('prefix', 'twisted')}"]
    elif logfile == "-" or (not logfile and twistd.get("nodaemon", True)):
        arguments.append("--logfile=-")
    else:
        arguments.append(f"--logfile={worker_path(logfile or 'twistd.log', index)}")
    if twistd.get("reactor"):
        arguments.append(f"--reactor={twistd['reactor']}")
    return arguments


def worker_arguments(options: Mapping[str, Any], index: int) -> list[str]:
    """
    The command line of worker C{index}, after the Python interpreter:
    C{twistd} options (L{twistd_arguments}), then C{chat} and the parent's
    chat command line C{options["argv"]} with the settings every worker
    gets (see this module's docstring), C{--inherit} excepted.

    @param options: the parent's parsed C{twistedchat.tap.Options}.
    """
    twistd = getattr(options, "parent", None) or {}
    suffix = f"_w{index}"
    name = (options.get("node-name") or socket.gethostname())[: NODE_NAME_LENGTH - len(suffix)]
    arguments = [
        "-c",
        "from twistedchat.workers import worker_main; worker_main()",
        *twistd_arguments(twistd, index),
        "chat",
        *options["argv"],
        "--workers=1",
        f"--node-name={name}{suffix}",
    ]
    database = options["database"]
    if database != ":memory:" and "://" not in database:
        arguments.append(f"--database={worker_path(database, index)}")
    if options.get("metrics"):
        arguments.append(f"--metrics={metrics_description(options['metrics'], index)}")
    return arguments


def worker_main() -> None:
    """
    Run a worker: C{twistd} with this process's arguments, in a process
    group of its own, so that a terminal's C{^C} reaches only the
    supervisor, which stops the workers itself (a worker given both
    C{SIGINT} and C{SIGTERM} would stop its reactor twice); C{SIGHUP} is
    ignored until the chat service handles it. On Linux the
    worker also gets C{SIGTERM} if the supervisor dies, and exits at once
    if it has died already.
    """
    os.setpgrp()
    # Until ChatService takes SIGHUP (once listening), a SIGHUP passed on
    # by the supervisor would end the worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    expected = os.environ.pop(SUPERVISOR_VARIABLE, "")
    if expected and str(os.getppid()) != expected:
        sys.exit("twistedchat worker: the supervisor has exited")
    from twisted.scripts.twistd import run

    run()


class _WorkerProtocol(ProcessProtocol):
    """
    Tells the supervisor when worker C{index} ends.
    """

    def __init__(self, ended: Callable[[int, Failure], None], index: int) -> None:
        self._ended = ended
        self._index = index

    def processEnded(self, reason: Failure) -> None:
        self._ended(self._index, reason)


def describe_exit(reason: Failure) -> str:
    """
    How a process ended, from C{processEnded}'s C{reason}: C{"with status
    N"} or C{"on signal N (NAME)"}.
    """
    value = reason.value
    if isinstance(value, ProcessTerminated) and value.signal is not None:
        try:
            name = signal.Signals(value.signal).name
        except ValueError:
            name = "?"
        return f"on signal {value.signal} ({name})"
    code = getattr(value, "exitCode", None)
    return f"with status {code or 0}"


class Supervisor(Service):
    """
    Binds the listeners, then runs C{workers} worker processes sharing
    them; see this module's docstring.

    Log lines: C{worker I started (pid P)}; C{worker I exited ...;
    restarting in S s}; C{worker I stopped ...}.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        descriptions: Sequence[str],
        workers: int,
        arguments: Callable[[int], list[str]],
        *,
        executable: str = sys.executable,
        environment: Mapping[str, str] | None = None,
        path: str | None = None,
        stop_timeout: float = STOP_TIMEOUT,
        handle_signals: bool = False,
    ) -> None:
        """
        @param reactor: an C{IReactorProcess} and C{IReactorTime}.
        @param descriptions: the endpoint descriptions to bind and share.
        @param arguments: the arguments of worker I after C{executable}
            (L{worker_arguments}); C{--inherit} options are added.
        @param environment: the workers' environment; this process's if
            C{None}.
        @param path: the directory workers start in; this process's
            current one at construction if C{None} (twistd's C{--rundir}
            comes later, and relative paths were given from here).
        @param stop_timeout: seconds from C{SIGTERM} to C{SIGKILL} when
            stopping.
        @param handle_signals: pass C{SIGHUP} on to the workers (the real
            reactor only).
        """
        self._reactor = reactor
        self._descriptions = list(descriptions)
        self._workers = workers
        self._arguments = arguments
        self._executable = executable
        self._environment = dict(os.environ if environment is None else environment)
        self._path = os.getcwd() if path is None else path
        self._stop_timeout = stop_timeout
        self._handle_signals = handle_signals
        self._previous_handler: Any = None
        self._sockets: list[socket.socket] = []
        self._locks: list[FilesystemLock] = []
        self._unix_paths: list[str] = []
        self.processes: dict[int, IProcessTransport] = {}
        self._started_at: dict[int, float] = {}
        self._delays: dict[int, float] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self._stopping: dict[int, Deferred[None]] = {}

    def privilegedStartService(self) -> None:
        """
        Bind every listener (before twistd gives up root privileges, if it
        has them).

        @raise SystemExit: a listener cannot be bound; one line says which
            and why.
        """
        super().privilegedStartService()
        self._bind()

    def _bind(self) -> None:
        if self._sockets:
            return
        for description in self._descriptions:
            try:
                sock, lock = bind_listener(description)
            except (CannotListenError, ValueError) as e:
                self._close()
                self._log.critical("{description}: {error}", description=description, error=e)
                raise SystemExit(1) from None
            self._sockets.append(sock)
            if lock is not None:
                self._locks.append(lock)
            if sock.family == socket.AF_UNIX:
                self._unix_paths.append(sock.getsockname())
            self._log.info(
                "bound {address} for {workers} workers",
                address=_describe(sock),
                workers=self._workers,
            )

    def startService(self) -> None:
        """
        Bind the listeners if L{privilegedStartService} has not, and start
        the workers.
        """
        self._bind()
        super().startService()
        if self._handle_signals:
            self._previous_handler = signal.signal(
                signal.SIGHUP,
                lambda number, frame: self._reactor.callFromThread(self.forward, signal.SIGHUP),
            )
        for index in range(self._workers):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        child_fds: dict[int, int | str] = {0: 0, 1: 1, 2: 2}
        inherit = []
        for offset, sock in enumerate(self._sockets):
            fd = FIRST_INHERITED_FD + offset
            child_fds[fd] = sock.fileno()
            inherit += ["--inherit", f"{fd}:{self._descriptions[offset]}"]
        environment = dict(self._environment)
        environment[SUPERVISOR_VARIABLE] = str(os.getpid())
        process = self._reactor.spawnProcess(
            _WorkerProtocol(self._ended, index),
            self._executable,
            [self._executable, *self._arguments(index), *inherit],
            env=environment,
            path=self._path,
            childFDs=child_fds,
        )
        self.processes[index] = process
        self._started_at[index] = self._reactor.seconds()
        self._log.info("worker {index} started (pid {pid})", index=index, pid=process.pid)

    def _ended(self, index: int, reason: Failure) -> None:
        self.processes.pop(index, None)
        how = describe_exit(reason)
        stopping = self._stopping.pop(index, None)
        if stopping is not None:
            self._log.info("worker {index} stopped {how}", index=index, how=how)
            stopping.callback(None)
            return
        if not self.running:
            return
        lived = self._reactor.seconds() - self._started_at[index]
        delay = self._delays.get(index, FIRST_RESTART_DELAY)
        if lived >= LONGEST_RESTART_DELAY:
            delay = FIRST_RESTART_DELAY
        self._delays[index] = min(delay * 2, LONGEST_RESTART_DELAY)
        self._log.warn(
            "worker {index} exited {how}; restarting in {delay:g} s",
            index=index,
            how=how,
            delay=delay,
        )
        self._restarts[index] = self._reactor.callLater(delay, self._spawn, index)

    def forward(self, number: int) -> None:
        """
        Send signal C{number} to every running worker.
        """
        self._log.info(
            "{signal}: passed on to {count} workers",
            signal=signal.Signals(number).name,
            count=len(self.processes),
        )
        for process in list(self.processes.values()):
            try:
                process.signalProcess(number)
            except (OSError, ProcessExitedAlready):
                pass

    def stopService(self) -> Deferred[None]:
        """
        Stop the workers: C{SIGTERM}, then C{SIGKILL} to those still
        running after the stop timeout; then close the listening sockets.

        @return: fires once every worker has exited.
        """
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        for restart in self._restarts.values():
            restart.cancel()
        self._restarts.clear()
        waiting = []
        for index, process in list(self.processes.items()):
            stopped: Deferred[None] = Deferred()
            self._stopping[index] = stopped
            waiting.append(stopped)
            _signal(process, "TERM")
        kill = self._reactor.callLater(self._stop_timeout, self._kill)

        def done(_: object) -> None:
            if kill.active():
                kill.cancel()
            self._close()

        return DeferredList(waiting).addCallback(done)

    def _kill(self) -> None:
        for index, process in list(self.processes.items()):
            self._log.warn("worker {index} did not stop: killing it", index=index)
            _signal(process, "KILL")

    def _close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        for path in self._unix_paths:
            if isinstance(path, str) and not path.startswith("\0") and os.path.exists(path):
                os.remove(path)
        self._unix_paths.clear()
        for lock in self._locks:
            lock.unlock()
        self._locks.clear()


def _signal(process: IProcessTransport, name: str) -> None:
    try:
        process.signalProcess(name)
    except (OSError, ProcessExitedAlready):
        pass


def _describe(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return str(address)
    host, port = address[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"
