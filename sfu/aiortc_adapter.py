"""Every touch of aiortc and aioice internals lives here.

The SFU uses aiortc's ORTC objects for what they do well (ICE through aioice,
the DTLS handshake, SRTP keying through pylibsrtp) and bypasses everything that
decodes, encodes or routes media. An aiortc/aioice upgrade is one file to check:
each private attribute used below is named in `PRIVATE_ATTRIBUTES_USED` and
checked by `check_compatibility()` at start-up.

Written against aiortc 1.16 / aioice 0.13 (see docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import secrets
import socket
from collections.abc import Callable
from typing import Any

import aioice
import aioice.ice
import pylibsrtp
from aiortc import RTCCertificate, RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceParameters, RTCIceTransport
from pylibsrtp._binding import ffi

logger = logging.getLogger(__name__)

#: The private names this module relies on, checked once at start-up so that an
#: incompatible upgrade fails loudly instead of silently dropping media.
PRIVATE_ATTRIBUTES_USED = {
    "aioice.Connection": (
        "_queue",
        "_nominated",
        "_components",
        "_local_candidates",
        "_protocols",
    ),
    # Module-level names used to bind host candidates inside a port range.
    "aioice.ice": (
        "StunProtocol",
        "server_reflexive_candidate",
        "candidate_foundation",
        "candidate_priority",
    ),
    "aiortc.RTCIceGatherer": ("_connection",),
    "aiortc.RTCDtlsTransport": ("_set_role", "_rx_srtp", "_tx_srtp"),
    # The outgoing SRTP buffer is replaced by a larger one (SRTP_SEND_BUFFER_BYTES).
    "pylibsrtp.Session": ("_cdata", "_buffer"),
}

#: DTLS records waiting for the handshake task; more than this and the datagram
#: is dropped (aioice's own queue is unbounded).
DTLS_QUEUE_LIMIT = 64
#: SRTP datagrams kept while the DTLS handshake completes on our side.
EARLY_SRTP_LIMIT = 64

SrtpSink = Callable[[bytes], None]
#: Outgoing SRTP buffer: pylibsrtp's default (1500 bytes, less the trailer)
#: refuses RTP of 1357 bytes and more, which publishers with a 1500-byte MTU
#: legitimately send (and a forwarded copy can carry more extensions).
SRTP_SEND_BUFFER_BYTES = 4096


class _SafeStunProtocol(aioice.ice.StunProtocol):
    """aioice's datagram protocol, except that a datagram its STUN parser
    chokes on (it raises struct.error, not ValueError, for some malformed
    attributes) is dropped and counted instead of reaching the event loop's
    exception handler, which would log a traceback per datagram."""

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        try:
            super().datagram_received(data, addr)
        except Exception:  # noqa: BLE001 - a stranger's datagram must cost a counter only
            receiver = self.receiver
            if isinstance(receiver, _SfuConnection):
                receiver.dropped_datagrams += 1


#: Bind attempts per address inside a port range before giving up.
PORT_RANGE_ATTEMPTS = 64


async def _bind(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Any],
    address: str,
    port_range: tuple[int, int] | None,
) -> Any | None:
    """A datagram endpoint on `address`: any port, or a free port of the
    range (random start, then the next ports; busy ones are skipped). None,
    logged, if it cannot bind."""
    if port_range is None:
        try:
            _, protocol = await loop.create_datagram_endpoint(factory, local_addr=(address, 0))
        except OSError as exc:
            logger.warning("cannot bind UDP on %s: %s", address, exc)
            return None
        _grow_receive_buffer(protocol)
        return protocol
    low, high = port_range
    span = high - low + 1
    # Random probes: busy ports bunch together, and a run of them would stop a
    # linear search long before the range is full.
    ports = (
        random.sample(range(low, high + 1), span)
        if span <= PORT_RANGE_ATTEMPTS
        else [low + secrets.randbelow(span) for _ in range(PORT_RANGE_ATTEMPTS)]
    )
    for port in ports:
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                factory, local_addr=(address, port)
            )
        except OSError:
            continue
        _grow_receive_buffer(protocol)
        return protocol
    logger.warning("no free UDP port on %s in %d-%d", address, low, high)
    return None


def _grow_receive_buffer(protocol: Any) -> None:
    sock = protocol.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)


def _grow_send_buffer(session: pylibsrtp.Session) -> None:
    session._cdata = ffi.new("char[]", SRTP_SEND_BUFFER_BYTES)  # noqa: SLF001
    session._buffer = ffi.buffer(session._cdata)  # noqa: SLF001


def check_compatibility() -> None:
    """Raise RuntimeError when the installed aiortc/aioice lack what we use."""
    probe = aioice.Connection(ice_controlling=False)
    missing = [
        name for name in PRIVATE_ATTRIBUTES_USED["aioice.Connection"] if not hasattr(probe, name)
    ]
    missing += [
        name for name in PRIVATE_ATTRIBUTES_USED["aioice.ice"] if not hasattr(aioice.ice, name)
    ]
    session = pylibsrtp.Session()
    missing += [
        name for name in PRIVATE_ATTRIBUTES_USED["pylibsrtp.Session"] if not hasattr(session, name)
    ]
    for name in PRIVATE_ATTRIBUTES_USED["aiortc.RTCDtlsTransport"]:
        if name.startswith("_set") and not hasattr(RTCDtlsTransport, name):
            missing.append(name)
    if missing:
        raise RuntimeError(
            "this aiortc/aioice version is not supported: missing " + ", ".join(missing)
        )


class _SfuConnection(aioice.Connection):
    """An aioice connection that binds only the configured host addresses and hands
    SRTP datagrams to a synchronous sink instead of aioice's unbounded queue."""

    def __init__(
        self,
        *,
        host_addresses: list[str] | None,
        port_range: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._sfu_host_addresses = host_addresses
        self._sfu_port_range = port_range
        self.srtp_sink: SrtpSink | None = None
        self.dropped_datagrams = 0
        # SRTP that arrives while our side of the DTLS handshake is finishing
        # (the peer may send media as soon as its own side is done, and DTLS
        # records wait in a queue while SRTP does not): kept, bounded, and
        # handed over with the keys. Only after a DTLS record has arrived, so a
        # stray datagram allocates nothing.
        self._dtls_seen = False
        self._early_srtp: list[bytes] = []

    async def gather_candidates(self) -> None:
        # Same steps as aioice's gather_candidates, with our address list: aioice
        # leaves out 127.0.0.1 and ::1, which tests and single-host setups need.
        if self._sfu_host_addresses is None:
            await super().gather_candidates()
            return
        if self._local_candidates_start:
            return
        self._local_candidates_start = True
        for component in self._components:
            self._local_candidates += await self.get_component_candidates(
                component=component, addresses=list(self._sfu_host_addresses)
            )
        self._local_candidates_end = True

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        """aioice's host (and STUN) gathering, binding inside the configured
        port range instead of on any free port (firewalls and containers
        publish a known range)."""
        loop = asyncio.get_running_loop()
        candidates: list[aioice.Candidate] = []
        protocols = []
        for address in addresses:
            bound = await _bind(
                loop, lambda: _SafeStunProtocol(self), address, self._sfu_port_range
            )
            if bound is None:
                continue
            protocol = bound
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = aioice.Candidate(
                foundation=aioice.ice.candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=aioice.ice.candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            protocols.append(protocol)
        self._protocols += protocols
        if self.stun_server:
            tasks = [
                asyncio.ensure_future(
                    aioice.ice.server_reflexive_candidate(protocol, self.stun_server)
                )
                for protocol in protocols
                if ipaddress.ip_address(protocol.local_candidate.host).version == 4
            ]
            if tasks:
                done, pending = await asyncio.wait(tasks, timeout=timeout)
                for task in done:
                    if task.exception() is None:
                        candidates.append(task.result()[0])
                for task in pending:
                    task.cancel()
        return candidates

    def data_received(self, data: bytes, component: int) -> None:
        # Called synchronously by aioice's datagram protocol for every non-STUN
        # datagram. RFC 7983 §7 demultiplexes on the first byte.
        if not data:
            # An empty datagram would crash aiortc's DTLS reader (data[0]).
            self.dropped_datagrams += 1
            return
        first = data[0]
        if 127 < first < 192:
            sink = self.srtp_sink
            if sink is not None:
                sink(data)
            elif self._dtls_seen and len(self._early_srtp) < EARLY_SRTP_LIMIT:
                self._early_srtp.append(data)
            else:
                self.dropped_datagrams += 1  # SRTP before keys exist
        elif 19 < first < 64:
            self._dtls_seen = True
            if self._queue.qsize() >= DTLS_QUEUE_LIMIT:
                self.dropped_datagrams += 1
            else:
                self._queue.put_nowait((data, component))
        else:
            self.dropped_datagrams += 1


def _stun_kwargs(ice_servers: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for url in ice_servers:
        if url.startswith("stun:"):
            host, _, port = url[5:].partition(":")
            kwargs["stun_server"] = (host, int(port or 3478))
    return kwargs


class IceDtls:
    """ICE + DTLS of one transport, and the raw SRTP send/receive hooks."""

    def __init__(
        self,
        certificate: RTCCertificate,
        host_addresses: list[str] | None,
        ice_servers: list[str],
        controlling: bool,
        port_range: tuple[int, int] | None = None,
    ) -> None:
        # No ICE servers for the stock gatherer: its connection is replaced below.
        self.gatherer = RTCIceGatherer(iceServers=[])
        self.connection = _SfuConnection(
            host_addresses=host_addresses,
            port_range=port_range,
            ice_controlling=controlling,
            use_ipv6=host_addresses is None or any(":" in a for a in host_addresses),
            **_stun_kwargs(ice_servers),
        )
        # RTCIceGatherer builds its own aioice connection; replace it before
        # RTCIceTransport copies the reference.
        self.gatherer._connection = self.connection
        self.ice = RTCIceTransport(self.gatherer)
        self.dtls = RTCDtlsTransport(self.ice, [certificate])
        self.rx_srtp: pylibsrtp.Session | None = None
        self.tx_srtp: pylibsrtp.Session | None = None
        self._sendto: Callable[[bytes, Any], None] | None = None
        self._remote_addr: tuple[str, int] | None = None
        self._local_addr: tuple[str, int] | None = None

    async def gather(self) -> None:
        await self.gatherer.gather()

    def local_parameters(self) -> tuple[str, str]:
        params = self.gatherer.getLocalParameters()
        return params.usernameFragment, params.password

    def fingerprints(self) -> list[tuple[str, str]]:
        return [(f.algorithm, f.value) for f in self.dtls.getLocalParameters().fingerprints]

    def local_candidates(self) -> list[aioice.Candidate]:
        return list(self.connection.local_candidates)

    async def add_remote_candidate(self, candidate: aioice.Candidate | None) -> None:
        await self.connection.add_remote_candidate(candidate)

    async def connect(
        self,
        remote_ufrag: str,
        remote_pwd: str,
        remote_ice_lite: bool,
        fingerprints: list[tuple[str, str]],
        dtls_role: str,
    ) -> bool:
        """ICE then DTLS; True when SRTP keys are ready."""
        self.dtls._set_role(dtls_role)
        await self.ice.start(
            RTCIceParameters(
                usernameFragment=remote_ufrag, password=remote_pwd, iceLite=remote_ice_lite
            )
        )
        if self.ice.state != "completed":
            return False
        await self.dtls.start(
            RTCDtlsParameters(
                fingerprints=[RTCDtlsFingerprint(algorithm=a, value=v) for a, v in fingerprints],
                role="auto",
            )
        )
        if self.dtls.state != "connected":
            return False
        pair = self.connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        self.rx_srtp = self.dtls._rx_srtp
        self.tx_srtp = self.dtls._tx_srtp
        if self.tx_srtp is not None:
            _grow_send_buffer(self.tx_srtp)
        self._sendto = pair.protocol.transport.sendto
        self._remote_addr = pair.remote_addr
        self._local_addr = (pair.local_candidate.host, pair.local_candidate.port)
        return True

    def set_srtp_sink(self, sink: SrtpSink | None) -> None:
        connection = self.connection
        connection.srtp_sink = sink
        early, connection._early_srtp = connection._early_srtp, []
        if sink is not None:
            for datagram in early:
                sink(datagram)

    def send_raw(self, datagram: bytes) -> None:
        """Send an already protected datagram on the nominated pair (no await)."""
        sendto = self._sendto
        if sendto is not None:
            sendto(datagram, self._remote_addr)

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self._remote_addr

    @property
    def local_address(self) -> tuple[str, int] | None:
        """Our end of the nominated pair (host, port), once connected."""
        return self._local_addr

    @property
    def dropped_datagrams(self) -> int:
        return self.connection.dropped_datagrams

    def on_state_change(self, callback: Callable[[str, str], None]) -> None:
        """callback(layer, state) for 'ice' and 'dtls' state changes."""
        self.ice.on("statechange", lambda: callback("ice", self.ice.state))
        self.dtls.on("statechange", lambda: callback("dtls", self.dtls.state))

    async def close(self) -> None:
        self.connection.srtp_sink = None
        self._sendto = None
        try:
            await self.dtls.stop()
        except Exception:  # noqa: BLE001 - closing must not fail the caller
            logger.debug("dtls stop failed", exc_info=True)
        try:
            await self.ice.stop()
        except Exception:  # noqa: BLE001
            logger.debug("ice stop failed", exc_info=True)


def generate_certificate() -> RTCCertificate:
    return RTCCertificate.generateCertificate()


def parse_candidate(sdp: str) -> aioice.Candidate:
    """Parse an `a=candidate` value (with or without the `candidate:` prefix)."""
    text = sdp.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    return aioice.Candidate.from_sdp(text)


def candidate_to_sdp(candidate: aioice.Candidate, announce_ip: str | None = None) -> str:
    """The `a=candidate` value for one of our candidates; with `announce_ip` the
    address is rewritten (NAT / containers: the address clients must use)."""
    if announce_ip and candidate.type == "host":
        candidate = aioice.Candidate(
            foundation=candidate.foundation,
            component=candidate.component,
            transport=candidate.transport,
            priority=candidate.priority,
            host=announce_ip,
            port=candidate.port,
            type=candidate.type,
        )
    return candidate.to_sdp()
