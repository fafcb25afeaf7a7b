"""The studio CA, the server certificate and a TLS-1.3-only uvicorn runner.

On first run the data folder gets a small private CA (EC P-256, 10 years,
``pathlen=0``) and a 90-day server certificate for the loopback names plus
any extra names. Workstations trust the CA file (``client.toml`` points at
it), never the system store, so a public CA cannot vouch for a fake server.
Re-running is idempotent: existing material is reused and the server cert is
only re-issued when it nears expiry or lacks a requested name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..paths import atomic_write_bytes, ensure_private_dir

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 3650
SERVER_DAYS = 90
RENEW_BEFORE = dt.timedelta(days=7)


@dataclass(frozen=True)
class TLSMaterial:
    ca_file: Path
    ca_key: Path
    cert_file: Path
    key_file: Path
    ca_fingerprint: str
    """SHA-256 (hex) of the CA certificate's DER bytes."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    atomic_write_bytes(path, pem, mode=0o600)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def cert_fingerprint(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def create_ca(ca_dir: Path, common_name: str = "Sealport Studio CA") -> tuple[Path, Path]:
    """Make a CA key + self-signed certificate in ``ca_dir`` (ca.pem, ca.key)."""
    ensure_private_dir(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.pem"
    _write_key(key_path, key)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return cert_path, key_path


def _san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def issue_server_cert(
    ca_cert_file: Path, ca_key_file: Path, names: Iterable[str], cert_path: Path, key_path: Path
) -> None:
    """Sign a 90-day serverAuth certificate for ``names`` with the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_file.read_bytes())
    ca_key = _load_key(ca_key_file)
    names = list(names)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san_entries(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    atomic_write_bytes(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _cert_ok(cert_path: Path, names: list[str], ca_file: Path) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    have = set(san)
    return all(entry in have for entry in _san_entries(names))


def ensure_tls(data_dir: Path, extra_names: Iterable[str] = ()) -> TLSMaterial:
    """Create (first run) or reuse the CA and server certificate under ``data_dir/ca``."""
    ca_dir = ensure_private_dir(data_dir / "ca")
    ca_file, ca_key = ca_dir / "ca.pem", ca_dir / "ca.key"
    if not (ca_file.exists() and ca_key.exists()):
        create_ca(ca_dir)
    cert_file, key_file = ca_dir / "server.pem", ca_dir / "server.key"
    names = list(dict.fromkeys([*DEFAULT_NAMES, *extra_names]))
    if not (key_file.exists() and _cert_ok(cert_file, names, ca_file)):
        issue_server_cert(ca_file, ca_key, names, cert_file, key_file)
    return TLSMaterial(ca_file, ca_key, cert_file, key_file, cert_fingerprint(ca_file))


# --- running uvicorn -----------------------------------------------------------------
def make_config(
    app: Any,
    *,
    cert_file: Path,
    key_file: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_max_version: ssl.TLSVersion | None = None,
    log_level: str = "info",
    graceful_timeout: int = 3,
) -> uvicorn.Config:
    """A loaded uvicorn config whose SSL context refuses anything below TLS 1.3.

    uvicorn has no minimum-version option, so we load the config (which builds
    its SSLContext) and then tighten that context before the server starts;
    ``Server.serve`` skips ``load()`` when the config is already loaded.
    ``tls_max_version`` exists only so tests can run a deliberately weak server.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        proxy_headers=False,  # never trust X-Forwarded-For: the ledger records real IPs
        server_header=False,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=graceful_timeout,
    )
    config.load()
    assert config.ssl is not None
    if tls_max_version is None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        config.ssl.maximum_version = tls_max_version
    return config


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before the app exists, so port 0 can be resolved to the real port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (Linux, macOS): a response's header and body are
    # two TLS records, and with Nagle on the body waited for the client's delayed ACK
    # (~40 ms per API call on loopback, measured).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


def run_foreground(config: uvicorn.Config, sock: socket.socket) -> None:
    """Run in the foreground until Ctrl-C."""
    uvicorn.Server(config).run(sockets=[sock])


class RunningServer:
    """A uvicorn server on a background thread (tests, ``sealport demo``)."""

    def __init__(self, url: str, server: uvicorn.Server, thread: threading.Thread) -> None:
        self.url = url
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self, timeout: float = 10.0) -> None:
        # Idle keep-alive connections outlive the graceful period and uvicorn logs
        # that as an ERROR; on a deliberate stop it is noise, not a failure.
        log = logging.getLogger("uvicorn.error")
        level = log.level
        log.setLevel(logging.CRITICAL)
        try:
            self._server.should_exit = True
            self._thread.join(timeout)
        finally:
            log.setLevel(level)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(
    app_for_url: Callable[[str], Any],
    *,
    cert_file: Path,
    key_file: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    public_host: str | None = None,
    tls_max_version: ssl.TLSVersion | None = None,
    startup_timeout: float = 20.0,
) -> RunningServer:
    """Bind, build the app for the final URL, start uvicorn on a thread, wait until up."""
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    url = url_for(public_host or host, real_port)
    config = make_config(
        app_for_url(url),
        cert_file=cert_file,
        key_file=key_file,
        host=host,
        port=real_port,
        tls_max_version=tls_max_version,
        log_level="warning",
        graceful_timeout=1,
    )
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
        finally:
            sock.close()

    thread = threading.Thread(target=target, name=f"sealport-server-{real_port}", daemon=True)
    thread.start()
    ready = threading.Event()
    deadline = startup_timeout
    while not server.started and thread.is_alive() and deadline > 0:
        ready.wait(0.02)
        deadline -= 0.02
    if not server.started:
        server.should_exit = True
        thread.join(5)
        raise RuntimeError(f"sealport server did not start on {url}: {errors!r}")
    return RunningServer(url, server, thread)
