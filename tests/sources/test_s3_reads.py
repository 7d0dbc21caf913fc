"""How S3 objects are read: presigned GETs over one pool (and boto3 behind a proxy), the ETag still pinned,
memory flat, the store's refusals and slow-downs, a bucket in another region, durations read with the
sniff. Against moto's real S3 server on loopback (tests/s3kit.py), never a mock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_mp3
from proxykit import ConnectProxy
from s3kit import s3  # noqa: F401 - the fixture
from test_s3 import BUCKET, FOLDER, _validated, config, manifest, put, wav_bytes

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.sources import SourceProblem, Sources

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bucket(s3):  # noqa: F811
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


def _read_all(sources: Sources, call) -> bytes:  # noqa: ANN001
    with sources.open(call) as fh:
        return b"".join(iter(lambda: fh.read(65536), b""))


def test_a_replaced_or_deleted_object_is_refused_when_opened(tmp_path, bucket):
    bodies = {name: wav_bytes(tmp_path, i) for i, name in enumerate(("a.wav", "b.wav", "c.wav"))}
    for name, body in bodies.items():
        put(bucket, FOLDER + name, body)
    vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}{name}" for name in bodies])
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 7))  # same size, other bytes: only the ETag tells
    bucket.client().delete_object(Bucket=BUCKET, Key=FOLDER + "b.wav")
    a, b, c = vm.calls
    with Sources(cfg.files) as sources:  # a new one, as an upload run has: it never listed the bucket
        for call, why in ((a, "ETag differs"), (b, "deleted")):
            with pytest.raises(SourceProblem) as caught:
                sources.open(call)
            assert not caught.value.retryable
            assert caught.value.message == (f"changed since validation ({why}): {call.file_path}; validate and "
                                            "run again")
        assert _read_all(sources, c) == bodies["c.wav"]


def test_a_store_slowing_down_is_retried_and_then_named(tmp_path, bucket):
    for name in ("a.wav", "b.wav"):
        put(bucket, FOLDER + name, wav_bytes(tmp_path, 3))
    bucket.fail(FOLDER + "a.wav", times=2)  # two SlowDowns, then the answer: within the three attempts
    bucket.fail(FOLDER + "b.wav", times=10)
    cells = [f"s3://{BUCKET}/{FOLDER}a.wav", f"s3://{BUCKET}/{FOLDER}b.wav"]
    cfg = load_config(config(tmp_path, bucket))
    bucket.reset_counts()
    vm = validate_manifest(load_manifest(manifest(tmp_path, cells), cfg), cfg)
    assert [c.file_name for c in vm.calls] == ["a.wav"]
    [problem] = vm.problems
    assert problem.message == f"the store answered SlowDown for s3://{BUCKET}/{FOLDER}b.wav", problem
    assert bucket.counts["GET_RANGE"] == 3 + 3  # a: 2 refused + 1; b: 3 attempts, then the row problem


def test_a_bucket_in_another_region_is_read_signed_for_its_region(tmp_path, bucket):
    body = wav_bytes(tmp_path, 4)
    for name in ("a.wav", "b.wav"):
        put(bucket, FOLDER + name, body)
    bucket.home(BUCKET, "eu-west-3")  # the client's region is us-east-1
    vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}a.wav", f"s3://{BUCKET}/{FOLDER}b.wav"])
    assert bucket.wrong_region == 0  # the listing named the region before any GET was signed
    with Sources(cfg.files) as sources:  # an upload run's: it has not listed, so it learns from the refusal
        assert [_read_all(sources, call) for call in vm.calls] == [body, body]
    assert bucket.wrong_region == 1  # once for the bucket, not once per object


def test_behind_a_proxy_s3_reads_go_through_it(tmp_path, bucket, monkeypatch):
    body = wav_bytes(tmp_path, 5)
    put(bucket, FOLDER + "a.wav", body)
    with ConnectProxy(forward=True) as proxy:
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)  # the endpoint is http://127.0.0.1:port
        vm, cfg = _validated(tmp_path, bucket, [f"s3://{BUCKET}/{FOLDER}a.wav"])
        with Sources(cfg.files) as sources:
            assert _read_all(sources, vm.calls[0]) == body
            put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 6))
            with pytest.raises(SourceProblem, match="changed since validation"):
                sources.open(vm.calls[0])
    gets = [target.split("/", 3)[3].partition("?") for method, target in proxy.forwarded if method == "GET"]
    assert [p for p, _, query in gets if "list-type" in query] == [BUCKET]
    object_gets = [p for p, _, query in gets if p == f"{BUCKET}/{FOLDER}a.wav"]
    assert len(object_gets) == 3  # the sniff, the read, the refused read...
    assert bucket.counts["LIST"] + bucket.counts["GET_RANGE"] + bucket.counts["GET"] == 4  # ...none around it


# VmHWM, not ru_maxrss: a child forked from this test process inherits its ru_maxrss (moto's objects).
STREAM = """
import sys

