"""The web config in force, and its reload when a file it came from changes (exporter.http.protection).

No server and no network: the files are real and so are the bcrypt checks; only the once-a-second
throttle is set to zero so that every call checks the files.
"""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.http.protection import WatchedProtection
from exporter.http.webconfig import load_web_config


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def users(**passwords: str) -> str:
    lines = "".join(
        f"  {user}: {bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"
        for user, password in passwords.items()
    )
    return "basic_auth_users:\n" + lines


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr("exporter.http.protection.RELOAD_CHECK_INTERVAL_S", 0.0)
    path = tmp_path / "web.yml"
    path.write_text(users(prometheus="first"))
    return path


def test_a_changed_file_is_loaded_again_and_an_unchanged_one_is_not(config: Path) -> None:
    watched = WatchedProtection(load_web_config(config))
    first = watched.current()
    assert watched.current() is first  # nothing changed: the same protection, the same bcrypt cache
    assert first.allows(basic("prometheus", "first"))

    config.write_text(users(prometheus="second", grafana="third"))  # longer: the stamp differs
    second = watched.current()
    assert second is not first
    assert second.allows(basic("prometheus", "second"))
    assert second.allows(basic("grafana", "third"))
    assert not second.allows(basic("prometheus", "first"))


def test_a_broken_new_version_keeps_the_previous_one_until_the_file_changes_again(config: Path) -> None:
    watched = WatchedProtection(load_web_config(config))
    first = watched.current()
    config.write_text("basic_auth_users: [this is not a mapping of users]\n")
    assert watched.current() is first
    assert watched.current().allows(basic("prometheus", "first"))

    config.write_text(users(prometheus="fixed"))
    assert watched.current().allows(basic("prometheus", "fixed"))


def test_a_reload_that_would_turn_tls_on_is_refused(config: Path, tmp_path: Path) -> None:
    server = trustme.CA().issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    watched = WatchedProtection(load_web_config(config))
    first = watched.current()
    config.write_text(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n" + users(prometheus="first")
    )
    assert watched.current() is first  # TLS on or off needs a restart
    assert first.web.tls is None


def test_without_basic_auth_users_every_request_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    protection = WatchedProtection(load_web_config(path)).current()
    assert protection.auth is None
    assert protection.allows(None)
