"""The one place that builds Sealport's HTTP policy.

Like requests' own ``Session``, a :class:`Transport` carries the policy so no
caller repeats it: TLS 1.3 minimum, the studio CA (never the system store
unless no CA is configured), optional certificate pin and client certificate,
timeouts, retries with backoff on idempotent requests only. It also owns the
bounded, resumable, hashed payload download.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import (
    HashMismatch,
    LocalIOError,
    SizeMismatch,
    TLSError,
    TransportError,
)
from .progress import Progress

CHUNK = 1024 * 1024
MAX_RESUMES = 8


def make_ssl_context(
    ca_file: Path | None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if client_cert is not None:
        ctx.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return ctx


class _PolicyAdapter(HTTPAdapter):
    """An adapter whose pools use our SSL context (and pin, when set)."""

    def __init__(self, ctx: ssl.SSLContext, pin_sha256: str | None, retries: Retry) -> None:
        self._ctx = ctx
        self._pin = pin_sha256
        super().__init__(max_retries=retries)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ctx
        if self._pin:
            kwargs["assert_fingerprint"] = self._pin
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Our SSL context already carries the CA and client cert; keep requests
        # from overriding it with the system bundle.
        return None

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Pool keys without requests' CA bundle: trust stays the studio's CA alone.

        Why: with ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` set (common on studio
        machines behind a proxy), requests turns ``verify`` into that bundle's path and
        urllib3 loads it into *our* context on every new connection: the studio-only
        context then also trusted every CA in the system bundle (145 here), and each
        connection paid ~0.06 s to parse it. Verification is always required.
        """
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        for key in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
            pool_kwargs.pop(key, None)
        pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        pool_kwargs["ssl_context"] = self._ctx
        return host_params, pool_kwargs


