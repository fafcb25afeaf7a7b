"""Fuzz the in-process part of the FBX check: header, node tree, references.

The ufbx second opinion runs in a *child process* by design
(:mod:`sealport.formats.isolated`: the ufbx 0.0.5 binding corrupts memory), so
it is not fuzzed here (one child per input is ~1 exec/s). Everything that runs
in our own process, and alone inside a DCC, is:

- ``fbx._check_header``: magic, truncation, version range, ASCII detection;
- the node-tree stage (:mod:`sealport.formats.fbxtree`): parse, every mesh's
  arrays decoded and indices checked, media references read and judged, and
  the watermark writer's re-serialisation of whatever parsed;
- ``fbx._judge_references``: the policy, fed fuzzed names.

The whole child-process path is exercised on hostile files in
``tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import atheris
from _harness import fuzz, input_file, instrumented

with instrumented():
    from sealport.formats import fbx, fbxtree


def _tree(data: bytes) -> None:
    path = input_file(data, "tree.fbx")
    tree, _ = fbx._tree_facts(path, data)
    fbx._judge_references(path, fbx._tree_media(tree))
    again = fbxtree.serialize(tree)
    if fbxtree.serialize(fbxtree.parse(again)) != again:
        raise AssertionError("node tree does not round-trip")


def one(data: bytes) -> None:
    if not data:
        return
    if data[0] % 4 == 2:
        _tree(data[1:])
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
