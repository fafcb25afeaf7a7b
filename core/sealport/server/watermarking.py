"""The reference server's watermark hook: mark every delivery, or say why not.

Why this shape: :func:`sealport.server.sealing.seal_delivery` calls
``settings.watermark(src, workdir, info)`` before encrypting; this module
provides that hook for the library in :mod:`sealport.watermark`.

- **Studio secret**: 32 random bytes in ``<data>/keys/watermark.key`` (0600),
  made on first use. It never leaves the server; trace needs it.
- **Payload** (64 bits) = ``HMAC-SHA256(secret, "sealport-wm/payload\\0" +
  delivery_id)[:8]``. Recomputable from the ledger's delivery ids, so
  ``sealport trace`` maps a payload back to its delivery without a new table.
- **Client key** = ``derive_delivery_key(secret, delivery_id)``: the manifest
  carries only this per-delivery key (see the trade-off in the library docs).
- A delivery never fails because it cannot be marked: meshes too small, or
  files the watermark layer cannot read or write (ASCII FBX) are delivered as they
  are with ``{"status": "unmarked", "reason": ...}`` in the manifest, so the
  client reports "unmarked: <reason>" and never "verified".
- After embedding, the marked copy is checked with ``verify_file`` (what the
  client will run); if the mark did not survive the writer the delivery goes
  out unmarked with that reason rather than blocking the artist's import. The
  hook hands that check to sealing, which runs it while encrypting
  (:func:`start_marking`); :func:`mark_delivery` is the same, synchronous.
- That check's reader yields, per mesh, the centre (in the scheme's frame) and whether every
  vertex is referenced; they go into the entry as ``"reader"`` hints (only once
  the file verified, from the file that is sealed), so the client can skip its
  triangle pass (:mod:`sealport.watermark_check` says why that is sound). The
  pre-mark pool marks through the same check, so pooled copies carry them too.
- What does not depend on the recipient (the parsed file and each mesh's
  embed plan) is kept per asset version in a bounded
  :class:`~sealport.server.wm_cache.PreparedCache` owned by the hook, so a
  delivery costs the keyed O(N) apply, the write and the check above.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
from hashlib import sha256
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..paths import ensure_private_dir
from ..watermark import (
    WatermarkCapacityError,
    WatermarkFormatError,
    derive_delivery_key,
    manifest_entry,
    reader_hints,
    verify_file,
)
from ..watermark.files import FileVerifyResult, PreparedFile, embed_prepared, prepare_file
from ..watermark.manifest import reader_json
from .premark import DEFAULT_PER_ASSET, PremarkPool
from .sealing import new_delivery_id
from .settings import ServerSettings, WatermarkCheck, WatermarkHook
from .wm_cache import PreparedCache

log = logging.getLogger(__name__)

SECRET_FILE = "watermark.key"
SECRET_BYTES = 32
PAYLOAD_BYTES = 8
_PAYLOAD_LABEL = b"sealport-wm/payload\x00"
_create_lock = threading.Lock()


def secret_path(data_dir: Path) -> Path:
    return Path(data_dir) / "keys" / SECRET_FILE


def _check_secret(data: bytes, path: Path) -> bytes:
    if len(data) != SECRET_BYTES:
        raise ConfigError(
            "The server's watermark key is damaged; deliveries cannot be marked.",
            f"{path}: {len(data)} bytes, expected {SECRET_BYTES}",
        )
    return data


def load_secret(data_dir: Path) -> bytes | None:
    """The studio secret, or None if this data folder has none yet (never creates it)."""
    path = secret_path(data_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return _check_secret(data, path)


def load_or_create_secret(data_dir: Path) -> bytes:
    """The studio secret, created (0600, atomically, first writer wins) on first use."""
    existing = load_secret(data_dir)
    if existing is not None:
        return existing
    path = secret_path(data_dir)
    ensure_private_dir(path.parent)
    with _create_lock:
        tmp = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(SECRET_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic create-if-absent with complete content
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            tmp.unlink(missing_ok=True)
    return _check_secret(path.read_bytes(), path)


def delivery_payload(secret: bytes, delivery_id: str) -> bytes:
    """The 64-bit payload naming ``delivery_id`` (keyed: unforgeable without the secret)."""
    mac = hmac.new(secret, _PAYLOAD_LABEL + delivery_id.encode("utf-8"), sha256)
    return mac.digest()[:PAYLOAD_BYTES]


def unmarked(reason: str) -> dict[str, Any]:
    """Manifest ``watermark`` object of a delivery that carries no mark, and why."""
    return {"status": "unmarked", "reason": reason}


def _prepared(
    src: Path, info: dict[str, Any], cache: PreparedCache[PreparedFile] | None
) -> PreparedFile:
    """The parsed asset: from ``cache`` when the delivery names asset, version and hash."""
    sha = info.get("sha256")
    if cache is None or not isinstance(sha, str) or "asset_id" not in info:
        return prepare_file(src)
    return cache.get(src, str(info["asset_id"]), int(info.get("version", 0)), sha, _prepare_planned)


def _prepare_planned(src: Path) -> PreparedFile:
    return prepare_file(src, plan=True)


def mark_delivery(
    data_dir: Path,
    src: Path,
    workdir: Path,
    info: dict[str, Any],
    cache: PreparedCache[PreparedFile] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Embed this delivery's payload into a copy of ``src`` in ``workdir``, checked.

    Returns (file to seal, manifest watermark object). Never raises for "cannot
    mark" cases; raises only for a broken studio key or unexpected bugs.
    ``cache`` keeps the parsed asset and its embed plans across deliveries
    (keyed by ``info``'s ``asset_id``, ``version`` and ``sha256``).
    """
    return settle(start_marking(data_dir, src, workdir, info, cache))


