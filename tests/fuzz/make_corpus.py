"""Regenerate the seed corpora in ``corpus/<target>/`` from the demo assets and test keys.

Seeds are small, valid inputs (each parser's happy path) so the fuzzer starts
from deep inside each format instead of from random bytes. Regression inputs
for fixed findings live beside them as ``regress-*`` files and are *not*
touched here. Run: ``python tests/fuzz/make_corpus.py`` (idempotent).
"""

from __future__ import annotations

import io
import json
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from keys import NOW, RECIPIENT, USER, fixed_keys  # noqa: E402
from sealport import age, manifest, trust  # noqa: E402
from sealport.server.store import demo_assets_dir  # noqa: E402

CORPUS = HERE / "corpus"
AGE_RECIPIENT = "age1wuhc5y4aau5yam3ergk74tlgy6s6axql375ywnfcp6e33jdqv4eqdf373a"


def _write(target: str, name: str, data: bytes) -> None:
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"seed-{name}"
    if not path.exists():  # age seeds are randomised: keep committed ones stable
        path.write_bytes(data)


def _encrypt(pt: bytes, *, armor: bool = False) -> bytes:
    out = io.BytesIO()
    age.encrypt_stream(io.BytesIO(pt), out, [AGE_RECIPIENT], armor=armor)
    return out.getvalue()


def age_seeds() -> None:
    _write("age", "empty", _encrypt(b""))
    _write("age", "hello", _encrypt(b"hello, sealport\n"))
    _write("age", "armor", _encrypt(b"armored payload\n", armor=True))
    _write("age", "two-chunks", _encrypt(bytes(range(256)) * 257))  # 64 KiB + 256 B
    other = io.BytesIO()
    age.encrypt_stream(
        io.BytesIO(b"x"), other, [age.identity_to_recipient(age.generate_identity())]
    )
    _write("age", "other-recipient", other.getvalue())


def _manifest_bytes() -> bytes:
    m = manifest.Manifest(
        delivery_id="dl_0001",
        asset_id="as_0001",
        name="crate",
        project="demo",
        version=3,
        format="glb",
        files=(manifest.FileEntry("crate.glb", 5024, "ab" * 32),),
        payload=manifest.PayloadInfo("age-x25519", 5300, "cd" * 32),
        recipient=RECIPIENT,
        device_id="dev_0001",
        user=USER,
        issued_at=NOW - 10,
        expires_at=NOW + 3600,
        watermark={"scheme": "demo", "id": "wm_1"},
    )
    return m.to_json_bytes()


def manifest_seeds() -> None:
    keys = fixed_keys()
    data = _manifest_bytes()
    env = {
        "manifest": trust.b64e(data),
        "signature": trust.b64e(keys.delivery.sign(manifest.MANIFEST_PREFIX + data)),
        "key_id": keys.key_id,
        "delivery_cert": keys.cert,
        "root_public_key": trust.b64e(trust.raw_public(keys.root.public_key())),
    }
    raw_env = json.dumps(env).encode()
    _write("manifest", "parse", b"\x00" + data)
    _write("manifest", "envelope", b"\x01" + raw_env)
    _write("manifest", "envelope-resign", b"\x02" + raw_env)
    _write(
        "manifest",
        "envelope-plain-manifest",
        b"\x02"
        + json.dumps({**env, "manifest": trust.b64e(b'{"type":"sealport-manifest/v1"}')}).encode(),
    )


def cert_seeds() -> None:
    keys = fixed_keys()
    body = trust.b64d(keys.cert["cert"], "cert")
    _write("cert", "body", b"\x01" + body)
    revoked = json.loads(body)
    revoked["key_id"] = "dk-revoked"
    _write("cert", "body-revoked", b"\x01" + json.dumps(revoked).encode())
    _write("cert", "signed", b"\x00" + json.dumps(keys.cert).encode())


