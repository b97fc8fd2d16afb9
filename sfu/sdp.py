"""A small SDP model (RFC 8866) for WebRTC offers and answers.

aiortc's own SDP code drops `a=rid`, `a=simulcast` and extmap directions, and the
server must own the exact SDP it signals, so the project parses and writes SDP
itself. Only what WebRTC uses is modelled; any other attribute is kept verbatim
in `other` so nothing a peer sends is silently lost when we echo it.

Pure: no I/O. Errors raise `SdpError` naming the line that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_SDP_BYTES = 256 * 1024
MAX_MEDIA_SECTIONS = 128

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(ValueError):
    """The SDP text does not parse; the message names the line."""


@dataclass(slots=True)
class Codec:
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: str = ""
    rtcp_fb: list[str] = field(default_factory=list)

    @property
    def mime(self) -> str:
        return self.name.lower()

    def fmtp_params(self) -> dict[str, str]:
        """`fmtp` as a dict; keys lower-cased, flag parameters map to ""."""
        params: dict[str, str] = {}
        for part in self.fmtp.split(";"):
            part = part.strip()
            if not part:
                continue
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip()
        return params


@dataclass(slots=True)
class Extmap:
    id: int
    uri: str
    direction: str | None = None
    attributes: str = ""


@dataclass(slots=True)
class Rid:
    """RFC 8851 `a=rid:<id> <send|recv> [params]`."""

    id: str
    direction: str
    params: str = ""


@dataclass(slots=True)
class MediaSection:
    kind: str
    port: int = 9
    proto: str = "UDP/TLS/RTP/SAVPF"
    formats: list[str] = field(default_factory=list)
    connection: str = "IN IP4 0.0.0.0"
    mid: str | None = None
    direction: str = "sendrecv"
    codecs: list[Codec] = field(default_factory=list)
    extmaps: list[Extmap] = field(default_factory=list)
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    ice_options: str | None = None
    fingerprints: list[tuple[str, str]] = field(default_factory=list)
    setup: str | None = None
    candidates: list[str] = field(default_factory=list)
    end_of_candidates: bool = False
    rtcp_mux: bool = False
    rtcp_rsize: bool = False
    msid: str | None = None
    ssrcs: dict[int, dict[str, str]] = field(default_factory=dict)
    ssrc_groups: list[tuple[str, list[int]]] = field(default_factory=list)
    rids: list[Rid] = field(default_factory=list)
    simulcast: str | None = None
    extmap_allow_mixed: bool = False
    sctp_port: int | None = None
    max_message_size: int | None = None
    other: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.port == 0

    def codec(self, payload_type: int) -> Codec | None:
        for codec in self.codecs:
            if codec.payload_type == payload_type:
                return codec
        return None

    def extmap_id(self, uri: str) -> int | None:
        for ext in self.extmaps:
            if ext.uri == uri:
                return ext.id
        return None

    def fid_pairs(self) -> list[tuple[int, int]]:
        """(media ssrc, rtx ssrc) pairs from `a=ssrc-group:FID` (RFC 5576 §4.2)."""
        return [
            (group[0], group[1])
            for semantics, group in self.ssrc_groups
            if semantics == "FID" and len(group) == 2
        ]


@dataclass(slots=True)
class SessionDescription:
    origin: str = "- 0 0 IN IP4 127.0.0.1"
    name: str = "-"
    timing: str = "0 0"
    bundle: list[str] = field(default_factory=list)
    ice_lite: bool = False
    extmap_allow_mixed: bool = False
    msid_semantic: str | None = None
    media: list[MediaSection] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def section(self, mid: str) -> MediaSection | None:
        for media in self.media:
            if media.mid == mid:
                return media
        return None


# --- parsing ---------------------------------------------------------------


def _int(value: str, what: str, line_no: int, lo: int = 0, hi: int = 2**32 - 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise SdpError(f"line {line_no}: {what} must be an integer, got {value[:32]!r}") from None
    if not lo <= number <= hi:
        raise SdpError(f"line {line_no}: {what} {number} is out of range {lo}..{hi}")
    return number


def parse(text: str) -> SessionDescription:
    """Parse SDP text; raises SdpError on anything malformed."""
    if not isinstance(text, str):
        raise SdpError("SDP must be a string")
    if len(text) > MAX_SDP_BYTES:
        raise SdpError(f"SDP is {len(text)} bytes; the limit is {MAX_SDP_BYTES}")
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("line 1: SDP must start with v=0")

    session = SessionDescription()
    session_ice: dict[str, str] = {}
    session_fingerprints: list[tuple[str, str]] = []
    media: MediaSection | None = None
    for line_no, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"line {line_no}: expected '<type>=<value>', got {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            if len(session.media) >= MAX_MEDIA_SECTIONS:
                raise SdpError(f"line {line_no}: more than {MAX_MEDIA_SECTIONS} m-sections")
            media = _parse_m_line(value, line_no)
            session.media.append(media)
        elif kind == "o" and media is None:
            session.origin = value
        elif kind == "s" and media is None:
            session.name = value
        elif kind == "t" and media is None:
            session.timing = value
        elif kind == "c" and media is not None:
            media.connection = value
        elif kind == "a":
            if media is None:
                _parse_session_attribute(session, session_ice, session_fingerprints, value, line_no)
            else:
                _parse_media_attribute(media, value, line_no)
        # b=, i=, u=, e=, p=, k=, r=, z= lines are ignored: WebRTC does not need them.

    for media in session.media:
        media.ice_ufrag = media.ice_ufrag or session_ice.get("ufrag")
        media.ice_pwd = media.ice_pwd or session_ice.get("pwd")
        media.ice_options = media.ice_options or session_ice.get("options")
        media.setup = media.setup or session_ice.get("setup")
        if not media.fingerprints:
            media.fingerprints = list(session_fingerprints)
        _check_codecs(media)
    return session


def _parse_m_line(value: str, line_no: int) -> MediaSection:
    parts = value.split()
    if len(parts) < 3:
        raise SdpError(f"line {line_no}: m= needs '<media> <port> <proto> <fmt>...'")
    port_text = parts[1].split("/")[0]
    return MediaSection(
        kind=parts[0],
        port=_int(port_text, "m= port", line_no, 0, 65535),
        proto=parts[2],
        formats=parts[3:],
    )


def _parse_session_attribute(
    session: SessionDescription,
    ice: dict[str, str],
    fingerprints: list[tuple[str, str]],
    value: str,
    line_no: int,
) -> None:
    name, _, arg = value.partition(":")
    if name == "group":
        semantics, _, mids = arg.partition(" ")
        if semantics == "BUNDLE":
            session.bundle = mids.split()
        else:
            session.other.append(value)
    elif name == "ice-lite":
        session.ice_lite = True
    elif name == "extmap-allow-mixed":
        session.extmap_allow_mixed = True
    elif name == "msid-semantic":
        session.msid_semantic = arg.strip()
    elif name in ("ice-ufrag", "ice-pwd", "ice-options", "setup"):
        ice[name.removeprefix("ice-")] = arg.strip()
    elif name == "fingerprint":
        fingerprints.append(_parse_fingerprint(arg, line_no))
    else:
        session.other.append(value)


def _parse_fingerprint(arg: str, line_no: int) -> tuple[str, str]:
    alg, _, digest = arg.strip().partition(" ")
    if not alg or not digest:
        raise SdpError(f"line {line_no}: a=fingerprint needs '<hash> <digest>'")
    return alg.lower(), digest.strip()


def _parse_media_attribute(media: MediaSection, value: str, line_no: int) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        media.direction = name
    elif name == "mid":
        media.mid = arg.strip()
    elif name == "rtpmap":
        pt_text, _, encoding = arg.partition(" ")
        pt = _int(pt_text, "rtpmap payload type", line_no, 0, 127)
        parts = encoding.strip().split("/")
        if len(parts) < 2 or not parts[0]:
            raise SdpError(f"line {line_no}: a=rtpmap needs '<pt> <name>/<clock>[/<channels>]'")
        clock = _int(parts[1], "rtpmap clock rate", line_no, 1, 10_000_000)
        channels = _int(parts[2], "rtpmap channels", line_no, 1, 255) if len(parts) > 2 else None
        codec = media.codec(pt)
        if codec is None:
            media.codecs.append(Codec(pt, parts[0], clock, channels))
        else:
            codec.name, codec.clock_rate, codec.channels = parts[0], clock, channels
    elif name == "fmtp":
        pt_text, _, params = arg.partition(" ")
        _codec_for(media, pt_text, line_no).fmtp = params.strip()
    elif name == "rtcp-fb":
        pt_text, _, feedback = arg.partition(" ")
        feedback = feedback.strip()
        if pt_text == "*":
            media.other.append(value)
        else:
            _codec_for(media, pt_text, line_no).rtcp_fb.append(feedback)
    elif name == "extmap":
        id_text, _, rest = arg.partition(" ")
        id_part, _, direction = id_text.partition("/")
        uri, _, attributes = rest.strip().partition(" ")
        if not uri:
            raise SdpError(f"line {line_no}: a=extmap needs '<id> <uri>'")
        media.extmaps.append(
            Extmap(
                _int(id_part, "extmap id", line_no, 1, 255),
                uri,
                direction or None,
                attributes.strip(),
            )
        )
    elif name == "ice-ufrag":
        media.ice_ufrag = arg.strip()
    elif name == "ice-pwd":
        media.ice_pwd = arg.strip()
    elif name == "ice-options":
        media.ice_options = arg.strip()
    elif name == "fingerprint":
        media.fingerprints.append(_parse_fingerprint(arg, line_no))
    elif name == "setup":
        media.setup = arg.strip()
    elif name == "candidate":
        media.candidates.append(arg.strip())
    elif name == "end-of-candidates":
        media.end_of_candidates = True
    elif name == "rtcp-mux":
        media.rtcp_mux = True
    elif name == "rtcp-rsize":
        media.rtcp_rsize = True
    elif name == "msid":
        media.msid = arg.strip()
    elif name == "ssrc":
        ssrc_text, _, attribute = arg.partition(" ")
        ssrc = _int(ssrc_text, "ssrc", line_no)
        attr_name, _, attr_value = attribute.strip().partition(":")
        media.ssrcs.setdefault(ssrc, {})
        if attr_name:
            media.ssrcs[ssrc][attr_name] = attr_value
    elif name == "ssrc-group":
        parts = arg.split()
        if not parts:
            raise SdpError(f"line {line_no}: a=ssrc-group needs '<semantics> <ssrc>...'")
        media.ssrc_groups.append(
            (parts[0], [_int(p, "ssrc-group ssrc", line_no) for p in parts[1:]])
        )
    elif name == "rid":
        parts = arg.split(maxsplit=2)
        if len(parts) < 2 or parts[1] not in ("send", "recv"):
            raise SdpError(f"line {line_no}: a=rid needs '<id> send|recv [params]'")
        media.rids.append(Rid(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    elif name == "simulcast":
        media.simulcast = arg.strip()
    elif name == "extmap-allow-mixed":
        media.extmap_allow_mixed = True
    elif name == "sctp-port":
        media.sctp_port = _int(arg.strip(), "sctp-port", line_no, 0, 65535)
    elif name == "max-message-size":
        media.max_message_size = _int(arg.strip(), "max-message-size", line_no)
    elif name == "rtcp":
        pass  # with rtcp-mux the a=rtcp line carries nothing we use
    else:
        media.other.append(value)


def _codec_for(media: MediaSection, pt_text: str, line_no: int) -> Codec:
    pt = _int(pt_text, "payload type", line_no, 0, 127)
    codec = media.codec(pt)
    if codec is None:
        # fmtp/rtcp-fb before rtpmap is legal; the name comes later (or never,
        # for static payload types, which WebRTC does not use for video).
        codec = Codec(pt, "", 0)
        media.codecs.append(codec)
    return codec


def _check_codecs(media: MediaSection) -> None:
    if media.proto.startswith("UDP/DTLS/SCTP") or media.kind == "application":
        return
    # Static payload types (RFC 3551) may come without rtpmap.
    static = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1)}
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        if media.codec(pt) is None and pt in static:
            name, clock, channels = static[pt]
            media.codecs.append(Codec(pt, name, clock, channels))
    media.codecs = [c for c in media.codecs if c.name]
    order = {fmt: i for i, fmt in enumerate(media.formats)}
    media.codecs.sort(key=lambda c: order.get(str(c.payload_type), len(order)))


# --- writing ---------------------------------------------------------------


def serialize(session: SessionDescription) -> str:
    lines = ["v=0", f"o={session.origin}", f"s={session.name}", f"t={session.timing}"]
    if session.bundle:
        lines.append("a=group:BUNDLE " + " ".join(session.bundle))
    if session.ice_lite:
        lines.append("a=ice-lite")
    if session.extmap_allow_mixed:
        lines.append("a=extmap-allow-mixed")
    if session.msid_semantic is not None:
        lines.append(f"a=msid-semantic:{session.msid_semantic}")
    lines.extend(f"a={value}" for value in session.other)
    for media in session.media:
        _serialize_media(media, lines)
    return "\r\n".join(lines) + "\r\n"


def _serialize_media(media: MediaSection, lines: list[str]) -> None:
    formats = media.formats or [str(c.payload_type) for c in media.codecs]
    lines.append(f"m={media.kind} {media.port} {media.proto} {' '.join(formats)}")
    lines.append(f"c={media.connection}")
    if media.ice_ufrag:
        lines.append(f"a=ice-ufrag:{media.ice_ufrag}")
    if media.ice_pwd:
        lines.append(f"a=ice-pwd:{media.ice_pwd}")
    if media.ice_options:
        lines.append(f"a=ice-options:{media.ice_options}")
    for alg, digest in media.fingerprints:
        lines.append(f"a=fingerprint:{alg} {digest}")
    if media.setup:
        lines.append(f"a=setup:{media.setup}")
    if media.mid is not None:
        lines.append(f"a=mid:{media.mid}")
    lines.extend(f"a=candidate:{candidate}" for candidate in media.candidates)
    if media.end_of_candidates:
        lines.append("a=end-of-candidates")
    if media.extmap_allow_mixed:
        lines.append("a=extmap-allow-mixed")
    for ext in media.extmaps:
        ident = f"{ext.id}/{ext.direction}" if ext.direction else str(ext.id)
        tail = f" {ext.attributes}" if ext.attributes else ""
        lines.append(f"a=extmap:{ident} {ext.uri}{tail}")
    lines.append(f"a={media.direction}")
    if media.msid:
        lines.append(f"a=msid:{media.msid}")
    if media.rtcp_mux:
        lines.append("a=rtcp-mux")
    if media.rtcp_rsize:
        lines.append("a=rtcp-rsize")
    for codec in media.codecs:
        channels = f"/{codec.channels}" if codec.channels else ""
        lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}")
        lines.extend(f"a=rtcp-fb:{codec.payload_type} {fb}" for fb in codec.rtcp_fb)
        if codec.fmtp:
            lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    for rid in media.rids:
        tail = f" {rid.params}" if rid.params else ""
        lines.append(f"a=rid:{rid.id} {rid.direction}{tail}")
    if media.simulcast:
        lines.append(f"a=simulcast:{media.simulcast}")
    if media.sctp_port is not None:
        lines.append(f"a=sctp-port:{media.sctp_port}")
    if media.max_message_size is not None:
        lines.append(f"a=max-message-size:{media.max_message_size}")
    for semantics, group in media.ssrc_groups:
        lines.append(f"a=ssrc-group:{semantics} " + " ".join(str(s) for s in group))
    for ssrc, attributes in media.ssrcs.items():
        for attr_name, attr_value in attributes.items():
            lines.append(f"a=ssrc:{ssrc} {attr_name}:{attr_value}")
    lines.extend(f"a={value}" for value in media.other)