def _retry_policy() -> Retry:
    return Retry(
        total=4,
        connect=4,
        read=2,
        status=3,
        backoff_factor=0.5,
        status_forcelist=(502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
        raise_on_status=False,
        # A server's Retry-After can be minutes (rate limits): never sleep on it
        # inside a DCC; a 429 goes back to the artist as a typed error instead.
        respect_retry_after_header=False,
    )


def build_session(
    *,
    ca_file: Path | None,
    pin_sha256: str | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> requests.Session:
    """A ``requests.Session`` that speaks only TLS 1.3 to the studio's servers."""
    session = requests.Session()
    adapter = _PolicyAdapter(
        make_ssl_context(ca_file, client_cert, client_key), pin_sha256, _retry_policy()
    )
    session.mount("https://", adapter)
    session.mount("http://", _RefuseHTTP())
    session.headers["User-Agent"] = "sealport/0.1"
    return session


class _RefuseHTTP(HTTPAdapter):
    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG002
        raise TLSError(
            "Sealport only talks to servers over HTTPS. Ask your TD to fix the URL in "
            "sealport.toml.",
            detail=f"refused plain HTTP request to {request.url}",
        )


# OpenSSL's words for a TLS record that failed its integrity check, and for a stream
# cut mid-record. An EOF while *connecting* (urllib3: "Max retries exceeded") is what a
# server that refuses TLS 1.3 looks like, so EOF counts as damage only on an open stream.
_DAMAGED_IN_TRANSIT = ("bad_record_mac", "bad record mac", "decryption_failed")
_CUT_IN_TRANSIT = ("eof occurred in violation of protocol", "unexpected_eof", "unexpected eof")


def _damaged_in_transit(text: str) -> bool:
    low = text.lower()
    if any(mark in low for mark in _DAMAGED_IN_TRANSIT):
        return True
    return "max retries exceeded" not in low and any(mark in low for mark in _CUT_IN_TRANSIT)


def read_bounded(resp: requests.Response, limit: int, service: str) -> bytes:
    """The body of ``resp``, refusing more than ``limit`` bytes (endless-data defence)."""
    parts: list[bytes] = []
    size = 0
    for block in resp.iter_content(64 * 1024):
        size += len(block)
        if size > limit:
            raise TransportError(
                f"{service} sent an oversized reply; nothing was changed. Tell your TD.",
                detail=f"{resp.url}: body exceeds {limit} bytes",
            )
        parts.append(block)
    return b"".join(parts)


def describe_request_error(exc: requests.RequestException, url: str) -> TransportError:
    """Turn a requests failure into an artist-facing error."""
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc)
        if "fingerprint" in text.lower():
            msg = (
                "The server's certificate does not match the pinned one, so Sealport refused "
                "to connect. This can mean interception; tell your pipeline TD."
            )
        elif _damaged_in_transit(text):
            msg = (
                "The secure connection to the studio server was damaged or cut off in "
                "transit, so Sealport stopped; nothing was imported. Try again; if it keeps "
                "happening tell your pipeline TD (faulty network, or interception)."
            )
        elif "version" in text.lower() or "protocol" in text.lower():
            msg = (
                "The server does not support TLS 1.3, which Sealport requires, so no "
                "connection was made. Tell your pipeline TD."
            )
        else:
            msg = (
                "The server's certificate is not from your studio's certificate authority, so "
                "Sealport refused to connect. This can mean interception; tell your pipeline TD."
            )
        return TLSError(msg, detail=f"{url}: {text}")
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportError(
            "The studio server did not answer in time. Check your network and try again.",
            detail=f"{url}: {exc}",
        )
    return TransportError(
        "Sealport could not reach the studio server. Check your network or VPN and try again.",
        detail=f"{url}: {exc}",
    )


class DownloadObserver(Protocol):
    """Told which ciphertext bytes of ``dest`` are final, so a reader can follow the
    download (streaming decrypt, :mod:`sealport.stream_decrypt`)."""

    def reset(self) -> None:
        """``dest`` is about to be (re)written from byte 0: bytes read so far are void."""
        ...

    def committed(self, size: int) -> None:
        """Bytes ``[0, size)`` of ``dest`` are written and will not change (until a reset)."""
        ...


def _hash_existing(path: Path, progress: Progress | None, total: int) -> tuple[Any, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
            size += len(block)
            if progress:
                progress.update("resume", size, total)
    return h, size


def download_payload(
    session: requests.Session,
    url: str,
    dest: Path,
    *,
    expected_size: int,
    expected_sha256: str,
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    timeout: float = 30.0,
    progress: Progress | None = None,
    max_resumes: int = MAX_RESUMES,
    observer: DownloadObserver | None = None,
) -> Path:
    """Stream ``url`` into ``dest`` (ciphertext), resuming with Range after drops.

    Never reads more than ``expected_size`` bytes (endless-data defence) and
    checks size and SHA-256 before returning. A partial ``dest`` from an earlier
    run is resumed; on a final size or hash failure it is deleted. ``observer``
    (optional) is told which bytes of ``dest`` are final as they arrive.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and dest.stat().st_size <= expected_size:
            hasher, have = _hash_existing(dest, progress, expected_size)
            if observer is not None:
                observer.committed(have)
        else:
            if observer is not None:
                observer.reset()
            dest.unlink(missing_ok=True)  # EROFS even when missing on a read-only mount
            hasher, have = hashlib.sha256(), 0
    except OSError as exc:
        # Not a directory, read-only filesystem, permission denied: typed, not a traceback.
        raise LocalIOError(
            f"Sealport cannot write to its download folder {dest.parent}. Check that it "
            "exists, is writable and the disk is not full.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
    resumes = 0
    while have < expected_size:
        # A callable gives fresh headers per request (a DPoP proof is single-use).
        req_headers = dict((headers() if callable(headers) else headers) or {})
        if have:
            req_headers["Range"] = f"bytes={have}-"
        try:
            with session.get(url, headers=req_headers, stream=True, timeout=timeout) as resp:
                if have and resp.status_code == 200:
                    # Server ignored the Range: start over from byte 0.
                    hasher, have = hashlib.sha256(), 0
                    mode = "wb"
                elif resp.status_code in (200, 206):
                    mode = "ab" if have else "wb"
                elif resp.status_code == 416:
                    raise SizeMismatch(
                        _TAMPER, detail=f"server says range {have}- is unsatisfiable"
                    )
                else:
                    from .api import raise_for_response

                    raise_for_response(resp)
                    raise TransportError(_TAMPER, detail=f"unexpected {resp.status_code}")
                if mode == "wb" and observer is not None:
                    observer.reset()  # before the truncation, so no reader trusts old bytes
                _write_stream(resp, dest, mode, hasher, have, expected_size, progress, observer)
                have = dest.stat().st_size
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
        ) as exc:
            if dest.exists():
                hasher, have = _hash_existing(dest, None, expected_size)
            else:
                hasher, have = hashlib.sha256(), 0
            resumes += 1
            if resumes > max_resumes:
                raise describe_request_error(exc, url) from exc
            continue
        if have < expected_size and resp.status_code in (200, 206):
            # The server closed the stream cleanly but early: a truncated payload.
            resumes += 1
            if resumes > max_resumes:
                dest.unlink(missing_ok=True)
                raise SizeMismatch(
                    _TAMPER, detail=f"payload ended at {have} of {expected_size} bytes"
                )
    if not hmac.compare_digest(hasher.hexdigest(), expected_sha256):
        dest.unlink(missing_ok=True)
        raise HashMismatch(_TAMPER, detail="ciphertext SHA-256 differs from the manifest")
    return dest


_TAMPER = (
    "The asset download is damaged or was tampered with; nothing was imported. Try the "
    "import again; if it keeps failing tell your pipeline TD."
)


def _write_stream(
    resp: requests.Response,
    dest: Path,
    mode: str,
    hasher: Any,
    have: int,
    limit: int,
    progress: Progress | None,
    observer: DownloadObserver | None = None,
) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    try:
        fh = os.fdopen(os.open(dest, flags, 0o600), mode)
    except OSError as exc:
        raise LocalIOError(
            f"Sealport cannot write to its download folder {dest.parent}. Check that it "
            "exists, is writable and the disk is not full.",
            detail=str(exc),
        ) from exc
    try:
        with fh:
            for block in resp.iter_content(CHUNK):
                if have + len(block) > limit:
                    fh.close()
                    dest.unlink(missing_ok=True)
                    raise SizeMismatch(
                        _TAMPER, detail=f"server sent more than the manifest's {limit} bytes"
                    )
                try:
                    fh.write(block)
                except OSError as exc:
                    fh.close()
                    dest.unlink(missing_ok=True)
                    raise LocalIOError(
                        "The disk is full (or not writable) while downloading; nothing was "
                        "imported. Free some space and try again.",
                        detail=str(exc),
                    ) from exc
                hasher.update(block)
                have += len(block)
                if observer is not None:
                    fh.flush()  # the observer's reader uses the fd's bytes, not our buffer
                    observer.committed(have)
                if progress:
                    progress.update("download", have, limit)
    except requests.RequestException:
        # A network fault mid-body (requests' errors subclass OSError): keep the partial
        # file and let download_payload resume it with Range; it is not a local disk error.
        raise
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise LocalIOError(
            "The disk is full (or not writable) while downloading; nothing was "
            "imported. Free some space and try again.",
            detail=str(exc),
        ) from exc
