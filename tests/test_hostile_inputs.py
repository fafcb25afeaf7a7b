"""Hostile inputs end in typed errors with bounded memory (issue 6, "Bad input").

Decompression bombs, deeply nested XML/JSON/TOML, huge headers and bodies,
path traversal and symlinks in every archive type, NUL bytes and odd Unicode in
member and asset names. Every case asserts the *typed* error the artist sees
(never a raw exception), and the expensive ones run in a child process that
reports its peak RSS growth (``resource.ru_maxrss``) against a generous bound:
a memory bound, never a timing one. The first section replays each fuzzing
finding that was fixed (inputs in ``tests/fuzz/corpus/*/regress-*``).
"""

from __future__ import annotations

import io
import json
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sealport import age, manifest, trust
from sealport.config import load_config
from sealport.errors import ConfigError, MalformedManifest, SealportError, UnsafeAsset
from sealport.formats import check_file
from sealport.formats.threemf import check_3mf, read_3mf_mesh
from sealport.formats.usd import check_usd, check_usdz

FUZZ = Path(__file__).resolve().parent / "fuzz"
CORPUS = FUZZ / "corpus"
sys.path.insert(0, str(FUZZ))

from keys import NOW, RECIPIENT, USER, fixed_keys  # noqa: E402
from run_all import fresh_peak  # noqa: E402

BIG = 1 << 30  # max_bytes for direct reader calls
IDENTITY = "AGE-SECRET-KEY-1SPDHGU34E0N09NA0US2UMAZSZK6C59YFHYQETMKJA6Z7GDXMYENSC64VUU"


# --- helpers ---------------------------------------------------------------------------
def _copy(src: Path, tmp: Path, name: str) -> Path:
    dst = tmp / name
    dst.write_bytes(src.read_bytes())
    return dst


CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    b'relationships+xml"/><Default Extension="model" ContentType="application/'
    b'vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>'
)


def _rels(target: str = "/3D/3dmodel.model") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Target="'
        + target
        + '" Id="rel0" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
        "</Relationships>"
    ).encode()


MODEL = (
    b'<?xml version="1.0" encoding="UTF-8"?><model unit="millimeter" '
    b'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02"><resources>'
    b'<object id="1" type="model"><mesh><vertices><vertex x="0" y="0" z="0"/>'
    b'<vertex x="1" y="0" z="0"/><vertex x="0" y="1" z="0"/></vertices><triangles>'
    b'<triangle v1="0" v2="1" v3="2"/></triangles></mesh></object></resources>'
    b'<build><item objectid="1"/></build></model>'
)


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]], **kw: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=kw.get("compression", zipfile.ZIP_DEFLATED)) as z:
        for name, data in members:
            z.writestr(name, data)
    return path


def _threemf(path: Path, extra: list[tuple[str | zipfile.ZipInfo, bytes]] = (), **kw) -> Path:  # type: ignore[assignment]
    members = [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", kw.pop("rels", _rels())),
        ("3D/3dmodel.model", kw.pop("model", MODEL)),
        *extra,
    ]
    return _zip(path, members, **kw)


USDA = (
    b'#usda 1.0\ndef Mesh "tri"\n{\n    point3f[] points = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]\n}\n'
)