def format_seeds() -> None:
    demo = demo_assets_dir()
    assert demo is not None, "demo assets are missing"
    _write("glb", "crate.glb", (demo / "crate.glb").read_bytes())
    _write("3mf", "hex_nut.3mf", (demo / "hex_nut.3mf").read_bytes())
    _write("usd", "column.usdc", (demo / "column.usdc").read_bytes())
    _write("usd", "lamp.usdz", (demo / "lamp.usdz").read_bytes())
    _write(
        "usd",
        "tri.usda",
        b'#usda 1.0\n(\n    upAxis = "Y"\n)\n\ndef Mesh "tri"\n{\n'
        b"    int[] faceVertexCounts = [3]\n    int[] faceVertexIndices = [0, 1, 2]\n"
        b"    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n"
        b"    asset tex = @tex.png@\n}\n",
    )
    _write(
        "obj",
        "tri.obj",
        b"mtllib tri.mtl\no tri\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvn 0 0 1\n"
        b"usemtl m\nf 1/1/1 2/1/1 3/1/1\nf -1 -2 -3\nl 1 2\np 3\nmap_Kd -s 1 1 1 tex.png\n",
    )
    tri = struct.pack("<12fH", 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0)
    _write("stl", "binary", b"\0" * 80 + struct.pack("<I", 1) + tri)
    _write(
        "stl",
        "ascii",
        b"solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\n"
        b"vertex 0 1 0\nendloop\nendfacet\nendsolid t\n",
    )
    chair = (demo / "chair.fbx").read_bytes()
    _write("fbx", "header", b"\x01" + chair[:64])
    _write("fbx", "ascii", b"\x01; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n")
    _write("fbx", "refs", b"\x00" + b"\x02\x00texture tex.png C:/Users/x/tex.png\x01" * 2)


def config_seeds() -> None:
    _write(
        "config",
        "good.toml",
        (
            '[idp]\nissuer = "https://127.0.0.1:8443"\nclient_id = "sealport"\n'
            'scopes = ["openid"]\n[server]\nurl = "https://127.0.0.1:8443"\ntimeout = 5.5\n'
            'pin_sha256 = "00"\n[trust]\nroot_fingerprints = ["' + "a" * 64 + '"]\n'
            "clock_skew_seconds = 60\nrevoked_delivery_keys = []\n[audit]\n"
            'report_to_server = true\nlog_file = "audit.jsonl"\n[paths]\ncache_dir = "cache"\n'
        ).encode(),
    )


def server_seeds() -> None:
    # [endpoint index][content-type index][body]; see fuzz_server.ENDPOINTS / CONTENT_TYPES.
    form, js, multi = 0, 1, 2
    seeds = {
        "device-auth": (0, form, b"client_id=sealport&scope=openid+offline_access"),
        "token-device": (
            1,
            form,
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
            b"&device_code=abc&client_id=sealport",
        ),
        "token-refresh": (1, form, b"grant_type=refresh_token&refresh_token=xyz"),
        "revoke": (2, form, b"token=a.b.c"),
        "revoke-multipart": (
            2,
            multi,
            b'--sealportfuzz\r\nContent-Disposition: form-data; name="token"\r\n\r\nabc\r\n'
            b"--sealportfuzz--\r\n",
        ),
        "devices": (3, js, json.dumps({"public_key": AGE_RECIPIENT, "name": "ws"}).encode()),
        "delivery": (4, js, b'{"device_id": "@DEVICE@", "version": 1}'),
        "audit": (
            5,
            js,
            b'{"events": [{"event": "import_ok", "n": 1}], "device_id": "@DEVICE@"}',
        ),
        "device-page": (6, form, b"user_code=ABCD-EFGH&username=a&password=b&csrf=x"),
    }
    for name, (ep, ct, body) in seeds.items():
        _write("server", name, bytes([ep, ct]) + body)


def main() -> int:
    age_seeds()
    manifest_seeds()
    cert_seeds()
    format_seeds()
    config_seeds()
    server_seeds()
    total = sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file())
    print(f"corpus: {sum(1 for p in CORPUS.rglob('*') if p.is_file())} files, {total} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
