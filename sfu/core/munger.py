"""Sequence number / timestamp rewriting for one forwarded RTP stream.

A subscriber's decoder and jitter buffer expect one RTP stream: sequence
numbers that increase by one per packet (RFC 3550 §5.1, gaps mean loss and
trigger NACKs) and a timestamp that never runs backwards. The SFU breaks that
by joining mid-stream, by dropping packets on purpose (e.g. a temporal layer
the subscriber does not get) and by switching between simulcast encodings
whose sequence and timestamp spaces are unrelated (RFC 7667 §3.7 describes
such "switching" middleboxes, which must rewrite both fields).

The rewrite is piecewise linear. A *segment* starts at a source packet and
says ``out_seq = src_ext_seq + seq_offset`` and
``out_ts = src_ts + ts_offset (mod 2**32)`` for the packets of that source
from there on, until a newer segment takes over. Segments are opened by
:meth:`RtpMunger.start` (join / switch) and :meth:`RtpMunger.drop` (close the
gap a deliberate drop would leave). Packets lost upstream keep their gap so
the subscriber can NACK them and :meth:`RtpMunger.source_of` can map that
NACK back to the source packet.

Outgoing sequence numbers are tracked internally as extended integers
(starting at ``out_seq_start``) and masked to 16 bits on output.
"""

from __future__ import annotations

from collections.abc import Hashable

from sfu.core.seqnum import SEQ_MASK, TS_MASK, seq_diff, ts_diff

_TS_HALF = 1 << 31

__all__ = ["RtpMunger"]