def _usdz(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    return _zip(path, members, compression=zipfile.ZIP_STORED)


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _rename_member(path: Path, old: bytes, new: bytes) -> None:
    """Rewrite a member name in the raw zip (local header + central directory).

    :mod:`zipfile` cannot write names with NUL bytes, so hostile names are
    patched in after the fact (same length keeps every offset valid).
    """
    assert len(old) == len(new)
    raw = path.read_bytes()
    assert raw.count(old) == 2, "expected the name in the local header and the directory"
    path.write_bytes(raw.replace(old, new))


CHILD = r"""
import json, resource, sys
from pathlib import Path
sys.path.insert(0, {fuzz!r})
from sealport.errors import SealportError
{setup}
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
err, typed, msg = None, False, ""
try:
{call}
except BaseException as exc:
    err, typed, msg = type(exc).__name__, isinstance(exc, SealportError), str(exc)[:500]
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps({{"error": err, "typed": typed, "message": msg, "grew_mb": grew,
                  "base_mb": base / 1024}}))
"""


def _in_child(setup: str, call: str) -> dict[str, object]:
    """Run ``call`` in a fresh interpreter; report its error and peak RSS growth (MiB)."""
    code = CHILD.format(
        fuzz=str(FUZZ),
        setup=setup,
        call="\n".join("    " + line for line in call.strip().splitlines()),
    )
    # Through fresh_peak: Linux carries the peak RSS across fork + exec, so a child
    # started straight from a large pytest process would begin with that peak as its
    # base and hide any growth below it (these bounds could not fail).
    proc = subprocess.run(
        fresh_peak([sys.executable, "-c", code]), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["base_mb"] < 512, out  # the child's own start, not an inherited peak
    return out


def _typed_bounded(setup: str, call: str, *, error: str, mb: float) -> dict[str, object]:
    out = _in_child(setup, call)
    assert out["typed"], out
    assert out["error"] == error, out
    assert out["grew_mb"] < mb, f"peak RSS grew {out['grew_mb']:.0f} MiB (bound {mb})"
    return out


# --- fixed fuzzing findings (regression inputs in the corpus) ----------------------------
def test_fuzz_3mf_corrupt_deflate_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "3mf" / "regress-bad-deflate", tmp_path, "a.3mf")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_3mf(path, max_bytes=BIG)


def test_fuzz_3mf_unknown_xml_encoding_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "3mf" / "regress-unknown-xml-encoding", tmp_path, "a.3mf")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_3mf(path, max_bytes=BIG)


def test_fuzz_usdz_negative_local_header_offset_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "usd" / "regress-usdz-negative-offset", tmp_path, "a.usdz")
    with pytest.raises(UnsafeAsset, match="zip directory is corrupt"):
        check_usdz(path, max_bytes=BIG)


def test_fuzz_usdz_stage_metadata_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    """An upAxis stored as a GfVec2f: reading the stage's up axis raised Tf.ErrorException
    out of the check (found by tests/fuzz/fuzz_usd.py in a CI-like run)."""
    path = _copy(CORPUS / "usd" / "regress-upaxis-wrong-type", tmp_path, "a.usdz")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_usdz(path, max_bytes=BIG)


def test_fuzz_usd_error_text_not_utf8_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "usd" / "regress-tf-error-not-utf8", tmp_path, "a.usd")
    with pytest.raises(UnsafeAsset, match="not a valid USD file"):
        check_usd(path, max_bytes=BIG)


@pytest.mark.qt_no_exception_capture  # pxr prints a converter TypeError via sys.excepthook
def test_fuzz_usd_corrupt_crate_value_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "usd" / "regress-corrupt-value", tmp_path, "a.usd")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_usd(path, max_bytes=BIG)


def test_fuzz_usd_reader_abort_is_contained_in_a_child(tmp_path: Path) -> None:
    """usd-core aborts the process on this layer; check_file runs it isolated and refuses."""
    path = _copy(FUZZ / "regress_native" / "pxr-abort.usd", tmp_path, "a.usd")
    with pytest.raises(UnsafeAsset, match="crashed") as err:
        check_file(path, "usd")
    assert "child exit -6" in err.value.detail  # SIGABRT in the child, not in us


def test_fuzz_cert_infinite_number_is_malformed() -> None:
    keys = fixed_keys()
    body = (CORPUS / "cert" / "regress-infinite-not-before").read_bytes()[1:]
    signed = {
        "cert": trust.b64e(body),
        "signature": trust.b64e(keys.root.sign(trust.CERT_PREFIX + body)),
    }
    with pytest.raises(MalformedManifest):
        trust.verify_delivery_cert(signed, keys.root.public_key(), keys.policy, NOW)


@pytest.mark.parametrize("name", ["regress-nul-in-path", "regress-unknown-home"])
def test_fuzz_config_unusable_path_is_a_config_error(name: str, tmp_path: Path) -> None:
    path = _copy(CORPUS / "config" / name, tmp_path, "sealport.toml")
    with pytest.raises(ConfigError, match="not a usable path"):
        load_config(path)


# --- decompression bombs ------------------------------------------------------------------
def test_3mf_zip_bomb_refused_without_inflating(tmp_path: Path) -> None:
    bomb = _threemf(tmp_path / "bomb.3mf", extra=[("3D/pad.bin", bytes(200 * 1024**2))])
    out = _typed_bounded(
        "from sealport.formats import check_file",
        f"check_file(Path({str(bomb)!r}), '3mf')",
        error="UnsafeAsset",
        mb=64,
    )
    assert "decompression bomb" in str(out["message"])


