"""Shared fixtures: real audio files on disk and a real sandbox API on loopback."""

from __future__ import annotations

import io
import math
import os
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from importer.sandbox import Sandbox

# CI replays the same examples every run (a new failure then shows up where it was introduced, not at
# random); locally, hypothesis explores new examples each time.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def make_wav(path: Path, seconds: float = 1.0, rate: int = 8000, freq: float = 440.0, seed: int = 0) -> Path:
    """Write a small mono 16-bit PCM WAV file (a tone; `seed` shifts it so files differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * rate)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        f = freq + seed
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * f * i / rate))) for i in range(n)))
    path.write_bytes(buf.getvalue())
    return path


def make_mp3(path: Path, frames: int = 40) -> Path:
    """Write a minimal MPEG-1 Layer III stream (silent frames with a valid header) that audio sniffers accept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # 128 kbit/s, 44.1 kHz, no padding, mono: frame length = 144 * 128000 / 44100 = 417 bytes
    header = bytes([0xFF, 0xFB, 0x90, 0xC4])
    frame = header + bytes(417 - 4)
    path.write_bytes(frame * frames)
    return path


@pytest.fixture
def wav_factory(tmp_path: Path):
    """Call with a name (and optional seconds/seed) to get a real WAV file under tmp_path."""

    def factory(name: str = "call.wav", seconds: float = 1.0, seed: int = 0) -> Path:
        return make_wav(tmp_path / name, seconds=seconds, seed=seed)

    return factory


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh sandbox API on an ephemeral loopback port, stopped after the test."""
    from importer.sandbox import Sandbox

    with Sandbox(data_dir=tmp_path / "sandbox-data") as sb:
        yield sb


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server for the whole session (tests/pgkit.py). Under CI a missing server or
    a missing psycopg is a failure; locally the tests that need it are skipped, saying why."""
    from pgkit import PgCluster, server_bin

    why = None
    if server_bin() is None:
        why = "PostgreSQL server binaries not found: apt-get install -y postgresql (.ci/run does)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        why = "psycopg is not installed: pip install -e '.[test]' (it pulls the [postgres] extra)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    cluster = PgCluster(server_bin()).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster, monkeypatch) -> str:
    """A fresh database on the session's server, and PGPASSWORD set for this process and its children."""
    import secrets

    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    return pg_cluster.create_database("t_" + secrets.token_hex(6))
