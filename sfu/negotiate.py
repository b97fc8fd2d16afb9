"""Offer/answer rules of the SFU (RFC 8829 JSEP, RFC 8843 BUNDLE), as pure functions.

Publisher leg: the client offers, the server answers, accepting for each m-section
exactly one codec it can forward (plus that codec's RTX), the header extensions it
understands, and the RTCP feedback it implements.

Subscriber leg: the server offers one `sendonly` m-section per forwarded track
(recycling `inactive` ones), with the publisher's codec under a canonical payload
type and fixed extension ids; the client answers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from sfu.core.codecs import SUPPORTED, CodecSpec, find_spec
from sfu.core.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    EXT_RRID,
    EXT_VIDEO_ORIENTATION,
)
from sfu.sdp import Codec, Extmap, MediaSection, Rid, SessionDescription

#: Spatial simulcast layers accepted per track; extra encodings are removed from
#: the answer, which RFC 8853 §5.3 allows the answerer to do.
MAX_SIMULCAST_LAYERS = 3

#: Header extensions read on the publisher leg, by kind.
PUBLISH_EXTENSIONS = {
    "audio": (EXT_MID, EXT_AUDIO_LEVEL),
    "video": (EXT_MID, EXT_RID, EXT_RRID, EXT_ABS_SEND_TIME, EXT_VIDEO_ORIENTATION),
}

#: Extension ids offered on the subscriber leg. One id per URI across the whole
#: BUNDLE group, as RFC 8843 §9.2 requires.
SUBSCRIBE_EXTENSION_IDS = {
    EXT_MID: 1,
    EXT_ABS_SEND_TIME: 2,
    EXT_AUDIO_LEVEL: 3,
    EXT_VIDEO_ORIENTATION: 4,
}
SUBSCRIBE_EXTENSIONS = {
    "audio": (EXT_MID, EXT_AUDIO_LEVEL),
    "video": (EXT_MID, EXT_ABS_SEND_TIME, EXT_VIDEO_ORIENTATION),
}

VIDEO_FEEDBACK = ("nack", "nack pli", "ccm fir", "goog-remb")
AUDIO_FEEDBACK: tuple[str, ...] = ()


class NegotiationError(ValueError):
    """The remote description cannot be used; the message says why, for a person."""


class LimitExceeded(NegotiationError):
    """The description is fine but asks for more than this server allows
    (tracks per participant)."""


class UnsupportedMedia(NegotiationError):
    """The description is valid but asks for something the server does not do
    (a codec it cannot forward, an ICE restart, a codec change)."""


@dataclass(slots=True)
class LocalTransport:
    """What our side of one transport puts in every m-section it writes."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[tuple[str, str]]
    candidates: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RemoteTransport:
    """The peer's transport parameters, read from its description."""

    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[tuple[str, str]]
    setup: str
    candidates: list[str]
    end_of_candidates: bool
    ice_lite: bool


@dataclass(slots=True)
class AcceptedMedia:
    """One m-section of a publisher's offer, as the answer accepted it."""

    mid: str
    kind: str
    codec: Codec
    rtx_payload_type: int | None
    extension_ids: dict[str, int]
    ssrc: int | None
    rtx_ssrc: int | None
    cname: str | None
    rids: list[str]
    feedback: frozenset[str]


@dataclass(slots=True)
class RejectedMedia:
    mid: str | None
    kind: str
    reason: str


@dataclass(slots=True)
class PublishAnswer:
    answer: SessionDescription
    remote: RemoteTransport
    accepted: list[AcceptedMedia]
    rejected: list[RejectedMedia]


_session_ids = itertools.count(1)


def new_session_origin(version: int, session_id: int | None = None) -> str:
    if session_id is None:
        session_id = 4_000_000_000 + next(_session_ids)
    return f"- {session_id} {version} IN IP4 127.0.0.1"


