"""Recordings on an SFTP server: host keys checked, key and password auth, a chroot, uploads streamed and
pinned by size and modification time. Against a real asyncssh server on loopback (tests/sftpkit.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import make_wav
from runkit import read_results, run_cli
from sftpkit import PASSWORD, sftp  # noqa: F401 - the fixture
from sourcekit import url_manifest

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.runner import run_import


def recording(server, name: str, seed: int, seconds: float = 0.5) -> bytes:  # noqa: ANN001
    return make_wav(server.root / "exports" / name, seconds=seconds, seed=seed).read_bytes()


def manifest(folder: Path, cells: list[str]) -> Path:
    return url_manifest(folder, cells, agents=1)


def config(folder: Path, server, *, key: bool = True, password_env: str | None = None,  # noqa: ANN001
           known_hosts: Path | None = None, root: str | None = None) -> Path:
    lines = [f"state_dir: {folder / 'state'}", "upload:", "  max_attempts: 3", "files:"]
    if root:
        lines.append(f"  root: {root}")
    lines += ["  sftp:", f"    known_hosts: {known_hosts or server.known_hosts}"]
    if key:
        lines.append(f"    key_file: {server.client_key_file}")
    if password_env:
        lines.append(f"    password_env: {password_env}")
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_key_auth_validate_and_upload_from_a_chroot(tmp_path, sftp, sandbox, monkeypatch):  # noqa: F811
    bodies = {f"c{i}.wav": recording(sftp, f"c{i}.wav", i) for i in range(3)}
    sandbox.add_agent("agent0@example.com")
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    cells = [sftp.url(f"/exports/{name}") for name in bodies] + [sftp.url("/exports/missing.wav"),
                                                                  sftp.url("/exports"),
                                                                  sftp.url("/../../../etc/passwd")]
    m = manifest(tmp_path, cells)
    cfg = config(tmp_path, sftp)
    results = tmp_path / "out.csv"
    r = run_cli("run", m, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", results)
    assert r.code == 1, r.out + r.err
    rows = read_results(results)
    assert [row["import_status"] for row in rows] == ["uploaded"] * 3 + ["invalid"] * 3
    assert "file not found" in rows[3]["import_error"]
    assert "not a regular file (a folder)" in rows[4]["import_error"]
    assert "file not found" in rows[5]["import_error"]  # the chroot holds: no /etc/passwd in there
    assert [row["file_path"] for row in rows] == cells
    stored = {c["file_name"]: c["sha256"] for c in sandbox.calls()}
    assert stored == {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}


def test_password_auth_from_the_named_variable_and_a_relative_root(tmp_path, sftp, monkeypatch):  # noqa: F811
    recording(sftp, "a.wav", 1)
    monkeypatch.setenv("TEST_SFTP_PASSWORD", PASSWORD)
    m = manifest(tmp_path, ["a.wav"])
    cfg = config(tmp_path, sftp, key=False, password_env="TEST_SFTP_PASSWORD", root=sftp.url("/exports/"))
    r = run_cli("validate", m, "--config", cfg)
    assert r.code == 0, r.out + r.err
    assert PASSWORD not in r.out + r.err
    monkeypatch.setenv("TEST_SFTP_PASSWORD", "wrong")
    r = run_cli("validate", m, "--config", cfg)
    assert r.code == 2 and "authentication failed" in r.err and "wrong" not in r.err


def test_an_unknown_host_key_is_refused_with_its_fingerprint(tmp_path, sftp):  # noqa: F811
    recording(sftp, "a.wav", 1)
    other = tmp_path / "other_known_hosts"
    other.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGn0ZhV0PnmL2eGuyk2pDe2dmZ7DDXzEsGlHeAKX2uPb\n")
    cells = [sftp.url("/exports/a.wav"), sftp.url("/exports/b.wav")]
    r = run_cli("validate", manifest(tmp_path, cells), "--config", config(tmp_path, sftp, known_hosts=other))
    assert r.code == 2, r.out + r.err
    import base64

    digest = base64.b64encode(hashlib.sha256(sftp.host_key.public_data).digest()).decode().rstrip("=")
    assert f"unknown host key ssh-ed25519 SHA256:{digest}" in r.err, r.err
    assert r.err.count("error:") == 1 and "row " not in r.out
    assert f"ssh-keyscan -p {sftp.port} 127.0.0.1" in r.err


def _validated(tmp_path, sftp, cells):  # noqa: ANN001, F811
    cfg = load_config(config(tmp_path, sftp))
    vm = validate_manifest(load_manifest(manifest(tmp_path, cells), cfg), cfg)
    assert not vm.errors, vm.errors
    return vm, cfg


def _run(vm, cfg, tmp_path, sandbox):  # noqa: ANN001
    sandbox.add_agent("agent0@example.com")
    results = tmp_path / "results.csv"
    run_import(vm, cfg, api_url=sandbox.url, api_key=sandbox.api_key, state_dir=tmp_path / "state",
               results_path=results, retry_unknown=False)
    return read_results(results)


def test_a_file_changed_after_validation_is_refused(tmp_path, sftp, sandbox):  # noqa: F811
    recording(sftp, "a.wav", 1)
    vm, cfg = _validated(tmp_path, sftp, [sftp.url("/exports/a.wav")])
    target = sftp.root / "exports" / "a.wav"
    target.write_bytes(target.read_bytes() + b"\0" * 100)
    [row] = _run(vm, cfg, tmp_path, sandbox)
    assert row["import_status"] == "failed" and "changed since validation" in row["import_error"]
    assert sandbox.calls() == []


def test_a_server_dropping_mid_file_is_retried_from_the_start_once(tmp_path, sftp, sandbox):  # noqa: F811
    body = recording(sftp, "a.wav", 2, seconds=8.0)  # 128 KB: several 32 KB reads
    vm, cfg = _validated(tmp_path, sftp, [sftp.url("/exports/a.wav")])
    sftp.drop_after = 64 * 1024
    [row] = _run(vm, cfg, tmp_path, sandbox)
    assert sftp.drops == 1
    assert row["import_status"] == "uploaded" and row["import_attempts"] == "2", row
    calls = sandbox.calls()
    assert len(calls) == 1 and calls[0]["sha256"] == hashlib.sha256(body).hexdigest()


