"""The sockets under requests: a write timeout of its own, and what the peer really received.

- urllib3 sends a request body under the *connect* timeout (it sets the socket's timeout to it before
  `request()`), so a send that stalls for 10 s on a slow or lossy uplink aborted a big upload and restarted it
  from zero. Our connections send under `write_timeout` (upload.timeout_seconds) instead; connecting still
  uses the connect timeout and reading the answer the read timeout.
- Goodput for the concurrency limiter is what the peer *acknowledged* (tcpi_bytes_acked), reported as the
  body goes and when the answer comes: bytes handed to the kernel arrive in bursts (a new request fills its
  socket buffer at once), which read as a fast request followed by a stalled one. With it goes what the
  connection sees of the path (`PathSample`): its smoothed and lowest round trip (a queue building on a full
  link) and its retransmissions (a lossy path, where each stream is held down by loss and more streams help).
- "The whole body was sent" used to mean "handed to the kernel", but on a 40 ms link the socket buffer holds
  hundreds of KB the peer has never seen. When a connection breaks, Linux's TCP_INFO says how much was never
  even transmitted (`tcpi_notsent_bytes`): any such byte, or a send that failed, means the server cannot hold
  the whole call, so the attempt is safely retried. Elsewhere (no TCP_INFO) the old, cautious rule stands.

One request at a time per thread (one session per worker, one connection per session), so the record of
the current request lives in a thread-local.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .concurrency import PathSample

log = logging.getLogger("importer.client")

# struct tcp_info (include/uapi/linux/tcp.h): 8 bytes of u8 fields, then u32s from offset 8; the u64
# tcpi_bytes_acked is at 120 and the u32 tcpi_notsent_bytes at 144 (kernels since 4.6; checked on this
# machine's 6.18 against a socket whose peer does not read). A shorter answer means an older kernel.
# The path: u32 tcpi_rtt (smoothed, us) at 68, tcpi_total_retrans at 100, tcpi_min_rtt (us) at 148,
# tcpi_data_segs_out at 156 (kernels since 4.9), tcpi_dsack_dups at 216 (5.3) and the bit
# tcpi_delivery_rate_app_limited, bit 0 of the byte at 7 (4.9).
_TCP_INFO_LEN = 280
_RTT = 68
_TOTAL_RETRANS = 100
_BYTES_ACKED = 120
_NOTSENT = 144
_MIN_RTT = 148
_DATA_SEGS_OUT = 156
_DSACK_DUPS = 216
_MIN_LEN = _NOTSENT + 4


class Observer(Protocol):
    """Told about uploads as they go (admission.Admission): body bytes, refusals, timeouts, resets, and time
    spent waiting on the client's own gates."""

    def sent(self, nbytes: int, path: PathSample | None = None) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def congestion(self, reason: str) -> None: ...


@dataclass(frozen=True)
class TcpState:
    acked: int  # bytes the peer acknowledged over the connection's life (the SYN counts as one)
    notsent: int  # bytes in the send queue never transmitted even once
    rtt: float = 0.0  # smoothed round trip, seconds
    min_rtt: float = 0.0  # lowest round trip seen, seconds (0: not known)
    segs_out: int = 0  # data segments sent over the connection's life
    retrans: int = 0  # segments retransmitted, less those the peer had already (DSACK)
    app_limited: bool = False  # the last delivery sample was limited by us, not the path (nothing to send)


def read_tcp_info(sock: socket.socket) -> TcpState | None:
    """TCP_INFO of a connected (or just broken) socket, or None where it cannot be read."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, ValueError):
        return None
    return parse_tcp_info(raw)


def parse_tcp_info(raw: bytes) -> TcpState | None:
    if len(raw) < _MIN_LEN:
        return None
    (acked,) = struct.unpack_from("=Q", raw, _BYTES_ACKED)
    (notsent,) = struct.unpack_from("=I", raw, _NOTSENT)
    (rtt,) = struct.unpack_from("=I", raw, _RTT)
    (retrans,) = struct.unpack_from("=I", raw, _TOTAL_RETRANS)
    if len(raw) < _DATA_SEGS_OUT + 4:
        return TcpState(acked, notsent)  # no view of the path: the limiter judges by goodput alone
    (min_rtt,) = struct.unpack_from("=I", raw, _MIN_RTT)
    (segs,) = struct.unpack_from("=I", raw, _DATA_SEGS_OUT)
    # A retransmission the peer reports as a duplicate (DSACK) was not a loss: a tail loss probe sent while
    # the server sat on its delayed ACK, as every request/response connection does.
    (dups,) = struct.unpack_from("=I", raw, _DSACK_DUPS) if len(raw) >= _DSACK_DUPS + 4 else (0,)
    return TcpState(acked, notsent, rtt / 1e6, min_rtt / 1e6, segs, max(0, retrans - dups), bool(raw[7] & 1))


@dataclass
class SendRecord:
    """What happened to the current request on the wire."""

    send_failed: bool = False  # a write to the socket raised: part of the request never left
    tcp: TcpState | None = None  # read just before the connection was closed
    observer: Observer | None = None
    reported: int = 0  # bytes reported to the observer for this request

    def peer_lacks_part(self) -> bool:
        """True only when the server certainly does not hold the whole request."""
        if self.tcp is not None and self.tcp.notsent > 0:
            log.info("%d bytes of the request were never transmitted (TCP_INFO): the server cannot hold the "
                     "whole call", self.tcp.notsent)
            return True
        return self.send_failed


_local = threading.local()


def current_record() -> SendRecord | None:
    return getattr(_local, "record", None)


def watch(observer: Observer | None) -> None:
    """Report the next request's acknowledged bytes to `observer` (None: to no one)."""
    _local.observer = observer


