"""
What a running server tells its operators (C{--metrics ENDPOINT}):
Prometheus metrics at C{/metrics}, served by C{prometheus_client}'s WSGI
application in Twisted's C{WSGIResource} (what its C{prometheus_client.twisted}
resource is, on the reactor given rather than the global one), and
C{/healthz}.

The chat counts what happens in plain integers
(L{twistedchat.counts.Counts}); L{ChatCollector} turns them and the
chat's state into metrics when Prometheus scrapes. The WSGI application
runs in a thread of the reactor's pool, so the collector reads the chat
on the reactor thread (C{blockingCallFromThread}) and never sees it
half-changed (L{on_reactor}).

Metric names follow Prometheus' conventions (C{twistedchat_} prefix,
C{_total} for counters, base units such as seconds); the README's
operations section has the table.
"""

from __future__ import annotations

import os
import queue
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.wsgi import WSGIResource

from twistedchat import postgres
from twistedchat.counts import Counts
from twistedchat.database import is_url

if TYPE_CHECKING:
    from twistedchat.factory import ChatFactory


#: The counters, their help text, by attribute of L{Counts}.
_COUNTERS = {
    "lines_received": "Lines (and WebSocket messages) users sent.",
    "deliveries": "Events handed to a connection, one per recipient.",
    "sendq_cutoffs": "Connections cut off because their SendQ was exceeded.",
    "flood_delays": "Lines that waited for flood control.",
    "wrong_passwords": "Wrong passwords given.",
    "registration_timeouts": "Connections closed for choosing no nickname in time.",
}


@dataclass
class Snapshot:
    """
    The chat's state at one moment, taken on the reactor thread.
    """

    counts: Counts
    connections: Counter[str]
    users: int
    rooms: int
    history_waiting: int
    history_lag: float
    detached: bool = False


def snapshot(chat: ChatFactory) -> Snapshot:
    """
    Read C{chat}'s state (on the reactor thread): connections by front end
    (C{telnet}, C{websocket}, C{irc}), registered users, rooms, and the
    history's write queue.
    """
    connections = chat.connections_by_front_end()
    waiting, lag = chat.history.backlog() if chat.history is not None else (0, 0.0)
    counts = Counts(**vars(chat.counts))
    return Snapshot(
        counts,
        connections,
        chat.user_count(),
        chat.room_count(),
        waiting,
        lag,
        bool(chat.cluster.detached),
    )


class ChatCollector(Collector):
    """
    The chat's metrics, for a C{prometheus_client} registry.
    """

    def __init__(self, take: Callable[[], Snapshot]) -> None:
        """
        @param take: returns a L{Snapshot}; called from the collecting
            thread.
        """
        self._take = take

    def collect(self) -> Iterator[Any]:
        state = self._take()
        connections = GaugeMetricFamily(
            "twistedchat_connections",
            "Open connections, by front end.",
            labels=["front_end"],
        )
        for front_end in ("telnet", "websocket", "irc"):
            connections.add_metric([front_end], state.connections[front_end])
        yield connections
        yield GaugeMetricFamily("twistedchat_users", "Registered users online.", value=state.users)
        yield GaugeMetricFamily("twistedchat_rooms", "Rooms that exist.", value=state.rooms)
        yield GaugeMetricFamily(
            "twistedchat_history_queue_events",
            "History events waiting to be written to the database.",
            value=state.history_waiting,
        )
        yield GaugeMetricFamily(
            "twistedchat_history_lag_seconds",
            "How long the oldest history event waiting to be written has waited.",
            value=state.history_lag,
        )
        yield GaugeMetricFamily(
            "twistedchat_cluster_detached",
            "1 while this node of a cluster (--cluster) cannot reach Redis, else 0.",
            value=int(state.detached),
        )
        for name, help_text in _COUNTERS.items():
            yield CounterMetricFamily(
                f"twistedchat_{name}", help_text, value=getattr(state.counts, name)
            )


class Health(Resource):
    """
    C{/healthz}: C{200 ok} while the server runs and its database answers
    (a query on a new connection, in a thread: SQLite's file read, or
    PostgreSQL's C{SELECT 1} within its connection timeout), C{503} and why
    otherwise.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, reactor: Any, database: str | None) -> None:
        """
        @param database: the SQLite file, a PostgreSQL URL
            (C{postgresql://...}), or C{None} for none (C{:memory:}).
        """
        super().__init__()
        self._reactor = reactor
        self._database = database

    def render_GET(self, request: Request) -> Any:
        if self._database is None:
            return self._body(request, None)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        pool = self._reactor.getThreadPool()
        query = postgres.check if is_url(self._database) else _query
        d: Deferred[None] = deferToThreadPool(self._reactor, pool, query, self._database)

        def answer(result: object) -> None:
            if not gone:
                request.write(self._body(request, result if isinstance(result, Failure) else None))
                request.finish()

        d.addBoth(answer)
        return NOT_DONE_YET

    def _body(self, request: Request, failure: Failure | None) -> bytes:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if failure is None:
            return b"ok\n"
        request.setResponseCode(503)
        self._log.warn(
            "health check: the database does not answer: {why}", why=failure.getErrorMessage()
        )
        return f"database does not answer: {failure.getErrorMessage()}\n".encode()


def _query(path: str) -> None:
    """
    Open the SQLite file at C{path} (it must exist) and read from it.

    @raise sqlite3.Error: it does not answer.
    """
    uri = f"file:{quote(os.path.abspath(path))}?mode=rw"
    connection = sqlite3.connect(uri, uri=True, timeout=5)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()


def on_reactor(reactor: Any, call: Callable[..., Snapshot], *args: Any) -> Snapshot:
    """
    Run C{call(*args)} on the reactor thread and return what it returns,
    from another thread; as C{blockingCallFromThread}, but giving up
    after L{SCRAPE_TIMEOUT} seconds (a reactor stopping), so that the
    thread pool can always stop.

    @raise queue.Empty: the reactor did not answer in time.
    """
    answers: queue.Queue[Snapshot] = queue.Queue()
    reactor.callFromThread(lambda: answers.put(call(*args)))
    return answers.get(timeout=SCRAPE_TIMEOUT)


#: Seconds a scrape waits for the reactor thread.
SCRAPE_TIMEOUT = 5.0


def make_metrics_site(chat: ChatFactory, reactor: Any, database: str | None) -> Site:
    """
    The C{--metrics} site: C{/metrics} (Prometheus' text format, from a
    registry of its own holding L{ChatCollector}) and C{/healthz}
    (L{Health}).
    """
    registry = CollectorRegistry()
    registry.register(ChatCollector(lambda: on_reactor(reactor, snapshot, chat)))
    root = Resource()
    metrics = WSGIResource(reactor, reactor.getThreadPool(), make_wsgi_app(registry))
    root.putChild(b"metrics", metrics)
    root.putChild(b"healthz", Health(reactor, database))
    return _QuietSite(root)


class _QuietSite(Site):
    """
    A site that logs no request: Prometheus scrapes, and health checks
    come, every few seconds.
    """

    def log(self, request: http.Request) -> None:
        pass
