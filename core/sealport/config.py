"""The studio config (TOML) and its validation.

A studio deploys one ``sealport.toml`` to every workstation. Every error names
the file, the key and the fix; unknown keys are refused (a typo in a security
setting must not silently fall back to a default).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .paths import default_home

# section -> key -> (type, required)
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "idp": {
        "issuer": (str, True),
        "client_id": (str, True),
        "scopes": (list, False),
        "ca_file": (str, False),
        "flow": (str, False),
        "dpop": (bool, False),
    },
    "server": {
        "url": (str, True),
        "ca_file": (str, False),
        "pin_sha256": (str, False),
        "client_cert": (str, False),
        "client_key": (str, False),
        "timeout": ((int, float), False),
    },
    "trust": {
        "root_fingerprints": (list, True),
        "revoked_delivery_keys": (list, False),
        "clock_skew_seconds": (int, False),
    },
    "audit": {
        "log_file": (str, False),
        "report_to_server": (bool, False),
    },
    "paths": {
        "data_dir": (str, False),
        "cache_dir": (str, False),
    },
}

EXAMPLE = """\
[idp]
issuer = "https://sso.studio.example/realms/art"   # OIDC issuer (discovery URL base)
client_id = "sealport"                              # public client with device flow
scopes = ["openid", "offline_access", "profile"]
flow = "auto"                # "auto" | "pkce" (browser) | "device" (code on another device)
dpop = true                  # sender-constrained tokens (RFC 9449); key kept in the keyring

[server]
url = "https://assets.studio.example:8443"
ca_file = "/etc/sealport/studio-ca.pem"             # studio CA that signs the server cert
# pin_sha256 = "…"                                  # optional pin: SHA-256 (hex) of the server cert (DER)

[trust]
root_fingerprints = ["…"]                           # SHA-256 of the offline root key
revoked_delivery_keys = []

[audit]
report_to_server = true
"""


@dataclass(frozen=True)
class Config:
    """Validated studio config; paths are absolute."""

    source: Path
    issuer: str
    client_id: str
    server_url: str
    root_fingerprints: tuple[str, ...]
    scopes: tuple[str, ...] = ("openid", "offline_access", "profile")
    flow: str = "auto"
    """Sign-in flow: "auto" (browser on a desktop, device code over SSH/headless), "pkce", "device"."""
    dpop: bool = False
    """Ask for DPoP-bound tokens (RFC 9449); the proof key lives in the secret store."""
    idp_ca_file: Path | None = None
    ca_file: Path | None = None
    pin_sha256: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    timeout: float = 30.0
    revoked_delivery_keys: tuple[str, ...] = ()
    clock_skew_seconds: int = 120
    data_dir: Path = field(default_factory=default_home)
    audit_log: Path = field(default_factory=lambda: default_home() / "audit.jsonl")
    report_audit: bool = True
    cache_dir: Path = field(default_factory=lambda: default_home() / "cache")

    @property
    def home(self) -> Path:
        """This workstation's Sealport data folder (audit log, rollback state, locks)."""
        return self.data_dir


def default_config_path() -> Path:
    env = os.environ.get("SEALPORT_CONFIG")
    return Path(env).expanduser() if env else default_home() / "sealport.toml"


