"""Ring buffer of recently forwarded packets, used to answer NACKs.

RFC 4585 §6.2.1 generic NACKs name lost packets by sequence number; the
server answers by retransmitting from this cache (RFC 4588 for RTX). Keys are
extended sequence numbers (see :mod:`sfu.core.seqnum`) so a slot can tell a
packet from one exactly ``size`` packets newer that maps to the same slot.
"""

from __future__ import annotations

__all__ = ["PacketCache"]

# Marks an empty slot. Extended sequence numbers are never negative (the
# unwrappers start at 2**16), so no real key can collide with it.
_EMPTY = -1


class PacketCache:
    """Preallocated ring of ``size`` packets keyed by extended sequence number.

    Slot = ``ext_seq & (size - 1)``, hence the power-of-two size. A slot holds
    the newest packet written to it: a late ``put`` of an *older* ext seq does
    not evict a newer packet (a retransmission arriving after the ring moved on
    must not destroy data that is still answerable).

    Memory bound: ``size`` packet references plus ``size`` integers, allocated
    once in ``__init__``.
    """

    __slots__ = ("_mask", "_packets", "_seqs", "size")

    def __init__(self, size: int) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"PacketCache size must be a power of two, got {size}")
        self.size = size
        self._mask = size - 1
        self._seqs: list[int] = [_EMPTY] * size
        self._packets: list[bytes | None] = [None] * size

    def put(self, ext_seq: int, packet: bytes) -> None:
        """Store ``packet`` under the non-negative ``ext_seq``."""
        i = ext_seq & self._mask
        if self._seqs[i] > ext_seq:
            return
        self._seqs[i] = ext_seq
        self._packets[i] = packet

    def get(self, ext_seq: int) -> bytes | None:
        """Return the packet stored for ``ext_seq``, or None if absent/overwritten."""
        i = ext_seq & self._mask
        if self._seqs[i] != ext_seq:
            return None
        return self._packets[i]

    def clear(self) -> None:
        """Empty every slot without reallocating the ring."""
        seqs = self._seqs
        packets = self._packets
        for i in range(self.size):
            seqs[i] = _EMPTY
            packets[i] = None
