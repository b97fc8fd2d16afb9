"""RTP demultiplexing inside one BUNDLE transport (RFC 8843 §9.2).

A packet is routed by its SSRC when the SSRC is known; an unknown SSRC is learned
from the MID header extension (and, for simulcast, the RID / repaired RID), and
only when no MID is present, from a payload type that a single m-section uses.
Learning happens on the first packets of a stream; afterwards routing is one dict
lookup (`routes.get(ssrc)`), which callers inline in the per-packet path.

Pure: targets are opaque objects owned by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: SSRCs learned per transport; a peer cycling through random SSRCs must not grow
#: the table without bound (a real publisher uses two per layer: media and RTX).
MAX_SSRCS = 64


@dataclass(slots=True)
class Route(Generic[T]):
    """Where packets of one SSRC go."""

    target: T
    mid: str
    rtx: bool
    rid: str | None = None


@dataclass(slots=True)
class _MediaEntry(Generic[T]):
    target: T
    payload_type: int
    rtx_payload_type: int | None
    #: Simulcast: one target per RID (RFC 8852); empty for a single stream.
    rid_targets: dict[str, T] = field(default_factory=dict)


class Demuxer(Generic[T]):
    def __init__(self, max_ssrcs: int = MAX_SSRCS) -> None:
        self.routes: dict[int, Route[T]] = {}
        self._media: dict[str, _MediaEntry[T]] = {}
        self._max_ssrcs = max_ssrcs
        self.refused = 0

    def add_media(
        self,
        mid: str,
        target: T,
        payload_type: int,
        rtx_payload_type: int | None,
        *,
        ssrc: int | None = None,
        rtx_ssrc: int | None = None,
        rid_targets: dict[str, T] | None = None,
    ) -> None:
        """Register an m-section; SSRCs signalled in the SDP are routed at once.

        With `rid_targets` (simulcast), a learned SSRC goes to the target of the
        RID its packets carry (the repaired RID for RTX), and a packet of an
        unknown SSRC without one is not routable.
        """
        self._media[mid] = _MediaEntry(target, payload_type, rtx_payload_type, rid_targets or {})
        if ssrc is not None:
            self.routes[ssrc] = Route(target, mid, False)
        if rtx_ssrc is not None:
            self.routes[rtx_ssrc] = Route(target, mid, True)

    def remove_media(self, mid: str) -> None:
        self._media.pop(mid, None)
        for ssrc in [s for s, r in self.routes.items() if r.mid == mid]:
            del self.routes[ssrc]

    def learn(
        self,
        ssrc: int,
        payload_type: int,
        mid: str | None,
        rid: str | None = None,
        rrid: str | None = None,
    ) -> Route[T] | None:
        """Route a packet whose SSRC is unknown; remembers the answer."""
        entry: _MediaEntry[T] | None = None
        if mid is not None:
            entry = self._media.get(mid)
            found_mid = mid
        else:
            # No MID: fall back to a payload type that exactly one m-section uses.
            matches = [
                (m, e)
                for m, e in self._media.items()
                if payload_type in (e.payload_type, e.rtx_payload_type)
            ]
            if len(matches) == 1:
                found_mid, entry = matches[0]
        if entry is None:
            return None
        if payload_type == entry.payload_type:
            rtx = False
        elif payload_type == entry.rtx_payload_type:
            rtx = True
        else:
            return None
        layer_rid = rrid if rtx else rid
        target = entry.target
        if entry.rid_targets:
            if layer_rid is None or layer_rid not in entry.rid_targets:
                return None
            target = entry.rid_targets[layer_rid]
        else:
            layer_rid = None
        if len(self.routes) >= self._max_ssrcs:
            self.refused += 1
            return None
        route = Route(target, found_mid, rtx, layer_rid)
        self.routes[ssrc] = route
        return route
