"""The server speaks TLS 1.3 only, with a studio CA made once per data folder."""

from __future__ import annotations

import os
import socket
import ssl
import stat
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from sealport.server.tls import ensure_tls


def _handshake(url: str, ctx: ssl.SSLContext) -> str:
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=u.hostname) as tls:
            return str(tls.version())


def test_tls13_client_connects(sealport_server):
    ctx = ssl.create_default_context(cafile=str(sealport_server.ca_file))
    assert _handshake(sealport_server.url, ctx) == "TLSv1.3"


def test_tls12_only_client_is_refused(sealport_server):
    ctx = ssl.create_default_context(cafile=str(sealport_server.ca_file))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(sealport_server.url, ctx)


def test_client_without_studio_ca_is_refused(sealport_server):
    # The system store does not know the studio CA: verification must fail.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{sealport_server.url}/oauth/jwks", timeout=10)


def test_weak_server_variant_is_tls12(sealport_server_factory):
    weak = sealport_server_factory(tls_max_version=ssl.TLSVersion.TLSv1_2, seed=False)
    ctx = ssl.create_default_context(cafile=str(weak.ca_file))
    assert _handshake(weak.url, ctx) == "TLSv1.2"
    ctx13 = ssl.create_default_context(cafile=str(weak.ca_file))
    ctx13.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises(ssl.SSLError):
        _handshake(weak.url, ctx13)


def test_foreign_ca_server_is_not_trusted_by_studio_ca(sealport_server_factory):
    rogue = sealport_server_factory(foreign_ca=True, seed=False)
    ctx = ssl.create_default_context(cafile=str(rogue.ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(rogue.url, ctx)


def test_ca_and_cert_properties(tmp_path: Path):
    mat = ensure_tls(tmp_path, extra_names=("assets.studio.test", "10.1.2.3"))
    ca = x509.load_pem_x509_certificate(mat.ca_file.read_bytes())
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649
    cert = x509.load_pem_x509_certificate(mat.cert_file.read_bytes())
    assert cert.issuer == ca.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "assets.studio.test"}
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", "::1", "10.1.2.3"}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert 89 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 91
    for key in (mat.ca_key, mat.key_file):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_tls_material_is_idempotent(tmp_path: Path):
    first = ensure_tls(tmp_path)
    blobs = {p: p.read_bytes() for p in (first.ca_file, first.ca_key, first.cert_file)}
    second = ensure_tls(tmp_path)
    assert second.ca_fingerprint == first.ca_fingerprint
    assert {p: p.read_bytes() for p in blobs} == blobs
    # A new name re-issues the server cert under the same CA, never a new CA.
    third = ensure_tls(tmp_path, extra_names=("newhost.test",))
    assert third.ca_fingerprint == first.ca_fingerprint
    assert third.ca_key.read_bytes() == blobs[first.ca_key]
    assert third.cert_file.read_bytes() != blobs[first.cert_file]


def test_restart_keeps_ca_and_root_key(sealport_server_factory, tmp_path: Path):
    a = sealport_server_factory(seed=False)
    ca_fp, root_fp = a.running.ca_fingerprint, a.root_fingerprint
    ca_pem = a.ca_file.read_bytes()
    data = a.data_dir
    a.stop()
    from sealport.server import start_background

    b = start_background(data)
    try:
        assert b.ca_fingerprint == ca_fp
        assert b.root_fingerprint == root_fp
        assert b.ca_file.read_bytes() == ca_pem
        r = requests.get(f"{b.url}/oauth/jwks", verify=str(b.ca_file), timeout=10)
        assert r.status_code == 200
    finally:
        b.stop()
