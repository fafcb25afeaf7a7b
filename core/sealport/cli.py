"""The ``sealport`` command line.

Every failure is printed as the artist-facing message (plus the TD detail
with ``--verbose``), never as a traceback; exit codes: 0 ok, 1 failure,
2 usage/config, 130 cancelled.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import ConfigError, default_config_path, load_config
from .errors import Cancelled, SealportError
from .progress import Progress


def _err(msg: str) -> None:
    print(f"sealport: {msg}", file=sys.stderr)


def _client(args: argparse.Namespace) -> Any:
    from .client import SealportClient

    cfg = load_config(Path(args.config) if args.config else None)
    return SealportClient(cfg)


@contextmanager
def cancellable(progress: Progress) -> Iterator[None]:
    """First Ctrl-C cancels cleanly (cooperatively); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if progress.cancelled:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        print("\nCancelling… (Ctrl-C again to abort at once)", file=sys.stderr)
        progress.cancel()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def tqdm_progress(unit: str = "B") -> tuple[Progress, Callable[[], None]]:
    """A Progress whose callback drives one tqdm bar per stage; ``unit`` "B" counts
    bytes (KiB, MiB...), any other unit plain counts."""
    from tqdm import tqdm

    state: dict[str, Any] = {"stage": None, "bar": None}

    def callback(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"] = stage
            state["bar"] = tqdm(
                total=total or None,
                desc=f"{stage:>12}",
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1024,
                leave=False,
                file=sys.stderr,
                disable=None if total else True,
            )
        bar = state["bar"]
        bar.update(done - bar.n)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"].close()

    return Progress(callback), close


def print_device_code(auth: Any, *, open_browser: bool) -> None:
    from .device_flow import qr_text

    print("\nTo sign in, open this page on any device:\n")
    print(f"    {auth.verification_uri}\n")
    print(f"and enter the code:   {auth.user_code}\n")
    try:
        print(qr_text(auth))
    except Exception:  # a QR code is a convenience, never a reason to fail sign-in
        pass
    print("Check that the page shows your studio's sign-in before you approve.", flush=True)
    if open_browser:
        webbrowser.open(auth.verification_uri_complete or auth.verification_uri)


def print_browser_wait(sign_in: Any) -> None:
    """Browser flow (PKCE): say where to look; the address only works on this machine."""
    if sign_in.browser_opened:
        print("\nYour browser opened your studio's sign-in page. Finish signing in there;")
        print("Sealport is waiting (Ctrl-C cancels).")
    else:
        print("\nOpen this address in a browser on THIS workstation to sign in:\n")
        print(f"    {sign_in.authorize_url}\n")
    print("The page shows this workstation's name and IP: check them before you allow.")
    print("No browser here (SSH, render node)? Use `sealport login --device`.", flush=True)


def print_result(result: Any) -> None:
    m = result.manifest
    print(f"✔ {m.name} v{m.version} ({m.format}) → {result.path}")
    print(
        f"    signature chain : root {result.root_fingerprint[:16]}… → delivery key "
        f"{result.delivery_key_id} → manifest {result.manifest_sha256[:16]}…"
    )
    print(
        f"    payload         : {m.payload.size} B age-x25519, sha256 {m.payload.sha256[:16]}… ok"
    )
    print(f"    file            : {m.file.path} {m.file.size} B, sha256 {m.file.sha256[:16]}… ok")
    print(f"    recipient       : {m.recipient[:20]}… (this workstation, device {m.device_id})")
    print(f"    user            : {m.user}   issued {m.issued_at}   expires {m.expires_at}")
    summary = ", ".join(f"{k}={v}" for k, v in result.format_summary.items())
    print(f"    format check    : {m.format} ok ({summary})")
    print(f"    watermark       : {result.watermark_status}")


# --- commands ------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    client = _client(args)
    progress = Progress()
    flow = "device" if args.device else ("pkce" if args.browser else None)
    if args.no_browser:  # browser flow: print the address to open by hand on this machine
        client.tokens.open_browser = lambda url: False
    with cancellable(progress):
        ident = client.login(
            lambda a: print_device_code(a, open_browser=not args.no_browser),
            progress,
            on_browser=print_browser_wait,
            flow=flow,
        )
    print(f"Signed in as {getattr(ident, 'name', '') or client.user()} ({client.user()}).")
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    client = _client(args)
    me = client.whoami()
    print(f"{me.get('name', '')} <{me.get('sub')}> roles: {', '.join(me.get('roles', []))}")
    print(f"server: {client.config.server_url}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    client = _client(args)
    client.logout()
    print("Signed out: tokens revoked at the IdP and wiped from this workstation.")
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    client = _client(args)
    rows = client.assets()
    print(f"{'ASSET':36} {'NAME':20} {'PROJECT':12} {'FMT':5} {'VER':>4} {'SIZE':>10}")
    for a in rows:
        print(
            f"{a['asset_id']:36} {a['name'][:20]:20} {a.get('project', '')[:12]:12} "
            f"{a['format']:5} {a['version']:>4} {a['size']:>10}"
        )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    client = _client(args)
    progress, close = tqdm_progress()
    out = Path(args.out).expanduser().resolve() if args.out else Path.cwd()
    try:
        with cancellable(progress):
            result = client.secure_import(_resolve_asset(client, args.asset), out, progress)
    finally:
        close()
    print_result(result)
    return 0


def _resolve_asset(client: Any, ref: str) -> str:
    """Accept an asset id or a unique asset name."""
    rows = client.assets()
    for a in rows:
        if a["asset_id"] == ref:
            return ref
    hits = [a for a in rows if a["name"] == ref]
    if len(hits) == 1:
        return str(hits[0]["asset_id"])
    if len(hits) > 1:
        raise SealportError(f"Several assets are named {ref!r}; use the asset id.")
    raise SealportError(f"No asset {ref!r} in the catalogue; run `sealport assets` to list them.")


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .audit import AuditLog

    if args.log:
        path = Path(args.log)
    else:
        path = load_config(Path(args.config) if args.config else None).audit_log
    result = AuditLog(path).verify()
    if result.ok:
        print(f"Audit log {path}: {result.records} records, hash chain intact.")
        return 0
    print(
        f"Audit log {path}: TAMPERED at line {result.line}: {result.problem} "
        f"({result.records} good records before it)."
    )
    return 1


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve_forever

    serve_forever(
        Path(args.data),
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        extra_names=tuple(args.name or ()),
    )
    return 0


def cmd_admin_add_asset(args: argparse.Namespace) -> int:
    from .server.store import add_asset

    rec = add_asset(
        Path(args.data),
        Path(args.file),
        name=args.name,
        project=args.project,
        fmt=args.format,
        created_by=args.created_by,
    )
    print(f"Added {rec.name} v{rec.version} ({rec.format}) as asset {rec.asset_id}.")
    return 0


def cmd_admin_add_user(args: argparse.Namespace) -> int:
    import getpass

    from .server.store import add_user

    password = os.environ.get("SEALPORT_NEW_PASSWORD") or getpass.getpass("Password: ")
    add_user(
        Path(args.data),
        args.username,
        password,
        roles=args.roles.split(","),
        mfa=args.mfa,
        name=args.name or args.username,
    )
    print(f"User {args.username} added with roles {args.roles}.")
    return 0


def cmd_admin_add_pipeline_client(args: argparse.Namespace) -> int:
    from .server.pipeline_clients import register_pipeline_client
    from .server.store import open_ledger

    ledger = open_ledger(Path(args.data))
    try:
        secret = register_pipeline_client(
            ledger, args.client_id, args.allow, name=args.name or args.client_id
        )
    finally:
        ledger.close()
    print(f"Pipeline client {args.client_id} may call from {', '.join(args.allow)}.")
    print(f"client secret (shown once, stored only as a hash): {secret}")
    return 0


def cmd_admin_verify_ledger(args: argparse.Namespace) -> int:
    from .server.siem import verify

    result = verify(Path(args.data))
    if result.ok:
        print(f"Server ledger export in {args.data}: OK ({result.records} chained records).")
        return 0
    print(f"Server ledger export in {args.data}: TAMPERED or incomplete:")
    for problem in result.problems:
        print(f"  - {problem}")
    return 1


def cmd_ui(args: argparse.Namespace) -> int:
    from .ui.app import main as ui_main

    argv = ["--config", args.config] if args.config else []
    if args.out:
        argv += ["--out", args.out]
    return int(ui_main(argv))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.profile) if args.profile else None, keep=args.keep)


