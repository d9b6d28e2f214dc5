"""Login limits behind a reverse proxy: `X-Forwarded-For` is believed only from proxies the
operator lists (`BOXWISE_TRUSTED_PROXIES`, settings.json `trusted_proxies`); failed logins lock
a (client address, user name) pair, and a cap per user name covers guesses spread over many
addresses."""
from __future__ import annotations

import json

import pytest

from backend import auth, server_settings
from backend.errors import Invalid

PROXY = "10.0.0.2"


@pytest.fixture
def trusted(monkeypatch, data_dir):
    monkeypatch.setenv("BOXWISE_TRUSTED_PROXIES", f"{PROXY}, 192.168.7.0/24 127.0.0.1")


def test_the_header_is_ignored_unless_the_operator_trusts_the_proxy(data_dir):
    assert auth.client_address(PROXY, "203.0.113.9") == PROXY
    assert auth.client_address(None, ["203.0.113.9"]) is None  # localhost, as Streamlit says


def test_a_trusted_proxy_names_the_client_and_a_client_cannot_forge_it(trusted):
    assert auth.client_address(PROXY, "203.0.113.9") == "203.0.113.9"
    # The client's own header comes first; the proxy appends what it saw: the right-most wins.
    assert auth.client_address(PROXY, "198.51.100.1, 203.0.113.9") == "203.0.113.9"
    assert auth.client_address(PROXY, ["198.51.100.1", "203.0.113.9"]) == "203.0.113.9"
    # A chain of trusted proxies is skipped from the right.
    assert auth.client_address(PROXY, "203.0.113.9, 192.168.7.40") == "203.0.113.9"
    # A proxy on the same machine (Streamlit reports localhost as None).
    assert auth.client_address(None, "203.0.113.9") == "203.0.113.9"
    # An untrusted peer's header is not read; nor is one that does not parse.
    assert auth.client_address("10.0.0.3", "203.0.113.9") == "10.0.0.3"
    assert auth.client_address(PROXY, "203.0.113.9, not-an-address") == PROXY
    assert auth.client_address(PROXY, "") == PROXY
    assert auth.client_address(PROXY, "2001:db8::7") == "2001:db8::7"
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d (the real app does, for localhost).
    assert auth.client_address("::ffff:10.0.0.2", "203.0.113.9") == "203.0.113.9"
    assert auth.client_address("::ffff:127.0.0.1", "::ffff:203.0.113.9") == "203.0.113.9"


def test_trusted_proxies_come_from_the_settings_file_too_and_bad_entries_are_named(data_dir, monkeypatch):
    (data_dir / "settings.json").write_text(json.dumps({"trusted_proxies": ["10.1.0.0/16"]}))
    assert auth.client_address("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    monkeypatch.setenv("BOXWISE_TRUSTED_PROXIES", "10.0.0.2,proxy.example")
    with pytest.raises(Invalid, match="trusted proxy 'proxy.example' is not an IP address or network"):
        server_settings.trusted_proxies()


def test_behind_a_trusted_proxy_one_clients_guesses_lock_only_that_client(db, admin, trusted):
    attacker = auth.client_address(PROXY, "203.0.113.9")
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(Invalid, match="wrong user name or password"):
            auth.login(db, "admin", "guess-guess", attacker)
    with pytest.raises(auth.RateLimited, match="too many failed logins for 'admin' from this address"):
        auth.login(db, "admin", "admin-password", attacker)
    # The admin behind the same proxy still logs in.
    assert auth.login(db, "admin", "admin-password", auth.client_address(PROXY, "198.51.100.4"))[0]["id"] == admin["id"]


def test_without_trust_everyone_behind_the_proxy_shares_the_limit_per_name(db, admin, data_dir):
    for _ in range(auth.MAX_FAILED_LOGINS):
        with pytest.raises(Invalid):
            auth.login(db, "admin", "guess-guess", auth.client_address(PROXY, "203.0.113.9"))
    with pytest.raises(auth.RateLimited, match="from this address"):
        auth.login(db, "admin", "admin-password", auth.client_address(PROXY, "198.51.100.4"))


def test_guesses_spread_over_many_addresses_lock_the_name_for_everyone(db, admin):
    addresses = [f"203.0.113.{i}" for i in range(auth.MAX_FAILED_LOGINS_PER_NAME // auth.MAX_FAILED_LOGINS)]
    for address in addresses:
        for _ in range(auth.MAX_FAILED_LOGINS):
            with pytest.raises(Invalid, match="wrong user name or password"):
                auth.login(db, "admin", "guess-guess", address)
    with pytest.raises(auth.RateLimited, match="too many failed logins for 'admin' from all addresses together; "
                                               r"try again in \d+ s"):
        auth.login(db, "admin", "admin-password", "198.51.100.4")
    # Counted by name: other users are not affected.
    auth.add_user(db, admin, "bob", "bob-password-1", "viewer")
    assert auth.login(db, "bob", "bob-password-1", "198.51.100.4")[0]["username"] == "bob"
    assert db.execute("select count(*) from login_attempts where username = 'admin' and ok = 0").fetchone() == \
        (auth.MAX_FAILED_LOGINS_PER_NAME,)
