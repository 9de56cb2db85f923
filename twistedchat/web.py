"""
The web server of C{--web}: one L{twisted.web.server.Site} that serves the
browser client (plain HTML, CSS and JavaScript modules from the package's
C{static} folder, with no build step) at C{/} and the chat's WebSocket
(L{twistedchat.websocket}) at C{/ws}.

A web page is a new attack surface, so:
    - every response carries a strict C{Content-Security-Policy} (no
      inline script or style, nothing from other origins, no framing),
      C{X-Content-Type-Options: nosniff} and C{Referrer-Policy: no-referrer};
    - the WebSocket upgrade is refused with 403 unless its C{Origin} is the
      page's own (the C{Host} the browser asked for, over the same scheme)
      or one of C{--web-origin}; Twisted's WebSocket support has no hook
      for this (cross-site WebSocket hijacking, RFC 6455 section 10.2). A
      request without C{Origin} does not come from a browser page and is
      let in, as for telnet;
    - input is bounded: Twisted's WebSocket support reassembles a message
      in memory however long it is, and its HTTP server buffers a request
      body whatever its size, so L{BoundedInput} counts the bytes that
      arrive between two requests or two WebSocket messages and closes the
      connection past L{MAX_INPUT};
    - HTTP connections count against the chat's C{max_clients} and
      C{max_per_ip} (apart from telnet ones), and one that has not sent a
      whole request within L{HTTP_TIMEOUT} seconds is dropped
      (L{BoundedInputFactory}).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from twisted.internet.interfaces import IAddress, IDelayedCall, ITCPTransport, ITransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.pages import forbidden
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from twisted.web.static import File
from twisted.web.websocket import WebSocketResource

from twistedchat.factory import ChatFactory
from twistedchat.protocol import peer_host
from twistedchat.websocket import WebSocketChat

#: Where the page's files are, inside the package.
STATIC = Path(__file__).parent / "static"

#: Bytes a client may send between two HTTP requests or two WebSocket
#: messages (a request's headers and body; one message's frames) before
#: its connection is closed: what a connection can make the server buffer
#: before it acts on it is within this plus one read (64 KiB).
MAX_INPUT = 64 * 1024

#: Seconds an HTTP connection has to send a whole request, from when it
#: connected or its last request arrived (see L{BoundedInput}; also
#: Twisted's C{Site} timeout). Neither applies to a WebSocket.
HTTP_TIMEOUT = 60

#: Plain HTTP connections allowed from one address group, as a multiple of
#: C{--max-per-ip}: a browser keeps up to six open to one server.
HTTP_PER_ADDRESS = 4

#: The headers every response carries.
SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
        b"frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


class BoundedInput(ProtocolWrapper):
    """
    Wraps an HTTP connection to bound what it may cost the server:

        - it counts the bytes received since the last request began or
          the last WebSocket message ended; past its factory's C{limit}, a
          WebSocket (L{upgraded}) is told (it closes with code 1009) and a
          plain HTTP connection is dropped;
        - a plain HTTP connection must complete a request within
          L{HTTP_TIMEOUT} seconds of connecting or of its last request, or
          it is dropped (so a client cannot hold one open by sending a
          byte now and then);
        - once upgraded, every byte received is charged to the
          WebSocket's flood control, as telnet charges every byte;
        - closing unregisters the HTTP channel, which stays the
          transport's producer after a WebSocket upgrade, from the
          transport first, as L{twisted.web.http.HTTPChannel.loseConnection}
          does: Twisted's TLS transport does not close while a producer is
          registered.

    @ivar upgraded: the WebSocket front end, once the connection is one.
    """

    factory: BoundedInputFactory
    upgraded: WebSocketChat | None = None
    _count = 0
    _deadline: IDelayedCall | None = None

    def makeConnection(self, transport: ITransport) -> None:
        self._deadline = self.factory.clock.callLater(HTTP_TIMEOUT, self._too_slow)
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self._count += len(data)
        if self._count > self.factory.limit:
            if self.upgraded is not None:
                self.upgraded.too_big(self.factory.limit)
            else:
                self.abortConnection()
            return
        if self.upgraded is not None:
            self.upgraded.bytes_received(len(data))
        super().dataReceived(data)

    def message_ended(self) -> None:
        """
        A request or a WebSocket message has arrived whole: count afresh,
        and give a plain HTTP connection L{HTTP_TIMEOUT} seconds for its
        next request.
        """
        self._count = 0
        if self._deadline is not None and self._deadline.active():
            self._deadline.reset(HTTP_TIMEOUT)

    def upgrade(self, front_end: WebSocketChat) -> None:
        """
        The connection is a WebSocket now, served by C{front_end}: it stays
        open as long as the WebSocket does.
        """
        self.upgraded = front_end
        self._stop_deadline()
        self.factory.upgraded(self)

    def _too_slow(self) -> None:
        self._deadline = None
        self.abortConnection()

    def _stop_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def loseConnection(self) -> None:
        self.unregisterProducer()
        super().loseConnection()

    def abortConnection(self) -> None:
        """
        Close the connection at once, dropping what was not sent.
        """
        cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        super().connectionLost(reason)


class Refused(Protocol):
    """
    A web connection beyond the limits: dropped as soon as it is made,
    and counted nowhere.
    """

    def connectionMade(self) -> None:
        cast(ITCPTransport, self.transport).abortConnection()


class BoundedInputFactory(WrappingFactory):
    """
    Wraps each connection of a L{Site} in a L{BoundedInput}, and refuses
    plain HTTP connections beyond the chat's own limits: C{max_clients} at
    once, and L{HTTP_PER_ADDRESS} times C{max_per_ip} from one address
    group, since a browser keeps several open for one page and a few tabs
    should fit. A connection upgraded to a WebSocket counts no more here:
    the chat's own limits (L{ChatFactory.admission}) count it. The
    connection rate is not limited here either.

    @ivar limit: the bytes allowed between two requests or messages.
    @ivar clock: the chat's clock.
    """

    protocol = BoundedInput
    noisy = False  # the site logs its own start
    _log = Logger()

    def __init__(self, site: Site, chat: ChatFactory, limit: int = MAX_INPUT) -> None:
        super().__init__(site)
        self.chat = chat
        self.clock = chat.clock
        self.limit = limit
        self._groups: Counter[str] = Counter()
        self._open: dict[BoundedInput, str | None] = {}

    # A refused connection gets a plain Protocol, not a wrapper.
    def buildProtocol(self, addr: IAddress | None) -> Protocol:  # type: ignore[override]
        """
        Return a L{BoundedInput} for a connection within the limits, and
        for one beyond them a protocol that drops it at once: not C{None},
        which Twisted's TLS factory would wrap rather than refuse, keeping
        the connection open.
        """
        chat = self.chat
        group = chat.group_of(None if addr is None else peer_host(addr))
        most = HTTP_PER_ADDRESS * chat.max_per_ip
        if (chat.max_clients and len(self._open) >= chat.max_clients) or (
            group is not None and most and self._groups[group] >= most
        ):
            self._log.info(
                "refused a web connection from {group}: {count} open from there, {total} in all",
                group=group,
                count=self._groups[group] if group is not None else 0,
                total=len(self._open),
            )
            return Refused()
        protocol = super().buildProtocol(addr)
        assert isinstance(protocol, BoundedInput)
        self._open[protocol] = group
        if group is not None:
            self._groups[group] += 1
        return protocol

    def upgraded(self, protocol: BoundedInput) -> None:
        """
        C{protocol} is a WebSocket now: it counts as an HTTP connection no
        more.
        """
        self._forget(protocol)

    def unregisterProtocol(self, protocol: BoundedInput) -> None:
        super().unregisterProtocol(protocol)
        self._forget(protocol)

    def _forget(self, protocol: BoundedInput) -> None:
        if protocol not in self._open:
            return
        group = self._open.pop(protocol)
        if group is not None:
            self._groups[group] -= 1
            if not self._groups[group]:
                del self._groups[group]


class _Page(File):
    """
    The page's files; a folder is never listed.
    """

    contentTypes = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".ico": "image/x-icon",
    }

    def directoryListing(self) -> IResource:
        return forbidden("No listing.")


class _WebSocketChatFactory:
    """
    Builds a L{WebSocketChat} for each upgraded request (a
    L{twisted.web.websocket.WebSocketServerFactory}), reading through the
    connection's L{BoundedInput}.
    """

    def __init__(self, chat: ChatFactory) -> None:
        self.chat = chat

    def buildProtocol(self, request: Request) -> WebSocketChat:
        reader = request.channel.transport
        assert isinstance(reader, BoundedInput), reader
        protocol = WebSocketChat(self.chat, request, reader)
        reader.upgrade(protocol)
        return protocol


class ChatWebSocketResource(WebSocketResource):
    """
    The chat's WebSocket, refused (403) to pages of other origins.
    """

    def __init__(self, chat: ChatFactory, origins: Iterable[str] = ()) -> None:
        """
        @param origins: other origins allowed, such as
            C{https://chat.example.org} (C{--web-origin}).
        """
        super().__init__(_WebSocketChatFactory(chat))
        self.origins = frozenset(origin.rstrip("/").lower() for origin in origins)

    def render_GET(self, request: Request) -> bytes | int:
        origin = request.getHeader("origin")
        if origin is not None and not self.allowed(request, origin):
            request.setResponseCode(403)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"This origin may not use the chat's WebSocket.\n"
        result: bytes | int = super().render_GET(request)
        return result

    def allowed(self, request: Request, origin: str) -> bool:
        """
        Return whether a page at C{origin} may open the WebSocket that
        C{request} asks for: it is the page's own origin, or one of
        L{origins}.
        """
        origin = origin.lower()
        host = (request.getHeader("host") or "").lower()
        scheme = "https" if request.isSecure() else "http"
        return origin == f"{scheme}://{host}" or origin in self.origins


class ChatSite(Site):
    """
    The C{--web} site: adds the security headers to every response, and
    counts input afresh for each request (L{BoundedInput}).
    """

    def getResourceFor(self, request: Request) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        reader = request.channel.transport
        if isinstance(reader, BoundedInput):
            reader.message_ended()
        return super().getResourceFor(request)


def make_site(chat: ChatFactory, origins: Iterable[str] = ()) -> BoundedInputFactory:
    """
    Return the factory to listen with for C{--web}: the page at C{/}, its
    files beside it, and the WebSocket at C{/ws}, for the chat C{chat}.

    @param origins: origins besides the page's own whose pages may use
        the WebSocket (C{--web-origin}).
    """
    root = _Page(str(STATIC))
    root.indexNames = ["index.html"]
    root.putChild(b"ws", ChatWebSocketResource(chat, origins))
    site = ChatSite(root, timeout=HTTP_TIMEOUT)
    site.displayTracebacks = False
    return BoundedInputFactory(site, chat)
