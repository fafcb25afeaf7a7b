"""Key handling: per-delivery keys and the keyed layout (bins, permutation, whitening, tag).

Everything secret about a mark is derived from one 32-byte key with HKDF-SHA256
(from ``cryptography``), one label per use, so the pieces are independent.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache
from hashlib import sha256

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .geometry import CentreKind

SCHEME = "sealport-wm/v3"
"""What the server marks with: norms about the mean of the triangle corners, bins of
even width in norm where the mesh fills them (``mark._partition``), else as v2."""
SCHEME_V2 = "sealport-wm/v2"
"""Marks made 2026-12-06: norms about the mean of the triangle corners, keyed quantile
bins. Still read (verify and trace), never written; same keys and code as v3."""
SCHEME_V1 = "sealport-wm/v1"
"""Marks made before 2026-12-06: norms about the area-weighted centre. Still read
(verify and trace), never written; same keys, bins and code as v2."""
SCHEME_FRAMES: dict[str, CentreKind] = {
    SCHEME: "corner-even",
    SCHEME_V2: "corner",
    SCHEME_V1: "area",
}
"""The reading frame of every scheme this code reads."""
_SALT = b"sealport-watermark/v1"
TAG_BYTES = 4
"""Keyed tag length: a random (unmarked) mesh passes the tag with probability 2**-32."""
NSYM = 8
"""Reed-Solomon parity bytes: corrects e erasures + 2t errors with e + 2t <= 8."""
WIDTH_JITTER = 0.3
"""Bin widths are drawn uniformly in (1 +- WIDTH_JITTER) x mean width, from the key."""


def _hkdf(key: bytes, info: bytes, length: int = 32, salt: bytes = _SALT) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def derive_delivery_key(studio_secret: bytes, delivery_id: str) -> bytes:
    """Per-delivery watermark key: HKDF-SHA256(studio_secret, info=delivery_id).

    The client gets only this key (in the manifest), never the studio secret, so a
    leaked client key exposes the marks of one delivery and nothing else.
    """
    if len(studio_secret) < 16:
        raise ValueError("studio secret must be at least 16 bytes")
    if not delivery_id:
        raise ValueError("delivery_id must not be empty")
    return _hkdf(studio_secret, b"delivery-key\x00" + delivery_id.encode("utf-8"))


def code_bytes(payload_bytes: int) -> int:
    """Bytes in the Reed-Solomon codeword for a payload of ``payload_bytes``."""
    return payload_bytes + TAG_BYTES + NSYM


def payload_tag(key: bytes, payload: bytes) -> bytes:
    """Keyed tag over the payload (HMAC-SHA256 with a derived key, truncated)."""
    tag_key = _hkdf(key, b"tag")
    return hmac.new(tag_key, payload, sha256).digest()[:TAG_BYTES]


@dataclass(frozen=True)
class Layout:
    """Secret layout of a mark: everything the key decides about where bits live."""

    edges: np.ndarray
    """(n_bins + 1,) increasing bin edges on the normalised norm axis [0, 1]."""
    perm: np.ndarray
    """(n_bins,) code bit j lives in bin perm[j]."""
    whiten: np.ndarray
    """(n_bins,) 0/1 keyed whitening bit per bin (bin bit = code bit XOR whiten)."""

    @property
    def n_bins(self) -> int:
        return int(self.perm.shape[0])


@lru_cache(maxsize=256)
def layout(key: bytes, n_bins: int) -> Layout:
    """Derive the keyed bin layout for ``n_bins`` bins (one code bit per bin)."""
    seed = int.from_bytes(_hkdf(key, b"layout" + n_bins.to_bytes(4, "big")), "big")
    rng = np.random.Generator(np.random.PCG64(seed))
    widths = rng.uniform(1.0 - WIDTH_JITTER, 1.0 + WIDTH_JITTER, n_bins)
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    edges /= edges[-1]
    edges[-1] = 1.0
    perm = rng.permutation(n_bins)
    whiten = rng.integers(0, 2, n_bins).astype(np.uint8)
    for arr in (edges, perm, whiten):
        arr.setflags(write=False)
    return Layout(edges=edges, perm=perm, whiten=whiten)
