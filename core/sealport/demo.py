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


class PageForms(HTMLParser):
    """The forms of a page (action, named inputs, named buttons) and its result marker."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.result: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "fields": {}, "buttons": []})
        elif self.forms and tag == "input" and a.get("name"):
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))
        if "data-result" in a:
            self.result = a["data-result"]


def parse_page(text: str) -> PageForms:
    p = PageForms()
    p.feed(text)
    return p


class ApprovalFailed(AssertionError):
    """A step of the verification page refused the demo's (or a test's) input."""

    def __init__(self, step: str, resp: requests.Response) -> None:
        super().__init__(f"verification page, {step}: HTTP {resp.status_code}\n{resp.text[:500]}")
        self.response = resp


def approve_via_page(
    session: requests.Session,
    verification_uri: str,
    user_code: str,
    username: str,
    password: str,
    *,
    decision: str = "approve",
) -> str:
    """Fill in the IdP's verification page like a person: code + login, then Approve/Deny.

    Returns the final page's result marker ("approved" / "denied"); raises
    :class:`ApprovalFailed` if any step is refused.
    """
    page = session.get(verification_uri, timeout=30)
    if page.status_code != 200 or not parse_page(page.text).forms:
        raise ApprovalFailed("open page", page)
    form = parse_page(page.text).forms[0]
    fields = dict(form["fields"], user_code=user_code, username=username, password=password)
    confirm = session.post(urljoin(page.url, form["action"]), data=fields, timeout=30)
    if confirm.status_code != 200 or not parse_page(confirm.text).forms:
        raise ApprovalFailed("code and password", confirm)
    form = parse_page(confirm.text).forms[0]
    buttons = [n for n, v in form["buttons"] if v == decision]
    if not buttons:
        raise ApprovalFailed(f"no {decision} button", confirm)
    fields = dict(form["fields"], **{buttons[0]: decision})
    done = session.post(urljoin(confirm.url, form["action"]), data=fields, timeout=30)
    if done.status_code != 200:
        raise ApprovalFailed("decision", done)
    return parse_page(done.text).result or ""


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
                    approve_via_page(
                        approver, auth.verification_uri, auth.user_code, username, password
                    )
                except BaseException as exc:  # reported after login returns
                    approved.append(exc)

            threading.Thread(target=approve, daemon=True).start()

        client.login(on_code)
        if approved:
            raise approved[0]
        me = client.whoami()
        key = client.device_key()
        print(
            f"Signed in as {me.get('name')} <{me.get('sub')}>; workstation key "
            f"{key.recipient[:24]}… registered as device {key.device_id}\n"
        )

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
        print(
            f"\nAudit log {cfg.audit_log}: {verification.records} records, "
            f"chain {'intact' if verification.ok else 'BROKEN: ' + verification.problem}"
        )
        client.logout()
        client.session.close()
        approver.close()
        print("Signed out (refresh token revoked, demo secrets wiped).")
        formats = sorted({a["format"] for a in assets})
        print(
            f"\n{len(assets) - failures} of {len(assets)} assets imported securely "
            f"({', '.join(formats)})."
        )
        return 0 if failures == 0 and verification.ok and assets else 1
    finally:
        server.stop()
        if not keep and profile_path is None:
            shutil.rmtree(profile, ignore_errors=True)
