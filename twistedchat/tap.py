"""
C{twistd chat}: command-line options and the service they build.

This module only parses options and wires objects together; see
L{twistedchat.factory} for the chat and L{twistedchat.protocol} for the wire.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.python.logfile import LogFile
from zope.interface import implementer

from twistedchat.accounts import Accounts, load_accounts
from twistedchat.config import (
    RELOADABLE,
    ConfigError,
    config_arguments,
    given_options,
    read_config,
)
from twistedchat.database import DatabaseError, describe, is_url, make_pool, open_database
from twistedchat.factory import DEFAULT_RESERVED_NICKNAMES, ChatFactory
from twistedchat.history import History, last_event_id, load_recent
from twistedchat.irc import IRCFactory
from twistedchat.metrics import make_metrics_site
from twistedchat.nicknames import (
    MINIMUM_MAX_LENGTH,
    InvalidNickname,
    nickname_key,
    validate_nickname,
)
from twistedchat.protocol import ChatTelnetTransport, describe_address
from twistedchat.rooms import InvalidRoomName, room_key, validate_room_name
from twistedchat.roomstore import RoomStore, load_rooms
from twistedchat.sanitize import clean_line
from twistedchat.throttles import Exemptions
from twistedchat.web import make_site
from twistedchat.workers import (
    Supervisor,
    check_inherited,
    inherited_endpoint,
    metrics_description,
    parse_inherit,
    worker_arguments,
)

DEFAULT_PORT = "12345"


def _bounded(kind: type, name: str, low: float, high: float) -> Any:
    """
    Return a coercer for L{usage.Options} that accepts a C{kind} number
    from C{low} to C{high} and otherwise raises L{usage.UsageError}.
    """

    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise usage.UsageError(f"--{name} takes a number, not {value!r}.") from None
        if not low <= number <= high:
            raise usage.UsageError(f"--{name} must be from {low} to {high}, not {value}.")
        return number

    coerce.coerceDoc = f"From {low} to {high}."  # type: ignore[attr-defined]
    return coerce


def _choice(name: str, choices: tuple[str, ...]) -> Any:
    """
    Return a coercer for L{usage.Options} that accepts one of C{choices}.
    """

    def coerce(value: str) -> str:
        if value not in choices:
            raise usage.UsageError(f"--{name} is one of {', '.join(choices)}, not {value!r}.")
        return value

    coerce.coerceDoc = f"One of {', '.join(choices)}."  # type: ignore[attr-defined]
    return coerce


#: Listen backlog for TCP and TLS listeners that do not set one: Twisted's
#: default of 50 makes a storm of simultaneous connections wait for SYN
#: retransmissions (1 s, 3 s, ...); Linux caps it at net.core.somaxconn.
DEFAULT_BACKLOG = 1024


def endpoint_description(value: str) -> str:
    """
    Turn a C{--port} value into a Twisted server endpoint description: a bare
    port number C{N} means C{tcp:N}; anything else is used as it is (see
    Twisted's C{serverFromString} documentation), except that a TCP or TLS
    listener without C{backlog=} gets C{backlog=1024}.
    """
    description = f"tcp:{value}" if value.isdigit() else value
    if description.startswith(("tcp:", "tcp6:", "ssl:")) and "backlog=" not in description:
        description += f":backlog={DEFAULT_BACKLOG}"
    return description


def _listener(option: str, value: str) -> str:
    """
    Return the endpoint description of C{value}, given to C{option}
    (C{--port}, C{--web}); see L{endpoint_description}.

    @raise usage.UsageError: C{value} is no port number or endpoint
        description.
    """
    description = endpoint_description(value)
    try:
        serverFromString(None, description)
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise usage.UsageError(
            f"{option} {value}: not a port number or endpoint description ({e})."
        ) from None
    return description


def _read_motd(value: str) -> str:
    """
    Return the MOTD text for C{--motd}: the value itself, or the contents of
    the file named after C{@}. Control characters are removed line by line.

    @raise usage.UsageError: the file cannot be read.
    """
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise usage.UsageError(
                f"--motd {value}: cannot read the MOTD file: {e.strerror}."
            ) from None
    else:
        raw = value.encode("utf-8", "surrogateescape")
    return "\n".join(clean_line(line) for line in raw.splitlines())


class Options(usage.Options):
    """
    Options of C{twistd chat}. Each is checked here, and a wrong value stops
    start-up with a L{usage.UsageError} sentence.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a multi-user chat server for telnet, nc and twistedchat-client. "
        "--port may be given several times."
    )

    optParameters = [
        [
            "config",
            None,
            None,
            "A TOML file of settings, its keys the long option names (see "
            "examples/twistedchat.toml); the command line overrides it. SIGHUP reloads it.",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics and a health check at /healthz here: an "
            "endpoint description such as tcp:9100:interface=127.0.0.1.",
        ],
        [
            "log-format",
            None,
            "text",
            "text, or json: one JSON object per line (twisted.logger's JSON format).",
            _choice("log-format", ("text", "json")),
        ],
        [
            "max-nick-length",
            None,
            16,
            "Longest nickname, in characters.",
            _bounded(int, "max-nick-length", MINIMUM_MAX_LENGTH, 64),
        ],
        [
            "max-line-length",
            None,
            2048,
            "Longest input line, in bytes; longer lines get an error and are dropped.",
            _bounded(int, "max-line-length", 80, 1024 * 1024),
        ],
        [
            "motd",
            None,
            None,
            "Message of the day shown on connect: text, or @FILE to read it from FILE.",
        ],
        [
            "registration-timeout",
            None,
            60.0,
            "Seconds a new connection has to choose a nickname before it is closed.",
            _bounded(float, "registration-timeout", 1, 86400),
        ],
        [
            "max-sendq",
            None,
            1024 * 1024,
            "Bytes of output that may wait for one slow client before it is cut off "
            "with 'SendQ exceeded'.",
            _bounded(int, "max-sendq", 4096, 1024**3),
        ],
        [
            "sendq-timeout",
            None,
            10.0,
            "Seconds a client's output may stay backed up before it is cut off with "
            "'SendQ exceeded'.",
            _bounded(float, "sendq-timeout", 0.1, 3600),
        ],
        [
            "flood-rate",
            None,
            2.0,
            "Lines per second a client may send after its burst; faster lines wait. "
            "0 turns flood control off.",
            _bounded(float, "flood-rate", 0, 10**6),
        ],
        [
            "flood-burst",
            None,
            10,
            "Lines a client may send at once before --flood-rate applies.",
            _bounded(int, "flood-burst", 1, 10**6),
        ],
        [
            "flood-bytes",
            None,
            8192,
            "Bytes per second a client may send after its byte burst (telnet negotiation "
            "included); faster input waits. 0 turns this off.",
            _bounded(int, "flood-bytes", 0, 10**9),
        ],
        [
            "flood-byte-burst",
            None,
            32768,
            "Bytes a client may send at once before --flood-bytes applies.",
            _bounded(int, "flood-byte-burst", 1024, 10**9),
        ],
        [
            "max-clients",
            None,
            10000,
            "Connections allowed at once; 0 means no limit.",
            _bounded(int, "max-clients", 0, 10**7),
        ],
        [
            "max-per-ip",
            None,
            10,
            "Connections allowed at once from one IP address or IPv6 /64 (loopback too); "
            "0 means no limit.",
            _bounded(int, "max-per-ip", 0, 10**7),
        ],
        [
            "connection-rate",
            None,
            10,
            "Connection attempts allowed per minute from one IP address or IPv6 /64; one more "
            "bans it for --connection-ban seconds. 0 means no limit.",
            _bounded(int, "connection-rate", 0, 10**7),
        ],
        [
            "connection-ban",
            None,
            600.0,
            "Seconds an address that went over --connection-rate is refused.",
            _bounded(float, "connection-ban", 0, 10**7),
        ],
        [
            "max-registrations",
            None,
            3,
            "Nicknames that may be registered per hour from one IP address or IPv6 /64; "
            "0 means no limit.",
            _bounded(int, "max-registrations", 0, 10**7),
        ],
        [
            "idle-timeout",
            None,
            0.0,
            "Seconds a registered client may stay silent before it is disconnected; 0 means never.",
            _bounded(float, "idle-timeout", 0, 10**7),
        ],
        [
            "database",
            None,
            "twistedchat.sqlite3",
            "SQLite file for the history and accounts, or postgresql://[USER[:PASSWORD]@]HOST"
            "[:PORT]/DB; ':memory:' keeps nothing.",
        ],
        [
            "cluster",
            None,
            None,
            "Join a cluster of nodes sharing users and rooms through this Redis server: "
            "redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:/PATH/redis.sock. See the README's "
            "'Running several nodes'.",
        ],
        [
            "cluster-lease",
            None,
            15.0,
            "Seconds a node's nicknames outlive it when it stops answering (--cluster).",
            _bounded(float, "cluster-lease", 1, 3600),
        ],
        [
            "cluster-prefix",
            None,
            "tc:",
            "Prefix of this cluster's Redis keys and channels, so that clusters can share "
            "one Redis server (--cluster).",
        ],
        [
            "node-name",
            None,
            None,
            "This node's name in the cluster, shown when it is lost; the host name if not given.",
        ],
        [
            "workers",
            None,
            1,
            "Processes to run, sharing the listening ports and forming a cluster over "
            "--cluster's Redis, to use several cores.",
            _bounded(int, "workers", 1, 256),
        ],
        [
            "history-on-join",
            None,
            20,
            "Past lines a user sees on joining.",
            _bounded(int, "history-on-join", 0, 10000),
        ],
        [
            "history-max",
            None,
            200,
            "Most past lines /history shows (and kept in memory for replay).",
            _bounded(int, "history-max", 1, 10000),
        ],
        [
            "history-retention",
            None,
            0.0,
            "Days to keep history for; 0 keeps it forever.",
            _bounded(float, "history-retention", 0, 100000),
        ],
        [
            "server-name",
            None,
            socket.gethostname(),
            "Server name shown in the greeting.",
        ],
        [
            "reserved-nicknames",
            None,
            " ".join(DEFAULT_RESERVED_NICKNAMES),
            "Nicknames nobody may take (nor look-alikes), separated by spaces or commas.",
        ],
        [
            "default-room",
            None,
            "#lobby",
            "The room everyone is in after choosing a nickname.",
        ],
        [
            "max-rooms-per-user",
            None,
            20,
            "Rooms one user may be in at once; 0 means no limit.",
            _bounded(int, "max-rooms-per-user", 0, 100_000),
        ],
        [
            "max-rooms",
            None,
            10_000,
            "Rooms that may exist at once, kept ones included; 0 means no limit.",
            _bounded(int, "max-rooms", 0, 10_000_000),
        ],
        [
            "quiet-joins-above",
            None,
            250,
            "In rooms with more members than this, joins and leaves are not announced.",
            _bounded(int, "quiet-joins-above", 0, 10_000_000),
        ],
    ]

    optFlags = [
        [
            "random-nicknames",
            None,
            "Give each connection a random nickname (Guest1234) instead of asking.",
        ],
        [
            "log-messages",
            None,
            "Also log the text of chat lines (off by default, for privacy).",
        ],
    ]

    def __init__(self, reloading: bool = False) -> None:
        """
        @param reloading: the options are read again for a running server
            (SIGHUP): the database is not opened again.
        """
        super().__init__()
        self.reloading = reloading
        self["port"] = []
        self["web"] = []
        self["irc"] = []
        self["web-origin"] = []
        self["exempt"] = []
        self["oper"] = []
        # A tuple, not a list: a --config file cannot give it (REPEATABLE).
        self["inherit"] = ()

    def opt_inherit(self, value: str) -> None:
        """Internal, given by --workers to its worker processes: FD:DESCRIPTION, the inherited listening socket FD serves the listener DESCRIPTION; may be given several times."""  # noqa: E501
        try:
            fd, description = parse_inherit(value)
            if not self.reloading:  # the descriptor is closed once adopted
                check_inherited(fd)
        except ValueError as e:
            raise usage.UsageError(f"--inherit {value}: {e}; --workers sets it.") from None
        self["inherit"] = (*self["inherit"], (fd, description))

    def opt_web(self, value: str) -> None:
        """Also serve the browser client and its WebSocket here: a port number (tcp:PORT) or a Twisted server endpoint description such as tcp:8080:interface=127.0.0.1 or ssl:8443:privateKey=key.pem:certKey=cert.pem; may be given several times."""  # noqa: E501
        self["web"].append(_listener("--web", value))

    def opt_irc(self, value: str) -> None:
        """Also serve IRC clients here: a port number (tcp:PORT) or a Twisted server endpoint description such as tcp:6667 or ssl:6697:privateKey=key.pem:certKey=cert.pem; may be given several times."""  # noqa: E501
        self["irc"].append(_listener("--irc", value))

    def opt_web_origin(self, value: str) -> None:
        """Let pages of this origin (such as https://chat.example.org) use the WebSocket, besides the page's own; may be given several times."""  # noqa: E501
        origin = value.rstrip("/")
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or not host or "/" in host:
            raise usage.UsageError(
                f"--web-origin {value}: not an origin such as https://chat.example.org."
            )
        self["web-origin"].append(origin)

    def opt_port(self, value: str) -> None:
        """Where to listen: a port number (tcp:PORT) or a Twisted server endpoint description such as tcp:12345:interface=127.0.0.1, unix:/path/chat.sock or ssl:6697:privateKey=key.pem:certKey=cert.pem; may be given several times. [default: tcp:12345]"""  # noqa: E501
        self["port"].append(_listener("--port", value))

    opt_p = opt_port

    def opt_exempt(self, value: str) -> None:
        """Lift the per-address limits (--max-per-ip, --connection-rate, --max-registrations, wrong passwords per address) for a trusted network, in CIDR notation (10.0.0.0/8, 2001:db8::/32, a bare address, or localhost); may be given several times."""  # noqa: E501
        try:
            Exemptions([value])
        except ValueError as e:
            raise usage.UsageError(f"--exempt {e}") from None
        self["exempt"].append(value)

    def opt_oper(self, value: str) -> None:
        """Make the owner of this registered nickname a server operator: an operator in every room, who may /kill; may be given several times."""  # noqa: E501
        try:
            validate_nickname(value, 64)
        except InvalidNickname as e:
            raise usage.UsageError(f"--oper {value}: {e}") from None
        self["oper"].append(value)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse the command line C{options}, after the settings of the
        C{--config} file it names, if any (the command line overrides
        them).

        @raise ConfigError: the file cannot be read, or holds a wrong
            setting.
        """
        # Absolute paths, so that a reload reads the same files after
        # twistd changed directory (--rundir).
        argv = _absolute_paths(list(sys.argv[1:] if options is None else options))
        self["argv"] = argv
        path = _config_path(argv)
        if path is None:
            super().parseOptions(argv)
            return
        if not path:
            raise usage.UsageError("--config needs a file name.")
        table = read_config(path)
        given = given_options(argv, self)
        try:
            super().parseOptions(config_arguments(path, table, self, given) + argv)
        except ConfigError:
            raise
        except usage.UsageError as e:
            # A refusal of a value from the file names the file and key.
            match = re.match(r"--([a-z-]+)", str(e))
            key = match.group(1) if match else ""
            if key in table and key not in given:
                raise ConfigError(f"{path}: {key}: {e}") from None
            raise

    def _check_cluster(self) -> None:
        """
        Check C{--cluster} and what goes with it, and that Redis answers
        (unless only reloading); C{--cluster} becomes a
        L{twistedchat.cluster.RedisAddress}.
        """
        if self["node-name"] is None:
            self["node-name"] = re.sub(r"[^A-Za-z0-9._]", "", socket.gethostname())[:40] or "node"
        elif not re.fullmatch(r"[A-Za-z0-9._]{1,40}", self["node-name"]):
            raise usage.UsageError("--node-name: 1 to 40 letters, digits, dots or underscores.")
        if not self["cluster-prefix"] or any(c.isspace() for c in self["cluster-prefix"]):
            raise usage.UsageError("--cluster-prefix cannot be empty or hold spaces.")
        if self["cluster"] is None:
            if self["workers"] > 1:
                raise usage.UsageError(
                    "--workers shares the chat between processes through Redis: "
                    "give --cluster redis://HOST:PORT too."
                )
            return
        from twistedchat.cluster import parse_redis_url, probe_redis

        try:
            self["cluster"] = parse_redis_url(self["cluster"])
        except ValueError as e:
            raise usage.UsageError(f"--cluster {e}") from None
        if self["database"] == ":memory:":
            raise usage.UsageError(
                "--cluster keeps history: give --database a file, or better, "
                "postgresql://... for a history every node shares."
            )
        if not self.reloading:
            try:
                probe_redis(self["cluster"])
            except OSError as e:
                why = str(e)
                raise usage.UsageError(
                    f"--cluster: {why}{'' if why[-1] in '.?!' else '.'}"
                ) from None

    def postOptions(self) -> None:
        if not self["database"]:
            raise usage.UsageError(
                "--database needs a file name, or :memory: to keep history only in memory."
            )
        reserved = self["reserved-nicknames"].replace(",", " ").split()
        for nickname in reserved:
            try:
                validate_nickname(nickname, 64)
            except InvalidNickname as e:
                raise usage.UsageError(f"--reserved-nicknames {nickname}: {e}") from None
        if self["irc"] and not any(nickname_key(n) == "nickserv" for n in reserved):
            reserved.append("NickServ")  # the IRC front end's services pseudo-user
        self["reserved-nicknames"] = reserved
        if not self["port"]:
            self["port"] = [endpoint_description(DEFAULT_PORT)]
        if self["metrics"] is not None:
            self["metrics"] = _listener("--metrics", self["metrics"])
            if self["workers"] > 1:
                try:
                    metrics_description(self["metrics"], self["workers"] - 1)
                except ValueError as e:
                    raise usage.UsageError(f"{e}.") from None
        parent = getattr(self, "parent", None)
        if self["log-format"] == "json" and parent is not None and parent.get("syslog"):
            raise usage.UsageError(
                "--log-format json writes to --logfile or standard output, not to syslog."
            )
        if self["motd"] is not None:
            self["motd"] = _read_motd(self["motd"])
        try:
            validate_room_name(self["default-room"])
        except InvalidRoomName as e:
            raise usage.UsageError(f"--default-room {e}") from None
        self._check_cluster()
        if self["history-on-join"] > self["history-max"]:
            raise usage.UsageError("--history-on-join cannot be more than --history-max.")
        if self.reloading:
            return  # the database is open already
        if self["workers"] > 1:
            # The supervisor serves nobody: each worker opens the database,
            # and a shared one is checked (and upgraded) here, once, so that
            # a wrong one stops start-up rather than every worker, forever.
            if is_url(self["database"]):
                try:
                    open_database(self["database"])
                except DatabaseError as e:
                    raise usage.UsageError(str(e)) from None
            elif self["oper"]:
                raise usage.UsageError(
                    "--oper with --workers needs the accounts every worker shares: "
                    "--database postgresql://..."
                )
            self["history-recent"], self["history-last-id"] = [], 0
            self["accounts"], self["rooms"] = {}, {}
            return
        keep = self["history-max"]
        try:
            default = room_key(self["default-room"])
            (
                self["history-recent"],
                self["history-last-id"],
                self["accounts"],
                self["rooms"],
            ) = open_database(
                self["database"],
                lambda connection: load_recent(connection, keep, default),
                last_event_id,
                load_accounts,
                load_rooms,
            )
        except DatabaseError as e:
            raise usage.UsageError(str(e)) from None
        for oper in self["oper"]:
            # Else the first to register the nickname would be an operator.
            if nickname_key(oper) not in self["accounts"]:
                raise usage.UsageError(
                    f"--oper {oper}: no such account in {describe(self['database'])}; register the "
                    "nickname (/register) first, then start the server with --oper."
                )


def _absolute_paths(argv: list[str]) -> list[str]:
    """
    Return C{argv} with the files of C{--config FILE} and C{--motd @FILE}
    made absolute.
    """
    absolute = []
    option = ""
    for word in argv:
        name, equals, value = word.partition("=")
        if option == "--config" or (option == "--motd" and word.startswith("@")):
            word = _absolute(word, option)
        elif equals and name in ("--config", "--motd"):
            word = f"{name}={_absolute(value, name)}"
        option = word if word in ("--config", "--motd") else ""
        absolute.append(word)
    return absolute


def _absolute(value: str, option: str) -> str:
    if option == "--motd":
        return "@" + os.path.abspath(value[1:]) if value.startswith("@") else value
    return os.path.abspath(value) if value else value


def _config_path(argv: list[str]) -> str | None:
    """
    Return the file C{argv} names with C{--config FILE} or
    C{--config=FILE} (the last one), or C{None}.
    """
    path = None
    for index, word in enumerate(argv):
        if word == "--":
            break
        if word.startswith("--config="):
            path = word.partition("=")[2]
        elif word == "--config" and index + 1 < len(argv):
            path = argv[index + 1]
    return path


@implementer(IStreamServerEndpoint)
class _LoggingEndpoint:
    """
    A server endpoint that logs the address it listens on: C{listening on
    ADDRESS} for telnet, C{web client at URL} for C{--web}, C{IRC at URL}
    for C{--irc}.
    """

    _log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, scheme: str = "") -> None:
        """
        @param scheme: C{"http"} or C{"https"} for a C{--web} listener,
            C{"irc"} or C{"ircs"} for an C{--irc} one; C{""} for telnet.
        """
        self._endpoint = endpoint
        self._scheme = scheme

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            address = describe_address(port.getHost())
            if self._scheme in ("irc", "ircs"):
                self._log.info("IRC at {url}", url=f"{self._scheme}://{address}/")
            elif self._scheme in ("metrics", "metrics-tls"):
                scheme = "https" if self._scheme == "metrics-tls" else "http"
                self._log.info("metrics at {url}", url=f"{scheme}://{address}/metrics")
            elif self._scheme:
                self._log.info("web client at {url}", url=f"{self._scheme}://{address}/")
            else:
                self._log.info("listening on {address}", address=address)
            return port

        return self._endpoint.listen(factory).addCallback(listening)


def raise_open_files_limit() -> int:
    """
    Raise this process's soft limit on open files to its hard limit, since
    every client is one open socket.

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