def cmd_trace(args: argparse.Namespace) -> int:
    from .trace import run

    data = Path(args.data) if args.data else None
    progress, close = tqdm_progress(unit="")
    try:
        with cancellable(progress):
            return run(
                Path(args.file),
                data,
                max_deliveries=args.max_deliveries,
                progress=progress,
                as_json=args.json,
                asset=args.asset,
            )
    finally:
        close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sealport", description=__doc__.splitlines()[0])
    p.add_argument("--config", help=f"studio config (default {default_config_path()})")
    p.add_argument("-v", "--verbose", action="store_true", help="also print TD details")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="run the whole secure import against an embedded server")
    s.add_argument("--profile", help="demo profile folder (default: a new temporary folder)")
    s.add_argument("--keep", action="store_true", help="keep the demo profile afterwards")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("ui", help="the Qt sign-in and asset browser panels, standalone")
    s.add_argument("--out", help="output folder for imports")
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("serve", help="run the reference server (studio side)")
    s.add_argument("--data", default="sealport-server", help="server data folder")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--public-url", help="URL clients use, if not https://HOST:PORT")
    s.add_argument("--name", action="append", help="extra DNS name for the server certificate")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser(
        "login", help="sign in with the studio SSO (browser + PKCE, or device code; idp.flow)"
    )
    s.add_argument("--no-browser", action="store_true", help="do not open a browser")
    how = s.add_mutually_exclusive_group()
    how.add_argument(
        "--device", action="store_true", help="device flow: enter a code on any device"
    )
    how.add_argument(
        "--browser", action="store_true", help="browser flow (PKCE) on this workstation"
    )
    s.set_defaults(func=cmd_login)
    sub.add_parser("whoami", help="show the signed-in user").set_defaults(func=cmd_whoami)
    sub.add_parser("logout", help="revoke and wipe the session").set_defaults(func=cmd_logout)
    sub.add_parser("assets", help="list the asset catalogue").set_defaults(func=cmd_assets)

    s = sub.add_parser("import", help="securely download, verify and place an asset")
    s.add_argument("asset", help="asset id or unique name")
    s.add_argument("--out", help="output folder (default: current folder)")
    s.set_defaults(func=cmd_import)

    audit = sub.add_parser("audit", help="local audit log").add_subparsers(
        dest="audit_cmd", required=True
    )
    s = audit.add_parser("verify", help="check the hash chain of the local audit log")
    s.add_argument("--log", help="audit log file (default: from the config)")
    s.set_defaults(func=cmd_audit_verify)

    s = sub.add_parser("trace", help="name the delivery a (leaked) file's watermark points to")
    s.add_argument("file")
    s.add_argument("--data", help="server data folder (admin, on the server machine)")
    s.add_argument("--max-deliveries", type=int, default=500, help="newest deliveries to try")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object")
    s.add_argument("--asset", help="try only the deliveries of this asset (id or name)")
    s.set_defaults(func=cmd_trace)

    admin = sub.add_parser("admin", help="server administration").add_subparsers(
        dest="admin_cmd", required=True
    )
    s = admin.add_parser("add-asset", help="add an asset file to the server's store")
    s.add_argument("file")
    s.add_argument("--data", default="sealport-server", help="server data folder")
    s.add_argument("--name", required=True)
    s.add_argument("--project", default="default")
    s.add_argument("--format", help="usd, usdz, fbx, obj, stl, glb, 3mf (default: from name)")
    s.add_argument("--created-by", default=os.environ.get("USER", "admin"))
    s.set_defaults(func=cmd_admin_add_asset)
    s = admin.add_parser("add-user", help="add a user to the development IdP")
    s.add_argument("username")
    s.add_argument("--data", default="sealport-server", help="server data folder")
    s.add_argument("--roles", default="artist")
    s.add_argument("--name")
    s.add_argument("--mfa", action="store_true", help="the user signs in with MFA (amr otp)")
    s.set_defaults(func=cmd_admin_add_user)
    s = admin.add_parser(
        "add-pipeline-client", help="register a service client (client credentials grant)"
    )
    s.add_argument("client_id")
    s.add_argument("--data", default="sealport-server", help="server data folder")
    s.add_argument(
        "--allow", action="append", required=True, help="allowed network (CIDR), repeatable"
    )
    s.add_argument("--name")
    s.set_defaults(func=cmd_admin_add_pipeline_client)
    s = admin.add_parser(
        "verify-ledger", help="check the server's chained SIEM export against its ledger"
    )
    s.add_argument("--data", default="sealport-server", help="server data folder")
    s.set_defaults(func=cmd_admin_verify_ledger)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Cancelled as exc:
        _err(exc.message)
        return 130
    except KeyboardInterrupt:
        _err("Interrupted; nothing was imported.")
        return 130
    except ConfigError as exc:
        _err(exc.message)
        if args.verbose and exc.detail:
            print(exc.detail, file=sys.stderr)
        return 2
    except SealportError as exc:
        _err(exc.message)
        if args.verbose and exc.detail:
            print(f"detail: {exc.detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
