"""Trace files as streams of lines: plain, gzip (``.gz``) or zstandard (``.zst``), told apart
by the name's suffix, read and written in chunks, never whole.

A compressed file that ends inside its stream (truncated), or whose data is corrupt, is a
:class:`~orchestrator.trace.errors.TraceError` naming the file and the line the reader had
reached. Several gzip members, or zstandard frames, one after another are read as one stream
(as ``zcat`` and ``zstdcat`` do).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, cast

import zstandard

from orchestrator.trace.errors import TraceError

CHUNK = 1 << 16
# A trace line is a few hundred bytes (memcached keys are at most 250): a "line" longer than
# this is a file that is not a trace, and reading on would hold it whole.
MAX_LINE = 1 << 16
_GZIP_WBITS = 16 + zlib.MAX_WBITS


class _Problem(Exception):
    def __init__(self, expected: str, found: str) -> None:
        super().__init__(expected, found)
        self.expected = expected
        self.found = found


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes) -> bytes: ...


def compression_of(path: Path) -> str:
    """``gzip``, ``zstd`` or ``none``, by the file name's suffix."""
    return {".gz": "gzip", ".zst": "zstd"}.get(path.suffix.lower(), "none")


def _gzip() -> _Decompressor:
    return zlib.decompressobj(_GZIP_WBITS)


def _zstd() -> _Decompressor:
    return zstandard.ZstdDecompressor().decompressobj()


def _decompressed(raw: BinaryIO, name: str) -> Iterator[bytes]:
    """The decompressed chunks of a stream of members (gzip) or frames (zstandard)."""
    new = _gzip if name == "gzip" else _zstd
    errors: tuple[type[Exception], ...] = (zlib.error, zstandard.ZstdError)
    decoder = new()
    inside = False  # some of the current member or frame was fed to the decoder
    while chunk := raw.read(CHUNK):
        while chunk:
            inside = True
            try:
                out = decoder.decompress(chunk)
            except errors as exc:
                raise _Problem(f"{name} data", f"corrupt data ({exc})") from None
            if out:
                yield out
            if not decoder.eof:
                break
            chunk, decoder, inside = decoder.unused_data, new(), False
    if inside:
        raise _Problem(f"the rest of the {name} stream",
                       "the end of the file inside it: the file is truncated")


def _chunks(raw: BinaryIO, compression: str) -> Iterator[bytes]:
    if compression == "none":
        while chunk := raw.read(CHUNK):
            yield chunk
    else:
        yield from _decompressed(raw, compression)


def read_lines(path: Path, source: str | None = None) -> Iterator[bytes]:
    """The lines of a trace file, without their line endings (``\\n`` or ``\\r\\n``); the
    file is opened when the iteration starts and closed when it ends. ``source`` names the
    file in errors (default: the path)."""
    where = source or str(path)
    count = 0
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise TraceError(where, "a readable trace file", exc.strerror or str(exc)) from None
    with raw:
        try:
            rest = b""
            for chunk in _chunks(raw, compression_of(path)):
                lines = chunk.split(b"\n")
                lines[0] = rest + lines[0]
                rest = lines.pop()
                for line in lines:
                    count += 1
                    yield line[:-1] if line.endswith(b"\r") else line
                if len(rest) > MAX_LINE:
                    raise _Problem(f"a line of at most {MAX_LINE:,} bytes",
                                   f"{len(rest):,} bytes without a line end")
            if rest:
                count += 1
                yield rest[:-1] if rest.endswith(b"\r") else rest
        except _Problem as problem:
            raise TraceError(where, problem.expected, problem.found, line=count + 1) from None
        except OSError as exc:
            raise TraceError(where, "a readable trace file", exc.strerror or str(exc),
                             line=count + 1) from None


@contextlib.contextmanager
def open_output(path: Path, level: int | None = None) -> Iterator[BinaryIO]:
    """A binary stream that writes ``path``, compressed by its suffix. It is written under a
    temporary name beside it and renamed when the block ends without an error, so that an
    interrupted writer never leaves a file that looks complete; on an error it is removed."""
    partial = path.with_name(path.name + ".partial")
    compression = compression_of(path)
    try:
        with partial.open("wb") as raw:
            if compression == "gzip":
                # no name, mtime 0: the same parameters give the same bytes
                with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0,
                                   compresslevel=6 if level is None else level) as out:
                    yield cast(BinaryIO, out)
            elif compression == "zstd":
                compressor = zstandard.ZstdCompressor(level=3 if level is None else level)
                with compressor.stream_writer(raw, closefd=False) as zout:
                    yield cast(BinaryIO, zout)
            else:
                yield raw
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
