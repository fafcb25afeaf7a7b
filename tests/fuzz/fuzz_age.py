"""Fuzz the age decoder (header, armor, payload framing) with a fixed identity.

Entry point: :func:`sealport.age.decrypt_stream`, exactly as the client calls
it on a downloaded payload, with ``max_plaintext`` set (as the client sets it
from the manifest). The seed corpus is encrypted to ``IDENTITY`` so mutations
reach the MAC check and the chunked payload, not just the intro line.
"""

from __future__ import annotations

import io

from _harness import fuzz, instrumented

with instrumented():
    from sealport import age

IDENTITY = "AGE-SECRET-KEY-1SPDHGU34E0N09NA0US2UMAZSZK6C59YFHYQETMKJA6Z7GDXMYENSC64VUU"
RECIPIENT = "age1wuhc5y4aau5yam3ergk74tlgy6s6axql375ywnfcp6e33jdqv4eqdf373a"
"""A throw-away test key pair, used only by this fuzz target and its seeds."""


def one(data: bytes) -> None:
    out = io.BytesIO()
    age.decrypt_stream(io.BytesIO(data), out, [IDENTITY], max_plaintext=1 << 20)


if __name__ == "__main__":
    fuzz(one)