def read_remote_transport(description: SessionDescription) -> RemoteTransport:
    """ICE and DTLS parameters of the first BUNDLE m-section (RFC 8843 §7.1)."""
    media = [m for m in description.media if not m.rejected]
    if not media:
        raise NegotiationError("the description has no m-section with a non-zero port")
    first = media[0]
    if description.bundle:
        tagged = description.section(description.bundle[0])
        if tagged is not None:
            first = tagged
    if not first.ice_ufrag or not first.ice_pwd:
        raise NegotiationError("the description has no a=ice-ufrag / a=ice-pwd")
    if not first.fingerprints:
        raise NegotiationError("the description has no a=fingerprint (DTLS is required)")
    candidates: list[str] = []
    end = False
    for section in media:
        candidates.extend(section.candidates)
        end = end or section.end_of_candidates
    return RemoteTransport(
        ice_ufrag=first.ice_ufrag,
        ice_pwd=first.ice_pwd,
        fingerprints=list(first.fingerprints),
        setup=first.setup or "actpass",
        candidates=candidates,
        end_of_candidates=end,
        ice_lite=description.ice_lite,
    )


def _choose_codec(media: MediaSection, allowed: Iterable[str]) -> tuple[Codec, CodecSpec] | None:
    allowed_names = {name.lower() for name in allowed}
    for codec in media.codecs:
        spec = find_spec(codec.name)
        if spec is None or spec.kind != media.kind or spec.name.lower() not in allowed_names:
            continue
        if spec.clock_rate != codec.clock_rate:
            continue
        if spec.name.lower() == "h264":
            params = codec.fmtp_params()
            # Only packetization-mode=1 (RFC 6184 §6.3): FU-A is needed above ~1200 bytes.
            if params.get("packetization-mode") != "1":
                continue
        return codec, spec
    return None


def _rtx_for(media: MediaSection, payload_type: int) -> Codec | None:
    for codec in media.codecs:
        if codec.name.lower() == "rtx" and codec.fmtp_params().get("apt") == str(payload_type):
            return codec
    return None


def _media_ssrcs(media: MediaSection) -> tuple[int | None, int | None, str | None]:
    """Primary and RTX SSRC of a single-encoding m-section, and its CNAME."""
    pairs = media.fid_pairs()
    rtx_ssrcs = {rtx for _, rtx in pairs}
    primary = next((s for s in media.ssrcs if s not in rtx_ssrcs), None)
    rtx = next((r for p, r in pairs if p == primary), None)
    cname = media.ssrcs.get(primary, {}).get("cname") if primary is not None else None
    return primary, rtx, cname


def simulcast_send_rids(media: MediaSection) -> list[str]:
    """The RIDs a publisher offers to send as simulcast, in the offer's order.

    RFC 8853 §5.1: `a=simulcast:send q;h;f` lists one stream per `;`, each with
    `,`-separated alternatives, a `~` prefix marking a stream paused at first. We
    take each stream's first alternative that has a matching `a=rid:<id> send`
    line (RFC 8851 §4), and at most MAX_SIMULCAST_LAYERS of them. No
    `a=simulcast` means no simulcast, whatever `a=rid` lines say.
    """
    if not media.simulcast:
        return []
    tokens = media.simulcast.split()
    send_list = None
    for direction, value in zip(tokens[::2], tokens[1::2], strict=False):
        if direction == "send":
            send_list = value
    if send_list is None:
        return []
    declared = {r.id for r in media.rids if r.direction == "send"}
    rids: list[str] = []
    for stream in send_list.split(";"):
        for alternative in stream.split(","):
            rid = alternative.lstrip("~")
            if rid in declared and rid not in rids:
                rids.append(rid)
                break
        if len(rids) == MAX_SIMULCAST_LAYERS:
            break
    return rids


