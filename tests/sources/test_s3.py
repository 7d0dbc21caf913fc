"""Recordings in S3: validation by listing, streaming uploads pinned to the ETag, the store's faults.
Against moto's real S3 server on loopback (tests/s3kit.py), never a mock of boto3."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import make_mp3, make_wav
from runkit import read_results, run_cli
from s3kit import s3  # noqa: F401 - the fixture
from sourcekit import url_manifest

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.runner import run_import

BUCKET = "calls-archive"
FOLDER = "connect/acme/CallRecordings/2025/11/25/"


def wav_bytes(tmp_path: Path, seed: int, seconds: float = 0.5) -> bytes:
    return make_wav(tmp_path / "src" / f"s{seed}.wav", seconds=seconds, seed=seed).read_bytes()


def put(s3, key: str, body: bytes) -> None:  # noqa: F811
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=body)


def manifest(folder: Path, cells: list[str]) -> Path:
    return url_manifest(folder, cells, agents=2)


def config(folder: Path, s3, **files: str) -> Path:  # noqa: F811
    lines = [f"state_dir: {folder / 'state'}", "upload:", "  max_attempts: 3", "files:"]
    lines += [f"  {k}: {v}" for k, v in files.items()]
    lines += ["  s3:", f"    endpoint_url: {s3.url}"]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def bucket(s3):  # noqa: F811
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


def test_validate_reports_each_s3_problem_by_row(tmp_path, bucket):
    put(bucket, FOLDER + "good.wav", wav_bytes(tmp_path, 1))
    put(bucket, FOLDER + "empty.wav", b"")
    put(bucket, FOLDER + "notes.wav", b"%PDF-1.7 not a recording at all" * 4)
    put(bucket, FOLDER + "sub/inner.wav", wav_bytes(tmp_path, 2))
    cells = [f"s3://{BUCKET}/{FOLDER}{name}" for name in ("good.wav", "gone.wav", "empty.wav", "notes.wav", "sub")]
    m = manifest(tmp_path, cells)
    r = run_cli("validate", m, "--config", config(tmp_path, bucket))
    assert r.code == 1, r.out + r.err
    assert f"row 3, file_path: file not found: s3://{BUCKET}/{FOLDER}gone.wav" in r.out
    assert f"row 4, file_path: file is empty: s3://{BUCKET}/{FOLDER}empty.wav" in r.out
    assert "row 5, file_path: not an audio file (content looks like PDF" in r.out
    assert f"row 6, file_path: not a regular file (a folder): s3://{BUCKET}/{FOLDER}sub" in r.out
    assert "\nrow 2," not in r.out and "5 rows: 1 valid, 4 invalid" in r.out


def test_2000_objects_are_validated_by_listing_not_head(tmp_path, bucket):
    body = wav_bytes(tmp_path, 3, seconds=0.05)
    names = [f"{FOLDER}{i:05d}_20251125T10:{i % 60:02d}_UTC.wav" for i in range(2100)]
    bucket.put_many(BUCKET, names, body)
    put(bucket, "other/unrelated.wav", body)  # a folder the manifest does not use is never listed
    cfg = load_config(config(tmp_path, bucket))
    loaded = load_manifest(manifest(tmp_path, [f"s3://{BUCKET}/{k}" for k in names]), cfg)
    bucket.reset_counts()
    vm = validate_manifest(loaded, cfg)  # as `run` validates (no durations)
    assert vm.n_valid == 2100 and not vm.problems
    counts = dict(bucket.counts)
    assert counts.get("HEAD", 0) == 0, counts
    assert counts["LIST"] == 3, counts  # 2,100 keys, 1,000 a page
    assert counts["GET_RANGE"] == 2100, counts  # the sniff: the first 64 bytes of each
    assert "GET" not in counts, counts  # nothing reads a whole object to validate it
    assert {c.file_size for c in vm.calls} == {len(body)} and all(c.file_version for c in vm.calls)


def test_relative_cells_resolve_against_an_s3_root_and_upload_streams_the_exact_bytes(tmp_path, bucket, sandbox,
                                                                                      monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    bodies = {f"c{i}.wav": wav_bytes(tmp_path, 10 + i) for i in range(3)}
    bodies["d.mp3"] = make_mp3(tmp_path / "src" / "d.mp3").read_bytes()
    for name, body in bodies.items():
        put(bucket, FOLDER + name, body)
    for email in ("agent0@example.com", "agent1@example.com"):
        sandbox.add_agent(email)
    m = manifest(tmp_path, list(bodies))
    cfg = config(tmp_path, bucket, root=f"s3://{BUCKET}/{FOLDER}")
    results = tmp_path / "out.csv"
    r = run_cli("run", m, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", results)
    assert r.code == 0, r.out + r.err
    stored = {c["file_name"]: c["sha256"] for c in sandbox.calls()}
    assert stored == {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    rows = read_results(results)
    assert [row["file_path"] for row in rows] == list(bodies)  # the cells verbatim
    assert {row["import_status"] for row in rows} == {"uploaded"}
    again = run_cli("run", results, "--config", cfg, "--api-url", sandbox.url, "--quiet",
                    "--results", tmp_path / "again.csv")
    assert again.code == 0 and len(sandbox.calls()) == 4
    assert {row["import_status"] for row in read_results(tmp_path / "again.csv")} == {"already_uploaded"}


def test_dry_run_plan_counts_remote_bytes_and_hours(tmp_path, bucket):
    put(bucket, FOLDER + "long.wav", wav_bytes(tmp_path, 4, seconds=150.0))  # 2.4 MB
    put(bucket, FOLDER + "short.wav", wav_bytes(tmp_path, 5, seconds=30.0))  # 0.5 MB
    m = manifest(tmp_path, [f"s3://{BUCKET}/{FOLDER}long.wav", f"s3://{BUCKET}/{FOLDER}short.wav"])
    bucket.reset_counts()
    r = run_cli("run", m, "--config", config(tmp_path, bucket), "--dry-run")
    assert r.code == 0, r.out + r.err
    assert "bytes to send:      2.9 MB" in r.out, r.out
    assert "audio duration:     3m" in r.out, r.out  # 180 s
    assert "GET" not in bucket.counts and bucket.counts["GET_RANGE"] == 2  # one read each: sniff and duration


def _validated(tmp_path, bucket, cells):  # noqa: ANN001
    cfg_path = config(tmp_path, bucket)
    cfg = load_config(cfg_path)
    vm = validate_manifest(load_manifest(manifest(tmp_path, cells), cfg), cfg)
    assert not vm.errors, vm.errors
    return vm, cfg


def _run_rows(vm, cfg, tmp_path, sandbox) -> list[dict[str, str]]:  # noqa: ANN001
    """The results rows, in manifest order."""
    for email in ("agent0@example.com", "agent1@example.com"):
        sandbox.add_agent(email)
    results = tmp_path / "results.csv"
    run_import(vm, cfg, api_url=sandbox.url, api_key=sandbox.api_key, state_dir=tmp_path / "state",
               results_path=results, retry_unknown=False)
    return read_results(results)


def _run(vm, cfg, tmp_path, sandbox):  # noqa: ANN001
    """The results rows by file name."""
    return {row["file_path"].rsplit("/", 1)[-1]: row for row in _run_rows(vm, cfg, tmp_path, sandbox)}


def test_an_object_replaced_after_validation_is_refused(tmp_path, bucket, sandbox):
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 5))
    put(bucket, FOLDER + "b.wav", wav_bytes(tmp_path, 6))
    vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}a.wav", f"s3://{BUCKET}/{FOLDER}b.wav"])
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 7))  # same size, other bytes: only the ETag tells
    rows = _run(vm, cfg, tmp_path, sandbox)
    assert rows["a.wav"]["import_status"] == "failed"
    assert "changed since validation" in rows["a.wav"]["import_error"]
    assert rows["b.wav"]["import_status"] == "uploaded"
    assert [c["file_name"] for c in sandbox.calls()] == ["b.wav"]


def test_a_store_dropping_mid_object_is_retried_from_the_start_once(tmp_path, bucket, sandbox):
    body = wav_bytes(tmp_path, 8, seconds=4.0)  # 64 KB: the drop happens well inside the body
    put(bucket, FOLDER + "a.wav", body)
    vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}a.wav"])
    bucket.drop(FOLDER + "a.wav", after=20_000, times=1)
    rows = _run(vm, cfg, tmp_path, sandbox)
    assert rows["a.wav"]["import_status"] == "uploaded", rows
    assert rows["a.wav"]["import_attempts"] == "2"
    calls = sandbox.calls()
    assert len(calls) == 1 and calls[0]["sha256"] == hashlib.sha256(body).hexdigest()


def test_a_403_on_one_object_fails_that_row_only(tmp_path, bucket, sandbox):
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 9))
    put(bucket, FOLDER + "b.wav", wav_bytes(tmp_path, 10))
    vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}a.wav", f"s3://{BUCKET}/{FOLDER}b.wav"])
    bucket.deny(FOLDER + "a.wav")
    rows = _run(vm, cfg, tmp_path, sandbox)
    assert rows["a.wav"]["import_status"] == "failed"
    assert "403" in rows["a.wav"]["import_error"] and "s3:GetObject" in rows["a.wav"]["import_error"]
    assert rows["a.wav"]["import_attempts"] == "1"
    assert rows["b.wav"]["import_status"] == "uploaded"


def test_a_403_at_validation_is_a_row_problem(tmp_path, bucket):
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 11))
    bucket.deny(FOLDER + "a.wav")
    r = run_cli("validate", manifest(tmp_path, [f"s3://{BUCKET}/{FOLDER}a.wav"]), "--config", config(tmp_path, bucket))
    assert r.code == 1 and "row 2, file_path: the store refused access" in r.out, r.out


@pytest.mark.parametrize("case", ["no credentials", "no bucket", "unreachable"])
def test_a_store_that_cannot_be_used_is_one_error_for_the_manifest(tmp_path, bucket, monkeypatch, case):
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 12))
    target = BUCKET
    cfg = config(tmp_path, bucket)
    if case == "no credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    elif case == "no bucket":
        target = "no-such-bucket"
    else:
        import socket

        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg.write_text(cfg.read_text().replace(bucket.url, f"http://127.0.0.1:{port}"))
    cells = [f"s3://{target}/{FOLDER}{n}.wav" for n in ("a", "b", "c")]
    r = run_cli("validate", manifest(tmp_path, cells), "--config", cfg)
    assert r.code == 2, r.out + r.err
    assert r.err.count("error:") == 1 and "row " not in r.out
    expected = {"no credentials": "AWS_ACCESS_KEY_ID", "no bucket": "no such bucket",
                "unreachable": "cannot reach the S3 store"}[case]
    assert expected in r.err, r.err
    assert "testing" not in r.err  # credentials are never shown


def test_the_same_recording_under_another_timestamp_is_not_sent_twice(tmp_path, bucket, sandbox, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    sandbox.add_agent("agent0@example.com")
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 13))
    cfg = config(tmp_path, bucket)
    first = url_manifest(tmp_path, [f"s3://{BUCKET}/{FOLDER}a.wav"], agents=1)
    r = run_cli("run", first, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", tmp_path / "1.csv")
    assert r.code == 0, r.out + r.err
    shifted = tmp_path / "shifted.csv"  # the same row an hour later, as after a time-zone fix
    shifted.write_text(first.read_text().replace("1750000000", "1750003600"))
    r = run_cli("run", shifted, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", tmp_path / "2.csv")
    [row] = read_results(tmp_path / "2.csv")
    assert row["import_status"] == "already_uploaded" and "same recording" in row["import_error"], row
    assert len(sandbox.calls()) == 1


def test_twins_in_s3_are_found_by_url_and_etag_without_a_download(tmp_path, bucket, sandbox):
    body = wav_bytes(tmp_path, 21)
    put(bucket, FOLDER + "a.wav", body)
    put(bucket, "copies/a-again.wav", body)  # the same bytes under another key: the same ETag
    put(bucket, FOLDER + "b.wav", wav_bytes(tmp_path, 22))  # same size, other bytes
    a, copy, b = (f"s3://{BUCKET}/{k}" for k in (FOLDER + "a.wav", "copies/a-again.wav", FOLDER + "b.wav"))
    vm, cfg = _validated(tmp_path, bucket, [a, a, copy, b])
    bucket.reset_counts()
    rows = _run_rows(vm, cfg, tmp_path, sandbox)
    assert [r["import_status"] for r in rows] == ["uploaded", "already_uploaded", "already_uploaded", "uploaded"]
    assert "same recording as row 2 (a.wav)" in rows[2]["import_error"]
    # One full GET per call sent (a and b), none to look for twins before the uploads.
    assert bucket.counts["GET"] == 2, bucket.counts
    assert sorted(c["file_name"] for c in sandbox.calls()) == ["a.wav", "b.wav"]

