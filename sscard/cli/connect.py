"""Opening the card named by the global ``--reader`` option, for commands that talk to one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sscard.cli.context import CliState
from sscard.protocol import ApduProtocol
from sscard.transport.base import Transport
from sscard.transport.resolve import open_transport


@contextmanager
def connected_transport(state: CliState, *, shared: bool = False) -> Iterator[Transport]:
    """Resolve ``--reader``, connect, and disconnect afterwards whatever happens."""
    transport = open_transport(state.reader, shared=shared)
    transport.connect()
    try:
        yield transport
    finally:
        transport.disconnect()


@contextmanager
def connected_protocol(state: CliState, *, shared: bool = False) -> Iterator[ApduProtocol]:
    """Like :func:`connected_transport`, wrapped in the transmit pipeline."""
    with connected_transport(state, shared=shared) as transport:
        yield ApduProtocol(transport)