def settle(
    marked: tuple[Path, dict[str, Any]] | tuple[Path, dict[str, Any], WatermarkCheck],
) -> tuple[Path, dict[str, Any]]:
    """A hook's result made final on this thread: its deferred check run, if any."""
    if len(marked) == 2:
        return marked
    path, entry, check = marked
    return check() or (path, entry)


def start_marking(
    data_dir: Path,
    src: Path,
    workdir: Path,
    info: dict[str, Any],
    cache: PreparedCache[PreparedFile] | None = None,
) -> tuple[Path, dict[str, Any]] | tuple[Path, dict[str, Any], WatermarkCheck]:
    """:func:`mark_delivery` split in two: the marked copy now, its check deferred.

    Returns (path, entry) when the outcome is already final (unmarked cases), else
    (marked path, entry, check): ``check()`` reads the written file as the client
    will (``verify_file``) and returns None if it verifies, otherwise the pair to
    seal instead: a certified re-embed (read-back loop) into a new file, or the
    source unmarked with the reason. Sealing runs ``check`` while it encrypts the
    marked copy (the check is as costly as the encryption), so the delivery waits
    for the longer of the two, not their sum.
    """
    delivery_id = str(info["delivery_id"])
    fmt = str(info.get("format", "")).lower()
    secret = load_or_create_secret(data_dir)
    payload = delivery_payload(secret, delivery_id)
    key = derive_delivery_key(secret, delivery_id)
    suffix = src.suffix.lower()
    dst = Path(workdir) / f"marked{suffix}"
    try:
        prepared = _prepared(src, info, cache)
        # Planned meshes: the O(N) apply now; the read-back that matters (the
        # written file's) in ``check``; only if that fails, the certified apply.
        report = embed_prepared(prepared, dst, payload, key, certify=not prepared.plans)
    except WatermarkCapacityError:
        return src, unmarked("mesh too small")
    except WatermarkFormatError as exc:
        return src, _unsupported(delivery_id, fmt or suffix, exc)

    entry = manifest_entry(payload, key, report)

    def check() -> tuple[Path, dict[str, Any]] | None:
        try:
            result = verify_file(dst, key, payload)
            if result.status == "verified" and (not prepared.plans or _decodes(result)):
                # In place: sealing builds the manifest from ``entry`` only after this
                # returns, and None keeps the copy being encrypted (no second seal).
                entry["reader"] = reader_json(reader_hints(result))
                return None
            if prepared.plans:
                log.info("delivery %s: quick mark short, certified embed", delivery_id)
                again = Path(workdir) / f"marked-certified{suffix}"  # dst may be being read
                report2 = embed_prepared(prepared, again, payload, key, certify=True)
                result = verify_file(again, key, payload)
                if result.status == "verified":
                    return again, manifest_entry(payload, key, report2, reader_hints(result))
        except WatermarkCapacityError:
            return src, unmarked("mesh too small")
        except WatermarkFormatError as exc:
            return src, _unsupported(delivery_id, fmt or suffix, exc)
        log.warning("delivery %s: mark did not survive writing %s: %s", delivery_id, fmt, result)
        return src, unmarked(f"mark did not survive the {fmt or suffix} writer")

    return dst, entry, check


