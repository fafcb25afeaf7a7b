"""``sealport demo``: the whole secure import on one machine, nothing to set up.

Runs in an isolated demo profile (its own folder, marked as such): the
embedded reference server, a demo user, and a client whose secrets go to a
file store that is labelled demo-only and refuses to work anywhere else. The
sign-in is a real device flow: the demo approves the code through the
verification page with an HTTP client, as a person would in a browser.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

DEMO_MARKER = ".sealport-demo-profile"


class _FormParser(HTMLParser):
    """Collects the forms of a page: action, method and named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}, "buttons": []})
        elif self.forms and tag == "input" and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))


def _form(html: str) -> dict[str, Any]:
    parser = _FormParser()
    parser.feed(html)
    if not parser.forms:
        raise RuntimeError("verification page has no form")
    return parser.forms[0]


def approve_via_page(
    session: requests.Session,
    verification_uri: str,
    user_code: str,
    username: str,
    password: str,
    *,
    decision: str = "approve",
) -> str:
    """Fill in the IdP's verification page like a person: code + login, then Approve/Deny."""
    page = session.get(verification_uri, timeout=30)
    page.raise_for_status()
    form = _form(page.text)
    fields = dict(form["fields"])
    fields.update(user_code=user_code, username=username, password=password)
    url = urljoin(page.url, form["action"])
    confirm = session.post(url, data=fields, timeout=30)
    confirm.raise_for_status()
    form = _form(confirm.text)
    fields = dict(form["fields"])
    names = [b for b in form["buttons"] if b[1] == decision]
    if not names:
        raise RuntimeError(f"no {decision!r} button on the confirmation page")
    fields[names[0][0]] = decision
    done = session.post(urljoin(confirm.url, form["action"]), data=fields, timeout=30)
    done.raise_for_status()
    return done.text


def make_profile(path: Path | None) -> Path:
    profile = Path(tempfile.mkdtemp(prefix="sealport-demo-")) if path is None else path
    profile.mkdir(parents=True, exist_ok=True)
    (profile / DEMO_MARKER).write_text(
        "This folder is a Sealport DEMO profile. Its secrets are stored in a plain file\n"
        "(demo-secrets.json) and must never be used for real assets.\n"
    )
    (profile / "client").mkdir(exist_ok=True)
    (profile / "client" / DEMO_MARKER).write_text((profile / DEMO_MARKER).read_text())
    return profile


def run_demo(profile_path: Path | None = None, *, keep: bool = False) -> int:
    from .cli import print_result, tqdm_progress
    from .client import SealportClient
    from .config import load_config
    from .server import seed_demo, start_background

    profile = make_profile(profile_path)
    print(f"Demo profile (isolated, DEMO ONLY): {profile}")
    server_dir = profile / "server"
    username, password = seed_demo(server_dir)
    server = start_background(server_dir)
    try:
        print(f"Reference server: {server.url}  (TLS 1.3 only, studio CA {server.ca_file})")
        client_home = profile / "client"
        config_text = (server_dir / "client.toml").read_text(encoding="utf-8")
        # Pin the demo's state to its own profile, whatever SEALPORT_HOME says.
        (client_home / "sealport.toml").write_text(
            config_text + '\n[paths]\ndata_dir = "."\n', encoding="utf-8"
        )
        cfg = load_config(client_home / "sealport.toml")
        client = SealportClient(cfg, demo=True)

        approver = requests.Session()
        approver.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (psf/requests#3829)
        approver.verify = str(server.ca_file)
        approved: list[BaseException] = []

        def on_code(auth: Any) -> None:
            print(f"\nDevice sign-in: open {auth.verification_uri} and enter {auth.user_code}")
            print(f"(the demo approves it now as user '{username}', through that page)")

            def approve() -> None:
                try:
                    approve_via_page(approver, auth.verification_uri, auth.user_code,
                                     username, password)
                except BaseException as exc:  # reported after login returns
                    approved.append(exc)

            threading.Thread(target=approve, daemon=True).start()

        client.login(on_code)
        if approved:
            raise approved[0]
        me = client.whoami()
        key = client.device_key()
        print(f"Signed in as {me.get('name')} <{me.get('sub')}>; workstation key "
              f"{key.recipient[:24]}… registered as device {key.device_id}\n")

        out = profile / "imports"
        assets = client.assets()
        failures = 0
        for asset in sorted(assets, key=lambda a: a["format"]):
            progress, close = tqdm_progress()
            try:
                result = client.secure_import(asset["asset_id"], out, progress)
            except Exception as exc:  # report every asset, then fail the demo
                failures += 1
                print(f"✘ {asset['name']} ({asset['format']}): {exc}", file=sys.stderr)
                continue
            finally:
                close()
            print_result(result)
        verification = client.audit.verify()
        print(f"\nAudit log {cfg.audit_log}: {verification.records} records, "
              f"chain {'intact' if verification.ok else 'BROKEN: ' + verification.problem}")
        client.logout()
        client.session.close()
        approver.close()
        print("Signed out (refresh token revoked, demo secrets wiped).")
        formats = sorted({a["format"] for a in assets})
        print(f"\n{len(assets) - failures} of {len(assets)} assets imported securely "
              f"({', '.join(formats)}).")
        return 0 if failures == 0 and verification.ok and assets else 1
    finally:
        server.stop()
        if not keep and profile_path is None:
            shutil.rmtree(profile, ignore_errors=True)
