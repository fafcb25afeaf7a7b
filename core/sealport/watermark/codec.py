"""Payload <-> code bits: keyed tag + Reed-Solomon (GF(256)) with erasures.

Codeword = RS_encode(payload || tag), ``NSYM`` parity bytes. The blind decoder
tries a short ladder of erasure sets (unusable bins first, then the least
reliable bytes) and accepts a decode only if the keyed tag matches, so each
attempt lets a random word through with probability at most 2**-32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from reedsolo import ReedSolomonError, RSCodec

from .keys import NSYM, TAG_BYTES, code_bytes, payload_tag

_RS = RSCodec(NSYM)


def encode_bits(payload: bytes, key: bytes) -> np.ndarray:
    """(8 * code_bytes,) uint8 code bits for the payload."""
    word = bytes(_RS.encode(payload + payload_tag(key, payload)))
    return np.unpackbits(np.frombuffer(word, np.uint8))


def max_attempts(payload_bytes: int) -> int:
    """Upper bound on decode attempts (one per erasure-ladder rung)."""
    return NSYM + 1


@dataclass(frozen=True)
class Decoded:
    payload: bytes
    bit_errors: int
    attempts: int


def decode_bits(
    bits: np.ndarray, reliability: np.ndarray, usable: np.ndarray, key: bytes, payload_bytes: int
) -> tuple[Decoded | None, int]:
    """Decode hard bits with per-bit reliability; return (result or None, attempts made).

    ``usable[j]`` is False where the bin of code bit j had too few vertices: that
    byte is an erasure from the start. Then the least reliable remaining bytes are
    erased one more at a time until the erasure budget (NSYM) is used up.
    """
    n_bytes = code_bytes(payload_bytes)
    word = np.packbits(bits.astype(np.uint8)).tobytes()
    rel = np.where(usable, reliability, -1.0).reshape(n_bytes, 8).min(axis=1)
    erased0 = [int(i) for i in np.flatnonzero(rel < 0)]
    order = [int(i) for i in np.argsort(rel, kind="stable") if rel[i] >= 0]
    attempts = 0
    for extra in range(0, NSYM - len(erased0) + 1):
        erase = erased0 + order[:extra]
        attempts += 1
        try:
            msg, full, _ = _RS.decode(word, erase_pos=erase or None)
        except ReedSolomonError:
            continue
        msg = bytes(msg)
        payload, tag = msg[:payload_bytes], msg[payload_bytes:]
        if len(tag) != TAG_BYTES or tag != payload_tag(key, payload):
            continue
        sent = np.unpackbits(np.frombuffer(bytes(full), np.uint8))
        errors = int(np.count_nonzero((sent != bits) & usable))
        return Decoded(payload, errors, attempts), attempts
    return None, attempts
