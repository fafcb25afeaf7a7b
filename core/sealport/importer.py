"""The secure import path, step by step (DESIGN.md §"The secure import path").

``secure_import`` is the one call adapters make. Each step is a small named
function; each failure is a typed error, leaves no plaintext behind, and is
written to the audit log before it propagates.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Cancelled, LocalIOError, SealportError
from .manifest import MAX_ENVELOPE_BYTES, Manifest, VerifiedManifest, verify_envelope
from .progress import Progress
from .trust import TrustPolicy

if TYPE_CHECKING:
    from .client import SealportClient


@dataclass(frozen=True)
class ImportResult:
    """A delivered file that passed every check, and what was checked."""

    path: Path
    manifest: Manifest
    manifest_sha256: str
    delivery_key_id: str
    root_fingerprint: str
    verified_at: str
    format_summary: dict[str, Any] = field(default_factory=dict)
    watermark_status: str = "none"
    checks: tuple[str, ...] = ()


def request_delivery(client: SealportClient, asset_id: str, device_id: str) -> dict[str, Any]:
    reply = client.api.post(f"/api/v1/assets/{asset_id}/deliveries", {"device_id": device_id})
    if not isinstance(reply, dict) or "delivery_id" not in reply:
        raise SealportError("The server's reply to the import request was not understood.")
    return reply


def fetch_manifest(
    client: SealportClient, delivery: dict[str, Any], progress: Progress | None = None
) -> Any:
    """The signed envelope; ``progress`` lets a cancel cut short a retry's backoff."""
    return client.api.get(delivery["manifest_url"], limit=MAX_ENVELOPE_BYTES, progress=progress)


def verify_manifest(
    client: SealportClient, envelope: Any, *, user: str, recipient: str
) -> VerifiedManifest:
    cfg = client.config
    policy = TrustPolicy(cfg.root_fingerprints, cfg.revoked_delivery_keys, cfg.clock_skew_seconds)
    vm = verify_envelope(
        envelope, policy=policy, now=int(time.time()), user=user, recipient=recipient
    )
    client.rollback.check(vm.manifest.asset_id, vm.manifest.version)
    return vm


def download_ciphertext(
    client: SealportClient,
    delivery: dict[str, Any],
    m: Manifest,
    progress: Progress,
    observer: Any = None,
) -> Path:
    from .transport import download_payload

    dest = client.config.cache_dir / "deliveries" / f"{m.delivery_id}.age"
    return download_payload(
        client.session,
        client.api.url(delivery["payload_url"]),
        dest,
        expected_size=m.payload.size,
        expected_sha256=m.payload.sha256,
        headers=client.api.header_factory("GET", client.api.url(delivery["payload_url"])),
        timeout=client.config.timeout,
        progress=progress,
        observer=observer,
    )


def download_and_decrypt(
    client: SealportClient,
    delivery: dict[str, Any],
    m: Manifest,
    identity: str,
    out_dir: Path,
    progress: Progress,
    on_downloaded: Any = None,
) -> tuple[Path, Path]:
    """(ciphertext, verified plaintext temp file): the decoder follows the download
    (:mod:`sealport.stream_decrypt`); same checks and failures as one after the other."""
    from .stream_decrypt import download_and_decrypt as overlap

    ciphertext = client.config.cache_dir / "deliveries" / f"{m.delivery_id}.age"
    temp = overlap(
        lambda observer: download_ciphertext(client, delivery, m, progress, observer),
        ciphertext,
        out_dir,
        identity=identity,
        payload_size=m.payload.size,
        expected_size=m.file.size,
        expected_sha256=m.file.sha256,
        progress=progress,
        on_downloaded=on_downloaded,
    )
    return ciphertext, temp


def sweep_leftovers(out_dir: Path, audit: Any) -> None:
    """Delete plaintext temp files a killed import left behind, with an audit record each."""
    from .payload import sweep_abandoned

    for path in sweep_abandoned(out_dir):
        audit("cleanup.abandoned_plaintext", file=path.name)


def check_format(path: Path, m: Manifest) -> dict[str, Any]:
    from .errors import UnsafeAsset
    from .formats import check_file, detect_format

    if detect_format(m.file.path) != m.format:
        raise UnsafeAsset(
            f"The delivered file {m.file.path!r} does not match its declared format "
            f"({m.format}); nothing was imported. Tell your pipeline TD.",
            detail=f"extension says {detect_format(m.file.path)}, manifest says {m.format}",
        )
    report = check_file(path, m.format)
    return dict(report.summary)


