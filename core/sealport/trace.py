"""``sealport trace FILE``: which delivery did this (leaked) file come from?

Why it works the way it does: every mark is keyed per delivery
(``derive_delivery_key(studio secret, delivery_id)``) and carries the payload
``HMAC(secret, delivery_id)[:8]`` (see :mod:`sealport.server.watermarking`),
so without the studio secret nothing can be read, and with it the only way to
find the mark is to try the deliveries' keys. Trace therefore runs on the
server machine (``--data`` = the server's data folder, read only), walks the
ledger's marked deliveries newest first, and runs the library's ``verify``
(blind decode, then a correlation test) on every mesh of the file with each
delivery's key and expected payload. It stops at the first match and names
the delivery: user, asset, version, time, device.

False positives: one ``verify`` on an unmarked mesh (or under a wrong key)
passes with probability <= ``PER_CHECK_BOUND`` (about 3.1e-9: a 32-bit keyed
tag over <= 9 decode attempts, plus the correlation test's 1e-9). A trace that
makes n checks (meshes x deliveries) names a wrong delivery with probability
<= n x PER_CHECK_BOUND (union bound); the report states that figure.

Work is bounded: at most ``max_deliveries`` deliveries (newest first) are
tried; the report says how many marked deliveries were left unchecked. Each
leaked mesh is read once (:func:`sealport.watermark.read_mesh`: the triangle
pass and the sort of the norms, ~95 % of a check on a large mesh); each
delivery's key then costs only its keyed bins and decode
(:func:`~sealport.watermark.verify_reading`). Long traces report progress and
stop cleanly between checks when cancelled (``progress``; Ctrl-C in the CLI).

Chain of custody: ``sealport trace`` records every run (found, not found or
cancelled) as an audit event in the server's ledger: the file's name and SHA-256,
the account that ran it and what it named; the server's SIEM export picks it up.

Joined meshes: a delivered mesh joined with other geometry into one mesh is
also read part by part (each connected part large enough to carry a mark, see
:mod:`sealport.watermark.components`), in both tiers; the report counts those
parts, and every check on them counts towards the false-positive bound.

Informed tier: when the blind checks find nothing, the server still has every
delivered asset's original in its store. For each (asset, version) among the
tried deliveries, every leaked mesh is registered once to every original mesh
(:func:`sealport.watermark.informed.correspond_frames`, scipy's cKDTree; once also
when the asset's deliveries span both schemes, v1 and v2: only the rays differ), and each
delivery of that asset is tested with its key and expected payload
(:func:`~sealport.watermark.informed.informed_verify`, false-positive bound
``INFORMED_FPR`` per check). It reads each candidate's known displacement as a
matched filter after modelling the attack on the original, and survives
cropping, simplification, quantisation and smoothing far better than the blind
reader (docs/BENCHMARKS.md, "Watermark"). The correspondence (the costly part:
registration, attack model) is made once per leaked mesh and original; each
delivery check adds one partition and two Newton solves. It needs scipy (the
``server`` / ``trace`` extras).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import Cancelled, SealportError
from .progress import Progress

if TYPE_CHECKING:
    from .watermark.geometry import CentreKind

DEFAULT_MAX_DELIVERIES = 500
NO_KEY = "no studio key available: run on the server with --data"


def per_check_bound() -> float:
    """Upper bound on P(an unmarked mesh passes one ``verify``) for 64-bit payloads, in
    any scheme's frame (v3's is the largest: its blind decode tries two partitions)."""
    from .watermark.keys import SCHEME_FRAMES
    from .watermark.mark import VERIFY_FPR, _fp_decode

    return max(_fp_decode(64, frame) for frame in SCHEME_FRAMES.values()) + VERIFY_FPR


def informed_check_bound() -> float:
    """Upper bound on P(an unrelated mesh passes one informed check)."""
    from .watermark.informed import INFORMED_FPR

    return INFORMED_FPR


@dataclass(frozen=True)
class TraceMatch:
    """The delivery whose key reads a mark in the file."""

    delivery_id: str
    username: str
    asset_id: str
    asset_name: str
    version: int
    issued_at: int
    device_id: str
    client_ip: str
    payload_hex: str
    confidence: float
    method: str
    altered: bool
    """The delivery's key finds a mark whose payload is not the one issued:
    only the server and that delivery's recipient know the key."""
    where: str = ""
    """Which mesh of the file (or connected part of a joined mesh) carries the mark."""
    scheme: str = ""
    """The delivery's watermark scheme (``keys.SCHEME_FRAMES``): which frame it was read in."""


