"""The FastAPI app of the reference server and the ways to run it.

``create_app`` wires the development IdP, the resource API (PROTOCOL.md),
the ledger and sealing together for one data folder. ``serve_forever`` is
``sealport serve``; ``start_background`` runs the same server on a thread
for tests and ``sealport demo``.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import age
from ..errors import SealportError
from ..paths import ensure_private_dir
from . import idp as idp_mod
from .api_models import (
    AUTHED,
    AlertsOut,
    AssetsOut,
    AuditOut,
    DeliveriesOut,
    DeliveryOut,
    DeviceOut,
    MeOut,
    errors,
)
from .auth import AuthFailure, Principal, RemoteJWKS, StaticKeySource, TokenValidator
from .body_limit import BodyLimitMiddleware
from .detection import POLICY_REVOKED_MESSAGE
from .dpop import DPoPVerifier
from .ledger import DeviceRecord, Ledger
from .policy import Gate, Refusal
from .sealing import (
    SigningKeys,
    ensure_keys,
    manifest_path,
    payload_path,
    presealed_pool,
    seal_delivery,
    warm_premarks,
    write_client_config,
)
from .settings import API_AUDIENCE, ServerSettings
from .siem import SiemExporter
from .store import open_ledger
from .tls import (
    RunningServer,
    TLSMaterial,
    bind_socket,
    ensure_tls,
    make_config,
    run_in_thread,
    url_for,
)
from .watermarking import resolve_hook

CHUNK = 256 * 1024
"""Payload read/send block. Starlette iterates a sync generator on its thread pool,
one hop per block: curl fetched a sealed 256 MiB payload over loopback TLS at 126 MB/s
with 64 KiB blocks and 527 MB/s with 256 KiB (tests/bench/bench_download.py; 1 MiB gave
no more and holds ~3 MB per stalled connection instead of ~1 MB)."""
MAX_AUDIT_EVENT_BYTES = 16 * 1024


class APIError(Exception):
    """An error answer of the resource API: JSON ``{error, message}``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


class DeviceIn(BaseModel):
    public_key: str = Field(max_length=200)
    name: str = Field(default="workstation", max_length=128)


class DeliveryIn(BaseModel):
    device_id: str = Field(max_length=64)
    version: int | None = None


class AuditIn(BaseModel):
    events: list[dict[str, Any]]
    device_id: str | None = Field(default=None, max_length=64)


def _principal(request: Request) -> Principal:
    """FastAPI dependency: the caller proven by the Bearer token (or a 401)."""
    validator: TokenValidator = request.app.state.validator
    p = validator.from_request(request)  # Bearer, or DPoP token + proof (RFC 9449)
    gate: Gate = request.app.state.gate  # revocation, pipeline allow-list, rate (policy.py)
    return gate.admit(p, _ip(request))


