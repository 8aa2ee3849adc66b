"""JSON Lines files for export and import: plain, gzip (``.gz``) or zstd (``.zst``), or ``-``.

Compression follows the file name's suffix when writing; when reading, the first bytes decide
(so ``import -`` takes a compressed stream on stdin too). An export is written to a temporary
file beside the target and renamed into place when complete, so a failed export never leaves a
truncated file behind under the target's name.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import zstandard

STDIO = "-"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(path: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None`` by the name's suffix."""
    lower = path.lower()
    if lower.endswith(".gz"):
        return "gzip"
    if lower.endswith((".zst", ".zstd")):
        return "zstd"
    return None


def _decompressing(raw: Any) -> Iterable[bytes]:
    """``raw`` read line by line through the decompressor its first bytes call for."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    head = buffered.peek(4)[:4]
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if head.startswith(_ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type]  # zstd's reader is raw IO
    return buffered


@contextmanager
def open_lines(path: str) -> Iterator[Iterator[tuple[int, bytes]]]:
    """``(line number, line bytes)`` of a JSON Lines file or stdin, blank lines skipped."""
    if path == STDIO:
        raw: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
        close = True
    try:
        stream = _decompressing(raw)

        def lines() -> Iterator[tuple[int, bytes]]:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line

        yield lines()
    finally:
        if close:
            raw.close()


@contextmanager
def spooled_input(path: str) -> Iterator[str]:
    """A path that can be read twice: ``path`` itself, or stdin copied to a temporary file."""
    if path != STDIO:
        yield path
        return
    with tempfile.NamedTemporaryFile(prefix="llm-cache-import-", suffix=".jsonl") as tmp:
        while chunk := sys.stdin.buffer.read(1 << 20):
            tmp.write(chunk)
        tmp.flush()
        yield tmp.name


class LineWriter:
    """Writes one line at a time to an open (maybe compressing) binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, line: bytes) -> None:
        self._stream.write(line)
        self._stream.write(b"\n")


@contextmanager
def open_writer(path: str) -> Iterator[LineWriter]:
    """A ``LineWriter`` to ``path`` (atomically replaced when done) or to stdout for ``-``."""
    if path == STDIO:
        out = sys.stdout.buffer
        yield LineWriter(out)
        out.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as raw:
            kind = compression_of(path)
            if kind == "gzip":
                with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                    yield LineWriter(packed)  # type: ignore[arg-type]
            elif kind == "zstd":
                cctx = zstandard.ZstdCompressor(level=3)
                with cctx.stream_writer(raw, closefd=False) as packed:
                    yield LineWriter(packed)  # type: ignore[arg-type]
            else:
                yield LineWriter(raw)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
