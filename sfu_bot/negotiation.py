"""The bot's side of offer/answer: it offers on its publisher connection and answers
the server's offers on its subscriber connection. Pure functions over sfu.sdp."""

from __future__ import annotations

from dataclasses import dataclass, field

from sfu.core.codecs import find_spec
from sfu.core.rtp import EXT_ABS_SEND_TIME, EXT_AUDIO_LEVEL, EXT_MID, EXT_RID, EXT_RRID
from sfu.negotiate import LocalTransport, new_session_origin
from sfu.sdp import Codec, Extmap, MediaSection, Rid, SessionDescription

BOT_EXT_IDS = {EXT_MID: 1, EXT_ABS_SEND_TIME: 2, EXT_AUDIO_LEVEL: 3, EXT_RID: 4, EXT_RRID: 5}


@dataclass(slots=True)
class SimulcastLayer:
    """One encoding of a simulcast video m-section (RFC 8853), named by its RID."""

    rid: str
    ssrc: int
    rtx_ssrc: int | None
    width: int
    height: int
    bitrate_bps: int
    quality: str  # "low", "medium" or "high" (the publish message's layers[].quality)


@dataclass(slots=True)
class OutgoingStream:
    """One m-section the bot publishes."""

    mid: str
    kind: str
    codec: str  # "opus", "vp8", "h264"
    ssrc: int
    rtx_ssrc: int | None
    cname: str
    stream_id: str
    track_name: str
    #: Simulcast encodings, lowest first; empty for a single-encoding stream.
    layers: list[SimulcastLayer] = field(default_factory=list)

    @property
    def payload_type(self) -> int:
        spec = find_spec(self.codec)
        assert spec is not None
        return spec.default_pt

    @property
    def rtx_payload_type(self) -> int | None:
        spec = find_spec(self.codec)
        assert spec is not None
        return spec.rtx_pt if self.rtx_ssrc is not None else None


def build_publish_offer(
    streams: list[OutgoingStream],
    local: LocalTransport,
    *,
    version: int,
    session_id: int,
    signal_ssrcs: bool = True,
) -> SessionDescription:
    offer = SessionDescription(
        origin=new_session_origin(version, session_id), msid_semantic=" WMS *"
    )
    for stream in streams:
        spec = find_spec(stream.codec)
        if spec is None:
            raise ValueError(f"unknown codec {stream.codec}")
        section = MediaSection(kind=stream.kind, mid=stream.mid, direction="sendonly")
        section.ice_ufrag, section.ice_pwd = local.ice_ufrag, local.ice_pwd
        section.ice_options = "trickle"
        section.fingerprints = list(local.fingerprints)
        section.setup = "actpass"
        section.candidates = list(local.candidates)
        section.end_of_candidates = True
        section.rtcp_mux = section.rtcp_rsize = True
        feedback = ["nack", "nack pli", "ccm fir", "goog-remb"] if stream.kind == "video" else []
        section.codecs.append(
            Codec(spec.default_pt, spec.name, spec.clock_rate, spec.channels, spec.fmtp, feedback)
        )
        if stream.rtx_ssrc is not None and spec.rtx_pt is not None:
            section.codecs.append(
                Codec(spec.rtx_pt, "rtx", spec.clock_rate, None, f"apt={spec.default_pt}")
            )
        section.formats = [str(c.payload_type) for c in section.codecs]
        uris: tuple[str, ...] = (
            (EXT_MID, EXT_ABS_SEND_TIME) if stream.kind == "video" else (EXT_MID, EXT_AUDIO_LEVEL)
        )
        if stream.layers:
            uris += (EXT_RID, EXT_RRID)
        section.extmaps = [Extmap(BOT_EXT_IDS[u], u) for u in uris]
        section.msid = f"{stream.stream_id} {stream.track_name}"
        if stream.layers:
            # Like Chromium: the encodings are named by RID (RFC 8851) and
            # announced by a=simulcast (RFC 8853); no a=ssrc lines at all, the
            # receiver learns each layer's SSRC from the MID and RID extensions.
            section.rids = [Rid(layer.rid, "send") for layer in stream.layers]
            section.simulcast = "send " + ";".join(layer.rid for layer in stream.layers)
        elif signal_ssrcs:
            section.ssrcs[stream.ssrc] = {"cname": stream.cname}
            if stream.rtx_ssrc is not None:
                section.ssrcs[stream.rtx_ssrc] = {"cname": stream.cname}
                section.ssrc_groups.append(("FID", [stream.ssrc, stream.rtx_ssrc]))
        offer.media.append(section)
    offer.bundle = [s.mid for s in streams]
    return offer


