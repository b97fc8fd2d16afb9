"""Tracks as they travel between nodes: the track's public description (what
clients see in `track_published`) plus what a node needs to receive it over
the relay (:class:`sfu.relay.RemoteTrackSpec`).

Records come from Redis, which other nodes write: they are validated like
any input, and a bad one is skipped with a log line rather than trusted.
"""

from __future__ import annotations

from typing import Any

from sfu.relay import RemoteTrackSpec, SpecError
from signaling import messages as m

MAX_TRACKS_PER_RECORD = 32


class RecordError(ValueError):
    pass


def track_record(info: m.TrackInfo, spec: RemoteTrackSpec) -> dict[str, Any]:
    return {**info.to_json(), "media": spec.to_dict()}


def _layer(layer: Any) -> m.LayerInfo:
    width, height = layer["width"], layer["height"]
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 16384:
            raise RecordError("layer width and height must be integers, 0 to 16384")
    return m.LayerInfo(str(layer["rid"])[:16], str(layer["quality"])[:16], width, height)


def track_from_record(data: Any) -> tuple[m.TrackInfo, RemoteTrackSpec]:
    """Parse one track of a participant record; raises RecordError."""
    try:
        if not isinstance(data, dict):
            raise RecordError("a track record must be an object")
        spec = RemoteTrackSpec.from_dict(data["media"])
        track_id = data["id"]
        if track_id != spec.track_id:
            raise RecordError("track id and media track id differ")
        layers = tuple(_layer(layer) for layer in data.get("layers", ())[:3])
        info = m.TrackInfo(
            id=spec.track_id,
            kind=spec.kind,
            source=str(data.get("source", ""))[:32],
            name=str(data.get("name", ""))[: m.MAX_ID_CHARS],
            muted=bool(data.get("muted", False)),
            codec=spec.codec.name.lower(),
            simulcast=bool(spec.rids),
            layers=layers,
        )
        return info, spec
    except RecordError:
        raise
    except SpecError as exc:
        raise RecordError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad track record: {exc!r}") from None