# Module level on purpose: FastAPI resolves these (string) annotations from module globals.
Caller = Annotated[Principal, Depends(_principal)]


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """One ``bytes=`` range → (start, end inclusive); None = serve all; False = 416.

    Multi-range and malformed headers are ignored (RFC 9110 lets a server send
    the whole representation instead); a well-formed range that cannot be
    satisfied is a 416.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _RANGE.match(spec)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


def _stream(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as fh:
        fh.seek(start)
        left = length
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def create_app(
    data_dir: Path,
    *,
    settings: ServerSettings,
    ledger: Ledger | None = None,
    keys: SigningKeys | None = None,
) -> FastAPI:
    """The whole server for ``data_dir`` (which :func:`prepare` has set up)."""
    data_dir = Path(data_dir)
    ledger = ledger or open_ledger(data_dir)
    keys = keys or ensure_keys(data_dir)
    app = FastAPI(
        title="Sealport reference server",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.expose_openapi else None,
    )
    app.state.ledger = ledger
    app.state.settings = settings
    app.add_middleware(BodyLimitMiddleware, max_body=settings.max_request_body)
    from .openapi import install as install_openapi  # lazy: `python -m ...openapi`

    install_openapi(app)  # 400 for validation, IdP routes described (openapi.py)
    watermark_hook = resolve_hook(settings, data_dir)  # studio mark unless disabled
    app.state.premarks = getattr(watermark_hook, "premarks", None)  # closed with the server
    if watermark_hook is None:  # watermarking off: copies of the stored files encrypted ahead
        app.state.premarks = presealed_pool(data_dir, settings.watermark_premarked)
    warm_premarks(data_dir, ledger, app.state.premarks)  # background: recently delivered assets

    idp: idp_mod.DevIdP | None = None
    if settings.external_issuer:
        if not settings.external_jwks_uri:
            raise ValueError("external_issuer needs external_jwks_uri")
        source: Any = RemoteJWKS(settings.external_jwks_uri, ca_file=settings.external_ca_file)
    else:
        idp = idp_mod.DevIdP(data_dir, ledger, settings)
        source = StaticKeySource(idp.public_keyset)
    validator = TokenValidator(
        issuer=settings.issuer,
        audience=API_AUDIENCE,
        keys=source,
        ledger=ledger,
        leeway=settings.jwt_leeway,
        algorithms=settings.jwt_algorithms,
        dpop=DPoPVerifier(window=settings.dpop_window, require_nonce=settings.dpop_nonce),
        dpop_required=settings.dpop_required,
    )
    app.state.validator = validator
    app.state.idp = idp
    gate = app.state.gate = Gate(ledger, settings)
    siem = app.state.siem = SiemExporter(
        ledger, data_dir, files=settings.siem_files, target=settings.siem_syslog_target
    )
    siem.catch_up()
    siem.start()
    ledger.audit_listeners.append(siem.notify)

    @app.exception_handler(Refusal)
    def _refusal(request: Request, exc: Refusal) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error, "message": exc.message},
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(AuthFailure)
    def _auth_failure(request: Request, exc: AuthFailure) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error, "message": exc.message},
            status_code=exc.status,
            headers={"WWW-Authenticate": exc.www_authenticate(), **exc.headers},
        )

    @app.exception_handler(APIError)
    def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Body parse errors, unknown paths, wrong methods: same {error, message} shape.
        codes = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "error"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"error": "invalid_request", "message": "The request body is not valid."},
            status_code=400,
        )

    if idp is not None:
        app.include_router(idp_mod.router(idp, validator))

    @app.get("/api/v1/me", response_model=MeOut, responses=errors(*AUTHED))
    def me(p: Caller) -> dict[str, Any]:
        gate.allow(p, "me")
        return {"sub": p.sub, "name": p.name, "roles": list(p.roles)}

    @app.post("/api/v1/devices", response_model=DeviceOut, responses=errors(*AUTHED, 409))
    def register_device(body: DeviceIn, p: Caller) -> dict[str, Any]:
        gate.allow(p, "register_device")
        try:
            age.parse_recipient(body.public_key)
        except SealportError as exc:
            raise APIError(
                400, "invalid_request", "The workstation key is not a valid age recipient."
            ) from exc
        existing = ledger.device_by_key(body.public_key)
        if existing is not None:
            if existing.username != p.sub:
                raise APIError(
                    409, "conflict", "This workstation key is registered to another user."
                )
            return {"device_id": existing.device_id}
        rec = DeviceRecord(
            device_id="dev_" + secrets.token_hex(8),
            username=p.sub,
            public_key=body.public_key,
            name=body.name,
            created_at=int(time.time()),
        )
        if idp is not None and ledger.get_user(p.sub) is None:
            raise APIError(403, "forbidden", "Your account is not known to this server.")
        ledger.add_device(rec)
        ledger.add_audit(
            [{"event": "device_registered", "name": body.name}],
            source="server",
            username=p.sub,
            device_id=rec.device_id,
            sid=p.sid,
        )
        return {"device_id": rec.device_id}

    @app.get("/api/v1/assets", response_model=AssetsOut, responses=errors(*AUTHED))
    def list_assets(p: Caller) -> dict[str, Any]:
        gate.allow(p, "list_assets")
        return {"assets": [a.public() for a in ledger.list_latest_assets()]}

    @app.post(
        "/api/v1/assets/{asset_id}/deliveries",
        response_model=DeliveryOut,
        responses=errors(*AUTHED, 404),
    )
    def create_delivery(
        asset_id: str, body: DeliveryIn, p: Caller, request: Request
    ) -> dict[str, Any]:
        gate.allow(p, "create_delivery")  # roles + MFA policy (policy.py)
        device = ledger.get_device(body.device_id)
        if device is None or device.username != p.sub:
            raise APIError(
                403, "forbidden", "That workstation is not registered to you; sign in again here."
            )
        gate.device(device.device_id)
        asset = ledger.get_asset(asset_id, body.version)
        if asset is None:
            raise APIError(404, "not_found", "No such asset (or version).")
        if gate.spikes.check_delivery(p.sub, _ip(request)):
            raise AuthFailure(
                "session_revoked", POLICY_REVOKED_MESSAGE, "delivery spike: sessions revoked"
            )
        rec = seal_delivery(
            data_dir,
            ledger,
            keys,
            asset=asset,
            device=device,
            user=p.sub,
            client_ip=_ip(request),
            ttl=settings.manifest_ttl,
            watermark=watermark_hook,
            premarks=app.state.premarks,
        )
        ledger.add_audit(
            [
                {
                    "event": "delivery_sealed",
                    "delivery_id": rec.delivery_id,
                    "asset_id": asset_id,
                    "version": rec.version,
                }
            ],
            source="server",
            username=p.sub,
            device_id=device.device_id,
            sid=p.sid,
            client_ip=_ip(request),
        )
        base = f"{settings.public_url.rstrip('/')}/api/v1/deliveries/{rec.delivery_id}"
        return {
            "delivery_id": rec.delivery_id,
            "manifest_url": f"{base}/manifest",
            "payload_url": f"{base}/payload",
        }

    def _own_delivery(delivery_id: str, p: Principal) -> Any:
        rec = ledger.get_delivery(delivery_id)
        if rec is None or rec.username != p.sub:
            # Same answer for "not yours" and "does not exist": ids are not oracles.
            raise APIError(404, "not_found", "No such delivery.")
        return rec

    @app.get(
        "/api/v1/deliveries",
        response_model=DeliveriesOut,
        responses=errors(*AUTHED),
    )
    def list_deliveries(p: Caller, project: str | None = None) -> dict[str, Any]:
        """The caller's own deliveries; with ``project`` (lead, pipeline, admin) everyone's."""
        if project is None:
            gate.allow(p, "list_own_deliveries")
            rows = ledger.query(
                "SELECT * FROM deliveries WHERE username=? ORDER BY issued_at DESC LIMIT 500",
                (p.sub,),
            )
        else:
            gate.allow(p, "list_project_deliveries")
            rows = ledger.query(
                "SELECT d.* FROM deliveries d JOIN assets a ON a.asset_id=d.asset_id "
                "AND a.version=d.version WHERE a.project=? ORDER BY d.issued_at DESC LIMIT 500",
                (project[:200],),
            )
        return {"deliveries": [dict(r) for r in rows]}

    @app.get("/api/v1/admin/alerts", response_model=AlertsOut, responses=errors(*AUTHED))
    def list_alerts(p: Caller) -> dict[str, Any]:
        """Security alerts (spike responses), newest first; admins only."""
        gate.allow(p, "read_alerts")
        return {"alerts": gate.spikes.alerts()}

    _octets: dict[str, Any] = {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    _envelope: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}

    @app.get(
        "/api/v1/deliveries/{delivery_id}/manifest",
        response_class=Response,
        responses=errors(
            *AUTHED,
            404,
            ok={200: {"content": _envelope, "description": "Signed envelope (PROTOCOL.md)"}},
        ),
    )
    def get_manifest(delivery_id: str, p: Caller) -> Response:
        gate.allow(p, "read_own_delivery")
        rec = _own_delivery(delivery_id, p)
        gate.device(rec.device_id)
        data = manifest_path(data_dir, rec.delivery_id).read_bytes()
        return Response(data, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get(
        "/api/v1/deliveries/{delivery_id}/payload",
        response_class=Response,
        responses=errors(
            *AUTHED,
            404,
            416,
            ok={
                200: {"content": _octets, "description": "age ciphertext"},
                206: {"content": _octets, "description": "the requested byte range"},
            },
        ),
    )
    def get_payload(delivery_id: str, p: Caller, request: Request) -> Response:
        gate.allow(p, "read_own_delivery")
        rec = _own_delivery(delivery_id, p)
        gate.device(rec.device_id)
        path = payload_path(data_dir, rec.delivery_id)
        size = path.stat().st_size
        etag = f'"{rec.payload_sha256}"'
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Cache-Control": "no-store",
        }
        rng = parse_range(request.headers.get("range"), size)
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range.strip() != etag:
            rng = None
        if rng is False:
            return JSONResponse(
                {"error": "range_not_satisfiable", "message": "The requested range is invalid."},
                status_code=416,
                headers={"Content-Range": f"bytes */{size}", **headers},
            )
        if rng is None or rng is True:
            headers["Content-Length"] = str(size)
            return StreamingResponse(
                _stream(path, 0, size),
                media_type="application/octet-stream",
                headers=headers,
            )
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        return StreamingResponse(
            _stream(path, start, end - start + 1),
            status_code=206,
            media_type="application/octet-stream",
            headers=headers,
        )

    @app.post("/api/v1/audit", response_model=AuditOut, responses=errors(*AUTHED, 413))
    def post_audit(body: AuditIn, p: Caller, request: Request) -> dict[str, Any]:
        gate.allow(p, "post_audit")
        if len(body.events) > settings.max_audit_events:
            raise APIError(
                413, "too_large", f"At most {settings.max_audit_events} events per request."
            )
        for ev in body.events:
            if len(json.dumps(ev)) > MAX_AUDIT_EVENT_BYTES:
                raise APIError(413, "too_large", "An audit event is too large.")
        device_id = body.device_id
        if device_id is not None:
            dev = ledger.get_device(device_id)
            if dev is None or dev.username != p.sub:
                raise APIError(403, "forbidden", "That workstation is not registered to you.")
        n = ledger.add_audit(
            body.events,
            source="client",
            username=p.sub,
            device_id=device_id,
            sid=p.sid,
            client_ip=_ip(request),
        )
        return {"accepted": n}

    return app


# --- data folder + running -----------------------------------------------------------
@dataclass(frozen=True)
class Prepared:
    data_dir: Path
    tls: TLSMaterial
    keys: SigningKeys
    client_config_path: Path


def prepare(
    data_dir: Path, url: str, *, extra_names: tuple[str, ...] = (), ca_file: Path | None = None
) -> Prepared:
    """First-run set-up (idempotent): CA + server cert, signing keys, client.toml."""
    data_dir = ensure_private_dir(Path(data_dir).resolve())
    tls = ensure_tls(data_dir, extra_names)
    keys = ensure_keys(data_dir)
    cfg = write_client_config(
        data_dir, url=url, ca_file=ca_file or tls.ca_file, root_fingerprint=keys.root_fingerprint
    )
    return Prepared(data_dir, tls, keys, cfg)


class BackgroundServer(RunningServer):
    """A running server plus what a client needs to talk to it."""

    def __init__(self, running: RunningServer, prepared: Prepared, app: FastAPI) -> None:
        super().__init__(running.url, running._server, running._thread)
        self.data_dir = prepared.data_dir
        self.ca_file = prepared.tls.ca_file
        self.ca_fingerprint = prepared.tls.ca_fingerprint
        self.root_fingerprint = prepared.keys.root_fingerprint
        self.client_config_path = prepared.client_config_path
        self.app = app
        self.ledger: Ledger = app.state.ledger

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.app.state.siem.close()  # drain the SIEM export before the ledger closes
        if self.app.state.premarks is not None:
            self.app.state.premarks.close()  # never-issued marked copies are deleted
        self.ledger.close()


def start_background(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    settings: ServerSettings | None = None,
    tls_max_version: ssl.TLSVersion | None = None,
    cert_override: tuple[Path, Path] | None = None,
    public_url: str | None = None,
) -> BackgroundServer:
    """Run the server on a thread; ``port=0`` picks a free port (see ``.url``).

    ``tls_max_version`` and ``cert_override`` (cert, key signed by some other
    CA) exist for client tests that must see a weak or foreign server.
    ``public_url`` is the URL clients see when the server sits behind a proxy
    (issuer, payload URLs and client.toml use it; ``.url`` stays the real one).
    """
    settings = settings or ServerSettings()
    box: dict[str, Any] = {}

    def app_for(url: str) -> FastAPI:
        url = public_url.rstrip("/") if public_url else url
        prepared = prepare(data_dir, url, extra_names=_extra_names(host))
        box["prepared"] = prepared
        app = create_app(
            prepared.data_dir, settings=replace(settings, public_url=url), keys=prepared.keys
        )
        box["app"] = app
        return app

    tls = ensure_tls(ensure_private_dir(Path(data_dir).resolve()), _extra_names(host))
    cert, key = cert_override or (tls.cert_file, tls.key_file)
    running = run_in_thread(
        app_for, cert_file=cert, key_file=key, host=host, port=port, tls_max_version=tls_max_version
    )
    return BackgroundServer(running, box["prepared"], box["app"])


def _extra_names(host: str) -> tuple[str, ...]:
    return () if host in ("0.0.0.0", "::", "") else (host,)


def serve_forever(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8443,
    *,
    public_url: str | None = None,
    extra_names: tuple[str, ...] = (),
    settings: ServerSettings | None = None,
) -> None:
    """``sealport serve``: set up the data folder on first run, print trust info, serve."""
    from .tls import run_foreground

    sock = bind_socket(host, port)
    url = (public_url or url_for(host, sock.getsockname()[1])).rstrip("/")
    names = tuple(dict.fromkeys([*_extra_names(host), *extra_names, _url_host(url)]))
    prepared = prepare(Path(data_dir), url, extra_names=names)
    app = create_app(
        prepared.data_dir,
        settings=replace(settings or ServerSettings(), public_url=url),
        keys=prepared.keys,
    )
    print(f"Sealport reference server: {url}  (TLS 1.3 only)")
    print(f"  data folder:       {prepared.data_dir}")
    print(f"  studio CA:         {prepared.tls.ca_file}")
    print(f"  CA SHA-256:        {prepared.tls.ca_fingerprint}")
    print(f"  root key SHA-256:  {prepared.keys.root_fingerprint}  (trust.root_fingerprints)")
    print(f"  client config:     {prepared.client_config_path}")
    print("  keys/root.key is here for the demo only; keep the root key offline in production.")
    config = make_config(
        app,
        cert_file=prepared.tls.cert_file,
        key_file=prepared.tls.key_file,
        host=host,
        port=sock.getsockname()[1],
    )
    try:
        run_foreground(config, sock)
    finally:
        if app.state.premarks is not None:
            app.state.premarks.close()  # never-issued marked copies are deleted


def _url_host(url: str) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rsplit(":", 1)[0] if ":" in host else host