def _decodes(result: FileVerifyResult) -> bool:
    """Does every marked mesh read back by blind decode, not only by the known-payload
    detector? The quick (uncertified) apply leaves some meshes readable by the
    detector alone (the Blender-exported fandisk FBX, for most keys: the test
    ``test_quick_mark_readable_only_by_the_detector_is_not_accepted`` has one): the
    import check still verifies them, but a blind ``extract`` finds nothing and a
    manifest naming another payload reads as "no mark" instead of "another
    payload". Such a delivery gets the certified apply (read-back repairs)."""
    return all(m.method == "decode" for m in result.meshes if m.status == "verified")


def _unsupported(delivery_id: str, fmt: str, exc: WatermarkFormatError) -> dict[str, Any]:
    log.warning("delivery %s not watermarked: %s (%s)", delivery_id, exc.message, exc.detail)
    return unmarked(f"{fmt} not supported: {exc.message}")


def make_hook(
    data_dir: Path,
    cache: PreparedCache[PreparedFile] | None = None,
    *,
    premarked: int = DEFAULT_PER_ASSET,
) -> WatermarkHook:
    """The hook for ``ServerSettings.watermark``, bound to one data folder.

    It owns a bounded cache of parsed assets (``cache``, default 1 GiB / 32 assets)
    and, unless ``premarked`` is 0, a :class:`~.premark.PremarkPool` that keeps
    ``premarked`` copies of each recently delivered asset version marked ahead of
    the next request (``hook.premarks``; sealing takes from it and refills it).
    """
    data_dir = Path(data_dir)
    prepared: PreparedCache[PreparedFile] = cache if cache is not None else PreparedCache()

    def hook(
        src: Path, workdir: Path, info: dict[str, Any]
    ) -> tuple[Path, dict[str, Any]] | tuple[Path, dict[str, Any], WatermarkCheck]:
        return start_marking(data_dir, src, workdir, info, prepared)

    def mark_ahead(src: Path, workdir: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        return settle(start_marking(data_dir, src, workdir, info, prepared))

    hook.cache = prepared  # type: ignore[attr-defined]  # for tests and diagnostics
    hook.premarks = (  # type: ignore[attr-defined]
        PremarkPool(
            premark_dir(data_dir),
            mark_ahead,
            new_delivery_id,
            per_asset=premarked,
            prepare=lambda src, info: _prepared(src, info, prepared),
        )
        if premarked > 0
        else None
    )
    hook.__name__ = "sealport_watermark_hook"
    return hook


def premark_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "deliveries" / ".premarked"


def disabled(src: Path, workdir: Path, info: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Sentinel: ``ServerSettings(watermark=disabled)`` turns watermarking off.

    :func:`resolve_hook` maps it to "no hook", so manifests carry no watermark
    field at all; it is never called by the server.
    """
    raise RuntimeError("watermarking.disabled is a sentinel and must not be called")


def resolve_hook(settings: ServerSettings, data_dir: Path) -> WatermarkHook | None:
    """The hook the server uses: the studio watermark unless set otherwise.

    ``None`` (the default) -> mark every delivery with this data folder's key;
    :func:`disabled` -> no watermark; any other callable is used as given.
    """
    if settings.watermark is None:
        return make_hook(data_dir, premarked=settings.watermark_premarked)
    if settings.watermark is disabled:
        return None
    return settings.watermark
