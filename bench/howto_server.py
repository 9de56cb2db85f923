"""
The baseline: the minimal chat server from Twisted's "Writing Servers"
howto (docs/core/howto/listings/servers/chat.py), unchanged except that the
port comes from the command line and the server says when it listens.

Usage: python bench/howto_server.py PORT
"""

import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver


class Chat(LineReceiver):
    def __init__(self, users):
        self.users = users
        self.name = None
        self.state = "GETNAME"

    def connectionMade(self):
        self.sendLine(b"What's your name?")

    def connectionLost(self, reason):
        if self.name in self.users:
            del self.users[self.name]

    def lineReceived(self, line):
        if self.state == "GETNAME":
            self.handle_GETNAME(line)
        else:
            self.handle_CHAT(line)

    def handle_GETNAME(self, name):
        if name in self.users:
            self.sendLine(b"Name taken, please choose another.")
            return
        self.sendLine(f"Welcome, {name}!".encode())
        self.name = name
        self.users[name] = self
        self.state = "CHAT"

    def handle_CHAT(self, message):
        message = f"<{self.name}> {message}"
        for name, protocol in self.users.items():
            if protocol != self:
                protocol.sendLine(message.encode("utf-8"))


class ChatFactory(Factory):
    def __init__(self):
        self.users = {}  # maps user names to Chat instances

    def buildProtocol(self, addr):
        return Chat(self.users)


port = reactor.listenTCP(int(sys.argv[1]), ChatFactory(), interface="127.0.0.1")
print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)
reactor.run()
