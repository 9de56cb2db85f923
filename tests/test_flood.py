"""
Tests for L{twistedchat.flood.InputGate}: when a connection reads, and when
it holds back what it has read, driven with a fake transport and a
L{Clock}. Each front end's use of it is tested with the front end.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from twistedchat.flood import InputGate


class Reader:
    """
    A transport that records whether it is reading.
    """

    def __init__(self) -> None:
        self.reading = True

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


def gate(waits: list[float], byte_rate: float = 0) -> tuple[InputGate, Reader, Clock, list[bool]]:
    """
    Return a gate whose flood control answers C{waits} in turn, its
    reader, its clock, and the list of what it told C{hold}.
    """
    clock, reader, held = Clock(), Reader(), []
    return (
        InputGate(clock, reader, lambda: waits.pop(0), held.append, byte_rate, byte_rate),
        reader,
        clock,
        held,
    )


def test_flood_pauses_reading_and_holds_input() -> None:
    """
    A line that flood control says to wait after stops reading and holds
    input back for that long; then input is released and reading resumes.
    """
    input_gate, reader, clock, held = gate([0, 2.0])
    input_gate.line_handled()
    assert reader.reading and held == []
    input_gate.line_handled()
    assert not reader.reading and input_gate.holding and held == [True]
    clock.advance(2)
    assert reader.reading and not input_gate.holding and held == [True, False]


def test_bytes_only_pause_reading() -> None:
    """
    Over the byte budget, reading stops but input already read is not held
    back; reading resumes once the budget refills.
    """
    input_gate, reader, clock, held = gate([], byte_rate=100)
    input_gate.bytes_received(250)
    assert not reader.reading and not input_gate.holding and held == []
    clock.advance(2)
    assert reader.reading


def test_password_check_holds_until_done() -> None:
    """
    Input is held while a password is checked, whatever else ends
    meanwhile, and released when the check is done.
    """
    input_gate, reader, clock, held = gate([1.0])
    done: Deferred[None] = Deferred()
    input_gate.wait_for(done)
    input_gate.line_handled()
    clock.advance(1)
    assert input_gate.holding and not reader.reading
    done.callback(None)
    assert not input_gate.holding and reader.reading and held == [True, False]


def test_stopped_gate_resumes_nothing() -> None:
    """
    Once stopped (the connection is closing), the gate's timers are
    cancelled and nothing resumes reading.
    """
    input_gate, reader, clock, held = gate([5.0])
    input_gate.line_handled()
    input_gate.stop()
    clock.advance(10)
    assert not reader.reading and held == [True]
    assert clock.getDelayedCalls() == []
