"""Shared by the HTTPS tests: a PKI made by trustme (a company CA, another CA, a good, an expired and a
wrong-host certificate), an HTTPS sandbox using one of them, and an environment free of the machine's own
proxies and CA bundles."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from importer.sandbox import Sandbox

KEY = "key-Zq8-very-secret-4242"
PROXY_PASSWORD = "pr0xy-P@ss/w0rd"  # '@' and '/' must be percent-encoded in the URL, and redacted both ways

ENV_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
            "CURL_CA_BUNDLE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine (like a company laptop) may set proxies and CA bundles: each test sets its own."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("ALLOBRAIN_API_KEY", KEY)


@dataclass
class Pki:
    ca_pem: Path
    other_ca_pem: Path
    certs: dict[str, tuple[Path, Path]]  # name -> (cert chain, key)


def _write(cert: trustme.LeafCert, folder: Path, name: str) -> tuple[Path, Path]:
    chain, key = folder / f"{name}.pem", folder / f"{name}.key"
    chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "company-ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    now = datetime.datetime.now(datetime.UTC)
    certs = {
        "good": _write(ca.issue_cert("127.0.0.1", "localhost"), folder, "good"),
        "expired": _write(ca.issue_cert("127.0.0.1", "localhost", not_before=now - datetime.timedelta(days=60),
                                        not_after=now - datetime.timedelta(days=1)), folder, "expired"),
        "other_host": _write(ca.issue_cert("api.other.example"), folder, "other_host"),
    }
    return Pki(folder / "company-ca.pem", folder / "other-ca.pem", certs)


@pytest.fixture
def https_sandbox(pki: Pki, tmp_path: Path):
    """Start an HTTPS sandbox with one of the pki's certificates: https_sandbox("good")."""
    started: list[Sandbox] = []

    def start(cert: str = "good") -> Sandbox:
        chain, key = pki.certs[cert]
        sb = Sandbox(api_key=KEY, data_dir=tmp_path / f"sandbox-{len(started)}", tls_cert=chain, tls_key=key)
        started.append(sb.start())
        return sb

    yield start
    for sb in started:
        sb.stop()
