"""RTP fixed-header view and header extensions.

Pure, allocation-light helpers for the per-packet hot path:

* RFC 3550 §5.1 fixed header (plus CSRC list, extension block and padding),
* RFC 5761 §4 RTP/RTCP demultiplexing,
* RFC 8285 one-byte and two-byte header extension elements,
* the webrtc.org abs-send-time extension value.

The parser never copies the payload: :class:`RtpHeader` records offsets into
the original buffer so callers can slice (or ``memoryview``) only what they need.
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "EXT_ABS_SEND_TIME",
    "EXT_AUDIO_LEVEL",
    "EXT_MID",
    "EXT_RID",
    "EXT_RRID",
    "EXT_TOFFSET",
    "EXT_TRANSPORT_CC",
    "EXT_VIDEO_ORIENTATION",
    "RtpError",
    "RtpHeader",
    "abs_send_time",
    "build_extension_block",
    "build_packet",
    "find_extension",
    "is_rtcp",
    "iter_extensions",
    "parse_abs_send_time",
    "parse_header",
]

# Header extension URIs negotiated via a=extmap (RFC 8285 §5).
EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
EXT_RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
EXT_RRID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
EXT_VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
EXT_TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
EXT_TOFFSET = "urn:ietf:params:rtp-hdrext:toffset"

# RFC 3550 §5.1: V/P/X/CC octet, M/PT octet, sequence number, timestamp, SSRC.
_FIXED = struct.Struct("!BBHII")
# RFC 3550 §5.3.1: 16-bit profile-defined field, 16-bit length in 32-bit words.
_EXT_HDR = struct.Struct("!HH")

_FIXED_LEN = 12

# RFC 8285 §4.2: the one-byte form is announced by the "defined by profile"
# value 0xBEDE.
_PROFILE_ONE_BYTE = 0xBEDE
# RFC 8285 §4.3: the two-byte form uses 0x100 in the top 12 bits followed by
# four "appbits" that are application-specific, so 0x1000..0x100F all qualify.
_PROFILE_TWO_BYTE = 0x1000
_PROFILE_TWO_BYTE_MASK = 0xFFF0

# abs-send-time is a 6.18 fixed-point number of seconds (24 bits total).
_ABS_SEND_TIME_SCALE = 1 << 18
_ABS_SEND_TIME_MASK = 0xFFFFFF


class RtpError(ValueError):
    """Raised for malformed RTP packets or unencodable RTP fields."""


class RtpHeader:
    """Offsets and fixed fields of one parsed RTP packet.

    Offsets index into the buffer that was passed to :func:`parse_header`:
    ``data[payload_start:payload_end]`` is the payload without padding and
    ``data[ext_start:ext_end]`` the extension elements (both 0 when the packet
    carries no extension block).
    """

    __slots__ = (
        "marker",
        "payload_type",
        "seq",
        "timestamp",
        "ssrc",
        "csrc_count",
        "ext_profile",
        "ext_start",
        "ext_end",
        "payload_start",
        "payload_end",
        "padding",
    )

    def __init__(
        self,
        marker: bool,
        payload_type: int,
        seq: int,
        timestamp: int,
        ssrc: int,
        csrc_count: int,
        ext_profile: int,
        ext_start: int,
        ext_end: int,
        payload_start: int,
        payload_end: int,
        padding: int,
    ) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.seq = seq
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc_count = csrc_count
        self.ext_profile = ext_profile
        self.ext_start = ext_start
        self.ext_end = ext_end
        self.payload_start = payload_start
        self.payload_end = payload_end
        self.padding = padding

    def __repr__(self) -> str:
        return (
            f"RtpHeader(marker={self.marker}, payload_type={self.payload_type}, "
            f"seq={self.seq}, timestamp={self.timestamp}, ssrc={self.ssrc:#010x}, "
            f"csrc_count={self.csrc_count}, ext_profile={self.ext_profile:#06x}, "
            f"ext_start={self.ext_start}, ext_end={self.ext_end}, "
            f"payload_start={self.payload_start}, payload_end={self.payload_end}, "
            f"padding={self.padding})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RtpHeader):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable value object


def parse_header(data: bytes) -> RtpHeader:
    """Parse and validate the RTP header of ``data`` (RFC 3550 §5.1).

    Raises :class:`RtpError` if the version is not 2, the buffer is shorter
    than the fixed header, the CSRC list or extension block overruns the
    buffer, or the padding count is 0 or larger than what follows the header.
    """
    n = len(data)
    if n < _FIXED_LEN:
        raise RtpError(f"RTP packet too short: {n} bytes, fixed header needs {_FIXED_LEN}")
    b0, b1, seq, timestamp, ssrc = _FIXED.unpack_from(data, 0)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version is {b0 >> 6}, expected 2")

    csrc_count = b0 & 0x0F
    # RFC 3550 §5.1: CC counts 32-bit CSRC identifiers following the SSRC.
    offset = _FIXED_LEN + 4 * csrc_count
    if offset > n:
        raise RtpError(
            f"RTP CSRC list overruns packet: {csrc_count} CSRCs need {offset} bytes, have {n}"
        )

    if b0 & 0x10:
        # RFC 3550 §5.3.1: X bit means exactly one extension block follows the CSRCs.
        if offset + 4 > n:
            raise RtpError(
                f"RTP extension header overruns packet: needs {offset + 4} bytes, have {n}"
            )
        ext_profile, words = _EXT_HDR.unpack_from(data, offset)
        ext_start = offset + 4
        ext_end = ext_start + 4 * words
        if ext_end > n:
            raise RtpError(
                f"RTP extension length overruns packet: {words} words end at {ext_end}, have {n}"
            )
        offset = ext_end
    else:
        ext_profile = ext_start = ext_end = 0

    padding = 0
    payload_end = n
    if b0 & 0x20:
        # RFC 3550 §5.1: with P set, the last octet counts the padding octets
        # including itself, so it can be neither 0 nor reach into the header.
        padding = data[n - 1]
        if padding == 0:
            raise RtpError("RTP padding count is 0 with P bit set")
        if padding > n - offset:
            raise RtpError(
                f"RTP padding count {padding} exceeds the {n - offset} bytes after the header"
            )
        payload_end = n - padding

    return RtpHeader(
        b1 >= 0x80,
        b1 & 0x7F,
        seq,
        timestamp,
        ssrc,
        csrc_count,
        ext_profile,
        ext_start,
        ext_end,
        offset,
        payload_end,
        padding,
    )


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a multiplexed port (RFC 5761 §4).

    RTCP packet types 192..223 occupy the second octet where RTP would carry
    marker=1 with payload types 64..95, a range RFC 5761 §4 keeps free of RTP.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def iter_extensions(data: bytes, header: RtpHeader) -> list[tuple[int, bytes]]:
    """Return every ``(id, value)`` element of the packet's extension block.

    Handles the RFC 8285 one-byte (§4.2) and two-byte (§4.3) forms; other
    profiles are opaque to us and yield ``[]``. Raises :class:`RtpError` if an
    element's declared length runs past the extension block.
    """
    pos = header.ext_start
    end = header.ext_end
    profile = header.ext_profile
    out: list[tuple[int, bytes]] = []
    if pos == 0:
        return out
    if profile == _PROFILE_ONE_BYTE:
        while pos < end:
            b = data[pos]
            ext_id = b >> 4
            if ext_id == 0:
                # RFC 8285 §4.1: padding bytes (0) may sit between or after
                # elements; they carry no length, skip one byte.
                pos += 1
                continue
            if ext_id == 15:
                # RFC 8285 §4.2: ID 15 is reserved; stop and ignore the rest.
                break
            # RFC 8285 §4.2: the 4-bit length field holds (data length - 1).
            start = pos + 1
            stop = start + (b & 0x0F) + 1
            if stop > end:
                raise RtpError(f"RTP one-byte extension element id {ext_id} overruns the block")
            out.append((ext_id, data[start:stop]))
            pos = stop
    elif profile & _PROFILE_TWO_BYTE_MASK == _PROFILE_TWO_BYTE:
        while pos < end:
            ext_id = data[pos]
            if ext_id == 0:
                # RFC 8285 §4.1: padding byte, no length follows.
                pos += 1
                continue
            # RFC 8285 §4.3: 8-bit ID, 8-bit length (0..255, the data length itself).
            if pos + 2 > end:
                raise RtpError(f"RTP two-byte extension element id {ext_id} has no length byte")
            start = pos + 2
            stop = start + data[pos + 1]
            if stop > end:
                raise RtpError(f"RTP two-byte extension element id {ext_id} overruns the block")
            out.append((ext_id, data[start:stop]))
            pos = stop
    return out


def find_extension(data: bytes, header: RtpHeader, ext_id: int) -> bytes | None:
    """Return the value of the first extension element with ``ext_id``, else None.

    Same rules as :func:`iter_extensions`, but stops at the first match and
    builds no list, for the per-packet lookups (MID, RID, transport-cc...).
    Elements after the match are not validated.
    """
    pos = header.ext_start
    end = header.ext_end
    profile = header.ext_profile
    if pos == 0:
        return None
    if profile == _PROFILE_ONE_BYTE:
        while pos < end:
            b = data[pos]
            cur = b >> 4
            if cur == 0:
                pos += 1  # RFC 8285 §4.1: padding byte
                continue
            if cur == 15:
                return None  # RFC 8285 §4.2: reserved ID terminates parsing
            start = pos + 1
            stop = start + (b & 0x0F) + 1
            if stop > end:
                raise RtpError(f"RTP one-byte extension element id {cur} overruns the block")
            if cur == ext_id:
                return data[start:stop]
            pos = stop
    elif profile & _PROFILE_TWO_BYTE_MASK == _PROFILE_TWO_BYTE:
        while pos < end:
            cur = data[pos]
            if cur == 0:
                pos += 1  # RFC 8285 §4.1: padding byte
                continue
            if pos + 2 > end:
                raise RtpError(f"RTP two-byte extension element id {cur} has no length byte")
            start = pos + 2
            stop = start + data[pos + 1]
            if stop > end:
                raise RtpError(f"RTP two-byte extension element id {cur} overruns the block")
            if cur == ext_id:
                return data[start:stop]
            pos = stop
    return None


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """Encode ``elements`` as a complete RTP header extension block.

    Returns the 4-byte extension header, the elements and zero padding to a
    32-bit boundary (RFC 3550 §5.3.1 counts the length in 32-bit words), or
    ``b""`` for no elements. The one-byte form (RFC 8285 §4.2) is used when
    every id is 1..14 and every value 1..16 bytes; otherwise the two-byte form
    (RFC 8285 §4.3: ids 1..255, values 0..255 bytes).
    """
    if not elements:
        return b""
    one_byte = all(1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in elements)
    parts: list[bytes] = []
    if one_byte:
        profile = _PROFILE_ONE_BYTE
        for ext_id, value in elements:
            # RFC 8285 §4.2: 4-bit ID, 4-bit (length - 1).
            parts.append(bytes(((ext_id << 4) | (len(value) - 1),)))
            parts.append(value)
    else:
        profile = _PROFILE_TWO_BYTE
        for ext_id, value in elements:
            if not 1 <= ext_id <= 255:
                raise RtpError(f"RTP extension id {ext_id} outside 1..255")
            if len(value) > 255:
                raise RtpError(f"RTP extension id {ext_id} value of {len(value)} bytes exceeds 255")
            parts.append(bytes((ext_id, len(value))))
            parts.append(value)
    body = b"".join(parts)
    pad = -len(body) % 4
    if pad:
        # RFC 8285 §4.1: trailing zero bytes are padding and ignored by parsers.
        body += bytes(pad)
    return _EXT_HDR.pack(profile, len(body) // 4) + body


def build_packet(
    marker: bool,
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    ext_block: bytes,
    payload: bytes | memoryview,
    padding: int = 0,
) -> bytes:
    """Serialize a version-2 RTP packet without CSRCs (RFC 3550 §5.1).

    ``ext_block`` is a complete extension block (see
    :func:`build_extension_block`); the X bit is set iff it is non-empty.
    With ``padding`` > 0, that many padding bytes are appended, the last one
    holding the count, and the P bit is set.
    """
    if not 0 <= payload_type <= 127:
        raise RtpError(f"RTP payload type {payload_type} outside 0..127")
    if not 0 <= padding <= 255:
        raise RtpError(f"RTP padding {padding} outside 0..255")
    if len(ext_block) % 4:
        raise RtpError(f"RTP extension block length {len(ext_block)} is not a multiple of 4")
    b0 = 0x80
    if ext_block:
        b0 |= 0x10
    if padding:
        b0 |= 0x20
    try:
        fixed = _FIXED.pack(b0, (0x80 if marker else 0) | payload_type, seq, timestamp, ssrc)
    except struct.error as exc:
        raise RtpError(f"RTP seq, timestamp or SSRC out of range: {exc}") from None
    if padding:
        # RFC 3550 §5.1: last padding octet counts all padding octets, itself included.
        return b"".join((fixed, ext_block, payload, bytes(padding - 1), bytes((padding,))))
    return b"".join((fixed, ext_block, payload))


def abs_send_time(now_s: float) -> bytes:
    """Encode ``now_s`` as the 3-byte abs-send-time value.

    webrtc.org abs-send-time: 24-bit 6.18 fixed-point seconds, so it wraps
    every 64 s; rounded to the nearest 1/2^18 s.
    """
    value = math.floor(now_s * _ABS_SEND_TIME_SCALE + 0.5) & _ABS_SEND_TIME_MASK
    return value.to_bytes(3, "big")


def parse_abs_send_time(value: bytes) -> float:
    """Decode a 3-byte abs-send-time value into seconds in [0, 64)."""
    if len(value) != 3:
        raise RtpError(f"abs-send-time value must be 3 bytes, got {len(value)}")
    return int.from_bytes(value, "big") / _ABS_SEND_TIME_SCALE
