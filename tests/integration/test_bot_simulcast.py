"""The Python bot as a simulcast publisher and as a subscriber with controls.

These tests check the bot itself (its SDP, its packets, its records) and do not
rely on the server supporting simulcast: where a server answer with
``a=simulcast:recv`` is needed, the bot's ``publish_answer_filter`` adds it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from itertools import pairwise

import av
import numpy as np
import pytest

from sfu.core import vp8
from sfu.core.rtcp import Remb, pack_nack, pack_pli, parse_compound
from sfu.core.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    find_extension,
    parse_header,
)
from sfu.negotiate import LocalTransport
from sfu.sdp import MediaSection, parse, serialize
from sfu_bot import media
from sfu_bot.client import (
    DEFAULT_SIMULCAST_LAYERS,
    Bot,
    SendStream,
    _ext_template,
    packetize_vp8,
)
from sfu_bot.media import encode_simulcast, encode_video, read_counter, vp8_keyframe_size
from sfu_bot.negotiation import (
    BOT_EXT_IDS,
    OutgoingStream,
    SimulcastLayer,
    build_publish_offer,
    simulcast_answer,
)
from tests.integration.conftest import BotFactory

# Small layers keep encoding fast; the default sizes are covered by the call test.
SMALL_LAYERS = [("q", 160, 90, 100_000), ("h", 320, 180, 200_000), ("f", 640, 360, 400_000)]


@pytest.fixture(autouse=True)
def _isolated_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSFU_BOT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(media, "_VIDEO_CACHE", {})


# --- pure: SDP, encoding, packetizing -------------------------------------------


def _video_section(sdp: str) -> MediaSection:
    return next(m for m in parse(sdp).media if m.kind == "video")


def test_simulcast_offer_looks_like_chromium() -> None:
    layers = [
        SimulcastLayer("q", 11, 12, 320, 180, 150_000, "low"),
        SimulcastLayer("h", 21, 22, 640, 360, 400_000, "medium"),
        SimulcastLayer("f", 31, 32, 1280, 720, 1_000_000, "high"),
    ]
    streams = [
        OutgoingStream("0", "audio", "opus", 1, None, "cn", "st", "mic"),
        OutgoingStream("1", "video", "vp8", 11, 12, "cn", "st", "cam", layers=layers),
    ]
    local = LocalTransport("ufrag", "pwd" * 8, [("sha-256", "AB:CD")], [])
    text = serialize(build_publish_offer(streams, local, version=1, session_id=7))
    video_text = text[text.index("m=video") :]
    for line in (
        "a=rid:q send",
        "a=rid:h send",
        "a=rid:f send",
        "a=simulcast:send q;h;f",
        "a=sendonly",
        "a=mid:1",
        f"a=extmap:{BOT_EXT_IDS[EXT_MID]} {EXT_MID}",
        f"a=extmap:{BOT_EXT_IDS[EXT_RID]} {EXT_RID}",
        f"a=extmap:{BOT_EXT_IDS[EXT_RRID]} {EXT_RRID}",
        f"a=extmap:{BOT_EXT_IDS[EXT_ABS_SEND_TIME]} {EXT_ABS_SEND_TIME}",
    ):
        assert line in video_text.splitlines(), line
    assert "a=ssrc" not in video_text  # no a=ssrc nor a=ssrc-group for simulcast
    assert "a=ssrc:1 cname:cn" in text  # the audio section still signals its SSRC
    section = _video_section(text)
    names = {c.name.lower(): c for c in section.codecs}
    assert set(names) == {"vp8", "rtx"}
    assert names["rtx"].fmtp == f"apt={names['vp8'].payload_type}"
    assert [r.id for r in section.rids] == ["q", "h", "f"]
    # The simulcast attribute sits after the rids, as in Chromium's offers.
    assert video_text.index("a=rid:f send") < video_text.index("a=simulcast:send")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (None, None),
        ("recv q;h;f", [("q", False), ("h", False), ("f", False)]),
        ("recv f;q", [("f", False), ("q", False)]),
        ("recv q;~h", [("q", False), ("h", True)]),
        ("recv x,h;f;zz", [("h", False), ("f", False)]),
        ("send q;h", None),  # no recv list: simulcast declined
        ("recv", None),
    ],
)
def test_simulcast_answer_parsing(line: str | None, expected: object) -> None:
    section = MediaSection(kind="video", simulcast=line)
    assert simulcast_answer(section, ["q", "h", "f"]) == expected


def test_simulcast_encoding_cache_works_for_three_sizes(tmp_path) -> None:
    sizes = [(w, h, b) for _rid, w, h, b in SMALL_LAYERS]
    clips = encode_simulcast("vp8", sizes, 30, 12, 6)
    assert [(c.width, c.height) for c in clips] == [(w, h) for w, h, _b in sizes]
    files = sorted(p.name for p in (tmp_path / "cache").glob("video-vp8-*.bin"))
    assert len(files) == 3 and all(f"{w}x{h}" in " ".join(files) for w, h, _b in sizes)
    assert all(
        a is b for a, b in zip(encode_simulcast("vp8", sizes, 30, 12, 6), clips, strict=True)
    )
    media._VIDEO_CACHE.clear()
    from_disk = encode_simulcast("vp8", sizes, 30, 12, 6)
    assert [c.frames for c in from_disk] == [c.frames for c in clips]
    for clip in clips:
        # Keyframes at the same indices on every layer, readable size, same counters.
        assert clip.keyframes == [i % 6 == 0 for i in range(12)]
        assert vp8_keyframe_size(clip.frames[0]) == (clip.width, clip.height)
        assert vp8_keyframe_size(clip.frames[1]) is None  # not a keyframe
        decoder = av.CodecContext.create("vp8", "r")
        counters = [
            read_counter(picture)
            for frame in clip.frames
            for picture in decoder.decode(av.Packet(frame))
        ]
        assert counters == list(range(12))


def test_default_layers() -> None:
    assert [(rid, w, h) for rid, w, h, _b in DEFAULT_SIMULCAST_LAYERS] == [
        ("q", 320, 180),
        ("h", 640, 360),
        ("f", 1280, 720),
    ]


def test_precomputed_extension_block_carries_the_send_time() -> None:
    head, tail = _ext_template([(1, b"1"), (4, b"q")], 2)
    assert tail is not None
    block = head + b"\x12\x34\x56" + tail
    packet = bytes((0x90, 96)) + bytes(10) + block + b"payload"
    header = parse_header(packet)
    assert find_extension(packet, header, 2) == b"\x12\x34\x56"
    assert find_extension(packet, header, 1) == b"1"
    assert find_extension(packet, header, 4) == b"q"
    assert packet[header.payload_start :] == b"payload"


def test_temporal_layers_encoding_and_descriptor() -> None:
    clip = encode_video("vp8", 160, 90, 30, 12, 6, 150_000, temporal_layers=2)
    assert clip.temporal_ids == tuple(i % 2 for i in range(12))
    assert clip.temporal_layers == 2

    def decode(indices: list[int]) -> dict[int, np.ndarray]:
        decoder = av.CodecContext.create("vp8", "r")
        out = {}
        for i in indices:
            for picture in decoder.decode(av.Packet(clip.frames[i])):
                out[i] = picture.to_ndarray()
        return out

    full = decode(list(range(12)))
    base = decode(list(range(0, 12, 2)))
    # Layer 0 never refers to layer 1: decoding it alone gives the same pictures.
    assert all(np.array_equal(full[i], base[i]) for i in base)
    payloads = packetize_vp8(
        clip.frames[3] * 3, 0x1234, tl0picidx=200, tid=1, layer_sync=True, non_reference=True
    )
    for k, payload in enumerate(payloads):
        d = vp8.parse_descriptor(payload)
        assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.tid) == (0x1234, 15, 200, 1)
        assert d.layer_sync and d.non_reference and d.keyidx is None
        assert d.frame_start == (k == 0)
    assert b"".join(p[6:] for p in payloads) == clip.frames[3] * 3


# --- with a node -----------------------------------------------------------------


def _capture(bot: Bot) -> list[bytes]:
    """Record every RTP packet the bot's publisher transport sends from now on."""
    assert bot.pub is not None
    sent: list[bytes] = []
    original = bot.pub.send_rtp

    def send_rtp(packet: bytes) -> None:
        sent.append(packet)
        original(packet)

    bot.pub.send_rtp = send_rtp  # type: ignore[method-assign]
    return sent