def load_config(path: Path | None = None) -> Config:
    path = (path or default_config_path()).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"No Sealport config found at {path}. Ask your pipeline TD for the studio's "
            "sealport.toml, or set SEALPORT_CONFIG to its location.",
            detail=f"missing file {path}\nexample:\n{EXAMPLE}",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The Sealport config {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses per nested array/table
        raise ConfigError(
            f"The Sealport config {path} nests arrays or tables too deeply to read."
        ) from exc
    return parse_config(raw, path)


def _check(raw: dict[str, Any], path: Path) -> None:
    for section, body in raw.items():
        if section not in _SCHEMA:
            raise ConfigError(
                f"Unknown section [{section}] in {path}. Allowed: "
                + ", ".join(f"[{s}]" for s in _SCHEMA)
                + ". Remove it or fix the spelling."
            )
        if not isinstance(body, dict):
            raise ConfigError(f"[{section}] in {path} must be a table.")
        for key, value in body.items():
            spec = _SCHEMA[section].get(key)
            if spec is None:
                raise ConfigError(
                    f"Unknown key '{section}.{key}' in {path}. Allowed keys in [{section}]: "
                    + ", ".join(_SCHEMA[section])
                    + ". Remove it or fix the spelling."
                )
            typ = spec[0]
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise ConfigError(f"'{section}.{key}' in {path} has the wrong type.")
        for key, (_, required) in _SCHEMA[section].items():
            if required and key not in body:
                raise ConfigError(f"Missing key '{section}.{key}' in {path}. Add it (see README).")
    for section, keys in _SCHEMA.items():
        if section not in raw and any(req for _, req in keys.values()):
            raise ConfigError(f"Missing section [{section}] in {path}. Add it (see README).")


def _data_dir(paths: dict[str, Any], base: Path) -> Path:
    """Where per-user state goes; the config itself may sit in a read-only place.

    ``paths.data_dir`` in the file wins (a demo profile pins itself), then
    ``SEALPORT_HOME``; otherwise the config's own folder when this user can write
    there (a personal profile), else the platform default (a studio config
    deployed read-only, e.g. to /etc/sealport).
    """
    explicit = _path(paths.get("data_dir"), base)
    if explicit is not None:
        return explicit
    if os.environ.get("SEALPORT_HOME"):
        return default_home()
    return base if os.access(base, os.W_OK) else default_home()


def _flow(value: str, path: Path) -> str:
    if value not in ("auto", "pkce", "device"):
        raise ConfigError(
            f'\'idp.flow\' in {path} must be "auto", "pkce" or "device" (got {value!r}).'
        )
    return value


def _path(value: Any, base: Path) -> Path | None:
    if value is None:
        return None
    try:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    except (ValueError, RuntimeError, OSError) as exc:
        # A NUL byte (ValueError) or an unknown ~user (RuntimeError) in a path: found by
        # tests/fuzz/fuzz_config.py; the artist must see which value to fix, not a traceback.
        raise ConfigError(
            f"The path {str(value)[:200]!r} in the Sealport config in {base} is not a usable "
            "path. Ask your pipeline TD to fix sealport.toml.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc


def parse_config(raw: dict[str, Any], path: Path) -> Config:
    _check(raw, path)
    base = path.parent
    idp, server, trust = raw["idp"], raw["server"], raw["trust"]
    audit, paths = raw.get("audit", {}), raw.get("paths", {})
    data_dir = _data_dir(paths, base)
    url = server["url"].rstrip("/")
    if not url.startswith("https://"):
        raise ConfigError(f"'server.url' in {path} must start with https:// (got {url}).")
    fps = tuple(str(f).lower() for f in trust["root_fingerprints"])
    if not fps or any(len(f) != 64 for f in fps):
        raise ConfigError(
            f"'trust.root_fingerprints' in {path} must list SHA-256 fingerprints (64 hex "
            "characters) of the studio root key; `sealport serve` prints it."
        )
    cfg = Config(
        source=path,
        issuer=idp["issuer"].rstrip("/"),
        client_id=idp["client_id"],
        scopes=tuple(idp.get("scopes", ("openid", "offline_access", "profile"))),
        flow=_flow(idp.get("flow", "auto"), path),
        dpop=bool(idp.get("dpop", False)),
        idp_ca_file=_path(idp.get("ca_file"), base),
        server_url=url,
        ca_file=_path(server.get("ca_file"), base),
        pin_sha256=(server.get("pin_sha256") or None),
        client_cert=_path(server.get("client_cert"), base),
        client_key=_path(server.get("client_key"), base),
        timeout=float(server.get("timeout", 30.0)),
        root_fingerprints=fps,
        revoked_delivery_keys=tuple(trust.get("revoked_delivery_keys", ())),
        clock_skew_seconds=int(trust.get("clock_skew_seconds", 120)),
        data_dir=data_dir,
        audit_log=_path(audit.get("log_file"), base) or data_dir / "audit.jsonl",
        report_audit=bool(audit.get("report_to_server", True)),
        cache_dir=_path(paths.get("cache_dir"), base) or data_dir / "cache",
    )
    for label, p in (("server.ca_file", cfg.ca_file), ("idp.ca_file", cfg.idp_ca_file)):
        if p is not None and not p.is_file():
            raise ConfigError(f"'{label}' in {path} points to {p}, which does not exist.")
    return cfg
