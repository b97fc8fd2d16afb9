"""PeerTransport: one ICE + DTLS + SRTP transport (a BUNDLE group) with raw,
synchronous RTP/RTCP in and out.

Received datagrams are unprotected and handed to `on_rtp(packet, arrival_s)` /
`on_rtcp(packet)` in the same call stack as the socket read: no task, no queue, no
await per packet. Sending protects and calls the socket's `sendto` directly.
An exception in a handler is counted and logged, never propagated: one bad
packet must not end a connection (aiortc's own reader dies on one).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pylibsrtp

from sfu import aiortc_adapter
from sfu.negotiate import LocalTransport, RemoteTransport

logger = logging.getLogger(__name__)

#: SRTP datagrams longer than this are dropped unread: libsrtp's receive
#: buffer (pylibsrtp) holds 1500 bytes, the usual path MTU.
MAX_SRTP_DATAGRAM_BYTES = 1500

#: Remote candidates accepted per transport (a peer trickling thousands of
#: candidates must not make us pair and probe them all).
MAX_REMOTE_CANDIDATES = 32

RtpHandler = Callable[[bytes, float], None]
RtcpHandler = Callable[[bytes], None]
StateHandler = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    #: Addresses media binds and advertises; None = every address aioice finds.
    host_addresses: tuple[str, ...] | None = None
    #: Advertise this address instead of the bound one (NAT, containers).
    announce_ip: str | None = None
    #: "stun:host:port" URLs; none by default, so nothing is contacted unless configured.
    ice_servers: tuple[str, ...] = ()
    #: ICE + DTLS must complete within this time, or the transport fails.
    connect_timeout_s: float = 20.0
    #: Bind media sockets inside this UDP port range (inclusive); None = any port.
    port_range: tuple[int, int] | None = None
    #: Remote candidate address ranges accepted; empty = any.
    allowed_remote_networks: tuple[str, ...] = field(default_factory=tuple)


class CandidateError(ValueError):
    """A remote candidate cannot be used; the message says why."""


def check_candidate(candidate: str) -> None:
    """Raise CandidateError when a candidate line does not parse; used to refuse a
    bad candidate when it arrives, even before its transport exists."""
    try:
        aiortc_adapter.parse_candidate(candidate)
    except (ValueError, IndexError) as exc:
        raise CandidateError(f"candidate does not parse: {exc}") from None


class PeerTransport:
    def __init__(
        self,
        config: TransportConfig,
        certificate: object,
        *,
        controlling: bool,
        name: str,
        on_rtp: RtpHandler,
        on_rtcp: RtcpHandler,
        on_state: StateHandler,
    ) -> None:
        self.name = name
        self._config = config
        self._link = aiortc_adapter.IceDtls(
            certificate,  # type: ignore[arg-type]
            list(config.host_addresses) if config.host_addresses is not None else None,
            list(config.ice_servers),
            controlling,
            config.port_range,
        )
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._on_state = on_state
        self._networks = [
            ipaddress.ip_network(n, strict=False) for n in config.allowed_remote_networks
        ]
        self._rx: pylibsrtp.Session | None = None
        self._tx: pylibsrtp.Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._remote_candidates = 0
        self._local: LocalTransport | None = None
        self.state = "new"
        self.connected_at: float | None = None
        # counters (read by stats and metrics)
        self.rx_rtp_packets = 0
        self.rx_rtp_bytes = 0
        self.rx_rtcp_packets = 0
        self.tx_rtp_packets = 0
        self.tx_rtp_bytes = 0
        self.tx_rtcp_packets = 0
        self.srtp_errors = 0
        self.handler_errors = 0
        self.send_errors = 0

    # --- setup ---------------------------------------------------------------

    async def prepare(self) -> LocalTransport:
        """Gather local candidates (host candidates: no network round trip)."""
        if self._local is None:
            await self._link.gather()
            ufrag, pwd = self._link.local_parameters()
            announce = self._config.announce_ip
            self._local = LocalTransport(
                ice_ufrag=ufrag,
                ice_pwd=pwd,
                fingerprints=self._link.fingerprints(),
                candidates=[
                    aiortc_adapter.candidate_to_sdp(c, announce)
                    for c in self._link.local_candidates()
                ],
            )
        return self._local

    @property
    def local(self) -> LocalTransport:
        if self._local is None:
            raise RuntimeError("prepare() first")
        return self._local

    async def add_remote_candidate(self, candidate: str | None) -> None:
        """Add a trickled candidate; None or "" means end of candidates.
        Raises CandidateError for a candidate that is malformed or not allowed."""
        if not candidate:
            await self._link.add_remote_candidate(None)
            return
        try:
            parsed = aiortc_adapter.parse_candidate(candidate)
        except (ValueError, IndexError) as exc:
            raise CandidateError(f"candidate does not parse: {exc}") from None
        if parsed.transport.lower() != "udp":
            return  # TCP candidates are legal but unusable here: ignore quietly.
        if parsed.host.endswith(".local"):
            # mDNS names would need multicast resolution; the peer is reached
            # through the peer-reflexive candidate its checks create instead.
            return
        try:
            address = ipaddress.ip_address(parsed.host)
        except ValueError:
            raise CandidateError(f"candidate address {parsed.host[:64]!r} is not an IP") from None
        if self._networks and not any(address in n for n in self._networks):
            return
        if self._remote_candidates >= MAX_REMOTE_CANDIDATES:
            raise CandidateError(f"more than {MAX_REMOTE_CANDIDATES} remote candidates")
        self._remote_candidates += 1
        await self._link.add_remote_candidate(parsed)

    def start(self, remote: RemoteTransport, dtls_role: str) -> None:
        """Start ICE and DTLS in the background; `on_state` reports the outcome."""
        if self._task is not None:
            return
        self._set_state("connecting")
        self._task = asyncio.get_running_loop().create_task(
            self._connect(remote, dtls_role), name=f"connect-{self.name}"
        )

    async def _connect(self, remote: RemoteTransport, dtls_role: str) -> None:
        for candidate in remote.candidates:
            try:
                await self.add_remote_candidate(candidate)
            except CandidateError as exc:
                logger.debug("%s: ignoring candidate from the description: %s", self.name, exc)
        if remote.end_of_candidates:
            await self._link.add_remote_candidate(None)
        self._link.on_state_change(self._on_link_state)
        try:
            ok = await asyncio.wait_for(
                self._link.connect(
                    remote.ice_ufrag,
                    remote.ice_pwd,
                    remote.ice_lite,
                    remote.fingerprints,
                    dtls_role,
                ),
                timeout=self._config.connect_timeout_s,
            )
        except TimeoutError:
            logger.info(
                "%s: ICE/DTLS did not complete in %.0f s", self.name, self._config.connect_timeout_s
            )
            ok = False
        except Exception:  # noqa: BLE001 - any failure here is a failed transport
            logger.warning("%s: connect failed", self.name, exc_info=True)
            ok = False
        if self.state == "closed":
            return
        if not ok:
            self._set_state("failed")
            return
        self._rx = self._link.rx_srtp
        self._tx = self._link.tx_srtp
        self._link.set_srtp_sink(self._on_srtp)
        self.connected_at = time.monotonic()
        self._set_state("connected")

    def _on_link_state(self, layer: str, state: str) -> None:
        if state in ("failed", "closed") and self.state == "connected":
            logger.info("%s: %s %s", self.name, layer, state)
            self._set_state("failed")

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        try:
            self._on_state(state)
        except Exception:  # noqa: BLE001
            logger.exception("%s: state handler failed", self.name)

    # --- receive (per packet) ----------------------------------------------

    def _on_srtp(self, data: bytes) -> None:
        # Shorter than an RTP header, or longer than libsrtp's receive buffer
        # (no legitimate peer sends over the 1500-byte path MTU).
        if len(data) < 12 or len(data) > MAX_SRTP_DATAGRAM_BYTES:
            self.srtp_errors += 1
            return
        rx = self._rx
        try:
            # RFC 5761 §4: RTCP packet types 192..223 in the second byte.
            if 191 < data[1] < 224:
                plain = rx.unprotect_rtcp(data)  # type: ignore[union-attr]
                self.rx_rtcp_packets += 1
                self._on_rtcp(plain)
            else:
                plain = rx.unprotect(data)  # type: ignore[union-attr]
                self.rx_rtp_packets += 1
                self.rx_rtp_bytes += len(data)
                self._on_rtp(plain, time.monotonic())
        except pylibsrtp.Error:
            self.srtp_errors += 1
        except Exception:  # noqa: BLE001 - never let one packet end the transport
            self.handler_errors += 1
            if self.handler_errors == 1 or self.handler_errors % 1000 == 0:
                logger.exception(
                    "%s: packet handler failed (%d so far)", self.name, self.handler_errors
                )

    # --- send (per packet) -------------------------------------------------

    def send_rtp(self, packet: bytes) -> bool:
        tx = self._tx
        if tx is None:
            return False
        try:
            datagram = tx.protect(packet)
        except (pylibsrtp.Error, ValueError):  # ValueError: larger than the SRTP buffer
            self.send_errors += 1
            return False
        self._link.send_raw(datagram)
        self.tx_rtp_packets += 1
        self.tx_rtp_bytes += len(datagram)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        tx = self._tx
        if tx is None:
            return False
        try:
            datagram = tx.protect_rtcp(packet)
        except (pylibsrtp.Error, ValueError):
            self.send_errors += 1
            return False
        self._link.send_raw(datagram)
        self.tx_rtcp_packets += 1
        return True

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    @property
    def remote_address(self) -> tuple[str, int] | None:
        return self._link.remote_address

    @property
    def local_address(self) -> tuple[str, int] | None:
        return self._link.local_address

    @property
    def dropped_datagrams(self) -> int:
        return self._link.dropped_datagrams

    async def close(self) -> None:
        if self.state == "closed":
            return
        self._set_state("closed")
        self._tx = None
        self._rx = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        await self._link.close()
