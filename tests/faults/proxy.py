"""A fault-injecting TCP proxy for loopback tests (stdlib sockets and threads).

Why a proxy and not response hooks: the faults that matter on a real network
(a dropped Wi-Fi link, a middlebox that truncates, a flipped bit, a stalled
peer, a reset) happen *below* TLS. The proxy relays the TLS bytes untouched
(it never terminates TLS, holds no keys) and damages them on the way, so the
client's real TLS stack, urllib3, requests and Sealport's resume logic all
see exactly what they would see in the field.

Faults act on the server->client byte stream of one TCP connection, at an
absolute offset in that stream. :meth:`FaultProxy.plan` (a callable) chooses
the fault for each accepted connection, so a test can inject faults randomly
per connection with a seeded RNG. Server->client bytes are relayed record by
record (TLS record header: type, version, 16-bit length) so that "truncate"
can stop cleanly *between* records, whereas "drop" cuts at any byte. With
``Fault(in_record=N)`` the offset counts from the first record of N bytes, to
aim at one reply's body (tests/faults/test_api_retry.py).

Modes:

- ``pass``: relay unchanged.
- ``drop``: at the offset, close both sockets (client sees EOF mid-record).
- ``truncate``: forward up to the first record boundary at or after the
  offset, then shut down cleanly (FIN, no TLS close_notify).
- ``bitflip``: flip one bit at the offset and keep relaying (the client's
  TLS layer must reject the record: AEAD tag / bad_record_mac).
- ``stall``: at the offset stop forwarding for ``stall_seconds`` (slow-loris),
  then carry on relaying.
- ``reset``: at the offset close the client socket with SO_LINGER 0 (RST).
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

MODES = ("pass", "drop", "truncate", "bitflip", "stall", "reset")
_RECORD_HEADER = 5


@dataclass(frozen=True)
class Fault:
    """What to do to one connection's server->client stream, and where."""

    mode: str = "pass"
    at: int = 0
    stall_seconds: float = 0.0
    in_record: int | None = None
    """If set, ``at`` counts from the start of the first TLS record of exactly this
    length (header included) instead of from the start of the stream: aims at one
    reply's body whatever came before it on the connection."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown fault mode {self.mode!r}")


Plan = Callable[[int], Fault]


def random_plan(
    modes: tuple[str, ...],
    *,
    span: int,
    probability: float = 1.0,
    stall_seconds: float = 3.0,
    seed: int = 0,
    early: float = 0.0,
    early_span: int = 16_000,
) -> Plan:
    """Per connection: with ``probability`` one of ``modes`` at an offset in [0, span).

    With probability ``early`` the offset is drawn from [0, early_span) instead:
    the TLS handshake and the small JSON replies (token, delivery, manifest)
    live there, and a uniform draw over a payload-sized span would rarely hit them.
    """
    rng = random.Random(seed)
    lock = threading.Lock()

    def plan(index: int) -> Fault:  # noqa: ARG001 - the index is for deterministic plans
        with lock:
            if rng.random() >= probability:
                return Fault("pass")
            limit = early_span if rng.random() < early else span
            return Fault(rng.choice(modes), rng.randrange(0, limit), stall_seconds)

    return plan


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            break
        buf += part
    return bytes(buf)


def _close(sock: socket.socket, *, rst: bool = False) -> None:
    """Close now, even while a relay thread is blocked in ``recv`` on ``sock``.

    A bare ``close()`` would be deferred by the kernel until that ``recv``
    returns (no FIN, no RST); ``shutdown`` wakes it. For a reset, SO_LINGER 0
    makes the final close send RST; SHUT_RD wakes the reader without a FIN.
    """
    try:
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD if rst else socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Connection:
    """One client connection and its upstream, relayed by two threads."""

    def __init__(
        self,
        proxy: FaultProxy,
        client: socket.socket,
        upstream: socket.socket,
        fault: Fault,
        records: list[int] | None = None,
    ) -> None:
        self.proxy = proxy
        self.records = records if records is not None else []
        self.client = client
        self.upstream = upstream
        self.fault = fault
        self.done = threading.Event()
        self.fired = False

    def start(self) -> None:
        threading.Thread(target=self._up, daemon=True, name="proxy-c2s").start()
        threading.Thread(target=self._down, daemon=True, name="proxy-s2c").start()

    def close(self, *, rst: bool = False) -> None:
        if self.done.is_set():
            return
        self.done.set()
        _close(self.client, rst=rst)
        _close(self.upstream)
        self.proxy._forget(self)

    def _up(self) -> None:
        try:
            while not self.done.is_set():
                data = self.client.recv(65536)
                if not data:
                    # Client half-closed: pass the FIN on, keep the other direction.
                    self.upstream.shutdown(socket.SHUT_WR)
                    return
                self.upstream.sendall(data)
        except OSError:
            self.close()

    def _fire(self, mode: str) -> None:
        if not self.fired:
            self.fired = True
            self.proxy._count(mode)

    def _down(self) -> None:
        f = self.fault
        sent = 0
        target = f.at if f.in_record is None else None  # absolute offset, once known
        try:
            while not self.done.is_set():
                header = _recv_exact(self.upstream, _RECORD_HEADER)
                body = b""
                if len(header) == _RECORD_HEADER:
                    body = _recv_exact(self.upstream, struct.unpack("!H", header[3:5])[0])
                record = header + body
                if not record:
                    self.client.shutdown(socket.SHUT_WR)
                    self.close()
                    return
                end = sent + len(record)
                self.records.append(len(record))
                if target is None and len(record) == f.in_record:
                    target = sent + f.at
                if f.mode != "pass" and not self.fired and target is not None and end > target:
                    cut = target - sent  # index inside this record
                    if f.mode == "truncate":
                        if cut > 0:
                            self.client.sendall(record)
                        self._fire("truncate")
                        self.client.shutdown(socket.SHUT_WR)
                        self.close()
                        return
                    if f.mode in ("drop", "reset"):
                        self.client.sendall(record[:cut])
                        self._fire(f.mode)
                        self.close(rst=f.mode == "reset")
                        return
                    if f.mode == "bitflip":
                        flipped = bytearray(record)
                        flipped[cut] ^= 1 << self.proxy.rng.randrange(8)
                        record = bytes(flipped)
                        self._fire("bitflip")
                    elif f.mode == "stall":
                        self.client.sendall(record[:cut])
                        record = record[cut:]
                        release = self.proxy._release
                        self._fire("stall")
                        release.wait(f.stall_seconds)
                        if self.done.is_set():
                            return
                self.client.sendall(record)
                sent = end
                if len(record) < _RECORD_HEADER or len(header) < _RECORD_HEADER:
                    self.client.shutdown(socket.SHUT_WR)
                    self.close()
                    return
        except OSError:
            self.close()


class FaultProxy:
    """Listen on loopback, relay each connection to ``upstream`` with a planned fault."""

    def __init__(
        self,
        upstream: tuple[str, int] | None = None,
        *,
        plan: Plan | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.plan: Plan = plan or (lambda _i: Fault("pass"))
        self.rng = random.Random(seed)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self.host, self.port = self._listener.getsockname()[:2]
        self._lock = threading.Lock()
        self._live: set[_Connection] = set()
        self.connections = 0
        self.records: dict[int, list[int]] = {}
        """Per connection index: the sizes of the TLS records read from upstream, in order
        (what a test needs to aim a fault at one reply's body)."""
        self.fired: Counter[str] = Counter()
        self._stopped = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._release.set()
        _close(self._listener)
        with self._lock:
            live = list(self._live)
        for conn in live:
            conn.close()
        self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def release_stalls(self) -> None:
        """End every stall in progress now (they carry on relaying)."""
        release, self._release = self._release, threading.Event()
        release.set()

    def drop_all(self) -> None:
        """Close every open connection now (e.g. to force fresh connections)."""
        with self._lock:
            live = list(self._live)
        for conn in live:
            conn.close()

    def _count(self, mode: str) -> None:
        with self._lock:
            self.fired[mode] += 1

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._live.discard(conn)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = self.connections
                self.connections += 1
            if self.upstream is None:
                _close(client, rst=True)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client, rst=True)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            records: list[int] = []
            conn = _Connection(self, client, upstream, self.plan(index), records)
            with self._lock:
                self.records[index] = records
                self._live.add(conn)
            conn.start()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` (no timing asserts: callers assert the result, not the time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