def _match(
    row: Any, *, payload_hex: str, confidence: float, method: str, altered: bool, where: str
) -> TraceMatch:
    """A TraceMatch for one ledger delivery row (blind and informed tiers alike)."""
    return TraceMatch(
        delivery_id=row["delivery_id"],
        username=row["username"],
        asset_id=row["asset_id"],
        asset_name=row["asset_name"] or "?",
        version=int(row["version"]),
        issued_at=int(row["issued_at"]),
        device_id=row["device_id"],
        client_ip=row["client_ip"],
        payload_hex=payload_hex,
        confidence=confidence,
        method=method,
        altered=altered,
        where=where,
        scheme=_row_scheme(row),
    )


@dataclass(frozen=True)
class TraceReport:
    status: Literal["found", "not_found", "no_key", "too_small"]
    file: str
    meshes: int
    meshes_readable: int
    parts: int = 0
    """Connected parts of joined meshes tried on their own as well (module doc)."""
    deliveries_checked: int = 0
    deliveries_marked: int = 0
    checks: int = 0
    false_positive_bound: float = 0.0
    match: TraceMatch | None = None
    note: str = ""

    def text(self) -> str:
        """The human report ``sealport trace`` prints."""
        parts = (
            f"; {self.parts} connected parts of joined meshes tried on their own too"
            if self.parts
            else ""
        )
        lines = [
            f"File: {self.file} ({self.meshes} meshes, {self.meshes_readable} large enough{parts})"
        ]
        if self.status == "no_key":
            lines.append(self.note or NO_KEY)
        elif self.status == "too_small":
            lines.append("No mesh in this file is large enough to carry a mark; cannot trace.")
        elif self.status == "found" and self.match is not None:
            mt = self.match
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mt.issued_at))
            lines += [
                "MARK FOUND"
                + (" (ALTERED payload under this delivery's key)" if mt.altered else ""),
                f"  delivery   : {mt.delivery_id}",
                f"  user       : {mt.username}",
                f"  asset      : {mt.asset_name} ({mt.asset_id}) v{mt.version}",
                f"  issued     : {when}",
                f"  device     : {mt.device_id} (from {mt.client_ip})",
                f"  payload    : {mt.payload_hex}",
                f"  confidence : {mt.confidence:.10f} ({mt.method})",
                f"  found in   : {mt.where}",
                f"  scheme     : {mt.scheme}",
                f"  false-positive bound over this trace: {self.false_positive_bound:.2e} "
                f"({self.checks} checks)",
            ]
            if mt.altered:
                lines.append(
                    "  The key of this delivery is known only to the server and its recipient."
                )
        else:
            lines.append(
                f"no mark found ({self.deliveries_checked} of {self.deliveries_marked} marked "
                f"deliveries checked, {self.checks} checks; false-positive bound "
                f"{per_check_bound():.1e} per check, {self.false_positive_bound:.1e} in total)"
            )
        if self.note and self.status != "no_key":
            lines.append(self.note)
        return "\n".join(lines)


def _marked_entry(raw: str | None) -> bool:
    """True if the ledger's watermark column says the delivery carries a mark."""
    if not raw:
        return False
    try:
        entry = json.loads(raw)
    except ValueError:
        return False
    from .watermark import SCHEME_FRAMES

    return (
        isinstance(entry, dict)
        and entry.get("scheme") in SCHEME_FRAMES
        and int(entry.get("meshes_marked", 0)) > 0
    )


def _row_scheme(row: Any) -> str:
    """The watermark scheme a ledger row's delivery was marked with ("" if none)."""
    return str(json.loads(row["watermark"] or "{}").get("scheme", ""))


def _row_frame(row: Any) -> CentreKind:
    """The reading frame of a marked delivery's scheme (checked by :func:`_marked_entry`)."""
    from .watermark import SCHEME_FRAMES

    return SCHEME_FRAMES[_row_scheme(row)]


STAGE_LOAD = "loading"
STAGE_READ = "reading"
STAGE_BLIND = "blind checks"
STAGE_INFORMED = "informed"
"""Progress stages of a trace: the file loaded and split into connected parts (no
count), meshes read, (delivery, mesh) checks, asset versions."""


