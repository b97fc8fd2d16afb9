"""What the subscribers' copies of one forwarded RTP packet have in common.

Each subscriber's copy of a packet has its own fixed header (SSRC, payload
type, sequence number, timestamp: RFC 3550 §5.1) and, for VP8 after a layer
switch or a temporal-layer drop, its own PictureID / TL0PICIDX. What follows
the fixed header, the header extension block (RFC 8285) and the payload,
depends only on the packet and on the subscriber's :class:`ExtensionLayout`:
its MID and the extension ids it negotiated. Subscribers of a track mostly
share one layout (our offer fixes the ids; the MID is the number of the
m-section slot, the same for subscribers that joined alike), so
:class:`SharedParts` builds that part once per packet and layout, and a copy
costs a 12-byte header and one concatenation.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import struct

from sfu.core.rtp import build_extension_block

__all__ = ["ExtensionLayout", "SharedParts", "extension_layout"]

# RFC 8285 §4.2: one-byte form, announced by 0xBEDE; 4-bit id 1..14, 4-bit
# (length - 1), so values of 1..16 octets.
_PROFILE_ONE_BYTE = 0xBEDE
_EXT_HDR = struct.Struct("!HH")
_MAX_ONE_BYTE_ID = 14
_MAX_ONE_BYTE_LEN = 16
# RFC 3550 §5.3.1 counts the block in 32-bit words: zero octets fill the last
# one (RFC 8285 §4.1 makes them padding that parsers skip).
_PADDING = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")
# abs-send-time values are 3 octets (24-bit 6.18 fixed point).
_SEND_TIME_BYTES = 3


def _one_byte_element_header(ext_id: int, length: int) -> bytes | None:
    """The one-byte form's element header, or None when the id or length needs
    the two-byte form."""
    if 1 <= ext_id <= _MAX_ONE_BYTE_ID and 1 <= length <= _MAX_ONE_BYTE_LEN:
        return bytes(((ext_id << 4) | (length - 1),))
    return None


class ExtensionLayout:
    """The header extensions one subscriber negotiated, in the order written:
    MID (RFC 8843 §15), abs-send-time, audio level (RFC 6464), video
    orientation; an id of 0 means not negotiated.

    Get one from :func:`extension_layout`, which interns them: equal layouts
    are one object, so per-packet caches key on identity (a cheap hash).
    """

    __slots__ = (
        "_mid_element",
        "_prefix",
        "always",
        "level_id",
        "mid",
        "mid_id",
        "orientation_id",
        "send_time_id",
    )

    def __init__(
        self, mid_id: int, mid: bytes, send_time_id: int, level_id: int, orientation_id: int
    ) -> None:
        self.mid_id = mid_id
        self.mid = mid
        self.send_time_id = send_time_id
        self.level_id = level_id
        self.orientation_id = orientation_id
        self._mid_element: tuple[int, bytes] | None = (mid_id, mid) if mid_id else None
        #: True when every block has an element (MID or send time), so the X bit
        #: (RFC 3550 §5.1) is set on every packet.
        self.always = bool(mid_id or send_time_id)
        # The one-byte encoding of the MID element and the send-time element
        # header, which every block starts with; None when they need the
        # two-byte form (RFC 8285 §4.3).
        prefix: bytes | None = b""
        if mid_id:
            mid_header = _one_byte_element_header(mid_id, len(mid))
            prefix = None if mid_header is None else mid_header + mid
        if send_time_id and prefix is not None:
            send_time_header = _one_byte_element_header(send_time_id, _SEND_TIME_BYTES)
            prefix = None if send_time_header is None else prefix + send_time_header
        self._prefix = prefix

    def __repr__(self) -> str:
        return (
            f"ExtensionLayout(mid_id={self.mid_id}, mid={self.mid!r}, "
            f"send_time_id={self.send_time_id}, level_id={self.level_id}, "
            f"orientation_id={self.orientation_id})"
        )

    def block(self, send_time: bytes, level: bytes | None, orientation: bytes | None) -> bytes:
        """The complete extension block for one packet (what
        :func:`sfu.core.rtp.build_extension_block` makes of the elements),
        ``b""`` when there is no element."""
        body = self._prefix
        if body is not None and len(send_time) == _SEND_TIME_BYTES:
            if self.send_time_id:
                body += send_time
            if level is not None and self.level_id:
                header = _one_byte_element_header(self.level_id, len(level))
                body = None if header is None else body + header + level
            if orientation is not None and self.orientation_id and body is not None:
                header = _one_byte_element_header(self.orientation_id, len(orientation))
                body = None if header is None else body + header + orientation
            if body is not None:
                if not body:
                    return b""
                pad = -len(body) % 4
                return (
                    _EXT_HDR.pack(_PROFILE_ONE_BYTE, (len(body) + pad) >> 2) + body + _PADDING[pad]
                )
        return build_extension_block(self._elements(send_time, level, orientation))

    def _elements(
        self, send_time: bytes, level: bytes | None, orientation: bytes | None
    ) -> list[tuple[int, bytes]]:
        elements: list[tuple[int, bytes]] = []
        if self._mid_element is not None:
            elements.append(self._mid_element)
        if self.send_time_id:
            elements.append((self.send_time_id, send_time))
        if level is not None and self.level_id:
            elements.append((self.level_id, level))
        if orientation is not None and self.orientation_id:
            elements.append((self.orientation_id, orientation))
        return elements


@functools.lru_cache(maxsize=1024)
def extension_layout(
    mid_id: int, mid: bytes, send_time_id: int, level_id: int, orientation_id: int
) -> ExtensionLayout:
    """The interned layout for these ids (0: not negotiated) and MID value.

    Bounded: past 1024 distinct layouts an old one may be made anew; the only
    cost is that two equal layouts then miss each other's cached parts.
    """
    return ExtensionLayout(mid_id, mid, send_time_id, level_id, orientation_id)


class SharedParts:
    """One incoming packet's extension blocks and tails (extension block +
    payload + padding), each built the first time a subscriber with that
    layout asks, for the packet's lifetime (one fan-out)."""

    __slots__ = ("_blocks", "_tails", "level", "orientation", "payload", "send_time")

    def __init__(
        self,
        payload: bytes | memoryview,
        send_time: bytes,
        level: bytes | None,
        orientation: bytes | None,
    ) -> None:
        #: Everything after the incoming packet's header: payload and padding,
        #: forwarded unchanged (the server never decodes media).
        self.payload = payload
        self.send_time = send_time
        self.level = level
        self.orientation = orientation
        self._blocks: dict[ExtensionLayout, bytes] = {}
        self._tails: dict[ExtensionLayout, bytes] = {}

    def block(self, layout: ExtensionLayout) -> bytes:
        """The extension block for subscribers with ``layout``."""
        block = self._blocks.get(layout)
        if block is None:
            block = self._blocks[layout] = layout.block(
                self.send_time, self.level, self.orientation
            )
        return block

    def tail(self, layout: ExtensionLayout) -> bytes:
        """Extension block + payload + padding: all a copy needs after its
        fixed header when its payload goes out unchanged."""
        tail = self._tails.get(layout)
        if tail is None:
            tail = self._tails[layout] = self.block(layout) + self.payload
        return tail
