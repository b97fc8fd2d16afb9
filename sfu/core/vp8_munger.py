"""VP8 PictureID / TL0PICIDX rewriting for one forwarded video stream.

The VP8 payload descriptor (RFC 7741 §4.2) carries a PictureID that grows by
one per frame (7 or 15 bits, wrapping) and a TL0PICIDX that grows by one per
base temporal layer (TID 0) frame (8 bits, wrapping). Receivers use them to
spot missing frames and to decide whether a frame's references are intact
(RFC 7741 §4.2 on TL0PICIDX).

Each simulcast encoding is a separate encoder with its own, unrelated
PictureID and TL0PICIDX sequences (RFC 7741 §4.2 leaves the start values to
the encoder). When the SFU switches a subscriber to another encoding, always
at a keyframe of that encoding, the ids the subscriber sees would jump back or
forward; and when the SFU drops the frames of a temporal layer the subscriber
does not get, the PictureIDs would show gaps that look like loss. So the
outgoing ids are rewritten:

* ``out_picture_id = in_picture_id + offset`` with a piecewise offset: a
  :meth:`Vp8Munger.switch` opens a new source whose first frame gets
  ``last sent + 1``; a :meth:`Vp8Munger.drop_frame` lowers the offset by one
  for the frames after the dropped one. Earlier frames keep their offset, so
  a retransmission maps where the original went.
* ``out_tl0picidx = in_tl0picidx + offset`` with one offset per source: the
  frames dropped for temporal scalability have TID > 0 and do not advance
  TL0PICIDX (RFC 7741 §4.2), so only a switch moves it (to ``last sent + 1``,
  the new source's keyframe being a TID 0 frame).

Ids are unwrapped into unbounded integers by serial-number arithmetic
(RFC 1982 §3) relative to the newest frame seen, so the mapping holds across
wraparound; outputs are reduced modulo 2**15 (or 2**7 for a source that uses
7-bit PictureIDs) and 2**8.

Limits: a frame dropped after a newer frame of the same source was already
translated cannot be squeezed out any more (its gap stays, as for a loss); the
frames of the new source older than the switch keyframe, and retransmissions
of dropped frames, get ids that collide with forwarded ones (the caller does
not forward those anyway).
"""

from __future__ import annotations

__all__ = ["Vp8Munger", "rewrite_descriptor"]

_PID15_MOD = 1 << 15
_TL0_MOD = 1 << 8

# Descriptor bits (RFC 7741 §4.2): X in the first octet; I, L, T, K in the
# extension octet; M (15-bit PictureID) in the first PictureID octet.
_X = 0x80
_I = 0x80
_L = 0x40
_T = 0x20
_K = 0x10
_M = 0x80

# Segments kept per source for PictureID translation. Consecutive drops share
# one segment, so this spans dozens of forwarded frames: far longer than a
# retransmission of an old frame stays useful.
_MAX_SEGMENTS = 64


def _unwrap(value: int, ref_ext: int, modulus: int) -> int:
    """Extended value closest to ``ref_ext`` congruent to ``value`` (RFC 1982 §3)."""
    d = (value - ref_ext) % modulus
    if d >= modulus >> 1:
        d -= modulus
    return ref_ext + d