def trace_file(
    path: Path,
    data_dir: Path | None,
    *,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    progress: Progress | None = None,
    asset: str | None = None,
) -> TraceReport:
    """Find which delivery of the ledger in ``data_dir`` marked ``path`` (see module doc).

    ``asset`` (an asset id or name): try only that asset's deliveries, when the
    analyst knows what leaked (far less work on a busy ledger: one original to
    register, and the bound counts fewer checks).
    ``progress`` gets (stage, done, total) for the stages above; cancelling it raises
    :class:`~sealport.errors.Cancelled` at the next check. This function only reads
    the file, the ledger and the store; :func:`run` (the CLI) records the trace in the
    ledger's audit log.
    """
    from .watermark import (
        SCHEME,
        SCHEME_FRAMES,
        derive_delivery_key,
        load_meshes,
        min_vertices,
        read_mesh,
        verify_reading,
    )
    from .watermark.geometry import centre_of

    progress = progress or Progress()
    path = Path(path)
    progress.update(STAGE_LOAD, 0, 0)
    loaded = load_meshes(path)
    parts = _parts(loaded, min_vertices(64))
    meshes = loaded + [(v, f) for v, f, _ in parts]
    labels = [f"mesh {i + 1} of {len(loaded)}" for i in range(len(loaded))]
    labels += [where for _, _, where in parts]
    # Distinct, face-referenced vertices: what the mark needs (STL stores 3 per triangle).
    readings = []
    readable = 0  # of the file's own meshes (parts are large enough by construction)
    for i, (v, f) in enumerate(meshes):
        progress.update(STAGE_READ, i, len(meshes))
        reading = read_mesh(v, f)
        if reading.distinct_vertices >= min_vertices(64):
            readings.append((i, reading))
            readable += i < len(loaded)
    progress.update(STAGE_READ, len(meshes), len(meshes))
    by_frame: dict[CentreKind, list[tuple[str, Any]]] = {
        SCHEME_FRAMES[SCHEME]: [(labels[i], r) for i, r in readings]
    }

    def readings_in(frame: CentreKind) -> list[tuple[str, Any]]:
        """The readable meshes read in ``frame`` (older schemes' frames on first use; a
        frame with the centre of one read already, v2's and v3's, only bins them
        otherwise: the same norms, no second read)."""
        if frame not in by_frame:
            same = [f for f in by_frame if centre_of(f) == centre_of(frame)]
            by_frame[frame] = (
                [(label, replace(r, frame=frame)) for label, r in by_frame[same[0]]]
                if same
                else [(labels[i], read_mesh(*meshes[i], frame=frame)) for i, _ in readings]
            )
        return by_frame[frame]

    base: dict[str, Any] = {
        "file": str(path),
        "meshes": len(loaded),
        "meshes_readable": readable,
        "parts": len(parts),
    }
    if data_dir is None:
        return TraceReport("no_key", note=NO_KEY, **base)
    from .server.ledger import Ledger
    from .server.watermarking import delivery_payload, load_secret

    data_dir = Path(data_dir)
    secret = load_secret(data_dir)
    ledger_file = data_dir / "ledger.sqlite"
    if secret is None or not ledger_file.is_file():
        return TraceReport(
            "no_key",
            note=f"no studio key available in {data_dir} (no watermark key or no ledger there)",
            **base,
        )
    if not meshes:
        return TraceReport("too_small", **base)
    ledger = Ledger(ledger_file)
    try:
        rows = ledger.query(
            "SELECT d.*, a.name AS asset_name FROM deliveries d LEFT JOIN assets a "
            "ON a.asset_id = d.asset_id AND a.version = d.version "
            "WHERE d.watermark IS NOT NULL ORDER BY d.issued_at DESC, d.rowid DESC"
        )
    finally:
        ledger.close()
    marked = [r for r in rows if _marked_entry(r["watermark"])]
    scope = ""
    if asset is not None:
        marked = [r for r in marked if asset in (r["asset_id"], r["asset_name"])]
        scope = (
            f"Only deliveries of asset {asset!r} were tried."
            if marked
            else f"The ledger has no marked delivery of asset {asset!r} (an id or a name)."
        )
    bound1 = per_check_bound()
    checks = 0
    checked = 0
    tried = marked[: max(0, max_deliveries)]
    total = len(tried) * len(readings)
    for row in tried:
        checked += 1
        key = derive_delivery_key(secret, row["delivery_id"])
        expected = delivery_payload(secret, row["delivery_id"])
        for where, reading in readings_in(_row_frame(row)):
            progress.update(STAGE_BLIND, checks, total)
            checks += 1
            r = verify_reading(reading, key, expected)
            if r.status in ("verified", "mismatch"):
                match = _match(
                    row,
                    payload_hex=(r.payload or b"").hex(),
                    confidence=r.confidence,
                    method=r.method,
                    altered=r.status == "mismatch",
                    where=where,
                )
                return TraceReport(
                    "found",
                    deliveries_checked=checked,
                    deliveries_marked=len(marked),
                    checks=checks,
                    false_positive_bound=min(1.0, checks * bound1),
                    match=match,
                    note=" ".join(x for x in (scope, _grid_note(reading)) if x),
                    **base,
                )
    progress.update(STAGE_BLIND, checks, total)
    informed_ok = importlib.util.find_spec("scipy") is not None
    leaks = list(zip(labels, meshes, strict=True))
    found = _informed(leaks, tried, data_dir, secret, progress) if informed_ok else (None, 0)
    checks += found[1]
    if found[0] is not None:
        return TraceReport(
            "found",
            deliveries_checked=checked,
            deliveries_marked=len(marked),
            checks=checks,
            false_positive_bound=min(1.0, checks * max(bound1, informed_check_bound())),
            match=found[0],
            note=scope,
            **base,
        )
    if not readings and found[1] == 0:
        return TraceReport("too_small", **base)
    left = len(marked) - checked
    note = (
        f"{left} older marked deliveries were not checked (raise --max-deliveries)."
        if left > 0
        else ""
    )
    if scope:
        note = (note + " " if note else "") + scope
    if not informed_ok:
        note = (note + " " if note else "") + (
            "The informed (registration) tier was skipped: scipy is not installed "
            "(pip install 'sealport[trace]')."
        )
    return TraceReport(
        "not_found",
        deliveries_checked=checked,
        deliveries_marked=len(marked),
        checks=checks,
        false_positive_bound=min(1.0, checks * max(bound1, informed_check_bound())),
        note=note,
        **base,
    )


