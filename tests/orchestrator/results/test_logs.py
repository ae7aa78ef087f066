"""orchestrator.results.logs: the event stream (structlog events as JSON lines, pgcache's log
records in it), and files appended in whole chunks, a failed chunk taken back."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import resource
from collections.abc import Iterator
from pathlib import Path

from orchestrator.results.logs import (
    AppendOnlyFile,
    BufferedStream,
    CsvRecorder,
    configure_events,
)


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """No file this process writes may grow past ``size`` bytes (EFBIG: Python ignores
    SIGXFSZ), for the duration of the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


class TestAppendOnlyFile:
    """A chunk is written whole or not at all."""

    def test_failed_chunk_is_taken_back(self, tmp_path: Path) -> None:
        """A chunk that does not fit is removed again; the error names the file."""
        f = AppendOnlyFile(tmp_path / "x.csv")
        assert f.append(b"a,1\n" * 10)
        with file_size_limit(60):
            assert not f.append(b"b,2\n" * 10)  # 40 + 40 bytes: past the limit
        assert (tmp_path / "x.csv").read_bytes() == b"a,1\n" * 10
        assert f.error is not None and f.error.filename == str(tmp_path / "x.csv")
        assert f.error.strerror == "File too large"
        assert not f.append(b"c\n")  # closed after the failure


class TestCsvRecorder:
    """Rows that cannot be written are counted as lost; the callback hears of it once."""

    def test_on_error_once_and_lost_rows(self, tmp_path: Path) -> None:
        """After the first failed flush, later rows are dropped too, never raised."""
        errors: list[OSError] = []
        recorder = CsvRecorder(tmp_path / "ops.csv", on_error=errors.append)
        recorder.rows.extend(["1,get,k\n"] * 4)
        recorder.flush()
        with file_size_limit(40):
            recorder.rows.extend(["2,get,k\n"] * 4)
            recorder.flush()
            recorder.rows.extend(["3,get,k\n"] * 4)
            recorder.close()
        assert (recorder.flushed, recorder.lost, recorder.count) == (4, 8, 4)
        assert len(errors) == 1
        assert (tmp_path / "ops.csv").read_text() == "1,get,k\n" * 4


class TestBufferedStream:
    """Event streams never raise into the code that logs."""

    def test_write_never_raises(self, tmp_path: Path) -> None:
        """A failed sync keeps the earlier lines and remembers the error."""
        stream = BufferedStream(tmp_path / "e.jsonl", autosync=True)
        stream.write('{"a":1}\n')
        stream.flush()
        with file_size_limit(10):
            stream.write('{"b":2}\n')
            stream.flush()
        stream.close()
        assert (tmp_path / "e.jsonl").read_text() == '{"a":1}\n'
        assert stream.error is not None


class TestLibraryRecords:
    def test_pgcache_records_become_events(self) -> None:
        """A pgcache log record (INFO and up) is an event of the stream with its level and
        message; DEBUG records are left out; nothing reaches the root logger."""
        stream = io.StringIO()
        configure_events(stream, {"run_id": "r1", "backend": "b"})
        seen_by_root: list[logging.LogRecord] = []

        class Catch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen_by_root.append(record)

        root_catcher = Catch()
        logging.getLogger().addHandler(root_catcher)
        try:
            library = logging.getLogger("pgcache")
            library.warning("pgcache listener lost (%s)", "heartbeat failed")
            library.debug("not recorded")
        finally:
            logging.getLogger().removeHandler(root_catcher)
        events = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(e["event"], e["level"], e["run_id"]) for e in events] == [
            ("pgcache_log", "warning", "r1")]
        assert events[0]["data"]["message"] == "pgcache listener lost (heartbeat failed)"
        assert not seen_by_root