def _ext_ids(bot: Bot) -> dict[str, int]:
    assert bot.publish_offer_sdp is not None
    return {e.uri: e.id for e in _video_section(bot.publish_offer_sdp).extmaps}


def _by_ssrc(packets: list[bytes], ssrc: int) -> list[bytes]:
    return [p for p in packets if parse_header(p).ssrc == ssrc]


def _check_layer_packets(bot: Bot, cam: SendStream, packets: list[bytes]) -> None:
    ids = _ext_ids(bot)
    for rid, layer in cam.layers.items():
        mine = _by_ssrc(packets, layer.ssrc)
        if not layer.active:
            assert mine == [] and layer.packets == 0, f"inactive layer {rid} sent"
            continue
        assert mine, f"layer {rid} sent nothing"
        seqs = []
        for packet in mine:
            header = parse_header(packet)
            assert find_extension(packet, header, ids[EXT_MID]) == cam.info.mid.encode()
            assert find_extension(packet, header, ids[EXT_RID]) == rid.encode()
            assert find_extension(packet, header, ids[EXT_ABS_SEND_TIME]) is not None
            assert header.payload_type == cam.info.payload_type
            seqs.append(header.seq)
        assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs)), f"{rid} seq gap"


def _accept_simulcast(rids: str) -> Callable[[str], str]:
    """An answer filter: the server's answer plus a=rid/a=simulcast:recv for ``rids``."""

    def rewrite(sdp: str) -> str:
        if "a=simulcast:" in sdp:
            sdp = re.sub(r"a=simulcast:[^\r\n]*\r\n", "", sdp)
            sdp = re.sub(r"a=rid:[^\r\n]*\r\n", "", sdp)
        head, video = sdp.split("m=video", 1)
        lines = "".join(f"a=rid:{rid.lstrip('~')} recv\r\n" for rid in rids.split(";"))
        return f"{head}m=video{video}{lines}a=simulcast:recv {rids}\r\n"

    return rewrite