def test_3mf_member_lying_about_its_size_stays_bounded(tmp_path: Path) -> None:
    """The directory says 1 KiB, the deflate stream holds 64 MiB: read is capped, CRC fails."""
    payload = MODEL.replace(b"</model>", b"<!--" + b" " * (64 * 1024**2) + b"--></model>")
    path = _threemf(tmp_path / "liar.3mf", model=payload)
    raw = bytearray(path.read_bytes())
    # Patch the model member's uncompressed size (local header +22, directory entry +24).
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = 0
        while (pos := raw.find(sig, pos)) >= 0:
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            n = struct.unpack_from("<H", raw, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if bytes(raw[name_at : name_at + n]) == b"3D/3dmodel.model":
                struct.pack_into("<I", raw, pos + off, 1024)
            pos += 4
    path.write_bytes(bytes(raw))
    _typed_bounded(
        "from sealport.formats import check_file",
        f"check_file(Path({str(path)!r}), '3mf')",
        error="UnsafeAsset",
        mb=64,
    )


def test_usdz_compressed_member_refused(tmp_path: Path) -> None:
    path = _zip(tmp_path / "a.usdz", [("a.usda", USDA + b"#" * 100_000)])
    with pytest.raises(UnsafeAsset, match="uncompressed"):
        check_usdz(path, max_bytes=BIG)


def test_glb_chunk_longer_than_file_refused(tmp_path: Path) -> None:
    doc = b'{"asset":{"version":"2.0"}}'
    glb = (
        struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(doc))
        + struct.pack("<II", 1 << 31, 0x4E4F534A)
        + doc
    )
    path = tmp_path / "a.glb"
    path.write_bytes(glb)
    with pytest.raises(UnsafeAsset, match="longer than the file"):
        check_file(path, "glb")


# --- deep nesting --------------------------------------------------------------------------
def test_3mf_deeply_nested_xml_refused_bounded(tmp_path: Path) -> None:
    depth = 200_000
    model = MODEL.replace(b"<resources>", b"<resources>" + b"<x>" * depth + b"</x>" * depth)
    path = _threemf(tmp_path / "deep.3mf", model=model)
    _typed_bounded(
        "from sealport.formats import check_file",
        f"check_file(Path({str(path)!r}), '3mf')",
        error="UnsafeAsset",
        mb=400,
    )


def test_3mf_entity_expansion_refused(tmp_path: Path) -> None:
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE model [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><model>&b;</model>'
    )
    with pytest.raises(UnsafeAsset, match="DTD or entities"):
        check_3mf(_threemf(tmp_path / "lol.3mf", model=lol), max_bytes=BIG)


def _nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_manifest_deeply_nested_json_is_malformed() -> None:
    with pytest.raises(MalformedManifest):
        manifest.parse_manifest(_nested_json(100_000))
    with pytest.raises(MalformedManifest):  # a deep value inside a valid-looking manifest
        manifest.parse_manifest(
            _signed_manifest().replace(
                b'"watermark":', b'"x":' + _nested_json(100_000) + b',"watermark":'
            )
        )


def test_cert_body_deeply_nested_json_is_malformed() -> None:
    keys = fixed_keys()
    body = b'{"key_id": ' + _nested_json(100_000) + b"}"
    signed = {
        "cert": trust.b64e(body),
        "signature": trust.b64e(keys.root.sign(trust.CERT_PREFIX + body)),
    }
    with pytest.raises(MalformedManifest):
        trust.verify_delivery_cert(signed, keys.root.public_key(), keys.policy, NOW)


def test_glb_deeply_nested_json_refused(tmp_path: Path) -> None:
    doc = b'{"asset":{"version":"2.0"},"extras":' + _nested_json(50_000) + b"}"
    doc += b" " * (-len(doc) % 4)
    glb = (
        struct.pack("<4sII", b"glTF", 2, 20 + len(doc))
        + struct.pack("<II", len(doc), 0x4E4F534A)
        + doc
    )
    path = tmp_path / "deep.glb"
    path.write_bytes(glb)
    with pytest.raises(UnsafeAsset, match="nested too deeply"):
        check_file(path, "glb")