class RtpMunger:
    """Rewrites seq/ts of one outgoing stream fed by one or more sources.

    Segments live in a preallocated ring of ``max_segments`` entries; the
    oldest is forgotten when a new one is needed, after which packets and
    NACKs that map into it get None. The segment ring is scanned newest
    first, and the common case (next packet of the current source) hits the
    newest segment at once.

    An older segment only ever fills holes: a packet translated through it
    must land below the first output seq of the segment that followed it,
    otherwise that output seq is already taken (by the next source, or by the
    packet that slid down after a drop) and the packet gets None.

    Memory bound: ``max_segments`` segments (five preallocated lists).
    """

    __slots__ = (
        "_count",
        "_emitted",
        "_head",
        "_last_out_ext",
        "_last_out_ts",
        "_n",
        "_newest_src_ext",
        "_seg_out",
        "_seg_seq_off",
        "_seg_src",
        "_seg_start",
        "_seg_ts_off",
        "out_seq_start",
        "out_ts_start",
    )

    def __init__(self, out_seq_start: int, out_ts_start: int, max_segments: int = 32) -> None:
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        self.out_seq_start = out_seq_start & SEQ_MASK
        self.out_ts_start = out_ts_start & TS_MASK
        n = max_segments
        self._n = n
        self._seg_src: list[Hashable] = [None] * n
        self._seg_start = [0] * n  # first source ext seq of the segment
        self._seg_seq_off = [0] * n  # out_ext = src_ext + offset
        self._seg_ts_off = [0] * n  # out_ts = (src_ts + offset) mod 2**32
        self._seg_out = [0] * n  # out ext seq of the segment's first packet
        self._head = -1  # index of the newest segment
        self._count = 0
        self._emitted = False
        self._last_out_ext = self.out_seq_start - 1
        self._last_out_ts = self.out_ts_start
        # Highest source ext seq placed (translated or dropped) in the newest
        # segment; a drop at or below it is not "the newest packet".
        self._newest_src_ext = 0

    @property
    def started(self) -> bool:
        """True once :meth:`start` has been called."""
        return self._count > 0

    @property
    def last_out_seq(self) -> int | None:
        """Highest 16-bit sequence number emitted (None before the first packet)."""
        return (self._last_out_ext & SEQ_MASK) if self._emitted else None

    @property
    def last_out_ts(self) -> int | None:
        """Latest 32-bit timestamp emitted (None before the first packet)."""
        return self._last_out_ts if self._emitted else None

    def start(self, source: Hashable, ext_seq: int, timestamp: int, *, ts_advance: int = 1) -> None:
        """Open a segment so that packet ``ext_seq`` of ``source`` comes next.

        That packet will get ``last_out_seq + 1`` and ``last_out_ts +
        ts_advance`` (or ``out_seq_start`` / ``out_ts_start`` before anything
        was emitted). ``ts_advance`` should approximate the wall-clock time
        since the last emitted packet in timestamp units; it must be >= 1 so
        the timestamp only moves forward.
        """
        if ts_advance < 1:
            raise ValueError(f"ts_advance must be >= 1, got {ts_advance}")
        if self._emitted:
            out_ext = self._last_out_ext + 1
            out_ts = (self._last_out_ts + ts_advance) & TS_MASK
        else:
            out_ext = self._last_out_ext + 1  # == out_seq_start
            out_ts = self.out_ts_start
        head = self._head
        if self._count and self._seg_out[head] > self._last_out_ext:
            # Nothing was emitted through the newest segment: replace it
            # rather than spend a ring slot on an empty range.
            i = head
        else:
            i = head + 1
            if i == self._n:
                i = 0
            self._head = i
            if self._count < self._n:
                self._count += 1
        self._seg_src[i] = source
        self._seg_start[i] = ext_seq
        self._seg_seq_off[i] = out_ext - ext_seq
        self._seg_ts_off[i] = (out_ts - timestamp) & TS_MASK
        self._seg_out[i] = out_ext
        self._newest_src_ext = ext_seq - 1

    def translate(self, source: Hashable, ext_seq: int, timestamp: int) -> tuple[int, int] | None:
        """Return ``(out_seq, out_ts)`` for a source packet, or None to not send it.

        None when the packet predates every kept segment of ``source``, when
        ``source`` has no segment, or when its output slot is already used by
        a later segment (late packet of a previous source after a switch, or
        the duplicate of a dropped packet).
        """
        i = self._head
        starts = self._seg_start
        srcs = self._seg_src
        if i >= 0 and starts[i] <= ext_seq and srcs[i] == source:
            # The common case, the next packet of the current source: the
            # newest segment, without the scan below.
            out_ext = ext_seq + self._seg_seq_off[i]
            out_ts = (timestamp + self._seg_ts_off[i]) & TS_MASK
            if ext_seq > self._newest_src_ext:
                self._newest_src_ext = ext_seq
            if out_ext > self._last_out_ext or not self._emitted:
                self._last_out_ext = out_ext
                # ts_diff(out_ts, last) > 0, inlined (RFC 1982 §3.2 serial order).
                if not self._emitted or 0 < (out_ts - self._last_out_ts) & TS_MASK < _TS_HALF:
                    self._last_out_ts = out_ts
                self._emitted = True
            return out_ext & SEQ_MASK, out_ts
        n = self._n
        for k in range(self._count):
            if starts[i] <= ext_seq and srcs[i] == source:
                out_ext = ext_seq + self._seg_seq_off[i]
                out_ts = (timestamp + self._seg_ts_off[i]) & TS_MASK
                if k:
                    # Older segment: only holes below the next segment's start.
                    nxt = i + 1
                    if nxt == n:
                        nxt = 0
                    if out_ext >= self._seg_out[nxt]:
                        return None
                else:
                    if ext_seq > self._newest_src_ext:
                        self._newest_src_ext = ext_seq
                    if out_ext > self._last_out_ext or not self._emitted:
                        self._last_out_ext = out_ext
                        if not self._emitted or ts_diff(out_ts, self._last_out_ts) > 0:
                            self._last_out_ts = out_ts
                        self._emitted = True
                return out_ext & SEQ_MASK, out_ts
            i = i - 1 if i else n - 1
        return None

    def drop(self, source: Hashable, ext_seq: int) -> None:
        """Leave out the newest packet ``ext_seq`` of ``source`` without a gap.

        Later packets of the source slide down by one output seq. Ignored
        when ``source`` is not the current source or ``ext_seq`` is not newer
        than every packet already placed (it already has its output seq).
        """
        if not self._count:
            return
        i = self._head
        if self._seg_src[i] != source or ext_seq <= self._newest_src_ext:
            return
        start = self._seg_start[i]
        if ext_seq < start:
            return
        if ext_seq == start:
            # The segment's first packet is dropped before anything went out
            # through it: just move the segment up by one packet.
            self._seg_start[i] = ext_seq + 1
            self._seg_seq_off[i] -= 1
        else:
            off = self._seg_seq_off[i]
            ts_off = self._seg_ts_off[i]
            j = i + 1
            if j == self._n:
                j = 0
            self._head = j
            if self._count < self._n:
                self._count += 1
            self._seg_src[j] = source
            self._seg_start[j] = ext_seq + 1
            self._seg_seq_off[j] = off - 1
            self._seg_ts_off[j] = ts_off
            # The dropped packet's would-be output seq goes to its successor.
            self._seg_out[j] = ext_seq + off
        self._newest_src_ext = ext_seq

    def source_of(self, out_seq: int) -> tuple[Hashable, int] | None:
        """Map an emitted 16-bit seq back to ``(source, source ext seq)``.

        None when the seq was never emitted (ahead of the last one), is older
        than the oldest kept segment, or is more than 2**15 behind.
        """
        if not self._emitted:
            return None
        last = self._last_out_ext
        out_ext = last + seq_diff(out_seq, last & SEQ_MASK)
        if out_ext > last:
            return None
        n = self._n
        i = self._head
        outs = self._seg_out
        for _ in range(self._count):
            if outs[i] <= out_ext:
                return self._seg_src[i], out_ext - self._seg_seq_off[i]
            i = i - 1 if i else n - 1
        return None
