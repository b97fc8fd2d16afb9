"""The wire format of the relay between cluster nodes: pure functions, no I/O.

A node relays a published track to another node as plain RTP inside a small
authenticated envelope, one UDP datagram per packet::

    0       1       2       3       4               8               16              24
    +-------+-------+-------+-------+---------------+---------------+---------------+
    | ver=1 | type  | layer | 0     | channel (u32) | sender (u64)  | counter (u64) |
    +-------+-------+-------+-------+---------------+---------------+---------------+
    | payload (an RTP packet, an RTCP packet, or a control body)  ...
    +-----------------------------------------------------------------+
    | tag: BLAKE2b-128 keyed with the cluster secret over all above   |
    +-----------------------------------------------------------------+

- ``channel`` is chosen by the receiving node when it asks for a track, so
  it can route what arrives without looking at the payload; ``layer`` is the
  simulcast layer's position in the track's RIDs, sorted (both sides know the
  RIDs from the track's record and sort them the same way).
- ``sender`` is a random id a node's relay picks when it starts; ``counter``
  grows by one per datagram that sender sends, starting at its wall clock in
  microseconds. The receiver keeps one :class:`ReplayWindow` per sender id
  (not per address: the address is not covered by the tag, so a datagram
  replayed from another address must still meet its sender's window). A
  recorded datagram cannot be played again (the same idea as SRTP's replay
  list, RFC 3711 §3.3.2).
- The tag is BLAKE2b in its keyed mode (RFC 7693 §2.5), which is a MAC: a
  stranger without the cluster secret can neither inject nor alter a
  datagram. It costs ~1.3 µs for a 1200-byte packet, once per packet and
  receiving node, not per subscriber. The payload is not encrypted: the relay
  runs between the operator's nodes (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_BYTES",
    "MAX_TRACK_ID_BYTES",
    "OVERHEAD_BYTES",
    "TAG_BYTES",
    "Kind",
    "RelayDatagram",
    "RelayError",
    "ReplayWindow",
    "Sealer",
    "open_datagram",
    "pack_sender_report",
    "unpack_sender_report",
]

VERSION = 1
HEADER_BYTES = 24
TAG_BYTES = 16
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES
MAX_TRACK_ID_BYTES = 64
_HEADER = struct.Struct("!BBBxIQQ")
_SR = struct.Struct("!QI")
_COUNTER_MASK = (1 << 64) - 1


class Kind:
    """Datagram types."""

    #: An RTP packet of the track's layer, forwarded as the publisher sent it.
    RTP = 1
    #: The publisher's last sender report for the layer (NTP, RTP timestamps).
    SENDER_REPORT = 2
    #: RTCP feedback from the receiving node (PLI, FIR, NACK) for the layer.
    FEEDBACK = 3
    #: "Send me this track on this channel"; repeated as a lease keep-alive.
    SUBSCRIBE = 4
    #: "Stop sending this channel."
    UNSUBSCRIBE = 5

    ALL = frozenset({RTP, SENDER_REPORT, FEEDBACK, SUBSCRIBE, UNSUBSCRIBE})


class RelayError(ValueError):
    """A datagram that is not ours, damaged, forged or replayed."""


@dataclass(frozen=True, slots=True)
class RelayDatagram:
    kind: int
    layer: int
    channel: int
    sender: int
    counter: int
    payload: memoryview


def _tag(key: bytes, data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, key=key, digest_size=TAG_BYTES).digest()


class Sealer:
    """Builds authenticated datagrams with this sender's counter."""

    __slots__ = ("_key", "counter", "sender")

    def __init__(self, key: bytes, first_counter: int, sender: int = 0) -> None:
        if not 16 <= len(key) <= 64:
            raise ValueError("the relay key must be 16 to 64 bytes")
        self._key = key
        self.sender = sender & _COUNTER_MASK
        self.counter = first_counter & _COUNTER_MASK

    def seal(self, kind: int, layer: int, channel: int, payload: bytes | memoryview) -> bytes:
        self.counter = counter = (self.counter + 1) & _COUNTER_MASK
        data = _HEADER.pack(VERSION, kind, layer, channel, self.sender, counter) + payload
        return data + _tag(self._key, data)


def open_datagram(key: bytes, data: bytes) -> RelayDatagram:
    """Check a datagram's tag and split it; raises RelayError. The caller
    checks the counter against its :class:`ReplayWindow`."""
    if len(data) < OVERHEAD_BYTES:
        raise RelayError("shorter than a relay header")
    if data[0] != VERSION:
        raise RelayError(f"relay version {data[0]}, expected {VERSION}")
    view = memoryview(data)
    body = view[:-TAG_BYTES]
    if not hmac.compare_digest(_tag(key, body), view[-TAG_BYTES:]):
        raise RelayError("bad tag: not from a node of this cluster")
    _, kind, layer, channel, sender, counter = _HEADER.unpack_from(data)
    if kind not in Kind.ALL:
        raise RelayError(f"unknown relay datagram type {kind}")
    return RelayDatagram(kind, layer, channel, sender, counter, body[HEADER_BYTES:])


def pack_sender_report(ntp_timestamp: int, rtp_timestamp: int) -> bytes:
    return _SR.pack(ntp_timestamp & _COUNTER_MASK, rtp_timestamp & 0xFFFFFFFF)


def unpack_sender_report(payload: bytes | memoryview) -> tuple[int, int]:
    if len(payload) != _SR.size:
        raise RelayError("bad sender report body")
    ntp, rtp = _SR.unpack(payload)
    return ntp, rtp


class ReplayWindow:
    """Accepts each counter value of one sender at most once.

    Remembers the highest counter seen and which of the ``size`` below it
    have arrived (a bitmap), as RFC 3711 §3.3.2 does for SRTP indexes:
    reordering within the window is fine, anything older or repeated is
    refused. Memory: one integer and one ``size``-bit integer.
    """

    __slots__ = ("_bits", "highest", "size")

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.highest: int | None = None
        self._bits = 0

    def accept(self, counter: int) -> bool:
        highest = self.highest
        if highest is None:
            self.highest = counter
            self._bits = 1
            return True
        if counter > highest:
            shift = counter - highest
            self._bits = (
                ((self._bits << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            )
            self.highest = counter
            return True
        age = highest - counter
        if age >= self.size:
            return False
        bit = 1 << age
        if self._bits & bit:
            return False
        self._bits |= bit
        return True