@pytest.mark.parametrize(
    "value", ["[" * 5000 + "]" * 5000, "{x=" * 3000 + "1" + "}" * 3000], ids=["array", "table"]
)
def test_config_deeply_nested_toml_is_a_config_error(value: str, tmp_path: Path) -> None:
    path = tmp_path / "sealport.toml"
    path.write_text(f"a = {value}\n")
    with pytest.raises(ConfigError, match="too deeply"):
        load_config(path)


# --- huge headers ----------------------------------------------------------------------------
def test_age_header_with_10mb_stanza_refused_bounded(tmp_path: Path) -> None:
    body = (b"A" * 64 + b"\n") * (10 * 1024**2 // 65)
    path = tmp_path / "huge.age"
    path.write_bytes(b"age-encryption.org/v1\n-> X25519 abc\n" + body + b"\n--- x\n")
    out = _typed_bounded(
        "import io\nfrom sealport import age",
        f"age.decrypt_stream(open({str(path)!r}, 'rb'), io.BytesIO(), [{IDENTITY!r}])",
        error="AgeHeaderError",
        mb=48,
    )
    assert out["message"]


def test_age_header_single_10mb_line_refused() -> None:
    data = b"age-encryption.org/v1\n-> X25519 " + b"A" * (10 * 1024**2) + b"\n"
    with pytest.raises(age.AgeHeaderError):
        age.decrypt_stream(io.BytesIO(data), io.BytesIO(), [IDENTITY])


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    from server_app import SeededServer

    return SeededServer()


HUGE = 24 * 1024**2


@pytest.mark.parametrize(
    ("path", "ctype", "body"),
    [
        ("/oauth/token", "application/x-www-form-urlencoded", b"grant_type=" + b"a" * HUGE),
        (
            "/oauth/device_authorization",
            "application/x-www-form-urlencoded",
            b"scope=" + b"a" * HUGE,
        ),
        ("/oauth/revoke", "application/x-www-form-urlencoded", b"token=" + b"a" * HUGE),
        (
            "/oauth/token",
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\n'
            + b"a" * HUGE
            + b"\r\n--b--\r\n",
        ),
        ("/api/v1/devices", "application/json", b'{"public_key": "' + b"a" * HUGE + b'"}'),
        ("/api/v1/audit", "application/json", b'{"events": [{"x": "' + b"a" * HUGE + b'"}]}'),
        ("/api/v1/audit", "application/json", b'{"events": [' + b"{}," * (HUGE // 3) + b"{}]}"),
        ("/api/v1/audit", "application/json", b'{"events": [' + _nested_json(100_000) + b"]}"),
        ("/api/v1/devices", "application/json", _nested_json(100_000)),
    ],
    ids=[
        "token-form",
        "device-auth-form",
        "revoke-form",
        "token-multipart",
        "devices-json",
        "audit-big-event",
        "audit-many-events",
        "audit-nested",
        "devices-nested",
    ],
)
def test_server_huge_or_nested_bodies_are_4xx(server, path: str, ctype: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": ctype}
    if path.startswith("/api/"):
        headers.update(server.auth)
    r = server.client.post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])


# --- path traversal in every archive and reference type ---------------------------------------
TRAVERSALS = ["../evil.model", "/etc/passwd", "C:/Windows/evil.model", "3D\\..\\..\\evil.model"]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_3mf_member_traversal_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeAsset, match="member name"):
        check_3mf(_threemf(tmp_path / "t.3mf", extra=[(name, b"x")]), max_bytes=BIG)


@pytest.mark.parametrize("target", ["/../../etc/passwd", "https://evil.example/m.model", "C:/m"])
def test_3mf_relationship_traversal_refused(target: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeAsset, match="refers to"):
        check_3mf(_threemf(tmp_path / "t.3mf", rels=_rels(target)), max_bytes=BIG)


def test_3mf_path_attribute_traversal_refused(tmp_path: Path) -> None:
    model = MODEL.replace(
        b'<item objectid="1"/>',
        b'<item objectid="1" xmlns:p="http://schemas.microsoft.com/3dmanufacturing/'
        b'production/2015/06" p:path="/../../secret.model"/>',
    )
    with pytest.raises(UnsafeAsset, match="refers to"):
        check_3mf(_threemf(tmp_path / "t.3mf", model=model), max_bytes=BIG)


@pytest.mark.parametrize("name", TRAVERSALS)
def test_usdz_member_traversal_refused(name: str, tmp_path: Path) -> None:
    path = _usdz(tmp_path / "t.usdz", [("a.usda", USDA), (name.replace(".model", ".usda"), USDA)])
    with pytest.raises(UnsafeAsset, match="member name"):
        check_usdz(path, max_bytes=BIG)


@pytest.mark.parametrize("ref", ["../outside.usda", "/etc/passwd.usda", "https://evil/x.usda"])
def test_usd_references_outside_refused(ref: str, tmp_path: Path) -> None:
    layer = USDA.replace(
        b'def Mesh "tri"', b'def Mesh "tri" (references = @' + ref.encode() + b"@)"
    )
    usdz = _usdz(tmp_path / "t.usdz", [("a.usda", layer)])
    with pytest.raises(UnsafeAsset, match="refers to"):
        check_usdz(usdz, max_bytes=BIG)
    usd = tmp_path / "t.usda"
    usd.write_bytes(layer)
    with pytest.raises(UnsafeAsset, match="refers to"):
        check_usd(usd, max_bytes=BIG)


@pytest.mark.parametrize("line", [b"mtllib ../../x.mtl", b"map_Kd /etc/passwd", b"call evil.obj"])
def test_obj_references_outside_refused(line: bytes, tmp_path: Path) -> None:
    path = tmp_path / "t.obj"
    path.write_bytes(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n" + line + b"\n")
    with pytest.raises(UnsafeAsset):
        check_file(path, "obj")


def test_glb_external_uri_refused(tmp_path: Path) -> None:
    doc = b'{"asset":{"version":"2.0"},"buffers":[{"byteLength":4,"uri":"../../secret.bin"}]}'
    doc += b" " * (-len(doc) % 4)
    glb = (
        struct.pack("<4sII", b"glTF", 2, 20 + len(doc))
        + struct.pack("<II", len(doc), 0x4E4F534A)
        + doc
    )
    path = tmp_path / "t.glb"
    path.write_bytes(glb)
    with pytest.raises(UnsafeAsset, match="external file"):
        check_file(path, "glb")


# --- symlinks in archives ----------------------------------------------------------------------
def test_3mf_symlink_member_refused(tmp_path: Path) -> None:
    path = _threemf(tmp_path / "s.3mf", extra=[(_symlink_info("3D/tex.png"), b"/etc/passwd")])
    with pytest.raises(UnsafeAsset, match="symbolic link"):
        check_3mf(path, max_bytes=BIG)


def test_usdz_symlink_member_refused(tmp_path: Path) -> None:
    path = _usdz(
        tmp_path / "s.usdz", [("a.usda", USDA), (_symlink_info("tex.png"), b"/etc/passwd")]
    )
    with pytest.raises(UnsafeAsset, match="symbolic link"):
        check_usdz(path, max_bytes=BIG)


# --- NUL bytes and odd Unicode in names ---------------------------------------------------------
def test_3mf_member_name_with_nul_refused(tmp_path: Path) -> None:
    path = _threemf(tmp_path / "n.3mf", extra=[("3D/textureX.png", b"x")])
    _rename_member(path, b"3D/textureX.png", b"3D/texture\x00.png")
    with pytest.raises(UnsafeAsset):
        check_3mf(path, max_bytes=BIG)


@pytest.mark.parametrize(
    "name",
    ["3D/tex\u202egnp.exe", "3D/te\u200bx.png", "3D/te\x1bx.png", "3D/" + "x" * 2000 + ".png"],
    ids=["rtl-override", "zero-width", "escape", "overlong"],
)
def test_zip_member_names_with_invisible_characters_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeAsset, match="member name"):
        check_3mf(_threemf(tmp_path / "u.3mf", extra=[(name, b"x")]), max_bytes=BIG)
    usdz = _usdz(tmp_path / "u.usdz", [("a.usda", USDA), (name, b"x")])
    with pytest.raises(UnsafeAsset, match="member name"):
        check_usdz(usdz, max_bytes=BIG)


def test_combining_characters_in_member_names_are_accepted(tmp_path: Path) -> None:
    """NFD names (macOS writes "e" + U+0301) are legitimate; they must not break the reader."""
    path = _threemf(tmp_path / "c.3mf", extra=[("3D/te\u0301xture.png", b"x")])
    assert check_3mf(path, max_bytes=BIG).summary["faces"] == 1
    vertices, faces = read_3mf_mesh(path)
    assert faces.shape == (1, 3)


def _signed_manifest(**changes: object) -> bytes:
    m = json.loads((CORPUS / "manifest" / "seed-parse").read_bytes()[1:])
    m.update(changes)
    return json.dumps(m).encode()


@pytest.mark.parametrize(
    "name",
    ["crate\u202egnp.exe", "crate\x00", "crate\u200d", "\ud800crate", "c" * 201],
    ids=["rtl-override", "nul", "zero-width-joiner", "lone-surrogate", "overlong"],
)
def test_manifest_asset_name_with_invisible_characters_is_malformed(name: str) -> None:
    with pytest.raises(MalformedManifest):
        manifest.parse_manifest(_signed_manifest(name=name))
    with pytest.raises(MalformedManifest):
        manifest.parse_manifest(_signed_manifest(project=name))


def test_manifest_asset_name_with_combining_characters_is_accepted() -> None:
    m = manifest.parse_manifest(_signed_manifest(name="cre\u0300me brule\u0301e"))
    assert m.name == "cre\u0300me brule\u0301e"


@pytest.mark.parametrize("path", ["crate\x00.glb", "../crate.glb", "cr\u202eate.glb"])
def test_manifest_file_name_hostile_is_malformed(path: str) -> None:
    entry = {"path": path, "size": 1, "sha256": "ab" * 32}
    with pytest.raises(MalformedManifest):
        manifest.parse_manifest(_signed_manifest(files=[entry]))


def test_verify_envelope_refuses_hostile_name_even_when_signed() -> None:
    keys = fixed_keys()
    data = _signed_manifest(name="crate\u202egnp.exe")
    env = {
        "manifest": trust.b64e(data),
        "signature": trust.b64e(keys.delivery.sign(manifest.MANIFEST_PREFIX + data)),
        "key_id": keys.key_id,
        "delivery_cert": keys.cert,
        "root_public_key": trust.b64e(trust.raw_public(keys.root.public_key())),
    }
    with pytest.raises(MalformedManifest):
        manifest.verify_envelope(env, policy=keys.policy, now=NOW, user=USER, recipient=RECIPIENT)


def test_hostile_fbx_is_refused_by_the_isolated_reader(tmp_path: Path) -> None:
    """Valid FBX header, garbage body: the node-tree stage refuses it before ufbx, we survive."""
    from sealport.server.store import demo_assets_dir

    demo = demo_assets_dir()
    assert demo is not None
    chair = (demo / "chair.fbx").read_bytes()
    path = tmp_path / "t.fbx"
    path.write_bytes(chair[:27] + bytes(range(256)) * 16)
    with pytest.raises(SealportError):
        check_file(path, "fbx")


def test_fuzz_3mf_patched_data_flag_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "3mf" / "regress-patched-data-flag", tmp_path, "a.3mf")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_3mf(path, max_bytes=BIG)


