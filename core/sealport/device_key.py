"""The per-workstation X25519 key that deliveries are encrypted to.

Made on first sign-in; the private half lives only in the secret store (OS
keyring); the public half (an ``age1…`` recipient) is registered with the
server for the signed-in user. A ciphertext copied off the server is useless
without this key.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import age
from .paths import atomic_write_bytes

SECRET_NAME = "device-identity"


@dataclass(frozen=True)
class DeviceKey:
    identity: str  # AGE-SECRET-KEY-1… (secret)
    recipient: str  # age1…
    device_id: str | None = None

    def __repr__(self) -> str:  # never print the secret
        return f"DeviceKey(recipient={self.recipient!r}, device_id={self.device_id!r})"


def load_or_create(store: Any) -> DeviceKey:
    identity = store.get(SECRET_NAME)
    if not identity:
        identity = age.generate_identity()
        store.set(SECRET_NAME, identity)
    return DeviceKey(identity, age.identity_to_recipient(identity))


def _state_path(home: Path) -> Path:
    return home / "device.json"


def ensure_registered(api: Any, store: Any, home: Path, *, server_url: str, user: str) -> DeviceKey:
    """Register this workstation's key for ``user`` unless already done."""
    key = load_or_create(store)
    path = _state_path(home)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        state = {}
    reg = state.get(f"{server_url}|{user}")
    if reg and reg.get("recipient") == key.recipient:
        return DeviceKey(key.identity, key.recipient, reg["device_id"])
    reply = api.post("/api/v1/devices", {"public_key": key.recipient, "name": socket.gethostname()})
    device_id = str(reply["device_id"])
    state[f"{server_url}|{user}"] = {"recipient": key.recipient, "device_id": device_id}
    atomic_write_bytes(path, json.dumps(state, indent=2, sort_keys=True).encode())
    return DeviceKey(key.identity, key.recipient, device_id)


def forget(store: Any, home: Path) -> None:
    """Wipe the private key and the registration record (logout)."""
    store.delete(SECRET_NAME)
    _state_path(home).unlink(missing_ok=True)
