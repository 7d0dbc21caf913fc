"""Audio sniffing by content, and durations."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import make_mp3, make_wav

from importer.manifest.audio import SNIFF_BYTES, describe_non_audio, duration_seconds, sniff

HEADS = {
    "wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "rf64": b"RF64\xff\xff\xff\xffWAVEds64",
    "mp3": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "flac": b"fLaC\x00\x00\x00\x22",
    "ogg": b"OggS\x00\x02" + bytes(20) + b"\x01\x13OpusHead",
    "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
    "amr": b"#!AMR\n",
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81",
    "aiff": b"FORM\x00\x00\x10\x00AIFFCOMM",
    "caf": b"caff\x00\x01\x00\x00",
    "wma": bytes.fromhex("3026B2758E66CF11A6D900AA0062CE6C") + bytes(8),
}


@pytest.mark.parametrize(("kind", "head"), HEADS.items())
def test_sniff_recognises_containers(kind, head):
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (bytes([0xFF, 0xFB, 0x90, 0xC4]), "mp3"),  # MPEG-1 Layer III frame sync
        (bytes([0xFF, 0xF3, 0x48, 0xC4]), "mp3"),  # MPEG-2 Layer III
        (bytes([0xFF, 0xF1, 0x50, 0x80]), "aac"),  # ADTS
        (bytes([0xFF, 0xFB, 0xF0, 0xC4]), None),  # bitrate index 15: not a frame header
        (bytes([0xFF, 0xD8, 0xFF, 0xE0]), None),  # JPEG
        (b"\x00\x00\x00\x18ftypheic", None),
        (b"RIFF\x00\x00\x00\x00AVI LIST", None),
        (b"", None),
        (b"ab", None),
    ],
)
def test_sniff_frame_sync_and_lookalikes(head, kind):
    assert sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "looks"),
    [
        (b"%PDF-1.7\n", "PDF"),
        (b"PK\x03\x04\x14\x00", "a ZIP archive or an Office document"),
        (b"\x89PNG\r\n\x1a\n", "a PNG image"),
        (b"\xff\xd8\xff\xe0", "a JPEG image"),
        (b"<!DOCTYPE html><html>", "HTML"),
        (b"file_path,agent_email\n", "text"),
        ("Bonjour, ceci est un texte accentué é".encode(), "text"),
        (b"RIFF\x00\x00\x00\x00AVI ", "an AVI video"),
        (bytes(range(256))[:64], None),
    ],
)
def test_describe_non_audio(head, looks):
    assert describe_non_audio(head) == looks


def test_generated_files_are_recognised(tmp_path):
    wav = make_wav(tmp_path / "a.wav")
    mp3 = make_mp3(tmp_path / "b.mp3")
    assert sniff(wav.read_bytes()[:SNIFF_BYTES]) == "wav"
    assert sniff(mp3.read_bytes()[:SNIFF_BYTES]) == "mp3"


def test_wav_duration_from_the_header(tmp_path):
    path = make_wav(tmp_path / "a.wav", seconds=2.5)
    assert duration_seconds(path, "wav") == pytest.approx(2.5)


def test_wav_duration_skips_other_chunks_and_trusts_the_disk_when_the_size_is_unset(tmp_path):
    rate, data = 8000, bytes(16000)  # 1 s of 16-bit mono
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"LIST" + struct.pack("<I", 5) + b"abcde\x00" + b"fmt " + struct.pack("<I", 16) + fmt
    # A recorder that crashed leaves the data size at 0xFFFFFFFF.
    body += b"data" + struct.pack("<I", 0xFFFFFFFF) + data
    path = tmp_path / "streamed.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + body)
    assert duration_seconds(path, "wav") == pytest.approx(1.0)


def test_rf64_duration_uses_ds64(tmp_path):
    rate, data = 8000, bytes(8000)  # 0.5 s
    ds64 = struct.pack("<QQQI", 0, len(data), len(data) // 2, 0)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64 + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", 0xFFFFFFFF) + data
    path = tmp_path / "big.wav"
    path.write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)
    assert duration_seconds(path, "rf64") == pytest.approx(0.5)


def test_mp3_duration_with_mutagen(tmp_path):
    path = make_mp3(tmp_path / "a.mp3", frames=40)
    assert duration_seconds(path, "mp3") == pytest.approx(40 * 1152 / 44100, rel=0.01)


@pytest.mark.parametrize("kind", ["wav", "mp3", "flac", None])
def test_unreadable_duration_is_none(tmp_path, kind):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVE" + b"\x00" * 7)
    assert duration_seconds(path, kind) is None
    assert duration_seconds(tmp_path / "missing.wav", kind) is None


def test_shipped_example_audio(tmp_path):
    folder = Path(__file__).resolve().parents[2] / "manifests" / "audio"
    files = sorted(folder.iterdir())
    assert len(files) >= 10
    for path in files:
        kind = sniff(path.read_bytes()[:SNIFF_BYTES])
        assert kind in ("wav", "mp3"), path
        seconds = duration_seconds(path, kind)
        assert seconds is not None and 1.0 <= seconds <= 3.05, path
    assert sum(p.stat().st_size for p in files) < 1024 * 1024