@pytest.mark.qt_no_exception_capture  # pxr prints a converter TypeError via sys.excepthook
def test_fuzz_usd_corrupt_value_while_listing_asset_paths_is_refused(tmp_path: Path) -> None:
    path = _copy(CORPUS / "usd" / "regress-corrupt-value-asset-paths", tmp_path, "a.usd")
    with pytest.raises(UnsafeAsset, match="corrupt"):
        check_usd(path, max_bytes=BIG)


def test_fuzz_usd_memory_hog_is_refused_by_the_capped_child(tmp_path: Path) -> None:
    """An 8 KB usdc that made usd-core allocate > 1.7 GB: the child's heap cap refuses it.

    Measured as the peak RSS of the checking child (RUSAGE_CHILDREN of a fresh
    interpreter that runs ``check_file``), bounded well below what it took uncapped.
    """
    path = _copy(FUZZ / "regress_native" / "pxr-oom.usd", tmp_path, "a.usd")
    code = (
        "import json, resource\nfrom pathlib import Path\nfrom sealport.formats import check_file\n"
        "from sealport.errors import UnsafeAsset\n"
        f"try:\n    check_file(Path({str(path)!r}), 'usd'); err = None\n"
        "except UnsafeAsset as exc:\n    err = 'UnsafeAsset'\n"
        "kid = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'error': err, 'child_mb': kid}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "UnsafeAsset", out
    assert out["child_mb"] < 1024, out
