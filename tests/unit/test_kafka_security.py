"""LTV_KAFKA_* security settings: which combinations pass, and what each client gets."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import certifi
import pytest
from faust.auth import SASLCredentials, SSLCredentials

from streams.kafka_security import (
    SECURITY_VARIABLES,
    faust_credentials,
    kafka_auth,
    kafka_client,
    ssl_context,
)
from streams.settings import Settings, SettingsError, load_settings

SASL = {
    "LTV_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "LTV_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "LTV_KAFKA_SASL_USERNAME": "ltv",
    "LTV_KAFKA_SASL_PASSWORD": "p4ss-word",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LTV_"):
            monkeypatch.delenv(name)


@pytest.fixture
def ca_file() -> Path:
    """A real CA bundle (certifi's), so an SSL context can load it."""
    return Path(certifi.where())


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_plaintext_is_the_default_and_adds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert faust_credentials(s) is None
    assert kafka_auth(s) == {"security_protocol": "PLAINTEXT"}
    assert kafka_client(s) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_each_mechanism(monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
    s = settings(monkeypatch, **{**SASL, "LTV_KAFKA_SASL_MECHANISM": mechanism})
    credentials = faust_credentials(s)
    assert isinstance(credentials, SASLCredentials)
    assert kafka_auth(s) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "ltv",
        "sasl_plain_password": "p4ss-word",
        "ssl_context": None,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_each_mechanism(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path, mechanism: str
) -> None:
    env = {
        **SASL,
        "LTV_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "LTV_KAFKA_SASL_MECHANISM": mechanism,
        "LTV_KAFKA_SSL_CAFILE": str(ca_file),
    }
    s = settings(monkeypatch, **env)
    auth = kafka_auth(s)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("ltv", "p4ss-word")
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_ssl_with_ca_file(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    s = settings(monkeypatch, LTV_KAFKA_SECURITY_PROTOCOL="SSL", LTV_KAFKA_SSL_CAFILE=str(ca_file))
    assert isinstance(faust_credentials(s), SSLCredentials)
    auth = kafka_auth(s)
    assert set(auth) == {"security_protocol", "ssl_context"}
    assert auth["security_protocol"] == "SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_without_ca_file_uses_the_system_trust_store(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, LTV_KAFKA_SECURITY_PROTOCOL="SSL")
    context = ssl_context(s)
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_is_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    s = settings(
        monkeypatch,
        LTV_KAFKA_SECURITY_PROTOCOL="SSL",
        LTV_KAFKA_SSL_CERTFILE=str(cert),
        LTV_KAFKA_SSL_KEYFILE=str(key),
    )
    # Loading is attempted (and fails on this junk): the files are really used.
    with pytest.raises(ssl.SSLError):
        ssl_context(s)


def test_no_tls_context_for_plain_protocols(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ssl_context(settings(monkeypatch, **SASL)) is None


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({**SASL, "LTV_KAFKA_SASL_USERNAME": ""}, "LTV_KAFKA_SASL_USERNAME"),
        (
            {k: v for k, v in SASL.items() if k != "LTV_KAFKA_SASL_USERNAME"},
            "SASL_PLAINTEXT needs LTV_KAFKA_SASL_USERNAME",
        ),
        (
            {k: v for k, v in SASL.items() if k != "LTV_KAFKA_SASL_PASSWORD"},
            "needs LTV_KAFKA_SASL_PASSWORD",
        ),
        (
            {k: v for k, v in SASL.items() if k != "LTV_KAFKA_SASL_MECHANISM"},
            "needs LTV_KAFKA_SASL_MECHANISM",
        ),
        ({"LTV_KAFKA_SASL_USERNAME": "ltv"}, "is set but LTV_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"LTV_KAFKA_SASL_PASSWORD": "x"}, "LTV_KAFKA_SASL_PASSWORD is set but"),
        ({"LTV_KAFKA_SECURITY_PROTOCOL": "TLS"}, "LTV_KAFKA_SECURITY_PROTOCOL"),
        ({**SASL, "LTV_KAFKA_SASL_MECHANISM": "GSSAPI"}, "LTV_KAFKA_SASL_MECHANISM"),
        ({"LTV_KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "LTV_KAFKA_SSL_CAFILE"),
    ],
)
def test_bad_combinations_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        settings(monkeypatch, **env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "p4ss-word" not in message


def test_tls_files_need_a_tls_protocol(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    with pytest.raises(SettingsError, match=r"LTV_KAFKA_SSL_CAFILE is set but .* uses no TLS"):
        settings(monkeypatch, **SASL, LTV_KAFKA_SSL_CAFILE=str(ca_file))


def test_key_needs_its_certificate(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    with pytest.raises(SettingsError, match="LTV_KAFKA_SSL_KEYFILE needs LTV_KAFKA_SSL_CERTFILE"):
        settings(monkeypatch, LTV_KAFKA_SECURITY_PROTOCOL="SSL", LTV_KAFKA_SSL_KEYFILE=str(ca_file))


def test_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, **SASL)
    assert "p4ss-word" not in repr(s)
    assert "p4ss-word" not in str(s)
    assert "p4ss-word" not in repr(faust_credentials(s))
    # A bad value of the password itself is not echoed either.
    monkeypatch.setenv("LTV_KAFKA_SASL_PASSWORD", "")
    monkeypatch.setenv("LTV_PARTITIONS", "many")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "p4ss-word" not in str(info.value)


def test_security_variables_name_every_setting() -> None:
    assert {
        "LTV_KAFKA_SECURITY_PROTOCOL",
        "LTV_KAFKA_SASL_MECHANISM",
        "LTV_KAFKA_SASL_USERNAME",
        "LTV_KAFKA_SASL_PASSWORD",
        "LTV_KAFKA_SSL_CAFILE",
        "LTV_KAFKA_SSL_CERTFILE",
        "LTV_KAFKA_SSL_KEYFILE",
    } == SECURITY_VARIABLES


@pytest.mark.parametrize(
    ("env", "start"),
    [
        ({}, "ltv: cannot use Kafka at 127.0.0.1:1 (LTV_KAFKA_SECURITY_PROTOCOL=PLAINTEXT): "),
        (
            {"LTV_KAFKA_SECURITY_PROTOCOL": "SSL", "LTV_KAFKA_SSL_CERTFILE": "JUNK"},
            "ltv: cannot load the LTV_KAFKA_SSL_* files: ",
        ),
    ],
)
def test_worker_stops_with_one_line_when_kafka_cannot_be_used(
    tmp_path: Path, env: dict[str, str], start: str
) -> None:
    """Nothing listens on port 1 of loopback: the first connection fails at once."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    env = {k: str(junk) if v == "JUNK" else v for k, v in env.items()}
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={"PATH": "/usr/bin:/bin", "LTV_BROKER": "127.0.0.1:1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(start), lines[0]
