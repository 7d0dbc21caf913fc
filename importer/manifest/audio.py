"""Recognising audio files by their first bytes, and reading their duration.

Validation opens every distinct recording of a manifest (up to a million), so `sniff` works on a small
head (`SNIFF_BYTES`) and never on the whole file. `duration_seconds` is only used for the dry-run plan and
the "unusually short audio" warning; it reads WAV headers itself (cheap, no dependency) and asks mutagen
for the other formats.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

SNIFF_BYTES = 64

# Kinds returned by `sniff`.
AUDIO_KINDS = (
    "wav",
    "rf64",
    "w64",
    "mp3",
    "flac",
    "ogg",
    "m4a",
    "aac",
    "amr",
    "webm",
    "aiff",
    "caf",
    "wma",
    "au",
)

# ISO base media "major brands" that carry audio (M4A) or audio+video that the API can still take (MP4).
# Image brands (HEIC/AVIF also use `ftyp`) are deliberately absent.
_MP4_AUDIO_BRANDS = frozenset(
    {
        b"M4A ",
        b"M4B ",
        b"M4P ",
        b"F4A ",
        b"F4B ",
        b"mp41",
        b"mp42",
        b"mp71",
        b"isom",
        b"iso2",
        b"iso3",
        b"iso4",
        b"iso5",
        b"iso6",
        b"iso8",
        b"iso9",
        b"dash",
        b"3gp4",
        b"3gp5",
        b"3gp6",
        b"3gp7",
        b"3gs7",
        b"3ge6",
        b"3ge7",
        b"3gg6",
        b"3g2a",
        b"3g2b",
        b"3g2c",
        b"qt  ",
        b"MSNV",
        b"avc1",
        b"mmp4",
        b"M4V ",
        b"f4v ",
        b"caqv",
        b"nvr1",
    }
)
_MP4_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis", b"crx "}
)

_ASF_GUID = bytes.fromhex("3026B2758E66CF11A6D900AA0062CE6C")
_W64_GUID = bytes.fromhex("66666972912ECF11A5D628DB04C10000")  # "riff" GUID of Sony Wave64
_W64_WAVE = bytes.fromhex("77617665F3ACD3118CD100C04F8EDB8A")


def sniff(head: bytes) -> str | None:
    """The audio container in `head` (the first bytes of a file), or None when it is not recognised audio."""
    if len(head) < 4:
        return None
    four = head[:4]
    if four == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if four in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "rf64"
    if head[:16] == _W64_GUID and head[24:40] == _W64_WAVE:
        return "w64"
    if head[:3] == b"ID3":
        # An ID3v2 tag almost always precedes MP3 frames; the rare ID3-tagged AAC is still audio.
        return "mp3"
    if four == b"fLaC":
        return "flac"
    if four == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _MP4_AUDIO_BRANDS:
            return "m4a"
        return None
    if head.startswith(b"#!AMR"):
        return "amr"
    if four == b"\x1a\x45\xdf\xa3":
        return "webm"
    if four == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if four == b"caff":
        return "caf"
    if head[:16] == _ASF_GUID:
        return "wma"
    if four == b".snd":
        return "au"
    return _sniff_frame_sync(head)


def _sniff_frame_sync(head: bytes) -> str | None:
    """MPEG audio and AAC ADTS streams start with an 11/12-bit sync word; check the header's other fields
    too, because plenty of binary files start with 0xFF."""
    b0, b1, b2 = head[0], head[1], head[2]
    if b0 != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    layer = (b1 >> 1) & 0x3
    if (b1 & 0xF6) == 0xF0:  # 12-bit sync 0xFFF, layer 00: ADTS
        sampling_index = (b2 >> 2) & 0xF
        return "aac" if sampling_index < 13 else None
    version = (b1 >> 3) & 0x3
    bitrate_index = b2 >> 4
    rate_index = (b2 >> 2) & 0x3
    if version == 1 or layer == 0 or bitrate_index == 0xF or rate_index == 3:
        return None
    return "mp3"


def describe_non_audio(head: bytes) -> str | None:
    """What a non-audio file looks like, for the error message ("content looks like PDF"); None if unknown."""
    if not head:
        return None
    signatures: tuple[tuple[bytes, str], ...] = (
        (b"%PDF", "PDF"),
        (b"PK\x03\x04", "a ZIP archive or an Office document"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (.doc/.xls)"),
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x1f\x8b", "a gzip archive"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
        (b"Rar!", "a RAR archive"),
        (b"\x7fELF", "a program"),
        (b"MZ", "a Windows program"),
        (b"SQLite format 3", "an SQLite database"),
    )
    for magic, what in signatures:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF":
        kind = head[8:12]
        if kind == b"AVI ":
            return "an AVI video"
        if kind == b"WEBP":
            return "a WebP image"
        return "a RIFF file that is not WAVE"
    if head[4:8] == b"ftyp":
        if head[8:12] in _MP4_IMAGE_BRANDS:
            return "a HEIF/AVIF image"
        return "an MP4-family file of an unknown kind"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if stripped.startswith(b"<?xml"):
        return "XML"
    if _looks_like_text(head):
        return "text"
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The head may cut a multi-byte character at its end; retry without the last few bytes.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    if not text:
        return False
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\t\r\n")
    return printable / len(text) > 0.95


# --- durations -----------------------------------------------------------------------------------


def duration_seconds(path: str | os.PathLike[str], kind: str | None) -> float | None:
    """The audio's duration in seconds, or None when it cannot be read (never raises for a bad file)."""
    try:
        with open(path, "rb") as fh:
            return duration_from(fh, os.fstat(fh.fileno()).st_size, kind)
    except OSError:
        return None


