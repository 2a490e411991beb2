"""Links to a card: the :class:`Transport` protocol, PC/SC (pyscard) and in-process.

Use :func:`sscard.transport.resolve.open_transport` to get one from a reader
specification (``--reader`` / ``SSCARD_READER``).
"""

from sscard.transport.base import CardLike, Transport
from sscard.transport.inprocess import InProcessTransport

__all__ = ["CardLike", "InProcessTransport", "Transport"]