def _grid_note(reading: Any) -> str:
    """Say so when the mark was read from a mesh found rounded to a coarse grid (the
    reader's dequantised reading: a sign of a lossy export or compression on the way)."""
    if reading.grid is None:
        return ""
    step = ", ".join(f"{g:.3g}" for g in reading.grid)
    return (
        f"The leaked mesh had been rounded to a coarse grid (steps {step} per axis); "
        "the mark was read from the positions estimated before the rounding."
    )


def _parts(meshes: list[Any], need: int) -> list[tuple[Any, Any, str]]:
    """(vertices, triangles, where) of every connected part, large enough for a mark,
    of the meshes made of several (:mod:`sealport.watermark.components`: a delivery
    joined with other geometry); none without scipy (the informed tier's dependency,
    reported there)."""
    if importlib.util.find_spec("scipy") is None:
        return []
    from .watermark.components import connected_parts

    out = []
    for i, (v, f) in enumerate(meshes):
        found = connected_parts(v, f, need)
        for j, part in enumerate(found):
            where = f"mesh {i + 1}, connected part {j + 1} of its {len(found)} large enough"
            out.append((v, part, where))
    return out


def _informed(
    leaks: list[tuple[str, Any]], rows: list[Any], data_dir: Path, secret: bytes, progress: Progress
) -> tuple[TraceMatch | None, int]:
    """Informed tier over ``rows`` (module doc): (best verified match or None, checks)."""
    from .server.ledger import Ledger
    from .server.store import asset_path
    from .server.watermarking import delivery_payload
    from .watermark import derive_delivery_key, load_meshes, min_vertices
    from .watermark.errors import WatermarkFormatError
    from .watermark.geometry import weld
    from .watermark.informed import correspond_frames, informed_verify

    groups: dict[tuple[str, int], list[Any]] = {}
    for row in rows:
        groups.setdefault((row["asset_id"], int(row["version"])), []).append(row)
    ledger = Ledger(data_dir / "ledger.sqlite")
    try:
        records = {k: ledger.get_asset(k[0], k[1]) for k in groups}
    finally:
        ledger.close()
    checks = 0
    best: tuple[float, TraceMatch] | None = None
    for done, (gkey, group) in enumerate(groups.items()):
        progress.update(STAGE_INFORMED, done, len(groups))
        rec = records[gkey]
        if rec is None:
            continue
        original = asset_path(data_dir, rec)
        try:
            originals = load_meshes(original)
        except (WatermarkFormatError, OSError):
            continue
        originals = [(v, f) for v, f in originals if int(weld(v, f).used.sum()) >= min_vertices(64)]
        # Every scheme of the group's deliveries (v1 and v2 for an asset delivered
        # before and after the change): one registration per leak and original serves
        # them all (correspond_frames), only the rays differ.
        row_frames = [_row_frame(row) for row in group]
        frames = list(dict.fromkeys(row_frames))
        corrs: dict[str, list[tuple[str, Any]]] = {f: [] for f in frames}
        for where, (lv, lf) in leaks:
            for ov, of in originals:
                progress.check()  # registration is the slow part: stop between pairs
                for f, c in correspond_frames(lv, lf, ov, of, frames).items():
                    corrs[f].append((where, c))
        for row, frame in zip(group, row_frames, strict=True):
            progress.check()
            key = derive_delivery_key(secret, row["delivery_id"])
            expected = delivery_payload(secret, row["delivery_id"])
            for where, c in corrs[frame]:
                checks += 1
                r = informed_verify(c, key, expected)
                if r.status != "verified" or (best is not None and r.p_value >= best[0]):
                    continue
                best = (
                    r.p_value,
                    _match(
                        row,
                        payload_hex=expected.hex(),
                        confidence=1.0 - r.p_value,
                        method=f"informed (p={r.p_value:.1e}, {r.agree}/{r.bins} bins agree, "
                        f"coverage {r.coverage:.0%})",
                        altered=r.decoded is not None and r.decoded != expected,
                        where=where,
                    ),
                )
    progress.update(STAGE_INFORMED, len(groups), len(groups))
    return (best[1] if best else None), checks