def answer_publish(
    offer: SessionDescription,
    local: LocalTransport,
    *,
    audio_codecs: Iterable[str] = ("opus",),
    video_codecs: Iterable[str] = ("vp8", "h264", "vp9", "av1"),
    previous: SessionDescription | None = None,
    version: int = 1,
) -> PublishAnswer:
    """Answer a publisher's offer; raise NegotiationError when nothing can be used.

    `previous` is our last answer on this transport: a renegotiation must keep the
    DTLS role, and m-sections keep their order (JSEP §5.3.1 mirrors the offer).
    """
    remote = read_remote_transport(offer)
    audio_codecs = tuple(audio_codecs)
    video_codecs = tuple(video_codecs)
    answer = SessionDescription(
        origin=new_session_origin(version), extmap_allow_mixed=offer.extmap_allow_mixed
    )
    accepted: list[AcceptedMedia] = []
    rejected: list[RejectedMedia] = []
    # RFC 5763 §5: the answerer picks active or passive. `active` saves a round
    # trip (we send the ClientHello as soon as ICE connects).
    setup = "active" if remote.setup in ("actpass", "passive") else "passive"
    if previous is not None and previous.media:
        setup = previous.media[0].setup or setup

    for index, media in enumerate(offer.media):
        section = MediaSection(kind=media.kind, proto=media.proto, mid=media.mid, port=9)
        answer.media.append(section)
        label = f"m-section {index} (mid {media.mid!r}, {media.kind})"

        def reject(
            reason: str, section: MediaSection = section, media: MediaSection = media
        ) -> None:
            section.port = 0
            section.direction = "inactive"
            section.formats = list(media.formats[:1]) or ["0"]
            rejected.append(RejectedMedia(media.mid, media.kind, reason))

        if media.rejected:
            reject("the offer disabled it (port 0)")
            continue
        if media.kind not in ("audio", "video"):
            reject(f"{label}: {media.kind} m-sections are not supported yet")
            continue
        if media.mid is None:
            reject(f"{label}: no a=mid (RFC 8843 needs one per m-section)")
            continue
        if not media.rtcp_mux:
            raise NegotiationError(f"{label}: a=rtcp-mux is required")
        if offer.bundle and media.mid not in offer.bundle:
            raise NegotiationError(f"{label}: every m-section must be in the BUNDLE group")

        allowed = audio_codecs if media.kind == "audio" else video_codecs
        chosen = _choose_codec(media, allowed)
        if chosen is None:
            offered = ", ".join(sorted({c.name for c in media.codecs if c.name.lower() != "rtx"}))
            raise UnsupportedMedia(
                f"{label}: no codec we can forward (offered: {offered or 'none'}; "
                f"supported {media.kind} codecs: {', '.join(allowed)}"
                + ("; H264 needs packetization-mode=1" if media.kind == "video" else "")
                + ")"
            )
        codec, _spec = chosen
        supported_fb = VIDEO_FEEDBACK if media.kind == "video" else AUDIO_FEEDBACK
        feedback = [fb for fb in codec.rtcp_fb if fb in supported_fb]
        answer_codec = Codec(
            codec.payload_type, codec.name, codec.clock_rate, codec.channels, codec.fmtp, feedback
        )
        section.codecs.append(answer_codec)
        rtx = _rtx_for(media, codec.payload_type)
        if rtx is not None:
            section.codecs.append(
                Codec(rtx.payload_type, rtx.name, rtx.clock_rate, None, rtx.fmtp, [])
            )
        section.formats = [str(c.payload_type) for c in section.codecs]

        wanted = PUBLISH_EXTENSIONS[media.kind]
        extension_ids: dict[str, int] = {}
        for ext in media.extmaps:
            if ext.uri in wanted and ext.direction in (None, "sendrecv", "sendonly"):
                section.extmaps.append(Extmap(ext.id, ext.uri))
                extension_ids[ext.uri] = ext.id

        if media.direction in ("sendrecv", "sendonly"):
            section.direction = "recvonly"
        else:
            section.direction = "inactive"
        section.rtcp_mux = True
        section.rtcp_rsize = media.rtcp_rsize
        section.extmap_allow_mixed = media.extmap_allow_mixed
        section.ice_ufrag = local.ice_ufrag
        section.ice_pwd = local.ice_pwd
        section.fingerprints = list(local.fingerprints)
        section.setup = setup
        section.candidates = list(local.candidates)
        section.end_of_candidates = True

        ssrc, rtx_ssrc, cname = _media_ssrcs(media)
        rids: list[str] = []
        if media.kind == "video" and EXT_RID in extension_ids:
            # Without the RID header extension the layers could not be told
            # apart (browsers signal no SSRC per layer), so simulcast needs it.
            rids = simulcast_send_rids(media)
        if len(rids) > 1:
            # RFC 8853 §5.3: the answer mirrors the accepted streams as `recv`.
            section.rids = [Rid(rid, "recv") for rid in rids]
            section.simulcast = "recv " + ";".join(rids)
            # The signalled SSRCs (Firefox lists one per layer) name no RID:
            # every layer's SSRC is learned from its RID extension instead.
            ssrc = rtx_ssrc = None
        else:
            rids = []
        if section.direction == "recvonly":
            accepted.append(
                AcceptedMedia(
                    mid=media.mid,
                    kind=media.kind,
                    codec=answer_codec,
                    rtx_payload_type=rtx.payload_type if rtx is not None else None,
                    extension_ids=extension_ids,
                    ssrc=ssrc,
                    rtx_ssrc=rtx_ssrc,
                    cname=cname,
                    rids=rids,
                    feedback=frozenset(feedback),
                )
            )

    if not accepted and not any(not m.rejected for m in answer.media):
        raise NegotiationError("the offer has no audio or video m-section we can receive")
    answer.bundle = [m.mid for m in answer.media if not m.rejected and m.mid is not None]
    return PublishAnswer(answer=answer, remote=remote, accepted=accepted, rejected=rejected)


