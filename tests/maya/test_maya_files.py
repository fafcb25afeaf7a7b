"""The Maya module file parses and points at real folders; the adapter type-checks
against the published maya-stubs (so a call that does not exist fails the build)."""

from __future__ import annotations

import subprocess
import sys

from .conftest import MAYA, ROOT
from .doubles import stub_file

PLATFORMS = {"linux", "win64", "mac"}


def parse_mod(text: str) -> list[dict[str, object]]:
    """Maya .mod: '+ [KEY:value ...] Name Version Path' then VAR lines for that module."""
    modules: list[dict[str, object]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("+"):
            parts = line[1:].split()
            conds = dict(p.split(":", 1) for p in parts if ":" in p)
            name, version, path = [p for p in parts if ":" not in p]
            modules.append(
                {"conds": conds, "name": name, "version": version, "path": path, "env": []}
            )
        else:
            assert modules, f"variable before any module line: {line}"
            var, _, value = line.partition("+:=")
            assert value, f"expected VAR +:= value, got {line!r}"
            modules[-1]["env"].append((var.strip(), value.strip()))  # type: ignore[union-attr]
    return modules


def test_mod_file() -> None:
    mods = parse_mod((MAYA / "sealport.mod").read_text())
    assert {m["conds"]["PLATFORM"] for m in mods} == PLATFORMS  # type: ignore[index]
    for m in mods:
        assert m["name"] == "Sealport" and m["path"] == "."
        plat = m["conds"]["PLATFORM"]  # type: ignore[index]
        assert ("PYTHONPATH", f"lib/{plat}") in m["env"]  # type: ignore[operator]
        assert ("PYTHONPATH", "core") in m["env"]  # type: ignore[operator]
    # Maya adds <module>/plug-ins and <module>/scripts by itself.
    assert (MAYA / "plug-ins" / "sealport_plugin.py").is_file()
    assert (MAYA / "scripts" / "sealport_maya" / "__init__.py").is_file()


def test_adapter_type_checks_against_maya_stubs() -> None:
    stub_file("maya-stubs", "cmds/__init__.pyi")  # fails if the stubs are not installed
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "maya_plugin/scripts/sealport_maya",
            "maya_plugin/plug-ins/sealport_plugin.py",
        ],
        cwd=ROOT,
        env={"MYPYPATH": f"{ROOT / 'core'}:{MAYA / 'scripts'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
