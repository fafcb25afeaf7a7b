"""Build the Blender extension zip: add-on code + the core and its dependencies as wheels.

    python packaging/build_blender.py [--platform linux-x64 ...] [--wheelhouse DIR] [--out dist]

Why wheels: Blender 4.2+ installs an extension's ``wheels = [...]`` into its
own site-packages, so artists need no pip inside Blender. The core is built
as a wheel from this repo; its dependencies are downloaded as binary wheels
for CPython 3.11 (Blender 4.2 to 5.0) for each platform. Packages Blender
already ships (numpy, requests and its helpers) are not bundled: two copies
of numpy in one process break. The zip has the layout of
``blender --command extension build``: the manifest at the root, wheels in
``wheels/``; when bpy's own extension tool is importable it validates the zip.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "blender_addon"
PYTHON = "3.11"

# Blender platform -> pip platform tag (pip expands older manylinux/macOS tags itself).
PLATFORMS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_11_0_x86_64",
}
# Shipped inside Blender (python/lib/site-packages): never bundle a second copy.
BLENDER_BUNDLED = {"numpy", "requests", "urllib3", "idna", "certifi", "charset-normalizer"}
# pip evaluates environment markers for the machine it runs on, not for --platform,
# so dependencies behind `sys_platform == "win32"` markers are named here.
PLATFORM_EXTRAS = {"windows-x64": ["pywin32-ctypes", "colorama"]}


def core_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = []
    for spec in project["dependencies"]:
        name = spec.split(">")[0].split("=")[0].split("<")[0].split(";")[0].strip()
        if name.lower() not in BLENDER_BUNDLED:
            deps.append(spec)
    return deps


def build_core_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(ROOT)],
        check=True,
    )
    return next(dest.glob("sealport-*.whl"))


def download_wheels(platform: str, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "--platform",
            PLATFORMS[platform],
            "--python-version",
            PYTHON,
            "--implementation",
            "cp",
            "-d",
            str(dest),
            *core_dependencies(),
            *PLATFORM_EXTRAS.get(platform, []),
        ],
        check=True,
    )
    # A dependency may pull in numpy/requests again: Blender's own copy satisfies it.
    return sorted(w for w in dest.glob("*.whl") if _dist_name(w) not in BLENDER_BUNDLED)


def _dist_name(wheel: Path) -> str:
    return wheel.name.split("-")[0].lower().replace("_", "-")


def manifest_text(wheels: list[str], platforms: list[str]) -> str:
    """The source manifest with ``platforms`` and ``wheels`` added as top-level keys."""
    text = (ADDON / "blender_manifest.toml").read_text()
    head, sep, tail = text.partition("\n[")
    lines = ["platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]", "wheels = ["]
    lines += [f'  "./wheels/{w}",' for w in wheels] + ["]", ""]
    out = head.rstrip("\n") + "\n\n" + "\n".join(lines) + sep + tail
    tomllib.loads(out)  # fail here, not in Blender
    return out


def build(platforms: list[str], out_dir: Path, wheelhouse: Path) -> Path:
    version = tomllib.loads((ADDON / "blender_manifest.toml").read_text())["version"]
    with tempfile.TemporaryDirectory(prefix="sealport-blender-") as tmp:
        core = build_core_wheel(Path(tmp))
        wheels: dict[str, Path] = {core.name: core}
        for platform in platforms:
            for w in download_wheels(platform, wheelhouse / platform):
                wheels.setdefault(w.name, w)
        out_dir.mkdir(parents=True, exist_ok=True)
        suffix = "" if set(platforms) == set(PLATFORMS) else "-" + "-".join(sorted(platforms))
        zip_path = out_dir / f"sealport-blender-{version}{suffix}.zip"
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("blender_manifest.toml", manifest_text(sorted(wheels), platforms))
            for src in sorted(ADDON.glob("*.py")):
                zf.write(src, src.name)
            for name, src in sorted(wheels.items()):
                zf.write(src, f"wheels/{name}", compress_type=zipfile.ZIP_STORED)
    validate(zip_path)
    return zip_path


def blender_ext_tool() -> Path | None:
    """bpy's extension command line (the one behind `blender --command extension`)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        for tool in Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"):
            return tool
    return None


def validate(zip_path: Path) -> None:
    tool = blender_ext_tool()
    if tool is None:
        print("note: bpy not installed here, zip not validated by Blender's extension tool")
        return
    done = subprocess.run([sys.executable, str(tool), "validate", str(zip_path)])
    if done.returncode != 0:
        zip_path.unlink()
        raise SystemExit(f"Blender's extension tool refused {zip_path.name} (see above)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--platform",
        action="append",
        choices=sorted(PLATFORMS),
        help="build for these platforms only (default: all four)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "dist")
    ap.add_argument(
        "--wheelhouse",
        type=Path,
        default=ROOT / "build" / "blender-wheels",
        help="where downloaded wheels are kept between builds",
    )
    args = ap.parse_args(argv)
    platforms = args.platform or list(PLATFORMS)
    zip_path = build(platforms, args.out, args.wheelhouse)
    print(zip_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