async def test_simulcast_publisher_works_as_a_call_on_todays_server(
    make_bot: BotFactory,
) -> None:
    publisher = await make_bot("pub", record=True)
    subscriber = await make_bot("sub", record=True, decode=True)
    ids = await publisher.publish(audio=False, simulcast=True, gop=30, frames=60)
    sent = _capture(publisher)
    cam = publisher.stream("cam")
    assert list(cam.layers) == ["q", "h", "f"]
    assert len({layer.ssrc for layer in cam.layers.values()}) == 3
    offer = _video_section(publisher.publish_offer_sdp or "")
    assert offer.simulcast == "send q;h;f" and not offer.ssrcs
    answer = _video_section(publisher.publish_answer_sdp or "")
    accepted = simulcast_answer(answer, ["q", "h", "f"])
    expected = {rid for rid, _paused in accepted} if accepted is not None else {"q"}
    assert {rid for rid, layer in cam.layers.items() if layer.active} == expected

    await subscriber.wait_until(
        lambda: any(len(t.counters) >= 30 for t in subscriber.tracks.values()), 15, "video"
    )
    track = subscriber.tracks[ids["cam"]]
    assert track.decode_errors == 0
    # The track announces its layers as the publish message listed them.
    published = next(
        t for p in subscriber.participants.values() for t in p["tracks"] if t["id"] == ids["cam"]
    )
    assert published["layers"] == [
        {"rid": "q", "quality": "low", "width": 320, "height": 180},
        {"rid": "h", "quality": "medium", "width": 640, "height": 360},
        {"rid": "f", "quality": "high", "width": 1280, "height": 720},
    ]
    _check_layer_packets(publisher, cam, sent)
    # The keyframe size, read from the VP8 header without decoding.
    sizes = {(cam.layers[rid].width, cam.layers[rid].height) for rid in expected}
    assert track.keyframe_sizes and set(track.keyframe_sizes) <= sizes
    assert (track.width, track.height) == track.keyframe_sizes[-1]
    if expected == {"q"}:
        assert track.keyframe_sizes[0] == (320, 180)
        # One layer: the forwarded stream is that layer's, byte for byte.
        assert track.first_is_keyframe
        assert track.missing() == [] and track.timestamp_regressions() == []
        assert track.picture_id_gaps() == []
        q = cam.layers["q"]
        # The decoded pictures are a contiguous run of what layer q sent.
        sent_counters = list(q.sent_counters.values())
        decoded = track.counters[:30]
        assert any(sent_counters[i : i + 30] == decoded for i in range(len(sent_counters) - 29)), (
            decoded
        )
        assert q.recorded_frames is not None
        sent_payloads = {p for frame in q.recorded_frames.values() for p in frame}
        assert track.payloads and all(p in sent_payloads for p in track.payloads.values())