class ChatService(Service):
    """
    Raises the open files limit and starts writing history when the
    service starts; reloads the C{--config} file on C{SIGHUP}; when it
    stops (SIGINT, SIGTERM, C{stopService}), tells every connection that
    the server is shutting down, closes them, and writes the last of the
    history.
    """

    _log = Logger()

    def __init__(
        self,
        factory: ChatFactory,
        options: Options | None = None,
        run_in_thread: Callable[..., Deferred[Any]] | None = None,
        handle_signals: bool = False,
    ) -> None:
        """
        @param options: the options the server runs with, to compare a
            reloaded configuration with.
        @param run_in_thread: runs a callable in a thread, returning a
            L{Deferred} (C{deferToThreadPool} on the reactor's pool).
        @param handle_signals: reload on C{SIGHUP} (the real reactor
            only; without C{--config}, a C{SIGHUP} is logged and changes
            nothing, rather than ending the server).
        """
        self.factory = factory
        self.options = options
        self._run_in_thread = run_in_thread or maybeDeferred
        self._handle_signals = handle_signals
        self._previous_handler: Any = None
        self._reloading: Deferred[None] | None = None
        self._reload_again = False

    def startService(self) -> None:
        super().startService()
        self._log.info("open files limit: {limit}", limit=raise_open_files_limit())
        if self.factory.history is not None:
            self.factory.history.start()
        self.factory.cluster.start()
        if self._handle_signals:
            reactor = self.factory.clock
            self._previous_handler = signal.signal(
                signal.SIGHUP,
                lambda number, frame: reactor.callFromThread(self.reload),  # type: ignore[attr-defined]
            )

    def reload(self) -> Deferred[None]:
        """
        Read the C{--config} file again (off the reactor thread) with the
        command line over it, and take the settings that may change while
        running (L{RELOADABLE}); log the others that changed as ignored
        until restart. A file that cannot be read or holds a wrong setting
        changes nothing, and the log says why. One reload at a time: a
        C{SIGHUP} during one makes it run again once it is done.

        @return: fires once the settings are taken or refused.
        """
        if self.options is None or not self.options["config"]:
            self._log.warn("SIGHUP: there is no --config file to reload")
            return succeed(None)
        if not self.running:
            return succeed(None)
        if self._reloading is not None:
            self._reload_again = True
            return self._reloading
        path, argv = self.options["config"], self.options["argv"]
        self._log.info("reloading {path}", path=path)

        def parse() -> Options:
            new = Options(reloading=True)
            new.parseOptions(argv)
            return new

        def done(_: object) -> None:
            self._reloading = None
            if self._reload_again:
                self._reload_again = False
                self.reload()

        d = self._run_in_thread(parse).addCallbacks(self._apply, self._refused)
        self._reloading = d
        d.addBoth(done)
        return d

    def _refused(self, failure: Failure) -> None:
        failure.trap(usage.UsageError)
        self._log.error(
            "not reloaded, the running settings stay: {reason}", reason=str(failure.value)
        )

    def _apply(self, new: Options) -> None:
        assert self.options is not None
        running, path = self.options, self.options["config"]
        changed = {}
        for key in sorted(set(new.keys()) - {"argv"}):
            if new[key] == running.get(key):
                continue
            if key in RELOADABLE:
                changed[key] = new[key]
            else:
                self._log.warn("{key} changed in {path}: ignored until restart", key=key, path=path)
        refusal = self._refusal(changed)
        if refusal:
            self._log.error(
                "not reloaded, the running settings stay: {path}: {refusal}",
                path=path,
                refusal=refusal,
            )
            return
        if running["irc"] and "reserved-nicknames" in changed:
            reserved = changed["reserved-nicknames"]
            if not any(nickname_key(n) == "nickserv" for n in reserved):
                changed["reserved-nicknames"] = [*reserved, "NickServ"]
        self.factory.reconfigure(
            **{_SETTINGS.get(k, k.replace("-", "_")): _setting(k, v) for k, v in changed.items()}
        )
        running.update(changed)
        self._log.info(
            "reloaded {path}: {changes}", path=path, changes=", ".join(changed) or "nothing changed"
        )

    def _refusal(self, changed: dict[str, Any]) -> str:
        """
        Why the C{changed} settings cannot be taken with the settings that
        stay until restart, or C{""}.
        """
        assert self.options is not None
        accounts = self.factory.accounts
        for oper in changed.get("oper", []):
            if accounts is None or not accounts.is_registered(oper):
                return f"oper: {oper} is no registered nickname"
        history_max = self.options["history-max"]
        if changed.get("history-on-join", 0) > history_max:
            return f"history-on-join: at most history-max ({history_max}) until restart"
        return ""

    async def _stop(self) -> None:
        await self.factory.shutdown()
        await self.factory.cluster.stop()
        if self.factory.history is not None:
            await self.factory.history.stop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None
        return Deferred.fromCoroutine(self._stop())