class Vp8Munger:
    """Rewrites the PictureID and TL0PICIDX of one outgoing VP8 stream.

    Usage, per forwarded frame's packets: call :meth:`switch` before the first
    packet of a new source (its keyframe), :meth:`drop_frame` for the packets
    of a frame not forwarded, :meth:`translate` for the packets forwarded, and
    :func:`rewrite_descriptor` with the result when :attr:`changed` is True.

    All ids are tracked as unbounded integers ("ext" values) so that offsets
    and comparisons need no modular care.

    Memory bound: at most 64 PictureID segments.
    """

    __slots__ = (
        "_changed",
        "_last_out_pid_ext",
        "_last_out_tl0_ext",
        "_newest_pid_ext",
        "_newest_tl0_ext",
        "_pid_active",
        "_seg_off",
        "_seg_start",
        "_tl0_active",
        "_tl0_off",
    )

    def __init__(self) -> None:
        # PictureID of the current source: segment i covers in-ext values from
        # _seg_start[i] on (until the next segment) with out = in + _seg_off[i].
        self._pid_active = False
        self._seg_start: list[int] = []
        self._seg_off: list[int] = []
        self._newest_pid_ext = 0  # newest frame placed (translated or dropped)
        self._last_out_pid_ext: int | None = None  # highest PictureID sent
        # TL0PICIDX of the current source: out = in + _tl0_off.
        self._tl0_active = False
        self._tl0_off = 0
        self._newest_tl0_ext = 0
        self._last_out_tl0_ext: int | None = None
        self._changed = False

    @property
    def changed(self) -> bool:
        """True when out ids may differ from in ids.

        False means every translation is the identity (pass-through), so the
        caller can leave the packet untouched.
        """
        return self._changed

    def switch(
        self, picture_id: int | None, tl0picidx: int | None, *, picture_id_bits: int = 15
    ) -> None:
        """The next forwarded frame (a keyframe) starts a new source.

        Choose offsets so that this frame's out ids follow the last ones sent
        (PictureID + 1, TL0PICIDX + 1), or pass it through unchanged if nothing
        was sent yet. A field given as None leaves that field without a source
        until a packet carries it (it then starts the same way).
        """
        self._pid_active = False
        self._tl0_active = False
        if picture_id is not None:
            self._start_pid(picture_id & ((1 << picture_id_bits) - 1))
        if tl0picidx is not None:
            self._start_tl0(tl0picidx & (_TL0_MOD - 1))
        self._update_changed()

    def translate(
        self, picture_id: int | None, tl0picidx: int | None, *, picture_id_bits: int = 15
    ) -> tuple[int | None, int | None]:
        """Out ``(picture_id, tl0picidx)`` for a packet of the current source.

        The PictureID comes back modulo 2**``picture_id_bits`` (2**15 by
        default), TL0PICIDX modulo 256; None stays None. Packets of one frame
        get the same result, and a retransmission of an older frame gets what
        that frame got.
        """
        out_pid: int | None = None
        out_tl0: int | None = None
        if picture_id is not None:
            modulus = 1 << picture_id_bits
            if not self._pid_active:
                self._start_pid(picture_id % modulus)
                self._update_changed()
            ext = _unwrap(picture_id, self._newest_pid_ext, modulus)
            if ext > self._newest_pid_ext:
                self._newest_pid_ext = ext
            out_ext = ext + self._offset_for(ext)
            last = self._last_out_pid_ext
            if last is None or out_ext > last:
                self._last_out_pid_ext = out_ext
            out_pid = out_ext % modulus
        if tl0picidx is not None:
            if not self._tl0_active:
                self._start_tl0(tl0picidx % _TL0_MOD)
                self._update_changed()
            ext = _unwrap(tl0picidx, self._newest_tl0_ext, _TL0_MOD)
            if ext > self._newest_tl0_ext:
                self._newest_tl0_ext = ext
            out_ext = ext + self._tl0_off
            last = self._last_out_tl0_ext
            if last is None or out_ext > last:
                self._last_out_tl0_ext = out_ext
            out_tl0 = out_ext % _TL0_MOD
        return out_pid, out_tl0

    def drop_frame(self, picture_id: int | None, *, picture_id_bits: int = 15) -> None:
        """A whole frame of the current source is not forwarded.

        The frames after it shift down by one so the output has no PictureID
        gap. Calling this for several packets of one frame counts once; a frame
        older than the newest frame already placed changes nothing (its slot
        may be taken). Without a PictureID there is nothing to close.
        """
        if picture_id is None:
            return
        modulus = 1 << picture_id_bits
        if not self._pid_active:
            self._start_pid(picture_id % modulus)
        ext = _unwrap(picture_id, self._newest_pid_ext, modulus)
        if ext <= self._newest_pid_ext:
            return  # another packet of the same frame, or too late to close its gap
        self._newest_pid_ext = ext
        starts = self._seg_start
        offsets = self._seg_off
        if starts[-1] == ext:
            # The previous frame was dropped too and nothing was placed since:
            # extend that segment rather than open one.
            starts[-1] = ext + 1
            offsets[-1] -= 1
        else:
            starts.append(ext + 1)
            offsets.append(offsets[-1] - 1)
            if len(starts) > _MAX_SEGMENTS:
                del starts[0]
                del offsets[0]
        self._update_changed()

    # -- internals -----------------------------------------------------------

    def _start_pid(self, picture_id: int) -> None:
        last = self._last_out_pid_ext
        offset = 0 if last is None else last + 1 - picture_id
        self._seg_start = [picture_id]
        self._seg_off = [offset]
        self._newest_pid_ext = picture_id - 1
        self._pid_active = True

    def _start_tl0(self, tl0picidx: int) -> None:
        last = self._last_out_tl0_ext
        self._tl0_off = 0 if last is None else last + 1 - tl0picidx
        self._newest_tl0_ext = tl0picidx - 1
        self._tl0_active = True

    def _offset_for(self, ext: int) -> int:
        starts = self._seg_start
        i = len(starts) - 1
        while i > 0 and starts[i] > ext:
            i -= 1
        # Frames older than the first kept segment use its offset.
        return self._seg_off[i]

    def _update_changed(self) -> None:
        self._changed = self._tl0_off % _TL0_MOD != 0 or any(
            off % _PID15_MOD != 0 for off in self._seg_off
        )


