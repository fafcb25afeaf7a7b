"""Secret store against a real Secret Service (private gnome-keyring on a private bus)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backends import fail, null
from keyrings.alt.file import PlaintextKeyring
from sealport.errors import KeyringUnavailable
from sealport.secret_store import (
    CHUNK_HEADER,
    DEMO_MARKER,
    DEMO_WARNING,
    MAX_ITEM_UTF16_BYTES,
    DemoFileStore,
    KeyringStore,
    open_secret_store,
)

SERVICE = "sealport-test"
PREFIX = "profile-test/"


@pytest.fixture
def restore_keyring() -> Iterator[None]:
    before = keyring.get_keyring()
    try:
        yield
    finally:
        keyring.set_keyring(before)


def secret_tool_lookup(env: dict[str, str], account: str) -> str | None:
    """Read an item with libsecret's own CLI: proves it is really in the Secret Service."""
    proc = subprocess.run(
        ["secret-tool", "lookup", "service", SERVICE, "username", account],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return proc.stdout if proc.returncode == 0 else None


def test_set_get_delete_in_real_secret_service(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    assert store.backend_name == "keyring.backends.SecretService.Keyring"
    assert store.get("rt") is None
    store.set("rt", "refresh-token-value")
    assert store.get("rt") == "refresh-token-value"
    assert secret_tool_lookup(secret_service.subprocess_env(), PREFIX + "rt") == (
        "refresh-token-value"
    )
    store.set("rt", "rotated")
    assert store.get("rt") == "rotated"
    store.delete("rt")
    assert store.get("rt") is None
    assert secret_tool_lookup(secret_service.subprocess_env(), PREFIX + "rt") is None
    store.delete("rt")  # idempotent


def test_chainer_with_plaintext_fallback_pins_the_secret_service(secret_service) -> None:
    # keyrings.alt is installed in the test env, so keyring chains SecretService + plaintext.
    store = KeyringStore(SERVICE, PREFIX)
    assert store.backend_name == "keyring.backends.SecretService.Keyring"
    store.set("rt", "x")
    assert not any(Path(os.environ["XDG_DATA_HOME"]).rglob("keyring_pass.cfg"))


def test_large_value_is_chunked_and_reassembled(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    value = ("eyJhbGciOi" * 950) + "é✓𝄞" * 50  # ~10 kB, with 2- and 4-byte UTF-16 characters
    store.set("big", value)
    assert store.get("big") == value

    backend = store._backend
    header = backend.get_password(SERVICE, PREFIX + "big")
    assert header.startswith(CHUNK_HEADER)
    count = int(header[len(CHUNK_HEADER) :].split(":")[0])
    generation = header.rsplit(":", 1)[1][:16]
    assert count >= 5
    chunks = [backend.get_password(SERVICE, f"{PREFIX}big#{generation}.{i}") for i in range(count)]
    assert all(c is not None for c in chunks)
    assert all(len(c.encode("utf-16-le")) <= MAX_ITEM_UTF16_BYTES for c in chunks)
    assert "".join(chunks) == value

    # Replacing with a short value removes the old chunks.
    store.set("big", "short")
    assert store.get("big") == "short"
    assert backend.get_password(SERVICE, f"{PREFIX}big#{generation}.0") is None

    store.set("big", value)
    store.delete("big")
    assert store.get("big") is None
    for i in range(count):
        assert backend.get_password(SERVICE, f"{PREFIX}big#{generation}.{i}") is None


def test_value_that_looks_like_a_header_round_trips(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    tricky = CHUNK_HEADER + "3:" + "0" * 64
    store.set("t", tricky)
    assert store.get("t") == tricky


def test_plaintext_backend_is_refused(restore_keyring, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    keyring.set_keyring(PlaintextKeyring())
    with pytest.raises(KeyringUnavailable) as err:
        KeyringStore(SERVICE, PREFIX)
    text = err.value.message
    assert "keyrings.alt.file.PlaintextKeyring" in text
    assert "Secret Service" in text or "Keychain" in text or "Credential Manager" in text
    assert "gnome-keyring" in text.lower() or "keychain" in text.lower()
    assert not any(tmp_path.rglob("*.cfg"))
    with pytest.raises(KeyringUnavailable):
        open_secret_store(tmp_path / "profile")


@pytest.mark.parametrize(
    ("backend", "name"),
    [(null.Keyring(), "keyring.backends.null.Keyring"), (fail.Keyring(), "fail.Keyring")],
)
def test_null_and_fail_backends_are_refused(restore_keyring, backend, name) -> None:
    keyring.set_keyring(backend)
    with pytest.raises(KeyringUnavailable) as err:
        KeyringStore(SERVICE, PREFIX)
    assert name in err.value.message


def test_locked_keyring_gives_clear_error(secret_service) -> None:
    KeyringStore(SERVICE, PREFIX).set("rt", "value")  # creates the login keyring file
    secret_service.lock()  # gnome-keyring restarted without the password
    store = KeyringStore(SERVICE, PREFIX)
    with pytest.raises(KeyringUnavailable) as err:
        store.get("rt")
    assert "locked" in err.value.message.lower()
    assert "value" not in err.value.detail


def test_hung_secret_service_times_out(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX, timeout=1.0)
    store.set("rt", "value")
    assert secret_service.daemon is not None
    os.kill(secret_service.daemon.pid, signal.SIGSTOP)  # the daemon stops answering D-Bus
    try:
        with pytest.raises(KeyringUnavailable) as err:
            store.get("rt")
        assert "did not answer" in err.value.message
    finally:
        os.kill(secret_service.daemon.pid, signal.SIGCONT)


class FlakyBackend:
    """The real Secret Service backend behind a fault: the first ``failures`` calls raise
    what keyring raises when gnome-keyring briefly has no default collection."""

    def __init__(self, real: object, failures: int, error: Exception) -> None:
        self.real, self.failures, self.error, self.calls = real, failures, error, 0

    def __getattr__(self, name: str):
        method = getattr(self.real, name)

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls <= self.failures:
                try:  # chained like keyring's own InitError, so the detail shows the cause
                    raise RuntimeError("Item does not exist!")
                except RuntimeError as cause:
                    raise self.error from cause
            return method(*args, **kwargs)

        return call


def transient_init_error() -> Exception:
    return keyring.errors.InitError("Failed to create the collection: Prompt dismissed.")


def test_transient_keyring_failure_is_retried(secret_service, caplog) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    store.set("rt", "value")
    flaky = FlakyBackend(store._backend, failures=2, error=transient_init_error())
    store._backend = flaky
    with caplog.at_level("WARNING", logger="sealport.secret_store"):
        assert store.get("rt") == "value"
    assert flaky.calls == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "InitError" in warnings[0] and "Item does not exist" in warnings[0]
    assert "value" not in " ".join(warnings)


def test_persistent_keyring_failure_gives_up_with_the_cause(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    store.set("rt", "value")
    flaky = FlakyBackend(store._backend, failures=99, error=transient_init_error())
    store._backend = flaky
    with pytest.raises(KeyringUnavailable) as err:
        store.get("rt")
    assert flaky.calls == 3  # the first try and two retries, then the artist is told
    assert "could not be opened" in err.value.message
    assert "InitError" in err.value.detail and "Item does not exist" in err.value.detail
    assert "value" not in err.value.detail


def test_locked_keyring_is_not_retried(secret_service) -> None:
    store = KeyringStore(SERVICE, PREFIX)
    locked = keyring.errors.KeyringLocked("Failed to unlock the collection!")
    flaky = FlakyBackend(store._backend, failures=99, error=locked)
    store._backend = flaky
    with pytest.raises(KeyringUnavailable) as err:
        store.get("rt")
    assert flaky.calls == 1  # a second unlock prompt would only annoy the artist
    assert "locked" in err.value.message.lower()


def test_open_secret_store_uses_the_keyring_per_profile(secret_service, tmp_path) -> None:
    a = open_secret_store(tmp_path / "a")
    b = open_secret_store(tmp_path / "b")
    assert isinstance(a, KeyringStore)
    a.set("rt", "for-a")
    assert b.get("rt") is None  # profiles never share secrets
    assert open_secret_store(tmp_path / "a").get("rt") == "for-a"


# --- demo store ------------------------------------------------------------------------
def test_demo_store_refuses_without_the_acknowledgement(tmp_path) -> None:
    (tmp_path / DEMO_MARKER).write_text("")
    with pytest.raises(KeyringUnavailable):
        DemoFileStore(tmp_path / "demo-secrets.json")
    with pytest.raises(KeyringUnavailable):
        DemoFileStore(tmp_path / "demo-secrets.json", i_understand_this_is_demo_only="yes")  # type: ignore[arg-type]


def test_demo_store_refuses_outside_a_demo_profile(tmp_path) -> None:
    with pytest.raises(KeyringUnavailable) as err:
        DemoFileStore(tmp_path / "demo-secrets.json", i_understand_this_is_demo_only=True)
    assert DEMO_MARKER in err.value.detail
    nested = tmp_path / "sub"
    nested.mkdir()
    (tmp_path / DEMO_MARKER).write_text("")  # marker in a parent is not enough
    with pytest.raises(KeyringUnavailable):
        DemoFileStore(nested / "demo-secrets.json", i_understand_this_is_demo_only=True)
    with pytest.raises(KeyringUnavailable):
        open_secret_store(nested, demo=True)


def test_demo_store_is_labelled_and_private(tmp_path) -> None:
    (tmp_path / DEMO_MARKER).write_text("")
    store = open_secret_store(tmp_path, demo=True)
    assert isinstance(store, DemoFileStore)
    assert "NOT A SECURE STORE" in (DemoFileStore.__doc__ or "")
    store.set("rt", "demo-value")
    store.set("other", "x")
    assert store.get("rt") == "demo-value"
    path = tmp_path / "demo-secrets.json"
    doc = json.loads(path.read_text())
    assert doc["warning"] == DEMO_WARNING == "DEMO ONLY - NOT A SECURE STORE"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.delete("rt")
    assert store.get("rt") is None
    assert store.get("other") == "x"
