"""Judging a file reference written inside an asset (texture, material, layer).

Host importers follow these strings blindly: an absolute path reads any file on
the workstation, ``..`` escapes the delivery folder, a URL or UNC path
(``\\\\host\\share``) makes the host reach out to the network (and on Windows
leaks the user's NTLM hash). :func:`reference_problem` says why a reference
is unsafe, or returns ``None`` when it is a plain relative name that stays
inside the folder (or package) it was delivered in.
"""

from __future__ import annotations

import re

_DRIVE = re.compile(r"^[A-Za-z]:")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def reference_problem(ref: str) -> str | None:
    """Why ``ref`` may not be followed, or ``None`` if it is a safe relative name."""
    if "\x00" in ref:
        return "it contains a NUL character"
    stripped = ref.strip()
    if not stripped:
        return None
    if stripped.startswith(("\\\\", "//")):
        return "it is a network (UNC) path"
    if stripped.startswith(("/", "\\")):
        return "it is an absolute path"
    if _DRIVE.match(stripped):
        return "it is an absolute Windows path"
    if _SCHEME.match(stripped):
        return "it is a URL"
    if stripped.startswith("~"):
        return "it points into a home folder"
    if stripped.startswith("`") or "${" in stripped or "$(" in stripped:
        return "it is an expression that is expanded at load time"
    parts = re.split(r"[\\/]+", stripped)
    if any(p == ".." for p in parts):
        return "it climbs out of the delivery folder with '..'"
    return None
