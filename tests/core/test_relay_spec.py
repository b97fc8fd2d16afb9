"""Track records between nodes: RemoteTrackSpec.to_dict/from_dict (what a node
needs to receive a track over the relay) and the cluster's track records
(signaling.cluster.records), with every kind of bad record refused."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from sfu.core.rtp import EXT_AUDIO_LEVEL, EXT_VIDEO_ORIENTATION
from sfu.relay import RemoteTrackSpec, SpecError
from sfu.sdp import Codec
from signaling import messages as m
from signaling.cluster.records import RecordError, track_from_record, track_record

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

AUDIO = RemoteTrackSpec(
    track_id="TR_audio",
    kind="audio",
    codec=Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1"),
    feedback=frozenset({"transport-cc"}),
    cname="cname-alice",
    extension_ids={EXT_AUDIO_LEVEL: 1},
)

VIDEO = RemoteTrackSpec(
    track_id="TR_video",
    kind="video",
    codec=Codec(96, "VP8", 90000),
    feedback=frozenset({"nack", "nack pli", "ccm fir", "goog-remb"}),
    cname="cname-alice",
    rids=("f", "h", "q"),
    qualities={"q": "low", "h": "medium", "f": "high"},
    sizes={"q": (320, 180), "h": (640, 360), "f": (1280, 720)},
    extension_ids={EXT_VIDEO_ORIENTATION: 13, MID_URI: 4},
)

SPECS = {"audio_opus_stereo": AUDIO, "video_vp8_simulcast": VIDEO}


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_spec_round_trip(spec: RemoteTrackSpec) -> None:
    assert RemoteTrackSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("spec", SPECS.values(), ids=SPECS.keys())
def test_spec_round_trip_through_json(spec: RemoteTrackSpec) -> None:
    # Records are stored as JSON in Redis: tuples become lists, sets sorted lists.
    assert RemoteTrackSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_spec_to_dict_shape() -> None:
    assert VIDEO.to_dict() == {
        "track_id": "TR_video",
        "kind": "video",
        "codec": {
            "payload_type": 96,
            "name": "VP8",
            "clock_rate": 90000,
            "channels": None,
            "fmtp": "",
        },
        "feedback": ["ccm fir", "goog-remb", "nack", "nack pli"],
        "cname": "cname-alice",
        "rids": ["f", "h", "q"],
        "qualities": {"q": "low", "h": "medium", "f": "high"},
        "sizes": {"q": [320, 180], "h": [640, 360], "f": [1280, 720]},
        "extension_ids": {EXT_VIDEO_ORIENTATION: 13, MID_URI: 4},
    }
    audio = AUDIO.to_dict()
    assert audio["codec"]["channels"] == 2
    assert audio["rids"] == []


def test_spec_minimal_record_gets_defaults() -> None:
    spec = RemoteTrackSpec.from_dict(
        {
            "track_id": "TR_x",
            "kind": "video",
            "codec": {"payload_type": 96, "name": "VP8", "clock_rate": 90000},
        }
    )
    assert spec == RemoteTrackSpec("TR_x", "video", Codec(96, "VP8", 90000), frozenset(), "")


def _video() -> dict[str, Any]:
    return copy.deepcopy(VIDEO.to_dict())


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = record
        for name in parents:
            target = target[name]
        target[last] = value

    return apply


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = record
        for name in parents:
            target = target[name]
        del target[last]

    return apply


# Rows: a change to a good video record that makes it bad.
BAD_RECORDS = {
    "missing_codec": _delete("codec"),
    "missing_track_id": _delete("track_id"),
    "missing_kind": _delete("kind"),
    "missing_codec_name": _delete("codec.name"),
    "missing_payload_type": _delete("codec.payload_type"),
    "codec_not_an_object": _set("codec", "VP8"),
    "kind_data": _set("kind", "data"),
    "kind_upper_case": _set("kind", "VIDEO"),
    "payload_type_200": _set("codec.payload_type", 200),
    "payload_type_128": _set("codec.payload_type", 128),
    "payload_type_negative": _set("codec.payload_type", -1),
    "payload_type_not_a_number": _set("codec.payload_type", "ninety-six"),
    "clock_rate_0": _set("codec.clock_rate", 0),
    "clock_rate_negative": _set("codec.clock_rate", -90000),
    "clock_rate_too_high": _set("codec.clock_rate", 1_000_001),
    "channels_not_a_number": _set("codec.channels", "stereo"),
    "codec_name_not_a_string": _set("codec.name", 8),
    "codec_name_too_long": _set("codec.name", "V" * 33),
    "fmtp_null": _set("codec.fmtp", None),
    "four_rids": _set("rids", ["a", "b", "c", "d"]),
    "unsorted_rids": _set("rids", ["h", "f", "q"]),
    "duplicate_rids": _set("rids", ["f", "f"]),
    "rid_not_a_string": _set("rids", [1, 2]),
    "rid_too_long": _set("rids", ["r" * 17]),
    "rids_null": _set("rids", None),
    "track_id_not_a_string": _set("track_id", 42),
    "track_id_null": _set("track_id", None),
    "track_id_65_chars": _set("track_id", "T" * 65),
    "cname_not_a_string": _set("cname", ["c"]),
    "cname_too_long": _set("cname", "c" * 256),
    "feedback_not_strings": _set("feedback", [1]),
    "quality_rid_not_a_string": _set("qualities", {3: "low"}),
    "qualities_not_an_object": _set("qualities", 7),
    "size_not_a_pair": _set("sizes", {"q": [320]}),
    "size_not_numbers": _set("sizes", {"q": ["wide", "tall"]}),
    "extension_id_not_a_number": _set("extension_ids", {MID_URI: "four"}),
    "extension_id_null": _set("extension_ids", {MID_URI: None}),
    "extension_uri_too_long": _set("extension_ids", {"u" * 257: 4}),
    # Found while writing these tests (see the report): a string where a list
    # belongs is iterated character by character and accepted.
    "rids_a_string": pytest.param(
        _set("rids", "fhq"),
    ),
    "feedback_a_string": pytest.param(
        _set("feedback", "nack"),
    ),
}


@pytest.mark.parametrize("change", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_from_dict_refuses(change: Callable[[dict[str, Any]], None]) -> None:
    record = _video()
    change(record)
    with pytest.raises(SpecError):
        RemoteTrackSpec.from_dict(record)


@pytest.mark.parametrize(
    "record",
    [None, 7, "TR_video", [], ["codec"], {}],
    ids=["none", "int", "str", "empty_list", "list_of_keys", "empty_object"],
)
def test_from_dict_refuses_non_records(record: Any) -> None:
    with pytest.raises(SpecError):
        RemoteTrackSpec.from_dict(record)


# Rows: a change to a good video record that is accepted, and what it gives.
ACCEPTED = {
    "track_id_64_chars": (_set("track_id", "T" * 64), "track_id", "T" * 64),
    "payload_type_0": (_set("codec.payload_type", 0), "codec", Codec(0, "VP8", 90000)),
    "payload_type_127": (_set("codec.payload_type", 127), "codec", Codec(127, "VP8", 90000)),
    "clock_rate_1_000_000": (
        _set("codec.clock_rate", 1_000_000),
        "codec",
        Codec(96, "VP8", 1_000_000),
    ),
    "no_rids": (_set("rids", []), "rids", ()),
    "one_rid": (_set("rids", ["q"]), "rids", ("q",)),
    "rid_16_chars": (_set("rids", ["r" * 16]), "rids", ("r" * 16,)),
    "unknown_quality_dropped": (
        _set("qualities", {"q": "ultra", "h": "low", "f": 3}),
        "qualities",
        {"h": "low"},
    ),
    "extension_id_0_dropped": (_set("extension_ids", {MID_URI: 0}), "extension_ids", {}),
    "extension_id_1_kept": (_set("extension_ids", {MID_URI: 1}), "extension_ids", {MID_URI: 1}),
    "extension_id_14_kept": (
        _set("extension_ids", {MID_URI: 14}),
        "extension_ids",
        {MID_URI: 14},
    ),
    "extension_id_255_kept": (
        _set("extension_ids", {MID_URI: 255}),
        "extension_ids",
        {MID_URI: 255},
    ),
    "extension_id_256_dropped": (_set("extension_ids", {MID_URI: 256}), "extension_ids", {}),
    "extension_id_negative_dropped": (_set("extension_ids", {MID_URI: -1}), "extension_ids", {}),
    "extension_ids_mixed": (
        _set("extension_ids", {MID_URI: 0, EXT_VIDEO_ORIENTATION: 13}),
        "extension_ids",
        {EXT_VIDEO_ORIENTATION: 13},
    ),
    "missing_sizes": (_delete("sizes"), "sizes", {}),
    "missing_feedback": (_delete("feedback"), "feedback", frozenset()),
    "missing_cname": (_delete("cname"), "cname", ""),
}


@pytest.mark.parametrize(
    ("change", "attribute", "expected"), ACCEPTED.values(), ids=ACCEPTED.keys()
)
def test_from_dict_accepts(
    change: Callable[[dict[str, Any]], None], attribute: str, expected: Any
) -> None:
    record = _video()
    change(record)
    assert getattr(RemoteTrackSpec.from_dict(record), attribute) == expected


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


# --- cluster track records ---------------------------------------------------------

VIDEO_INFO = m.TrackInfo(
    id="TR_video",
    kind="video",
    source="camera",
    name="Alice's camera",
    muted=True,
    codec="vp8",
    simulcast=True,
    layers=(
        m.LayerInfo("q", "low", 320, 180),
        m.LayerInfo("h", "medium", 640, 360),
        m.LayerInfo("f", "high", 1280, 720),
    ),
)
AUDIO_INFO = m.TrackInfo(id="TR_audio", kind="audio", source="microphone", codec="opus")

RECORDS = {"video": (VIDEO_INFO, VIDEO), "audio": (AUDIO_INFO, AUDIO)}


@pytest.mark.parametrize(("info", "spec"), RECORDS.values(), ids=RECORDS.keys())
def test_track_record_round_trip(info: m.TrackInfo, spec: RemoteTrackSpec) -> None:
    record = json.loads(json.dumps(track_record(info, spec)))
    assert record["id"] == info.id
    assert record["media"] == json.loads(json.dumps(spec.to_dict()))
    assert track_from_record(record) == (info, spec)


def _record() -> dict[str, Any]:
    return json.loads(json.dumps(track_record(VIDEO_INFO, VIDEO)))


# Rows: a change to a good track record that makes it bad.
BAD_TRACK_RECORDS = {
    "id_differs_from_media_track_id": _set("id", "TR_other"),
    "media_track_id_differs_from_id": _set("media.track_id", "TR_other"),
    "missing_id": _delete("id"),
    "missing_media": _delete("media"),
    "bad_media": _set("media.kind", "data"),
    "media_not_an_object": _set("media", "vp8"),
    "layer_missing_rid": _set("layers", [{"quality": "low", "width": 1, "height": 1}]),
    "layer_width_not_a_number": _set(
        "layers", [{"rid": "q", "quality": "low", "width": "wide", "height": 1}]
    ),
}


@pytest.mark.parametrize("change", BAD_TRACK_RECORDS.values(), ids=BAD_TRACK_RECORDS.keys())
def test_track_from_record_refuses(change: Callable[[dict[str, Any]], None]) -> None:
    record = _record()
    change(record)
    with pytest.raises(RecordError):
        track_from_record(record)


@pytest.mark.parametrize("record", [None, [], "TR_video", 3], ids=["none", "list", "str", "int"])
def test_track_from_record_refuses_non_objects(record: Any) -> None:
    with pytest.raises(RecordError, match="object"):
        track_from_record(record)


def test_track_from_record_derives_codec_and_simulcast_from_media() -> None:
    record = _record()
    record["codec"] = "h264"  # the public fields follow the media description
    record["simulcast"] = False
    info, spec = track_from_record(record)
    assert info.codec == "vp8" and info.simulcast is True
    assert spec == VIDEO
