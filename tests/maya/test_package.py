"""The Maya module zip: layout, module file, and the core importing from its own lib/
in an isolated interpreter (no site-packages, so nothing comes from this venv)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_maya_files import parse_mod


def build(host: str, tmp: Path) -> Path:
    dist = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build_hosts.py"),
            "--dist",
            str(dist),
            "--os",
            "linux",
            "--hosts",
            host,
            "--cache",
            str(tmp / "wheels"),
        ],
        check=True,
        timeout=600,
    )
    out = tmp / "unpacked"
    with zipfile.ZipFile(dist / f"sealport-{host}-0.1.0.zip") as zf:
        assert not [n for n in zf.namelist() if n.startswith("/") or ".." in n.split("/")]
        zf.extractall(out)
    return out


def host_numpy(tmp: Path) -> Path:
    """A folder holding only numpy, standing in for the numpy every host ships."""
    import numpy

    folder = tmp / "host-site"
    folder.mkdir(exist_ok=True)
    src = Path(numpy.__file__).parent
    for item in [src, *src.parent.glob("numpy.libs"), *src.parent.glob("numpy-*.dist-info")]:
        link = folder / item.name
        if not link.exists():
            link.symlink_to(item)
    return folder


def core_imports_from(payload: Path) -> None:
    """Import the core with only the package's folders (+ the host's numpy) on sys.path."""
    code = (
        "import sys; sys.path[:0] = sys.argv[1:4]\n"
        "import sealport.client, sealport.convert, sealport.host, sealport.scene_check\n"
        "import cryptography, requests, keyring, segno, trimesh\n"
        "for m in (sealport.client, cryptography, requests, keyring, segno):\n"
        "    print(m.__file__)\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            code,
            str(payload / "core"),
            str(payload / "lib" / "linux"),
            str(host_numpy(payload.parent)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    files = proc.stdout.split()
    assert len(files) == 5 and all(f.startswith(str(payload)) for f in files), files


@pytest.fixture(scope="module")
def maya_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("maya", tmp_path_factory.mktemp("maya-pkg"))


def test_layout(maya_zip: Path) -> None:
    mods = parse_mod((maya_zip / "sealport.mod").read_text())
    assert mods and all(m["path"] == "sealport" for m in mods)
    payload = maya_zip / "sealport"
    for rel in (
        "plug-ins/sealport_plugin.py",
        "scripts/sealport_maya/menu.py",
        "core/sealport/client.py",
        "core/sealport/ui/panels.py",
        "wheels/SHA256SUMS",
    ):
        assert (payload / rel).is_file(), rel
    assert not (payload / "core" / "sealport" / "server").exists()
    wheels = {w.name.split("-")[0].lower() for w in (payload / "wheels" / "linux").glob("*.whl")}
    assert {"cryptography", "requests", "keyring", "qtpy", "trimesh"} <= wheels
    assert not wheels & {"numpy", "usd_core", "pyside6", "pyside6_essentials"}


def test_core_imports_from_package(maya_zip: Path) -> None:
    core_imports_from(maya_zip / "sealport")
