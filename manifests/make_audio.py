"""Regenerate the example recordings in manifests/audio/ (deterministic: same bytes on every run).

    python manifests/make_audio.py

WAV: 8 kHz mono 16-bit PCM, 1 to 3 seconds of a two-tone "voice" with a slow amplitude envelope and a
little seeded noise, so each file differs and sounds like something. MP3: MPEG-1 Layer III frames at
32 kHz / 32 kbit/s mono whose granules carry no data, i.e. a valid MP3 stream of silence (writing a real
MP3 encoder is out of scope; every decoder and mutagen read these as ~2 s of audio).
"""

from __future__ import annotations

import io
import math
import random
import struct
import wave
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUDIO = HERE / "audio"
RATE = 8000

# name, seconds, base frequency (Hz)
WAVS = (
    ("call-001.wav", 2.0, 180.0),
    ("call-002.wav", 1.5, 210.0),
    ("call-003.wav", 3.0, 150.0),
    ("call-004.wav", 2.5, 240.0),
    ("call-005.wav", 1.2, 200.0),
    ("call-006.wav", 2.2, 170.0),
    ("call-007.wav", 1.8, 230.0),
    ("call-008.wav", 2.7, 160.0),
    ("call-009.wav", 1.4, 220.0),
    ("call-010.wav", 2.0, 190.0),
)
MP3S = (("call-011.mp3", 2.0), ("call-012.mp3", 1.5))


def wav_bytes(seconds: float, base: float, seed: int) -> bytes:
    rng = random.Random(seed)  # Mersenne Twister: the same sequence on every Python version
    n = int(seconds * RATE)
    frames = bytearray()
    for i in range(n):
        t = i / RATE
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 2.5 * t) ** 2  # syllable-like swells
        sample = 0.6 * math.sin(2 * math.pi * base * t) + 0.3 * math.sin(2 * math.pi * base * 2.7 * t)
        sample = sample * envelope + 0.05 * (rng.random() * 2 - 1)
        frames += struct.pack("<h", int(max(-1.0, min(1.0, sample)) * 9000))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def mp3_bytes(seconds: float) -> bytes:
    # Header: sync, MPEG-1, Layer III, no CRC | 32 kbit/s, 32 kHz, no padding | mono, original.
    header = bytes([0xFF, 0xFB, 0x18, 0xC4])
    frame_length = 144 * 32000 // 32000  # 144 bytes: header + 17 bytes of side info + main data
    frame = header + bytes(frame_length - len(header))
    frames = round(seconds * 32000 / 1152)  # 1152 samples per frame
    return frame * frames


def main() -> None:
    AUDIO.mkdir(parents=True, exist_ok=True)
    for seed, (name, seconds, base) in enumerate(WAVS):
        (AUDIO / name).write_bytes(wav_bytes(seconds, base, seed))
    for name, seconds in MP3S:
        (AUDIO / name).write_bytes(mp3_bytes(seconds))
    total = sum(p.stat().st_size for p in AUDIO.iterdir())
    print(f"wrote {len(WAVS) + len(MP3S)} files in {AUDIO} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