def take_back() -> None:
    """The current request did not upload anything: what it reported was not goodput."""
    record = current_record()
    if record is not None and record.observer is not None and record.reported:
        record.observer.sent(-record.reported)
        record.reported = 0


class _Sending:
    """Mixed into urllib3's connections (before them in the MRO)."""

    write_timeout: float = 300.0
    sock: Any
    _acked: int | None = None  # the peer's acknowledged bytes last time we looked, on this connection
    _segs: tuple[int, int] | None = None  # (segments sent, retransmitted) last time we looked

    def request(self, *args: Any, **kwargs: Any) -> None:
        _local.record = SendRecord(observer=getattr(_local, "observer", None))
        _local.observer = None
        # A kept-alive connection has acknowledged earlier requests: count from here (None: a new one)
        info = read_tcp_info(self.sock) if self.sock is not None and _local.record.observer is not None else None
        self._acked = info.acked if info is not None else None
        self._segs = (info.segs_out, info.retrans) if info is not None else None
        super().request(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]  # under the connect timeout
        self.sock.settimeout(self.write_timeout)
        try:
            super().send(data)  # type: ignore[misc]
        except BaseException:
            record = current_record()
            if record is not None:
                record.send_failed = True
            raise
        self._report(len(data) if isinstance(data, bytes | bytearray | memoryview) else 0)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        self._report(0)  # an answer: the server has the rest of the body
        return response

    def _report(self, handed: int) -> None:
        record = current_record()
        if record is None or record.observer is None or self.sock is None:
            return
        info = read_tcp_info(self.sock)
        path = None
        if info is None:
            delta = handed  # no TCP_INFO here: bytes handed to the kernel are the best we know
        else:
            delta = info.acked - (self._acked if self._acked is not None else 1)
            self._acked = info.acked
            segs, retrans = self._segs or (0, 0)
            self._segs = (info.segs_out, info.retrans)
            if info.rtt > 0:
                path = PathSample(info.rtt, info.min_rtt or info.rtt, info.segs_out - segs,
                                  max(0, info.retrans - retrans), app_limited=info.app_limited)
        if delta > 0:
            record.reported += delta
            record.observer.sent(delta, path)
        elif path is not None and path.segs > 0:
            record.observer.sent(0, path)

    def close(self) -> None:
        record = current_record()
        if record is not None and self.sock is not None and record.tcp is None:
            record.tcp = read_tcp_info(self.sock)
        super().close()  # type: ignore[misc]


def use_write_timeout(session: requests.Session, write_timeout: float) -> None:
    """Have the session's adapters (network.make_session's, with their trust) open connections that send
    under `write_timeout` and record what the peer received; proxied ones too (not SOCKS: its own pools)."""
    http_cls = type("HTTPConnection", (_Sending, HTTPConnection), {"write_timeout": write_timeout})
    https_cls = type("HTTPSConnection", (_Sending, HTTPSConnection), {"write_timeout": write_timeout})
    pools = {
        "http": type("HTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_cls}),
        "https": type("HTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_cls}),
    }
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        if not isinstance(adapter, HTTPAdapter):
            continue
        adapter.poolmanager.pool_classes_by_scheme = pools
        proxy_manager_for = adapter.proxy_manager_for

        def with_pools(proxy: str, _original: Any = proxy_manager_for, **kwargs: Any) -> Any:
            manager = _original(proxy, **kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = pools
            return manager

        adapter.proxy_manager_for = with_pools  # type: ignore[method-assign]
