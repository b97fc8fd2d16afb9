"""PublishedTrack: one published track and the RTP streams (layers) that carry it.

A track without simulcast has one layer. A simulcast track (RFC 8853) has up to
three, one Receiver per RID, ordered low to high: by the qualities the client
announced, else by the offer's order until keyframes show the real picture
sizes. Subscribers' DownTracks attach to the layer they forward (and, during a
switch, to the layer they are switching to); the track measures what each layer
is doing so they can choose.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import TYPE_CHECKING

from sfu.core.layers import LayerRates

if TYPE_CHECKING:
    from sfu.downtrack import DownTrack
    from sfu.receiver import Receiver
    from sfu.sdp import Codec

#: A layer that sent nothing for this long is not arriving: subscribers on it
#: fall to another layer at once.
LAYER_TIMEOUT_MS = 500
#: Bitrates are updated this often, each over the last RATE_SPAN_MS.
RATE_WINDOW_MS = 250
RATE_SPAN_MS = 1000

QUALITIES = ("low", "medium", "high")
_QUALITY_RANK = {q: i for i, q in enumerate(QUALITIES)}


def default_qualities(count: int) -> tuple[str, ...]:
    """Quality names for `count` layers ordered low to high, when the client did
    not say: one layer is "high", two are "low" and "high"."""
    return {1: ("high",), 2: ("low", "high")}.get(count, QUALITIES[:count])


class PublishedTrack:
    def __init__(
        self,
        track_id: str,
        kind: str,
        codec: Codec,
        cname: str,
        layers: list[Receiver],
    ) -> None:
        if not layers:
            raise ValueError("a track needs at least one layer")
        self.track_id = track_id
        self.kind = kind
        self.is_video = kind == "video"
        self.codec = codec
        self.cname = cname
        #: Ordered low to high.
        self.layers = list(layers)
        self.simulcast = len(layers) > 1
        self.qualities = default_qualities(len(layers))
        #: The client named the order (publish `layers`): never re-sort by size.
        self._order_fixed = False
        self._announced_sizes: dict[str, tuple[int, int]] = {}
        self.downtracks: list[DownTrack] = []
        self._history: list[deque[tuple[int, tuple[int, ...]]]] = [deque() for _ in layers]
        self._rates: list[LayerRates] = [LayerRates(False, 0) for _ in layers]
        self._last_rate_ms = 0
        self.closed = False

    # --- layers --------------------------------------------------------------

    def set_qualities(
        self, by_rid: dict[str, str], sizes: dict[str, tuple[int, int]] | None = None
    ) -> None:
        """Order the layers by the qualities the client announced for their RIDs;
        `sizes` are the announced picture sizes, used until keyframes show them."""
        if sizes:
            self._announced_sizes.update(sizes)
        if not self.simulcast or not by_rid:
            return
        known = [layer for layer in self.layers if layer.rid in by_rid]
        if len(known) != len(self.layers):
            return
        known.sort(key=lambda layer: _QUALITY_RANK[by_rid[layer.rid or ""]])
        self._reorder(known)
        self.qualities = tuple(by_rid[layer.rid or ""] for layer in self.layers)
        self._order_fixed = True

    def _reorder(self, ordered: list[Receiver]) -> None:
        old = {id(layer): i for i, layer in enumerate(self.layers)}
        self._history = [self._history[old[id(layer)]] for layer in ordered]
        self._rates = [self._rates[old[id(layer)]] for layer in ordered]
        self.layers = ordered

    def quality_of(self, layer: Receiver) -> str:
        return self.qualities[self.layers.index(layer)]

    def max_index_for_quality(self, quality: str) -> int:
        """The highest layer whose quality is at most `quality` (0 if none is)."""
        rank = _QUALITY_RANK.get(quality, len(QUALITIES) - 1)
        best = 0
        for i, name in enumerate(self.qualities):
            if _QUALITY_RANK[name] <= rank:
                best = i
        return best

    def sizes(self) -> list[tuple[int, int]]:
        """Picture size per layer: from its last keyframe, else as announced."""
        return [
            (layer.width, layer.height)
            if layer.width
            else self._announced_sizes.get(layer.rid or "", (0, 0))
            for layer in self.layers
        ]

    # --- subscribers ---------------------------------------------------------

    def add_downtrack(self, downtrack: DownTrack) -> None:
        if downtrack not in self.downtracks:
            self.downtracks = [*self.downtracks, downtrack]

    def remove_downtrack(self, downtrack: DownTrack) -> None:
        self.downtracks = [d for d in self.downtracks if d is not downtrack]

    # --- measurement ---------------------------------------------------------

    def rates(self) -> list[LayerRates]:
        """What each layer is doing, as of the last tick (low to high)."""
        return self._rates

    def tick(self, now_ms: int) -> None:
        """Update each layer's arrival state (every call, so a layer that stops is
        noticed within a tick) and, every RATE_WINDOW_MS, its bitrates."""
        was_arriving = [rate.arriving for rate in self._rates]
        if now_ms - self._last_rate_ms >= RATE_WINDOW_MS:
            self._last_rate_ms = now_ms
            self._measure(now_ms)
        rates = self._rates
        changed = [rate.arriving for rate in rates] != was_arriving
        for i, layer in enumerate(self.layers):
            arriving = layer.ssrc is not None and now_ms - layer.last_packet_ms < LAYER_TIMEOUT_MS
            if arriving != rates[i].arriving:
                old = rates[i]
                rates = list(rates)
                rates[i] = LayerRates(
                    arriving,
                    old.bitrate_bps if arriving else 0,
                    old.temporal_bitrates_bps if arriving else (),
                )
                changed = True
        self._rates = rates
        if changed and self.simulcast:
            # A layer stopped or started: subscribers re-choose now, not at
            # their next periodic choice (a stopped layer freezes their video).
            for downtrack in self.downtracks:
                downtrack.update_layer(now_ms, downtrack.budget_bps)

    def _measure(self, now_ms: int) -> None:
        # Bitrates over the last RATE_SPAN_MS (a sliding window of snapshots): long
        # enough to average a keyframe in, short enough to follow a change.
        rates = []
        for i, layer in enumerate(self.layers):
            history = self._history[i]
            history.append((now_ms, tuple(layer.tid_bytes)))
            while len(history) > 2 and now_ms - history[1][0] >= RATE_SPAN_MS:
                history.popleft()
            then_ms, then_bytes = history[0]
            span_ms = now_ms - then_ms
            arriving = layer.ssrc is not None and now_ms - layer.last_packet_ms < LAYER_TIMEOUT_MS
            if span_ms <= 0 or not arriving:
                rates.append(LayerRates(arriving, 0))
                continue
            per_tid = [
                (layer.tid_bytes[tid] - then_bytes[tid]) * 8000 // span_ms for tid in range(4)
            ]
            temporal: tuple[int, ...] = ()
            if layer.max_tid > 0:
                temporal = tuple(itertools.accumulate(per_tid[: layer.max_tid + 1]))
            rates.append(LayerRates(arriving, sum(per_tid), temporal))
        self._rates = rates
        if self.simulcast and not self._order_fixed:
            self._sort_by_size()

    def _sort_by_size(self) -> None:
        # Without announced qualities, trust the pictures: once every layer has
        # shown a keyframe, order by picture area.
        if any(layer.width == 0 for layer in self.layers):
            return
        ordered = sorted(self.layers, key=lambda layer: layer.width * layer.height)
        self._order_fixed = True
        if ordered != self.layers:
            self._reorder(ordered)
            for downtrack in self.downtracks:
                downtrack.on_layers_reordered()

    # --- lifetime ------------------------------------------------------------

    def block(self, blocked: bool, now_ms: int) -> None:
        """Stop (or resume) forwarding this track whatever its publisher sends
        (an admin mute). Resuming asks for a keyframe so subscribers can
        decode again at once."""
        for layer in self.layers:
            layer.blocked = blocked
            if not blocked:
                layer.request_keyframe(now_ms)

    def close(self) -> None:
        self.closed = True
        for downtrack in list(self.downtracks):
            downtrack.detach()
        self.downtracks = []
        for layer in self.layers:
            layer.close()

    def stats(self) -> list[dict[str, object]]:
        return [
            {
                "rid": layer.rid,
                "ssrc": layer.ssrc,
                "packets": layer.packets,
                "bitrate_bps": rate.bitrate_bps,
                "arriving": rate.arriving,
                "width": layer.width,
                "height": layer.height,
            }
            for layer, rate in zip(self.layers, self._rates, strict=True)
        ]
