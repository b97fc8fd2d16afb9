"""Send-time stamps carried in RTP padding, for measuring forwarding delay.

A benchmark publisher appends a 12-octet RTP padding block (RFC 3550 §5.1: the
P bit set, the last octet counting the padding octets) that holds its
CLOCK_MONOTONIC send time in nanoseconds and a 3-octet marker. Receivers must
ignore padding content, and the SFU forwards padding unchanged while it never
touches payload, so a subscriber on the same machine reads the publisher's
send time back from the forwarded packet and needs no clock sync (the
monotonic clock is system-wide). The VP8/Opus payload stays intact.
"""

from __future__ import annotations

import struct

__all__ = ["STAMP_SIZE", "add_send_stamp", "read_send_stamp"]

_STAMP = struct.Struct("!Q3sB")
_MARK = b"SFB"
STAMP_SIZE = _STAMP.size  # 12 octets: keeps a payload's 32-bit alignment
_PADDING_BIT = 0x20


def add_send_stamp(packet: bytes, now_ns: int) -> bytes:
    """``packet`` (an RTP packet without padding) with the stamp appended."""
    if packet[0] & _PADDING_BIT:
        raise ValueError("packet already has padding")
    return b"".join(
        (bytes((packet[0] | _PADDING_BIT,)), packet[1:], _STAMP.pack(now_ns, _MARK, STAMP_SIZE))
    )


def read_send_stamp(packet: bytes) -> int | None:
    """The send time (monotonic ns) stamped in ``packet``, or None if it has none."""
    if not packet[0] & _PADDING_BIT or len(packet) < 12 + STAMP_SIZE:
        return None
    now_ns, mark, size = _STAMP.unpack_from(packet, len(packet) - STAMP_SIZE)
    if size != STAMP_SIZE or mark != _MARK:
        return None
    return now_ns