def _audit_trace(data_dir: Path | None, path: Path, report: TraceReport | None) -> None:
    """Chain of custody: every trace run against a server's ledger (found, not found or
    cancelled: ``report`` None) is an event in its audit log (the hash-chained SIEM
    export carries it): which file (name, SHA-256), by which account on the server
    machine, and what it named."""
    ledger_file = None if data_dir is None else Path(data_dir) / "ledger.sqlite"
    if ledger_file is None or not ledger_file.is_file():
        return
    import getpass

    from .scene_check import sha256_file
    from .server.ledger import Ledger

    event: dict[str, Any] = {
        "event": "trace.run",
        "file": Path(path).name,
        "file_sha256": sha256_file(Path(path)),
        "status": "cancelled" if report is None else report.status,
    }
    if report is not None:
        event.update(checks=report.checks, false_positive_bound=report.false_positive_bound)
        if report.match is not None:
            event.update(
                delivery_id=report.match.delivery_id,
                username_named=report.match.username,
                method=report.match.method,
                where=report.match.where,
            )
    ledger = Ledger(ledger_file)
    try:
        ledger.add_audit([event], source="trace", username=getpass.getuser())
    finally:
        ledger.close()


def report_json(report: TraceReport) -> str:
    """The report as one JSON object (``sealport trace --json``) for a SIEM or a case
    file: every field of :class:`TraceReport`, the match nested, plus the per-check
    false-positive bound and the text an analyst reads."""
    body = asdict(report)
    body["per_check_bound"] = per_check_bound()
    body["text"] = report.text()
    return json.dumps(body, sort_keys=True)


def run(
    path: Path,
    data_dir: Path | None,
    *,
    max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    progress: Progress | None = None,
    as_json: bool = False,
    asset: str | None = None,
) -> int:
    """CLI body: print the report (text, or JSON with ``as_json``); exit 0 = delivery
    named, 1 = no mark, 2 = cannot trace."""
    if not Path(path).is_file():
        raise SealportError(f"There is no file at {path}.", str(path))
    try:
        report = trace_file(
            path, data_dir, max_deliveries=max_deliveries, progress=progress, asset=asset
        )
    except Cancelled:
        _audit_trace(data_dir, path, None)
        raise
    _audit_trace(data_dir, path, report)
    sys.stdout.write((report_json(report) if as_json else report.text()) + "\n")
    return {"found": 0, "not_found": 1}.get(report.status, 2)