def duration_from(fh: BinaryIO, size: int, kind: str | None) -> float | None:
    """The same from an open, seekable stream of `size` bytes (a local file, or ranged reads of a remote
    object): WAV headers by hand, the other formats by mutagen."""
    if kind in ("wav", "rf64"):
        try:
            found = _wav_duration(fh, size)
        except (OSError, struct.error, ValueError):
            found = None
        if found is not None:
            return found
    try:
        fh.seek(0)
    except OSError:
        return None
    return _mutagen_duration(fh)


def _mutagen_duration(fh: BinaryIO) -> float | None:
    try:
        import mutagen

        media = mutagen.File(fh)
    except Exception:  # mutagen raises many types for damaged files; an unknown duration is the answer
        return None
    length = getattr(getattr(media, "info", None), "length", None)
    if isinstance(length, int | float) and length == length and length >= 0:  # `length == length`: not NaN
        return float(length)
    return None


def _wav_duration(fh: BinaryIO, file_size: int) -> float | None:
    """Walk the RIFF/RF64 chunks to `fmt ` and `data`: duration = data bytes / average bytes per second.

    Reads a few dozen bytes per chunk and seeks over the rest, so a large recording costs one or two reads.
    """
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE":
        return None
    is_rf64 = head[:4] in (b"RF64", b"BW64")
    byte_rate = 0
    ds64_data_size: int | None = None
    for _ in range(1000):  # a bound, because a hostile file could chain chunks forever
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"ds64" and is_rf64:
            body = fh.read(min(size, 28))
            if len(body) >= 16:
                ds64_data_size = struct.unpack("<Q", body[8:16])[0]
            fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)
        elif chunk_id == b"fmt ":
            body = fh.read(min(size, 16))
            if len(body) < 12:
                return None
            byte_rate = struct.unpack("<I", body[8:12])[0]
            fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)
        elif chunk_id == b"data":
            if is_rf64 and size == 0xFFFFFFFF and ds64_data_size is not None:
                size = ds64_data_size
            # A recorder that crashed (or streams) leaves 0 or 0xFFFFFFFF: use what is on disk.
            available = file_size - fh.tell()
            if size == 0 or size > available:
                size = available
            if byte_rate <= 0:
                return None
            return size / byte_rate
        else:
            fh.seek(size + (size & 1), os.SEEK_CUR)
    return None
