"""Plain, gzip and zstandard files: round trips, several members or frames, truncated and
corrupt files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard

from orchestrator.trace import SynthSpec, TraceError, TraceReader, generate, synthesize
from orchestrator.trace.formats import format_line
from orchestrator.trace.streams import CHUNK, read_lines

SPEC = SynthSpec(ops=30_000, keys=500, mix=(("get", 0.8), ("set", 0.15), ("delete", 0.05)),
                 seed=7)


def _lines_back(path: Path) -> list[str]:
    """The trace read back, written out again line by line."""
    reader = TraceReader(path)
    return [format_line(reader.format, o.offset_ms, o.key, o.key_size, o.value_size,  # type: ignore[arg-type]
                        o.client, o.op, o.ttl_s) for o in reader]


class TestRoundTrip:
    @pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
    def test_generated_trace_reads_back(self, tmp_path: Path, suffix: str) -> None:
        """What the generator wrote is what the reader reads, line for line."""
        path = tmp_path / f"t.csv{suffix}"
        synthesize(SPEC, path)
        assert _lines_back(path) == list(generate(SPEC))
        assert not list(tmp_path.glob("*.partial"))

    @pytest.mark.parametrize("suffix", [".gz", ".zst"])
    def test_compressed_for_real(self, tmp_path: Path, suffix: str) -> None:
        """A .gz or .zst file is compressed (a tool of its own reads it) and smaller."""
        path = tmp_path / f"t.csv{suffix}"
        synthesize(SPEC, path)
        data = path.read_bytes()
        plain = (gzip.decompress(data) if suffix == ".gz"
                 else zstandard.ZstdDecompressor().stream_reader(data).read())
        assert plain.decode() == "".join(generate(SPEC))
        assert len(data) < len(plain) / 2

    def test_several_members_and_frames(self, tmp_path: Path) -> None:
        """Concatenated gzip members, or zstandard frames, are one stream (as zcat reads)."""
        first, second = b"0,a,1,2,1,get,0\n1,b,", b"1,2,1,get,0\n2,c,1,2,1,get,0\n"
        gz = tmp_path / "t.gz"
        gz.write_bytes(gzip.compress(first) + gzip.compress(second))
        zst = tmp_path / "t.zst"
        zst.write_bytes(zstandard.ZstdCompressor().compress(first)
                        + zstandard.ZstdCompressor().compress(second))
        for path in (gz, zst):
            assert [o.key for o in TraceReader(path)] == ["a", "b", "c"]

    def test_lines_across_chunks(self, tmp_path: Path) -> None:
        """Lines cut by chunk boundaries are whole when read."""
        lines = [f"{i},key-{i:08d},12,{i},1,get,0" for i in range(3 * CHUNK // 20)]
        path = tmp_path / "t.csv"
        path.write_text("\n".join(lines) + "\n")
        assert [raw.decode() for raw in read_lines(path)] == lines


class TestDamaged:
    @pytest.mark.parametrize("suffix", [".gz", ".zst"])
    def test_truncated(self, tmp_path: Path, suffix: str) -> None:
        """A compressed file cut short: a TraceError naming the file, the line reached and
        the truncation, after the lines before it were read."""
        path = tmp_path / f"t.csv{suffix}"
        synthesize(SPEC, path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        reader = TraceReader(path)
        with pytest.raises(TraceError) as caught:
            for _ in reader:
                pass
        error = caught.value
        assert "the file is truncated" in str(error)
        assert error.source == str(path)
        assert error.line is not None and 1_000 < error.line == reader.lines + 1
        assert f"line {error.line:,}: expected the rest of the" in str(error)

    @pytest.mark.parametrize("suffix", [".gz", ".zst"])
    def test_cut_at_a_line_end_is_still_truncated(self, tmp_path: Path, suffix: str) -> None:
        """A stream without its end is truncated even where the text so far is whole lines."""
        path = tmp_path / f"t.csv{suffix}"
        text = b"".join(f"{i},k,1,2,1,get,0\n".encode() for i in range(2000))
        if suffix == ".gz":
            data = gzip.compress(text)[:-8]  # without its CRC and length
        else:
            data = zstandard.ZstdCompressor(write_checksum=True).compress(text)[:-4]
        path.write_bytes(data)
        with pytest.raises(TraceError, match="truncated"):
            list(TraceReader(path))

    @pytest.mark.parametrize("suffix", [".gz", ".zst"])
    def test_corrupt(self, tmp_path: Path, suffix: str) -> None:
        """Garbage in the middle of a compressed file is a TraceError, not a crash or
        silently wrong lines."""
        path = tmp_path / f"t.csv{suffix}"
        synthesize(SynthSpec(ops=30_000, seed=3), path)
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(64)
        path.write_bytes(bytes(data))
        with pytest.raises(TraceError):
            list(TraceReader(path))

    def test_not_compressed_at_all(self, tmp_path: Path) -> None:
        """A plain file named .gz: a TraceError at line 1 saying it is not gzip data."""
        path = tmp_path / "t.csv.gz"
        path.write_bytes(b"0,a,1,2,1,get,0\n")
        with pytest.raises(TraceError, match="line 1: expected gzip data, found corrupt"):
            list(TraceReader(path))
