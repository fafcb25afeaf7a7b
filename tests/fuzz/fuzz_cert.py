"""Fuzz the delivery-key certificate check, :func:`sealport.trust.verify_delivery_cert`.

Random certificates never carry a valid root signature, so (as for the
manifest) the first input byte picks a mode: odd -> the input is the JSON
*certificate body*, signed here with the fixed root key, so the body parser
(types, validity window, revocation) sees fuzzed content; even -> the input is
the signed-cert JSON object as it arrives in an envelope, unsigned.
"""

from __future__ import annotations

import json

from _harness import fuzz, instrumented

with instrumented():
    from keys import NOW, fixed_keys
    from sealport import trust

KEYS = fixed_keys()
ROOT_PUB = KEYS.root.public_key()


def one(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode % 2:
        signed: object = {
            "cert": trust.b64e(rest),
            "signature": trust.b64e(KEYS.root.sign(trust.CERT_PREFIX + rest)),
        }
    else:
        try:
            signed = json.loads(rest)
        except (ValueError, RecursionError):
            return
    trust.verify_delivery_cert(signed, ROOT_PUB, KEYS.policy, NOW)


if __name__ == "__main__":
    fuzz(one)
