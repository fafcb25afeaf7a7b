"""Fuzz the 3MF reader: zip directory checks, defused streaming XML, index bounds.

Both entry points run on each input: ``check_3mf`` (what ``check_file`` uses)
and ``read_3mf_mesh`` (what the Blender adapter uses to build the mesh), which
adds the component/transform walk.
"""

from __future__ import annotations

from _format import MAX_BYTES, checker_target
from _harness import fuzz, input_file, instrumented

with instrumented():
    from sealport.formats.threemf import read_3mf_mesh

_check = checker_target("3mf", "asset.3mf")


def one(data: bytes) -> None:
    if not data:
        return
    _check(data)  # raises UnsafeAsset when refused; then the mesh reader is not reached
    read_3mf_mesh(input_file(data, "asset.3mf"), max_bytes=MAX_BYTES)


if __name__ == "__main__":
    fuzz(one)
