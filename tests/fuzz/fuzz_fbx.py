"""Fuzz the in-process part of the FBX check: the header and the reference policy.

The full FBX check loads the file with ufbx in a *child process* by design
(:mod:`sealport.formats.isolated`: the ufbx 0.0.5 binding corrupts memory), so
it cannot run in-process under a fuzzer, and one child per input (~1 exec/s)
is too slow to fuzz. What runs in our own process is fuzzed here:

- ``fbx._check_header``: magic, truncation, version range, ASCII detection;
- ``fbx._judge_references``: the policy applied to the file names ufbx reports
  (absolute, ``..``, URL, UNC, NUL...), fed fuzzed names.

The whole child-process path is exercised on hostile files in
``tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import atheris
from _harness import fuzz, input_file, instrumented

with instrumented():
    from sealport.formats import fbx


def one(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2:
        path = input_file(data[1:], "asset.fbx")
        fbx._check_header(path, len(data) - 1)
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    media = [
        fbx._Media(
            kind=fdp.PickValueInList(["texture", "video", "audio clip", "geometry cache"]),
            name=fdp.ConsumeUnicodeNoSurrogates(16),
            absolute=fdp.ConsumeUnicodeNoSurrogates(64),
            relative=fdp.ConsumeUnicodeNoSurrogates(64),
            embedded=fdp.ConsumeBool(),
        )
        for _ in range(fdp.ConsumeIntInRange(0, 4))
    ]
    fbx._judge_references(input_file(b"", "refs.fbx"), media)


if __name__ == "__main__":
    fuzz(one)