def peak_kb():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.sources import Sources
cfg = load_config(sys.argv[2])
small, big = validate_manifest(load_manifest(sys.argv[1], cfg), cfg).calls
with Sources(cfg.files) as sources:
    with sources.open(small) as fh:
        fh.read()  # what a first read costs (imports, the pool) is not the stream's
    before = peak_kb()
    n = 0
    with sources.open(big) as fh:
        while block := fh.read(65536):
            n += len(block)
    print(n, (peak_kb() - before) // 1024)
"""


def test_streaming_a_large_object_keeps_memory_flat(tmp_path, bucket):
    size = 96 * 2**20
    body = b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt " + bytes(size - 16)
    bucket.put_many(BUCKET, [FOLDER + "big.wav"], body)
    put(bucket, FOLDER + "small.wav", wav_bytes(tmp_path, 9))
    m = manifest(tmp_path, [f"s3://{BUCKET}/{FOLDER}small.wav", f"s3://{BUCKET}/{FOLDER}big.wav"])
    cfg = config(tmp_path, bucket)
    cfg.write_text(cfg.read_text().replace("upload:\n", "upload:\n  max_file_mb: 200\n"))
    done = subprocess.run([sys.executable, "-c", STREAM, str(m), str(cfg)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    read, grew_mb = (int(v) for v in done.stdout.split())
    assert read == size
    assert grew_mb < 16, f"the peak RSS grew by {grew_mb} MiB while streaming {size >> 20} MiB"


def test_durations_come_with_the_sniff_and_past_it_only_when_needed(tmp_path, bucket):
    put(bucket, FOLDER + "a.wav", wav_bytes(tmp_path, 8, seconds=12.0))  # 192 KB; its header is in 16 KiB
    tag = b"ID3\x03\x00\x00" + bytes([0, 1, 0x20, 0])  # ID3v2.3, syncsafe size 20,480: all padding
    frames = make_mp3(tmp_path / "src" / "b.mp3").read_bytes()  # 40 frames, about a second
    put(bucket, FOLDER + "b.mp3", tag + bytes(20_480) + frames)  # its first frame is past the first 16 KiB
    cfg = load_config(config(tmp_path, bucket))
    reads = {}
    for name in ("a.wav", "b.mp3"):
        loaded = load_manifest(manifest(tmp_path, [f"s3://{BUCKET}/{FOLDER}{name}"]), cfg)
        bucket.reset_counts()
        [call] = validate_manifest(loaded, cfg, with_durations=True).calls
        reads[name] = (call.duration, dict(bucket.counts))
    assert reads["a.wav"] == (pytest.approx(12.0), {"LIST": 1, "GET_RANGE": 1})  # the sniff gave the duration
    seconds, counts = reads["b.mp3"]
    local = tmp_path / "b.mp3"  # the same bytes on disk, read whole: what the ranged reads must agree with
    local.write_bytes(tag + bytes(20_480) + frames)
    [on_disk] = validate_manifest(load_manifest(manifest(tmp_path, [str(local)]), cfg), cfg, with_durations=True).calls
    assert on_disk.duration and seconds == pytest.approx(on_disk.duration)
    assert counts["GET_RANGE"] >= 2 and "GET" not in counts, counts  # bytes past the head, never a download
