"""Client side of the forensic watermark: check the mark the manifest promises.

Called by :func:`sealport.importer.check_watermark` after decryption and the
plaintext hash check, before the file is placed. Why it exists although the
hash already matched: the manifest is the server's statement of what this
delivery carries; a file whose mark is missing or names another delivery
means the server-side pipeline is broken or the manifest was made by someone
holding a delivery key, and the studio's leak tracing would silently fail for
it. So a mismatch blocks the import exactly like a bad hash.

Return values (shown to the artist and written to the audit record):

- ``"verified"`` — the expected payload was read back from the file;
- ``"too small to carry a mark"`` — the server marked nothing because every
  mesh is too small (never reported as verified);
- ``"unmarked: <reason>"`` — the server says it could not mark this file
  (e.g. ASCII FBX, mesh too small).

Raises :class:`~sealport.errors.WatermarkMismatch` when the mark is absent or
carries another payload, and MalformedManifest for an invalid watermark record.

Signed reader hints (``"reader"`` in the watermark entry)
---------------------------------------------------------
The server reads every marked file back with this very reader before sealing
it and signs, per mesh, the reader's centre (in the scheme's frame) and whether every
vertex is referenced by a triangle. For meshes whose flag is true the check
takes that centre instead of its own pass over the triangles (on a 5.5 M
triangle GLB the largest stage of the check). Why that keeps the check honest:

- It runs only after the plaintext's SHA-256 matched the signed manifest, so
  the file is exactly the one the server read back, and the centre is a
  deterministic function of those bytes: taking the true value gives the same
  result bit for bit (tested).
- The payload is still extracted here from the geometry (norms, keyed bins,
  decode, compare); only an intermediate is taken from the signed statement.
- A wrong hint can only make the check fail (the bins are read about another
  point: mismatch, import blocked). It cannot make an unmarked file pass without
  the key, and whoever could sign a wrong hint could as well sign another key
  and payload or ``"unmarked"``: the hints add no power over the manifest.
- Hints are checked strictly (finite numbers, booleans, one per mesh the reader
  loads: else MalformedManifest); a manifest without them gets the full pass,
  so older deliveries verify as before.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from .errors import MalformedManifest, WatermarkMismatch
from .manifest import Manifest
from .progress import Progress

MISMATCH_MESSAGE = (
    "The asset's forensic watermark does not match its manifest; nothing was imported. "
    "Tell your pipeline TD."
)
TOO_SMALL = "too small to carry a mark"
MAX_REASON = 200


def _unmarked(entry: dict[str, Any]) -> str:
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedManifest(
            "The delivery's watermark record is invalid.", "unmarked entry without a reason"
        )
    clean = "".join(ch if ch.isprintable() else "?" for ch in reason.strip())[:MAX_REASON]
    return f"unmarked: {clean}"


_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")


@contextmanager
def _named_like(path: Path, m: Manifest) -> Iterator[Path]:
    """``path`` under a name with the delivered file's extension, without copying it.

    The importer verifies a private ``.part`` temp file, but the mesh readers pick
    the parser by extension. A hard link (symlink as fallback) in a private folder
    next to the file gives it the right name; the folder is removed afterwards.
    """
    suffix = Path(m.file.path).suffix.lower()
    if not _SUFFIX.match(suffix):
        suffix = "." + m.format.lower()
    if path.suffix.lower() == suffix:
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix=".sealport-wm-", dir=path.parent))
    try:
        alias = folder / f"asset{suffix}"
        try:
            os.link(path, alias)
        except OSError:
            os.symlink(path.resolve(), alias)
        yield alias
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verify_delivery_mark(path: Path, m: Manifest, progress: Progress | None = None) -> str:
    """Check ``path`` against ``m.watermark``; see the module docstring for results.
    ``progress`` gets ("watermark", meshes done, meshes) and can cancel between meshes."""
    from .watermark import entry_frame, parse_manifest_entry, parse_reader_hints, verify_file

    entry = m.watermark
    if not isinstance(entry, dict):
        raise MalformedManifest("The delivery's watermark record is invalid.", repr(entry)[:200])
    if entry.get("status") == "unmarked":
        return _unmarked(entry)
    key, payload, marked = parse_manifest_entry(entry)
    reader = parse_reader_hints(entry)
    with _named_like(Path(path), m) as named:
        on_mesh = None if progress is None else partial(progress.update, "watermark")
        result = verify_file(
            named, key, payload, reader=reader, on_mesh=on_mesh, frame=entry_frame(entry)
        )
    meshes = ", ".join(f"{r.status}({r.detail})" if r.detail else r.status for r in result.meshes)
    detail = f"delivery {m.delivery_id}: file {result.status}; meshes: {meshes or 'none'}"
    if result.status == "verified":
        return "verified"
    if result.status == "too_small" and marked == 0:
        return TOO_SMALL
    # mismatch, not_found, or too_small although the server marked meshes.
    raise WatermarkMismatch(MISMATCH_MESSAGE, detail)