# --- subscriber leg ----------------------------------------------------------


@dataclass(slots=True)
class OfferSlot:
    """One m-section of the subscriber transport; reused when its track goes away."""

    mid: str
    kind: str
    track_id: str | None = None
    stream_id: str | None = None
    codec: Codec | None = None
    rtx_payload_type: int | None = None
    ssrc: int = 0
    rtx_ssrc: int | None = None
    cname: str = ""

    @property
    def active(self) -> bool:
        return self.track_id is not None


def subscriber_codec(publisher_codec: Codec) -> tuple[Codec, int | None]:
    """The codec offered to subscribers: the publisher's codec and fmtp, under our
    canonical payload type (the downtrack rewrites PT per packet)."""
    spec = find_spec(publisher_codec.name)
    if spec is None:
        raise UnsupportedMedia(f"codec {publisher_codec.name} cannot be forwarded")
    feedback = list(VIDEO_FEEDBACK if spec.kind == "video" else AUDIO_FEEDBACK)
    codec = Codec(
        spec.default_pt,
        publisher_codec.name,
        publisher_codec.clock_rate,
        publisher_codec.channels,
        publisher_codec.fmtp,
        feedback,
    )
    return codec, spec.rtx_pt


def build_subscriber_offer(
    slots: list[OfferSlot], local: LocalTransport, *, version: int, session_id: int
) -> SessionDescription:
    offer = SessionDescription(
        origin=new_session_origin(version, session_id),
        msid_semantic=" WMS *",
        extmap_allow_mixed=True,
    )
    for slot in slots:
        section = MediaSection(kind=slot.kind, mid=slot.mid)
        section.ice_ufrag = local.ice_ufrag
        section.ice_pwd = local.ice_pwd
        section.ice_options = "trickle"
        section.fingerprints = list(local.fingerprints)
        section.setup = "actpass"  # RFC 5763 §5: the offerer must offer actpass
        section.candidates = list(local.candidates)
        section.end_of_candidates = True
        section.rtcp_mux = True
        section.rtcp_rsize = True
        for uri in SUBSCRIBE_EXTENSIONS[slot.kind]:
            section.extmaps.append(Extmap(SUBSCRIBE_EXTENSION_IDS[uri], uri))
        if slot.active and slot.codec is not None:
            section.direction = "sendonly"
            section.codecs.append(slot.codec)
            if slot.rtx_payload_type is not None and slot.rtx_ssrc is not None:
                section.codecs.append(
                    Codec(
                        slot.rtx_payload_type,
                        "rtx",
                        slot.codec.clock_rate,
                        None,
                        f"apt={slot.codec.payload_type}",
                    )
                )
                section.ssrc_groups.append(("FID", [slot.ssrc, slot.rtx_ssrc]))
            section.msid = f"{slot.stream_id} {slot.track_id}"
            section.ssrcs[slot.ssrc] = {
                "cname": slot.cname,
                "msid": f"{slot.stream_id} {slot.track_id}",
            }
            if slot.rtx_ssrc is not None and slot.rtx_payload_type is not None:
                section.ssrcs[slot.rtx_ssrc] = {
                    "cname": slot.cname,
                    "msid": f"{slot.stream_id} {slot.track_id}",
                }
        else:
            # An idle slot stays in the BUNDLE, inactive, with a placeholder codec
            # of its kind, so that it can be recycled for the next track.
            section.direction = "inactive"
            spec = next(s for s in SUPPORTED if s.kind == slot.kind)
            section.codecs.append(
                Codec(spec.default_pt, spec.name, spec.clock_rate, spec.channels, spec.fmtp)
            )
        section.formats = [str(c.payload_type) for c in section.codecs]
        offer.media.append(section)
    offer.bundle = [slot.mid for slot in slots]
    return offer


