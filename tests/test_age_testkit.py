"""Conformance: every C2SP CCTV age vector in shared/age-testkit gives the expected outcome.

Supported kinds (X25519, header, stanza, HMAC, stream, armor) must produce
exactly the expected outcome and release exactly the expected plaintext
(``payload`` = SHA-256 of what may be released before a failure). Kinds we do
not implement (scrypt, hybrid post-quantum) must never succeed: they raise
AgeUnsupported, or the exact expected failure when the vector fails before or
outside recipient handling.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sealport import age
from sealport.errors import SealportError

TESTKIT = Path(__file__).resolve().parents[1].parent / "shared" / "age-testkit"

OUTCOME_ERRORS: dict[str, type[Exception]] = {
    "header failure": age.AgeHeaderError,
    "armor failure": age.AgeArmorError,
    "payload failure": age.AgePayloadError,
    "no match": age.AgeNoIdentityMatch,
    "HMAC failure": age.AgeHmacError,
}
UNSUPPORTED_GROUPS = ("scrypt", "hybrid")


@dataclass
class Vector:
    name: str
    expect: str
    payload: str | None
    identities: list[str] = field(default_factory=list)
    data: bytes = b""

    @property
    def unsupported(self) -> bool:
        return self.name.startswith(UNSUPPORTED_GROUPS) or self.name in (
            "armor_scrypt",
            "armor_hybrid",
        )


def _load(path: Path) -> Vector:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the vector header"
    meta: dict[str, list[str]] = {}
    for line in head.decode("utf-8").splitlines():
        key, _, value = line.partition(": ")
        meta.setdefault(key, []).append(value)
    if meta.get("compressed") == ["zlib"]:
        body = zlib.decompress(body)
    elif "compressed" in meta:
        raise AssertionError(f"{path.name}: unknown compression {meta['compressed']}")
    return Vector(
        name=path.name,
        expect=meta["expect"][0],
        payload=meta.get("payload", [None])[0],
        identities=meta.get("identity", []),
        data=body,
    )


def _vectors() -> list[Vector]:
    if not TESTKIT.is_dir():
        raise RuntimeError(f"age testkit missing at {TESTKIT}: the conformance suite cannot run")
    files = sorted(p for p in TESTKIT.iterdir() if p.is_file() and p.name != "README.md")
    return [_load(p) for p in files]


VECTORS = _vectors()
TALLY: Counter[str] = Counter()


def test_testkit_is_complete() -> None:
    # README says 143 vectors; fewer means the copy in shared/ was damaged.
    assert len(VECTORS) == 143


def _run(v: Vector) -> tuple[SealportError | None, bytes]:
    out = io.BytesIO()
    released = io.BytesIO()
    try:
        age.decrypt_stream(io.BytesIO(v.data), out, v.identities, on_plaintext=released.write)
    except SealportError as exc:
        assert out.getvalue() == released.getvalue()
        return exc, out.getvalue()
    assert out.getvalue() == released.getvalue()
    return None, out.getvalue()


@pytest.mark.parametrize("v", VECTORS, ids=[v.name for v in VECTORS])
def test_vector(v: Vector) -> None:
    exc, plaintext = _run(v)
    if v.unsupported:
        # Never success. AgeUnsupported, or the exact expected failure when the file
        # fails for a reason we do check (structure, scrypt-alone rule, no stanza at all).
        assert exc is not None, f"{v.name}: unsupported kind decrypted as success"
        if isinstance(exc, age.AgeUnsupported):
            TALLY["unsupported: AgeUnsupported"] += 1
            return
        assert v.expect != "success", f"{v.name}: got {exc!r}, expected AgeUnsupported"
        assert type(exc) is OUTCOME_ERRORS[v.expect], f"{v.name}: {exc!r} ({exc.detail})"
        TALLY[f"unsupported: exact {v.expect}"] += 1
        return
    if v.expect == "success":
        assert exc is None, f"{v.name}: {exc!r} ({getattr(exc, 'detail', '')})"
    else:
        assert exc is not None, f"{v.name}: expected {v.expect}, decrypted fine"
        want = OUTCOME_ERRORS[v.expect]
        assert type(exc) is want, f"{v.name}: want {want.__name__}, got {exc!r} ({exc.detail})"
    if v.payload is not None:
        assert hashlib.sha256(plaintext).hexdigest() == v.payload, f"{v.name}: released plaintext"
    else:
        assert plaintext == b"", f"{v.name}: released plaintext where none may be"
    TALLY[f"supported: {v.expect}"] += 1


def test_zz_tally(capsys: pytest.CaptureFixture[str]) -> None:
    """Defined last, so it runs last: prints the tally and checks every vector was counted."""
    total = sum(TALLY.values())
    with capsys.disabled():
        print(f"\nage testkit: {total}/{len(VECTORS)} vectors checked")
        for key, n in sorted(TALLY.items()):
            print(f"  {key}: {n}")
    if total:  # only meaningful when the whole file ran (not with -k selecting a subset)
        assert total == len(VECTORS), "some vectors did not pass"
