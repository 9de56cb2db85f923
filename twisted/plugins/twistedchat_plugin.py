"""
twistd plugin for twistedchat: ``twistd -n chat --port 12345``.

This file only names the module that builds the service, so that
``twistd --help`` never imports the application.
"""

from twisted.application.service import ServiceMaker

twistedchat = ServiceMaker(
    "twistedchat",
    "twistedchat.tap",
    "A multi-user chat server for telnet, nc and twistedchat-client.",
    "chat",
)
