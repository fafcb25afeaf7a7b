"""Fixtures for the Blender extension tests: a clean Blender, the built zip, test assets.

"Clean Blender" is a Python environment holding only ``bpy`` from PyPI (and
what bpy itself depends on: numpy, requests, zstandard, Cython, the same set
a Blender build ships), so the extension has to bring the core and its
dependencies in its own wheels, as it must on an artist's machine. Create it
once (CI too)::

    python3.11 -m venv build/blender-venv
    build/blender-venv/bin/pip install -r tests/blender/requirements.txt

or point ``SEALPORT_BLENDER_PYTHON`` at another Python that has bpy. A missing
Blender fails these tests; it never skips them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEFAULT_PYTHON = ROOT / "build" / "blender-venv" / "bin" / "python"
HOW = (
    "python3.11 -m venv build/blender-venv && "
    "build/blender-venv/bin/pip install -r tests/blender/requirements.txt"
)
PROJECT = "blender-tests"
PROBE_VERTICES = 42
OCTAHEDRON_VERTICES = 6


@pytest.fixture(scope="session")
def blender_python() -> Path:
    path = Path(os.environ.get("SEALPORT_BLENDER_PYTHON", DEFAULT_PYTHON))
    if not path.exists():
        pytest.fail(f"No clean Blender Python at {path}. Create it: {HOW}", pytrace=False)
    probe = subprocess.run(
        [str(path), "-c", "import bpy; print(bpy.app.version_string)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if probe.returncode != 0:
        pytest.fail(f"{path} cannot import bpy:\n{probe.stderr[-2000:]}\nFix: {HOW}", pytrace=False)
    return path


def blender_env(user_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A Blender with its own empty user folder (no add-ons, no prefs, no extensions)."""
    env = {**os.environ, **(extra or {})}
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "SEALPORT_CONFIG"):
        env.pop(var, None)
    return env


def run_blender(
    python: Path, args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(HERE),
    )


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real package, built by the packaging command (Linux wheels only, to save time)."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build_blender.py"),
            "--platform",
            "linux-x64",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


def write_3mf(path: Path) -> None:
    """A minimal 3MF package (Blender has no 3MF exporter): an octahedron, 6 vertices."""
    verts = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    tris = [(0, 2, 4), (2, 1, 4), (1, 3, 4), (3, 0, 4), (2, 0, 5), (1, 2, 5), (3, 1, 5), (0, 3, 5)]
    v = "".join(f'<vertex x="{x}" y="{y}" z="{z}"/>' for x, y, z in verts)
    t = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in tris)
    model = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<model unit="millimeter" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
        f'<resources><object id="1" type="model"><mesh><vertices>{v}</vertices>'
        f"<triangles>{t}</triangles></mesh></object></resources>"
        '<build><item objectid="1"/></build></model>'
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/></Types>',
        )
        zf.writestr(
            "_rels/.rels",
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
            'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>',
        )
        zf.writestr("3D/3dmodel.model", model)


@pytest.fixture(scope="session")
def blender_assets(
    blender_python: Path, sealport_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """One asset per format on the test server, exported by Blender's own exporters."""
    work = tmp_path_factory.mktemp("blender-assets")
    done = run_blender(
        blender_python,
        [str(HERE / "make_assets.py"), str(work / "files")],
        blender_env(work / "user"),
        timeout=300,
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("ASSETS ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    files = {fmt: Path(p) for fmt, p in json.loads(line[len("ASSETS ") :]).items()}
    files["3mf"] = work / "files" / "probe.3mf"
    write_3mf(files["3mf"])
    files["cancel"] = work / "files" / "cancelme.glb"  # never imported before it is cancelled
    files["cancel"].write_bytes(files["glb"].read_bytes())
    assets = {}
    for fmt, path in files.items():
        kind = "glb" if fmt == "cancel" else fmt
        rec = sealport_server.add_asset(path, name=f"probe-{fmt}", project=PROJECT, fmt=kind)
        assets[fmt] = {
            "asset_id": rec.asset_id,
            "vertices": OCTAHEDRON_VERTICES if fmt == "3mf" else PROBE_VERTICES,
        }
    return assets


@pytest.fixture(scope="module")
def keyring_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private, unlocked gnome-keyring for the Blender process (the artist's OS keyring)."""
    from tests.fixtures.secret_service import SecretService

    svc = SecretService(root=tmp_path_factory.mktemp("blender-keyring"))
    try:
        svc.start_bus()
        svc.start_keyring(unlock=True)
        yield svc.subprocess_env()
    finally:
        svc.stop()