class _ChatServices(MultiService):
    """
    The server's services; with C{--log-format json}, they give the
    twistd application its log observer (the C{ILogObserver} component
    twistd's C{AppLogger} uses, as a C{.tac} file may set it).
    """

    def __init__(self, log_observer: ILogObserver | None) -> None:
        super().__init__()
        self._log_observer = log_observer

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)
        if self._log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self._log_observer)


def _log_observer(options: Options, reactor: Any, real: bool) -> ILogObserver | None:
    """
    The JSON log observer for C{--log-format json} (Twisted's
    C{jsonFileLogObserver}, one object per line, no record separator),
    writing where twistd's own log would go (C{--logfile}, standard
    output with C{-n}); C{None} for text. As twistd does for its own log
    file, C{SIGUSR1} rotates the file (with C{real}, the global reactor).
    """
    if options["log-format"] != "json":
        return None
    parent = getattr(options, "parent", None) or {}
    path = parent.get("logfile")
    if path == "-" or (not path and parent.get("nodaemon", True)):
        return jsonFileLogObserver(sys.stdout, recordSeparator="")
    log_file = LogFile.fromFullPath(path or "twistd.log")
    if real:
        signal.signal(signal.SIGUSR1, lambda number, frame: reactor.callFromThread(log_file.rotate))
    return jsonFileLogObserver(log_file, recordSeparator="")


