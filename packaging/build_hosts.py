"""Build the Houdini package zip and the Maya module zip into ``dist/``.

Each zip carries the adapter, the Sealport core (without the reference
server) and the core's dependencies for CPython 3.11 on Linux, Windows and
macOS: the wheels themselves (``wheels/<os>/``, with ``wheels/SHA256SUMS``)
and the same wheels unpacked (``lib/<os>/``), because a wheel is a zip that
only needs unpacking to be importable; nothing is built inside the host.

Left out on purpose because the host ships its own and two copies in one
process break: numpy, USD (pxr) and Qt (PySide). The hosts' Python 3.11 and
these modules are documented in docs/UI.md.

Usage::

    python packaging/build_hosts.py [--dist dist] [--os linux,win64,mac]
                                    [--find-links DIR] [--hotl PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.1.0"

PLATFORMS: dict[str, list[str]] = {
    "linux": ["manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64"],
    "win64": ["win_amd64"],
    "mac": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_14_0_arm64"],
}
REQUIREMENTS = [
    "cryptography>=42",
    "requests>=2.32",
    "keyring>=25",
    "filelock>=3.13",
    "defusedxml>=0.7",
    "bech32>=1.2",
    "segno>=1.6",
    "ufbx>=0.0.5",
    "qtpy>=2.4",
    "trimesh>=4",
    "lxml>=5",
    "networkx>=3",
]
# pip evaluates environment markers for the machine it runs on, not the target, so
# dependencies that only some OSes need are named here explicitly.
OS_REQUIREMENTS: dict[str, list[str]] = {
    "linux": ["SecretStorage>=3.2", "jeepney>=0.4.2"],
    "win64": ["pywin32-ctypes>=0.2.0"],
    "mac": [],
}
HOST_PROVIDED = {"numpy", "usd_core", "pyside6", "pyside6_essentials", "pyside2", "shiboken6"}
EXCLUDE_CORE = {"server", "__pycache__"}


def wheel_project(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower().replace("-", "_")


def download_wheels(os_name: str, dest: Path, find_links: Path | None) -> list[Path]:
    """pip download binary wheels for CPython 3.11 on one OS (no builds, ever)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
    cmd += ["--python-version", "3.11", "--implementation", "cp", "--dest", str(dest)]
    for tag in PLATFORMS[os_name]:
        cmd += ["--platform", tag]
    if find_links is not None:
        cmd += ["--find-links", str(find_links)]
    subprocess.run([*cmd, *REQUIREMENTS, *OS_REQUIREMENTS[os_name]], check=True)
    wheels = sorted(dest.glob("*.whl"))
    kept = [w for w in wheels if wheel_project(w) not in HOST_PROVIDED]
    for w in set(wheels) - set(kept):
        w.unlink()
    return kept


def unpack(wheels: list[Path], lib: Path) -> None:
    """Install = unzip for wheels (purelib/platlib at the wheel's root)."""
    lib.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if ".data/" in member.split("/", 1)[0] + "/":
                    continue  # scripts/headers: nothing a host imports
                target = (lib / member).resolve()
                if not str(target).startswith(str(lib.resolve())):
                    raise RuntimeError(f"{wheel.name}: unsafe path {member}")
                zf.extract(member, lib)


def copy_core(dest: Path) -> None:
    shutil.copytree(
        ROOT / "core" / "sealport",
        dest / "sealport",
        ignore=lambda d, names: [n for n in names if n in EXCLUDE_CORE or n.endswith(".pyc")],
    )


def sha256sums(wheel_root: Path) -> None:
    lines = []
    for w in sorted(wheel_root.rglob("*.whl")):
        digest = hashlib.sha256(w.read_bytes()).hexdigest()
        lines.append(f"{digest}  {w.relative_to(wheel_root).as_posix()}")
    (wheel_root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def add_runtime(payload: Path, os_names: list[str], cache: Path, find_links: Path | None) -> None:
    copy_core(payload / "core")
    for os_name in os_names:
        wheels = download_wheels(os_name, cache / os_name, find_links)
        target = payload / "wheels" / os_name
        target.mkdir(parents=True, exist_ok=True)
        for w in wheels:
            shutil.copy2(w, target / w.name)
        unpack(wheels, payload / "lib" / os_name)
    sha256sums(payload / "wheels")


def zip_dir(src: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                zf.write(f, f.relative_to(src).as_posix())
    return out


def build_houdini(
    stage: Path, os_names: list[str], cache: Path, fl: Path | None, hotl: str | None
) -> Path:
    """Zip root: sealport.json + sealport/ (unzip into a Houdini packages folder)."""
    src = ROOT / "houdini_hda"
    shutil.copy2(src / "sealport.json", stage / "sealport.json")
    payload = stage / "sealport"
    for sub in ("toolbar", "python3.11libs"):
        shutil.copytree(src / sub, payload / sub, ignore=shutil.ignore_patterns("__pycache__"))
    otls = payload / "otls"
    otls.mkdir(parents=True)
    hda_src = src / "hda_src" / "sealport_secure_import"
    if hotl:
        subprocess.run(
            [hotl, "-C", str(hda_src), str(otls / "sealport_secure_import.hda")], check=True
        )
    else:
        # Houdini also loads an expanded (directory) library from an otls folder.
        shutil.copytree(hda_src, otls / "sealport_secure_import.hda")
    shutil.copy2(src / "README.md", payload / "README.md")
    add_runtime(payload, os_names, cache, fl)
    return stage


def build_maya(stage: Path, os_names: list[str], cache: Path, fl: Path | None) -> Path:
    """Zip root: sealport.mod + sealport/ (unzip into a folder on MAYA_MODULE_PATH)."""
    src = ROOT / "maya_plugin"
    mod = (src / "sealport.mod").read_text()
    lines = []
    for line in mod.splitlines():
        if line.startswith("+"):
            parts = line.split()
            parts[-1] = "sealport"  # module root relative to the .mod file
            line = " ".join(parts)
        lines.append(line)
    (stage / "sealport.mod").write_text("\n".join(lines) + "\n")
    payload = stage / "sealport"
    for sub in ("plug-ins", "scripts"):
        shutil.copytree(src / sub, payload / sub, ignore=shutil.ignore_patterns("__pycache__"))
    add_runtime(payload, os_names, cache, fl)
    return stage


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", default=str(ROOT / "dist"))
    p.add_argument("--os", default="linux,win64,mac", help="comma list of linux, win64, mac")
    p.add_argument("--find-links", help="local wheel folder to prefer (offline builds)")
    p.add_argument("--cache", help="where downloaded wheels are kept between builds")
    p.add_argument("--hotl", help="path to Houdini's hotl to collapse the HDA")
    p.add_argument("--hosts", default="houdini,maya")
    args = p.parse_args(argv)
    os_names = [o for o in args.os.split(",") if o]
    unknown = set(os_names) - set(PLATFORMS)
    if unknown:
        p.error(f"unknown OS {sorted(unknown)}")
    dist = Path(args.dist).resolve()
    fl = Path(args.find_links).resolve() if args.find_links else None
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache).resolve() if args.cache else Path(tmp) / "wheels"
        for host in args.hosts.split(","):
            stage = Path(tmp) / host
            stage.mkdir()
            if host == "houdini":
                build_houdini(stage, os_names, cache, fl, args.hotl)
            elif host == "maya":
                build_maya(stage, os_names, cache, fl)
            else:
                p.error(f"unknown host {host}")
            out = zip_dir(stage, dist / f"sealport-{host}-{VERSION}.zip")
            print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