def rewrite_descriptor(
    buf: bytearray | memoryview, offset: int, picture_id: int | None, tl0picidx: int | None
) -> None:
    """Write ids into the VP8 payload descriptor starting at ``buf[offset]``.

    In place, keeping the descriptor's layout (RFC 7741 §4.2): a 7-bit
    PictureID field gets ``picture_id`` mod 128, a 15-bit one mod 2**15 with
    the M bit kept; TL0PICIDX gets ``tl0picidx`` mod 256. An argument of None,
    or a field the descriptor does not have, leaves that field alone.

    Raises ValueError, without writing anything, when the buffer ends before
    the descriptor announced by its flags does.
    """
    n = len(buf)
    if offset < 0 or offset >= n:
        raise ValueError(f"VP8 payload descriptor: offset {offset} outside buffer of {n}")
    if not buf[offset] & _X:
        return  # no extension octet: no PictureID, no TL0PICIDX
    pos = offset + 1
    if pos >= n:
        raise ValueError("VP8 payload descriptor: truncated extension octet")
    ext = buf[pos]
    pos += 1
    pid_pos = -1
    pid_bits = 0
    if ext & _I:
        if pos >= n:
            raise ValueError("VP8 payload descriptor: truncated PictureID")
        pid_pos = pos
        pid_bits = 15 if buf[pos] & _M else 7
        pos += 2 if pid_bits == 15 else 1
    tl0_pos = -1
    if ext & _L:
        tl0_pos = pos
        pos += 1
    if ext & (_T | _K):
        pos += 1  # TID/Y/KEYIDX octet
    if pos > n:
        raise ValueError("VP8 payload descriptor: truncated")
    if picture_id is not None and pid_pos >= 0:
        if pid_bits == 15:
            value = picture_id % _PID15_MOD
            buf[pid_pos] = _M | (value >> 8)
            buf[pid_pos + 1] = value & 0xFF
        else:
            buf[pid_pos] = picture_id & 0x7F
    if tl0picidx is not None and tl0_pos >= 0:
        buf[tl0_pos] = tl0picidx % _TL0_MOD
