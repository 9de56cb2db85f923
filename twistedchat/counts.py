"""
What the chat counts as it happens, for C{--metrics}
(L{twistedchat.metrics}): plain integers, one addition where a thing
happens, so that counting costs the broadcast path nothing, and the shared
state needs nothing of the metrics' libraries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counts:
    """
    What has happened since the server started, counted where it happens.

    @ivar lines_received: lines (and WebSocket messages) users sent.
    @ivar deliveries: events handed to a connection (one per recipient).
    @ivar sendq_cutoffs: connections cut off for "SendQ exceeded".
    @ivar flood_delays: lines that had to wait for flood control.
    @ivar wrong_passwords: passwords given that were wrong.
    @ivar registration_timeouts: connections closed for choosing no
        nickname in time.
    """

    lines_received: int = 0
    deliveries: int = 0
    sendq_cutoffs: int = 0
    flood_delays: int = 0
    wrong_passwords: int = 0
    registration_timeouts: int = 0
