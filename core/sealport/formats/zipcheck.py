"""Zip container checks shared by USDZ and 3MF, done before any member is read.

Refuses what makes unzipping dangerous for the host or for us: member names
that escape the folder (zip-slip: absolute, drive letters, ``..``, backslashes),
duplicate names (two readers may pick different members), symlinks and device
entries, encryption, exotic compression, and decompression bombs (a member or
the whole archive expanding past the size budget, or an implausible
compression ratio). The central directory size and entry count are read from
the end record first, so a hostile archive cannot make :mod:`zipfile` build
millions of entries in memory.
"""

from __future__ import annotations

import stat
import struct
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .refs import reference_problem
from .report import refuse

MiB = 1024**2
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"


@dataclass(frozen=True)
class ZipLimits:
    """Budgets for one archive; ``max_total_bytes`` also caps every member."""

    max_total_bytes: int
    max_members: int = 10_000
    max_central_directory: int = 64 * MiB
    max_ratio: float = 200.0
    ratio_floor: int = 1 * MiB
    """Members smaller than this are not ratio-checked (tiny XML compresses well)."""


def _central_directory_shape(path: Path, fmt: str) -> tuple[int, int]:
    """(entry count, central directory size) from the end record, without zipfile."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        tail_len = min(size, 65_557)  # EOCD (22) + max comment (65535)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        pos = tail.rfind(_EOCD)
        if pos < 0 or len(tail) - pos < 22:
            raise refuse(path, fmt, "it is not a valid zip package", "no end-of-central-directory")
        count, cd_size = struct.unpack_from("<HI", tail, pos + 10)
        loc = pos - 20
        if loc >= 0 and tail[loc : loc + 4] == _ZIP64_LOCATOR:
            (z64_offset,) = struct.unpack_from("<Q", tail, loc + 8)
            if z64_offset + 56 > size:
                raise refuse(path, fmt, "its zip directory is corrupt", "zip64 offset past end")
            f.seek(z64_offset)
            rec = f.read(56)
            if rec[:4] != b"PK\x06\x06":
                raise refuse(path, fmt, "its zip directory is corrupt", "bad zip64 record")
            count, cd_size = struct.unpack_from("<QQ", rec, 32)
    return count, cd_size


MAX_MEMBER_NAME = 1024


def _member_name_problem(name: str) -> str | None:
    if not name.strip("/"):
        return "an empty member name"
    if len(name) > MAX_MEMBER_NAME:
        return "an overlong member name"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name):
        # NUL, newlines, bidi overrides (U+202E), zero-width characters: a name that
        # reads differently from what it is, in a dialog or a log.
        return "a member name with control or invisible characters"
    if "\\" in name:
        return "a member name with a backslash"
    why = reference_problem(name)
    if why:
        return why.replace("it ", "a member name that ", 1)
    return None


def check_zip(path: Path, fmt: str, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """Validate the archive's directory; return its file members (no directories).

    Raises :class:`~sealport.errors.UnsafeAsset` on the first problem.
    """
    count, cd_size = _central_directory_shape(path, fmt)
    if count > limits.max_members or cd_size > limits.max_central_directory:
        raise refuse(
            path,
            fmt,
            f"the package lists too many files ({count})",
            f"entries={count} central_directory={cd_size}",
        )
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise refuse(path, fmt, "it is not a valid zip package", repr(exc)) from exc

    seen: set[str] = set()
    total = 0
    members: list[zipfile.ZipInfo] = []
    for info in infos:
        # zipfile cuts names at a NUL; orig_filename is what other unzippers may see.
        name = info.orig_filename
        why = _member_name_problem(name)
        if why:
            raise refuse(path, fmt, f"it contains {why} ({name!r})", f"member={name!r}")
        key = name.casefold()
        if key in seen:
            raise refuse(
                path, fmt, f"it contains the file {name!r} twice", f"duplicate member={name!r}"
            )
        seen.add(key)
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "a special file"
            raise refuse(
                path, fmt, f"it contains {kind} ({name!r})", f"member={name!r} mode={mode:o}"
            )
        if info.flag_bits & 0x1:
            raise refuse(path, fmt, f"the member {name!r} is encrypted", f"member={name!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise refuse(
                path,
                fmt,
                f"the member {name!r} uses an unsupported compression method",
                f"member={name!r} method={info.compress_type}",
            )
        if info.is_dir():
            continue
        total += info.file_size
        if info.file_size > limits.max_total_bytes or total > limits.max_total_bytes:
            raise refuse(
                path,
                fmt,
                "it would expand to more data than allowed (decompression bomb)",
                f"member={name!r} size={info.file_size} total={total} "
                f"limit={limits.max_total_bytes}",
            )
        if info.file_size > limits.ratio_floor:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise refuse(
                    path,
                    fmt,
                    f"the member {name!r} is compressed {ratio:.0f} to 1, "
                    "which only a decompression bomb does",
                    f"member={name!r} size={info.file_size} compressed={info.compress_size}",
                )
        members.append(info)
    if not members:
        raise refuse(path, fmt, "the package is empty")
    return members


def read_member_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read one member, refusing to go past ``limit`` bytes whatever the header says."""
    out = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(1 * MiB):
            out += chunk
            if len(out) > limit:
                raise ValueError(f"member {info.filename!r} larger than {limit} bytes")
    return bytes(out)
