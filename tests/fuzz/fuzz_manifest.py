"""Fuzz the signed manifest: the JSON parser and the signature envelope.

Two entry points, chosen by the first input byte:

- ``parse_manifest(bytes)``: the strict field parser, fed raw bytes.
- ``verify_envelope(envelope, ...)``: the whole chain (root -> delivery cert
  -> signature -> fields -> expiry -> recipient) on the JSON object the
  client receives. A purely random envelope never gets past the signature, so
  the manifest bytes inside a well-formed envelope are *re-signed* with this
  target's own delivery key when the envelope's ``manifest`` field decodes:
  that drives fuzzed, validly signed manifests into every field check, as a
  compromised (but certified) delivery key could.
"""

from __future__ import annotations

import base64
import binascii
import json

from _harness import fuzz, instrumented

with instrumented():
    from keys import NOW, RECIPIENT, USER, fixed_keys
    from sealport import manifest, trust

KEYS = fixed_keys()


def one(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 3 == 0:
        manifest.parse_manifest(rest)
        return
    try:
        envelope = json.loads(rest)
    except (ValueError, RecursionError):
        return  # the transport layer rejects non-JSON before the envelope parser
    if mode % 3 == 2 and isinstance(envelope, dict) and isinstance(envelope.get("manifest"), str):
        try:
            body = base64.b64decode(envelope["manifest"], validate=True)
        except (binascii.Error, ValueError):
            body = None
        if body is not None:
            envelope["signature"] = trust.b64e(KEYS.delivery.sign(manifest.MANIFEST_PREFIX + body))
            envelope["delivery_cert"] = KEYS.cert
            envelope["key_id"] = KEYS.key_id
            envelope["root_public_key"] = trust.b64e(trust.raw_public(KEYS.root.public_key()))
    manifest.verify_envelope(envelope, policy=KEYS.policy, now=NOW, user=USER, recipient=RECIPIENT)


if __name__ == "__main__":
    fuzz(one)