def check_watermark(path: Path, m: Manifest, progress: Progress | None = None) -> str:
    """Verify the forensic mark named by the manifest (see :mod:`sealport.watermark_check`)."""
    if not m.watermark:
        return "none"
    from .watermark_check import verify_delivery_mark

    return verify_delivery_mark(path, m, progress)


def make_output_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(
            f"Sealport cannot create the import folder {out_dir}. Check the path and that "
            "you can write there, or choose another folder.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc


def place(temp: Path, out_dir: Path, m: Manifest) -> Path:
    final = out_dir / m.file.path
    try:
        os.replace(temp, final)
    except OSError as exc:
        raise LocalIOError(
            f"Sealport could not move the verified file into {out_dir}. Check that the "
            "folder is writable and the disk is not full.",
            detail=str(exc),
        ) from exc
    return final


def secure_import(
    client: SealportClient,
    asset_id: str,
    out_dir: Path,
    *,
    progress: Progress | None = None,
) -> ImportResult:
    """Download, verify and place one asset. Raises a SealportError on any failure."""
    progress = progress or Progress()
    audit = client.audit_event
    audit("import.start", asset_id=asset_id)
    temp: Path | None = None
    cached: Path | None = None  # this delivery's ciphertext; never reused by a later import
    checks: list[str] = []
    try:
        make_output_dir(out_dir)
        sweep_leftovers(out_dir, audit)
        user = client.user()
        key = client.device_key()
        progress.update("request", 0, 0)
        delivery = request_delivery(client, asset_id, key.device_id or "")
        envelope = fetch_manifest(client, delivery, progress)
        vm = verify_manifest(client, envelope, user=user, recipient=key.recipient)
        m = vm.manifest
        checks += ["signature chain", "expiry", "recipient", "user", "rollback"]
        audit(
            "manifest.verified",
            asset_id=asset_id,
            delivery_id=m.delivery_id,
            version=m.version,
            manifest_sha256=vm.sha256,
            key_id=vm.delivery_key_id,
        )
        cached = client.config.cache_dir / "deliveries" / f"{m.delivery_id}.age"

        def downloaded() -> None:
            checks.extend(["ciphertext size", "ciphertext sha256"])
            audit(
                "payload.downloaded",
                delivery_id=m.delivery_id,
                size=m.payload.size,
                sha256=m.payload.sha256,
            )

        ciphertext, temp = download_and_decrypt(
            client, delivery, m, key.identity, out_dir, progress, downloaded
        )
        checks += ["decrypt (age, authenticated)", "plaintext size", "plaintext sha256"]
        ciphertext.unlink(missing_ok=True)
        progress.update("format check", 0, 0)
        summary = check_format(temp, m)
        checks.append(f"{m.format} safe reader")
        progress.update("watermark", 0, 0)
        wm = check_watermark(temp, m, progress)
        if wm != "none":
            checks.append(f"watermark {wm}")
        progress.check()  # a cancel during the last check still stops before placing
        final = place(temp, out_dir, m)
        temp = None
        client.rollback.record(m.asset_id, m.version)
        result = ImportResult(
            path=final,
            manifest=m,
            manifest_sha256=vm.sha256,
            delivery_key_id=vm.delivery_key_id,
            root_fingerprint=vm.root_fingerprint,
            verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            format_summary=summary,
            watermark_status=wm,
            checks=tuple(checks),
        )
        audit(
            "import.verified",
            asset_id=asset_id,
            delivery_id=m.delivery_id,
            version=m.version,
            file=m.file.path,
            sha256=m.file.sha256,
            watermark=wm,
        )
        return result
    except Cancelled as exc:
        audit("import.cancelled", asset_id=asset_id, code=exc.code)
        raise
    except SealportError as exc:
        audit(
            "import.failed",
            asset_id=asset_id,
            code=exc.code,
            error=exc.message,
            detail=exc.detail[:500],
        )
        raise
    except KeyboardInterrupt:
        audit("import.cancelled", asset_id=asset_id, code="interrupted")
        raise
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
        if cached is not None:
            # A failed import leaves no orphan (partial) ciphertext: each import is a new
            # delivery, so nothing would ever resume it.
            with contextlib.suppress(OSError):
                cached.unlink(missing_ok=True)