#: Options whose ChatFactory setting has another name.
_SETTINGS = {"exempt": "exemptions", "oper": "server_operators"}


def _setting(key: str, value: Any) -> Any:
    """
    The L{ChatFactory} setting for the value of option C{key}.
    """
    return Exemptions(value) if key == "exempt" else value


def makeService(options: Options, reactor: Any = None) -> MultiService:
    """
    Build the chat service from parsed C{options}: one listener for each
    C{--port} (telnet) and C{--web} (the browser client and its
    WebSocket), all sharing one L{ChatFactory}.

    @param reactor: the reactor to listen with and to take time from;
        the global reactor if C{None}, and then signals are handled
        (C{SIGHUP} reloads, C{SIGUSR1} reopens a JSON log file) and files
        are read in its thread pool.
    """
    # The global reactor: the real server, with signals and threads; a
    # test passes its own.
    real = reactor is None
    if reactor is None:
        from twisted.internet import reactor
    if options["workers"] > 1:
        # twistedchat.workers: this process only binds the listeners and
        # runs the workers, each a twistd chat of its own.
        supervisor_only = _ChatServices(_log_observer(options, reactor, real))
        Supervisor(
            reactor,
            options["port"] + options["web"] + options["irc"],
            options["workers"],
            partial(worker_arguments, options),
            handle_signals=real,
        ).setServiceParent(supervisor_only)
        return supervisor_only
    database = options["database"]
    pool = None if database == ":memory:" else make_pool(database, reactor)
    history = History(
        pool,
        reactor,
        options["history-recent"],
        cap=options["history-max"],
        retention=options["history-retention"],
        last_id=options["history-last-id"],
    )
    factory = ChatFactory(
        reactor,
        server_name=options["server-name"],
        max_nick_length=options["max-nick-length"],
        max_line_length=options["max-line-length"],
        motd=options["motd"],
        random_nicknames=bool(options["random-nicknames"]),
        registration_timeout=options["registration-timeout"],
        log_messages=bool(options["log-messages"]),
        max_sendq=options["max-sendq"],
        sendq_timeout=options["sendq-timeout"],
        flood_rate=options["flood-rate"],
        flood_burst=options["flood-burst"],
        flood_bytes=options["flood-bytes"],
        flood_byte_burst=options["flood-byte-burst"],
        max_clients=options["max-clients"],
        max_per_ip=options["max-per-ip"],
        exemptions=Exemptions(options["exempt"]),
        connection_rate=options["connection-rate"],
        connection_ban=options["connection-ban"],
        max_registrations=options["max-registrations"],
        idle_timeout=options["idle-timeout"],
        history=history,
        history_on_join=options["history-on-join"],
        accounts=Accounts(pool, reactor, options["accounts"]),
        reserved_nicknames=options["reserved-nicknames"],
        default_room=options["default-room"],
        quiet_joins_above=options["quiet-joins-above"],
        max_rooms_per_user=options["max-rooms-per-user"],
        max_rooms=options["max-rooms"],
        server_operators=options["oper"],
        stored_rooms=options["rooms"].values(),
        room_store=RoomStore(pool),
    )
    factory.protocol = ChatTelnetTransport
    if options["cluster"] is not None:
        from twistedchat.cluster import RedisCluster

        factory.cluster = RedisCluster(
            factory,
            options["cluster"],
            options["node-name"],
            prefix=options["cluster-prefix"],
            lease=options["cluster-lease"],
            shared_history=is_url(database),
            reactor=None if real else reactor,
        )
    top = _ChatServices(_log_observer(options, reactor, real))
    # MultiService stops its children in reverse order: the listeners stop
    # accepting first, then ChatService says goodbye to everyone.
    ChatService(
        factory,
        options,
        partial(deferToThreadPool, reactor, reactor.getThreadPool()) if real else None,
        handle_signals=real,
    ).setServiceParent(top)
    web = make_site(factory, options["web-origin"]) if options["web"] else None
    irc = IRCFactory(factory)
    listeners: list[tuple[str, Any, str]] = (
        [(d, factory, "") for d in options["port"]]
        + [(d, web, "https" if d.startswith("ssl:") else "http") for d in options["web"]]
        + [(d, irc, "ircs" if d.startswith("ssl:") else "irc") for d in options["irc"]]
    )
    if options["metrics"] is not None:
        metrics = make_metrics_site(factory, reactor, None if pool is None else database)
        tls = options["metrics"].startswith("ssl:")
        listeners.append((options["metrics"], metrics, "metrics-tls" if tls else "metrics"))
    inherited = {description: fd for fd, description in options["inherit"]}
    for description, serving, scheme in listeners:
        fd = inherited.pop(description, None)
        endpoint = _LoggingEndpoint(
            serverFromString(reactor, description)
            if fd is None
            else inherited_endpoint(reactor, description, fd),
            scheme,
        )
        listener = StreamServerEndpointService(endpoint, serving)
        # As twisted.application.strports.service does: a port that cannot
        # be bound stops twistd at start-up instead of being logged later.
        listener._raiseSynchronously = True
        listener.setServiceParent(top)
    return top