def simulcast_answer(section: MediaSection, offered: list[str]) -> list[tuple[str, bool]] | None:
    """The encodings the answerer accepted: (rid, paused) in its order, or None
    when the answer has no ``a=simulcast`` with a ``recv`` list (simulcast
    declined: like a browser, send only the first encoding).

    RFC 8853 §5.1: ``a=simulcast:recv q;h;f`` lists streams separated by ``;``,
    each a ``,``-separated list of alternative RIDs; ``~`` marks a paused one.
    Only RIDs that were offered count; of alternatives the first offered wins.
    """
    if not section.simulcast:
        return None
    tokens = section.simulcast.split()
    recv = next((tokens[i + 1] for i in range(0, len(tokens) - 1, 2) if tokens[i] == "recv"), None)
    if recv is None:
        return None
    accepted: list[tuple[str, bool]] = []
    for alternatives in recv.split(";"):
        for choice in alternatives.split(","):
            choice = choice.strip()
            paused = choice.startswith("~")
            rid = choice.lstrip("~")
            if rid in offered and rid not in (r for r, _ in accepted):
                accepted.append((rid, paused))
                break
    return accepted


@dataclass(slots=True)
class IncomingStream:
    """One m-section the server offered the bot."""

    mid: str
    kind: str
    codec: str
    payload_type: int
    rtx_payload_type: int | None
    ssrc: int | None
    rtx_ssrc: int | None
    active: bool


def answer_server_offer(
    offer: SessionDescription,
    local: LocalTransport,
    *,
    version: int,
    session_id: int,
    setup: str = "active",
    accept_rtx: bool = True,
) -> tuple[SessionDescription, list[IncomingStream]]:
    answer = SessionDescription(origin=new_session_origin(version, session_id))
    streams = []
    for media in offer.media:
        section = MediaSection(kind=media.kind, mid=media.mid, proto=media.proto)
        section.ice_ufrag, section.ice_pwd = local.ice_ufrag, local.ice_pwd
        section.fingerprints = list(local.fingerprints)
        section.setup = setup
        section.candidates = list(local.candidates)
        section.end_of_candidates = True
        section.rtcp_mux = True
        section.rtcp_rsize = media.rtcp_rsize
        section.extmaps = [Extmap(e.id, e.uri) for e in media.extmaps if e.uri in BOT_EXT_IDS]
        main = media.codecs[0] if media.codecs else None
        if main is None or media.port == 0:
            section.port = 0
            section.direction = "inactive"
            section.formats = media.formats[:1] or ["0"]
            answer.media.append(section)
            continue
        section.codecs.append(
            Codec(
                main.payload_type,
                main.name,
                main.clock_rate,
                main.channels,
                main.fmtp,
                list(main.rtcp_fb),
            )
        )
        rtx = next(
            (
                c
                for c in media.codecs
                if c.name.lower() == "rtx" and c.fmtp_params().get("apt") == str(main.payload_type)
            ),
            None,
        )
        if rtx is not None and accept_rtx:
            section.codecs.append(Codec(rtx.payload_type, "rtx", rtx.clock_rate, None, rtx.fmtp))
        section.formats = [str(c.payload_type) for c in section.codecs]
        active = media.direction == "sendonly"
        section.direction = "recvonly" if active else "inactive"
        pairs = media.fid_pairs()
        rtx_ssrcs = {r for _, r in pairs}
        ssrc = next((s for s in media.ssrcs if s not in rtx_ssrcs), None)
        rtx_ssrc = next((r for p, r in pairs if p == ssrc), None)
        streams.append(
            IncomingStream(
                mid=media.mid or "",
                kind=media.kind,
                codec=main.name.lower(),
                payload_type=main.payload_type,
                rtx_payload_type=rtx.payload_type if rtx is not None and accept_rtx else None,
                ssrc=ssrc,
                rtx_ssrc=rtx_ssrc if accept_rtx else None,
                active=active,
            )
        )
        answer.media.append(section)
    answer.bundle = [m.mid for m in answer.media if m.mid is not None and m.port != 0]
    return answer, streams