async def test_simulcast_layers_follow_the_answer_and_the_controls(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub", record=True)
    publisher.publish_answer_filter = _accept_simulcast("q;h")
    await publisher.publish(audio=False, simulcast=True, layers=SMALL_LAYERS, gop=30, frames=60)
    sent = _capture(publisher)
    cam = publisher.stream("cam")
    q, h, f = cam.layers["q"], cam.layers["h"], cam.layers["f"]
    assert (q.active, h.active, f.active) == (True, True, False)
    await publisher.wait_until(lambda: q.frames_sent >= 15 and h.frames_sent >= 15, 5, "frames")
    _check_layer_packets(publisher, cam, sent)
    # Aligned layers: the same picture (counter) at the same frame on each layer.
    assert list(q.sent_counters.values())[:10] == list(h.sent_counters.values())[:10]

    # pause_layer: h stops entirely while q goes on; resume starts on a keyframe
    # and continues h's sequence numbers without a gap.
    publisher.pause_layer("h")
    await asyncio.sleep(0.05)
    h_packets, q_frames = h.packets, q.frames_sent
    await asyncio.sleep(0.4)
    assert h.packets == h_packets and q.frames_sent >= q_frames + 8
    assert publisher.stats()["sent"]["cam"]["layers"]["h"]["paused"] is True
    mark = len(sent)
    publisher.resume_layer("h")
    await publisher.wait_until(lambda: h.packets > h_packets + 5, 5, "h resumes")
    resumed = _by_ssrc(sent[mark:], h.ssrc)
    first = parse_header(resumed[0])
    assert vp8.is_keyframe(resumed[0][first.payload_start : first.payload_end])
    _check_layer_packets(publisher, cam, sent)

    # A PLI for h's SSRC: h answers with a keyframe at its next frame.
    requests = h.keyframe_requests
    keyframes = h.keyframes_sent
    publisher._on_pub_rtcp(pack_pli(1234, h.ssrc))
    assert h.keyframe_requests == requests + 1 and q.keyframe_requests >= 0
    await publisher.wait_until(lambda: h.keyframes_sent > keyframes, 2, "h keyframe")

    # A NACK for one of h's packets: RTX on h's RTX SSRC, from h's own history,
    # with the MID and the repaired RID.
    assert h.rtx_ssrc is not None and h.use_rtx
    seq = max(h.recorded or {}) - 3
    mark = len(sent)
    publisher._on_pub_rtcp(pack_nack(1234, h.ssrc, [seq]))
    rtx = [p for p in sent[mark:] if parse_header(p).ssrc == h.rtx_ssrc]
    assert len(rtx) == 1
    header = parse_header(rtx[0])
    ids = _ext_ids(publisher)
    assert find_extension(rtx[0], header, ids[EXT_MID]) == cam.info.mid.encode()
    assert find_extension(rtx[0], header, ids[EXT_RRID]) == b"h"
    assert find_extension(rtx[0], header, ids[EXT_RID]) is None
    body = rtx[0][header.payload_start : header.payload_end]
    assert int.from_bytes(body[:2], "big") == seq
    assert body[2:] == (h.recorded or {})[seq]
    assert header.payload_type == cam.info.rtx_payload_type
    assert f.packets == 0


async def test_simulcast_answer_can_pause_a_layer(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    publisher.publish_answer_filter = _accept_simulcast("q;~h;f")
    await publisher.publish(audio=False, simulcast=True, layers=SMALL_LAYERS, gop=30, frames=60)
    cam = publisher.stream("cam")
    assert [(la.active, la.paused) for la in cam.layers.values()] == [
        (True, False),
        (True, True),
        (True, False),
    ]
    await publisher.wait_until(lambda: cam.layers["f"].frames_sent >= 5, 5, "frames")
    assert cam.layers["h"].packets == 0
    publisher.resume_layer("h")
    await publisher.wait_until(lambda: cam.layers["h"].keyframes_sent >= 1, 5, "h starts")


async def test_subscriber_controls_and_observations(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", remb_bps=500_000)
    ids = await publisher.publish(audio=False, width=320, height=240, gop=30, frames=60)
    track_id = ids["cam"]
    await subscriber.wait_until(lambda: track_id in subscriber.tracks, 10, "track")
    track = subscriber.tracks[track_id]
    await subscriber.wait_until(lambda: track.packets >= 100, 10, "video")
    assert track.keyframe_sizes[0] == (320, 240) and (track.width, track.height) == (320, 240)
    assert track.missing() == [] and track.timestamp_regressions() == []
    assert track.picture_id_gaps() == [] and len(track.picture_ids) >= 10

    # REMB: regular, for the video SSRC, and a new value is used at once.
    assert subscriber.sub is not None
    rembs: list[Remb] = []
    original = subscriber.sub.send_rtcp

    def send_rtcp(data: bytes) -> None:
        rembs.extend(p for p in parse_compound(data) if isinstance(p, Remb))
        original(data)

    subscriber.sub.send_rtcp = send_rtcp  # type: ignore[method-assign]
    await asyncio.sleep(1.05)
    assert 2 <= len(rembs) <= 6, len(rembs)
    assert all(r.ssrcs == [track.ssrc] for r in rembs)
    assert all(abs(r.bitrate_bps - 500_000) < 5_000 for r in rembs)
    subscriber.remb_bps = 150_000
    await asyncio.sleep(0.15)
    assert abs(rembs[-1].bitrate_bps - 150_000) < 2_000

    # set_quality / layer_changed, and set_video_size is accepted.
    await subscriber.set_video_size(track_id, 320, 240)
    await subscriber.set_quality(track_id, "off")
    changed = await subscriber.wait_for("layer_changed", lambda m: m["quality"] == "off")
    assert changed["track_id"] == track_id
    assert subscriber.layer_changes[-1] == changed
    assert subscriber.forwarded_quality[track_id] == "off"
    await asyncio.sleep(0.3)
    paused_at = track.packets
    await asyncio.sleep(0.3)
    assert track.packets == paused_at
    keyframes = track.keyframes
    await subscriber.set_quality(track_id, "high")
    await subscriber.wait_for("layer_changed", lambda m: m["quality"] != "off", include_past=False)
    await subscriber.wait_until(lambda: track.packets > paused_at + 30, 5, "resumed")
    assert track.keyframes > keyframes  # resumed on a keyframe
    assert track.missing() == [] and track.timestamp_regressions() == []
    assert not [m for m in subscriber.messages if m.get("type") == "error"]


async def test_temporal_layers_are_marked_in_the_descriptor(make_bot: BotFactory) -> None:
    publisher = await make_bot("pub")
    subscriber = await make_bot("sub", decode=True)
    await publisher.publish(
        audio=False, width=160, height=120, gop=30, frames=60, temporal_layers=2
    )
    await subscriber.wait_until(
        lambda: any(len(t.frame_starts) >= 20 for t in subscriber.tracks.values()), 10, "frames"
    )
    track = next(iter(subscriber.tracks.values()))
    starts = sorted(track.frame_starts)
    tids = [tid for _seq, _pid, _tl0, tid in starts]
    assert set(tids) == {0, 1}
    assert all(a != b for a, b in pairwise(tids))  # 0,1,0,1...
    for (_s1, _p1, tl0_a, _t1), (_s2, _p2, tl0_b, tid_b) in pairwise(starts):
        assert tl0_a is not None and tl0_b is not None
        # TL0PICIDX counts layer 0 frames; a layer 1 frame carries its base's.
        assert tl0_b == ((tl0_a + 1) & 0xFF if tid_b == 0 else tl0_a)
    assert track.decode_errors == 0 and track.frames_decoded > 0