@dataclass(slots=True)
class SubscribedMedia:
    """What the subscriber's answer accepted for one active slot."""

    mid: str
    accepted: bool
    reason: str
    extension_ids: dict[str, int]
    rtx: bool
    feedback: frozenset[str]


def read_subscriber_answer(
    offer: SessionDescription, answer: SessionDescription
) -> tuple[RemoteTransport, dict[str, SubscribedMedia]]:
    """Check an answer against the offer it answers (JSEP §5.3: same m-sections in
    the same order) and return what each m-section accepted."""
    if len(answer.media) != len(offer.media):
        raise NegotiationError(
            f"the answer has {len(answer.media)} m-sections; the offer had {len(offer.media)}"
        )
    remote = read_remote_transport(answer)
    if remote.setup not in ("active", "passive"):
        raise NegotiationError(f"a=setup:{remote.setup} is not valid in an answer")
    result: dict[str, SubscribedMedia] = {}
    for offered, answered in zip(offer.media, answer.media, strict=True):
        mid = offered.mid or ""
        if answered.mid is not None and answered.mid != offered.mid:
            raise NegotiationError(
                f"answer m-section for mid {offered.mid!r} carries mid {answered.mid!r}"
            )
        if offered.direction != "sendonly":
            continue
        if answered.rejected:
            result[mid] = SubscribedMedia(mid, False, "rejected (port 0)", {}, False, frozenset())
            continue
        if answered.direction not in ("recvonly", "sendrecv"):
            result[mid] = SubscribedMedia(
                mid, False, f"answered {answered.direction}", {}, False, frozenset()
            )
            continue
        main = offered.codecs[0]
        codec = answered.codec(main.payload_type)
        if codec is None or codec.name.lower() != main.name.lower():
            result[mid] = SubscribedMedia(
                mid, False, f"the answer does not accept {main.name}", {}, False, frozenset()
            )
            continue
        rtx = any(
            c.name.lower() == "rtx" and c.fmtp_params().get("apt") == str(main.payload_type)
            for c in answered.codecs
        )
        extension_ids = {
            ext.uri: ext.id
            for ext in answered.extmaps
            if ext.uri in SUBSCRIBE_EXTENSION_IDS and ext.id == SUBSCRIBE_EXTENSION_IDS[ext.uri]
        }
        result[mid] = SubscribedMedia(
            mid, True, "", extension_ids, rtx, frozenset(codec.rtcp_fb) & set(main.rtcp_fb)
        )
    return remote, result
