"""The Houdini package zip: package JSON at the root, payload folder, HDA library,
and the core importing from the package's own lib/ in an isolated interpreter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.maya.test_package import build, core_imports_from


@pytest.fixture(scope="module")
def houdini_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build("houdini", tmp_path_factory.mktemp("houdini-pkg"))


def test_layout(houdini_zip: Path) -> None:
    pkg = json.loads((houdini_zip / "sealport.json").read_text())
    env = {k: v for entry in pkg["env"] for k, v in entry.items()}
    root = env["SEALPORT_ROOT"].replace("$HOUDINI_PACKAGE_PATH", str(houdini_zip))
    payload = Path(root)
    assert payload == houdini_zip / "sealport"
    for rel in (
        "toolbar/sealport.shelf",
        "python3.11libs/sealport_houdini/shelf.py",
        "core/sealport/client.py",
        "wheels/SHA256SUMS",
        "lib/linux",
    ):
        assert (payload / rel).exists(), rel
    hda = payload / "otls" / "sealport_secure_import.hda"
    assert hda.exists()
    if hda.is_dir():  # expanded library (no hotl on this machine)
        assert (hda / "Sop_1sealport__secure__import" / "DialogScript").is_file()


def test_core_imports_from_package(houdini_zip: Path) -> None:
    core_imports_from(houdini_zip / "sealport")
