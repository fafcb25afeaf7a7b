"""Convert a *verified* GLB, 3MF or STL file to OBJ for hosts without a native importer.

Maya has no GLB/3MF/STL importer of its own, so adapters hand the verified
file here and import the OBJ with the host's OBJ importer. The conversion
runs after every check of the secure import path passed; it reads only the
verified file and writes a new file beside it (``<stem>.sealport.obj``).
Uses ``trimesh`` (its 3MF reader needs ``lxml`` and ``networkx``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import HostImportError

CONVERTIBLE = {"glb", "3mf", "stl"}


def convert_to_obj(path: Path, fmt: str | None = None) -> Path:
    """Write ``path`` as OBJ beside it and return the OBJ's path."""
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in CONVERTIBLE:
        raise HostImportError(
            f"Sealport cannot convert {fmt.upper() or 'this'} files for this application.",
            detail=f"convert_to_obj: unsupported format {fmt!r} for {path}",
        )
    try:
        import trimesh
    except ImportError as exc:
        raise HostImportError(
            "Sealport's converter for GLB/3MF/STL is not installed with this package. "
            "Ask your pipeline TD.",
            detail=f"import trimesh failed: {exc}",
        ) from exc
    out = path.with_name(f"{path.stem}.sealport.obj")
    try:
        scene: Any = trimesh.load(str(path), file_type=fmt, force="scene")
        if not scene.geometry:
            raise ValueError("no meshes in file")
        exporter: Any = trimesh.exchange.obj.export_obj
        data = exporter(scene, include_texture=False)
        out.write_text(data, encoding="utf-8")
    except Exception as exc:  # trimesh raises many kinds; one typed error for the host
        out.unlink(missing_ok=True)
        raise HostImportError(
            f"Sealport could not convert {path.name} to OBJ for import.",
            detail=f"trimesh {fmt} -> obj failed: {type(exc).__name__}: {exc}",
        ) from exc
    return out
