"""Recordings behind https:// URLs: a real TLS server (trustme), with and without Range support; headers
from named environment variables; the object pinned by its ETag."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import make_wav
from httpskit import https_files  # noqa: F401 - the fixture
from runkit import read_results, run_cli
from sourcekit import url_manifest

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.runner import run_import


def manifest(folder: Path, cells: list[str]) -> Path:
    return url_manifest(folder, cells, agents=1)


def config(folder: Path) -> Path:
    path = folder / "config.yaml"
    path.write_text(f"state_dir: {folder / 'state'}\nupload:\n  max_attempts: 3\n"
                    "files:\n  https:\n    headers_env:\n      Authorization: TEST_RECORDINGS_AUTH\n")
    return path


def serve(server, name: str, seed: int, seconds: float = 0.5) -> bytes:  # noqa: ANN001
    return make_wav(server.folder / name, seconds=seconds, seed=seed).read_bytes()


def test_validate_upload_and_plan_over_https(tmp_path, https_files, sandbox, monkeypatch):  # noqa: F811
    https_files.trust(monkeypatch, tmp_path / "ca.pem")
    monkeypatch.setenv("TEST_RECORDINGS_AUTH", "Bearer tok-123")
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    sandbox.add_agent("agent0@example.com")
    bodies = {f"r{i}.wav": serve(https_files, f"r{i}.wav", i, seconds=3.0) for i in range(2)}
    https_files.denied.add("locked.wav")
    serve(https_files, "locked.wav", 9)
    cells = [https_files.url(n) for n in bodies] + [https_files.url("gone.wav"), https_files.url("locked.wav"),
                                                     "http://recordings.example.com/a.wav"]
    m = manifest(tmp_path, cells)
    cfg = config(tmp_path)
    plan = run_cli("run", m, "--config", cfg, "--dry-run")
    assert "calls to send:      2" in plan.out, plan.out
    # a WAV header comes with the sniff's first bytes: its duration is known with or without Range support
    assert "audio duration:     6.0s" in plan.out, plan.out
    results = tmp_path / "out.csv"
    r = run_cli("run", m, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", results)
    assert r.code == 1, r.out + r.err
    rows = read_results(results)
    assert [row["import_status"] for row in rows] == ["uploaded", "uploaded", "invalid", "invalid", "invalid"]
    assert "file not found" in rows[2]["import_error"]
    assert "HTTP 403" in rows[3]["import_error"]
    assert "http:// is only allowed for loopback hosts" in rows[4]["import_error"]
    stored = {c["file_name"]: c["sha256"] for c in sandbox.calls()}
    assert stored == {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    assert set(https_files.seen_auth) == {"Bearer tok-123"}
    assert "tok-123" not in r.out + r.err + plan.out + plan.err


def test_a_url_replaced_after_validation_is_refused(tmp_path, https_files, sandbox, monkeypatch):  # noqa: F811
    https_files.trust(monkeypatch, tmp_path / "ca.pem")
    monkeypatch.setenv("TEST_RECORDINGS_AUTH", "Bearer tok-123")
    serve(https_files, "a.wav", 1)
    cfg = load_config(config(tmp_path))
    vm = validate_manifest(load_manifest(manifest(tmp_path, [https_files.url("a.wav")]), cfg), cfg)
    assert not vm.errors
    serve(https_files, "a.wav", 2)  # same size, other bytes: the ETag tells (If-Match, or our own check)
    sandbox.add_agent("agent0@example.com")
    results = tmp_path / "results.csv"
    run_import(vm, cfg, api_url=sandbox.url, api_key=sandbox.api_key, state_dir=tmp_path / "state",
               results_path=results, retry_unknown=False)
    [row] = read_results(results)
    assert row["import_status"] == "failed" and "changed since validation" in row["import_error"], row
    assert sandbox.calls() == []


def test_an_untrusted_certificate_or_a_missing_header_variable_is_one_error(tmp_path, https_files, monkeypatch):  # noqa: F811
    serve(https_files, "a.wav", 1)
    serve(https_files, "b.wav", 2)
    m = manifest(tmp_path, [https_files.url("a.wav"), https_files.url("b.wav")])
    monkeypatch.delenv("TEST_RECORDINGS_AUTH", raising=False)
    r = run_cli("validate", m, "--config", config(tmp_path))
    assert r.code == 2 and "TEST_RECORDINGS_AUTH" in r.err and r.err.count("error:") == 1, r.err
    monkeypatch.setenv("TEST_RECORDINGS_AUTH", "Bearer tok-123")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    r = run_cli("validate", m, "--config", config(tmp_path))
    assert r.code == 2 and "TLS error" in r.err and "REQUESTS_CA_BUNDLE" in r.err, r.err
    assert r.err.count("error:") == 1 and "row " not in r.out
