"""The server's OpenAPI description: ``python -m sealport.server.openapi > docs/openapi.json``.

Why a post-processing step on top of FastAPI's generator: the resource API
declares its models in :mod:`sealport.server.app`, but two things FastAPI
cannot know are fixed here, in one place: validation errors are answered
with 400 ``{error, message}`` (not FastAPI's 422), and the development IdP's
routes read raw forms and answer HTML pages or RFC 6749 JSON errors, which
this table describes. schemathesis holds the live server to this document.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR = {"$ref": "#/components/schemas/ErrorOut"}
_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_OBJ = {"type": "object"}
_HTML = {"text/html": {"schema": {"type": "string"}}}


def _json(schema: dict[str, Any], why: str) -> dict[str, Any]:
    return {"description": why, "content": {"application/json": {"schema": schema}}}


def _form(**fields: str) -> dict[str, Any]:
    props = {k: {"type": "string", "description": v} for k, v in fields.items()}
    return {
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": props}}
        }
    }


def _pages(*codes: int) -> dict[str, Any]:
    """HTML page answers; 303 is the redirect back to the client's loopback URI."""
    out: dict[str, Any] = {}
    for code in codes:
        if code == 303:
            out["303"] = {
                "description": "Redirect to the client's redirect_uri",
                "headers": {"Location": {"schema": {"type": "string"}}},
            }
        else:
            out[str(code)] = {"description": "HTML page", "content": _HTML}
    return out


_OAUTH_ERRORS = {
    "400": _json(_OAUTH_ERROR, "RFC 6749 §5.2 error"),
    "401": _json(_OAUTH_ERROR, "Client authentication failed"),
}

IDP_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/.well-known/openid-configuration", "get"): {
        "summary": "OIDC discovery",
        "responses": {"200": _json(_OBJ, "Provider metadata")},
    },
    ("/oauth/jwks", "get"): {
        "summary": "Public signing keys",
        "responses": {"200": _json(_OBJ, "JWKS")},
    },
    ("/oauth/device_authorization", "post"): {
        "summary": "RFC 8628 device authorization",
        "requestBody": _form(client_id="public client id", scope="space-separated scopes"),
        "responses": {"200": _json(_OBJ, "device_code, user_code, ..."), **_OAUTH_ERRORS},
    },
    ("/oauth/token", "post"): {
        "summary": "Token endpoint (device_code, refresh_token, client_credentials)",
        "requestBody": _form(
            grant_type="grant type",
            device_code="device code",
            refresh_token="refresh token",
            client_id="client id",
            client_secret="pipeline client secret (client_secret_post)",
        ),
        "responses": {"200": _json(_OBJ, "Token response"), **_OAUTH_ERRORS},
    },
    ("/oauth/revoke", "post"): {
        "summary": "RFC 7009 revocation (always 200)",
        "requestBody": _form(token="token", token_type_hint="hint"),
        "responses": {"200": {"description": "Revoked (or unknown)"}},
    },
    ("/oauth/userinfo", "get"): {
        "summary": "OIDC userinfo",
        "responses": {
            "200": _json(_OBJ, "Claims"),
            "401": _json(_ERROR, "No valid access token"),
            "403": _json(_ERROR, "Refused by policy"),
            "429": _json(_ERROR, "Rate limited"),
        },
    },
    ("/oauth/authorize", "get"): {
        "summary": "Authorization code + PKCE sign-in page (RFC 8252 loopback redirect)",
        "responses": _pages(200, 303, 400, 403, 429),
    },
    ("/oauth/authorize", "post"): {
        "summary": "Sign-in page form post",
        "requestBody": _form(ticket="page ticket", csrf="CSRF token", username="user"),
        "responses": _pages(200, 303, 400, 403, 429),
    },
    ("/device", "get"): {
        "summary": "Device verification page",
        "responses": {"200": {"description": "HTML form", "content": _HTML}},
    },
    ("/device", "post"): {
        "summary": "Device verification form post",
        "requestBody": _form(
            csrf="CSRF token", step="confirm", user_code="code", username="user", password="pw"
        ),
        "responses": {
            str(code): {"description": why, "content": _HTML}
            for code, why in (
                (200, "Next page"),
                (400, "Wrong code or password"),
                (403, "CSRF failure"),
                (429, "Too many failures"),
            )
        },
    },
}


def _fix_validation_errors(op: dict[str, Any]) -> None:
    """Our RequestValidationError handler answers 400 ErrorOut, never 422."""
    responses = op.get("responses", {})
    if "422" in responses:
        del responses["422"]
        responses.setdefault(
            "400",
            {"description": "The request is malformed.", "content": _json(_ERROR, "")["content"]},
        )


def build(app: FastAPI) -> dict[str, Any]:
    """The finished document for ``app`` (deterministic: no server URL, sorted keys on output)."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description="Sealport reference server (PROTOCOL.md, SERVER_SECURITY.md).",
        routes=app.routes,
    )
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            _fix_validation_errors(op)
            known = IDP_OPERATIONS.get((path, method))
            if known is not None:
                op.update(json.loads(json.dumps(known)))
            elif not path.startswith("/api/"):
                # A route added elsewhere without a description here: say "anything" rather
                # than lie; test_openapi lists such routes so they get described.
                op["responses"] = {"default": {"description": "undescribed"}}
                op["x-undescribed"] = True
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    if "ErrorOut" not in schemas:
        schemas["ErrorOut"] = {
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
        }
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for path, ops in doc["paths"].items():
        if path.startswith("/api/"):
            for op in ops.values():
                op["security"] = [{"bearer": []}]
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build`'s document at the app's ``openapi_url``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def reference_app(data_dir: Path) -> FastAPI:
    """An app over a throw-away data folder, for generating the document."""
    from .app import create_app, prepare
    from .settings import ServerSettings

    url = "https://sealport.example:8443"
    prepared = prepare(data_dir, url)
    return create_app(
        prepared.data_dir,
        settings=ServerSettings(public_url=url, siem_files=False),
        keys=prepared.keys,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sealport-openapi-") as tmp:
        app = reference_app(Path(tmp) / "data")
        try:
            sys.stdout.write(dump(build(app)))
        finally:
            app.state.ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
