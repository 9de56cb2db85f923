"""
In-memory WebSocket clients for tests: C{wsproto}'s client side speaking
to the real C{--web} site (L{twistedchat.web.make_site}) over a
L{StringTransportWithDisconnection}, with no sockets.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransportWithDisconnection
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from twistedchat.factory import ChatFactory
from twistedchat.web import BoundedInputFactory, make_site


class WebClient:
    """
    One WebSocket connection to the C{--web} site of C{chat}.

    @ivar accepted: whether the upgrade was accepted (C{None}: no answer
        yet).
    @ivar status: the HTTP status of a refused upgrade.
    @ivar close_code: the WebSocket close code the server sent, if any.
    """

    def __init__(
        self,
        chat: ChatFactory,
        origin: str | None = "http://chat.test",
        host: str = "chat.test",
        site: BoundedInputFactory | None = None,
        address: str = "127.0.0.1",
        port: int = 50000,
    ) -> None:
        self.chat = chat
        self.site = site or make_site(chat)
        peer = IPv4Address("TCP", address, port)
        self.protocol = self.site.buildProtocol(peer)
        self.transport = StringTransportWithDisconnection(peerAddress=peer)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted: bool | None = None
        self.status = 0
        self.close_code: int | None = None
        self._text = ""
        headers = [("Origin", origin)] if origin is not None else []
        self.protocol.dataReceived(
            self.ws.send(Request(host=host, target="/ws", extra_headers=headers))
        )
        self.flush()

    def flush(self) -> None:
        """
        Let the server's SendQ flush (one reactor iteration on C{chat}'s
        clock).
        """
        self.chat.clock.advance(0)  # type: ignore[attr-defined]

    def send(self, value: Any) -> None:
        """
        Send C{value} as one JSON text message.
        """
        self.send_text(json.dumps(value))

    def send_text(self, text: str) -> None:
        """
        Send C{text} as one text message.
        """
        self.protocol.dataReceived(self.ws.send(TextMessage(text)))
        self.flush()

    def send_bytes(self, data: bytes) -> None:
        """
        Send C{data} as one binary message.
        """
        self.protocol.dataReceived(self.ws.send(BytesMessage(data)))
        self.flush()

    def messages(self) -> list[dict[str, Any]]:
        """
        Return the JSON objects the server sent since the last call, in
        order, after letting its SendQ flush.
        """
        self.flush()
        data = self.transport.value()
        self.transport.clear()
        if not data:
            return []
        self.ws.receive_data(data)
        received: list[dict[str, Any]] = []
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = True
            elif isinstance(event, RejectConnection):
                self.accepted = False
                self.status = event.status_code
            elif isinstance(event, RejectData):
                pass
            elif isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    received += [json.loads(line) for line in self._text.split("\n") if line]
                    self._text = ""
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
        return received

    def types(self) -> list[str]:
        """
        Return the C{type} of each object the server sent since the last
        call.
        """
        return [message["type"] for message in self.messages()]

    @property
    def connected(self) -> bool:
        """
        Whether the server has not closed the connection.
        """
        return self.transport.connected and not self.transport.disconnecting

    def sign_in(self, nickname: str) -> list[dict[str, Any]]:
        """
        Answer the greeting with C{nickname}, and return what the server
        sent, greeting included.
        """
        greeting = self.messages()
        self.send({"type": "nickname", "nickname": nickname})
        return greeting + self.messages()
