"""Config errors name the key and the file; no traceback, no silent default."""

from __future__ import annotations

from pathlib import Path

import pytest
from sealport.config import load_config
from sealport.errors import ConfigError

GOOD = """
[idp]
issuer = "https://127.0.0.1:8443"
client_id = "sealport"
[server]
url = "https://127.0.0.1:8443"
[trust]
root_fingerprints = ["{fp}"]
"""
FP = "a" * 64


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sealport.toml"
    p.write_text(text)
    return p


def test_good(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.format(fp=FP)))
    assert cfg.server_url == "https://127.0.0.1:8443" and cfg.root_fingerprints == (FP,)
    assert cfg.audit_log == tmp_path / "audit.jsonl"


def test_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No Sealport config found at .*nope.toml"):
        load_config(tmp_path / "nope.toml")


def test_unknown_key_named(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.format(fp=FP) + 'pin_sha265 = "x"\n')
    with pytest.raises(ConfigError, match=r"Unknown key 'trust.pin_sha265' in .*sealport.toml"):
        load_config(p)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Unknown section \[sevrer\]"):
        load_config(write(tmp_path, GOOD.format(fp=FP) + "[sevrer]\n"))


def test_missing_key(tmp_path: Path) -> None:
    text = GOOD.format(fp=FP).replace('client_id = "sealport"\n', "")
    with pytest.raises(ConfigError, match=r"Missing key 'idp.client_id'"):
        load_config(write(tmp_path, text))


def test_http_refused(tmp_path: Path) -> None:
    text = GOOD.format(fp=FP).replace('url = "https://', 'url = "http://')
    with pytest.raises(ConfigError, match="https://"):
        load_config(write(tmp_path, text))


def test_bad_fingerprint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root_fingerprints"):
        load_config(write(tmp_path, GOOD.format(fp="abc")))


def test_missing_ca_file(tmp_path: Path) -> None:
    text = GOOD.format(fp=FP).replace("[trust]", 'ca_file = "ca.pem"\n[trust]')
    with pytest.raises(ConfigError, match="server.ca_file"):
        load_config(write(tmp_path, text))


def test_cli_reports_config_error_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sealport.cli import main

    assert main(["--config", str(tmp_path / "x.toml"), "whoami"]) == 2
    err = capsys.readouterr().err
    assert "No Sealport config found" in err and "Traceback" not in err


def test_read_only_studio_config_keeps_state_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config deployed read-only (e.g. /etc/sealport) must not be where state goes."""
    studio = tmp_path / "etc"
    studio.mkdir()
    p = write(studio, GOOD.format(fp=FP))
    monkeypatch.delenv("SEALPORT_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr("sealport.config.os.access", lambda path, mode: False)
    cfg = load_config(p)
    assert cfg.home == tmp_path / "xdg" / "sealport"
    assert cfg.audit_log == cfg.home / "audit.jsonl" and cfg.cache_dir == cfg.home / "cache"


def test_data_dir_key_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEALPORT_HOME", raising=False)
    p = write(tmp_path, GOOD.format(fp=FP) + '[paths]\ndata_dir = "state"\n')
    monkeypatch.setenv("SEALPORT_HOME", str(tmp_path / "env"))
    assert load_config(p).home == tmp_path / "state"  # the file's explicit choice wins
    assert load_config(write(tmp_path, GOOD.format(fp=FP))).home == tmp_path / "env"
