"""Simulcast in the publisher answer (RFC 8851 rid, RFC 8853 simulcast) and RID demux."""

from __future__ import annotations

import pytest

from sfu.core.demux import Demuxer
from sfu.core.rtp import EXT_RID, EXT_RRID
from sfu.negotiate import LocalTransport, answer_publish, simulcast_send_rids
from sfu.sdp import MediaSection, Rid, parse, serialize

CHROME_VIDEO = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS s1
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {fp}
a=setup:actpass
a=mid:0
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=msid:s1 t1
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
{rids}"""
FP = ":".join(["AB"] * 32)
LOCAL = LocalTransport("srv1", "serverpasswordserverpass", [("sha-256", FP)])
THREE = "a=rid:q send\na=rid:h send\na=rid:f send\na=simulcast:send q;h;f\n"


def offer(rids: str = THREE, *, rid_ext: bool = True) -> str:
    text = CHROME_VIDEO.format(fp=FP, rids=rids)
    if not rid_ext:
        text = text.replace("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\n", "")
    return text


def section(simulcast: str | None, rids: list[tuple[str, str]]) -> MediaSection:
    media = MediaSection(kind="video")
    media.simulcast = simulcast
    media.rids = [Rid(rid, direction) for rid, direction in rids]
    return media


SEND3 = [("q", "send"), ("h", "send"), ("f", "send")]


@pytest.mark.parametrize(
    ("simulcast", "rids", "expected"),
    [
        pytest.param("send q;h;f", SEND3, ["q", "h", "f"], id="chrome"),
        pytest.param(None, SEND3, [], id="rids-without-simulcast"),
        pytest.param("send q;h;f", [("q", "send")], ["q"], id="undeclared-rids-dropped"),
        pytest.param("send ~q;h;f", SEND3, ["q", "h", "f"], id="paused-prefix"),
        pytest.param("send x,q;h", SEND3, ["q", "h"], id="first-declared-alternative"),
        pytest.param("recv q;h", [("q", "recv"), ("h", "recv")], [], id="recv-only"),
        pytest.param("send q;h;f recv a", SEND3, ["q", "h", "f"], id="send-and-recv"),
        pytest.param(
            "send a;b;c;d",
            [(r, "send") for r in "abcd"],
            ["a", "b", "c"],
            id="at-most-three",
        ),
        pytest.param("send q;q;h", SEND3, ["q", "h"], id="duplicates-once"),
        pytest.param("send", SEND3, [], id="no-list"),
    ],
)
def test_simulcast_send_rids(
    simulcast: str | None, rids: list[tuple[str, str]], expected: list[str]
) -> None:
    assert simulcast_send_rids(section(simulcast, rids)) == expected


def test_answer_mirrors_three_layers_as_recv() -> None:
    result = answer_publish(parse(offer()), LOCAL)
    video = result.answer.media[0]
    assert [(r.id, r.direction) for r in video.rids] == [
        ("q", "recv"),
        ("h", "recv"),
        ("f", "recv"),
    ]
    assert video.simulcast == "recv q;h;f"
    text = serialize(result.answer)
    assert "a=simulcast:recv q;h;f" in text and "a=rid:f recv" in text
    accepted = result.accepted[0]
    assert accepted.rids == ["q", "h", "f"]
    assert accepted.extension_ids[EXT_RID] == 10 and accepted.extension_ids[EXT_RRID] == 11
    assert accepted.ssrc is None and accepted.rtx_ssrc is None


def test_no_rid_extension_means_no_simulcast() -> None:
    result = answer_publish(parse(offer(rid_ext=False)), LOCAL)
    assert result.answer.media[0].rids == [] and result.answer.media[0].simulcast is None
    assert result.accepted[0].rids == []


def test_single_rid_is_not_simulcast() -> None:
    result = answer_publish(parse(offer("a=rid:q send\na=simulcast:send q\n")), LOCAL)
    assert result.accepted[0].rids == [] and result.answer.media[0].simulcast is None


def test_firefox_ssrcs_are_not_pinned_to_a_layer() -> None:
    # Firefox lists one SSRC per layer with no RID mapping: they must be learned.
    rids = THREE + "a=ssrc:1111 cname:{x}\na=ssrc:2222 cname:{x}\na=ssrc-group:FID 1111 2222\n"
    result = answer_publish(parse(offer(rids)), LOCAL)
    assert result.accepted[0].ssrc is None and result.accepted[0].rids == ["q", "h", "f"]


# --- demux by RID (RFC 8852) -------------------------------------------------


def make_demux() -> Demuxer[str]:
    demux: Demuxer[str] = Demuxer()
    demux.add_media("0", "q", 96, 97, rid_targets={"q": "q", "h": "h", "f": "f"})
    demux.add_media("1", "audio", 111, None)
    return demux


@pytest.mark.parametrize(
    ("ssrc", "pt", "mid", "rid", "rrid", "expected"),
    [
        pytest.param(10, 96, "0", "h", None, ("h", False, "h"), id="layer-by-rid"),
        pytest.param(11, 97, "0", None, "f", ("f", True, "f"), id="rtx-by-repaired-rid"),
        pytest.param(12, 97, "0", "f", None, None, id="rtx-needs-rrid"),
        pytest.param(13, 96, "0", None, None, None, id="simulcast-needs-rid"),
        pytest.param(14, 96, "0", "zz", None, None, id="unknown-rid"),
        pytest.param(15, 111, None, None, None, ("audio", False, None), id="audio-by-pt"),
        pytest.param(16, 111, "1", "q", None, ("audio", False, None), id="rid-ignored-single"),
        pytest.param(17, 100, "0", "q", None, None, id="unknown-pt"),
        pytest.param(18, 96, "9", "q", None, None, id="unknown-mid"),
    ],
)
def test_learn_by_rid(
    ssrc: int,
    pt: int,
    mid: str | None,
    rid: str | None,
    rrid: str | None,
    expected: tuple[str, bool, str | None] | None,
) -> None:
    demux = make_demux()
    route = demux.learn(ssrc, pt, mid, rid, rrid)
    if expected is None:
        assert route is None and ssrc not in demux.routes
    else:
        assert route is not None
        assert (route.target, route.rtx, route.rid) == expected
        assert demux.routes[ssrc] is route


def test_learned_ssrcs_are_bounded() -> None:
    demux: Demuxer[str] = Demuxer(max_ssrcs=2)
    demux.add_media("0", "x", 96, None, rid_targets={"q": "q"})
    assert demux.learn(1, 96, "0", "q") is not None
    assert demux.learn(2, 96, "0", "q") is not None
    assert demux.learn(3, 96, "0", "q") is None
    assert demux.refused == 1


def test_remove_media_forgets_layers() -> None:
    demux = make_demux()
    demux.learn(10, 96, "0", "q")
    demux.learn(11, 97, "0", None, "q")
    demux.remove_media("0")
    assert not demux.routes
    assert demux.learn(12, 96, "0", "q") is None
